//! x86-64 SIMD register-tile kernels: AVX-512F (16 lanes), AVX2 + FMA + F16C (8 lanes) and the
//! AVX512_BF16 dot-product kernel of the fast bf16 path.
//!
//! Each instruction set is represented by a zero-sized token that can only be made by
//! `detect()`, after run-time feature detection; the safe `Kernel::tile` methods take `&self`,
//! so holding a token proves the CPU can run the `#[target_feature]` functions they call.
//! Weights are read with unaligned loads (the memory map only guarantees element alignment).

use super::scalar;
use super::{Acc, DType, Kernel, MatRef, TILE_R, TILE_T};
use std::arch::x86_64::*;

/// How far ahead (bytes) the in-place decode kernels prefetch the rows they read
/// ([`prefetch_lines`]): one row at a time (`row_q4_0`, `row_q8_0`, `rows_q4_k::<1>`,
/// `rows_q6_k::<1>`) or four interleaved (`rows_*::<4>`). The hardware prefetchers stop at
/// every 4 KiB page and leave these kernels short of the memory bandwidth (the 34-, 18-, 144-
/// and 210-byte blocks are not line-aligned, and each step spends more instructions per byte
/// than a plain read); a software prefetch a page ahead keeps the lines coming across page
/// boundaries. One page: measured faster than less for every block type, and farther gains
/// nothing. The x4 kernels of `--quant` and the read-rate probe ([`crate::read_rate`])
/// prefetch as far.
pub(crate) const PREFETCH: usize = 4096;

/// Prefetches the `n` cache lines from `p + PREFETCH` into L1.
#[inline(always)]
pub(crate) fn prefetch_lines(p: *const u8, n: usize) {
    for i in 0..n {
        // SAFETY: a prefetch never faults; the address is only computed (wrapping), so it may
        // lie past the row or the mapping.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + 64 * i) as *const i8) };
    }
}

/// Weight dtype as a const-generic parameter, so the conversion is chosen at compile time.
const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;
const I8: u8 = 3;

/// Bytes per weight of the const dtype `D`.
const fn elem_size(d: u8) -> usize {
    match d {
        F32 => 4,
        I8 => 1,
        _ => 2,
    }
}

/// `acc[r0 + r][t0 + t] += part[r][t]`.
#[inline(always)]
fn add_into<const R: usize, const T: usize>(
    acc: &mut Acc,
    r0: usize,
    t0: usize,
    part: [[f32; T]; R],
) {
    for (a, p) in acc[r0..r0 + R].iter_mut().zip(part.iter()) {
        for (av, pv) in a[t0..t0 + T].iter_mut().zip(p.iter()) {
            *av += pv;
        }
    }
}

/// Checks the arguments of `Kernel::tile` so the unsafe kernels below can read without bounds
/// checks: rows `r0..r0+nr` and columns `c0..c1` lie inside `w`, tokens `t0..t0+nt` inside `x`.
#[allow(clippy::too_many_arguments)]
fn check_tile<X>(
    w: &MatRef,
    r0: usize,
    nr: usize,
    x: &[X],
    t0: usize,
    nt: usize,
    c0: usize,
    c1: usize,
    tmax: usize,
) {
    assert!(nr <= TILE_R && nt <= tmax && tmax <= TILE_T, "tile size");
    assert!(
        r0 + nr <= w.rows && c0 <= c1 && c1 <= w.cols,
        "tile inside the matrix"
    );
    assert!((t0 + nt) * w.cols <= x.len(), "tile inside the activations");
    assert!(!w.dtype.is_quantized(), "element dtypes only");
    assert_eq!(
        w.data.len(),
        w.rows * w.cols * w.dtype.block_bytes(),
        "matrix byte length"
    );
}

/// Adds the scalar dot products of columns `c0..c1` (a ragged tail) to `acc`.
#[allow(clippy::too_many_arguments)]
fn tail_f32(
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
    if c0 == c1 {
        return;
    }
    let es = w.dtype.block_bytes();
    for (r, ar) in acc[..nr].iter_mut().enumerate() {
        let row = &w.row_bytes(r0 + r)[c0 * es..c1 * es];
        for (t, a) in ar[..nt].iter_mut().enumerate() {
            let b = (t0 + t) * w.cols;
            *a += scalar::dot(row, w.dtype, &x[b + c0..b + c1]);
        }
    }
}

/// Splits a tile of `nr x nt` into sub-tiles of rows {4, 1} and tokens from `tsizes`
/// (descending, ending in 1) and calls `f(r, rr, t, tt)` for each.
#[inline(always)]
fn for_subtiles(
    nr: usize,
    nt: usize,
    tsizes: &[usize],
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let mut r = 0;
    while r < nr {
        let rr = if nr - r >= 4 { 4 } else { 1 };
        let mut t = 0;
        while t < nt {
            let tt = tsizes.iter().copied().find(|&s| s <= nt - t).unwrap_or(1);
            f(r, rr, t, tt);
            t += tt;
        }
        r += rr;
    }
}

/// Calls `$kern::<D, R, T>($args)` for the runtime `(dtype, rr, tt)` and adds the result to
/// `$acc` at `($r, $t)`; the listed `(R, T)` pairs are the only sizes instantiated.
macro_rules! dispatch {
    ($kern:ident, $dtype:expr, $rr:expr, $tt:expr, $acc:expr, $r:expr, $t:expr, $args:tt,
     [$(($R:literal, $T:literal)),*]) => {
        match ($dtype, $rr, $tt) {
            $(
                (DType::F32, $R, $T) => add_into($acc, $r, $t, $kern::<F32, $R, $T> $args),
                (DType::F16, $R, $T) => add_into($acc, $r, $t, $kern::<F16, $R, $T> $args),
                (DType::BF16, $R, $T) => add_into($acc, $r, $t, $kern::<BF16, $R, $T> $args),
                (DType::I8, $R, $T) => add_into($acc, $r, $t, $kern::<I8, $R, $T> $args),
            )*
            _ => unreachable!("sub-tile size"),
        }
    };
}

/// Horizontal sums of all `R x T` accumulators.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
fn reduce_tile<const R: usize, const T: usize>(acc: [[__m512; T]; R]) -> [[f32; T]; R] {
    // A transposing tree of shuffles (45 ops per 16 sums instead of 112) was slower on gemma
    // shapes, so each accumulator is reduced on its own.
    let mut out = [[0f32; T]; R];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (ov, av) in o.iter_mut().zip(a) {
            *ov = _mm512_reduce_add_ps(*av);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// AVX-512F

/// Proof that the CPU has AVX-512F/BW/VL and AVX512_VNNI.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Vnni {
    _private: (),
}

impl Avx512Vnni {
    pub(crate) fn detect() -> Option<Self> {
        (Avx512::detect().is_some() && is_x86_feature_detected!("avx512vnni"))
            .then_some(Avx512Vnni { _private: () })
    }
}

/// Proof that the CPU has AVX-512F.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512 {
    _private: (),
}

impl Avx512 {
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw"))
        .then_some(Avx512 { _private: () })
    }
}

/// Loads 16 weights of dtype `D` at `p` as f32.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
unsafe fn load16<const D: u8>(p: *const u8) -> __m512 {
    // SAFETY: the caller guarantees 16 elements of dtype D are readable at p; loads are unaligned.
    unsafe {
        match D {
            F32 => _mm512_loadu_ps(p as *const f32),
            F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
            I8 => _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))),
            _ => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256(p as *const __m256i),
            ))),
        }
    }
}

/// Dot products of `R` weight rows (at `w`, `ws` bytes apart) with `T` activation rows (at `x`,
/// `xs` floats apart) over `len` columns, `len` a multiple of 16.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
#[allow(clippy::needless_range_loop)]
unsafe fn kern512<const D: u8, const R: usize, const T: usize>(
    w: *const u8,
    ws: usize,
    x: *const f32,
    xs: usize,
    len: usize,
) -> [[f32; T]; R] {
    let es = elem_size(D);
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut c = 0;
    while c < len {
        let mut wv = [_mm512_setzero_ps(); R];
        for (r, v) in wv.iter_mut().enumerate() {
            // SAFETY: row r, columns c..c+16 are inside the matrix (checked by the caller).
            *v = unsafe { load16::<D>(w.add(r * ws + c * es)) };
        }
        if T == 1 && (c * es).is_multiple_of(64) {
            // Decoding is bound by memory: rows often span a single 4 KiB page, where the
            // hardware prefetcher stops, so fetch the next row tile's lines ahead of time. A
            // prefetch never faults, and the address is only computed (wrapping), not read.
            for r in 0..R {
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((R + r) * ws + c * es) as *const i8);
            }
        }
        for t in 0..T {
            // SAFETY: token t, columns c..c+16 are inside the activations (checked by the caller).
            let xv = unsafe { _mm512_loadu_ps(x.add(t * xs + c)) };
            for r in 0..R {
                acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
            }
        }
        c += 16;
    }
    reduce_tile(acc)
}

impl Kernel for Avx512 {
    type X = f32;
    const TMAX: usize = 6;

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
        check_tile(w, r0, nr, x, t0, nt, c0, c1, Self::TMAX);
        let len = (c1 - c0) / 16 * 16;
        let es = w.dtype.block_bytes();
        let ws = w.cols * es;
        if len > 0 {
            for_subtiles(nr, nt, &[6, 4, 2, 1], |r, rr, t, tt| {
                let wp = w.data[(r0 + r) * ws + c0 * es..].as_ptr();
                let xp = x[(t0 + t) * w.cols + c0..].as_ptr();
                // SAFETY: `self` proves AVX-512F; check_tile showed rows r0+r..r0+r+rr, columns
                // c0..c0+len and tokens t0+t..t0+t+tt lie inside `w` and `x`.
                unsafe {
                    dispatch!(
                        kern512,
                        w.dtype,
                        rr,
                        tt,
                        acc,
                        r,
                        t,
                        (wp, ws, xp, w.cols, len),
                        [
                            (4, 6),
                            (4, 4),
                            (4, 2),
                            (4, 1),
                            (1, 6),
                            (1, 4),
                            (1, 2),
                            (1, 1)
                        ]
                    )
                }
            });
        }
        tail_f32(w, r0, nr, x, t0, nt, c0 + len, c1, acc);
    }
}

// ---------------------------------------------------------------------------------------------
// AVX512_BF16: the fast bf16 path

/// Proof that the CPU has AVX-512F and AVX512_BF16.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Bf16 {
    _private: (),
}

impl Avx512Bf16 {
    pub(crate) fn detect() -> Option<Self> {
        (Avx512::detect().is_some() && is_x86_feature_detected!("avx512bf16"))
            .then_some(Avx512Bf16 { _private: () })
    }
}

/// Like [`kern512`] for bf16 weights and bf16 activations with `vdpbf16ps`; `len` a multiple
/// of 32. `D` is unused (always bf16) and only keeps the shape of [`dispatch!`].
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512bf16")]
#[allow(clippy::needless_range_loop)]
unsafe fn kern_bf16<const D: u8, const R: usize, const T: usize>(
    w: *const u8,
    ws: usize,
    x: *const u16,
    xs: usize,
    len: usize,
) -> [[f32; T]; R] {
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut c = 0;
    while c < len {
        let mut wv = [zero_bh(); R];
        for (r, v) in wv.iter_mut().enumerate() {
            // SAFETY: row r, columns c..c+32 (64 bytes) are inside the matrix (checked by caller).
            *v = unsafe { (w.add(r * ws + c * 2) as *const __m512bh).read_unaligned() };
        }
        for t in 0..T {
            // SAFETY: token t, columns c..c+32 are inside the activations (checked by the caller).
            let xv = unsafe { (x.add(t * xs + c) as *const __m512bh).read_unaligned() };
            for r in 0..R {
                acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
            }
        }
        c += 32;
    }
    reduce_tile(acc)
}

/// A zero `__m512bh` (all bits clear is +0.0 in bf16).
#[inline(always)]
fn zero_bh() -> __m512bh {
    // SAFETY: __m512bh is plain 64 bytes of data; all-zero bits are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Prefill product of `R` bf16 weight rows (at `w`, `ws` bytes apart) with `16 * TV` tokens
/// whose activations are packed as bf16 pairs (`xp`: for each column pair `k`, `xs` u32 lanes
/// of `(x[t][2k], x[t][2k+1])`, token `t` in lane `t`), over `kp` column pairs.
///
/// Lanes are tokens, so no horizontal sums are needed: each step broadcasts one weight pair per
/// row and feeds `vdpbf16ps` with `TV` vectors of 16 tokens' pairs; `R = 6, TV = 4` keeps 24
/// accumulators busy with 10 loads per 24 dot-product instructions.
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512bf16")]
#[allow(clippy::needless_range_loop)]
unsafe fn gemm_pairs<const R: usize, const TV: usize>(
    w: *const u8,
    ws: usize,
    xp: *const u32,
    xs: usize,
    kp: usize,
) -> [[__m512; TV]; R] {
    let mut acc = [[_mm512_setzero_ps(); TV]; R];
    for k in 0..kp {
        let mut xv = [zero_bh(); TV];
        for (v, x) in xv.iter_mut().enumerate() {
            // SAFETY: pair k of tokens 16v..16v+16 lies inside the packed activations (caller).
            *x = unsafe { (xp.add(k * xs + 16 * v) as *const __m512bh).read_unaligned() };
        }
        for r in 0..R {
            // SAFETY: row r, columns 2k..2k+2 lie inside the matrix (checked by the caller).
            let pair = unsafe { (w.add(r * ws + k * 4) as *const i32).read_unaligned() };
            // SAFETY: __m512i and __m512bh are both 64 plain bytes.
            let wb: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(pair)) };
            for v in 0..TV {
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], wb, xv[v]);
            }
        }
    }
    acc
}

impl Avx512Bf16 {
    /// Rows `r0 .. r0 + outs[0].len()` of `w` (bf16, even `cols`) times `n` tokens whose
    /// activations `xp` are packed by [`super::pack_bf16_pairs`] (`npad` lanes per column pair);
    /// token `t`'s outputs go to `outs[t]`.
    pub(crate) fn gemm_packed(
        &self,
        w: &MatRef,
        xp: &[u32],
        npad: usize,
        r0: usize,
        outs: &mut [&mut [f32]],
    ) {
        let n = outs.len();
        let nrows = outs.first().map_or(0, |o| o.len());
        let kp = w.cols / 2;
        assert_eq!(w.dtype, DType::BF16, "the fast path is for bf16 weights");
        assert!(
            w.cols.is_multiple_of(2) && npad.is_multiple_of(16) && n <= npad,
            "packed shapes"
        );
        assert!(xp.len() >= kp * npad, "packed activation length");
        assert!(r0 + nrows <= w.rows, "rows inside the matrix");
        assert_eq!(w.data.len(), w.rows * w.cols * 2, "matrix byte length");
        assert!(outs.iter().all(|o| o.len() == nrows), "output slices");
        let ws = w.cols * 2;
        let mut rt = 0;
        while rt < nrows {
            let rr = if nrows - rt >= 6 { 6 } else { 1 };
            let mut tg = 0;
            while tg < n {
                let tv = (n - tg).div_ceil(16).min(4);
                let wp = w.data[(r0 + rt) * ws..].as_ptr();
                let xpp = xp[tg..].as_ptr();
                // SAFETY: `self` proves AVX-512F + AVX512_BF16; rows r0+rt..r0+rt+rr and all
                // `kp` column pairs are inside `w`, and pairs 0..kp of lanes tg..tg+16*tv are
                // inside `xp` (tg + 16 tv <= npad, checked above).
                let mut lanes = [[[0f32; 16]; 4]; 6];
                macro_rules! go {
                    ($R:literal, $TV:literal) => {{
                        let acc = unsafe { gemm_pairs::<$R, $TV>(wp, ws, xpp, npad, kp) };
                        for r in 0..$R {
                            for v in 0..$TV {
                                // SAFETY: a __m512 is 16 plain f32.
                                lanes[r][v] =
                                    unsafe { std::mem::transmute::<__m512, [f32; 16]>(acc[r][v]) };
                            }
                        }
                    }};
                }
                match (rr, tv) {
                    (6, 4) => go!(6, 4),
                    (6, 3) => go!(6, 3),
                    (6, 2) => go!(6, 2),
                    (6, 1) => go!(6, 1),
                    (1, 4) => go!(1, 4),
                    (1, 3) => go!(1, 3),
                    (1, 2) => go!(1, 2),
                    (1, 1) => go!(1, 1),
                    _ => unreachable!("sub-tile size"),
                }
                for (t, out) in outs.iter_mut().enumerate().skip(tg).take(16 * tv) {
                    let (v, i) = ((t - tg) / 16, (t - tg) % 16);
                    for (r, o) in out[rt..rt + rr].iter_mut().enumerate() {
                        *o = lanes[r][v][i];
                    }
                }
                tg += 16 * tv;
            }
            rt += rr;
        }
    }
}

impl Kernel for Avx512Bf16 {
    type X = u16;
    const TMAX: usize = 6;

    fn tile(
        &self,
        w: &MatRef,
        r0: usize,
        nr: usize,
        x: &[u16],
        t0: usize,
        nt: usize,
        c0: usize,
        c1: usize,
        acc: &mut Acc,
    ) {
        check_tile(w, r0, nr, x, t0, nt, c0, c1, Self::TMAX);
        assert_eq!(w.dtype, DType::BF16, "the fast path is for bf16 weights");
        let len = (c1 - c0) / 32 * 32;
        let ws = w.cols * 2;
        if len > 0 {
            for_subtiles(nr, nt, &[6, 4, 2, 1], |r, rr, t, tt| {
                let wp = w.data[(r0 + r) * ws + c0 * 2..].as_ptr();
                let xp = x[(t0 + t) * w.cols + c0..].as_ptr();
                // SAFETY: `self` proves AVX-512F + AVX512_BF16; check_tile showed rows
                // r0+r..r0+r+rr, columns c0..c0+len and tokens t0+t..t0+t+tt are in bounds.
                unsafe {
                    match (rr, tt) {
                        (4, 6) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 4, 6>(wp, ws, xp, w.cols, len))
                        }
                        (4, 4) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 4, 4>(wp, ws, xp, w.cols, len))
                        }
                        (4, 2) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 4, 2>(wp, ws, xp, w.cols, len))
                        }
                        (4, 1) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 4, 1>(wp, ws, xp, w.cols, len))
                        }
                        (1, 6) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 1, 6>(wp, ws, xp, w.cols, len))
                        }
                        (1, 4) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 1, 4>(wp, ws, xp, w.cols, len))
                        }
                        (1, 2) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 1, 2>(wp, ws, xp, w.cols, len))
                        }
                        (1, 1) => {
                            add_into(acc, r, t, kern_bf16::<BF16, 1, 1>(wp, ws, xp, w.cols, len))
                        }
                        _ => unreachable!("sub-tile size"),
                    }
                }
            });
        }
        let (c0, c1) = (c0 + len, c1);
        if c0 < c1 {
            for (r, ar) in acc[..nr].iter_mut().enumerate() {
                let row = &w.row_bytes(r0 + r)[c0 * 2..c1 * 2];
                for (t, a) in ar[..nt].iter_mut().enumerate() {
                    let b = (t0 + t) * w.cols;
                    *a += scalar::dot_bf16(row, &x[b + c0..b + c1]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA + F16C

/// Proof that the CPU has AVX2, FMA and F16C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2 {
    _private: (),
}

impl Avx2 {
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        .then_some(Avx2 { _private: () })
    }
}

/// Loads 8 weights of dtype `D` at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<const D: u8>(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 8 elements of dtype D are readable at p; loads are unaligned.
    unsafe {
        match D {
            F32 => _mm256_loadu_ps(p as *const f32),
            F16 => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
            I8 => _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128(p as *const __m128i),
            ))),
        }
    }
}

/// Horizontal sum of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// AVX2 twin of [`kern512`]; `len` a multiple of 8.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)]
unsafe fn kern256<const D: u8, const R: usize, const T: usize>(
    w: *const u8,
    ws: usize,
    x: *const f32,
    xs: usize,
    len: usize,
) -> [[f32; T]; R] {
    let es = elem_size(D);
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut c = 0;
    while c < len {
        let mut wv = [_mm256_setzero_ps(); R];
        for (r, v) in wv.iter_mut().enumerate() {
            // SAFETY: row r, columns c..c+8 are inside the matrix (checked by the caller).
            *v = unsafe { load8::<D>(w.add(r * ws + c * es)) };
        }
        for t in 0..T {
            // SAFETY: token t, columns c..c+8 are inside the activations (checked by the caller).
            let xv = unsafe { _mm256_loadu_ps(x.add(t * xs + c)) };
            for r in 0..R {
                acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
            }
        }
        c += 8;
    }
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = hsum256(acc[r][t]);
        }
    }
    out
}

impl Kernel for Avx2 {
    type X = f32;
    const TMAX: usize = 2;

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
        check_tile(w, r0, nr, x, t0, nt, c0, c1, Self::TMAX);
        let len = (c1 - c0) / 8 * 8;
        let es = w.dtype.block_bytes();
        let ws = w.cols * es;
        if len > 0 {
            for_subtiles(nr, nt, &[2, 1], |r, rr, t, tt| {
                let wp = w.data[(r0 + r) * ws + c0 * es..].as_ptr();
                let xp = x[(t0 + t) * w.cols + c0..].as_ptr();
                // SAFETY: `self` proves AVX2+FMA+F16C; check_tile showed rows r0+r..r0+r+rr,
                // columns c0..c0+len and tokens t0+t..t0+t+tt lie inside `w` and `x`.
                unsafe {
                    dispatch!(
                        kern256,
                        w.dtype,
                        rr,
                        tt,
                        acc,
                        r,
                        t,
                        (wp, ws, xp, w.cols, len),
                        [(4, 2), (4, 1), (1, 2), (1, 1)]
                    )
                }
            });
        }
        tail_f32(w, r0, nr, x, t0, nt, c0 + len, c1, acc);
    }
}

// ---------------------------------------------------------------------------------------------
// AVX-512F decode kernel for bf16 weights (one token)

/// Dot product of one bf16 weight row at `w` with one token's activations `xd`, de-interleaved
/// by [`scalar::deinterleave32`], over `len` columns (a multiple of 32).
///
/// No shuffles: one 64-byte load holds 32 weights as 16 u32 lanes of (even, odd) pairs; the
/// even weights are the lanes shifted left by 16, the odd ones the lanes masked to their high
/// half, each exactly the f32 value of the bf16. They are multiplied with the even and odd
/// activations of the block into separate accumulators, two blocks per step (4 FMA chains).
///
/// One row at a time, no software prefetch: decoding is bound by memory, and a single
/// sequential stream per thread with few vector ops per cache line (so the out-of-order window
/// holds many lines in flight) measured faster than 2-8 row tiles, with or without prefetching
/// the next tile.
#[target_feature(enable = "avx512f,avx512vl,avx512bw")]
unsafe fn dec512(w: *const u8, xd: *const f32, len: usize) -> f32 {
    let mask = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    let mut a = [_mm512_setzero_ps(); 4];
    let mut c = 0;
    while c + 64 <= len {
        // SAFETY: columns c..c+64 of the row and of the de-interleaved activations exist
        // (checked by the caller); the loads are unaligned.
        unsafe {
            let v0 = _mm512_loadu_si512(w.add(c * 2) as *const _);
            let v1 = _mm512_loadu_si512(w.add(c * 2 + 64) as *const _);
            let e0 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v0));
            let o0 = _mm512_castsi512_ps(_mm512_and_si512(v0, mask));
            let e1 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v1));
            let o1 = _mm512_castsi512_ps(_mm512_and_si512(v1, mask));
            a[0] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xd.add(c)), a[0]);
            a[1] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xd.add(c + 16)), a[1]);
            a[2] = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xd.add(c + 32)), a[2]);
            a[3] = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xd.add(c + 48)), a[3]);
        }
        c += 64;
    }
    if c < len {
        // SAFETY: as above for the last block of 32 columns (len is a multiple of 32).
        unsafe {
            let v0 = _mm512_loadu_si512(w.add(c * 2) as *const _);
            let e0 = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v0));
            let o0 = _mm512_castsi512_ps(_mm512_and_si512(v0, mask));
            a[0] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xd.add(c)), a[0]);
            a[1] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xd.add(c + 16)), a[1]);
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(a[0], a[1]),
        _mm512_add_ps(a[2], a[3]),
    ))
}

impl Avx512 {
    /// `y[i] = sum_c w[r0 + i, c] * x[c]` for bf16 `w`; `xd` is `x` de-interleaved by
    /// [`scalar::deinterleave32`] (its whole 32-column blocks).
    pub(crate) fn matvec_bf16(&self, w: &MatRef, x: &[f32], xd: &[f32], r0: usize, y: &mut [f32]) {
        assert_eq!(
            w.dtype,
            DType::BF16,
            "the decode kernel is for bf16 weights"
        );
        assert!(r0 + y.len() <= w.rows, "rows inside the matrix");
        assert_eq!(x.len(), w.cols, "activation length");
        let len = w.cols / 32 * 32;
        assert_eq!(xd.len(), len, "de-interleaved activation length");
        assert_eq!(w.data.len(), w.rows * w.cols * 2, "matrix byte length");
        for (i, yi) in y.iter_mut().enumerate() {
            let row = w.row_bytes(r0 + i);
            *yi = if len > 0 {
                // SAFETY: `self` proves AVX-512F; `row` holds `w.cols >= len` bf16 weights and
                // `xd` holds `len` floats.
                unsafe { dec512(row.as_ptr(), xd.as_ptr(), len) }
            } else {
                0.0
            };
            if len < w.cols {
                *yi += scalar::dot(&row[len * 2..], DType::BF16, &x[len..]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX512_BF16 decode kernel (one token, fast path)

/// Dot product of one bf16 weight row at `w` with bf16 activations `x` over `len` columns (a
/// multiple of 32), with `vdpbf16ps`: per 64 bytes of weights one weight load, one activation
/// load and one dot-product instruction, so more cache lines of the row stay in flight than with
/// the exact kernel's widening. Four independent accumulators hide the instruction's latency.
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512bf16")]
unsafe fn dec_bf16(w: *const u8, x: *const u16, len: usize) -> f32 {
    let mut a = [_mm512_setzero_ps(); 4];
    let mut c = 0;
    // SAFETY (every load below): columns c..c+32*k of the row (2 bytes each) and of the
    // activations exist, checked by the caller; the loads are unaligned.
    while c + 128 <= len {
        for (k, acc) in a.iter_mut().enumerate() {
            unsafe {
                let wv = (w.add((c + 32 * k) * 2) as *const __m512bh).read_unaligned();
                let xv = (x.add(c + 32 * k) as *const __m512bh).read_unaligned();
                *acc = _mm512_dpbf16_ps(*acc, wv, xv);
            }
        }
        c += 128;
    }
    let mut k = 0;
    while c < len {
        unsafe {
            let wv = (w.add(c * 2) as *const __m512bh).read_unaligned();
            let xv = (x.add(c) as *const __m512bh).read_unaligned();
            a[k] = _mm512_dpbf16_ps(a[k], wv, xv);
        }
        c += 32;
        k += 1;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(a[0], a[1]),
        _mm512_add_ps(a[2], a[3]),
    ))
}

impl Avx512Bf16 {
    /// `y[i] = sum_c w[r0 + i, c] * xb[c]` for bf16 `w` and bf16 activations `xb` (the fast
    /// path's decode product).
    pub(crate) fn matvec_bf16(&self, w: &MatRef, xb: &[u16], r0: usize, y: &mut [f32]) {
        assert_eq!(
            w.dtype,
            DType::BF16,
            "the decode kernel is for bf16 weights"
        );
        assert!(r0 + y.len() <= w.rows, "rows inside the matrix");
        assert_eq!(xb.len(), w.cols, "activation length");
        assert_eq!(w.data.len(), w.rows * w.cols * 2, "matrix byte length");
        let len = w.cols / 32 * 32;
        for (i, yi) in y.iter_mut().enumerate() {
            let row = w.row_bytes(r0 + i);
            *yi = if len > 0 {
                // SAFETY: `self` proves AVX-512F + AVX512_BF16; `row` holds `w.cols >= len` bf16
                // weights and `xb` as many activations.
                unsafe { dec_bf16(row.as_ptr(), xb.as_ptr(), len) }
            } else {
                0.0
            };
            if len < w.cols {
                *yi += scalar::dot_bf16(&row[len * 2..], &xb[len..]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory read rate probe

/// XOR of all little-endian u64 words of `p` (`len` bytes, a multiple of 256), as
/// [`scalar::xor_fold`]: every byte is loaded with full-width vector loads, four independent
/// chains, each line prefetched [`PREFETCH`] bytes (a page) ahead as the quantized decode kernels do: the
/// access pattern of the decode kernels without their arithmetic (without the prefetch the
/// probe read slower than those kernels run, and was no ceiling).
#[target_feature(enable = "avx512f")]
unsafe fn xor_lines512(p: *const u8, len: usize) -> u64 {
    let mut a = [_mm512_setzero_si512(); 4];
    let mut c = 0;
    while c + 256 <= len {
        for (k, acc) in a.iter_mut().enumerate() {
            // SAFETY: a prefetch never faults, and its address is only computed (wrapping);
            // bytes c..c+256 of `p` exist (checked by the caller); unaligned loads.
            let v = unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(c + 64 * k + PREFETCH) as *const i8);
                _mm512_loadu_si512(p.add(c + 64 * k) as *const _)
            };
            *acc = _mm512_xor_si512(*acc, v);
        }
        c += 256;
    }
    let v = _mm512_xor_si512(_mm512_xor_si512(a[0], a[1]), _mm512_xor_si512(a[2], a[3]));
    let mut lanes = [0u64; 8];
    // SAFETY: `lanes` is 64 writable bytes; unaligned store.
    unsafe { _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, v) };
    lanes.iter().fold(0, |a, l| a ^ l)
}

impl Avx512 {
    /// [`scalar::xor_fold`] of `b`'s whole 256-byte chunks (see [`xor_lines512`]); the rest is
    /// left to the caller.
    pub(crate) fn xor_fold(&self, b: &[u8]) -> u64 {
        let len = b.len() / 256 * 256;
        // SAFETY: `self` proves AVX-512F; `b` holds `len` bytes.
        unsafe { xor_lines512(b.as_ptr(), len) }
    }
}
