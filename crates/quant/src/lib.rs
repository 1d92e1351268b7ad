//! Block-quantized weight formats, byte-compatible with GGUF's types of the same name, so a
//! matrix quantized here can be written to a GGUF file unchanged and a GGUF file's blocks can
//! be multiplied in place by the same kernels. These are quantized and dequantized
//! ([`quantizes`] says which):
//!
//! | dtype | elements / block | bytes / block | bits / weight | file |
//! |---|---|---|---|---|
//! | [`DType::Q8_0`] | 32 | 34 | 8.5 | [`q8_0`] |
//! | [`DType::Q4_0`] | 32 | 18 | 4.5 | [`q4_0`] |
//! | [`DType::Q5_0`], [`DType::Q5_1`] | 32 | 22, 24 | 5.5, 6 | [`q5`] |
//! | [`DType::Q4_K`] | 256 | 144 | 4.5 | [`q4_k`] |
//! | [`DType::Q5_K`] | 256 | 176 | 5.5 | [`q5_k`] |
//! | [`DType::Q6_K`] | 256 | 210 | 6.5625 | [`q6_k`] |
//!
//! Each format module has `quantize_row(&[f32], &mut [u8])` and `dequantize_row(&[u8], &mut
//! [f32])` over whole blocks. Quantization is llama.cpp's reference quantizer of the type
//! (`quantize_row_*_ref`, which `llama-quantize` runs when it has no importance matrix) byte
//! for byte (tests/quant.rs, against blocks written by llama.cpp's `ggml_quantize_chunk`; Q8_0
//! and Q4_0 also equal gguf-py's `gguf.quants.quantize`); dequantization of all six equals
//! llama.cpp's and gguf-py's.
//!
//! Every other block type a GGUF file can hold is read (dequantized) only, bit for bit as
//! llama.cpp's `dequantize_row_*` (the same f32 operations in the same order; gguf-py's
//! `dequantize` gives the same values where it has the type), see [`dequantize_row`]:
//!
//! | dtype | elements / block | bytes / block | file |
//! |---|---|---|---|
//! | [`DType::Q4_1`] | 32 | 20 | [`q4_1`] |
//! | [`DType::Q2_K`] | 256 | 84 | [`q2_k`] |
//! | [`DType::Q3_K`] | 256 | 110 | [`q3_k`] |
//! | [`DType::IQ2_XXS`], [`DType::IQ2_XS`], [`DType::IQ2_S`] | 256 | 66, 74, 82 | [`iq2`] |
//! | [`DType::IQ3_XXS`], [`DType::IQ3_S`] | 256 | 98, 110 | [`iq3`] |
//! | [`DType::IQ1_S`], [`DType::IQ1_M`] | 256 | 50, 56 | [`iq1`] |
//! | [`DType::IQ4_NL`], [`DType::IQ4_XS`] | 32, 256 | 18, 136 | [`iq4`] |
//! | [`DType::TQ1_0`], [`DType::TQ2_0`] | 256 | 54, 66 | [`tq`] |
//! | [`DType::MXFP4`], [`DType::NVFP4`] | 32, 64 | 17, 36 | [`fp4`] |
//! | [`DType::Q1_0`] | 128 | 18 | [`q1_0`] |
//! | [`DType::Q2_0`] | 64 | 18 | [`q2_0`] |
//!
//! Their lattice and level tables are generated from llama.cpp's `ggml-common.h` into
//! [`tables`] by `scripts/gen_quant_tables.py`.
//!
//! For the loader: [`quantize_rows`] turns whole rows of a float tensor's stored bytes (f32,
//! f16 or bf16, straight from the memory map) into blocks, with a few KB of stack scratch and no
//! allocation, so disjoint row chunks can be quantized in parallel into disjoint parts of the
//! output ([`quantize_rows_par`] does that on the rayon pool).
//!
//! The products of these blocks with activations are in [`crate::kernels`]: activations are
//! quantized per block to int8 once per call and multiplied with integer dot products.

pub mod fp4;
pub mod iq1;
pub mod iq2;
pub mod iq3;
pub mod iq4;
pub mod q1_0;
pub mod q2_0;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod tables;
pub mod tq;
pub mod x4;

#[cfg(test)]
mod reference;

pub use frugal_tensor::{DType, LayoutError, MatRef};
use half::{bf16, f16};
use rayon::prelude::*;

/// Converts little-endian bytes of `dtype` to f32 (dequantizes quantized blocks: `out.len()`
/// must then be a whole number of blocks).
pub fn to_f32(bytes: &[u8], dtype: DType, out: &mut [f32]) {
    assert_eq!(Ok(bytes.len()), dtype.row_bytes(out.len()), "byte length");
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::I8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = b as i8 as f32;
            }
        }
        d if d.is_x4() => panic!("x4 rows are interleaved: take one with row_to_f32"),
        d => dequantize_row(bytes, d, out),
    }
}

/// Row `r` of `m` as f32 into `out`, its per-row scale applied (embedding lookups, checks): a
/// block row dequantized, a row of an x4 layout taken out of its quad first.
pub fn row_to_f32(m: &MatRef, r: usize, out: &mut [f32]) {
    if let Some(p) = x4::plain_of(m.dtype) {
        let mut plain = vec![0u8; m.row_stride()];
        x4::row_plain(m.dtype, m.data, m.row_stride(), r, &mut plain);
        to_f32(&plain, p, out);
    } else {
        to_f32(m.row_bytes(r), m.dtype, out);
    }
    if let Some(s) = &m.scale {
        let s = s.get(r);
        out.iter_mut().for_each(|v| *v *= s);
    }
}

/// Why a quantization request cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("{0} is not a dtype frugal quantizes to (q8_0, q4_0, q5_0, q5_1, q4_k, q5_k, q6_k)")]
    NotQuantized(&'static str),
    #[error("{0} weights cannot be quantized: the source must be f32, f16 or bf16")]
    NotFloat(&'static str),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{what}: {got} bytes is not {expected}")]
    Length {
        what: &'static str,
        expected: String,
        got: usize,
    },
}

/// Whether [`quantize_row`] makes `dtype`'s blocks (the plain block dtypes of the table in the
/// module doc; [`quantize_rows`] also makes the x4 layouts of Q8_0 and Q4_0).
pub fn quantizes(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q8_0
            | DType::Q4_0
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
    )
}

/// Quantizes `src` (a whole number of `dtype`'s blocks) into `dst` (exactly
/// `dtype.row_bytes(src.len())` bytes). Panics if [`quantizes`] says no or the lengths are
/// wrong (see [`quantize_rows`] for the checked entry point).
#[inline(always)]
pub fn quantize_row(src: &[f32], dtype: DType, dst: &mut [u8]) {
    match dtype {
        DType::Q8_0 => q8_0::quantize_row(src, dst),
        DType::Q4_0 => q4_0::quantize_row(src, dst),
        DType::Q5_0 => q5::quantize_row_0(src, dst),
        DType::Q5_1 => q5::quantize_row_1(src, dst),
        DType::Q4_K => q4_k::quantize_row(src, dst),
        DType::Q5_K => q5_k::quantize_row(src, dst),
        DType::Q6_K => q6_k::quantize_row(src, dst),
        d => panic!("{} is not a dtype frugal quantizes to", d.name()),
    }
}

/// Whether [`dequantize_row`] reads `dtype` (the block dtypes a checkpoint may hold that frugal
/// can compute with): every GGUF block dtype, not frugal's in-memory x4 layouts.
pub fn dequantizes(dtype: DType) -> bool {
    dtype.is_quantized() && !dtype.is_x4()
}

/// Dequantizes `src` (whole blocks of `dtype`) into `dst` (as many values as the blocks hold),
/// bit for bit as llama.cpp's `dequantize_row_*`. Panics if `dtype` is not quantized, is an x4
/// layout, or the lengths disagree.
pub fn dequantize_row(src: &[u8], dtype: DType, dst: &mut [f32]) {
    match dtype {
        DType::Q8_0 => q8_0::dequantize_row(src, dst),
        DType::Q4_0 => q4_0::dequantize_row(src, dst),
        DType::Q4_K => q4_k::dequantize_row(src, dst),
        DType::Q6_K => q6_k::dequantize_row(src, dst),
        DType::Q4_1 => q4_1::dequantize_row(src, dst),
        DType::Q5_0 => q5::dequantize_row_0(src, dst),
        DType::Q5_1 => q5::dequantize_row_1(src, dst),
        DType::Q2_K => q2_k::dequantize_row(src, dst),
        DType::Q3_K => q3_k::dequantize_row(src, dst),
        DType::Q5_K => q5_k::dequantize_row(src, dst),
        DType::IQ2_XXS => iq2::dequantize_row_xxs(src, dst),
        DType::IQ2_XS => iq2::dequantize_row_xs(src, dst),
        DType::IQ2_S => iq2::dequantize_row_s(src, dst),
        DType::IQ3_XXS => iq3::dequantize_row_xxs(src, dst),
        DType::IQ3_S => iq3::dequantize_row_s(src, dst),
        DType::IQ1_S => iq1::dequantize_row_s(src, dst),
        DType::IQ1_M => iq1::dequantize_row_m(src, dst),
        DType::IQ4_NL => iq4::dequantize_row_nl(src, dst),
        DType::IQ4_XS => iq4::dequantize_row_xs(src, dst),
        DType::TQ1_0 => tq::dequantize_row_1(src, dst),
        DType::TQ2_0 => tq::dequantize_row_2(src, dst),
        DType::MXFP4 => fp4::dequantize_row_mx(src, dst),
        DType::NVFP4 => fp4::dequantize_row_nv(src, dst),
        DType::Q1_0 => q1_0::dequantize_row(src, dst),
        DType::Q2_0 => q2_0::dequantize_row(src, dst),
        d => panic!("{} is not a quantized dtype", d.name()),
    }
}

/// The blocks of a dequantization, checked: `src` must be whole blocks of `block_bytes` bytes
/// and `dst` exactly `block` values for each; pairs each block's bytes with its values.
#[inline(always)]
pub(crate) fn blocks_of<'a>(
    name: &str,
    block: usize,
    block_bytes: usize,
    src: &'a [u8],
    dst: &'a mut [f32],
) -> impl Iterator<Item = (&'a [u8], &'a mut [f32])> {
    assert!(
        src.len().is_multiple_of(block_bytes),
        "{name} rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / block_bytes * block,
        "{name} output length"
    );
    src.chunks_exact(block_bytes)
        .zip(dst.chunks_exact_mut(block))
}

/// The little-endian f16 at `b[i..i + 2]` as f32 (exact, as ggml's `GGML_FP16_TO_FP32`).
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Checks a [`quantize_rows`] request; returns the number of rows.
fn check_rows(
    src: &[u8],
    src_dtype: DType,
    cols: usize,
    dst_dtype: DType,
    dst: &[u8],
) -> Result<usize, QuantError> {
    if !quantizes(x4::plain_of(dst_dtype).unwrap_or(dst_dtype)) {
        return Err(QuantError::NotQuantized(dst_dtype.name()));
    }
    if !src_dtype.is_float() {
        return Err(QuantError::NotFloat(src_dtype.name()));
    }
    let out_row = dst_dtype.row_bytes(cols)?;
    let in_row = src_dtype.row_bytes(cols)?;
    if in_row == 0 {
        if !src.is_empty() || !dst.is_empty() {
            return Err(QuantError::Length {
                what: "rows of 0 columns",
                expected: "0".into(),
                got: src.len().max(dst.len()),
            });
        }
        return Ok(0);
    }
    if !src.len().is_multiple_of(in_row) {
        return Err(QuantError::Length {
            what: "source",
            expected: format!("a whole number of {cols}-column {} rows", src_dtype.name()),
            got: src.len(),
        });
    }
    let rows = src.len() / in_row;
    if dst.len() != rows * out_row {
        return Err(QuantError::Length {
            what: "destination",
            expected: format!("{rows} rows of {out_row} bytes ({})", dst_dtype.name()),
            got: dst.len(),
        });
    }
    Ok(rows)
}

/// Quantizes whole rows: `src` holds rows of `cols` little-endian `src_dtype` values (f32, f16
/// or bf16, e.g. a row range of a tensor straight from the memory map), `dst` receives the same
/// rows as `dst_dtype` blocks (`rows * dst_dtype.row_bytes(cols)` bytes). Works one block at a
/// time through a stack buffer: no allocation (but for the x4 layouts: one scratch quad of
/// plain rows, interleaved into `dst` quad by quad), and the source is read once, in order.
/// Returns the number of rows.
pub fn quantize_rows(
    src: &[u8],
    src_dtype: DType,
    cols: usize,
    dst_dtype: DType,
    dst: &mut [u8],
) -> Result<usize, QuantError> {
    let rows = check_rows(src, src_dtype, cols, dst_dtype, dst)?;
    if let Some(plain_dtype) = x4::plain_of(dst_dtype) {
        // Plain blocks a quad at a time through one scratch quad, then interleaved.
        if !rows.is_multiple_of(x4::QUAD) || !x4::fits(x4::QUAD, cols) {
            return Err(QuantError::Length {
                what: "x4 rows",
                expected: "whole quads of 4 rows of whole blocks".into(),
                got: rows,
            });
        }
        let (in_quad, out_quad) = (src.len() / rows.max(1) * 4, dst.len() / rows.max(1) * 4);
        let mut plain = vec![0u8; out_quad];
        for (s, d) in src
            .chunks_exact(in_quad)
            .zip(dst.chunks_exact_mut(out_quad))
        {
            quantize_rows(s, src_dtype, cols, plain_dtype, &mut plain)?;
            x4::interleave_quad(plain_dtype, &plain, d);
        }
        return Ok(rows);
    }
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the features (just detected).
            unsafe { blocks_avx512(src, src_dtype, dst_dtype, dst) };
            return Ok(rows);
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            unsafe { blocks_avx2(src, src_dtype, dst_dtype, dst) };
            return Ok(rows);
        }
    }
    blocks(src, src_dtype, dst_dtype, dst);
    Ok(rows)
}

/// Quantizes `src` (whole blocks of `dst_dtype`, checked) block by block through a stack
/// buffer. Plain Rust, compiled again for AVX2 and AVX-512 below: the same IEEE operations in
/// the same order (Rust never contracts them), so every build writes the same bytes.
#[inline(always)]
fn blocks(src: &[u8], src_dtype: DType, dst_dtype: DType, dst: &mut [u8]) {
    let (bl, bb, es) = (
        dst_dtype.block_len(),
        dst_dtype.block_bytes(),
        src_dtype.block_bytes(),
    );
    let mut buf = [0f32; 256];
    for (sb, db) in src.chunks_exact(bl * es).zip(dst.chunks_exact_mut(bb)) {
        let x = &mut buf[..bl];
        floats_to_f32(sb, src_dtype, x);
        match dst_dtype {
            DType::Q8_0 => q8_0::quantize_row(x, db),
            DType::Q4_0 => q4_0::quantize_row(x, db),
            DType::Q5_0 => q5::quantize_row_0(x, db),
            DType::Q5_1 => q5::quantize_row_1(x, db),
            DType::Q4_K => q4_k::quantize_row(x, db),
            DType::Q5_K => q5_k::quantize_row(x, db),
            DType::Q6_K => q6_k::quantize_row(x, db),
            d => unreachable!("{} checked", d.name()),
        }
    }
}

/// [`blocks`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn blocks_avx2(src: &[u8], src_dtype: DType, dst_dtype: DType, dst: &mut [u8]) {
    blocks(src, src_dtype, dst_dtype, dst)
}

/// [`blocks`] compiled for AVX-512.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
fn blocks_avx512(src: &[u8], src_dtype: DType, dst_dtype: DType, dst: &mut [u8]) {
    blocks(src, src_dtype, dst_dtype, dst)
}

/// [`quantize_rows`] on the current rayon pool, in chunks of rows.
pub fn quantize_rows_par(
    src: &[u8],
    src_dtype: DType,
    cols: usize,
    dst_dtype: DType,
    dst: &mut [u8],
) -> Result<usize, QuantError> {
    let rows = check_rows(src, src_dtype, cols, dst_dtype, dst)?;
    if rows == 0 {
        return Ok(0);
    }
    let (in_row, out_row) = (src_dtype.row_bytes(cols)?, dst_dtype.row_bytes(cols)?);
    // About 256 KiB of source per task, in whole quads of rows for the x4 layouts.
    let mut chunk = (256 * 1024 / in_row).max(1);
    if dst_dtype.is_x4() {
        chunk = chunk.next_multiple_of(x4::QUAD);
    }
    src.par_chunks(chunk * in_row)
        .zip(dst.par_chunks_mut(chunk * out_row))
        .try_for_each(|(s, d)| quantize_rows(s, src_dtype, cols, dst_dtype, d).map(|_| ()))?;
    Ok(rows)
}

/// Float source bytes to f32 (exact for every dtype).
#[inline(always)]
fn floats_to_f32(src: &[u8], dtype: DType, out: &mut [f32]) {
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        d => unreachable!("{} is not a float dtype", d.name()),
    }
}

/// Largest `|v|`: the bit patterns of non-negative floats are ordered as their values, so an
/// integer maximum, which vectorizes (`f32::max` would not). For finite values this is the
/// maximum gguf-py and llama.cpp take.
#[inline(always)]
pub(crate) fn amax(x: &[f32]) -> f32 {
    let mut m = 0u32;
    for &v in x {
        m = m.max(v.to_bits() & 0x7fff_ffff);
    }
    f32::from_bits(m)
}

/// Rounds half away from zero (C's `roundf`, gguf-py's `np_roundf`) for `|v| <= 2^22`,
/// without a libm call and in operations that vectorize: the nearest integer (ties to even)
/// of `|v|`, plus one where `|v|` was a tie rounded down (`|v| - r` is exact).
#[inline(always)]
pub(crate) fn round_away(v: f32) -> i32 {
    let a = v.abs();
    let r = nearest_int(a);
    let r = r + i32::from(a - r as f32 == 0.5);
    if v < 0.0 {
        -r
    } else {
        r
    }
}

/// `trunc(v)` for `0 <= v <= 2^22` (negative values give 0 or -1), in operations that
/// vectorize: the nearest integer, less one where it rounded up.
#[inline(always)]
pub(crate) fn trunc_pos(v: f32) -> i32 {
    let r = nearest_int(v);
    r - i32::from(r as f32 > v)
}

/// llama.cpp's threshold under which a group counts as all zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// llama.cpp's `nearest_int`: round to nearest, ties to even, by adding 1.5 * 2^23 (valid for
/// `|v| <= 2^22`, which every caller guarantees; out of range it wraps as llama.cpp's does).
#[inline(always)]
pub fn nearest_int(v: f32) -> i32 {
    let f = v + 12582912.0;
    (f.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Candidate scales evaluated side by side (lanes; 21 and 18 are used).
const NC: usize = 24;

/// llama.cpp's `make_qkx2_quants` (sum of squared errors, no MAD): fits `x ~ scale * l + min`
/// with `l` in `0..=nmax`, weighted, trying `nstep + 1` scales around `nmax / (max - min)`.
/// Writes the levels into `l` and returns `(scale, -min)`.
///
/// Same result as the C loop, bit for bit, faster: the candidates are evaluated in lanes, each
/// lane doing exactly the C operations in the C order, then scanned in order. An accepted
/// candidate changes `min`, on which the later ones depend, so after each acceptance the
/// remaining candidates are evaluated again (rarely more than a few rounds).
#[inline(always)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    debug_assert!(n <= 32 && weights.len() == n && l.len() == n && (nstep as usize) < NC);
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = li as u8;
        let diff = scale * li as f32 + min - x[i];
        let diff = diff * diff;
        best_error += weights[i] * diff;
    }
    let ncand = (nstep + 1) as usize;
    let mut first = 0;
    while first < ncand {
        // Every candidate against the current `min` (lanes past `ncand` are ignored).
        let mut isc = [0f32; NC];
        for (c, v) in isc.iter_mut().enumerate() {
            *v = (rmin + rdelta * c as f32 + nmax as f32) / (max - min);
        }
        let (mut sum_l, mut sum_l2, mut sum_xl) = ([0f32; NC], [0f32; NC], [0f32; NC]);
        for i in 0..n {
            let (w, xi, xm) = (weights[i], x[i], x[i] - min);
            for c in 0..NC {
                let lf = nearest_int(isc[c] * xm).clamp(0, nmax) as f32;
                sum_l[c] += w * lf;
                sum_l2[c] += w * lf * lf;
                sum_xl[c] += w * lf * xi;
            }
        }
        let (mut this_scale, mut this_min, mut det) = ([0f32; NC], [0f32; NC], [0f32; NC]);
        for c in 0..NC {
            det[c] = sum_w * sum_l2[c] - sum_l[c] * sum_l[c];
            this_scale[c] = (sum_w * sum_xl[c] - sum_x * sum_l[c]) / det[c];
            this_min[c] = (sum_l2[c] * sum_x - sum_l[c] * sum_xl[c]) / det[c];
            if this_min[c] > 0.0 {
                this_min[c] = 0.0;
                this_scale[c] = sum_xl[c] / sum_l2[c];
            }
        }
        let mut cur_error = [0f32; NC];
        for i in 0..n {
            let (w, xi, xm) = (weights[i], x[i], x[i] - min);
            for c in 0..NC {
                let lf = nearest_int(isc[c] * xm).clamp(0, nmax) as f32;
                let diff = this_scale[c] * lf + this_min[c] - xi;
                let diff = diff * diff;
                cur_error[c] += w * diff;
            }
        }
        // The C loop's decisions, in order, from the first candidate not yet decided.
        let mut accepted = None;
        for c in first..ncand {
            if det[c] > 0.0 && cur_error[c] < best_error {
                accepted = Some(c);
                break;
            }
        }
        let Some(c) = accepted else { break };
        for i in 0..n {
            l[i] = nearest_int(isc[c] * (x[i] - min)).clamp(0, nmax) as u8;
        }
        best_error = cur_error[c];
        scale = this_scale[c];
        min = this_min[c];
        first = c + 1;
    }
    (scale, -min)
}

/// llama.cpp's `make_qx_quants` with `rmse_type = 1` (weights `x^2`) and no importance:
/// symmetric levels `l` in `-nmax..nmax`, stored as `l + nmax`; tries 19 scales around
/// `-nmax / max`, keeping the best weighted fit. Returns the scale. The 18 alternative
/// candidates do not depend on each other: their sums are computed in lanes (each in the C
/// order), then the C loop's decisions are replayed in order; bit for bit the C result.
#[inline(always)]
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let iscale = -nmax as f32 / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (li, &v) in l.iter_mut().zip(x) {
        let q = level(iscale, v);
        *li = (q + nmax) as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    // Candidate c is `is = c - 9` for c < 9 and `is = c - 8` after (0 skipped).
    let mut isc = [0f32; NC];
    for (c, v) in isc.iter_mut().enumerate() {
        let is = if c < 9 { c as i32 - 9 } else { c as i32 - 8 };
        *v = -(nmax as f32 + 0.1 * is as f32) / max;
    }
    let (mut slx, mut sl2) = ([0f32; NC], [0f32; NC]);
    for &v in x {
        let w = v * v;
        for c in 0..NC {
            let q = level(isc[c], v) as f32;
            slx[c] += w * v * q;
            sl2[c] += w * q * q;
        }
    }
    let mut chosen = None;
    for c in 0..18 {
        if sl2[c] > 0.0 && slx[c] * slx[c] > best * sl2[c] {
            scale = slx[c] / sl2[c];
            best = scale * slx[c];
            chosen = Some(c);
        }
    }
    if let Some(c) = chosen {
        for (li, &v) in l.iter_mut().zip(x) {
            *li = (level(isc[c], v) + nmax) as i8;
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::reference::{make_qkx2_quants_ref, make_qx_quants_ref};
    use super::*;

    #[test]
    fn nearest_int_ties_to_even() {
        for (v, want) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-127.6, -128),
        ] {
            assert_eq!(nearest_int(v), want, "{v}");
        }
    }

    #[test]
    fn rounding_helpers_match_std() {
        // Every f32 in [0, 200) with a step of 2^-15 (ties included), and their negatives.
        for i in 0..200 * 32768 {
            let v = i as f32 / 32768.0;
            let below = if i > 0 {
                f32::from_bits(v.to_bits() - 1)
            } else {
                0.0
            };
            for v in [v, -v, v + 1e-7, below, -below] {
                assert_eq!(round_away(v), v.round() as i32, "round {v}");
                if (0.0..4e6).contains(&v) {
                    assert_eq!(trunc_pos(v), v.trunc() as i32, "trunc {v}");
                }
            }
        }
        assert_eq!(amax(&[-3.0, 2.0, -0.0]), 3.0);
        assert_eq!(amax(&[0.0, -0.0]).to_bits(), 0);
    }

    /// The lane-parallel candidate searches equal llama.cpp's loops on blocks built to make
    /// many candidates win (so `make_qkx2_quants` re-evaluates several times).
    #[test]
    fn candidate_searches_equal_the_c_loops() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut rounds = 0;
        for case in 0..20000 {
            let kind = case % 5;
            let x: Vec<f32> = (0..32)
                .map(|i| match kind {
                    0 => rnd() * 2.0 - 1.0,
                    1 => rnd() * 3.0 + 0.1,
                    2 => ((rnd() * 8.0) as i32) as f32 * 0.25 - 0.7,
                    3 => (rnd() * 2.0 - 1.0).powi(3) * 10.0,
                    _ => (i as f32 * 0.37).sin() + rnd() * 0.01,
                })
                .collect();
            let mut sum_x2 = 0f32;
            for &v in &x {
                sum_x2 += v * v;
            }
            let av = (sum_x2 / 32.0).sqrt();
            let w: Vec<f32> = x.iter().map(|v| av + v.abs()).collect();
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            let ra = make_qkx2_quants(15, &x, &w, &mut a, -1.0, 0.1, 20);
            let rb = make_qkx2_quants_ref(15, &x, &w, &mut b, -1.0, 0.1, 20);
            assert_eq!(
                (ra.0.to_bits(), ra.1.to_bits()),
                (rb.0.to_bits(), rb.1.to_bits()),
                "{x:?}"
            );
            assert_eq!(a, b, "{x:?}");
            rounds += usize::from(
                ra != (
                    1.0 / (15.0
                        / (x.iter().fold(f32::MIN, |m, &v| m.max(v))
                            - x.iter().fold(0f32, |m, &v| m.min(v)))),
                    0.0,
                ),
            );
            let (mut c, mut d) = ([0i8; 16], [0i8; 16]);
            let sc = make_qx_quants(32, &x[..16], &mut c);
            let sd = make_qx_quants_ref(32, &x[..16], &mut d);
            assert_eq!(sc.to_bits(), sd.to_bits(), "{x:?}");
            assert_eq!(c, d, "{x:?}");
        }
        assert!(rounds > 1000);
    }

    #[test]
    fn block_sizes_match_the_format_modules() {
        assert_eq!(DType::Q8_0.block_bytes(), q8_0::BLOCK_BYTES);
        assert_eq!(DType::Q4_0.block_bytes(), q4_0::BLOCK_BYTES);
        assert_eq!(DType::Q4_K.block_bytes(), q4_k::BLOCK_BYTES);
        assert_eq!(DType::Q6_K.block_bytes(), q6_k::BLOCK_BYTES);
        assert_eq!(DType::Q8_0.block_len(), q8_0::BLOCK);
        assert_eq!(DType::Q4_K.block_len(), q4_k::BLOCK);
        for (d, len, bytes) in [
            (DType::Q4_1, q4_1::BLOCK, q4_1::BLOCK_BYTES),
            (DType::Q5_0, q5::BLOCK, q5::BLOCK_BYTES_0),
            (DType::Q5_1, q5::BLOCK, q5::BLOCK_BYTES_1),
            (DType::Q2_K, q2_k::BLOCK, q2_k::BLOCK_BYTES),
            (DType::Q3_K, q3_k::BLOCK, q3_k::BLOCK_BYTES),
            (DType::Q5_K, q5_k::BLOCK, q5_k::BLOCK_BYTES),
            (DType::IQ2_XXS, iq2::BLOCK, iq2::BLOCK_BYTES_XXS),
            (DType::IQ2_XS, iq2::BLOCK, iq2::BLOCK_BYTES_XS),
            (DType::IQ2_S, iq2::BLOCK, iq2::BLOCK_BYTES_S),
            (DType::IQ3_XXS, iq3::BLOCK, iq3::BLOCK_BYTES_XXS),
            (DType::IQ3_S, iq3::BLOCK, iq3::BLOCK_BYTES_S),
            (DType::IQ1_S, iq1::BLOCK, iq1::BLOCK_BYTES_S),
            (DType::IQ1_M, iq1::BLOCK, iq1::BLOCK_BYTES_M),
            (DType::IQ4_NL, iq4::BLOCK_NL, iq4::BLOCK_BYTES_NL),
            (DType::IQ4_XS, iq4::BLOCK_XS, iq4::BLOCK_BYTES_XS),
            (DType::TQ1_0, tq::BLOCK, tq::BLOCK_BYTES_1),
            (DType::TQ2_0, tq::BLOCK, tq::BLOCK_BYTES_2),
            (DType::MXFP4, fp4::BLOCK_MX, fp4::BLOCK_BYTES_MX),
            (DType::NVFP4, fp4::BLOCK_NV, fp4::BLOCK_BYTES_NV),
            (DType::Q1_0, q1_0::BLOCK, q1_0::BLOCK_BYTES),
            (DType::Q2_0, q2_0::BLOCK, q2_0::BLOCK_BYTES),
        ] {
            assert_eq!(
                (d.block_len(), d.block_bytes()),
                (len, bytes),
                "{}",
                d.name()
            );
        }
    }

    #[test]
    fn quantize_rows_checks_its_arguments() {
        let src = vec![0u8; 2 * 64 * 2];
        let mut dst = vec![0u8; 2 * 2 * 34];
        assert_eq!(
            quantize_rows(&src, DType::BF16, 64, DType::Q8_0, &mut dst),
            Ok(2)
        );
        assert!(matches!(
            quantize_rows(&src, DType::BF16, 64, DType::BF16, &mut dst),
            Err(QuantError::NotQuantized(_))
        ));
        // A block dtype read but not written.
        assert!(matches!(
            quantize_rows(&src, DType::BF16, 64, DType::Q4_1, &mut dst),
            Err(QuantError::NotQuantized(_))
        ));
        assert!(matches!(
            quantize_rows(&src, DType::I8, 64, DType::Q8_0, &mut dst),
            Err(QuantError::NotFloat(_))
        ));
        assert!(matches!(
            quantize_rows(&src, DType::BF16, 48, DType::Q8_0, &mut dst),
            Err(QuantError::Layout(LayoutError::Ragged { .. }))
        ));
        assert!(matches!(
            quantize_rows(&src, DType::BF16, 64, DType::Q8_0, &mut dst[1..]),
            Err(QuantError::Length { .. })
        ));
        assert!(matches!(
            quantize_rows(&src, DType::BF16, 128, DType::Q4_K, &mut dst),
            Err(QuantError::Layout(LayoutError::Ragged { .. }))
        ));
    }

    #[test]
    fn quantize_rows_par_equals_serial() {
        let cols = 512;
        let rows = 300;
        let src: Vec<u8> = (0..rows * cols)
            .flat_map(|i| bf16::from_f32(((i * 7919) % 1013) as f32 / 500.0 - 1.0).to_le_bytes())
            .collect();
        for dt in [
            DType::Q8_0,
            DType::Q4_0,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
        ] {
            let n = rows * dt.row_bytes(cols).unwrap();
            let (mut a, mut b) = (vec![0u8; n], vec![1u8; n]);
            quantize_rows(&src, DType::BF16, cols, dt, &mut a).unwrap();
            quantize_rows_par(&src, DType::BF16, cols, dt, &mut b).unwrap();
            assert_eq!(a, b, "{}", dt.name());
        }
    }
}
