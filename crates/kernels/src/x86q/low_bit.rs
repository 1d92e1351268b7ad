//! AVX-512 kernels of the low-bit block types (`crate::qmat::low_bit` has their formulas and scalar
//! twins), expanded once per feature set by `avx512_quant!` (mod.rs) next to the others:
//!
//! - TQ2_0 decode: one super-block (66 bytes) per step, the bit pairs `2k` of its 64 bytes of
//!   levels against one activation register each (Q2_K's order), the `-1` as the start of the
//!   integer accumulator (the activations' `c16`, `-sum(x)` per sub-block of 16). Prefill: the
//!   levels in the activations' order in a [`super::TK`] tile of kind `K_TQ` (one scale per
//!   super-block).
//! - TQ1_0: the same with the base-3 digits in natural order, each 128-bit lane one digit of
//!   16 or 32 bytes (a multiply by `3^n` and two unsigned compares, `levels_tq1`).
//! - IQ1_S, IQ1_M: the 32 grid points of a super-block by four `vpgatherdq` of 8 (indices
//!   built in registers from `qs` and `qh`), each group's delta folded into its bytes as the
//!   unsigned level `8 * g + 9 + 8 * delta` (`0..=18`: `vpmaddubsw` cannot saturate), so a
//!   piece of 16 is `sum(level * x) - 9 * sum(x)` (the activations' `c16`) times its odd scale,
//!   Q6_K's decode shape; the `1/8` in the f32 block scale. Prefill: those levels in a
//!   [`super::TK`] tile of kind `K_Q6`.

/// The AVX-512 kernels of the low-bit types for one feature set (the arguments of
/// `avx512_quant!`).
macro_rules! avx512_low_bit {
    ($feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
        /// `R` TQ2_0 (`!ONE`) or TQ1_0 (`ONE`) rows (`nb` super-blocks each at `p[r]`) times
        /// one token (activations in the order of [`crate::qmat::q2_pos`] for TQ2_0, natural
        /// for TQ1_0; `c16 = -bsums16`).
        #[target_feature(enable = $feat)]
        unsafe fn rows_tq<const R: usize, const ONE: bool>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            let (bb, d_at) = if ONE { (54, 52) } else { (66, 64) };
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let mut acc = [_mm512_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    // Lane j starts at `-sum(x)` of sub-block j: all lanes add up to the
                    // block's `-sum(x)`.
                    let c = _mm512_loadu_si512(xb.c16.as_ptr() as *const _);
                    for r in 0..R {
                        let b = p[r].add(bb * k);
                        prefetch_lines(b, 1);
                        let q = if ONE { levels_tq1(b) } else { levels2_k(b) };
                        let mut i = c;
                        for g in 0..4 {
                            i = $dp!(i, q[g], xv[g]);
                        }
                        acc[r] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i),
                            _mm512_set1_ps(f16_at(b.add(d_at)) * xb.d),
                            acc[r],
                        );
                    }
                }
                std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
            }
        }

        /// The 256 base-3 digits (`0..3`) of one TQ1_0 super-block at `b` in natural order
        /// (register `c` holds values `64c..64c + 64`). Every 128-bit lane takes one digit
        /// `n` of 16 or 32 source bytes (`qs[0..32]`, `qs[32..48]`, or `qh` with a digit per
        /// dword): `p = q * 3^n mod 256` by `vpmullw` on the even and the odd bytes, the digit
        /// `(3p) >> 8` as `[p >= 86] + [p >= 171]`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels_tq1(b: *const u8) -> [__m512i; 4] {
            // SAFETY: the caller guarantees 54 readable bytes at b; the tables are 64 bytes.
            unsafe {
                let a = _mm512_broadcast_i64x4(_mm256_loadu_si256(b as *const __m256i));
                let s = _mm512_broadcast_i32x4(_mm_loadu_si128(b.add(32) as *const __m128i));
                let h = _mm512_set1_epi32((b.add(48) as *const i32).read_unaligned());
                let src = [
                    a,
                    a,
                    _mm512_inserti64x4::<1>(a, _mm512_castsi512_si256(s)),
                    _mm512_mask_blend_epi32(0xF000, s, h),
                ];
                let hi = _mm512_set1_epi16(0xFF00u16 as i16);
                let one = _mm512_set1_epi8(1);
                std::array::from_fn(|c| {
                    let m = _mm512_loadu_si512(MUL_TQ1[c].as_ptr() as *const _);
                    let lo = _mm512_mullo_epi16(src[c], m);
                    let odd = _mm512_mullo_epi16(_mm512_and_si512(src[c], hi), m);
                    let p = _mm512_mask_blend_epi8(0xAAAA_AAAA_AAAA_AAAA, lo, odd);
                    let t1 = _mm512_cmpge_epu8_mask(p, _mm512_set1_epi8(86));
                    let t2 = _mm512_cmpge_epu8_mask(p, _mm512_set1_epi8(171u8 as i8));
                    let t = _mm512_maskz_mov_epi8(t1, one);
                    _mm512_mask_add_epi8(t, t2, t, one)
                })
            }
        }

        /// The 256 digits of one TQ1_0 super-block at `b` in natural order.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels_tq1_0(b: *const u8, out: &mut [u8; 256]) {
            // SAFETY: the caller guarantees 54 readable bytes at b; out is 256 bytes.
            unsafe {
                for (k, q) in levels_tq1(b).into_iter().enumerate() {
                    _mm512_storeu_si512(out.as_mut_ptr().add(64 * k) as *mut _, q);
                }
            }
        }

        /// The 256 levels `q` (`0..4`) of one TQ2_0 super-block at `b` in the activations'
        /// order (Q2_K's, [`crate::qmat::q2_pos`]).
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels_tq2_0(b: *const u8, out: &mut [u8; 256]) {
            // SAFETY: the caller guarantees 66 readable bytes at b; out is 256 bytes.
            unsafe {
                for (k, q) in levels2_k(b).into_iter().enumerate() {
                    _mm512_storeu_si512(out.as_mut_ptr().add(64 * k) as *mut _, q);
                }
            }
        }

        /// The levels `8 * g + 9 + 8 * delta` (`0..=18`) of one IQ1_S (`!M`, 50 bytes) or
        /// IQ1_M (`M`, 56 bytes) super-block at `b` in natural order (register `c` holds
        /// values `64c..64c + 64`), the 16 scales of its pieces of 16 (odd, `1..16`) as i16,
        /// and its f32 scale `d`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn iq1_unpack<const M: bool>(b: *const u8) -> ([__m512i; 4], __m256i, f32) {
            // SAFETY: the caller guarantees a whole block (50 or 56 bytes) at b.
            unsafe {
                let (qs_at, qh_at) = if M { (0, 32) } else { (2, 34) };
                // Group `l` of a register: its high index bits and the sign bit of its
                // delta in the 32 bits of `qh` that cover the register's 8 groups.
                let (sh, sg) = if M {
                    (
                        _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28),
                        _mm256_setr_epi32(
                            8,
                            8 << 4,
                            8 << 8,
                            8 << 12,
                            8 << 16,
                            8 << 20,
                            8 << 24,
                            8 << 28,
                        ),
                    )
                } else {
                    let s = 0x8000;
                    let t = 0x8000_0000u32 as i32;
                    (
                        _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25),
                        _mm256_setr_epi32(s, s, s, s, t, t, t, t),
                    )
                };
                let m7 = _mm256_set1_epi32(7);
                let one = _mm512_set1_epi8(1);
                let two = _mm512_set1_epi8(2);
                let grid = IQ1S_GRID.as_ptr() as *const i64;
                let q: [__m512i; 4] = std::array::from_fn(|c| {
                    let lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        b.add(qs_at + 8 * c) as *const __m128i
                    ));
                    let qh =
                        _mm256_set1_epi32((b.add(qh_at + 4 * c) as *const i32).read_unaligned());
                    let hi = _mm256_and_si256(_mm256_srlv_epi32(qh, sh), m7);
                    let idx = _mm256_or_si256(lo, _mm256_slli_epi32::<8>(hi));
                    let neg = _mm256_test_epi32_mask(qh, sg);
                    let g = _mm512_i32gather_epi64::<8>(idx, grid);
                    let u = _mm512_slli_epi16::<3>(_mm512_add_epi8(g, one));
                    _mm512_add_epi8(u, _mm512_maskz_mov_epi64(!neg, two))
                });
                let m7w = _mm256_set1_epi16(7);
                let (ls, d) = if M {
                    let w = (b.add(48) as *const [u16; 4]).read_unaligned();
                    let v = _mm256_set1_epi64x((b.add(48) as *const i64).read_unaligned());
                    let v = _mm256_permutexvar_epi16(
                        _mm256_loadu_si256(IDX_IQ1M_SC.as_ptr() as *const __m256i),
                        v,
                    );
                    let v = _mm256_srlv_epi16(
                        v,
                        _mm256_loadu_si256(SH_IQ1M_SC.as_ptr() as *const __m256i),
                    );
                    let bits = (w[0] >> 12)
                        | ((w[1] >> 8) & 0x00f0)
                        | ((w[2] >> 4) & 0x0f00)
                        | (w[3] & 0xf000);
                    let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)));
                    (_mm256_and_si256(v, m7w), d)
                } else {
                    let v = _mm_loadu_si128(b.add(34) as *const __m128i);
                    let v = _mm_and_si128(_mm_srli_epi16::<12>(v), _mm_set1_epi16(7));
                    let v = _mm256_set_m128i(_mm_unpackhi_epi16(v, v), _mm_unpacklo_epi16(v, v));
                    (v, f16_at(b))
                };
                let ls = _mm256_or_si256(_mm256_slli_epi16::<1>(ls), _mm256_set1_epi16(1));
                (q, ls, d)
            }
        }

        /// `R` IQ1_S (`!M`) or IQ1_M (`M`) rows (`nb` super-blocks each at `p[r]`) times one
        /// token (activations in natural order, `c16 = -9 * bsums16`), as [`rows_q6_k`].
        #[target_feature(enable = $feat)]
        unsafe fn rows_iq1<const R: usize, const M: bool>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            let bb = if M { 56 } else { 50 };
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let idx: [__m512i; 4] =
                    std::array::from_fn(|i| _mm512_loadu_si512(IDX_Q6K_SC[i].as_ptr() as *const _));
                let mut acc = [_mm512_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    let bs = _mm256_loadu_si256(xb.bsums16.as_ptr() as *const __m256i);
                    for r in 0..R {
                        let b = p[r].add(bb * k);
                        prefetch_lines(b, 1);
                        let (q, sc16, d) = iq1_unpack::<M>(b);
                        let sc512 = _mm512_castsi256_si512(sc16);
                        let mut i = _mm512_setzero_si512();
                        for g in 0..4 {
                            let sg = _mm512_permutexvar_epi16(idx[g], sc512);
                            i = $dpw!(i, _mm512_maddubs_epi16(q[g], xv[g]), sg);
                        }
                        // `-9 * sum_j ls_j * sum(x)_j`.
                        let c =
                            _mm256_mullo_epi32(_mm256_madd_epi16(sc16, bs), _mm256_set1_epi32(9));
                        i = _mm512_sub_epi32(i, _mm512_zextsi256_si512(c));
                        acc[r] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i),
                            _mm512_set1_ps(d * xb.d * 0.125),
                            acc[r],
                        );
                    }
                }
                std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
            }
        }
    };
}
