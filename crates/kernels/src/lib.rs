//! Compute kernels: matrix-vector and matrix-matrix products that read weights in their stored
//! dtype (bf16, f16, f32, int8 with one scale per row, or the GGUF blocks Q8_0, Q4_0, Q4_K,
//! Q6_K of `frugal_quant`) straight from the memory map, with f32 activations. Float and int8
//! weights are converted in registers; quantized blocks meet activations quantized per block to
//! int8 in integer dot products (`qmat.rs`, `x86q.rs`). Also the small element-wise ops of the
//! forward pass.
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
//! Layout of the work: the rows of `W` are split into blocks, one rayon task each; a task walks
//! its rows in register tiles of up to 4 rows x `Kernel::TMAX` tokens (4 x 6 on AVX-512), so
//! every weight converted into a register is reused for several tokens. Within a tile the
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
//! per register tile; 89 % of this machine's measured `vdpbf16ps` peak on one core, against 80 %
//! for the row-dot tiles). Matrices that share an input (Q, K, V; gate, up) go through
//! [`matmul_bf16_fast_many`]: one conversion, one parallel pass.
//! Quantized weights have their own driver (`qmat::drive`: the same row split; decode one
//! sequential stream per task, prefill in 16-row tiles on AVX-512), see `x86q.rs`.

pub mod aligned;
pub mod ops;
mod qmat;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86q;

#[cfg(test)]
mod tests;

use aligned::Aligned;
pub use frugal_tensor::{DType, LayoutError, MatRef, Scale};
use rayon::prelude::*;
use std::sync::OnceLock;

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

/// The dtype the loader gives a `rows x cols` matrix of `plain` blocks: its x4 layout
/// (`frugal_quant::x4`) where this CPU runs the AVX-512 quantized kernels (which read it) and
/// the shape fits, else `plain`.
pub fn layout_for(plain: DType, rows: usize, cols: usize) -> DType {
    match frugal_tensor::x4::x4_of(plain) {
        Some(x4) if frugal_tensor::x4::fits(rows, cols) && reads_x4() => x4,
        _ => plain,
    }
}

/// An instruction-set level the kernels can run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, no SIMD intrinsics.
    Scalar,
    /// AVX2 + FMA + F16C, 8 f32 lanes.
    Avx2,
    /// AVX-512F (+BW, VL), 16 f32 lanes.
    Avx512,
    /// AVX-512 with VNNI (`vpdpbusd`, `vpdpwssd`): quantized products use it; float products are
    /// those of [`Isa::Avx512`].
    Avx512Vnni,
}

impl Isa {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// Whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::Avx2::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::Avx512::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86q::Avx512Vnni::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level this CPU supports, slowest first.
    pub fn supported() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }
}

/// The best instruction-set level of this CPU, detected once.
pub fn isa() -> Isa {
    static BEST: OnceLock<Isa> = OnceLock::new();
    *BEST.get_or_init(|| Isa::supported().into_iter().last().unwrap_or(Isa::Scalar))
}

/// Whether this CPU's quantized kernels read the x4 layouts [`DType::Q4_0X4`] and
/// [`DType::Q8_0X4`] (AVX-512; elsewhere such a matrix would go through the scalar job, so the
/// loader keeps the plain blocks).
pub fn reads_x4() -> bool {
    matches!(isa(), Isa::Avx512 | Isa::Avx512Vnni)
}

/// Whether [`matmul_bf16_fast`] really takes the bf16 dot-product path on this CPU
/// (AVX512_BF16 present) rather than falling back to [`matmul`].
pub fn has_bf16_dot() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            x86::Avx512Bf16::detect().is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `y[t * w.rows + r] = sum_c w[r, c] * x[t * w.cols + c]` for `t < n`: every token's activations
/// times the weight matrix, in parallel over row blocks on the current rayon pool, with the best
/// SIMD level of this CPU. Float and int8 weights are converted to f32 exactly and accumulated
/// in f32. Block-quantized weights (Q8_0, Q4_0, Q4_K, Q6_K) meet activations quantized per
/// block to int8 in exact integer dot products, scaled per block in f32 (see `qmat.rs`).
pub fn matmul(w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    matmul_with(isa(), w, x, n, y);
}

/// [`matmul`] at a chosen instruction-set level (for tests and benchmarks).
/// Panics if this CPU does not support `level` (see [`Isa::is_supported`]).
pub fn matmul_with(level: Isa, w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    check_shapes(w, x.len(), n, y.len());
    if w.dtype.is_quantized() {
        qmat::matmul_quant(level, w, x, n, y);
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
        qmat::matmul_quant(level, w, x, n, y);
    } else {
        product(level, w, x, n, y);
    }
    apply_scale(w, y);
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

/// Reads every byte of `parts` once on the current rayon pool (1 MiB pieces folded by XOR:
/// 64-byte vector loads on AVX-512, else [`scalar::xor_fold`]) and returns the rate in bytes per second:
/// the memory read bandwidth that bounds decoding, measured on the weights themselves where
/// they lie (the map's page cache or the quantized arena), so `bytes per token / rate` is the
/// decode ceiling of this machine at this moment. Allocates nothing.
pub fn read_rate(parts: &[&[u8]]) -> f64 {
    const PIECE: usize = 1 << 20;
    let pieces: Vec<&[u8]> = parts.iter().flat_map(|p| p.chunks(PIECE)).collect();
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let t = std::time::Instant::now();
    #[cfg(target_arch = "x86_64")]
    let simd = x86::Avx512::detect();
    let sum = pieces
        .par_iter()
        .map(|p| {
            let mut done = 0;
            let mut a = 0u64;
            #[cfg(target_arch = "x86_64")]
            if let Some(k) = &simd {
                a = k.xor_fold(p);
                done = p.len() / 256 * 256;
            }
            a ^ scalar::xor_fold(&p[done..])
        })
        .reduce(|| 0, |a, b| a ^ b);
    std::hint::black_box(sum);
    total as f64 / t.elapsed().as_secs_f64().max(1e-9)
}

/// Opt-in faster, slightly less exact product for bf16 weights: the activations are rounded to
/// bf16 once per call (round-to-nearest-even) and multiplied with AVX512_BF16 `vdpbf16ps`, which
/// does two bf16 products per f32 lane and accumulates in f32 (about twice the f32 FMA rate).
/// This is what llama.cpp does for bf16 weights. int8 weights with per-row scales take the
/// integer kernels of the block formats (activations quantized per block of 32 to int8, as for
/// Q8_0; [`matmul_fast_with`]). One token (decode) runs one row at a time
/// (`x86::Avx512Bf16::matvec_bf16`), more tokens in register tiles. Same layout as [`matmul`]; the result equals
/// [`scalar::matmul_bf16_fast`] up to accumulation order. Falls back to the exact [`matmul`] for
/// other dtypes or when the CPU lacks AVX512_BF16.
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
                let rpt = rows_per_task(w.rows, w.cols, 1);
                y.par_chunks_mut(rpt).enumerate().for_each(|(b, ys)| {
                    k.matvec_bf16(w, &xb, b * rpt, ys);
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
    let rpt = rows_per_task(w.rows, w.cols, 1);
    y.par_chunks_mut(rpt).enumerate().for_each(|(b, ys)| {
        k.matvec_bf16(w, x, &xd, b * rpt, ys);
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

/// One parallel task: matrix `mat` of a batch, its rows `r0..r0 + outs[0].len()`, and token
/// `t`'s outputs for those rows in `outs[t]`.
struct RowTask<'m, 'w, 'y> {
    mat: &'m MatRef<'w>,
    r0: usize,
    outs: Vec<&'y mut [f32]>,
}

/// Splits every `(matrix, y)` of a batch into row blocks (multiples of `align` rows) with their
/// output slices, ready to run in one parallel pass.
fn row_tasks<'s, 'm, 'w>(
    items: &'s mut [(&'m MatRef<'w>, &mut [f32])],
    n: usize,
    align: usize,
) -> Vec<RowTask<'m, 'w, 's>> {
    let mut tasks = Vec::new();
    for (w, y) in items.iter_mut() {
        let rows = w.rows;
        if rows == 0 || n == 0 {
            continue;
        }
        let rpt = rows_per_task(rows, w.cols, n).div_ceil(align) * align;
        let first = tasks.len();
        for b in 0..rows.div_ceil(rpt) {
            tasks.push(RowTask {
                mat: w,
                r0: b * rpt,
                outs: Vec::with_capacity(n),
            });
        }
        for yt in y.chunks_mut(rows) {
            for (b, s) in yt.chunks_mut(rpt).enumerate() {
                tasks[first + b].outs.push(s);
            }
        }
    }
    tasks
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

/// Largest register tile: rows x tokens. Every kernel's `TMAX` is at most `TILE_T`.
pub(crate) const TILE_R: usize = 4;
pub(crate) const TILE_T: usize = 8;

/// Accumulator block a kernel adds one tile's dot products into: `acc[r][t]`.
pub(crate) type Acc = [[f32; TILE_T]; TILE_R];

/// One instruction-set implementation of the register-tile product.
pub(crate) trait Kernel: Sync {
    /// Activation element type (f32, or bf16 bits for the fast path).
    type X: Copy + Sync;
    /// Most tokens in one register tile (at most [`TILE_T`]).
    const TMAX: usize;

    /// `acc[r][t] += sum_{c in c0..c1} w[r0 + r, c] * x[(t0 + t) * w.cols + c]`
    /// for `r < nr <= TILE_R`, `t < nt <= TMAX`. Handles any `c0..c1`, ragged tails included.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        w: &MatRef,
        r0: usize,
        nr: usize,
        x: &[Self::X],
        t0: usize,
        nt: usize,
        c0: usize,
        c1: usize,
        acc: &mut Acc,
    );
}

/// Rows per rayon task, a multiple of [`TILE_R`]: enough tasks to balance, not so many that
/// scheduling costs show.
fn rows_per_task(rows: usize, cols: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let tasks = threads * 8;
    let mut rpt = rows.div_ceil(tasks);
    // At least ~32k multiply-adds per task.
    let min_rows = (32 * 1024 / (cols * n).max(1)).max(1);
    rpt = rpt.max(min_rows);
    rpt.div_ceil(TILE_R) * TILE_R
}

/// Most tokens computed in one pass over the weights.
const TOKEN_GROUP: usize = 64;

/// Drives a kernel over the whole product.
fn run<K: Kernel>(k: &K, w: &MatRef, x: &[K::X], n: usize, y: &mut [f32]) {
    let rows = w.rows;
    if rows == 0 || n == 0 {
        return;
    }
    if n > TOKEN_GROUP {
        // Bounds the activations streamed per row tile; the weights are re-read once per group,
        // which costs little next to 2 * TOKEN_GROUP flops per weight.
        let (xc, yc) = (TOKEN_GROUP * w.cols, TOKEN_GROUP * rows);
        for (xg, yg) in x.chunks(xc).zip(y.chunks_mut(yc)) {
            run(k, w, xg, yg.len() / rows, yg);
        }
        return;
    }
    let rpt = rows_per_task(rows, w.cols, n);
    if n == 1 {
        y.par_chunks_mut(rpt).enumerate().for_each(|(b, ys)| {
            block(k, w, x, 1, b * rpt, &mut [ys]);
        });
        return;
    }
    // Task b owns rows b*rpt.. of every token's output: gather those slices per task.
    let ntasks = rows.div_ceil(rpt);
    let mut per_task: Vec<Vec<&mut [f32]>> = (0..ntasks).map(|_| Vec::with_capacity(n)).collect();
    for yt in y.chunks_mut(rows) {
        for (b, s) in yt.chunks_mut(rpt).enumerate() {
            per_task[b].push(s);
        }
    }
    per_task
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut outs)| {
            block(k, w, x, n, b * rpt, &mut outs);
        });
}

/// Computes rows `r0 .. r0 + outs[0].len()` for all `n` tokens into `outs[t]`: row tiles
/// outer, so a tile's converted weights stay in L1 while the token tiles' activations stream
/// from L2/L3. Whole rows at a time: each tile ends with a horizontal reduction of its
/// accumulators, and measurements showed splitting the columns into chunks (to keep the
/// activations in L2) costs more in extra reductions than it gains, up to 64 tokens.
fn block<K: Kernel>(k: &K, w: &MatRef, x: &[K::X], n: usize, r0: usize, outs: &mut [&mut [f32]]) {
    let nrows = outs[0].len();
    let mut rt = 0;
    while rt < nrows {
        let nr = TILE_R.min(nrows - rt);
        let mut tt = 0;
        while tt < n {
            let nt = K::TMAX.min(n - tt);
            let mut acc: Acc = [[0.0; TILE_T]; TILE_R];
            k.tile(w, r0 + rt, nr, x, tt, nt, 0, w.cols, &mut acc);
            for (t, o) in outs[tt..tt + nt].iter_mut().enumerate() {
                for (r, a) in acc[..nr].iter().enumerate() {
                    o[rt + r] = a[t];
                }
            }
            tt += nt;
        }
        rt += nr;
    }
}
