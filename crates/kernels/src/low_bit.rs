//! The low-bit block types (ternary TQ2_0) by integer dot products: their activation layouts
//! and scalar twins, as `qmat.rs` has them for the others. Every weight block meets int8
//! activations in exact integer sums and only the block's result is scaled in f32:
//!
//! - TQ2_0: `d * dx * (sum(q * x) - sum(x))` over the super-block, `q` the 2-bit level in
//!   `0..4` (weight `q - 1`), activations in Q2_K's order ([`q2_pos`]: TQ2_0's levels are laid
//!   out as Q2_K's), the `-1` through the block's sum.
//!
//! The AVX-512 kernels are in `x86q/low_bit.rs`.

use super::qmat::{q2_pos, AK};
use half::f16;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `sum(x)` of an activation block of 256.
#[inline(always)]
pub(crate) fn ak_sum(x: &AK) -> i32 {
    x.bsums16.iter().map(|&s| s as i32).sum()
}

/// TQ2_0 row (`66 * a.len()` bytes) times activation blocks ([`super::qmat::quantize_k`] for
/// TQ2_0): bits `2k..2k + 2` of `qs[32h + l]` are value `128h + 32k + l`.
pub(crate) fn dot_tq2_0(row: &[u8], a: &[AK]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(66).zip(a) {
        let mut isum = -ak_sum(x);
        for c in 0..16 {
            let xs = &x.qs[16 * q2_pos(c)..][..16];
            for (i, &xv) in xs.iter().enumerate() {
                let e = 16 * c + i;
                let q = (b[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                isum += q as i32 * xv as i32;
            }
        }
        acc += (f16_at(b, 64) * x.d) * isum as f32;
    }
    acc
}
