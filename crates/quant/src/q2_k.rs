//! GGUF Q2_K: super-blocks of 256 weights in 84 bytes: `scales[16]` (one byte per sub-block
//! of 16: the scale in the low nibble, the min in the high), `qs[64]` (2-bit values), `f16 d`,
//! `f16 dmin`. Weight `i` of sub-block `s` is `(d * sc[s]) * q - dmin * m[s]`.
//!
//! Bit order: each half of 128 weights uses 32 bytes of `qs`; within a half, bits `2k..2k+2`
//! of `qs[l]` are weight `32k + l` (`l < 32`). So sub-block `s` of a half is the bit pair
//! `s / 2` of bytes `16 * (s % 2)..` of that half.
//!
//! Dequantization is llama.cpp's `dequantize_row_q2_K` (and gguf-py's): both products rounded
//! to f32, then subtracted.

use super::{blocks_of, f16_at};

/// Elements per super-block.
pub const BLOCK: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 84;

/// Dequantizes `src` (whole super-blocks) into `dst` (`src.len() / 84 * 256` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q2_K", BLOCK, BLOCK_BYTES, src, dst) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (s, o) in out.chunks_exact_mut(16).enumerate() {
            let (half, k, part) = (s / 8, (s % 8) / 2, s % 2);
            let dl = d * (scales[s] & 15) as f32;
            let ml = dmin * (scales[s] >> 4) as f32;
            let q = &qs[32 * half + 16 * part..][..16];
            for (o, &q) in o.iter_mut().zip(q) {
                *o = dl * ((q >> (2 * k)) & 3) as f32 - ml;
            }
        }
    }
}
