//! GGUF Q5_0 and Q5_1: blocks of 32 weights with a fifth bit per weight apart.
//!
//! - Q5_0, 22 bytes: `f16 d`, `qh[4]`, `qs[16]`; `x = d * (q - 16)`.
//! - Q5_1, 24 bytes: `f16 d`, `f16 m`, `qh[4]`, `qs[16]`; `x = d * q + m`.
//!
//! `q` in `0..32`: the low nibble of `qs[j]` and bit `j` of the little-endian `u32` `qh` make
//! weight `j`; the high nibble of `qs[j]` and bit `j + 16` make weight `j + 16`.
//!
//! Quantization is llama.cpp's `quantize_row_q5_0_ref` / `_q5_1_ref` (what `llama-quantize`
//! runs without an importance matrix), operation for operation:
//! - Q5_0: `max` the first element of largest magnitude (with its sign), `d = max / -16`,
//!   `q = min(31, trunc(x * (1 / d) + 16.5))` in f32.
//! - Q5_1: `d = (max - min) / 31`, `m = min`, `q = trunc((x - min) * (1 / d) + 0.5)` in f32.
//!
//! Dequantization is llama.cpp's `dequantize_row_q5_0` / `_q5_1` (and gguf-py's): the product
//! rounded to f32, then (Q5_1) `m` added.

use super::{blocks_of, f16_at, trunc_pos};
use half::f16;

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

/// Packs 32 levels (`0..32`) into `qh` (the fifth bits, a little-endian `u32`) and `qs`.
#[inline(always)]
fn pack(q: &[u8; BLOCK], qh: &mut [u8], qs: &mut [u8]) {
    let mut h = 0u32;
    for j in 0..16 {
        let (a, b) = (q[j], q[j + 16]);
        qs[j] = (a & 15) | ((b & 15) << 4);
        h |= u32::from((a >> 4) & 1) << j;
        h |= u32::from((b >> 4) & 1) << (j + 16);
    }
    qh[..4].copy_from_slice(&h.to_le_bytes());
}

/// Quantizes `src` (whole blocks of 32) into Q5_0 `dst` (`src.len() / 32 * 22` bytes).
#[inline(always)]
pub fn quantize_row_0(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(BLOCK),
        "Q5_0 rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK * BLOCK_BYTES_0,
        "Q5_0 output length"
    );
    for (x, out) in src
        .chunks_exact(BLOCK)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES_0))
    {
        // The C loop takes only strictly larger magnitudes: the first of the largest.
        let amax = super::amax(x);
        let max = if amax > 0.0 {
            x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0)
        } else {
            0.0
        };
        let d = max / -16.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        // `x * id + 16.5` lies in [0.5, 32.5]: C's `(int8_t)` truncation, then at most 31.
        let mut q = [0u8; BLOCK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = trunc_pos(v * id + 16.5).clamp(0, 31) as u8;
        }
        let (qh, qs) = out[2..].split_at_mut(4);
        pack(&q, qh, qs);
    }
}

/// Quantizes `src` (whole blocks of 32) into Q5_1 `dst` (`src.len() / 32 * 24` bytes).
#[inline(always)]
pub fn quantize_row_1(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(BLOCK),
        "Q5_1 rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK * BLOCK_BYTES_1,
        "Q5_1 output length"
    );
    for (x, out) in src
        .chunks_exact(BLOCK)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES_1))
    {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        out[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
        // `(x - min) * id + 0.5` lies in [0.5, 31.5): C's `(uint8_t)` truncation, unclamped.
        let mut q = [0u8; BLOCK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = trunc_pos((v - min) * id + 0.5) as u8;
        }
        let (qh, qs) = out[4..].split_at_mut(4);
        pack(&q, qh, qs);
    }
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
