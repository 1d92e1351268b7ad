//! GGUF Q1_0: blocks of 128 weights in 18 bytes, `f16 d` then `qs[16]`, one bit per weight
//! (bit `j % 8` of `qs[j / 8]`): weight `d` where the bit is set, `-d` where it is clear.
//!
//! As llama.cpp's `dequantize_row_q1_0` (gguf-py has no Q1_0).

use super::{blocks_of, f16_at};

/// Elements per block.
pub const BLOCK: usize = 128;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;

/// Dequantizes `src` (whole blocks) into `dst` (`src.len() / 18 * 128` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q1_0", BLOCK, BLOCK_BYTES, src, dst) {
        let d = f16_at(b, 0);
        for (j, o) in out.iter_mut().enumerate() {
            *o = if (b[2 + j / 8] >> (j % 8)) & 1 == 1 {
                d
            } else {
                -d
            };
        }
    }
}
