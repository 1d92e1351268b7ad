//! GGUF Q3_K: super-blocks of 256 weights in 110 bytes: `hmask[32]` (the high bit of each
//! value), `qs[64]` (the low 2 bits), `scales[12]` (sixteen 6-bit scales, one per sub-block
//! of 16), `f16 d`. Weight `e` is `(d * (sc[e / 16] - 32)) * (q - 4 * !h)`: the 2-bit `q`,
//! less 4 where its `hmask` bit is clear.
//!
//! Bit order: as Q2_K's for `qs` (per half of 128, bits `2k..2k+2` of `qs[32 * half + l]` are
//! weight `128 * half + 32k + l`); the `hmask` bit of weight `128 * half + 32k + l` is bit
//! `4 * half + k` of `hmask[l]`.
//!
//! Scale packing (bytes `s[0..12]`): scale `i` has low nibble `s[i] & 15` for `i < 8`,
//! `s[i - 8] >> 4` after, and high 2 bits `s[8 + i % 4] >> (2 * (i / 4)) & 3`.
//!
//! Dequantization is llama.cpp's `dequantize_row_q3_K` (and gguf-py's).

use super::{blocks_of, f16_at};

/// Elements per super-block.
pub const BLOCK: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 110;

/// The sixteen 6-bit scales (`0..64`) from the 12 packed bytes.
#[inline]
pub fn scales(s: &[u8]) -> [u8; 16] {
    let mut sc = [0u8; 16];
    for (i, v) in sc.iter_mut().enumerate() {
        let lo = if i < 8 { s[i] & 15 } else { s[i - 8] >> 4 };
        *v = lo | (((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4);
    }
    sc
}

/// Dequantizes `src` (whole super-blocks) into `dst` (`src.len() / 110 * 256` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q3_K", BLOCK, BLOCK_BYTES, src, dst) {
        let (hmask, qs) = (&b[..32], &b[32..96]);
        let sc = scales(&b[96..108]);
        let d = f16_at(b, 108);
        for (s, o) in out.chunks_exact_mut(16).enumerate() {
            let (half, k, part) = (s / 8, (s % 8) / 2, s % 2);
            let dl = d * (sc[s] as i32 - 32) as f32;
            let q = &qs[32 * half + 16 * part..][..16];
            let h = &hmask[16 * part..][..16];
            let bit = 4 * half + k;
            for ((o, &q), &h) in o.iter_mut().zip(q).zip(h) {
                let v = ((q >> (2 * k)) & 3) as i32 - if (h >> bit) & 1 == 1 { 0 } else { 4 };
                *o = dl * v as f32;
            }
        }
    }
}
