//! GGUF Q4_0: blocks of 32 weights in 18 bytes, `f16 d` then 16 bytes of nibbles: element `j`
//! is the low nibble of byte `j`, element `j + 16` its high nibble; `x = d * (q - 8)`.
//!
//! Quantization is gguf-py's `Q4_0.quantize_blocks` (llama.cpp's `quantize_row_q4_0_ref`)
//! operation for operation: `max` is the first element of largest magnitude (with its sign),
//! `d = max / -8`, `q = min(15, trunc(x * (1 / d) + 8.5))` in f32.

use half::f16;

/// Elements per block.
pub const BLOCK: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;

/// Quantizes `src` (a whole number of blocks) into `dst` (`src.len() / 32 * 18` bytes).
#[inline(always)]
pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(BLOCK),
        "Q4_0 rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK * BLOCK_BYTES,
        "Q4_0 output length"
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
    // numpy's argmax of |x|: the first index of the largest magnitude (an all-zero block
    // keeps max = +0, as the C loop that only takes strictly larger values does).
    let amax = super::amax(x);
    let max = if amax > 0.0 {
        x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0)
    } else {
        0.0
    };
    let d = max / -8.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    // gguf-py: trunc, cast to uint8, clip to 15; `x * id + 8.5` lies in [0.49, 16.5].
    let q = |v: f32| super::trunc_pos(v * id + 8.5).clamp(0, 15) as u8;
    for j in 0..BLOCK / 2 {
        out[2 + j] = q(x[j]) | (q(x[j + 16]) << 4);
    }
}

/// Dequantizes `src` (whole blocks) into `dst` (`src.len() / 18 * 32` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    assert!(
        src.len().is_multiple_of(BLOCK_BYTES),
        "Q4_0 rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK_BYTES * BLOCK,
        "Q4_0 output length"
    );
    for (b, out) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK))
    {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        for (j, &q) in b[2..].iter().enumerate() {
            out[j] = d * ((q & 15) as i32 - 8) as f32;
            out[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
        }
    }
}
