//! Portable scalar kernels: the reference every SIMD path is tested against.

use super::{Acc, DType, Kernel, MatRef, TILE_T};
use half::{bf16, f16};

pub use frugal_quant::to_f32;

/// Dot product of one stored row with f32 activations, accumulated in f32 (unscaled: an int8
/// row's scale is applied by the caller). Quantized rows are dequantized block by block: this
/// is the float reference, not the integer product [`super::matmul`] computes for them.
pub fn dot(row: &[u8], dtype: DType, x: &[f32]) -> f32 {
    assert_eq!(Ok(row.len()), dtype.row_bytes(x.len()), "byte length");
    let mut acc = 0f32;
    match dtype {
        DType::F32 => {
            for (c, &xv) in row.chunks_exact(4).zip(x) {
                acc += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv;
            }
        }
        DType::F16 => {
            for (c, &xv) in row.chunks_exact(2).zip(x) {
                acc += f16::from_le_bytes([c[0], c[1]]).to_f32() * xv;
            }
        }
        DType::BF16 => {
            for (c, &xv) in row.chunks_exact(2).zip(x) {
                acc += bf16::from_le_bytes([c[0], c[1]]).to_f32() * xv;
            }
        }
        DType::I8 => {
            for (&b, &xv) in row.iter().zip(x) {
                acc += (b as i8 as f32) * xv;
            }
        }
        d if d.is_x4() => panic!("x4 rows are interleaved: take one with MatRef::row_to_f32"),
        _ => {
            let (bl, bb) = (dtype.block_len(), dtype.block_bytes());
            let mut buf = [0f32; 256];
            for (blk, xb) in row.chunks_exact(bb).zip(x.chunks_exact(bl)) {
                frugal_quant::dequantize_row(blk, dtype, &mut buf[..bl]);
                for (&w, &xv) in buf.iter().zip(xb) {
                    acc += w * xv;
                }
            }
        }
    }
    acc
}

/// Rounds f32 activations to bf16 bits, round-to-nearest-even (NaN stays NaN), as the fast
/// bf16 path does once per call.
pub fn round_to_bf16(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| bf16_bits(v)).collect()
}

/// `v` rounded to bf16 (nearest, ties to even; NaN stays NaN), as bits. Branch-free integer
/// arithmetic, so loops over it vectorize.
#[inline(always)]
pub fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Dot product of bf16 weight bytes with bf16 activation bits; every product is exact in f32
/// (8-bit significands), accumulated in f32 as `vdpbf16ps` does.
pub fn dot_bf16(row: &[u8], x: &[u16]) -> f32 {
    assert_eq!(row.len(), x.len() * 2);
    let mut acc = 0f32;
    for (c, &xb) in row.chunks_exact(2).zip(x) {
        let wv = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
        acc += wv * f32::from_bits((xb as u32) << 16);
    }
    acc
}

/// Naive single-threaded reference for [`super::matmul`]: the same layout, one dot per output,
/// times the row's scale if the matrix has one.
pub fn matmul(w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols);
    assert_eq!(y.len(), n * w.rows);
    for t in 0..n {
        let xt = &x[t * w.cols..(t + 1) * w.cols];
        for r in 0..w.rows {
            let s = w.scale.map_or(1.0, |s| s.get(r));
            y[t * w.rows + r] = dot(w.row_bytes(r), w.dtype, xt) * s;
        }
    }
}

/// Scalar twin of [`super::matmul_bf16_fast`] for bf16 weights: activations rounded to bf16
/// (nearest-even), exact products, f32 accumulation. Panics for other dtypes.
pub fn matmul_bf16_fast(w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(w.dtype, DType::BF16, "the fast path is for bf16 weights");
    assert_eq!(x.len(), n * w.cols);
    assert_eq!(y.len(), n * w.rows);
    let xb = round_to_bf16(x);
    for t in 0..n {
        let xt = &xb[t * w.cols..(t + 1) * w.cols];
        for r in 0..w.rows {
            y[t * w.rows + r] = dot_bf16(w.row_bytes(r), xt);
        }
    }
}

/// The portable register-tile kernel of [`super::matmul_with`]`(Isa::Scalar, ..)`.
pub(crate) struct ScalarKernel;

impl Kernel for ScalarKernel {
    type X = f32;
    const TMAX: usize = TILE_T;

    fn tile(
        &self,
        w: &MatRef,
        r0: usize,
        nr: usize,
        x: &[f32],
        t0: usize,
        nt: usize,
        c0: usize,
        c1: usize,
        acc: &mut Acc,
    ) {
        let es = w.dtype.block_bytes();
        for (r, ar) in acc[..nr].iter_mut().enumerate() {
            let row = &w.row_bytes(r0 + r)[c0 * es..c1 * es];
            for (t, a) in ar[..nt].iter_mut().enumerate() {
                let xt = &x[(t0 + t) * w.cols + c0..(t0 + t) * w.cols + c1];
                *a += dot(row, w.dtype, xt);
            }
        }
    }
}

/// The whole 32-column blocks of `x`, each reordered as its 16 even then its 16 odd elements:
/// the activation layout of the AVX-512 bf16 decode kernel, which splits every 32 loaded bf16
/// weights into their even and odd halves without shuffling.
pub fn deinterleave32(x: &[f32]) -> super::aligned::Aligned<f32> {
    let mut out = super::aligned::Aligned::zeroed(x.len() / 32 * 32);
    for (b, o) in x.chunks_exact(32).zip(out.chunks_exact_mut(32)) {
        for i in 0..16 {
            o[i] = b[2 * i];
            o[16 + i] = b[2 * i + 1];
        }
    }
    out
}

/// XOR of the little-endian u64 words of `b` (a last partial word zero-padded): reads every
/// byte, for the memory read rate probe ([`super::read_rate`]).
pub fn xor_fold(b: &[u8]) -> u64 {
    b.chunks(8).fold(0, |a, w| {
        let mut x = [0u8; 8];
        x[..w.len()].copy_from_slice(w);
        a ^ u64::from_le_bytes(x)
    })
}
