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
//! - IQ2_XXS: `f = 1/8`, `ls` per sub-block of 32.

use super::qmat::AK;
use frugal_quant::tables::{IQ2XXS_GRID, KSIGNS_IQ2XS};
use half::f16;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// `sum(sign * g * x)` of one group: levels `g`, bit `j` of `signs` negating weight `j`.
#[inline(always)]
fn group_dot(g: &[u8], signs: u8, x: &[i8]) -> i32 {
    let mut s = 0i32;
    for (j, (&g, &x)) in g.iter().zip(x).enumerate() {
        let p = g as i32 * x as i32;
        s += if signs >> j & 1 != 0 { -p } else { p };
    }
    s
}

/// IQ2_XXS row (`66 * a.len()` bytes) times activation blocks: per sub-block of 32 a `u32` of
/// 4 grid indices and a `u32` of 4 sign indices (7 bits each, through `KSIGNS_IQ2XS`) and the
/// scale `s` in bits 28..32.
pub(crate) fn dot_iq2_xxs(row: &[u8], a: &[AK]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(66).zip(a) {
        let mut isum = 0i32;
        for ib in 0..8 {
            let (q, aux) = (&b[2 + 8 * ib..][..4], u32_at(b, 6 + 8 * ib));
            let mut s = 0i32;
            for (l, &qi) in q.iter().enumerate() {
                let g = IQ2XXS_GRID[qi as usize].to_le_bytes();
                let signs = KSIGNS_IQ2XS[(aux >> (7 * l) & 127) as usize];
                s += group_dot(&g, signs, &x.qs[32 * ib + 8 * l..][..8]);
            }
            isum += (2 * (aux >> 28) as i32 + 1) * s;
        }
        acc += (f16_at(b, 0) * 0.125 * x.d) * isum as f32;
    }
    acc
}
