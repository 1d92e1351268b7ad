//! GGUF Q2_0: blocks of 64 weights in 18 bytes, `f16 d` then `qs[16]`, two bits per weight
//! (bits `2 (j % 4)..` of `qs[j / 4]`): weight `(q - 1) * d`, `q` in `0..4` (-1, 0, +1, +2).
//!
//! As llama.cpp's `dequantize_row_q2_0` (gguf-py has no Q2_0).

use super::{blocks_of, f16_at};

/// Elements per block.
pub const BLOCK: usize = 64;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;

/// Dequantizes `src` (whole blocks) into `dst` (`src.len() / 18 * 64` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q2_0", BLOCK, BLOCK_BYTES, src, dst) {
        let d = f16_at(b, 0);
        for (j, o) in out.iter_mut().enumerate() {
            let q = (b[2 + j / 4] >> (2 * (j % 4))) & 3;
            *o = (q as i32 - 1) as f32 * d;
        }
    }
}
