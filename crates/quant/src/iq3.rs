//! GGUF IQ3_XXS and IQ3_S: super-blocks of 256 weights as 64 groups of 4, each group a lattice
//! point (4 magnitudes, from [`crate::tables`]), with signs per 8 weights and scales per sub-block:
//!
//! - IQ3_XXS, 98 bytes: `f16 d`, `qs[64]` (a byte index into `IQ3XXS_GRID` per group of 4),
//!   then per sub-block of 32 a little-endian `u32`: 4 sign indices of 7 bits (bits
//!   `7l..7l + 7`, through `KSIGNS_IQ2XS`) and the 4-bit scale `s` in bits 28..32;
//!   `db = d * (0.5 + s) * 0.5`.
//! - IQ3_S, 110 bytes: `f16 d`, `qs[64]` (low 8 bits of 9-bit indices into `IQ3S_GRID`),
//!   `qh[8]` (the ninth bits: bit `k` of `qh[ib]` for group `8 ib + k`), `signs[32]` (a sign
//!   bit per weight), `scales[4]` (a 4-bit scale `s` per sub-block of 32, low nibble first);
//!   `db = d * (1 + 2 s)`.
//!
//! Weight `j` is `(db * grid[j]) * (-1 if its sign bit else 1)`, as llama.cpp's
//! `dequantize_row_iq3_*` computes it (gguf-py's `dequantize` equals it).

use super::tables::{IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};
use super::{blocks_of, f16_at};

/// Elements per super-block (both types).
pub const BLOCK: usize = 256;
/// Bytes per IQ3_XXS super-block.
pub const BLOCK_BYTES_XXS: usize = 98;
/// Bytes per IQ3_S super-block.
pub const BLOCK_BYTES_S: usize = 110;

/// 8 weights from two grid entries of 4 and 8 sign bits.
#[inline(always)]
fn group8(out: &mut [f32], db: f32, g1: u32, g2: u32, signs: u8) {
    let mut g = [0u8; 8];
    g[..4].copy_from_slice(&g1.to_le_bytes());
    g[4..].copy_from_slice(&g2.to_le_bytes());
    for ((o, g), m) in out.iter_mut().zip(g).zip(KMASK_IQ2XS) {
        let s = if signs & m != 0 { -1f32 } else { 1f32 };
        *o = db * g as f32 * s;
    }
}

/// Dequantizes IQ3_XXS `src` (whole super-blocks) into `dst` (`src.len() / 98 * 256` values).
pub fn dequantize_row_xxs(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ3_XXS", BLOCK, BLOCK_BYTES_XXS, src, dst) {
        let d = f16_at(b, 0);
        let (qs, sas) = (&b[2..66], &b[66..98]);
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let s = &sas[4 * ib..];
            let aux = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            let q = &qs[8 * ib..][..8];
            for (l, o) in o.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let (g1, g2) = (
                    IQ3XXS_GRID[q[2 * l] as usize],
                    IQ3XXS_GRID[q[2 * l + 1] as usize],
                );
                group8(o, db, g1, g2, signs);
            }
        }
    }
}

/// Dequantizes IQ3_S `src` (whole super-blocks) into `dst` (`src.len() / 110 * 256` values).
pub fn dequantize_row_s(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ3_S", BLOCK, BLOCK_BYTES_S, src, dst) {
        let d = f16_at(b, 0);
        let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let s = (scales[ib / 2] >> (4 * (ib % 2))) & 15;
            let db = d * (1 + 2 * s as i32) as f32;
            let (q, h) = (&qs[8 * ib..][..8], qh[ib] as usize);
            for (l, o) in o.chunks_exact_mut(8).enumerate() {
                let i1 = q[2 * l] as usize | ((h << (8 - 2 * l)) & 256);
                let i2 = q[2 * l + 1] as usize | ((h << (7 - 2 * l)) & 256);
                group8(o, db, IQ3S_GRID[i1], IQ3S_GRID[i2], signs[4 * ib + l]);
            }
        }
    }
}
