//! Scalar products of the I-quant grid types (the twins of the AVX-512 kernels in
//! `x86q/iq.rs`) with activation blocks of 256 ([`AK`], `qs` in natural order, no offset).
//!
//! Every weight is `db * g * sign` with `g` an unsigned level of a lattice point (8 values per
//! IQ2 grid entry, 4 per IQ3 one), the sign a bit per weight, and `db = d * ls * f` with an odd
//! integer sub-block scale `ls = 2s + 1` and a power of two `f` (as `frugal_quant::iq2`/`iq3`
//! dequantize: `d * (0.5 + s) * 0.25 = d * ls / 8`). So a block's product is
//! `d * f * dx * sum_j ls_j * sum(sign * g * x)_j` in exact integers, as llama.cpp's
//! `ggml_vec_dot_iq2_xxs_q8_K` and its siblings compute it:
//!
//! - IQ2_XXS: `f = 1/8`, `ls` per sub-block of 32, signs through `KSIGNS_IQ2XS`.
//! - IQ2_XS, IQ2_S: `f = 1/8`, `ls` per sub-block of 16.
//! - IQ3_XXS: `f = 1/4`, `ls` per sub-block of 32, signs through `KSIGNS_IQ2XS`.
//! - IQ3_S: `f = 1`, `ls` per sub-block of 32.
//!
//! Each type unpacks a block into one [`Grid`] (levels, sign bits, scales); one loop multiplies.

use super::AK;
use crate::DType;
use frugal_quant::tables::{
    IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
};
use half::f16;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// One block as the kernels see it: the unsigned levels, the signs (bit `j` of `signs[g]`
/// negates value `8g + j`) and the integer scales `ls` of its sub-blocks (8 of 32 or 16 of 16,
/// `sub` values each).
struct Grid {
    lv: [u8; 256],
    signs: [u8; 32],
    ls: [i32; 16],
    sub: usize,
}

/// Group `g`'s 8 levels from an IQ2 grid entry.
fn put8(lv: &mut [u8; 256], g: usize, e: u64) {
    lv[8 * g..8 * g + 8].copy_from_slice(&e.to_le_bytes());
}

/// Entry `e`'s 4 levels from an IQ3 grid entry.
fn put4(lv: &mut [u8; 256], e: usize, v: u32) {
    lv[4 * e..4 * e + 4].copy_from_slice(&v.to_le_bytes());
}

/// IQ2_XXS, 66 bytes: per sub-block of 32 a `u32` of 4 grid indices and a `u32` of 4 sign
/// indices (7 bits each, through `KSIGNS_IQ2XS`) and the scale `s` in bits 28..32.
fn iq2_xxs(b: &[u8], o: &mut Grid) {
    o.sub = 32;
    for ib in 0..8 {
        let aux = u32_at(b, 6 + 8 * ib);
        for l in 0..4 {
            put8(
                &mut o.lv,
                4 * ib + l,
                IQ2XXS_GRID[b[2 + 8 * ib + l] as usize],
            );
            o.signs[4 * ib + l] = KSIGNS_IQ2XS[(aux >> (7 * l) & 127) as usize];
        }
        o.ls[ib] = 2 * (aux >> 28) as i32 + 1;
    }
}

/// The 16 scales `2s + 1` of sub-blocks of 16 from 8 bytes, low nibble first.
fn scales16(s: &[u8], ls: &mut [i32; 16]) {
    for (j, l) in ls.iter_mut().enumerate() {
        *l = 2 * (s[j / 2] >> (4 * (j % 2)) & 15) as i32 + 1;
    }
}

/// IQ2_XS, 74 bytes: `u16` per group (9-bit index into `IQ2XS_GRID`, 7-bit sign index), the
/// scales of sub-blocks of 16 in 8 bytes.
fn iq2_xs(b: &[u8], o: &mut Grid) {
    o.sub = 16;
    for g in 0..32 {
        let q = u16::from_le_bytes([b[2 + 2 * g], b[3 + 2 * g]]);
        put8(&mut o.lv, g, IQ2XS_GRID[(q & 511) as usize]);
        o.signs[g] = KSIGNS_IQ2XS[(q >> 9) as usize];
    }
    scales16(&b[66..74], &mut o.ls);
}

/// IQ2_S, 82 bytes: the low 8 index bits of each group, its 8 sign bits, 2 high index bits
/// per group (4 groups a byte), the scales of sub-blocks of 16.
fn iq2_s(b: &[u8], o: &mut Grid) {
    o.sub = 16;
    for g in 0..32 {
        let idx = b[2 + g] as usize | (b[66 + g / 4] as usize >> (2 * (g % 4)) & 3) << 8;
        put8(&mut o.lv, g, IQ2S_GRID[idx]);
    }
    o.signs.copy_from_slice(&b[34..66]);
    scales16(&b[74..82], &mut o.ls);
}

/// IQ3_XXS, 98 bytes: a byte index into `IQ3XXS_GRID` per 4 values, then per sub-block of 32
/// a `u32` of 4 sign indices (7 bits each) and the scale in bits 28..32.
fn iq3_xxs(b: &[u8], o: &mut Grid) {
    o.sub = 32;
    for e in 0..64 {
        put4(&mut o.lv, e, IQ3XXS_GRID[b[2 + e] as usize]);
    }
    for ib in 0..8 {
        let aux = u32_at(b, 66 + 4 * ib);
        for l in 0..4 {
            o.signs[4 * ib + l] = KSIGNS_IQ2XS[(aux >> (7 * l) & 127) as usize];
        }
        o.ls[ib] = 2 * (aux >> 28) as i32 + 1;
    }
}

/// IQ3_S, 110 bytes: the low 8 bits of a 9-bit index into `IQ3S_GRID` per 4 values, their
/// ninth bits (bit `e % 8` of byte `e / 8`), a sign bit per value, a 4-bit scale per
/// sub-block of 32 (low nibble first).
fn iq3_s(b: &[u8], o: &mut Grid) {
    o.sub = 32;
    for e in 0..64 {
        let idx = b[2 + e] as usize | (b[66 + e / 8] as usize >> (e % 8) & 1) << 8;
        put4(&mut o.lv, e, IQ3S_GRID[idx]);
    }
    o.signs.copy_from_slice(&b[74..106]);
    for ib in 0..8 {
        o.ls[ib] = 2 * (b[106 + ib / 2] >> (4 * (ib % 2)) & 15) as i32 + 1;
    }
}

/// Whether `dtype` is one of this file's types.
pub(crate) fn is_grid(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::IQ2_XXS | DType::IQ2_XS | DType::IQ2_S | DType::IQ3_XXS | DType::IQ3_S
    )
}

/// A row of `dtype` (one of [`is_grid`]'s) times activation blocks.
pub(crate) fn dot_iq(dtype: DType, row: &[u8], a: &[AK]) -> f32 {
    let (unpack, f): (fn(&[u8], &mut Grid), f32) = match dtype {
        DType::IQ2_XXS => (iq2_xxs, 0.125),
        DType::IQ2_XS => (iq2_xs, 0.125),
        DType::IQ2_S => (iq2_s, 0.125),
        DType::IQ3_XXS => (iq3_xxs, 0.25),
        DType::IQ3_S => (iq3_s, 1.0),
        d => unreachable!("{} is not a grid I-quant", d.name()),
    };
    let mut o = Grid {
        lv: [0; 256],
        signs: [0; 32],
        ls: [0; 16],
        sub: 32,
    };
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(dtype.block_bytes()).zip(a) {
        unpack(b, &mut o);
        let mut sums = [0i32; 16];
        for (i, (&g, &x)) in o.lv.iter().zip(&x.qs).enumerate() {
            let p = g as i32 * x as i32;
            sums[i / o.sub] += if o.signs[i / 8] >> (i % 8) & 1 != 0 {
                -p
            } else {
                p
            };
        }
        let isum: i32 = sums.iter().zip(&o.ls).map(|(s, l)| s * l).sum();
        acc += (f16_at(b, 0) * f * x.d) * isum as f32;
    }
    acc
}
