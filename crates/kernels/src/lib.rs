//! Compute kernels: matrix-vector and matrix-matrix products that read weights in their stored
//! dtype (bf16, f16, f32, int8 with one scale per row, or the GGUF blocks of `frugal_quant`)
//! straight from the memory map, with f32 activations. Float and int8 weights are converted in
//! registers; the blocks Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, IQ4_NL, MXFP4, the K-quants Q2_K..Q6_K,
//! IQ4_XS, the grid I-quants IQ2_XXS..IQ3_S, TQ2_0, TQ1_0, IQ1_S and IQ1_M meet activations
//! quantized per block to int8 in integer dot products (`qmat.rs` with `qmat/iq.rs` and
//! `qmat/low_bit.rs`, `x86q/`), the other block types (NVFP4, Q1_0, Q2_0) go through
//! f32 rows (`dequant.rs`). Also the small element-wise ops of the forward pass.
//!
//! Hand-written because no crate offers products over borrowed bf16/f16 bytes without first
//! copying the matrix into another dtype, which would break frugal's memory promise; and for
//! the quantized blocks, because the products must run on the file's own GGUF layout in place
//! (the layout a GGUF file is mapped with), on frugal's rayon pool, with VNNI where the CPU has
//! it: ggml's kernels come with ggml's runtime and its repacked second copy of the weights, and
//! the Rust ports of them own their blocks in their own tensor types.
//! Every SIMD path has a scalar twin (`scalar.rs`; `qmat.rs` for the quantized products), and
//! the tests compare them.
//!
//! Layout of the work: the rows of `W` are split into blocks, one rayon task each (`split.rs`,
//! shared by every driver); a float task walks its rows (`tile.rs`) in register tiles of up to
//! 4 rows x `Kernel::TMAX` tokens (4 x 6 on AVX-512), so every weight converted into a register
//! is reused for several tokens. Within a tile the
//! products are accumulated along whole rows in SIMD lanes and reduced once at the end. More
//! than 64 tokens are done in groups of 64 to bound the activations streamed per row tile.
//! Decode (`n == 1`) writes straight into `y` chunks; for bf16 weights on AVX-512 it has its
//! own kernels, one row at a time: the exact one (`x86::Avx512::matvec_bf16`) splits the 32
//! weights of each 64-byte load into even and odd halves by a shift and a mask (no shuffle),
//! against the activations de-interleaved once per call; the fast one
//! (`x86::Avx512Bf16::matvec_bf16`) feeds them to `vdpbf16ps` with bf16 activations.
//! Prefill on the fast bf16 path (16 tokens or more) turns the product around: the activations
//! are packed once per call as bf16 pairs with tokens in SIMD lanes ([`pack_bf16_pairs`]), and
//! `x86::Avx512Bf16::gemm_packed` broadcasts one weight pair per row against 16 tokens at a time,
//! so no horizontal sums are needed and the weights are still read in place (6 rows x 64 tokens
//! per register tile, nearer the `vdpbf16ps` peak than the row-dot tiles). Matrices that share
//! an input (Q, K, V; gate, up) go through [`matmul_bf16_fast_many`]: one conversion, one
//! parallel pass.
//! Quantized weights have their own driver (`qmat::drive`: the same row split; decode one
//! sequential stream per task, prefill in 16-row tiles on AVX-512), see `x86q/`.
//!
//! Files: this one holds the public entry points (the products and their shape checks); `cpu.rs`
//! what the CPU can run ([`Isa`]); `probe.rs` the memory read-rate probe ([`read_rate`]);
//! `split.rs` the row split; `tile.rs` the float register-tile driver; `scalar.rs`, `x86.rs` the
//! float kernels; `qmat.rs` (and `qmat/`), `x86q/` the quantized ones; `ops.rs` the element-wise
//! ops.

pub mod aligned;
mod cpu;
mod dequant;
pub mod ops;
mod probe;
mod qmat;
pub mod scalar;
mod split;
mod tile;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86q;

#[cfg(test)]
mod tests;

use aligned::Aligned;
pub use cpu::{has_bf16_dot, isa, layout_for, reads_x4, Isa};
pub use frugal_tensor::{DType, LayoutError, MatRef, Scale};
pub use probe::read_rate;
use rayon::prelude::*;
use split::{par_row_tasks, row_tasks};
use tile::run;
pub(crate) use tile::{Acc, Kernel, TILE_R, TILE_T};

/// Multiplies each row's outputs in `y` (`n` tokens of `w.rows` values) by its scale (int8
/// weights; nothing otherwise).
fn apply_scale(w: &MatRef, y: &mut [f32]) {
    if let Some(s) = &w.scale {
        let scales: Vec<f32> = (0..w.rows).map(|r| s.get(r)).collect();
        for yt in y.chunks_mut(w.rows) {
            for (v, s) in yt.iter_mut().zip(&scales) {
                *v *= s;
            }
        }
    }
}

/// `y[t * w.rows + r] = sum_c w[r, c] * x[t * w.cols + c]` for `t < n`: every token's activations
/// times the weight matrix, in parallel over row blocks on the current rayon pool, with the best
/// SIMD level of this CPU. Float and int8 weights are converted to f32 exactly and accumulated
/// in f32. Block-quantized weights with integer kernels (Q8_0, Q4_0, Q5_0, Q4_1, Q5_1, IQ4_NL,
/// MXFP4, Q4_K, Q6_K) meet activations quantized per block to int8 in exact integer dot
/// products, scaled per block in f32 (see `qmat.rs`); the other block types are dequantized
/// to f32 rows (`dequant.rs`).
pub fn matmul(w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    matmul_with(isa(), w, x, n, y);
}

/// [`matmul`] at a chosen instruction-set level (for tests and benchmarks).
/// Panics if this CPU does not support `level` (see [`Isa::is_supported`]).
pub fn matmul_with(level: Isa, w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    check_shapes(w, x.len(), n, y.len());
    if w.dtype.is_quantized() {
        quant_product(level, w, x, n, y);
    } else {
        product(level, w, x, n, y);
    }
    apply_scale(w, y);
}

/// The fast path's product at `level`: [`matmul_with`], except that int8 weights in blocks of
/// 32 go through the integer kernels with activations quantized per block
/// ([`qmat::int8_blocks`]), as [`matmul_bf16_fast`] does.
pub fn matmul_fast_with(level: Isa, w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    check_shapes(w, x.len(), n, y.len());
    if w.dtype.is_quantized() || qmat::int8_blocks(w) {
        quant_product(level, w, x, n, y);
    } else {
        product(level, w, x, n, y);
    }
    apply_scale(w, y);
}

/// The product of quantized `w` (or int8 in blocks) at `level`, unscaled: the x86 kernels, or
/// the portable job at the scalar level and for the x4 layouts below AVX-512 (which have
/// AVX-512 kernels only).
fn quant_product(level: Isa, w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    if !qmat::has_int_kernel(w.dtype) {
        return dequant::matmul(w, x, n, y);
    }
    // AVX2 has kernels for the plain types it had first; the others take the portable job.
    let avx2 = matches!(
        w.dtype,
        DType::I8 | DType::Q8_0 | DType::Q4_0 | DType::Q4_K | DType::Q6_K
    );
    let portable = level == Isa::Scalar || (level == Isa::Avx2 && !avx2);
    if portable || w.rows == 0 || n == 0 {
        return qmat::matmul_portable(w, x, n, y);
    }
    #[cfg(target_arch = "x86_64")]
    x86q::matmul_quant(level, w, x, n, y);
    #[cfg(not(target_arch = "x86_64"))]
    panic!("{} is not available on this architecture", level.name());
}

/// The unscaled product at `level`.
fn product(level: Isa, w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    match level {
        Isa::Scalar => run(&scalar::ScalarKernel, w, x, n, y),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => run(
            &x86::Avx2::detect().expect("CPU lacks AVX2/FMA/F16C"),
            w,
            x,
            n,
            y,
        ),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx512Vnni => {
            let k = x86::Avx512::detect().expect("CPU lacks AVX-512F");
            if n == 1 && w.dtype == DType::BF16 {
                matvec_bf16_512(&k, w, x, y);
            } else {
                run(&k, w, x, n, y);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => panic!("{} is not available on this architecture", level.name()),
    }
}

/// Opt-in faster, slightly less exact product for bf16 weights: the activations are rounded to
/// bf16 once per call (round-to-nearest-even) and multiplied with AVX512_BF16 `vdpbf16ps`, which
/// does two bf16 products per f32 lane and accumulates in f32 (about twice the f32 FMA rate).
/// This is what llama.cpp does for bf16 weights. int8 weights with per-row scales take the
/// integer kernels of the block formats (activations quantized per block of 32 to int8, as for
/// Q8_0; [`matmul_fast_with`]). One token (decode) runs one row at a time
/// (`x86::Avx512Bf16::matvec_bf16`), more tokens in register tiles. Same layout as [`matmul`];
/// the result equals [`scalar::matmul_bf16_fast`] up to accumulation order. Falls back to the
/// exact [`matmul`] for other dtypes or when the CPU lacks AVX512_BF16.
pub fn matmul_bf16_fast(w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    check_shapes(w, x.len(), n, y.len());
    if qmat::int8_blocks(w) {
        matmul_fast_with(isa(), w, x, n, y);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if w.dtype == DType::BF16 && has_bf16_dot() {
        if let Some(k) = x86::Avx512Bf16::detect() {
            if n >= PACKED_MIN_TOKENS && w.cols.is_multiple_of(2) {
                let (xp, npad) = pack_bf16_pairs(x, n, w.cols);
                row_tasks(&mut [(w, &mut *y)], n, 6)
                    .into_par_iter()
                    .for_each(|mut t| k.gemm_packed(t.mat, &xp, npad, t.r0, &mut t.outs));
                apply_scale(w, y);
                return;
            }
            let xb = bf16_acts(x);
            if n == 1 {
                par_row_tasks(w.rows, w.cols, 1, 1, y, |r0, outs| {
                    k.matvec_bf16(w, &xb, r0, outs[0]);
                });
            } else {
                run(&k, w, &xb, n, y);
            }
            apply_scale(w, y);
            return;
        }
    }
    matmul(w, x, n, y);
}

/// Decode (`n == 1`) product of bf16 weights with the shuffle-free AVX-512 kernel: the
/// activations are de-interleaved once per call (a few KB), then row blocks run in parallel.
#[cfg(target_arch = "x86_64")]
fn matvec_bf16_512(k: &x86::Avx512, w: &MatRef, x: &[f32], y: &mut [f32]) {
    if w.rows == 0 {
        return;
    }
    let xd = scalar::deinterleave32(x);
    par_row_tasks(w.rows, w.cols, 1, 1, y, |r0, outs| {
        k.matvec_bf16(w, x, &xd, r0, outs[0]);
    });
}

/// `x` rounded to bf16 ([`scalar::bf16_bits`]) in a buffer on a cache-line boundary.
fn bf16_acts(x: &[f32]) -> Aligned<u16> {
    let mut xb = Aligned::zeroed(x.len());
    for (o, &v) in xb.iter_mut().zip(x) {
        *o = scalar::bf16_bits(v);
    }
    xb
}

/// From this many tokens the bf16 fast path packs the activations and runs
/// `x86::Avx512Bf16::gemm_packed` (lanes are tokens); fewer would waste most of a 16-lane vector.
const PACKED_MIN_TOKENS: usize = 16;

/// Packs `n` tokens of activations (`cols` even) as bf16 pairs for the prefill kernel: for each
/// column pair `k`, `npad` u32 lanes (`npad` = `n` rounded up to 16) holding
/// `(x[t][2k], x[t][2k+1])` rounded to nearest even, zeros in the padding lanes.
pub(crate) fn pack_bf16_pairs(x: &[f32], n: usize, cols: usize) -> (Aligned<u32>, usize) {
    let npad = n.div_ceil(16) * 16;
    let kp = cols / 2;
    let mut out = Aligned::zeroed(kp * npad);
    // Column-pair chunks in parallel; inside one, token by token (activations read in order).
    let kc = 64;
    out.par_chunks_mut(kc * npad)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let k0 = ci * kc;
            let kn = chunk.len() / npad;
            for t in 0..n {
                let row = &x[t * cols + 2 * k0..t * cols + 2 * (k0 + kn)];
                for (k, p) in row.chunks_exact(2).enumerate() {
                    chunk[k * npad + t] =
                        scalar::bf16_bits(p[0]) as u32 | (scalar::bf16_bits(p[1]) as u32) << 16;
                }
            }
        });
    (out, npad)
}

/// [`matmul_bf16_fast`] of several matrices that share one input (Q, K and V; gate and up):
/// the activations are converted once and all the matrices' row blocks run in one parallel
/// pass, so there is one synchronisation instead of one per matrix.
pub fn matmul_bf16_fast_many(items: &mut [(&MatRef, &mut [f32])], x: &[f32], n: usize) {
    for (w, y) in items.iter() {
        check_shapes(w, x.len(), n, y.len());
    }
    #[cfg(target_arch = "x86_64")]
    if has_bf16_dot()
        && !items.is_empty()
        && items
            .iter()
            .all(|(w, _)| w.dtype == DType::BF16 && w.scale.is_none())
    {
        if let Some(k) = x86::Avx512Bf16::detect() {
            let cols = items[0].0.cols;
            if n >= PACKED_MIN_TOKENS && cols.is_multiple_of(2) {
                let (xp, npad) = pack_bf16_pairs(x, n, cols);
                row_tasks(items, n, 6).into_par_iter().for_each(|mut t| {
                    k.gemm_packed(t.mat, &xp, npad, t.r0, &mut t.outs);
                });
                return;
            }
            if n == 1 {
                let xb = bf16_acts(x);
                row_tasks(items, 1, 1).into_par_iter().for_each(|mut t| {
                    k.matvec_bf16(t.mat, &xb, t.r0, t.outs[0]);
                });
                return;
            }
        }
    }
    for (w, y) in items.iter_mut() {
        matmul_bf16_fast(w, x, n, y);
    }
}

fn check_shapes(w: &MatRef, xlen: usize, n: usize, ylen: usize) {
    assert_eq!(
        Ok(w.row_stride()),
        w.dtype.row_bytes(w.cols),
        "matrix row length"
    );
    assert_eq!(w.data.len(), w.rows * w.row_stride(), "matrix byte length");
    assert_eq!(xlen, n * w.cols, "activation length");
    assert_eq!(ylen, n * w.rows, "output length");
}
