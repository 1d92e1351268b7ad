//! x86-64 SIMD kernels for block-quantized weights: AVX2 (`vpmaddubsw`), AVX-512BW and
//! AVX-512 VNNI (`vpdpbusd`, `vpdpwssd`). The AVX-512 kernels are written once in
//! `avx512_quant!` and compiled twice, once per feature set, because a `#[target_feature]`
//! function cannot be generic over its features.
//!
//! Every kernel computes, per 32-bit lane, an exact integer partial sum of `w * x` over a part
//! of a block (signed weight levels; the unsigned-operand tricks are corrected exactly in the
//! same lane), converts it to f32 and scales it per block: the scalar twins in `qmat.rs` compute
//! the same block integers, and the results differ only in the order of the f32 additions.
//!
//! Layouts are the file's (GGUF) blocks, read in place with unaligned loads; nothing is
//! repacked in memory. Decode (one token) streams each row once with few operations per byte:
//!
//! - Q4_0 (AVX-512): 4 blocks (72 bytes) per step. One 64-byte load and one 8-byte load cover
//!   them; `vpermt2w` gathers their 64 nibble bytes into one register and their four f16
//!   scales, each repeated over the block's four lanes, into another. Low nibbles meet the
//!   first halves of the four activation blocks, high nibbles the second halves ([`A4Group`]);
//!   the `-8` is the activation lane's precomputed `-8 * sum(x)`, the start of the `vpdpbusd`
//!   accumulation. Two f32 accumulators alternate between steps.
//! - Q8_0 (AVX-512): 4 blocks (136 bytes) per step, two per register; the scales by one
//!   `vpermt2w` from two 64-byte loads. VNNI: weights made unsigned by `^ 0x80`, corrected by
//!   the lane's `-128 * sum(x)`; AVX-512BW: `|w|` times `x` with `w`'s sign.
//! - Q4_K, Q6_K: one super-block (256 values) per step; `vpmaddubsw` products (`q` unsigned)
//!   weighted by the sub-block scales with `vpdpwssd` (`vpmaddwd` + add without VNNI); Q4_K's
//!   mins and Q6_K's `-32` through the activations' per-sub-block sums.
//! - Long rows (the activation layout past 16 KB, e.g. the MLP down projection): 4 adjacent
//!   rows per pass, so each activation load, from L2 at that size, serves 4 rows.
//!
//! Prefill (several tokens) reuses each unpacked weight block for several tokens:
//!
//! - AVX-512, every dtype: the rows are taken 16 at a time; each block of the 16 rows is
//!   unpacked once into a small per-task scratch (the levels as bytes, transposed: 16 rows x
//!   32 columns in 8 vectors whose lane `r` holds 4 consecutive weights of row `r`; about 1.1
//!   byte per weight of the 16 rows, so 36-330 KB on gemma-2b shapes) and used for every
//!   token. One `vpdpbusd` with 4 activation bytes broadcast advances 16 rows by 4 columns; 8
//!   of them leave one finished block (or sub-block) sum per row in each lane, so the f32
//!   scaling is one fused multiply-add per 16 rows x 32 columns (K-quants: the sub-block scale
//!   by one `vpmulld`, the super-block's f32 scale once per 256 columns). Tokens go 8 at a
//!   time through the scratch. This is a transient tile of 16 rows, not a copy of the matrix.
//! - AVX2: one row at a time, its blocks unpacked once per group of up to 4 tokens (register
//!   tiles of 1 row x 4 tokens).

use super::qmat::{
    act_block_len, drive, k_pos, quantize_b32_impl, quantize_k_impl, weight_block_bytes, A4Group,
    A8Pair, QActs, QJob, A16, AK, B32,
};
use super::x86::{Avx2, Avx512};
use super::{DType, Isa, MatRef};
use frugal_quant::x4::piece_at;
use std::arch::x86_64::*;

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

/// The product of quantized `w` with `n` tokens of `x` at `level` (not `Scalar`).
pub(crate) fn matmul_quant(level: Isa, w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    let a = QActs::new(w.dtype, x, n, w.cols, n == 1 && level != Isa::Avx2);
    match level {
        Isa::Avx2 => {
            let k = Avx2::detect().expect("CPU lacks AVX2/FMA/F16C");
            drive(&Avx2Job { _k: k, w, a }, w.rows, w.cols, n, y);
        }
        Isa::Avx512 => {
            let k = Avx512::detect().expect("CPU lacks AVX-512F/BW/VL");
            let job = bw::Job::new(k, w, a, n);
            drive(&job, w.rows, w.cols, n, y);
        }
        Isa::Avx512Vnni => {
            let k = Avx512Vnni::detect().expect("CPU lacks AVX512_VNNI");
            let job = vnni::Job::new(k, w, a, n);
            drive(&job, w.rows, w.cols, n, y);
        }
        Isa::Scalar => unreachable!("the scalar level is in qmat.rs"),
    }
}

/// [`quantize_b32_impl`] compiled for AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize_b32_512(x: &[f32], out: &mut [B32]) {
    quantize_b32_impl(x, out)
}

/// [`quantize_b32_impl`] compiled for AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_b32_256(x: &[f32], out: &mut [B32]) {
    quantize_b32_impl(x, out)
}

/// [`quantize_k_impl`] compiled for AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn quantize_k_512(x: &[f32], dtype: DType, out: &mut [AK]) {
    quantize_k_impl(x, dtype, out)
}

/// [`quantize_k_impl`] compiled for AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_k_256(x: &[f32], dtype: DType, out: &mut [AK]) {
    quantize_k_impl(x, dtype, out)
}

/// Runs the activation quantizer compiled for the best available instruction set; false if
/// there is none (the caller then runs the portable build). Plain Rust in every build (IEEE
/// operations, never contracted), so the results are identical.
pub(crate) fn quantize_b32_simd(x: &[f32], out: &mut [B32]) -> bool {
    if Avx512::detect().is_some() {
        // SAFETY: the CPU has the features (just detected).
        unsafe { quantize_b32_512(x, out) };
    } else if Avx2::detect().is_some() {
        // SAFETY: as above.
        unsafe { quantize_b32_256(x, out) };
    } else {
        return false;
    }
    true
}

/// [`quantize_b32_simd`] for blocks of 256.
pub(crate) fn quantize_k_simd(x: &[f32], dtype: DType, out: &mut [AK]) -> bool {
    if Avx512::detect().is_some() {
        // SAFETY: the CPU has the features (just detected).
        unsafe { quantize_k_512(x, dtype, out) };
    } else if Avx2::detect().is_some() {
        // SAFETY: as above.
        unsafe { quantize_k_256(x, dtype, out) };
    } else {
        return false;
    }
    true
}

/// Most tokens of a one-row register tile.
const TT: usize = 4;

/// Splits `n` tokens into tiles of 4, 2 and 1 and calls `f(t0, nt)`.
#[inline(always)]
fn token_tiles(n: usize, mut f: impl FnMut(usize, usize)) {
    let mut t = 0;
    while t < n {
        let nt = [4, 2, 1].into_iter().find(|&s| s <= n - t).unwrap_or(1);
        f(t, nt);
        t += nt;
    }
}

/// Checks what every kernel relies on: `w` holds `rows` whole rows of its dtype and the
/// activations have the matching number of blocks per token.
fn check_job(w: &MatRef, a: &QActs, n: usize) {
    let rb = w.dtype.row_bytes(w.cols).expect("whole blocks");
    assert_eq!(w.row_stride(), rb, "row stride");
    assert_eq!(w.data.len(), w.rows * rb, "matrix byte length");
    assert_eq!(a.nb * act_block_len(w.dtype), w.cols, "activation blocks");
    assert_eq!(a.nb * weight_block_bytes(w.dtype), rb, "weight blocks");
    match w.dtype {
        DType::Q8_0 | DType::Q4_0 | DType::I8 | DType::Q4_0X4 | DType::Q8_0X4 => {
            assert_eq!(a.b32.len(), n * a.nb)
        }
        _ => assert_eq!(a.k.len(), n * a.nb),
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2

/// One-row tiles of up to 4 tokens on AVX2, every dtype.
struct Avx2Job<'a> {
    _k: Avx2,
    w: &'a MatRef<'a>,
    a: QActs,
}

impl Avx2Job<'_> {
    /// `out[t] = row r . token (t0 + t)` for `t < nt`.
    fn tile(&self, r: usize, t0: usize, nt: usize, out: &mut [f32]) {
        let row = self.w.row_bytes(r);
        let nb = self.a.nb;
        let p = row.as_ptr();
        macro_rules! go {
            ($f:ident, $acts:ident, $T:literal $(, $g:expr)?) => {{
                let x: [*const _; $T] = std::array::from_fn(|t| self.a.$acts(t0 + t).as_ptr());
                // SAFETY: `self._k` proves AVX2+FMA+F16C; check_job showed `row` holds `nb`
                // blocks and every token `nb` activation blocks.
                let r = unsafe { $f::<$T $(, $g)?>(p, nb, x) };
                out[..$T].copy_from_slice(&r);
            }};
        }
        macro_rules! by_t {
            ($f:ident, $acts:ident $(, $g:expr)?) => {
                match nt {
                    4 => go!($f, $acts, 4 $(, $g)?),
                    2 => go!($f, $acts, 2 $(, $g)?),
                    1 => go!($f, $acts, 1 $(, $g)?),
                    _ => unreachable!("token tile"),
                }
            };
        }
        match self.w.dtype {
            DType::Q8_0 => by_t!(a2_q8_0, b32, false),
            DType::I8 => by_t!(a2_q8_0, b32, true),
            DType::Q4_0 => by_t!(a2_q4_0, b32),
            DType::Q4_K => by_t!(a2_q4_k, k),
            DType::Q6_K => by_t!(a2_q6_k, k),
            d => unreachable!("{} is not quantized", d.name()),
        }
    }
}

impl QJob for Avx2Job<'_> {
    fn matvec(&self, r0: usize, y: &mut [f32]) {
        check_job(self.w, &self.a, 1);
        for (i, v) in y.iter_mut().enumerate() {
            let mut o = [0f32; 1];
            self.tile(r0 + i, 0, 1, &mut o);
            *v = o[0];
        }
    }

    fn rows(&self, r0: usize, outs: &mut [&mut [f32]]) {
        let n = outs.len();
        check_job(self.w, &self.a, n);
        for i in 0..outs[0].len() {
            token_tiles(n, |t0, nt| {
                let mut o = [0f32; TT];
                self.tile(r0 + i, t0, nt, &mut o);
                for (t, &v) in o[..nt].iter().enumerate() {
                    outs[t0 + t][i] = v;
                }
            });
        }
    }
}

/// Horizontal sum of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// The f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes at p.
    let h = unsafe { (p as *const u16).read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// Q8_0 row (`nb` blocks at `p`) times `T` tokens: `|w|` times `x` with the sign of `w`
/// (`vpmaddubsw` cannot overflow: `2 * 128 * 127 < 2^15`). Two blocks per step into two
/// accumulators per token, so one token's chain of fused multiply-adds does not serialize.
/// `I8`: int8 rows in blocks of 32 bytes without block scales (the row's scale is applied by
/// the caller).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn a2_q8_0<const T: usize, const I8: bool>(
    p: *const u8,
    nb: usize,
    x: [*const B32; T],
) -> [f32; T] {
    let (bb, qo) = if I8 { (32, 0) } else { (34, 2) };
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let mut k = 0;
    while k < nb {
        let m = (nb - k).min(2);
        for (e, _) in (0..m).enumerate() {
            // SAFETY: block k + e (`bb` bytes) lies inside the row and every token has it.
            unsafe {
                let b = p.add(bb * (k + e));
                let w = _mm256_loadu_si256(b.add(qo) as *const __m256i);
                let u = _mm256_abs_epi8(w);
                let dw = if I8 { 1.0 } else { f16_at(b) };
                for t in 0..T {
                    let xb = &*x[t].add(k + e);
                    let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                    let s =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(xv, w)), ones);
                    let sc = _mm256_set1_ps(dw * xb.d);
                    acc[t][e] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[t][e]);
                }
            }
        }
        k += m;
    }
    acc.map(|a| hsum8(_mm256_add_ps(a[0], a[1])))
}

/// Q4_0 row times `T` tokens: levels `q - 8` used signed through the same sign trick; two
/// blocks per step as in [`a2_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn a2_q4_0<const T: usize>(p: *const u8, nb: usize, x: [*const B32; T]) -> [f32; T] {
    let ones = _mm256_set1_epi16(1);
    let m4 = _mm256_set1_epi8(0x0F);
    let eight = _mm256_set1_epi8(8);
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    let mut k = 0;
    while k < nb {
        let m = (nb - k).min(2);
        for (e, _) in (0..m).enumerate() {
            // SAFETY: block k + e (18 bytes) lies inside the row and every token has it.
            unsafe {
                let b = p.add(18 * (k + e));
                let q = _mm_loadu_si128(b.add(2) as *const __m128i);
                let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(q), q), m4);
                let w = _mm256_sub_epi8(nib, eight);
                let u = _mm256_abs_epi8(w);
                let dw = f16_at(b);
                for t in 0..T {
                    let xb = &*x[t].add(k + e);
                    let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
                    let s =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(xv, w)), ones);
                    let sc = _mm256_set1_ps(dw * xb.d);
                    acc[t][e] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[t][e]);
                }
            }
        }
        k += m;
    }
    acc.map(|a| hsum8(_mm256_add_ps(a[0], a[1])))
}

/// The eight 6-bit scales (bytes 0..8) and mins (8..16) of a Q4_K block's 12 packed bytes at
/// `s`, as llama.cpp unpacks them with 32-bit masks.
#[inline(always)]
unsafe fn q4k_scales(s: *const u8) -> [u32; 4] {
    // SAFETY: the caller guarantees 12 readable bytes at s.
    let u: [u32; 3] = unsafe { (s as *const [u32; 3]).read_unaligned() };
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    [
        u[0] & K1,
        (u[2] & K2) | (((u[0] >> 6) & K3) << 4),
        u[1] & K1,
        ((u[2] >> 4) & K2) | (((u[1] >> 6) & K3) << 4),
    ]
}

/// Q4_K row (`nb` super-blocks) times `T` tokens.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn a2_q4_k<const T: usize>(p: *const u8, nb: usize, x: [*const AK; T]) -> [f32; T] {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut accm = [_mm_setzero_ps(); T];
    for k in 0..nb {
        // SAFETY: super-block k (144 bytes) lies inside the row; every token has block k.
        unsafe {
            let b = p.add(144 * k);
            let (d, dmin) = (f16_at(b), f16_at(b.add(2)));
            let sm = q4k_scales(b.add(4));
            let sc: [u8; 8] = std::mem::transmute([sm[0], sm[1]]);
            let mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, sm[3] as i32, sm[2] as i32));
            let xb: [&AK; T] = std::array::from_fn(|t| &*x[t].add(k));
            let mut isum = [_mm256_setzero_si256(); T];
            for c in 0..4 {
                let v = _mm256_loadu_si256(b.add(16 + 32 * c) as *const __m256i);
                let lo = _mm256_and_si256(v, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                let (slo, shi) = (
                    _mm256_set1_epi16(sc[2 * c] as i16),
                    _mm256_set1_epi16(sc[2 * c + 1] as i16),
                );
                for t in 0..T {
                    let xq = xb[t].qs.as_ptr();
                    let xlo = _mm256_load_si256(xq.add(32 * k_pos(2 * c)) as *const __m256i);
                    let xhi = _mm256_load_si256(xq.add(32 * k_pos(2 * c + 1)) as *const __m256i);
                    let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xlo), slo);
                    let phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xhi), shi);
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(plo, phi));
                }
            }
            for t in 0..T {
                let bs = _mm_loadu_si128(xb[t].bsums32.as_ptr() as *const __m128i);
                let m = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
                accm[t] = _mm_fmadd_ps(m, _mm_set1_ps(dmin * xb[t].d), accm[t]);
                let dd = _mm256_set1_ps(d * xb[t].d);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), dd, acc[t]);
            }
        }
    }
    let mut out = [0f32; T];
    for t in 0..T {
        let m = accm[t];
        let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_add_ss(m, _mm_shuffle_ps::<1>(m, m));
        out[t] = hsum8(acc[t]) - _mm_cvtss_f32(m);
    }
    out
}

/// Q6_K row (`nb` super-blocks) times `T` tokens.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn a2_q6_k<const T: usize>(p: *const u8, nb: usize, x: [*const AK; T]) -> [f32; T] {
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); T];
    for k in 0..nb {
        // SAFETY: super-block k (210 bytes) lies inside the row; every token has block k.
        unsafe {
            let b = p.add(210 * k);
            let d = f16_at(b.add(208));
            let sc8 = _mm_loadu_si128(b.add(192) as *const __m128i);
            let sc16 = _mm256_cvtepi8_epi16(sc8);
            let xb: [&AK; T] = std::array::from_fn(|t| &*x[t].add(k));
            let mut isum = [_mm256_setzero_si256(); T];
            for h in 0..2 {
                let ql0 = _mm256_loadu_si256(b.add(64 * h) as *const __m256i);
                let ql1 = _mm256_loadu_si256(b.add(64 * h + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(b.add(128 + 32 * h) as *const __m256i);
                let hb = |s: i32| -> __m256i {
                    // (qh >> s) & 3, moved to bits 4..6 of each byte.
                    let v = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(s));
                    _mm256_slli_epi16::<4>(_mm256_and_si256(v, m3))
                };
                let q = [
                    _mm256_or_si256(_mm256_and_si256(ql0, m4), hb(0)),
                    _mm256_or_si256(_mm256_and_si256(ql1, m4), hb(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), hb(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), hb(6)),
                ];
                for (i, qi) in q.iter().enumerate() {
                    // Elements 128h + 32i .. +32: sub-blocks j and j + 1 of 16.
                    let j = 8 * h + 2 * i;
                    let s = _mm256_set_m128i(
                        _mm_set1_epi16(*b.add(192 + j + 1) as i8 as i16),
                        _mm_set1_epi16(*b.add(192 + j) as i8 as i16),
                    );
                    for t in 0..T {
                        let xv = _mm256_load_si256(
                            xb[t].qs.as_ptr().add(128 * h + 32 * i) as *const __m256i
                        );
                        let pr = _mm256_madd_epi16(_mm256_maddubs_epi16(*qi, xv), s);
                        isum[t] = _mm256_add_epi32(isum[t], pr);
                    }
                }
            }
            for t in 0..T {
                let bs = _mm256_loadu_si256(xb[t].bsums16.as_ptr() as *const __m256i);
                let c = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc16, bs));
                let i = _mm256_sub_epi32(isum[t], c);
                let dd = _mm256_set1_ps(d * xb[t].d);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), dd, acc[t]);
            }
        }
    }
    acc.map(|a| hsum8(a))
}

// ---------------------------------------------------------------------------------------------
// AVX-512: shared constants and layouts

/// How far ahead (bytes) the in-place decode kernels prefetch the rows they read ([`prefetch_lines`]):
/// one row at a time (`row_q4_0`, `row_q8_0`, `rows_q4_k::<1>`, `rows_q6_k::<1>`) or four interleaved
/// (`rows_*::<4>`). The hardware prefetchers stop at every 4 KiB page and leave these kernels
/// short of the memory bandwidth (the 34-, 18-, 144- and 210-byte blocks are not line-aligned,
/// and each step spends more instructions per byte than a plain read); a software prefetch a
/// page ahead keeps the lines coming across page boundaries. Chosen by A/B in one process on
/// 2 threads from DRAM (600-900 MB of gemma-2b-shaped matrices in file order, 9 alternating
/// rounds, 2026-12-05): against the earlier 256 bytes for Q4_0 rows and none for the others,
/// 2048 bytes gave +5-8 % for every block type, 4096 +8-11 % (Q4_0 39.7 -> 43.8 GB/s, Q6_K
/// 41.6 -> 46.1, Q4_K 40.8 -> 45.4, Q8_0 40.7 -> 45.5), 8192 no more; the 4-row passes the
/// same at 768 and 4096.
/// The x4 kernels of `--quant` and the read-rate probe ([`super::read_rate`]) prefetch as far.
pub(crate) const PREFETCH: usize = 4096;

/// Prefetches the `n` cache lines from `p + PREFETCH` into L1.
#[inline(always)]
fn prefetch_lines(p: *const u8, n: usize) {
    for i in 0..n {
        // SAFETY: a prefetch never faults; the address is only computed (wrapping), so it may
        // lie past the row or the mapping.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + 64 * i) as *const i8) };
    }
}

/// `vpermt2w` indices gathering the nibble bytes of 4 Q4_0 blocks (72 bytes, as 36 words
/// across two registers): output words `8k..8k + 8` are block `k`'s words `9k + 1..9k + 9`.
static IDX_Q4_NIB: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (9 * (j / 8) + 1 + j % 8) as i16;
        j += 1;
    }
    a
};

/// [`IDX_Q4_NIB`] for the second group of 4 blocks of a 144-byte pair of groups, taken from
/// the registers holding bytes 64..128 and 128..144: block `k`'s nibbles are words `5 + 9k..`.
static IDX_Q4_NIB2: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (9 * (j / 8) + 5 + j % 8) as i16;
        j += 1;
    }
    a
};

/// `vpermt2w` indices of the 8 Q4_0 scales of a 144-byte pair of groups (words `9k` of bytes
/// 0..128), each repeated 4 times.
static IDX_Q4_D8: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (9 * (j / 4)) as i16;
        j += 1;
    }
    a
};

/// `vpermt2w` indices of the 4 Q4_0 scales, each repeated 4 times (words 0..16).
static IDX_Q4_D: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 16 {
        a[j] = (9 * (j / 4)) as i16;
        j += 1;
    }
    a
};

/// `vpermt2w` indices of the 4 Q8_0 scales of a 136-byte group (words 0, 17, 34, 51), each
/// repeated 8 times.
static IDX_Q8_D: [i16; 32] = {
    let mut a = [0i16; 32];
    let mut j = 0;
    while j < 32 {
        a[j] = (17 * (j / 8)) as i16;
        j += 1;
    }
    a
};

/// `vpshufb` controls spreading Q4_K's scales (bytes 0..8 of `[sc0..sc7, m0..m7]`, in every
/// 128-bit lane) over the `vpmaddubsw` words of the four 64-value groups as zero-extended words:
/// group `i` holds sub-blocks `a` (lanes 0-1) and `b` (lanes 2-3) with `(a, b)` = (0, 2),
/// (1, 3), (4, 6), (5, 7).
static SHUF_Q4K_SC: [[i8; 64]; 4] = {
    let pairs = [(0, 2), (1, 3), (4, 6), (5, 7)];
    let mut a = [[0i8; 64]; 4];
    let mut i = 0;
    while i < 4 {
        let mut j = 0;
        while j < 64 {
            a[i][j] = if j % 2 == 1 {
                -128
            } else if j < 32 {
                pairs[i].0
            } else {
                pairs[i].1
            };
            j += 1;
        }
        i += 1;
    }
    a
};

/// `vpermw` indices spreading Q6_K's 16 scales over the `vpmaddubsw` words of the four
/// 64-value groups: group `i` holds sub-blocks `4i..4i + 4`, 8 words each.
static IDX_Q6K_SC: [[i16; 32]; 4] = {
    let mut a = [[0i16; 32]; 4];
    let mut i = 0;
    while i < 4 {
        let mut j = 0;
        while j < 32 {
            a[i][j] = (4 * i + j / 8) as i16;
            j += 1;
        }
        i += 1;
    }
    a
};

/// Per-128-bit-lane shift counts of Q6_K's high bits: lanes 0-1 by `a`, lanes 2-3 by `b`.
static Q6K_SHIFTS: [[i16; 32]; 2] = {
    let mut a = [[0i16; 32]; 2];
    let mut j = 0;
    while j < 32 {
        a[0][j] = if j < 16 { 0 } else { 2 };
        a[1][j] = if j < 16 { 4 } else { 6 };
        j += 1;
    }
    a
};

/// `vpermd` indices grouping dword `v` of the four 128-bit lanes: `[0, 4, 8, 12, 1, 5, ..]`.
static IDX_TR: [i32; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/// One block of 16 rows unpacked for the prefill kernel: `w[v]` lane `r` holds weights
/// `4v..4v + 4` of row `r` as bytes (Q4_0: `q` in `0..16`; Q8_0 with VNNI: `w ^ 0x80`; Q8_0
/// without: `|w|`, with the negative ones marked in `neg[v]`), `d` the 16 rows' scales.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TB {
    w: [[u8; 64]; 8],
    d: [f32; 16],
    neg: [u64; 8],
}

const TB_ZERO: TB = TB {
    w: [[0; 64]; 8],
    d: [0.0; 16],
    neg: [0; 8],
};

/// One super-block of 256 of 16 rows unpacked for the K-quant prefill kernel. `w[s][v]` lane
/// `r` holds values `32s + 4v..32s + 4v + 4` of row `r` as bytes (`q`: Q4_K `0..16`, Q6_K
/// `0..64`). Q4_K: `sc[j]` the 8 sub-block scales, `mp[i]` the mins `m[2i]`, `m[2i + 1]` as a
/// pair of i16 per lane, `d`, `dmin`. Q6_K: `sc[j]` the 16 sub-block scales, `d`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TK {
    w: [[[u8; 64]; 8]; 8],
    sc: [[i32; 16]; 16],
    mp: [[i32; 16]; 4],
    d: [f32; 16],
    dmin: [f32; 16],
}

const TK_ZERO: TK = TK {
    w: [[[0; 64]; 8]; 8],
    sc: [[0; 16]; 16],
    mp: [[0; 16]; 4],
    d: [0.0; 16],
    dmin: [0.0; 16],
};

/// 64 zero bytes: the block of the rows past the end of a 16-row tile.
static ZERO_BLOCK: [u8; 64] = [0; 64];

/// `vpdpbusd` (VNNI): `acc + sum of 4 products u8 * i8` per lane.
macro_rules! dp_vnni {
    ($acc:expr, $u:expr, $s:expr) => {
        _mm512_dpbusd_epi32($acc, $u, $s)
    };
}

/// The same with AVX-512BW: `vpmaddubsw` (pairs, no saturation for the operands used here)
/// then `vpmaddwd` by ones.
macro_rules! dp_bw {
    ($acc:expr, $u:expr, $s:expr) => {
        _mm512_add_epi32(
            $acc,
            _mm512_madd_epi16(_mm512_maddubs_epi16($u, $s), _mm512_set1_epi16(1)),
        )
    };
}

/// `vpdpwssd` (VNNI): `acc + sum of 2 products i16 * i16` per lane.
macro_rules! dpw_vnni {
    ($acc:expr, $a:expr, $b:expr) => {
        _mm512_dpwssd_epi32($acc, $a, $b)
    };
}

/// The same with AVX-512BW.
macro_rules! dpw_bw {
    ($acc:expr, $a:expr, $b:expr) => {
        _mm512_add_epi32($acc, _mm512_madd_epi16($a, $b))
    };
}

/// The AVX-512 kernels and job for one feature set: `$vnni` selects the unsigned-weight
/// encoding of Q8_0 (`w ^ 0x80` with VNNI, `|w|` and signs without), `$dp` and `$dpw` the
/// byte and word dot products.
macro_rules! avx512_quant {
    ($m:ident, $token:ty, $feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
        pub(crate) mod $m {
            use super::*;

            /// The exact integer products of 64 int8 weights `q` (two blocks of 32) with the
            /// pair at `a`, per 32-bit lane (4 products each): with VNNI on `q ^ 0x80` plus the
            /// pair's correction, without it `|q|` times `x` with the sign of `q`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn dot_pair(q: __m512i, a: *const A8Pair) -> __m512i {
                // SAFETY: the caller guarantees a pair at a.
                unsafe {
                    let ap = &*a;
                    let x = _mm512_load_si512(ap.qs.as_ptr() as *const _);
                    if $vnni {
                        let corr = _mm512_load_si512(ap.corr.as_ptr() as *const _);
                        $dp!(corr, _mm512_xor_si512(q, _mm512_set1_epi8(-128)), x)
                    } else {
                        let neg = _mm512_movepi8_mask(q);
                        let s = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
                        $dp!(_mm512_setzero_si512(), _mm512_abs_epi8(q), s)
                    }
                }
            }

            /// Q8_0 times one activation pair per 2 blocks: 4 blocks (136 bytes at `p`) into
            /// `acc[0]` and `acc[1]`. `I8`: int8 blocks of 32 bytes without scales (128 bytes
            /// at `p`; the rows' scales are applied by the caller).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn step_q8_0<const I8: bool>(
                p: *const u8,
                a: *const A8Pair,
                idx_d: __m512i,
                acc: &mut [__m512; 2],
            ) {
                // SAFETY: the caller guarantees 136 (I8: 128) readable bytes at p and two
                // pairs at a.
                unsafe {
                    if I8 {
                        for (h, acc) in acc.iter_mut().enumerate() {
                            let q = _mm512_loadu_si512(p.add(64 * h) as *const _);
                            let i = dot_pair(q, a.add(h));
                            let dx = _mm512_load_ps((*a.add(h)).d.as_ptr());
                            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), dx, *acc);
                        }
                        return;
                    }
                    let w0 = _mm512_loadu_si512(p as *const _);
                    let w1 = _mm512_loadu_si512(p.add(64) as *const _);
                    let dh = _mm512_permutex2var_epi16(w0, idx_d, w1);
                    let dw = [
                        _mm512_cvtph_ps(_mm512_castsi512_si256(dh)),
                        _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(dh)),
                    ];
                    for (h, acc) in acc.iter_mut().enumerate() {
                        let q = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(_mm256_loadu_si256(
                                p.add(68 * h + 2) as *const __m256i
                            )),
                            _mm256_loadu_si256(p.add(68 * h + 36) as *const __m256i),
                        );
                        let i = dot_pair(q, a.add(h));
                        let dx = _mm512_load_ps((*a.add(h)).d.as_ptr());
                        *acc =
                            _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw[h], dx), *acc);
                    }
                }
            }

            /// One Q8_0 row (`nb` blocks at `p`) times one token in the [`A8Pair`] layout (at
            /// least `2 * ceil(nb / 4)` pairs).
            #[target_feature(enable = $feat)]
            unsafe fn row_q8_0(p: *const u8, nb: usize, a: *const A8Pair) -> f32 {
                // SAFETY: the caller guarantees the row's `nb` blocks and the pairs; the tail
                // group is copied into a zeroed buffer first.
                unsafe {
                    let idx_d = _mm512_loadu_si512(IDX_Q8_D.as_ptr() as *const _);
                    let mut acc = [_mm512_setzero_ps(); 2];
                    let ng = nb / 4;
                    for g in 0..ng {
                        prefetch_lines(p.add(136 * g), 3);
                        step_q8_0::<false>(p.add(136 * g), a.add(2 * g), idx_d, &mut acc);
                    }
                    if nb % 4 != 0 {
                        let mut buf = [0u8; 136];
                        std::ptr::copy_nonoverlapping(
                            p.add(136 * ng),
                            buf.as_mut_ptr(),
                            34 * (nb % 4),
                        );
                        step_q8_0::<false>(buf.as_ptr(), a.add(2 * ng), idx_d, &mut acc);
                    }
                    _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
                }
            }

            /// `R` Q8_0 rows (`nb` blocks each at `p[r]`) times one token, each group of
            /// activations used for all `R` rows while it is in L1: for long rows, whose
            /// activations do not stay in L1 from one row to the next. `I8`: int8 rows in
            /// blocks of 32 bytes without scales (see [`step_q8_0`]).
            #[target_feature(enable = $feat)]
            unsafe fn rows_q8_0<const R: usize, const I8: bool>(
                p: [*const u8; R],
                nb: usize,
                a: *const A8Pair,
            ) -> [f32; R] {
                let bb = if I8 { 32 } else { 34 };
                // SAFETY: as in row_q8_0, for every row.
                unsafe {
                    let idx_d = _mm512_loadu_si512(IDX_Q8_D.as_ptr() as *const _);
                    let mut acc = [[_mm512_setzero_ps(); 2]; R];
                    let ng = nb / 4;
                    for g in 0..ng {
                        for r in 0..R {
                            let pg = p[r].add(4 * bb * g);
                            prefetch_lines(pg, 3);
                            step_q8_0::<I8>(pg, a.add(2 * g), idx_d, &mut acc[r]);
                        }
                    }
                    if nb % 4 != 0 {
                        for r in 0..R {
                            let mut buf = [0u8; 136];
                            std::ptr::copy_nonoverlapping(
                                p[r].add(4 * bb * ng),
                                buf.as_mut_ptr(),
                                bb * (nb % 4),
                            );
                            step_q8_0::<I8>(buf.as_ptr(), a.add(2 * ng), idx_d, &mut acc[r]);
                        }
                    }
                    acc.map(|a| _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1])))
                }
            }

            /// Q4_0 times one [`A4Group`]: 4 blocks (72 bytes at `p`) into `acc`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn step_q4_0(p: *const u8, a: &A4Group, idx: &[__m512i; 2], acc: &mut __m512) {
                // SAFETY: the caller guarantees 72 readable bytes at p.
                unsafe {
                    let w0 = _mm512_loadu_si512(p as *const _);
                    let w1 = _mm512_zextsi128_si512(_mm_loadl_epi64(p.add(64) as *const __m128i));
                    let nib = _mm512_permutex2var_epi16(w0, idx[0], w1);
                    let dh = _mm512_permutex2var_epi16(w0, idx[1], w1);
                    let dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
                    let m4 = _mm512_set1_epi8(0x0F);
                    let lo = _mm512_and_si512(nib, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(nib), m4);
                    let corr = _mm512_load_si512(a.corr.as_ptr() as *const _);
                    let xlo = _mm512_load_si512(a.qs.as_ptr() as *const _);
                    let xhi = _mm512_load_si512(a.qs.as_ptr().add(64) as *const _);
                    let i = $dp!($dp!(corr, lo, xlo), hi, xhi);
                    let dx = _mm512_load_ps(a.d.as_ptr());
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw, dx), *acc);
                }
            }

            /// Q4_0 times two [`A4Group`]s: 8 blocks (144 bytes at `p`) into `acc`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn step2_q4_0(
                p: *const u8,
                a: &[A4Group],
                idx: &[__m512i; 3],
                acc: &mut [__m512; 2],
            ) {
                // SAFETY: the caller guarantees 144 readable bytes at p and two groups in a.
                unsafe {
                    let w0 = _mm512_loadu_si512(p as *const _);
                    let w1 = _mm512_loadu_si512(p.add(64) as *const _);
                    let w2 = _mm512_zextsi128_si512(_mm_loadu_si128(p.add(128) as *const __m128i));
                    let nib = [
                        _mm512_permutex2var_epi16(w0, idx[0], w1),
                        _mm512_permutex2var_epi16(w1, idx[1], w2),
                    ];
                    let dh = _mm512_permutex2var_epi16(w0, idx[2], w1);
                    let dw = [
                        _mm512_cvtph_ps(_mm512_castsi512_si256(dh)),
                        _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(dh)),
                    ];
                    let m4 = _mm512_set1_epi8(0x0F);
                    for h in 0..2 {
                        let g = &a[h];
                        let lo = _mm512_and_si512(nib[h], m4);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(nib[h]), m4);
                        let corr = _mm512_load_si512(g.corr.as_ptr() as *const _);
                        let xlo = _mm512_load_si512(g.qs.as_ptr() as *const _);
                        let xhi = _mm512_load_si512(g.qs.as_ptr().add(64) as *const _);
                        let i = $dp!($dp!(corr, lo, xlo), hi, xhi);
                        let dx = _mm512_load_ps(g.d.as_ptr());
                        acc[h] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i),
                            _mm512_mul_ps(dw[h], dx),
                            acc[h],
                        );
                    }
                }
            }

            /// One Q4_0 row (`nb` blocks at `p`) times one token in the [`A4Group`] layout
            /// (`ceil(nb / 4)` groups).
            #[target_feature(enable = $feat)]
            unsafe fn row_q4_0(p: *const u8, nb: usize, a: &[A4Group]) -> f32 {
                // SAFETY: the caller guarantees the row's `nb` blocks; `a` has a group per 4
                // blocks (checked), and the tail group is copied into a zeroed buffer first.
                unsafe {
                    assert_eq!(a.len(), nb.div_ceil(4), "activation groups");
                    let idx = [
                        _mm512_loadu_si512(IDX_Q4_NIB.as_ptr() as *const _),
                        _mm512_loadu_si512(IDX_Q4_D.as_ptr() as *const _),
                    ];
                    let idx2 = [
                        idx[0],
                        _mm512_loadu_si512(IDX_Q4_NIB2.as_ptr() as *const _),
                        _mm512_loadu_si512(IDX_Q4_D8.as_ptr() as *const _),
                    ];
                    let mut acc = [_mm512_setzero_ps(); 2];
                    let ng = nb / 4;
                    let mut g = 0;
                    while g + 2 <= ng {
                        prefetch_lines(p.add(72 * g), 3);
                        step2_q4_0(p.add(72 * g), &a[g..g + 2], &idx2, &mut acc);
                        g += 2;
                    }
                    if g < ng {
                        step_q4_0(p.add(72 * g), &a[g], &idx, &mut acc[0]);
                    }
                    if nb % 4 != 0 {
                        let mut buf = [0u8; 72];
                        std::ptr::copy_nonoverlapping(
                            p.add(72 * ng),
                            buf.as_mut_ptr(),
                            18 * (nb % 4),
                        );
                        step_q4_0(buf.as_ptr(), &a[ng], &idx, &mut acc[1]);
                    }
                    _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
                }
            }

            /// `R` Q4_0 rows (`nb` blocks each at `p[r]`) times one token, each group of
            /// activations used for all `R` rows (see [`rows_q8_0`]).
            #[target_feature(enable = $feat)]
            unsafe fn rows_q4_0<const R: usize>(
                p: [*const u8; R],
                nb: usize,
                a: &[A4Group],
            ) -> [f32; R] {
                // SAFETY: as in row_q4_0, for every row.
                unsafe {
                    assert_eq!(a.len(), nb.div_ceil(4), "activation groups");
                    let idx = [
                        _mm512_loadu_si512(IDX_Q4_NIB.as_ptr() as *const _),
                        _mm512_loadu_si512(IDX_Q4_D.as_ptr() as *const _),
                    ];
                    let mut acc = [_mm512_setzero_ps(); R];
                    let ng = nb / 4;
                    for (g, ag) in a[..ng].iter().enumerate() {
                        for r in 0..R {
                            prefetch_lines(p[r].add(72 * g), 2);
                            step_q4_0(p[r].add(72 * g), ag, &idx, &mut acc[r]);
                        }
                    }
                    if nb % 4 != 0 {
                        for r in 0..R {
                            let mut buf = [0u8; 72];
                            std::ptr::copy_nonoverlapping(
                                p[r].add(72 * ng),
                                buf.as_mut_ptr(),
                                18 * (nb % 4),
                            );
                            step_q4_0(buf.as_ptr(), &a[ng], &idx, &mut acc[r]);
                        }
                    }
                    acc.map(|a| _mm512_reduce_add_ps(a))
                }
            }

            /// Word vector `k` of the piece of `n` blocks at `q` ([`frugal_quant::x4`]): lane `j`
            /// is block `j`'s word `k`, lanes from `n` on zero.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_word(q: *const u8, n: usize, k: usize) -> __m512i {
                // SAFETY: the caller guarantees the piece; a short one is read with a masked
                // load, which touches only the lanes it keeps.
                unsafe {
                    if n == 16 {
                        _mm512_loadu_si512(q.add(32 + 64 * k) as *const _)
                    } else {
                        let m = ((1u32 << n) - 1) as __mmask16;
                        _mm512_maskz_loadu_epi32(m, q.add(2 * n + 4 * n * k) as *const i32)
                    }
                }
            }

            /// The `n` f16 scales of the piece at `q` as f32 (lanes from `n` on zero).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load_scales(q: *const u8, n: usize) -> __m512 {
                // SAFETY: as in load_word.
                unsafe {
                    if n == 16 {
                        _mm512_cvtph_ps(_mm256_loadu_si256(q as *const __m256i))
                    } else {
                        let m = ((1u32 << n) - 1) as __mmask16;
                        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, q as *const i16))
                    }
                }
            }

            /// One quad of [`DType::Q4_0X4`] rows (its pieces interleaved from `p`, one per
            /// [`A16`] of `a` for each row) times one token: per piece, 4 loads of 64 bytes
            /// hold word `k` of all 16 blocks, so each block sums in its own lane, and the 16
            /// scales are one 32-byte load. The quad is one contiguous stream.
            #[target_feature(enable = $feat)]
            unsafe fn quad_q4_0x4(p: *const u8, nb: usize, a: &[A16]) -> [f32; 4] {
                // SAFETY: the caller guarantees the quad of 4 rows of `nb` blocks at p and one
                // A16 per piece (`a.len() == ceil(nb / 16)`); the activations are 64-byte
                // aligned; a short piece is read with masked loads, which do not touch the
                // lanes masked off.
                unsafe {
                    let m4 = _mm512_set1_epi8(0x0F);
                    let mut acc = [_mm512_setzero_ps(); 4];
                    for (g, x) in a.iter().enumerate() {
                        let corr = _mm512_load_si512(x.corr.as_ptr() as *const _);
                        let dx = _mm512_load_ps(x.d.as_ptr());
                        let xl: [__m512i; 4] = std::array::from_fn(|k| {
                            _mm512_load_si512(x.qs.as_ptr().add(64 * k) as *const _)
                        });
                        let xh: [__m512i; 4] = std::array::from_fn(|k| {
                            _mm512_load_si512(x.qs.as_ptr().add(256 + 64 * k) as *const _)
                        });
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let (at, n) = piece_at(DType::Q4_0.block_bytes(), nb, g, r);
                            let q = p.add(at);
                            prefetch_lines(q, 5);
                            let (mut i0, mut i1) = (corr, _mm512_setzero_si512());
                            for k in 0..4 {
                                let w = load_word(q, n, k);
                                let lo = _mm512_and_si512(w, m4);
                                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(w), m4);
                                i0 = $dp!(i0, lo, xl[k]);
                                i1 = $dp!(i1, hi, xh[k]);
                            }
                            let dw = load_scales(q, n);
                            *acc = _mm512_fmadd_ps(
                                _mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)),
                                _mm512_mul_ps(dw, dx),
                                *acc,
                            );
                        }
                    }
                    acc.map(|a| _mm512_reduce_add_ps(a))
                }
            }

            /// Transposes 16 vectors of 16 dwords: lane `r` of output `c` is lane `c` of
            /// input `r`.
            #[inline]
            #[target_feature(enable = $feat)]
            fn transpose16x16(v: [__m512i; 16]) -> [__m512i; 16] {
                // Within each 128-bit lane: 4x4 blocks of (4 rows, 4 columns).
                let mut c = [[_mm512_setzero_si512(); 4]; 4];
                for (g, cg) in c.iter_mut().enumerate() {
                    let r = 4 * g;
                    let a01 = _mm512_unpacklo_epi32(v[r], v[r + 1]);
                    let b01 = _mm512_unpackhi_epi32(v[r], v[r + 1]);
                    let a23 = _mm512_unpacklo_epi32(v[r + 2], v[r + 3]);
                    let b23 = _mm512_unpackhi_epi32(v[r + 2], v[r + 3]);
                    // cg[m], 128-bit lane L: rows r..r + 4 at column 4L + m.
                    *cg = [
                        _mm512_unpacklo_epi64(a01, a23),
                        _mm512_unpackhi_epi64(a01, a23),
                        _mm512_unpacklo_epi64(b01, b23),
                        _mm512_unpackhi_epi64(b01, b23),
                    ];
                }
                // Then the 4x4 transpose of 128-bit lanes: output 4L + m, lane g is c[g][m]
                // lane L.
                let mut out = [_mm512_setzero_si512(); 16];
                for m in 0..4 {
                    let x0 = _mm512_shuffle_i32x4::<0x44>(c[0][m], c[1][m]);
                    let x1 = _mm512_shuffle_i32x4::<0xEE>(c[0][m], c[1][m]);
                    let x2 = _mm512_shuffle_i32x4::<0x44>(c[2][m], c[3][m]);
                    let x3 = _mm512_shuffle_i32x4::<0xEE>(c[2][m], c[3][m]);
                    out[m] = _mm512_shuffle_i32x4::<0x88>(x0, x2);
                    out[4 + m] = _mm512_shuffle_i32x4::<0xDD>(x0, x2);
                    out[8 + m] = _mm512_shuffle_i32x4::<0x88>(x1, x3);
                    out[12 + m] = _mm512_shuffle_i32x4::<0xDD>(x1, x3);
                }
                out
            }

            /// Unpacks piece `g` (blocks `16g..16g + 16`) of the first `nr` (a multiple of 4,
            /// up to 16) rows of a tile of [`DType::Q4_0X4`] (`Q8`: [`DType::Q8_0X4`]) starting
            /// at row quad `base` (rows of `stride` bytes) into `tb[j]` for block `16g + j`,
            /// in the encoding of [`unpack_q4_0`] (`Q8`: [`unpack_q8_0`]); rows past `nr` are
            /// zero. Each 64-byte word vector of a piece holds one word of all 16 blocks, so a
            /// 16x16 transpose per word turns (row, block) into (block, row).
            #[target_feature(enable = $feat)]
            unsafe fn unpack_x4<const Q8: bool>(
                base: *const u8,
                stride: usize,
                nr: usize,
                g: usize,
                tb: &mut [TB],
            ) {
                let bb = if Q8 { DType::Q8_0 } else { DType::Q4_0 }.block_bytes();
                let nb = stride / bb;
                let n = piece_at(bb, nb, g, 0).1;
                assert!(tb.len() == n && nr <= 16 && nr.is_multiple_of(4), "a tile");
                // SAFETY: the caller guarantees nr whole rows at base (quads of 4 rows of
                // `stride` bytes, holding piece g); tb's entries are 64-byte aligned.
                unsafe {
                    let piece =
                        |r: usize| base.add(r / 4 * 4 * stride + piece_at(bb, nb, g, r % 4).0);
                    let m4 = _mm512_set1_epi8(0x0F);
                    for k in 0..if Q8 { 8 } else { 4 } {
                        let v: [__m512i; 16] = std::array::from_fn(|r| {
                            if r < nr {
                                load_word(piece(r), n, k)
                            } else {
                                _mm512_setzero_si512()
                            }
                        });
                        for (j, w) in transpose16x16(v).iter().take(n).enumerate() {
                            if Q8 {
                                let u = if $vnni {
                                    _mm512_xor_si512(*w, _mm512_set1_epi8(-128))
                                } else {
                                    tb[j].neg[k] = _mm512_movepi8_mask(*w);
                                    _mm512_abs_epi8(*w)
                                };
                                _mm512_store_si512(tb[j].w[k].as_mut_ptr() as *mut _, u);
                            } else {
                                let lo = _mm512_and_si512(*w, m4);
                                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(*w), m4);
                                _mm512_store_si512(tb[j].w[k].as_mut_ptr() as *mut _, lo);
                                _mm512_store_si512(tb[j].w[k + 4].as_mut_ptr() as *mut _, hi);
                            }
                        }
                    }
                    let d: [__m512i; 16] = std::array::from_fn(|r| {
                        if r < nr {
                            _mm512_castps_si512(load_scales(piece(r), n))
                        } else {
                            _mm512_setzero_si512()
                        }
                    });
                    for (j, dj) in transpose16x16(d).iter().take(n).enumerate() {
                        _mm512_store_si512(tb[j].d.as_mut_ptr() as *mut _, *dj);
                    }
                }
            }

            /// One quad of [`DType::Q8_0X4`] rows (its pieces interleaved from `p`, one per
            /// [`A16`] of `a` for each row) times one token, as [`quad_q4_0x4`] with 8 word
            /// vectors of int8 per piece (with VNNI made unsigned, `w ^ 0x80`, against the
            /// pieces' `-128 * sum`; without, `|w|` times `x` with the sign of `w`).
            #[target_feature(enable = $feat)]
            unsafe fn quad_q8_0x4(p: *const u8, nb: usize, a: &[A16]) -> [f32; 4] {
                // SAFETY: as in quad_q4_0x4, with pieces of Q8_0 blocks.
                unsafe {
                    let mut acc = [_mm512_setzero_ps(); 4];
                    for (g, x) in a.iter().enumerate() {
                        let corr = _mm512_load_si512(x.corr.as_ptr() as *const _);
                        let dx = _mm512_load_ps(x.d.as_ptr());
                        let xs: [__m512i; 8] = std::array::from_fn(|k| {
                            _mm512_load_si512(x.qs.as_ptr().add(64 * k) as *const _)
                        });
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let (at, n) = piece_at(DType::Q8_0.block_bytes(), nb, g, r);
                            let q = p.add(at);
                            prefetch_lines(q, 9);
                            let mut i = [
                                if $vnni { corr } else { _mm512_setzero_si512() },
                                _mm512_setzero_si512(),
                            ];
                            for (k, xk) in xs.iter().enumerate() {
                                let w = load_word(q, n, k);
                                i[k % 2] = if $vnni {
                                    $dp!(i[k % 2], _mm512_xor_si512(w, _mm512_set1_epi8(-128)), *xk)
                                } else {
                                    let neg = _mm512_movepi8_mask(w);
                                    let s =
                                        _mm512_mask_sub_epi8(*xk, neg, _mm512_setzero_si512(), *xk);
                                    $dp!(i[k % 2], _mm512_abs_epi8(w), s)
                                };
                            }
                            let dw = load_scales(q, n);
                            *acc = _mm512_fmadd_ps(
                                _mm512_cvtepi32_ps(_mm512_add_epi32(i[0], i[1])),
                                _mm512_mul_ps(dw, dx),
                                *acc,
                            );
                        }
                    }
                    acc.map(|a| _mm512_reduce_add_ps(a))
                }
            }

            /// The f16 at `p` as f32.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn f16_at(p: *const u8) -> f32 {
                // SAFETY: the caller guarantees 2 readable bytes at p.
                let h = unsafe { (p as *const u16).read_unaligned() };
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
            }

            /// Horizontal sum of 4 lanes.
            #[inline]
            #[target_feature(enable = $feat)]
            fn hsum4(m: __m128) -> f32 {
                let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
                _mm_cvtss_f32(_mm_add_ss(m, _mm_shuffle_ps::<1>(m, m)))
            }

            /// The first 16 bytes of a Q4_K block at `b` (`d`, `dmin`, 12 packed scale bytes)
            /// decoded in registers, as [`q4k_scales`] does with general-purpose ones: the 8
            /// scales (bytes 0..8) and 8 mins (bytes 8..16), and `[d * dx, dmin * dx]` in
            /// lanes 0 and 1.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn q4k_head(b: *const u8, dx: f32) -> (__m128i, __m128) {
                // SAFETY: the caller guarantees 16 readable bytes at b.
                unsafe {
                    let v = _mm_loadu_si128(b as *const __m128i);
                    // Dwords of v: [d | dmin, u0, u1, u2].
                    let a = _mm_shuffle_epi32::<0b11_10_11_01>(v); // [u0, u2, u1, u2]
                    let c = _mm_shuffle_epi32::<0b10_10_01_01>(v); // [u0, u0, u1, u1]
                    let lo = _mm_and_si128(
                        _mm_srlv_epi32(a, _mm_set_epi32(4, 0, 0, 0)),
                        _mm_set_epi32(0x0f0f_0f0f, 0x3f3f_3f3f, 0x0f0f_0f0f, 0x3f3f_3f3f),
                    );
                    // ((u >> 6) & 0x03) << 4 per byte = (u >> 2) & 0x30.
                    let hi = _mm_and_si128(
                        _mm_srli_epi32::<2>(c),
                        _mm_set_epi32(0x3030_3030, 0, 0x3030_3030, 0),
                    );
                    let dd = _mm_mul_ps(_mm_cvtph_ps(v), _mm_set1_ps(dx));
                    (_mm_or_si128(lo, hi), dd)
                }
            }

            /// `R` Q4_K rows (`nb` super-blocks each at `p[r]`) times one token: each block's
            /// activations are loaded once for the `R` rows (long rows' activations do not stay
            /// in L1 from one row to the next).
            #[target_feature(enable = $feat)]
            unsafe fn rows_q4_k<const R: usize>(
                p: [*const u8; R],
                nb: usize,
                x: *const AK,
            ) -> [f32; R] {
                // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
                // blocks.
                unsafe {
                    let m4 = _mm512_set1_epi8(0x0F);
                    let idx: [__m512i; 4] = std::array::from_fn(|i| {
                        _mm512_loadu_si512(SHUF_Q4K_SC[i].as_ptr() as *const _)
                    });
                    let mut acc = [_mm512_setzero_ps(); R];
                    let mut accm = [_mm_setzero_ps(); R];
                    for k in 0..nb {
                        let xb = &*x.add(k);
                        let xv: [__m512i; 4] = std::array::from_fn(|g| {
                            _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                        });
                        let bs = _mm_loadu_si128(xb.bsums32.as_ptr() as *const __m128i);
                        for r in 0..R {
                            let b = p[r].add(144 * k);
                            prefetch_lines(b, 3);
                            let (sm, dd) = q4k_head(b, xb.d);
                            let mins = _mm_cvtepu8_epi16(_mm_srli_si128::<8>(sm));
                            let sb = _mm512_broadcast_i32x4(sm);
                            let v0 = _mm512_loadu_si512(b.add(16) as *const _);
                            let v1 = _mm512_loadu_si512(b.add(80) as *const _);
                            let q = [
                                _mm512_and_si512(v0, m4),
                                _mm512_and_si512(_mm512_srli_epi16::<4>(v0), m4),
                                _mm512_and_si512(v1, m4),
                                _mm512_and_si512(_mm512_srli_epi16::<4>(v1), m4),
                            ];
                            let mut i = _mm512_setzero_si512();
                            for g in 0..4 {
                                let sg = _mm512_shuffle_epi8(sb, idx[g]);
                                i = $dpw!(i, _mm512_maddubs_epi16(q[g], xv[g]), sg);
                            }
                            acc[r] = _mm512_fmadd_ps(
                                _mm512_cvtepi32_ps(i),
                                _mm512_broadcastss_ps(dd),
                                acc[r],
                            );
                            let m = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs));
                            let dm = _mm_permute_ps::<0b01_01_01_01>(dd);
                            accm[r] = _mm_fmadd_ps(m, dm, accm[r]);
                        }
                    }
                    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) - hsum4(accm[r]))
                }
            }

            /// `R` Q6_K rows (`nb` super-blocks each at `p[r]`) times one token, as
            /// [`rows_q4_k`].
            #[target_feature(enable = $feat)]
            unsafe fn rows_q6_k<const R: usize>(
                p: [*const u8; R],
                nb: usize,
                x: *const AK,
            ) -> [f32; R] {
                // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
                // blocks.
                unsafe {
                    let m4 = _mm512_set1_epi8(0x0F);
                    let m3 = _mm512_set1_epi8(3);
                    let idx: [__m512i; 4] = std::array::from_fn(|i| {
                        _mm512_loadu_si512(IDX_Q6K_SC[i].as_ptr() as *const _)
                    });
                    let sh = [
                        _mm512_loadu_si512(Q6K_SHIFTS[0].as_ptr() as *const _),
                        _mm512_loadu_si512(Q6K_SHIFTS[1].as_ptr() as *const _),
                    ];
                    let mut acc = [_mm512_setzero_ps(); R];
                    for k in 0..nb {
                        let xb = &*x.add(k);
                        let xv: [__m512i; 4] = std::array::from_fn(|g| {
                            _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                        });
                        let bs = _mm256_loadu_si256(xb.bsums16.as_ptr() as *const __m256i);
                        for r in 0..R {
                            let b = p[r].add(210 * k);
                            prefetch_lines(b, 4);
                            let d = f16_at(b.add(208));
                            let sc16 =
                                _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192) as *const __m128i));
                            let sc512 = _mm512_castsi256_si512(sc16);
                            let mut q = [_mm512_setzero_si512(); 4];
                            for h in 0..2 {
                                let ql = _mm512_loadu_si512(b.add(64 * h) as *const _);
                                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                                    b.add(128 + 32 * h) as *const __m256i,
                                ));
                                let hi = |s: __m512i| {
                                    _mm512_slli_epi16::<4>(_mm512_and_si512(
                                        _mm512_srlv_epi16(qh, s),
                                        m3,
                                    ))
                                };
                                q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), hi(sh[0]));
                                q[2 * h + 1] = _mm512_or_si512(
                                    _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4),
                                    hi(sh[1]),
                                );
                            }
                            let mut i = _mm512_setzero_si512();
                            for g in 0..4 {
                                let sg = _mm512_permutexvar_epi16(idx[g], sc512);
                                i = $dpw!(i, _mm512_maddubs_epi16(q[g], xv[g]), sg);
                            }
                            let c = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc16, bs));
                            i = _mm512_sub_epi32(i, _mm512_zextsi256_si512(c));
                            acc[r] = _mm512_fmadd_ps(
                                _mm512_cvtepi32_ps(i),
                                _mm512_set1_ps(d * xb.d),
                                acc[r],
                            );
                        }
                    }
                    std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
                }
            }

            /// Transposes 16 rows x 4 dwords (row `4i + j` in 128-bit lane `j` of `z[i]`) into
            /// 4 vectors of 16 dwords: output `v` lane `r` is dword `v` of row `r`.
            #[inline]
            #[target_feature(enable = $feat)]
            fn transpose16x4(z: [__m512i; 4], idx: __m512i) -> [__m512i; 4] {
                let p = z.map(|v| _mm512_permutexvar_epi32(idx, v));
                let t0 = _mm512_shuffle_i32x4::<0x44>(p[0], p[1]);
                let t1 = _mm512_shuffle_i32x4::<0xEE>(p[0], p[1]);
                let t2 = _mm512_shuffle_i32x4::<0x44>(p[2], p[3]);
                let t3 = _mm512_shuffle_i32x4::<0xEE>(p[2], p[3]);
                [
                    _mm512_shuffle_i32x4::<0x88>(t0, t2),
                    _mm512_shuffle_i32x4::<0xDD>(t0, t2),
                    _mm512_shuffle_i32x4::<0x88>(t1, t3),
                    _mm512_shuffle_i32x4::<0xDD>(t1, t3),
                ]
            }

            /// Loads 16 bytes at `rows[r] + off` for 16 rows, row `4i + j` into lane `j` of
            /// register `i`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load16x16(rows: &[*const u8; 16], off: usize) -> [__m512i; 4] {
                // SAFETY: the caller guarantees 16 readable bytes at every rows[r] + off.
                unsafe {
                    std::array::from_fn(|i| {
                        let l =
                            |j: usize| _mm_loadu_si128(rows[4 * i + j].add(off) as *const __m128i);
                        let v = _mm512_castsi128_si512(l(0));
                        let v = _mm512_inserti32x4::<1>(v, l(1));
                        let v = _mm512_inserti32x4::<2>(v, l(2));
                        _mm512_inserti32x4::<3>(v, l(3))
                    })
                }
            }

            /// The f16 scales at `rows[r]` of 16 rows.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn scales16(rows: &[*const u8; 16]) -> __m512 {
                // SAFETY: the caller guarantees 2 readable bytes at every rows[r].
                let dh: [u16; 16] =
                    std::array::from_fn(|r| unsafe { (rows[r] as *const u16).read_unaligned() });
                // SAFETY: dh is 32 bytes.
                _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(dh.as_ptr() as *const __m256i) })
            }

            /// Unpacks one Q4_0 block of 16 rows (`rows[r]` at the block) into `tb`.
            #[target_feature(enable = $feat)]
            unsafe fn unpack_q4_0(rows: &[*const u8; 16], idx: __m512i, tb: &mut TB) {
                // SAFETY: the caller guarantees 18 readable bytes at every rows[r].
                unsafe {
                    let m4 = _mm512_set1_epi8(0x0F);
                    let v = transpose16x4(load16x16(rows, 2), idx);
                    for (j, vj) in v.iter().enumerate() {
                        let lo = _mm512_and_si512(*vj, m4);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(*vj), m4);
                        _mm512_store_si512(tb.w[j].as_mut_ptr() as *mut _, lo);
                        _mm512_store_si512(tb.w[j + 4].as_mut_ptr() as *mut _, hi);
                    }
                    _mm512_store_ps(tb.d.as_mut_ptr(), scales16(rows));
                }
            }

            /// Unpacks 32 int8 weights at `rows[r] + off` of 16 rows into `tb`'s weights in the
            /// Q8_0 encoding (the scales are the caller's).
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn unpack_int8(rows: &[*const u8; 16], off: usize, idx: __m512i, tb: &mut TB) {
                // SAFETY: the caller guarantees 32 readable bytes at every rows[r] + off.
                unsafe {
                    for h in 0..2 {
                        let v = transpose16x4(load16x16(rows, off + 16 * h), idx);
                        for (j, vj) in v.iter().enumerate() {
                            let u = if $vnni {
                                _mm512_xor_si512(*vj, _mm512_set1_epi8(-128))
                            } else {
                                tb.neg[4 * h + j] = _mm512_movepi8_mask(*vj);
                                _mm512_abs_epi8(*vj)
                            };
                            _mm512_store_si512(tb.w[4 * h + j].as_mut_ptr() as *mut _, u);
                        }
                    }
                }
            }

            /// Unpacks one Q8_0 block of 16 rows (`rows[r]` at the block) into `tb`.
            #[target_feature(enable = $feat)]
            unsafe fn unpack_q8_0(rows: &[*const u8; 16], idx: __m512i, tb: &mut TB) {
                // SAFETY: the caller guarantees 34 readable bytes at every rows[r].
                unsafe {
                    unpack_int8(rows, 2, idx, tb);
                    _mm512_store_ps(tb.d.as_mut_ptr(), scales16(rows));
                }
            }

            /// Unpacks one int8 block of 32 of 16 rows (`rows[r]` at the block) into `tb` in
            /// the Q8_0 encoding, with unit scales (the rows' own are applied by the caller).
            #[target_feature(enable = $feat)]
            unsafe fn unpack_i8(rows: &[*const u8; 16], idx: __m512i, tb: &mut TB) {
                // SAFETY: the caller guarantees 32 readable bytes at every rows[r].
                unsafe {
                    unpack_int8(rows, 0, idx, tb);
                    _mm512_store_ps(tb.d.as_mut_ptr(), _mm512_set1_ps(1.0));
                }
            }

            /// 16 unpacked rows (`nb` blocks at `s`) times `T` tokens: lane `r` of result `t`
            /// is row `r` . token `t`. `Q8` selects the Q8_0 encoding of [`TB`] (and its
            /// correction, `-128 * sum(x)` with VNNI, none without) over Q4_0's (`-8 * sum`).
            #[target_feature(enable = $feat)]
            unsafe fn tgemm<const Q8: bool, const T: usize>(
                s: &[TB],
                x: [*const B32; T],
            ) -> [__m512; T] {
                let mut acc = [_mm512_setzero_ps(); T];
                for (k, tb) in s.iter().enumerate() {
                    // SAFETY: every token has `s.len()` activation blocks (checked by the
                    // caller); the scratch is 64-byte aligned.
                    unsafe {
                        let w: [__m512i; 8] =
                            std::array::from_fn(
                                |v| _mm512_load_si512(tb.w[v].as_ptr() as *const _),
                            );
                        let dw = _mm512_load_ps(tb.d.as_ptr());
                        for t in 0..T {
                            let xb = &*x[t].add(k);
                            let c = if Q8 {
                                if $vnni {
                                    -128 * xb.sum
                                } else {
                                    0
                                }
                            } else {
                                -8 * xb.sum
                            };
                            let mut i = _mm512_set1_epi32(c);
                            let xq = xb.qs.as_ptr() as *const i32;
                            for (v, wv) in w.iter().enumerate() {
                                let xv = _mm512_set1_epi32(xq.add(v).read_unaligned());
                                let xv = if Q8 && !$vnni {
                                    _mm512_mask_sub_epi8(xv, tb.neg[v], _mm512_setzero_si512(), xv)
                                } else {
                                    xv
                                };
                                i = $dp!(i, *wv, xv);
                            }
                            let sc = _mm512_mul_ps(dw, _mm512_set1_ps(xb.d));
                            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), sc, acc[t]);
                        }
                    }
                }
                acc
            }

            /// The 256 levels `q` of one Q4_K super-block at `b`, in order, into `out`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn levels_q4_k(b: *const u8, out: &mut [u8; 256]) {
                // SAFETY: the caller guarantees 144 readable bytes at b; out is 256 bytes.
                unsafe {
                    let m4 = _mm512_set1_epi8(0x0F);
                    for h in 0..2 {
                        let v = _mm512_loadu_si512(b.add(16 + 64 * h) as *const _);
                        let lo = _mm512_and_si512(v, m4);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                        // Chunk c = 2h + e: low nibbles are values 64c.., high ones 64c + 32...
                        let o = out.as_mut_ptr().add(128 * h) as *mut __m256i;
                        _mm256_storeu_si256(o, _mm512_castsi512_si256(lo));
                        _mm256_storeu_si256(o.add(1), _mm512_castsi512_si256(hi));
                        _mm256_storeu_si256(o.add(2), _mm512_extracti64x4_epi64::<1>(lo));
                        _mm256_storeu_si256(o.add(3), _mm512_extracti64x4_epi64::<1>(hi));
                    }
                }
            }

            /// The 256 levels `q` (`0..64`) of one Q6_K super-block at `b`, in order.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn levels_q6_k(b: *const u8, out: &mut [u8; 256]) {
                // SAFETY: the caller guarantees 210 readable bytes at b; out is 256 bytes.
                unsafe {
                    let m4 = _mm512_set1_epi8(0x0F);
                    let m3 = _mm512_set1_epi8(3);
                    let sh = [
                        _mm512_loadu_si512(Q6K_SHIFTS[0].as_ptr() as *const _),
                        _mm512_loadu_si512(Q6K_SHIFTS[1].as_ptr() as *const _),
                    ];
                    for h in 0..2 {
                        let ql = _mm512_loadu_si512(b.add(64 * h) as *const _);
                        let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                            b.add(128 + 32 * h) as *const __m256i
                        ));
                        let hi = |s: __m512i| {
                            _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srlv_epi16(qh, s), m3))
                        };
                        let o = out.as_mut_ptr().add(128 * h) as *mut __m512i;
                        _mm512_storeu_si512(
                            o as *mut _,
                            _mm512_or_si512(_mm512_and_si512(ql, m4), hi(sh[0])),
                        );
                        _mm512_storeu_si512(
                            o.add(1) as *mut _,
                            _mm512_or_si512(
                                _mm512_and_si512(_mm512_srli_epi16::<4>(ql), m4),
                                hi(sh[1]),
                            ),
                        );
                    }
                }
            }

            /// Unpacks super-block `k` of the 16 rows `rows[r]` (`None` past the tile's end)
            /// of a Q4_K (`q4k`) or Q6_K matrix into `tk`.
            #[target_feature(enable = $feat)]
            unsafe fn unpack_k(
                rows: &[Option<*const u8>; 16],
                q4k: bool,
                idx: __m512i,
                tk: &mut TK,
            ) {
                // SAFETY: the caller guarantees a whole super-block at every Some(row).
                unsafe {
                    let mut lv = [[0u8; 256]; 16];
                    for (r, row) in rows.iter().enumerate() {
                        let Some(b) = *row else {
                            for j in 0..16 {
                                tk.sc[j][r] = 0;
                            }
                            for i in 0..4 {
                                tk.mp[i][r] = 0;
                            }
                            tk.d[r] = 0.0;
                            tk.dmin[r] = 0.0;
                            continue;
                        };
                        if q4k {
                            levels_q4_k(b, &mut lv[r]);
                            let sm: [u8; 16] = std::mem::transmute(q4k_scales(b.add(4)));
                            for j in 0..8 {
                                tk.sc[j][r] = sm[j] as i32;
                            }
                            for i in 0..4 {
                                tk.mp[i][r] = sm[8 + 2 * i] as i32 | (sm[9 + 2 * i] as i32) << 16;
                            }
                            tk.d[r] = f16_at(b);
                            tk.dmin[r] = f16_at(b.add(2));
                        } else {
                            levels_q6_k(b, &mut lv[r]);
                            for j in 0..16 {
                                tk.sc[j][r] = *b.add(192 + j) as i8 as i32;
                            }
                            tk.d[r] = f16_at(b.add(208));
                        }
                    }
                    let ptrs: [*const u8; 16] = std::array::from_fn(|r| lv[r].as_ptr());
                    for s in 0..8 {
                        for h in 0..2 {
                            let v = transpose16x4(load16x16(&ptrs, 32 * s + 16 * h), idx);
                            for (j, vj) in v.iter().enumerate() {
                                _mm512_store_si512(tk.w[s][4 * h + j].as_mut_ptr() as *mut _, *vj);
                            }
                        }
                    }
                }
            }

            /// 16 unpacked K-quant rows (`s`, one [`TK`] per super-block) times `T` tokens:
            /// lane `r` of result `t` is row `r` . token `t`.
            #[target_feature(enable = $feat)]
            unsafe fn tgemm_k<const Q4K: bool, const T: usize>(
                s: &[TK],
                x: [*const AK; T],
            ) -> [__m512; T] {
                let mut acc = [_mm512_setzero_ps(); T];
                for (k, tk) in s.iter().enumerate() {
                    // SAFETY: every token has `s.len()` activation blocks (checked by the
                    // caller); the scratch is 64-byte aligned.
                    unsafe {
                        let xb: [&AK; T] = std::array::from_fn(|t| &*x[t].add(k));
                        let mut isum = [_mm512_setzero_si512(); T];
                        // Sub-blocks of 32 (Q4_K) or pairs of sub-blocks of 16 (Q6_K).
                        for (sb, ws) in tk.w.iter().enumerate() {
                            let w: [__m512i; 8] = std::array::from_fn(|v| {
                                _mm512_load_si512(ws[v].as_ptr() as *const _)
                            });
                            if Q4K {
                                let sc = _mm512_load_si512(tk.sc[sb].as_ptr() as *const _);
                                let off = 32 * k_pos(sb);
                                for t in 0..T {
                                    let xq = xb[t].qs.as_ptr().add(off) as *const i32;
                                    let mut i = _mm512_setzero_si512();
                                    for (v, wv) in w.iter().enumerate() {
                                        i = $dp!(
                                            i,
                                            *wv,
                                            _mm512_set1_epi32(xq.add(v).read_unaligned())
                                        );
                                    }
                                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(i, sc));
                                }
                            } else {
                                for h in 0..2 {
                                    let j = 2 * sb + h;
                                    let sc = _mm512_load_si512(tk.sc[j].as_ptr() as *const _);
                                    for t in 0..T {
                                        let xq = xb[t].qs.as_ptr().add(16 * j) as *const i32;
                                        let mut i = _mm512_set1_epi32(xb[t].c6[j]);
                                        for v in 0..4 {
                                            let xv = _mm512_set1_epi32(xq.add(v).read_unaligned());
                                            i = $dp!(i, w[4 * h + v], xv);
                                        }
                                        isum[t] =
                                            _mm512_add_epi32(isum[t], _mm512_mullo_epi32(i, sc));
                                    }
                                }
                            }
                        }
                        let d = _mm512_load_ps(tk.d.as_ptr());
                        for t in 0..T {
                            let dx = _mm512_set1_ps(xb[t].d);
                            acc[t] = _mm512_fmadd_ps(
                                _mm512_cvtepi32_ps(isum[t]),
                                _mm512_mul_ps(d, dx),
                                acc[t],
                            );
                            if Q4K {
                                let bs = xb[t].bsums32.as_ptr() as *const i32;
                                let mut m = _mm512_setzero_si512();
                                for i in 0..4 {
                                    let mp = _mm512_load_si512(tk.mp[i].as_ptr() as *const _);
                                    m = $dpw!(m, mp, _mm512_set1_epi32(bs.add(i).read_unaligned()));
                                }
                                let dmin = _mm512_load_ps(tk.dmin.as_ptr());
                                acc[t] = _mm512_fnmadd_ps(
                                    _mm512_cvtepi32_ps(m),
                                    _mm512_mul_ps(dmin, dx),
                                    acc[t],
                                );
                            }
                        }
                    }
                }
                acc
            }

            /// The AVX-512 product job.
            pub(crate) struct Job<'a> {
                _k: $token,
                w: &'a MatRef<'a>,
                a: QActs,
                n: usize,
            }

            impl<'a> Job<'a> {
                pub(crate) fn new(k: $token, w: &'a MatRef<'a>, a: QActs, n: usize) -> Self {
                    check_job(w, &a, n);
                    if n == 1 {
                        match w.dtype {
                            DType::Q8_0 | DType::I8 => {
                                assert_eq!(a.pairs.len(), 2 * a.nb.div_ceil(4))
                            }
                            DType::Q4_0 => assert_eq!(a.groups.len(), a.nb.div_ceil(4)),
                            DType::Q4_0X4 | DType::Q8_0X4 => {
                                assert_eq!(a.pieces.len(), a.nb.div_ceil(16))
                            }
                            _ => {}
                        }
                    }
                    Job { _k: k, w, a, n }
                }

                /// Rows `r0..` of every token for K-quants, 16 rows at a time through the
                /// unpacked scratch.
                fn rows16_k(&self, r0: usize, outs: &mut [&mut [f32]]) {
                    let (nb, bb) = (self.a.nb, self.w.dtype.block_bytes());
                    let q4k = self.w.dtype == DType::Q4_K;
                    let nrows = outs[0].len();
                    let mut scratch = vec![TK_ZERO; nb];
                    // SAFETY: IDX_TR is 64 bytes.
                    let idx = unsafe { _mm512_loadu_si512(IDX_TR.as_ptr() as *const _) };
                    let mut rt = 0;
                    while rt < nrows {
                        let nr = 16.min(nrows - rt);
                        for (k, tk) in scratch.iter_mut().enumerate() {
                            let rows: [Option<*const u8>; 16] = std::array::from_fn(|r| {
                                (r < nr).then(|| self.w.row_bytes(r0 + rt + r)[k * bb..].as_ptr())
                            });
                            // SAFETY: the token proves the features; every Some pointer is at
                            // a whole super-block of its row.
                            unsafe { unpack_k(&rows, q4k, idx, tk) };
                        }
                        let mut t0 = 0;
                        while t0 < self.n {
                            let nt = [8, 4, 2, 1]
                                .into_iter()
                                .find(|&s| s <= self.n - t0)
                                .unwrap_or(1);
                            macro_rules! go {
                                ($T:literal) => {{
                                    let x: [*const AK; $T] =
                                        std::array::from_fn(|t| self.a.k(t0 + t).as_ptr());
                                    // SAFETY: the token proves the features; every token has
                                    // `nb` activation blocks (check_job).
                                    let acc = unsafe {
                                        if q4k {
                                            tgemm_k::<true, $T>(&scratch, x)
                                        } else {
                                            tgemm_k::<false, $T>(&scratch, x)
                                        }
                                    };
                                    for (t, a) in acc.iter().enumerate() {
                                        // SAFETY: a __m512 is 16 f32 (a plain move, where
                                        // the store intrinsic would be a call out of this
                                        // non-AVX-512 function).
                                        let lanes: [f32; 16] = unsafe { std::mem::transmute(*a) };
                                        outs[t0 + t][rt..rt + nr].copy_from_slice(&lanes[..nr]);
                                    }
                                }};
                            }
                            match nt {
                                8 => go!(8),
                                4 => go!(4),
                                2 => go!(2),
                                _ => go!(1),
                            }
                            t0 += nt;
                        }
                        rt += nr;
                    }
                }

                /// Rows `r0..` of every token, 16 rows at a time through the unpacked scratch.
                fn rows16(&self, r0: usize, outs: &mut [&mut [f32]]) {
                    let (nb, bb) = (self.a.nb, weight_block_bytes(self.w.dtype));
                    let i8 = self.w.dtype == DType::I8;
                    let q8 = self.w.dtype == DType::Q8_0 || i8;
                    let x4 = self.w.dtype.is_x4();
                    let q8 = q8 || self.w.dtype == DType::Q8_0X4;
                    let nrows = outs[0].len();
                    let mut scratch = vec![TB_ZERO; nb];
                    // SAFETY: IDX_TR is 64 bytes.
                    let idx = unsafe { _mm512_loadu_si512(IDX_TR.as_ptr() as *const _) };
                    let mut rt = 0;
                    while rt < nrows {
                        let nr = 16.min(nrows - rt);
                        if x4 {
                            // Whole quads: rows and r0 are multiples of 4.
                            let stride = self.w.row_stride();
                            let base = self.w.data[(r0 + rt) * stride..].as_ptr();
                            for (g, tb) in scratch.chunks_mut(16).enumerate() {
                                // SAFETY: the token proves the features; the tile's nr rows
                                // are whole rows of the matrix (MatRef checked the quads).
                                unsafe {
                                    if q8 {
                                        unpack_x4::<true>(base, stride, nr, g, tb)
                                    } else {
                                        unpack_x4::<false>(base, stride, nr, g, tb)
                                    }
                                };
                            }
                        } else {
                            let base: [*const u8; 16] = std::array::from_fn(|r| {
                                if r < nr {
                                    self.w.row_bytes(r0 + rt + r).as_ptr()
                                } else {
                                    ZERO_BLOCK.as_ptr()
                                }
                            });
                            for (k, tb) in scratch.iter_mut().enumerate() {
                                // Rows past the tile's end stay on the zero block.
                                let rows: [*const u8; 16] = std::array::from_fn(|r| {
                                    if r < nr {
                                        base[r].wrapping_add(k * bb)
                                    } else {
                                        base[r]
                                    }
                                });
                                // SAFETY: the token proves the features; each pointer is at a
                                // whole block of its row (or at the 64-byte zero block).
                                unsafe {
                                    if i8 {
                                        unpack_i8(&rows, idx, tb);
                                    } else if q8 {
                                        unpack_q8_0(&rows, idx, tb);
                                    } else {
                                        unpack_q4_0(&rows, idx, tb);
                                    }
                                }
                            }
                        }
                        let mut t0 = 0;
                        while t0 < self.n {
                            let nt = [8, 4, 2, 1]
                                .into_iter()
                                .find(|&s| s <= self.n - t0)
                                .unwrap_or(1);
                            macro_rules! go {
                                ($T:literal) => {{
                                    let x: [*const B32; $T] =
                                        std::array::from_fn(|t| self.a.b32(t0 + t).as_ptr());
                                    // SAFETY: the token proves the features; every token has
                                    // `nb` activation blocks (check_job).
                                    let acc = unsafe {
                                        if q8 {
                                            tgemm::<true, $T>(&scratch, x)
                                        } else {
                                            tgemm::<false, $T>(&scratch, x)
                                        }
                                    };
                                    for (t, a) in acc.iter().enumerate() {
                                        // SAFETY: a __m512 is 16 f32 (a plain move, where
                                        // the store intrinsic would be a call out of this
                                        // non-AVX-512 function).
                                        let lanes: [f32; 16] = unsafe { std::mem::transmute(*a) };
                                        outs[t0 + t][rt..rt + nr].copy_from_slice(&lanes[..nr]);
                                    }
                                }};
                            }
                            match nt {
                                8 => go!(8),
                                4 => go!(4),
                                2 => go!(2),
                                _ => go!(1),
                            }
                            t0 += nt;
                        }
                        rt += nr;
                    }
                }
            }

            impl QJob for Job<'_> {
                fn row_align(&self) -> usize {
                    if self.n > 1 {
                        16
                    } else {
                        4
                    }
                }

                fn matvec(&self, r0: usize, y: &mut [f32]) {
                    assert!(r0 + y.len() <= self.w.rows, "rows inside the matrix");
                    let nb = self.a.nb;
                    if self.w.dtype.is_x4() {
                        let stride = self.w.row_stride();
                        assert!(
                            r0.is_multiple_of(4) && y.len().is_multiple_of(4),
                            "whole quads"
                        );
                        for (q, ys) in y.chunks_exact_mut(4).enumerate() {
                            let p = self.w.data[(r0 + 4 * q) * stride..].as_ptr();
                            // SAFETY: the token proves the features; the quad holds 4 rows
                            // of `nb / 16` pieces (MatRef checked) and the activations one
                            // A16 per piece (checked in `new`).
                            ys.copy_from_slice(&unsafe {
                                if self.w.dtype == DType::Q4_0X4 {
                                    quad_q4_0x4(p, nb, &self.a.pieces)
                                } else {
                                    quad_q8_0x4(p, nb, &self.a.pieces)
                                }
                            });
                        }
                        return;
                    }
                    // Rows whose activation layout outgrows L1 (2 bytes per value for Q4_0, 3
                    // for Q8_0; past 16 KB) go 4 at a time, sharing each activation load.
                    // K-quants: 1.25 bytes per value, past 16 KB too.
                    let multi = match self.w.dtype {
                        DType::Q4_0 => 2 * self.w.cols > 16 << 10,
                        DType::Q8_0 | DType::I8 => 3 * self.w.cols > 16 << 10,
                        _ => 5 * self.w.cols / 4 > 16 << 10,
                    };
                    let mut done = 0;
                    if multi {
                        for (q, ys) in y.chunks_exact_mut(4).enumerate() {
                            let p: [*const u8; 4] =
                                std::array::from_fn(|r| self.w.row_bytes(r0 + 4 * q + r).as_ptr());
                            // SAFETY: the token proves the features; the rows hold `nb` blocks
                            // and the activations their layout (checked in `new`).
                            let v = unsafe {
                                match self.w.dtype {
                                    DType::Q4_0 => rows_q4_0::<4>(p, nb, &self.a.groups),
                                    DType::Q8_0 => {
                                        rows_q8_0::<4, false>(p, nb, self.a.pairs.as_ptr())
                                    }
                                    DType::I8 => rows_q8_0::<4, true>(p, nb, self.a.pairs.as_ptr()),
                                    DType::Q4_K => rows_q4_k::<4>(p, nb, self.a.k(0).as_ptr()),
                                    DType::Q6_K => rows_q6_k::<4>(p, nb, self.a.k(0).as_ptr()),
                                    d => unreachable!("{} is not quantized", d.name()),
                                }
                            };
                            ys.copy_from_slice(&v);
                            done += 4;
                        }
                    }
                    for (i, v) in y.iter_mut().enumerate().skip(done) {
                        let p = self.w.row_bytes(r0 + i).as_ptr();
                        // SAFETY: the token proves the features; the row holds `nb` blocks and
                        // the activations their layouts (checked in `new`).
                        *v = unsafe {
                            match self.w.dtype {
                                DType::Q8_0 => row_q8_0(p, nb, self.a.pairs.as_ptr()),
                                DType::I8 => {
                                    rows_q8_0::<1, true>([p], nb, self.a.pairs.as_ptr())[0]
                                }
                                DType::Q4_0 => row_q4_0(p, nb, &self.a.groups),
                                DType::Q4_K => rows_q4_k::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                DType::Q6_K => rows_q6_k::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                d => unreachable!("{} is not quantized", d.name()),
                            }
                        };
                    }
                }

                fn rows(&self, r0: usize, outs: &mut [&mut [f32]]) {
                    assert_eq!(outs.len(), self.n, "one output per token");
                    assert!(r0 + outs[0].len() <= self.w.rows, "rows inside the matrix");
                    match self.w.dtype {
                        DType::Q8_0 | DType::Q4_0 | DType::I8 | DType::Q4_0X4 | DType::Q8_0X4 => {
                            self.rows16(r0, outs)
                        }
                        _ => self.rows16_k(r0, outs),
                    }
                }
            }
        }
    };
}

avx512_quant!(
    bw,
    Avx512,
    "avx512f,avx512bw,avx512vl",
    false,
    dp_bw,
    dpw_bw
);
avx512_quant!(
    vnni,
    Avx512Vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni",
    true,
    dp_vnni,
    dpw_vnni
);

#[cfg(test)]
mod tests {
    /// The 32-bit unpacking of Q4_K's scales equals the format's definition.
    #[test]
    fn q4k_scales_unpack() {
        let mut s = 0x9E37_79B9u32;
        for _ in 0..1000 {
            let bytes: [u8; 12] = std::array::from_fn(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as u8
            });
            // SAFETY: 12 readable bytes.
            let u = unsafe { super::q4k_scales(bytes.as_ptr()) };
            let b: [u8; 16] = unsafe { std::mem::transmute(u) };
            let (sc, m) = frugal_quant::q4_k::scales_mins(&bytes);
            assert_eq!(&b[..8], &sc);
            assert_eq!(&b[8..], &m);
        }
    }
}
