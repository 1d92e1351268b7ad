//! The low-bit block types (ternary TQ2_0 and TQ1_0, the lattice types IQ1_S and IQ1_M) by integer dot
//! products: their scalar twins, as `qmat.rs` has them for the others. Every weight block
//! meets int8 activations in exact integer sums and only the block's result is scaled in f32:
//!
//! - TQ2_0: `d * dx * (sum(q * x) - sum(x))` over the super-block, `q` the 2-bit level in
//!   `0..4` (weight `q - 1`), activations in Q2_K's order ([`q2_pos`]: TQ2_0's levels are laid
//!   out as Q2_K's), the `-1` through the block's sum.
//! - TQ1_0: the same with the base-3 digits `t` in `0..3` (weight `t - 1`; digit `n` of a
//!   byte `q` is `(3 * (q * 3^n mod 256)) >> 8`), activations in natural order.
//! - IQ1_S, IQ1_M (weights `d * ls * (g + delta)`, `g` in `-1..=1` from the grid, `delta` =
//!   `±1/8` per group of 8, `ls` odd in `1..16` per 32 (IQ1_S) or 16 (IQ1_M) values):
//!   `d * dx / 8 * sum_j ls_j * (8 * sum(g * x)_j + sum_l s_l * sum(x)_l)`, `s_l = ±1` the
//!   sign of group `l`'s delta: the `1/8` leaves the block's f32 scale (exactly, a power of
//!   two), so every sum is an integer. Activations in natural order.
//!
//! The AVX-512 kernels are in `x86q/low_bit.rs`.

use super::{q2_pos, AK};
use frugal_quant::tables::IQ1S_GRID;
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

/// Base-3 digit `n` (`0..3`) of a TQ1_0 byte `q`.
#[inline(always)]
fn trit(q: u8, n: u32) -> i32 {
    ((q.wrapping_mul(3u8.pow(n)) as u16 * 3) >> 8) as i32
}

/// TQ1_0 row (`54 * a.len()` bytes: `qs[48]`, `qh[4]`, f16 `d`) times activation blocks
/// (natural order): digit `n` of `qs[m]` is value `32n + m` (`m < 32`), of `qs[32 + m]` value
/// `160 + 16n + m`, of `qh[m]` value `240 + 4n + m`.
pub(crate) fn dot_tq1_0(row: &[u8], a: &[AK]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(54).zip(a) {
        let mut isum = -ak_sum(x);
        let mut e = 0;
        // (bytes, digits per byte), in the order of the values.
        for (bytes, digits) in [(&b[0..32], 5), (&b[32..48], 5), (&b[48..52], 4)] {
            for n in 0..digits {
                for &q in bytes {
                    isum += trit(q, n) * x.qs[e] as i32;
                    e += 1;
                }
            }
        }
        acc += (f16_at(b, 52) * x.d) * isum as f32;
    }
    acc
}

/// `8 * sum(g * x) + s * sum(x)` of one IQ1 group of 8: grid point `idx` (8 values in
/// `-1..=1`), the sign `s` of its delta, against 8 activations.
#[inline(always)]
fn iq1_group(idx: usize, s: i32, x: &[i8]) -> i32 {
    let g = IQ1S_GRID[idx].to_le_bytes();
    let (mut gx, mut sx) = (0i32, 0i32);
    for (&gv, &xv) in g.iter().zip(x) {
        gx += gv as i8 as i32 * xv as i32;
        sx += xv as i32;
    }
    8 * gx + s * sx
}

/// IQ1_S row (`50 * a.len()` bytes: f16 `d`, `qs[32]`, `u16 qh[8]`) times activation blocks
/// (natural order): sub-block `j` of 32 takes the index bits `qs[4j + l] | (qh[j] >> 3l & 7)
/// << 8` for its group `l`, the scale `2 * (qh[j] >> 12 & 7) + 1` and one delta, negative if
/// bit 15 of `qh[j]` is set.
pub(crate) fn dot_iq1_s(row: &[u8], a: &[AK]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(50).zip(a) {
        let mut isum = 0i32;
        for j in 0..8 {
            let qh = u16::from_le_bytes([b[34 + 2 * j], b[35 + 2 * j]]) as usize;
            let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
            let s = if qh & 0x8000 != 0 { -1 } else { 1 };
            let mut sub = 0i32;
            for l in 0..4 {
                let idx = b[2 + 4 * j + l] as usize | ((qh >> (3 * l)) & 7) << 8;
                sub += iq1_group(idx, s, &x.qs[32 * j + 8 * l..][..8]);
            }
            isum += ls * sub;
        }
        acc += (f16_at(b, 0) * x.d * 0.125) * isum as f32;
    }
    acc
}

/// IQ1_M row (`56 * a.len()` bytes: `qs[32]`, `qh[16]`, four `u16` scale words) times
/// activation blocks (natural order): group `l` (of 32) takes the index bits `qs[l] | (qh[l /
/// 2] >> 4 (l % 2) & 7) << 8` and the delta's sign from bit 3 of that nibble; piece `m` of 16
/// the scale `2 * (w[m / 4] >> 3 (m % 4) & 7) + 1`; the f16 `d` is the top nibbles of the
/// words (`frugal_quant::iq1::iq1_m_scale`).
pub(crate) fn dot_iq1_m(row: &[u8], a: &[AK]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(56).zip(a) {
        let w: [u16; 4] =
            std::array::from_fn(|k| u16::from_le_bytes([b[48 + 2 * k], b[49 + 2 * k]]));
        let d = frugal_quant::iq1::iq1_m_scale(&w);
        let mut isum = 0i32;
        for m in 0..16 {
            let ls = 2 * ((w[m / 4] >> (3 * (m % 4))) & 7) as i32 + 1;
            let mut piece = 0i32;
            for l in 2 * m..2 * m + 2 {
                let h = (b[32 + l / 2] >> (4 * (l % 2))) as usize;
                let idx = b[l] as usize | (h & 7) << 8;
                let s = if h & 8 != 0 { -1 } else { 1 };
                piece += iq1_group(idx, s, &x.qs[8 * l..][..8]);
            }
            isum += ls * piece;
        }
        acc += (d * x.d * 0.125) * isum as f32;
    }
    acc
}
