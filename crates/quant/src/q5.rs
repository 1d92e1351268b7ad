//! GGUF Q5_0 and Q5_1: blocks of 32 weights with a fifth bit per weight apart.
//!
//! - Q5_0, 22 bytes: `f16 d`, `qh[4]`, `qs[16]`; `x = d * (q - 16)`.
//! - Q5_1, 24 bytes: `f16 d`, `f16 m`, `qh[4]`, `qs[16]`; `x = d * q + m`.
//!
//! `q` in `0..32`: the low nibble of `qs[j]` and bit `j` of the little-endian `u32` `qh` make
//! weight `j`; the high nibble of `qs[j]` and bit `j + 16` make weight `j + 16`.
//!
//! Dequantization is llama.cpp's `dequantize_row_q5_0` / `_q5_1` (and gguf-py's): the product
//! rounded to f32, then (Q5_1) `m` added.

use super::{blocks_of, f16_at};

/// Elements per block (both types).
pub const BLOCK: usize = 32;
/// Bytes per Q5_0 block.
pub const BLOCK_BYTES_0: usize = 22;
/// Bytes per Q5_1 block.
pub const BLOCK_BYTES_1: usize = 24;

/// The 5-bit values of a block from `qh` and `qs`.
#[inline(always)]
fn levels(qh: &[u8], qs: &[u8]) -> [u8; BLOCK] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; BLOCK];
    for (j, &b) in qs[..16].iter().enumerate() {
        q[j] = (b & 15) | (((qh >> j) << 4) & 0x10) as u8;
        q[j + 16] = (b >> 4) | ((qh >> (j + 12)) & 0x10) as u8;
    }
    q
}

/// Dequantizes Q5_0 `src` (whole blocks) into `dst` (`src.len() / 22 * 32` values).
pub fn dequantize_row_0(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q5_0", BLOCK, BLOCK_BYTES_0, src, dst) {
        let d = f16_at(b, 0);
        for (o, q) in out.iter_mut().zip(levels(&b[2..6], &b[6..])) {
            *o = (q as i32 - 16) as f32 * d;
        }
    }
}

/// Dequantizes Q5_1 `src` (whole blocks) into `dst` (`src.len() / 24 * 32` values).
pub fn dequantize_row_1(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("Q5_1", BLOCK, BLOCK_BYTES_1, src, dst) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for (o, q) in out.iter_mut().zip(levels(&b[4..8], &b[8..])) {
            *o = q as f32 * d + m;
        }
    }
}
