//! The AVX2 kernels of the quantized products (`vpmaddubsw` with the sign trick; every block
//! type), for CPUs without AVX-512: one row at a time, its blocks unpacked once per group of up
//! to 4 tokens (register tiles of 1 row x 4 tokens), for decode and prefill alike. A file of
//! their own: they share only the activation layouts and `mod.rs`'s checks and Q4_K scale
//! unpacking with the AVX-512 kernels.

use super::{check_job, q4k_scales};
use crate::qmat::{k_pos, QActs, QJob, AK, B32};
use crate::x86::Avx2;
use crate::{DType, MatRef};
use std::arch::x86_64::*;

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

/// One-row tiles of up to 4 tokens on AVX2, every dtype.
pub(super) struct Avx2Job<'a> {
    pub(super) _k: Avx2,
    pub(super) w: &'a MatRef<'a>,
    pub(super) a: QActs,
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
