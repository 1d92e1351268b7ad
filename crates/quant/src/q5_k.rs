//! GGUF Q5_K: super-blocks of 256 weights in 176 bytes: `f16 d`, `f16 dmin`, 12 bytes of
//! 6-bit scales and mins packed as Q4_K's (one pair per sub-block of 32), `qh[32]` (the fifth
//! bits), `qs[128]` (the low nibbles). Weight `i` of sub-block `j` is
//! `(d * sc[j]) * q - dmin * m[j]` with `q` in `0..32`.
//!
//! Bit order: nibbles as Q4_K's (chunk `c` of 64 weights is `qs[32c..32c + 32]`, low nibbles
//! first); the fifth bit of weight `32j + l` is bit `j` of `qh[l]`.
//!
//! Quantization is llama.cpp's `quantize_row_q5_K_ref` (what `llama-quantize` runs without an
//! importance matrix): Q4_K's fit ([`super::q4_k`]) with levels `0..=31` and 16 candidate
//! scales. Dequantization is llama.cpp's `dequantize_row_q5_K` (and gguf-py's).

use super::{blocks_of, f16_at, q4_k::scales_mins};

/// Elements per super-block.
pub const BLOCK: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 176;

/// Quantizes `src` (a whole number of super-blocks) into `dst` (`src.len() / 256 * 176` bytes).
#[inline(always)]
pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(BLOCK),
        "Q5_K rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK * BLOCK_BYTES,
        "Q5_K output length"
    );
    for (x, out) in src
        .chunks_exact(BLOCK)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut l = [0u8; BLOCK];
        super::q4_k::levels(x, 31, -0.5, 0.1, 15, &mut out[..16], &mut l);
        let (qh, qs) = out[16..].split_at_mut(32);
        qh.fill(0);
        for c in 0..4 {
            for i in 0..32 {
                let (l1, l2) = (l[64 * c + i], l[64 * c + i + 32]);
                qh[i] |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1));
                qs[32 * c + i] = (l1 & 15) | ((l2 & 15) << 4);
            }
        }
    }
}

/// Dequantizes `src` (whole super-blocks) into `dst` (`src.len() / 176 * 256` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q5_K", BLOCK, BLOCK_BYTES, src, dst) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, m) = scales_mins(&b[4..16]);
        let (qh, qs) = (&b[16..48], &b[48..]);
        for (j, o) in out.chunks_exact_mut(32).enumerate() {
            let dl = d * sc[j] as f32;
            let ml = dmin * m[j] as f32;
            let (ql, shift) = (&qs[32 * (j / 2)..][..32], 4 * (j % 2));
            for ((o, &l), &h) in o.iter_mut().zip(ql).zip(qh) {
                let q = ((l >> shift) & 15) + if (h >> j) & 1 == 1 { 16 } else { 0 };
                *o = dl * q as f32 - ml;
            }
        }
    }
}
