//! Products of block-quantized weights (Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, IQ4_NL, MXFP4, the
//! K-quants Q2_K..Q6_K, IQ4_XS, the grid I-quants IQ2_XXS..IQ3_S; the low-bit types of
//! `low_bit.rs`) with f32 activations, by
//! integer dot products.
//!
//! Once per call the activations are quantized per block to int8 with one f32 scale per block
//! ([`quantize_b32`]: blocks of 32 for the types in blocks of 32; [`quantize_k`]: blocks of 256 with
//! per-16 and per-32 sums for the K-quants, like llama.cpp's Q8_K). Every weight block then
//! meets its activation block in exact integer arithmetic and only the block's result is
//! scaled in f32:
//!
//! - Q8_0: `dw * dx * sum(w * x)`.
//! - Q4_0: `dw * dx * (sum(q * x) - 8 * sum(x))`: the nibbles `q` are used unsigned (`0..16`),
//!   the `-8` folded into the activation block's precomputed sum. Q5_0 alike with `q` in
//!   `0..32` and `-16`.
//! - Q4_1, Q5_1 (weights `d * q + m`): `d * dx * sum(q * x) + m * dx * sum(x)`, the min
//!   through the activation block's sum.
//! - IQ4_NL, MXFP4: `dw * dx * sum(k[q] * x)` with the levels `k` of the type's int8 table
//!   (MXFP4's are twice the FP4 values; its scale `dw`, half the E8M0 power of two, makes up
//!   for it).
//! - Q4_K: `d * dx * sum_j sc_j * sum(q * x)_j - dmin * dx * sum_j m_j * sum(x)_j` over the
//!   eight sub-blocks `j` of 32.
//! - Q6_K: `d * dx * sum_j sc_j * (sum(q * x)_j - 32 * sum(x)_j)` over sixteen sub-blocks of
//!   16, `q` unsigned in `0..64`.
//! - Q5_K: Q4_K's with `q` in `0..32` (the fifth bit ORed in).
//! - Q3_K: `d * dx * sum_j (sc_j - 32) * (sum(q * x)_j - 4 * sum(x)_j)` over sixteen
//!   sub-blocks of 16, `q` unsigned in `0..8` (the `hmask` bit as `4`).
//! - Q2_K: `d * dx * sum_j sc_j * sum(q * x)_j - dmin * dx * sum_j m_j * sum(x)_j` over
//!   sixteen sub-blocks of 16, `q` in `0..4`.
//! - IQ4_XS: `d * dx * sum_j (ls_j - 32) * sum(v * x)_j` over eight sub-blocks of 32, `v` the
//!   signed int8 levels of the IQ4_NL table.
//! - The grid I-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: `d * f * dx * sum_j ls_j *
//!   sum(sign * g * x)_j`, `g` the unsigned lattice levels (`iq.rs`).
//!
//! - int8 with one scale per row (gemma_pytorch's quantized checkpoints, [`DType::I8`] with a
//!   [`super::Scale`]), read in blocks of 32 like Q8_0 without a block scale: `dx * sum(w * x)`,
//!   the row's scale applied to the result ([`int8_blocks`] says when a matrix qualifies).
//!
//! Every instruction-set level computes these same integers (the SIMD paths split a block's
//! sum across lanes, exactly) and differs only in the order in which the f32 block results are
//! added. This file holds the activation layouts, the portable scalar kernels the SIMD ones are
//! tested against, and the driver that runs a job over the row split (`split.rs`).

pub(crate) mod iq;
pub(crate) mod low_bit;

use super::split::par_row_tasks;
use super::{DType, MatRef};
use frugal_quant::fp4::e8m0_to_f32_half;
use frugal_quant::tables::{KVALUES_FP4, KVALUES_IQ4NL};
use half::f16;

/// One activation block of 32 for the weights in blocks of 32, in natural order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct B32 {
    /// `round(x / d)`, in `-127..=127`.
    pub qs: [i8; 32],
    /// The scale: `max |x| / 127`.
    pub d: f32,
    /// `sum(qs)`.
    pub sum: i32,
}

/// Two activation blocks laid out for the AVX-512 Q8_0 decode kernel: one 64-byte vector of
/// values, and per 32-bit lane of the products (4 values; 8 lanes per block) the block's scale
/// and the correction of the unsigned weights (`w ^ 0x80 = w + 128`): `-128 * sum` of the
/// lane's 4 values, so every lane's integer is exactly its part of `sum(w * x)`.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct A8Pair {
    pub qs: [i8; 64],
    pub d: [f32; 16],
    pub corr: [i32; 16],
}

/// Four activation blocks laid out for the AVX-512 decode kernels of the types in blocks of 32
/// with nibbles (Q4_0, Q5_0, Q4_1, Q5_1, IQ4_NL, MXFP4): the first halves (elements 0..16,
/// which meet the low nibbles) of the four blocks, then their second halves (high nibbles);
/// per 32-bit lane (4 per block; lane `l` covers bytes `4l..4l + 4` of both halves) the
/// block's scale and `corr`, the lane's 8 values' sum times the weights' offset
/// ([`group_offset`]: `-8` for Q4_0, so every lane's integer is exactly its part of
/// `sum((q - 8) * x)`; for Q4_1 and Q5_1 the plain sum, the factor of their min).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct A4Group {
    pub qs: [i8; 128],
    pub d: [f32; 16],
    pub corr: [i32; 16],
}

/// Sixteen activation blocks laid out for the AVX-512 decode kernels of the x4 layouts, in the
/// order of a piece ([`frugal_quant::x4`]): 32-bit lane `j` of 64-byte vector `k` holds block
/// `j`'s values `4k..4k + 4` (Q4_0X4: vectors 0..4 meet the low nibbles, 4..8 the high ones);
/// per block its scale and the correction of the weights' offset, `-8 * sum` for Q4_0's
/// unsigned nibbles, `-128 * sum` for Q8_0's weights made unsigned (`w ^ 0x80 = w + 128`, for
/// VNNI), so lane `j`'s integer is exactly block `j`'s sum of products.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct A16 {
    pub qs: [i8; 512],
    pub d: [f32; 16],
    pub corr: [i32; 16],
}

/// One activation block of 256 for K-quant weights.
///
/// For Q6_K weights `qs` is in natural order. For Q4_K and Q5_K weights its sub-blocks of 32
/// are stored in the order 0, 2, 1, 3, 4, 6, 5, 7: a 64-byte load of Q4_K nibbles holds the
/// sub-blocks `4g` and `4g + 2` in its low nibbles and `4g + 1`, `4g + 3` in its high nibbles,
/// and meets the activations with one aligned 64-byte load each (see [`k_pos`]). For Q3_K and
/// Q2_K the bit pairs `2k` of their 64 bytes of levels meet one 64-byte load ([`q2_pos`]);
/// for IQ4_XS its pieces of 16 are ordered as the nibbles of 64 bytes of weights, low nibbles
/// (first halves of 4 sub-blocks) then high ones ([`iq4_pos`]).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct AK {
    pub qs: [i8; 256],
    /// Sums of the 16 sub-blocks of 16 (natural order).
    pub bsums16: [i16; 16],
    /// Sums of the 8 sub-blocks of 32 (natural order).
    pub bsums32: [i16; 8],
    /// The weights' offset times `bsums16` (`-32 *` for Q6_K, `-4 *` for Q3_K, `-1 *` for
    /// TQ2_0 and TQ1_0, `-9 *` for IQ1_S and IQ1_M, else zero), as the kernels start sub-block sums.
    pub c16: [i32; 16],
    pub d: f32,
}

/// Where Q4_K sub-block `j` (of 32) lies in [`AK::qs`], in units of 32.
#[inline(always)]
pub(crate) fn k_pos(j: usize) -> usize {
    const POS: [usize; 8] = [0, 2, 1, 3, 4, 6, 5, 7];
    POS[j]
}

/// Where the natural piece `c` of 16 values of an IQ4_XS block lies in [`AK::qs`], in units
/// of 16: value `128g + 32i + 16e + l` (sub-block `4g + i`, nibble `e`) is at
/// `128g + 64e + 16i + l`.
#[inline(always)]
pub(crate) fn iq4_pos(c: usize) -> usize {
    (c & !7) | (c & 1) << 2 | (c >> 1) & 3
}

/// Where the natural piece `c` of 16 values of a Q2_K or Q3_K block lies in [`AK::qs`], in
/// units of 16: value `128h + 32k + l` (bits `2k` of byte `32h + l` of the levels) is at
/// `64k + 32h + l`.
#[inline(always)]
pub(crate) fn q2_pos(c: usize) -> usize {
    4 * ((c % 8) / 2) + 2 * (c / 8) + c % 2
}

/// Rounds to the nearest integer, ties to even (llama.cpp's `nearest_int`); `|v| <= 2^22`.
#[inline(always)]
fn nearest(v: f32) -> i32 {
    frugal_quant::nearest_int(v)
}

/// Largest `|v|` of a block. The bit patterns of non-negative floats are ordered as the
/// values, so this is an integer maximum, which the compiler vectorizes (a NaN, whose pattern
/// is above infinity's, wins: the block's results are then NaN in every build).
#[inline(always)]
fn amax_of(x: &[f32]) -> f32 {
    let mut m = 0u32;
    for &v in x {
        m = m.max(v.to_bits() & 0x7fff_ffff);
    }
    f32::from_bits(m)
}

/// Rounds `x * id` to `-127..=127` into `q` (as many values as `x`), returning their sum.
#[inline(always)]
fn round_block(x: &[f32], id: f32, q: &mut [i8]) -> i32 {
    let mut sum = 0i32;
    for (qv, &v) in q.iter_mut().zip(x) {
        let r = nearest(v * id).clamp(-127, 127);
        *qv = r as i8;
        sum += r;
    }
    sum
}

/// Quantizes `x` (len 32 * k) into `out` (k blocks): `d = max |x| / 127`, values
/// `round(x * (127 / max |x|))` to nearest (ties to even), clamped to `-127..=127`. Written for
/// the compiler to vectorize; [`quantize_b32`] runs it compiled for the best instruction set
/// (same operations, same results).
#[inline(always)]
pub(crate) fn quantize_b32_impl(x: &[f32], out: &mut [B32]) {
    assert_eq!(x.len(), out.len() * 32, "activation blocks");
    for (xb, o) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = amax_of(xb);
        let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        o.sum = round_block(xb, id, &mut o.qs);
        o.d = amax / 127.0;
    }
}

/// [`quantize_b32_impl`] at the best instruction set.
pub(crate) fn quantize_b32(x: &[f32], out: &mut [B32]) {
    #[cfg(target_arch = "x86_64")]
    if quantize_b32_simd(x, out) {
        return;
    }
    quantize_b32_impl(x, out)
}

/// Sum of 4 values.
fn sum4(q: &[i8]) -> i32 {
    q[..4].iter().map(|&v| v as i32).sum()
}

/// The [`A8Pair`] layout of natural blocks: `2 * ceil(nb / 4)` pairs (the decode kernel takes
/// 4 blocks per step), missing blocks zero.
pub(crate) fn pairs_of(b: &[B32]) -> Vec<A8Pair> {
    let zero = A8Pair {
        qs: [0; 64],
        d: [0.0; 16],
        corr: [0; 16],
    };
    let mut out: Vec<A8Pair> = b
        .chunks(2)
        .map(|p| {
            let mut a = zero;
            for (k, blk) in p.iter().enumerate() {
                a.qs[32 * k..32 * k + 32].copy_from_slice(&blk.qs);
                a.d[8 * k..8 * k + 8].fill(blk.d);
            }
            for l in 0..16 {
                a.corr[l] = -128 * sum4(&a.qs[4 * l..]);
            }
            a
        })
        .collect();
    out.resize(2 * b.len().div_ceil(4), zero);
    out
}

/// The [`A4Group`] layout of natural blocks (missing blocks of the last group are zero), with
/// the correction `offset * sum` ([`group_offset`]).
pub(crate) fn groups_of(b: &[B32], offset: i32) -> Vec<A4Group> {
    b.chunks(4)
        .map(|g| {
            let mut a = A4Group {
                qs: [0; 128],
                d: [0.0; 16],
                corr: [0; 16],
            };
            for (k, blk) in g.iter().enumerate() {
                a.qs[16 * k..16 * k + 16].copy_from_slice(&blk.qs[..16]);
                a.qs[64 + 16 * k..64 + 16 * k + 16].copy_from_slice(&blk.qs[16..]);
                a.d[4 * k..4 * k + 4].fill(blk.d);
            }
            for l in 0..16 {
                a.corr[l] = offset * (sum4(&a.qs[4 * l..]) + sum4(&a.qs[64 + 4 * l..]));
            }
            a
        })
        .collect()
}

/// Quantizes `x` (len 256 * k) into `out` (k blocks) for weights of `dtype` (a K-quant or
/// IQ4_XS, which decides the order of `qs` and the offset in `c16`). Same rounding as
/// [`quantize_b32_impl`], one scale per 256.
#[inline(always)]
pub(crate) fn quantize_k_impl(x: &[f32], dtype: DType, out: &mut [AK]) {
    assert_eq!(x.len(), out.len() * 256, "activation blocks");
    // The order of `qs` (0 natural, 1 Q4_K's, 2 IQ4_XS's, 3 Q2_K's) and the weights' offset.
    let (order, offset) = match dtype {
        DType::Q4_K | DType::Q5_K => (1, 0),
        DType::Q6_K => (0, -32),
        DType::Q3_K => (3, -4),
        DType::Q2_K => (3, 0),
        DType::IQ4_XS => (2, 0),
        d if iq::is_grid(d) => (0, 0),
        DType::TQ2_0 => (3, -1),
        DType::TQ1_0 => (0, -1),
        // The levels `8 * g + 9 + 8 * delta` (`0..=18`) of the SIMD kernels.
        DType::IQ1_S | DType::IQ1_M => (0, -9),
        d => unreachable!("{} is not a K-quant", d.name()),
    };
    for (xb, o) in x.chunks_exact(256).zip(out.iter_mut()) {
        let amax = amax_of(xb);
        o.d = amax / 127.0;
        let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut q = [0i8; 256];
        for (qv, &v) in q.iter_mut().zip(xb) {
            *qv = nearest(v * id).clamp(-127, 127) as i8;
        }
        for (s, c) in o.bsums16.iter_mut().zip(q.chunks_exact(16)) {
            let mut t = 0i16;
            for &v in c {
                t += v as i16;
            }
            *s = t;
        }
        for j in 0..8 {
            o.bsums32[j] = o.bsums16[2 * j] + o.bsums16[2 * j + 1];
        }
        for (c, &s) in o.c16.iter_mut().zip(&o.bsums16) {
            *c = offset * s as i32;
        }
        match order {
            1 => {
                for j in 0..8 {
                    let p = k_pos(j);
                    o.qs[32 * p..32 * p + 32].copy_from_slice(&q[32 * j..32 * j + 32]);
                }
            }
            2 | 3 => {
                for c in 0..16 {
                    let p = if order == 2 { iq4_pos(c) } else { q2_pos(c) };
                    o.qs[16 * p..16 * p + 16].copy_from_slice(&q[16 * c..16 * c + 16]);
                }
            }
            _ => o.qs = q,
        }
    }
}

/// [`quantize_k_impl`] at the best instruction set.
pub(crate) fn quantize_k(x: &[f32], dtype: DType, out: &mut [AK]) {
    #[cfg(target_arch = "x86_64")]
    if quantize_k_simd(x, dtype, out) {
        return;
    }
    quantize_k_impl(x, dtype, out)
}

/// An empty [`AK`] to fill.
pub(crate) const AK_ZERO: AK = AK {
    qs: [0; 256],
    bsums16: [0; 16],
    bsums32: [0; 8],
    c16: [0; 16],
    d: 0.0,
};

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Whether `w` is int8 with per-row scales in whole blocks of 32, so that its products can
/// run through the integer kernels (the fast path; the exact one converts to f32).
pub(crate) fn int8_blocks(w: &MatRef) -> bool {
    w.dtype == DType::I8 && w.cols > 0 && w.cols.is_multiple_of(32)
}

/// Whether the integer kernels multiply `dtype` (else `crate::dequant` does, through f32).
pub(crate) fn has_int_kernel(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::I8
            | DType::Q8_0
            | DType::Q4_0
            | DType::Q5_0
            | DType::Q4_1
            | DType::Q5_1
            | DType::IQ4_NL
            | DType::MXFP4
            | DType::Q4_K
            | DType::Q6_K
            | DType::Q5_K
            | DType::Q3_K
            | DType::Q2_K
            | DType::IQ4_XS
            | DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ2_S
            | DType::IQ3_XXS
            | DType::IQ3_S
            | DType::TQ2_0
            | DType::TQ1_0
            | DType::IQ1_S
            | DType::IQ1_M
            | DType::Q4_0X4
            | DType::Q8_0X4
    )
}

/// Values per activation block for weights of `dtype`: 32, or 256 for the K-quants.
pub(crate) fn act_block_len(dtype: DType) -> usize {
    match dtype {
        DType::I8
        | DType::Q8_0
        | DType::Q4_0
        | DType::Q5_0
        | DType::Q4_1
        | DType::Q5_1
        | DType::IQ4_NL
        | DType::MXFP4
        | DType::Q4_0X4
        | DType::Q8_0X4 => 32,
        d => d.block_len(),
    }
}

/// The factor of the lane sums in the [`A4Group`] layout of the AVX-512 decode kernels of
/// `dtype`, or `None` if they take another layout: the weights' offset (`-8` for Q4_0's
/// unsigned nibbles, `-16` for Q5_0's levels); `-128` for the int8 tables of IQ4_NL and MXFP4
/// (with VNNI their levels are made unsigned as `k ^ 0x80 = k + 128`); `1` for Q4_1 and Q5_1,
/// whose lane sums are the factor of their min.
pub(crate) fn group_offset(dtype: DType) -> Option<i32> {
    match dtype {
        DType::Q4_0 => Some(-8),
        DType::Q5_0 => Some(-16),
        DType::Q4_1 | DType::Q5_1 => Some(1),
        DType::IQ4_NL | DType::MXFP4 => Some(-128),
        _ => None,
    }
}

/// Bytes of one weight block of `dtype` as the integer kernels step through a row.
pub(crate) fn weight_block_bytes(dtype: DType) -> usize {
    match dtype {
        DType::I8 => 32,
        d => d.block_bytes(),
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar kernels: one row against one token, block results added in order.

/// `sum(w * x)` of 32 int8 weights `w` with an activation block, exactly.
fn isum_i8(w: &[u8], x: &B32) -> i32 {
    w.iter()
        .zip(&x.qs)
        .map(|(&w, &q)| (w as i8 as i32) * q as i32)
        .sum()
}

/// Q8_0 row (`34 * a.len()` bytes) times activation blocks.
pub(crate) fn dot_q8_0(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(34).zip(a) {
        acc += (f16_at(b, 0) * x.d) * isum_i8(&b[2..], x) as f32;
    }
    acc
}

/// int8 row (`32 * a.len()` bytes) times activation blocks; the row's scale is applied by the
/// caller.
pub(crate) fn dot_i8(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(32).zip(a) {
        acc += x.d * isum_i8(b, x) as f32;
    }
    acc
}

/// Q4_0 row (`18 * a.len()` bytes) times activation blocks.
pub(crate) fn dot_q4_0(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(18).zip(a) {
        let mut isum = -8 * x.sum;
        for j in 0..16 {
            isum += (b[2 + j] & 15) as i32 * x.qs[j] as i32;
            isum += (b[2 + j] >> 4) as i32 * x.qs[j + 16] as i32;
        }
        acc += (f16_at(b, 0) * x.d) * isum as f32;
    }
    acc
}

/// The 32 nibbles of 16 bytes `qs`: value `j` is the low nibble of byte `j`, value `j + 16`
/// its high nibble (Q4_0's order, which Q4_1, IQ4_NL and MXFP4 share).
#[inline(always)]
fn nibbles(qs: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 15;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// The 32 levels `q` in `0..32` of a Q5_0 or Q5_1 block from its fifth bits `qh` (4 bytes)
/// and nibbles `qs` (the 20 bytes at `b`): values `j` and `j + 16` share byte `j` of the
/// nibbles and take bits `j` and `j + 16` of `qh`.
#[inline(always)]
fn q5_levels(b: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut q = nibbles(&b[4..20]);
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> j) & 1) << 4) as u8;
    }
    q
}

/// The 32 levels of a Q5_0 block (22 bytes: f16 `d`, the fifth bits `qh`, the nibbles),
/// `q` in `0..32` (the weights are `d * (q - 16)`).
#[inline(always)]
pub(crate) fn q5_0_levels(b: &[u8]) -> [u8; 32] {
    q5_levels(&b[2..22])
}

/// `sum(q * x)` of 32 levels with an activation block, exactly.
#[inline(always)]
fn isum32<T: Copy + Into<i32>>(q: &[T; 32], x: &B32) -> i32 {
    q.iter()
        .zip(&x.qs)
        .map(|(&w, &a)| w.into() * a as i32)
        .sum()
}

/// Q5_0 row (`22 * a.len()` bytes) times activation blocks.
pub(crate) fn dot_q5_0(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(22).zip(a) {
        let isum = -16 * x.sum + isum32(&q5_0_levels(b), x);
        acc += (f16_at(b, 0) * x.d) * isum as f32;
    }
    acc
}

/// Q4_1 row (`20 * a.len()` bytes: f16 `d`, f16 `m`, the nibbles) times activation blocks.
pub(crate) fn dot_q4_1(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(20).zip(a) {
        let isum = isum32(&nibbles(&b[4..20]), x);
        acc += (f16_at(b, 0) * x.d) * isum as f32 + (f16_at(b, 2) * x.d) * x.sum as f32;
    }
    acc
}

/// Q5_1 row (`24 * a.len()` bytes: f16 `d`, f16 `m`, `qh`, the nibbles) times activation
/// blocks.
pub(crate) fn dot_q5_1(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(24).zip(a) {
        let isum = isum32(&q5_levels(&b[4..24]), x);
        acc += (f16_at(b, 0) * x.d) * isum as f32 + (f16_at(b, 2) * x.d) * x.sum as f32;
    }
    acc
}

/// The int8 levels `table[q]` of 16 bytes of nibbles `qs`.
#[inline(always)]
fn table_levels(table: &[i8; 16], qs: &[u8]) -> [i8; 32] {
    nibbles(qs).map(|q| table[q as usize])
}

/// IQ4_NL row (`18 * a.len()` bytes: f16 `d`, the nibbles) times activation blocks.
pub(crate) fn dot_iq4_nl(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(18).zip(a) {
        let isum = isum32(&table_levels(&KVALUES_IQ4NL, &b[2..18]), x);
        acc += (f16_at(b, 0) * x.d) * isum as f32;
    }
    acc
}

/// MXFP4 row (`17 * a.len()` bytes: the E8M0 exponent, the nibbles) times activation blocks.
pub(crate) fn dot_mxfp4(row: &[u8], a: &[B32]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(17).zip(a) {
        let isum = isum32(&table_levels(&KVALUES_FP4, &b[1..17]), x);
        acc += (e8m0_to_f32_half(b[0]) * x.d) * isum as f32;
    }
    acc
}

/// Q4_K row (`144 * a.len()` bytes) times activation blocks ([`quantize_k`] for Q4_K).
pub(crate) fn dot_q4_k(row: &[u8], a: &[AK]) -> f32 {
    let (mut acc, mut accm) = (0f32, 0f32);
    for (b, x) in row.chunks_exact(144).zip(a) {
        let (sc, m) = frugal_quant::q4_k::scales_mins(&b[4..16]);
        let qs = &b[16..];
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let (c, shift) = (j / 2, 4 * (j % 2));
            let xs = &x.qs[32 * k_pos(j)..32 * k_pos(j) + 32];
            let mut s = 0i32;
            for i in 0..32 {
                s += ((qs[32 * c + i] >> shift) & 15) as i32 * xs[i] as i32;
            }
            isum += sc[j] as i32 * s;
            msum += m[j] as i32 * x.bsums32[j] as i32;
        }
        acc += (f16_at(b, 0) * x.d) * isum as f32;
        accm += (f16_at(b, 2) * x.d) * msum as f32;
    }
    acc - accm
}

/// Q6_K row (`210 * a.len()` bytes) times activation blocks ([`quantize_k`] for Q6_K).
pub(crate) fn dot_q6_k(row: &[u8], a: &[AK]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(210).zip(a) {
        let mut isum = 0i32;
        for j in 0..16 {
            let mut s = -32 * x.bsums16[j] as i32;
            for i in 0..16 {
                let e = 16 * j + i;
                s += frugal_quant::q6_k::q6(b, e) as i32 * x.qs[e] as i32;
            }
            isum += (b[192 + j] as i8) as i32 * s;
        }
        acc += (f16_at(b, 208) * x.d) * isum as f32;
    }
    acc
}

/// Q5_K row (`176 * a.len()` bytes) times activation blocks ([`quantize_k`] for Q5_K): as
/// [`dot_q4_k`], the fifth bit of value `32j + i` bit `j` of `qh[i]`.
pub(crate) fn dot_q5_k(row: &[u8], a: &[AK]) -> f32 {
    let (mut acc, mut accm) = (0f32, 0f32);
    for (b, x) in row.chunks_exact(176).zip(a) {
        let (sc, m) = frugal_quant::q4_k::scales_mins(&b[4..16]);
        let (qh, qs) = (&b[16..48], &b[48..]);
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let (c, shift) = (j / 2, 4 * (j % 2));
            let xs = &x.qs[32 * k_pos(j)..32 * k_pos(j) + 32];
            let mut s = 0i32;
            for i in 0..32 {
                let q = ((qs[32 * c + i] >> shift) & 15) | ((qh[i] >> j) & 1) << 4;
                s += q as i32 * xs[i] as i32;
            }
            isum += sc[j] as i32 * s;
            msum += m[j] as i32 * x.bsums32[j] as i32;
        }
        acc += (f16_at(b, 0) * x.d) * isum as f32;
        accm += (f16_at(b, 2) * x.d) * msum as f32;
    }
    acc - accm
}

/// The level `q` (`0..4`) of value `e` of a Q2_K or Q3_K block from its 64 bytes `qs`: per
/// half of 128, bits `2k..2k + 2` of `qs[32 * half + l]` are value `128 * half + 32k + l`.
#[inline(always)]
fn q2_level(qs: &[u8], e: usize) -> u8 {
    let (half, k, l) = (e / 128, (e % 128) / 32, e % 32);
    (qs[32 * half + l] >> (2 * k)) & 3
}

/// Q3_K row (`110 * a.len()` bytes) times activation blocks ([`quantize_k`] for Q3_K): levels
/// `q | 4 * h` in `0..8` (`h` the `hmask` bit of value `128 * half + 32k + l`, bit
/// `4 * half + k` of `hmask[l]`), the `-4` through the sub-block sums.
pub(crate) fn dot_q3_k(row: &[u8], a: &[AK]) -> f32 {
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(110).zip(a) {
        let (hmask, qs) = (&b[..32], &b[32..96]);
        let sc = frugal_quant::q3_k::scales(&b[96..108]);
        let mut isum = 0i32;
        for (j, &scj) in sc.iter().enumerate() {
            let mut s = -4 * x.bsums16[j] as i32;
            let xs = &x.qs[16 * q2_pos(j)..][..16];
            for (i, &xv) in xs.iter().enumerate() {
                let e = 16 * j + i;
                let h = (hmask[e % 32] >> (4 * (e / 128) + (e % 128) / 32)) & 1;
                s += (q2_level(qs, e) | h << 2) as i32 * xv as i32;
            }
            isum += (scj as i32 - 32) * s;
        }
        acc += (f16_at(b, 108) * x.d) * isum as f32;
    }
    acc
}

/// Q2_K row (`84 * a.len()` bytes) times activation blocks ([`quantize_k`] for Q2_K): per
/// sub-block of 16 the scale (low nibble) on `sum(q * x)`, the min (high nibble) on `sum(x)`.
pub(crate) fn dot_q2_k(row: &[u8], a: &[AK]) -> f32 {
    let (mut acc, mut accm) = (0f32, 0f32);
    for (b, x) in row.chunks_exact(84).zip(a) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (mut isum, mut msum) = (0i32, 0i32);
        for (j, &sm) in scales.iter().enumerate() {
            let mut s = 0i32;
            let xs = &x.qs[16 * q2_pos(j)..][..16];
            for (i, &xv) in xs.iter().enumerate() {
                s += q2_level(qs, 16 * j + i) as i32 * xv as i32;
            }
            isum += (sm & 15) as i32 * s;
            msum += (sm >> 4) as i32 * x.bsums16[j] as i32;
        }
        acc += (f16_at(b, 80) * x.d) * isum as f32;
        accm += (f16_at(b, 82) * x.d) * msum as f32;
    }
    acc - accm
}

/// The eight 6-bit scales of an IQ4_XS block at `b`, less 32: low nibble `j % 2` of
/// `scales_l[j / 2]`, high bits `scales_h >> 2j`.
#[inline(always)]
pub(crate) fn iq4xs_scales(b: &[u8]) -> [i32; 8] {
    let sh = u16::from_le_bytes([b[2], b[3]]) as i32;
    std::array::from_fn(|j| {
        let lo = (b[4 + j / 2] >> (4 * (j % 2))) as i32 & 15;
        (lo | ((sh >> (2 * j)) & 3) << 4) - 32
    })
}

/// IQ4_XS row (`136 * a.len()` bytes) times activation blocks ([`quantize_k`] for IQ4_XS):
/// sub-block `j`'s 16 bytes hold values `32j..32j + 16` in their low nibbles, the next 16 in
/// their high ones, each an index into the IQ4_NL levels.
pub(crate) fn dot_iq4_xs(row: &[u8], a: &[AK]) -> f32 {
    let kv = &frugal_quant::tables::KVALUES_IQ4NL;
    let mut acc = 0f32;
    for (b, x) in row.chunks_exact(136).zip(a) {
        let sc = iq4xs_scales(b);
        let qs = &b[8..];
        let mut isum = 0i32;
        for j in 0..8 {
            let lo = &x.qs[16 * iq4_pos(2 * j)..][..16];
            let hi = &x.qs[16 * iq4_pos(2 * j + 1)..][..16];
            let mut s = 0i32;
            for i in 0..16 {
                let q = qs[16 * j + i];
                s += kv[(q & 15) as usize] as i32 * lo[i] as i32;
                s += kv[(q >> 4) as usize] as i32 * hi[i] as i32;
            }
            isum += sc[j] * s;
        }
        acc += (f16_at(b, 0) * x.d) * isum as f32;
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// The activation quantizers compiled per instruction set

/// [`quantize_b32_impl`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize_b32_512(x: &[f32], out: &mut [B32]) {
    quantize_b32_impl(x, out)
}

/// [`quantize_b32_impl`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_b32_256(x: &[f32], out: &mut [B32]) {
    quantize_b32_impl(x, out)
}

/// [`quantize_k_impl`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize_k_512(x: &[f32], dtype: DType, out: &mut [AK]) {
    quantize_k_impl(x, dtype, out)
}

/// [`quantize_k_impl`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_k_256(x: &[f32], dtype: DType, out: &mut [AK]) {
    quantize_k_impl(x, dtype, out)
}

/// Runs the activation quantizer compiled for the best available instruction set; false if
/// there is none (the caller then runs the portable build). Plain Rust in every build (IEEE
/// operations, never contracted), so the results are identical.
#[cfg(target_arch = "x86_64")]
pub(crate) fn quantize_b32_simd(x: &[f32], out: &mut [B32]) -> bool {
    if crate::x86::Avx512::detect().is_some() {
        // SAFETY: the CPU has the features (just detected).
        unsafe { quantize_b32_512(x, out) };
    } else if crate::x86::Avx2::detect().is_some() {
        // SAFETY: as above.
        unsafe { quantize_b32_256(x, out) };
    } else {
        return false;
    }
    true
}

/// [`quantize_b32_simd`] for blocks of 256.
#[cfg(target_arch = "x86_64")]
pub(crate) fn quantize_k_simd(x: &[f32], dtype: DType, out: &mut [AK]) -> bool {
    if crate::x86::Avx512::detect().is_some() {
        // SAFETY: the CPU has the features (just detected).
        unsafe { quantize_k_512(x, dtype, out) };
    } else if crate::x86::Avx2::detect().is_some() {
        // SAFETY: as above.
        unsafe { quantize_k_256(x, dtype, out) };
    } else {
        return false;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Activations and the driver

/// Quantized activations of `n` tokens, in the layouts the chosen kernel reads.
pub(crate) struct QActs {
    /// Blocks per token (of 32 or 256).
    pub nb: usize,
    /// Natural blocks of 32 (the weights in blocks of 32), `n * nb`.
    pub b32: Vec<B32>,
    /// Blocks of 256 (K-quant weights), `n * nb`.
    pub k: Vec<AK>,
    /// Decode layouts (one token), built when the kernel asks for them.
    pub pairs: Vec<A8Pair>,
    pub groups: Vec<A4Group>,
    pub pieces: Vec<A16>,
}

impl QActs {
    /// Quantizes `n` tokens of `cols` activations for weights of `dtype`; `lanes` also builds
    /// the decode layout of the first token ([`A8Pair`] for Q8_0, [`A4Group`] for the nibble
    /// types ([`group_offset`]), [`A16`] for the x4 layouts).
    pub(crate) fn new(dtype: DType, x: &[f32], n: usize, cols: usize, lanes: bool) -> Self {
        let nb = cols / act_block_len(dtype);
        let mut a = QActs {
            nb,
            b32: Vec::new(),
            k: Vec::new(),
            pairs: Vec::new(),
            groups: Vec::new(),
            pieces: Vec::new(),
        };
        assert!(
            has_int_kernel(dtype),
            "{} has no integer kernel",
            dtype.name()
        );
        if act_block_len(dtype) == 32 {
            a.b32 = vec![B32::default(); n * nb];
            quantize_b32(x, &mut a.b32);
            if lanes {
                if let Some(offset) = group_offset(dtype) {
                    a.groups = groups_of(&a.b32[..nb], offset);
                } else {
                    match dtype {
                        DType::Q4_0X4 => a.pieces = pieces_of(&a.b32[..nb], -8),
                        DType::Q8_0X4 => a.pieces = pieces_of(&a.b32[..nb], -128),
                        _ => a.pairs = pairs_of(&a.b32[..nb]),
                    }
                }
            }
        } else {
            a.k = vec![AK_ZERO; n * nb];
            quantize_k(x, dtype, &mut a.k);
        }
        a
    }

    /// Token `t`'s natural blocks of 32.
    pub(crate) fn b32(&self, t: usize) -> &[B32] {
        &self.b32[t * self.nb..(t + 1) * self.nb]
    }

    /// Token `t`'s blocks of 256.
    pub(crate) fn k(&self, t: usize) -> &[AK] {
        &self.k[t * self.nb..(t + 1) * self.nb]
    }
}

/// The [`A16`] layout of natural blocks with the correction `offset * sum` (`-8` for Q4_0X4,
/// `-128` for Q8_0X4), a short last piece padded with zero blocks.
pub(crate) fn pieces_of(b: &[B32], offset: i32) -> Vec<A16> {
    b.chunks(16)
        .map(|g| {
            let mut a = A16 {
                qs: [0; 512],
                d: [0.0; 16],
                corr: [0; 16],
            };
            for (j, blk) in g.iter().enumerate() {
                for k in 0..8 {
                    let o = 64 * k + 4 * j;
                    a.qs[o..o + 4].copy_from_slice(&blk.qs[4 * k..4 * k + 4]);
                }
                a.d[j] = blk.d;
                a.corr[j] = offset * blk.sum;
            }
            a
        })
        .collect()
}

/// One quantized product with its activations quantized: what the driver splits over tasks.
pub(crate) trait QJob: Sync {
    /// Rows per task must be a multiple of this.
    fn row_align(&self) -> usize {
        4
    }
    /// `y[i] = w[r0 + i] . x[token 0]` for `i < y.len()`.
    fn matvec(&self, r0: usize, y: &mut [f32]);
    /// `outs[t][i] = w[r0 + i] . x[token t]` for every token and `i < outs[0].len()`.
    fn rows(&self, r0: usize, outs: &mut [&mut [f32]]);
}

/// Runs `job` over all `rows` for `n` tokens into `y` (`n * rows`, token-major), in parallel
/// over the row split (tasks of a multiple of `job.row_align()` rows): `matvec` for one token,
/// `rows` for more.
pub(crate) fn drive<J: QJob>(job: &J, rows: usize, cols: usize, n: usize, y: &mut [f32]) {
    par_row_tasks(rows, cols, n, job.row_align(), y, |r0, outs| {
        if n == 1 {
            job.matvec(r0, outs[0])
        } else {
            job.rows(r0, outs)
        }
    });
}

/// The portable job: every output one scalar dot.
struct ScalarJob<'a> {
    w: &'a MatRef<'a>,
    a: QActs,
}

impl ScalarJob<'_> {
    fn dot(&self, r: usize, t: usize) -> f32 {
        if self.w.dtype.is_x4() {
            // The row taken out of its quad (a copy per dot: this job only checks the SIMD
            // one, which is the only one the loader makes the x4 layouts for).
            let (d, stride) = (self.w.dtype, self.w.row_stride());
            let mut row = vec![0u8; stride];
            frugal_quant::x4::row_plain(d, self.w.data, stride, r, &mut row);
            return match d {
                DType::Q4_0X4 => dot_q4_0(&row, self.a.b32(t)),
                _ => dot_q8_0(&row, self.a.b32(t)),
            };
        }
        let row = self.w.row_bytes(r);
        match self.w.dtype {
            DType::Q8_0 => dot_q8_0(row, self.a.b32(t)),
            DType::I8 => dot_i8(row, self.a.b32(t)),
            DType::Q4_0 => dot_q4_0(row, self.a.b32(t)),
            DType::Q5_0 => dot_q5_0(row, self.a.b32(t)),
            DType::Q4_1 => dot_q4_1(row, self.a.b32(t)),
            DType::Q5_1 => dot_q5_1(row, self.a.b32(t)),
            DType::IQ4_NL => dot_iq4_nl(row, self.a.b32(t)),
            DType::MXFP4 => dot_mxfp4(row, self.a.b32(t)),
            DType::Q4_K => dot_q4_k(row, self.a.k(t)),
            DType::Q6_K => dot_q6_k(row, self.a.k(t)),
            DType::Q5_K => dot_q5_k(row, self.a.k(t)),
            DType::Q3_K => dot_q3_k(row, self.a.k(t)),
            DType::Q2_K => dot_q2_k(row, self.a.k(t)),
            DType::IQ4_XS => dot_iq4_xs(row, self.a.k(t)),
            d if iq::is_grid(d) => iq::dot_iq(d, row, self.a.k(t)),
            DType::TQ2_0 => low_bit::dot_tq2_0(row, self.a.k(t)),
            DType::TQ1_0 => low_bit::dot_tq1_0(row, self.a.k(t)),
            DType::IQ1_S => low_bit::dot_iq1_s(row, self.a.k(t)),
            DType::IQ1_M => low_bit::dot_iq1_m(row, self.a.k(t)),
            d => unreachable!("{} is not quantized", d.name()),
        }
    }
}

impl QJob for ScalarJob<'_> {
    fn matvec(&self, r0: usize, y: &mut [f32]) {
        for (i, v) in y.iter_mut().enumerate() {
            *v = self.dot(r0 + i, 0);
        }
    }
    fn rows(&self, r0: usize, outs: &mut [&mut [f32]]) {
        for (t, o) in outs.iter_mut().enumerate() {
            for (i, v) in o.iter_mut().enumerate() {
                *v = self.dot(r0 + i, t);
            }
        }
    }
}

/// The product of quantized `w` (or int8 in blocks, [`int8_blocks`]) with `n` tokens of `x` by
/// the portable job (the scalar level, and the x4 layouts below AVX-512), unscaled.
pub(crate) fn matmul_portable(w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    debug_assert!(w.dtype.is_quantized() || int8_blocks(w));
    if w.rows == 0 || n == 0 {
        return;
    }
    let job = ScalarJob {
        w,
        a: QActs::new(w.dtype, x, n, w.cols, false),
    };
    drive(&job, w.rows, w.cols, n, y);
}
