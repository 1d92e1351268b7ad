//! GGUF IQ2_XXS, IQ2_XS and IQ2_S: super-blocks of 256 weights as 32 groups of 8, each group a
//! lattice point (8 magnitudes of 8, 25 or 43, from [`crate::tables`]) with 8 signs, scaled per
//! sub-block of 32 (IQ2_XXS) or 16 (IQ2_XS, IQ2_S):
//!
//! - IQ2_XXS, 66 bytes: `f16 d`, then per sub-block of 32 two little-endian `u32`: the first
//!   holds 4 grid indices (a byte each, into `IQ2XXS_GRID`), the second 4 sign indices of 7 bits
//!   (bits `7l..7l + 7`, through `KSIGNS_IQ2XS`) and the 4-bit scale `s` in bits 28..32;
//!   `db = d * (0.5 + s) * 0.25`.
//! - IQ2_XS, 74 bytes: `f16 d`, `u16 qs[32]` (9-bit index into `IQ2XS_GRID`, 7-bit sign index
//!   above it), `scales[8]` (two 4-bit scales per sub-block of 32, low nibble first).
//! - IQ2_S, 82 bytes: `f16 d`, `qs[32]` (low 8 bits of the indices into `IQ2S_GRID`),
//!   `signs[32]` (8 sign bits per group), `qh[8]` (2 high index bits per group, 4 groups a
//!   byte), `scales[8]` (as IQ2_XS's).
//!
//! Weight `j` of a group is `(db * grid[j]) * (-1 if sign bit j else 1)`, as llama.cpp's
//! `dequantize_row_iq2_*` computes it (gguf-py's `dequantize` equals it).

use super::tables::{IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};
use super::{blocks_of, f16_at};

/// Elements per super-block (all three types).
pub const BLOCK: usize = 256;
/// Bytes per IQ2_XXS super-block.
pub const BLOCK_BYTES_XXS: usize = 66;
/// Bytes per IQ2_XS super-block.
pub const BLOCK_BYTES_XS: usize = 74;
/// Bytes per IQ2_S super-block.
pub const BLOCK_BYTES_S: usize = 82;

/// A group of 8: `db * grid[j]` with the sign of bit `j` of `signs`, multiplied as C does.
#[inline(always)]
pub(crate) fn group8(out: &mut [f32], db: f32, grid: u64, signs: u8) {
    for ((o, g), m) in out.iter_mut().zip(grid.to_le_bytes()).zip(KMASK_IQ2XS) {
        let s = if signs & m != 0 { -1f32 } else { 1f32 };
        *o = db * g as f32 * s;
    }
}

#[inline(always)]
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The two sub-block scales of a scale byte: `d * (0.5 + s) * 0.25`.
#[inline(always)]
fn half_scales(d: f32, s: u8) -> [f32; 2] {
    [
        d * (0.5 + (s & 15) as f32) * 0.25,
        d * (0.5 + (s >> 4) as f32) * 0.25,
    ]
}

/// Dequantizes IQ2_XXS `src` (whole super-blocks) into `dst` (`src.len() / 66 * 256` values).
pub fn dequantize_row_xxs(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ2_XXS", BLOCK, BLOCK_BYTES_XXS, src, dst) {
        let d = f16_at(b, 0);
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let q = &b[2 + 8 * ib..][..8];
            let aux1 = u32_at(q, 4);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for (l, o) in o.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                group8(o, db, IQ2XXS_GRID[q[l] as usize], signs);
            }
        }
    }
}

/// Dequantizes IQ2_XS `src` (whole super-blocks) into `dst` (`src.len() / 74 * 256` values).
pub fn dequantize_row_xs(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ2_XS", BLOCK, BLOCK_BYTES_XS, src, dst) {
        let d = f16_at(b, 0);
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let db = half_scales(d, b[66 + ib]);
            for (l, o) in o.chunks_exact_mut(8).enumerate() {
                let i = 2 + 2 * (4 * ib + l);
                let q = u16::from_le_bytes([b[i], b[i + 1]]);
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                group8(o, db[l / 2], IQ2XS_GRID[(q & 511) as usize], signs);
            }
        }
    }
}

/// Dequantizes IQ2_S `src` (whole super-blocks) into `dst` (`src.len() / 82 * 256` values).
pub fn dequantize_row_s(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ2_S", BLOCK, BLOCK_BYTES_S, src, dst) {
        let d = f16_at(b, 0);
        let (qs, signs, qh) = (&b[2..34], &b[34..66], &b[66..74]);
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let db = half_scales(d, b[74 + ib]);
            for (l, o) in o.chunks_exact_mut(8).enumerate() {
                let g = 4 * ib + l;
                let idx = qs[g] as usize | (((qh[ib] as usize) << (8 - 2 * l)) & 0x300);
                group8(o, db[l / 2], IQ2S_GRID[idx], signs[g]);
            }
        }
    }
}
