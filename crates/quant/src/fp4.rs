//! GGUF MXFP4 and NVFP4: 4-bit E2M1 values (`KVALUES_FP4`, doubled so they are integers) times
//! a power-of-two or E4M3 scale that ggml halves to make up for the doubling. Nibbles ordered
//! as Q4_0's within each group (low nibbles first, then high).
//!
//! - MXFP4, blocks of 32 in 17 bytes: an E8M0 exponent `e`, `qs[16]`. ggml's
//!   `GGML_E8M0_TO_FP32_HALF`: `2^(e - 128)` built from its bits (subnormal for `e < 2`; 255 is
//!   `2^127`, not NaN).
//! - NVFP4, blocks of 64 in 36 bytes: four UE4M3 scales (one per 16 weights), `qs[32]` (8
//!   bytes per 16 weights). ggml's `ggml_ue4m3_to_fp32`: 0 for `0x00` and `0x7F`, else exponent
//!   bits 3..7 (bias 7, bit 7 ignored) and 3 mantissa bits, subnormal when the exponent is 0,
//!   times 0.5. Every such value is exact in f32.
//!
//! Weight: `level * scale` in f32, as llama.cpp's `dequantize_row_mxfp4` / `_nvfp4` (and
//! gguf-py's).

use super::blocks_of;
use super::tables::KVALUES_FP4;

/// Elements per MXFP4 block.
pub const BLOCK_MX: usize = 32;
/// Bytes per MXFP4 block.
pub const BLOCK_BYTES_MX: usize = 17;
/// Elements per NVFP4 block.
pub const BLOCK_NV: usize = 64;
/// Bytes per NVFP4 block.
pub const BLOCK_BYTES_NV: usize = 36;

/// ggml's `ggml_e8m0_to_fp32_half`: `0.5 * 2^(e - 127)`.
#[inline]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        ((e - 1) as u32) << 23
    };
    f32::from_bits(bits)
}

/// ggml's `ggml_ue4m3_to_fp32`: the unsigned E4M3 value times 0.5.
#[inline]
pub fn ue4m3_to_f32_half(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let (exp, man) = ((x >> 3) & 15, (x & 7) as f32);
    let raw = if exp == 0 {
        man * f32::from_bits((127 - 9) << 23) // man * 2^-9
    } else {
        (1.0 + man / 8.0) * f32::from_bits(((exp as u32) + 127 - 7) << 23)
    };
    raw * 0.5
}

/// `2 * len(qs)` weights `level * d` from nibbles, low nibbles first.
#[inline(always)]
fn nibbles(out: &mut [f32], d: f32, qs: &[u8]) {
    let (lo, hi) = out.split_at_mut(qs.len());
    for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
        *l = KVALUES_FP4[(q & 15) as usize] as f32 * d;
        *h = KVALUES_FP4[(q >> 4) as usize] as f32 * d;
    }
}

/// Dequantizes MXFP4 `src` (whole blocks) into `dst` (`src.len() / 17 * 32` values).
pub fn dequantize_row_mx(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("MXFP4", BLOCK_MX, BLOCK_BYTES_MX, src, dst) {
        nibbles(out, e8m0_to_f32_half(b[0]), &b[1..]);
    }
}

/// Dequantizes NVFP4 `src` (whole blocks) into `dst` (`src.len() / 36 * 64` values).
pub fn dequantize_row_nv(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("NVFP4", BLOCK_NV, BLOCK_BYTES_NV, src, dst) {
        for (s, o) in out.chunks_exact_mut(16).enumerate() {
            nibbles(o, ue4m3_to_f32_half(b[s]), &b[4 + 8 * s..4 + 8 * s + 8]);
        }
    }
}
