//! GGUF Q6_K: super-blocks of 256 weights in 210 bytes: `ql[128]` (low 4 bits), `qh[64]`
//! (high 2 bits), `int8 scales[16]` (one per sub-block of 16), `f16 d`. Weight `e` is
//! `d * scales[e / 16] * (q - 32)` with `q` in `0..64`.
//!
//! Bit order, per half of 128 elements (`ql` 64 bytes, `qh` 32 bytes): for `l < 32`,
//! element `l` is `ql[l] & 15 | (qh[l] & 3) << 4`, element `l + 32` is
//! `ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4`, element `l + 64` is
//! `ql[l] >> 4 | (qh[l] >> 4 & 3) << 4`, element `l + 96` is `ql[l + 32] >> 4 | (qh[l] >> 6) << 4`.
//! So the low nibbles of `ql[0..64]` are elements `0..64` in order and the high nibbles
//! elements `64..128`.
//!
//! Quantization follows llama.cpp's `quantize_row_q6_K_ref`: `make_qx_quants` (weights `x^2`,
//! 19 candidate scales) per sub-block, the sub-block scales quantized to int8 against the
//! largest, then every value re-quantized. Dequantization equals gguf-py's
//! `Q6_K.dequantize_blocks`.

use super::{make_qx_quants, nearest_int, GROUP_MAX_EPS};
use half::f16;

/// Elements per super-block.
pub const BLOCK: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 210;

/// Quantizes `src` (a whole number of super-blocks) into `dst` (`src.len() / 256 * 210` bytes).
#[inline(always)]
pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(BLOCK),
        "Q6_K rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK * BLOCK_BYTES,
        "Q6_K output length"
    );
    for (x, out) in src
        .chunks_exact(BLOCK)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        quantize_block(x, out);
    }
}

#[inline(always)]
fn quantize_block(x: &[f32], out: &mut [u8]) {
    let mut l = [0i8; BLOCK];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for (ib, s) in scales.iter_mut().enumerate() {
        *s = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = *s;
        }
    }
    out.fill(0);
    if max_abs_scale < GROUP_MAX_EPS {
        return; // all zero, d = +0
    }
    let iscale = -128.0 / max_scale;
    let d16 = f16::from_f32(1.0 / iscale);
    out[208..210].copy_from_slice(&d16.to_le_bytes());
    let sc = &mut out[192..208];
    for (o, &s) in sc.iter_mut().zip(&scales) {
        *o = nearest_int(iscale * s).min(127) as i8 as u8;
    }
    let d = d16.to_f32();
    for j in 0..16 {
        let dj = d * (out[192 + j] as i8) as f32;
        if dj == 0.0 {
            continue;
        }
        for i in 0..16 {
            let q = nearest_int(x[16 * j + i] / dj).clamp(-32, 31);
            l[16 * j + i] = (q + 32) as i8;
        }
    }
    let (ql, rest) = out.split_at_mut(128);
    let qh = &mut rest[..64];
    for h in 0..2 {
        let (lq, ql, qh) = (&l[128 * h..], &mut ql[64 * h..], &mut qh[32 * h..]);
        for i in 0..32 {
            let q = |k: usize| lq[i + 32 * k] as u8;
            ql[i] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
            ql[i + 32] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
            qh[i] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
}

/// The 6-bit value (`0..64`) of element `e` of a Q6_K block.
#[inline]
pub fn q6(b: &[u8], e: usize) -> u8 {
    let (h, r) = (e / 128, e % 128);
    let (k, i) = (r / 32, r % 32);
    let lb = b[64 * h + i + 32 * (k & 1)];
    let lo = if k < 2 { lb & 0xF } else { lb >> 4 };
    let hi = (b[128 + 32 * h + i] >> (2 * k)) & 3;
    lo | (hi << 4)
}

/// Dequantizes `src` (whole super-blocks) into `dst` (`src.len() / 210 * 256` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    assert!(
        src.len().is_multiple_of(BLOCK_BYTES),
        "Q6_K rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK_BYTES * BLOCK,
        "Q6_K output length"
    );
    for (b, out) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK))
    {
        let d = f16::from_le_bytes([b[208], b[209]]).to_f32();
        for (e, o) in out.iter_mut().enumerate() {
            // gguf-py: (d * scale) * (q - 32), each product rounded to f32.
            let dl = d * (b[192 + e / 16] as i8) as f32;
            *o = dl * (q6(b, e) as i32 - 32) as f32;
        }
    }
}
