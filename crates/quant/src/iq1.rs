//! GGUF IQ1_S and IQ1_M: super-blocks of 256 weights as 32 groups of 8, each group a ternary
//! lattice point (8 values in `-1..=1`, `IQ1S_GRID`, 11-bit index) shifted by `±IQ1S_DELTA`,
//! scaled per sub-block:
//!
//! - IQ1_S, 50 bytes: `f16 d`, `qs[32]` (low 8 index bits per group), `u16 qh[8]` (per
//!   sub-block of 32: 3 high index bits per group in bits `3l..3l + 3`, the 3-bit scale `s` in
//!   bits 12..15, the sign of the shift in bit 15); weight `(d * (2 s + 1)) * (g + delta)`.
//! - IQ1_M, 56 bytes: `qs[32]`, `qh[16]` (per pair of groups: 3 high index bits and the sign
//!   of the shift, a nibble each), `scales[8]` as four little-endian `u16`: twelve bits of
//!   3-bit scales per sub-block pair (one per 16 weights) and, in their top nibbles, the f16
//!   super-block scale (top nibble of the `u16` `k` is bits `4k..4k + 4` of it).
//!
//! As llama.cpp's `dequantize_row_iq1_s` / `_iq1_m` compute them (gguf-py's `dequantize`
//! equals them): `g + delta` in f32, then times the sub-block scale.

use super::tables::{IQ1S_DELTA, IQ1S_GRID};
use super::{blocks_of, f16_at};
use half::f16;

/// Elements per super-block (both types).
pub const BLOCK: usize = 256;
/// Bytes per IQ1_S super-block.
pub const BLOCK_BYTES_S: usize = 50;
/// Bytes per IQ1_M super-block.
pub const BLOCK_BYTES_M: usize = 56;

/// 8 weights: `dl * (grid[j] + delta)`.
#[inline(always)]
fn group8(out: &mut [f32], dl: f32, idx: usize, delta: f32) {
    for (o, g) in out.iter_mut().zip(IQ1S_GRID[idx].to_le_bytes()) {
        *o = dl * (g as i8 as f32 + delta);
    }
}

/// Dequantizes IQ1_S `src` (whole super-blocks) into `dst` (`src.len() / 50 * 256` values).
pub fn dequantize_row_s(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ1_S", BLOCK, BLOCK_BYTES_S, src, dst) {
        let d = f16_at(b, 0);
        let qs = &b[2..34];
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let qh = u16::from_le_bytes([b[34 + 2 * ib], b[35 + 2 * ib]]) as usize;
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (l, o) in o.chunks_exact_mut(8).enumerate() {
                let idx = qs[4 * ib + l] as usize | (((qh >> (3 * l)) & 7) << 8);
                group8(o, dl, idx, delta);
            }
        }
    }
}

/// The f16 super-block scale of an IQ1_M block, from the top nibbles of its four scale words.
#[inline]
pub fn iq1_m_scale(sc: &[u16; 4]) -> f32 {
    let bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    f16::from_bits(bits).to_f32()
}

/// Dequantizes IQ1_M `src` (whole super-blocks) into `dst` (`src.len() / 56 * 256` values).
pub fn dequantize_row_m(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ1_M", BLOCK, BLOCK_BYTES_M, src, dst) {
        let (qs, qh) = (&b[..32], &b[32..48]);
        let sc: [u16; 4] =
            std::array::from_fn(|k| u16::from_le_bytes([b[48 + 2 * k], b[49 + 2 * k]]));
        let d = iq1_m_scale(&sc);
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let w = sc[ib / 2] as usize;
            let shift = 6 * (ib % 2);
            let dl = [
                d * (2 * ((w >> shift) & 7) + 1) as f32,
                d * (2 * ((w >> (shift + 3)) & 7) + 1) as f32,
            ];
            for (l, o) in o.chunks_exact_mut(8).enumerate() {
                let h = qh[2 * ib + l / 2] >> (4 * (l % 2));
                let idx = qs[4 * ib + l] as usize | (((h & 7) as usize) << 8);
                let delta = if h & 0x08 != 0 {
                    -IQ1S_DELTA
                } else {
                    IQ1S_DELTA
                };
                group8(o, dl[l / 2], idx, delta);
            }
        }
    }
}
