//! GGUF Q8_0: blocks of 32 weights in 34 bytes, `f16 d` then `int8 q[32]`; `x = d * q`.
//!
//! Quantization is gguf-py's `Q8_0.quantize_blocks` (itself llama.cpp's
//! `quantize_row_q8_0_ref`) operation for operation, so the bytes are equal: `d = amax / 127`
//! in f32, `q = round(x * (1 / d))` rounding halves away from zero, the scale stored as the
//! nearest f16 (ties to even) while the values were computed with the f32 `1 / d`.

use half::f16;

/// Elements per block.
pub const BLOCK: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 34;

/// Quantizes `src` (a whole number of blocks) into `dst` (`src.len() / 32 * 34` bytes).
#[inline(always)]
pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(BLOCK),
        "Q8_0 rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK * BLOCK_BYTES,
        "Q8_0 output length"
    );
    for (x, out) in src
        .chunks_exact(BLOCK)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        quantize_block(x.try_into().expect("block"), out);
    }
}

#[inline(always)]
fn quantize_block(x: &[f32; BLOCK], out: &mut [u8]) {
    let amax = super::amax(x);
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (o, &v) in out[2..].iter_mut().zip(x) {
        *o = super::round_away(v * id) as i8 as u8;
    }
}

/// Dequantizes `src` (whole blocks) into `dst` (`src.len() / 34 * 32` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    assert!(
        src.len().is_multiple_of(BLOCK_BYTES),
        "Q8_0 rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK_BYTES * BLOCK,
        "Q8_0 output length"
    );
    for (b, out) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK))
    {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        for (o, &q) in out.iter_mut().zip(&b[2..]) {
            *o = q as i8 as f32 * d;
        }
    }
}
