//! GGUF Q4_1: blocks of 32 weights in 20 bytes, `f16 d`, `f16 m`, then `qs[16]` nibbles: the
//! low nibble of `qs[j]` is weight `j`, the high nibble weight `j + 16`; `x = d * q + m` with
//! `q` in `0..16`.
//!
//! Dequantization is llama.cpp's `dequantize_row_q4_1` (and gguf-py's): the product `q * d`
//! rounded to f32, then `m` added.

use super::{blocks_of, f16_at};

/// Elements per block.
pub const BLOCK: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 20;

/// Dequantizes `src` (whole blocks) into `dst` (`src.len() / 20 * 32` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q4_1", BLOCK, BLOCK_BYTES, src, dst) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let (lo, hi) = out.split_at_mut(16);
        for ((&q, l), h) in b[4..].iter().zip(lo).zip(hi) {
            *l = (q & 15) as f32 * d + m;
            *h = (q >> 4) as f32 * d + m;
        }
    }
}
