//! Decode (one token) on AVX-512: each row of the file's (GGUF) blocks is streamed once, in
//! place, with few operations per byte:
//!
//! - Q4_0: 4 blocks (72 bytes) per step. One 64-byte load and one 8-byte load cover them;
//!   `vpermt2w` gathers their 64 nibble bytes into one register and their four f16 scales,
//!   each repeated over the block's four lanes, into another. Low nibbles meet the first halves
//!   of the four activation blocks, high nibbles the second halves
//!   ([`crate::qmat::A4Group`]); the `-8` is the activation lane's precomputed `-8 * sum(x)`,
//!   the start of the `vpdpbusd` accumulation. Two f32 accumulators alternate between steps.
//! - Q5_0, Q4_1, Q5_1, IQ4_NL, MXFP4 (`rows_g4`): the same 4-block steps in the same
//!   activation layout, each type's lane correction precomputed there. Q5_0/Q5_1: the fifth
//!   bits, gathered by a `vpermt2w`, added to the nibbles as byte masks. Q4_1/Q5_1: unsigned
//!   levels, plus the min times the lane's activation sum. IQ4_NL/MXFP4: levels looked up by
//!   `vpshufb` in the type's int8 table (VNNI: made unsigned, `k ^ 0x80`, corrected by
//!   `-128 * sum(x)`; AVX-512BW: `|k|` times `x` with `k`'s sign); MXFP4's 17-byte blocks by
//!   four 16-byte loads, its E8M0 scales applied by `vscalefps`.
//! - Q8_0: 4 blocks (136 bytes) per step, two per register; the scales by one `vpermt2w` from
//!   two 64-byte loads. VNNI: weights made unsigned by `^ 0x80`, corrected by the lane's
//!   `-128 * sum(x)`; AVX-512BW: `|w|` times `x` with `w`'s sign.
//! - Q4_K, Q6_K: one super-block (256 values) per step; `vpmaddubsw` products (`q` unsigned)
//!   weighted by the sub-block scales with `vpdpwssd` (`vpmaddwd` + add without VNNI); Q4_K's
//!   mins and Q6_K's `-32` through the activations' per-sub-block sums.
//! - Q5_K: Q4_K's, the fifth bits added by byte masks (`vptestmb` of `qh` against the bit
//!   of each group's sub-blocks). Q3_K, Q2_K: as Q6_K's, the bit pairs `2k` of one 64-byte
//!   load of levels against one activation register each (constant shifts), Q3_K's `hmask`
//!   bits added by byte masks and its `-4` through the sub-block sums, Q2_K's mins through
//!   them. IQ4_XS: `vpshufb` of the nibbles into `|v|` of
//!   the IQ4_NL table, the activations negated where `v < 0` (nibbles below 8) so that
//!   `vpmaddubsw` cannot saturate; sub-block scales by `vpdpwssd`.
//! - Long rows (the activation layout past 16 KB, e.g. the MLP down projection): 4 adjacent
//!   rows per pass, so each activation load, from L2 at that size, serves 4 rows.
//!
//! Every row is prefetched a page ahead ([`super::tables::PREFETCH`]). The kernels are in
//! `avx512_decode!`, which `avx512_quant!` (mod.rs) expands once per feature set; the job's
//! `matvec` there picks one per row. The x4 layouts' decode is in `x4.rs`.

/// The AVX-512 decode kernels of one feature set (the arguments of `avx512_quant!`): one row,
/// or `R` rows sharing each activation load, times one token.
macro_rules! avx512_decode {
    ($feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
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
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw[h], dx), *acc);
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
                    std::ptr::copy_nonoverlapping(p.add(136 * ng), buf.as_mut_ptr(), 34 * (nb % 4));
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
                    acc[h] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw[h], dx), acc[h]);
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
                    std::ptr::copy_nonoverlapping(p.add(72 * ng), buf.as_mut_ptr(), 18 * (nb % 4));
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

        /// Adds the fifth bits of 4 Q5_0 or Q5_1 blocks to their nibbles `lo` and `hi`
        /// (block `k`'s bytes `16k..16k + 16`): `qh` holds the low halves of the blocks' `qh`
        /// (bits `0..16`, those of the low nibbles) in its first 64 bits, the high halves in
        /// the next 64, each a byte mask over the nibble registers.
        #[inline]
        #[target_feature(enable = $feat)]
        fn add_fifth_bits(lo: __m512i, hi: __m512i, qh: __m128i) -> (__m512i, __m512i) {
            let b5 = _mm512_set1_epi8(0x10);
            let mlo = _mm_cvtsi128_si64(qh) as u64;
            let mhi = _mm_extract_epi64::<1>(qh) as u64;
            (
                _mm512_mask_add_epi8(lo, mlo, lo, b5),
                _mm512_mask_add_epi8(hi, mhi, hi, b5),
            )
        }

        /// The low and high nibbles of `nib` as bytes.
        #[inline]
        #[target_feature(enable = $feat)]
        fn split_nibbles(nib: __m512i) -> (__m512i, __m512i) {
            let m4 = _mm512_set1_epi8(0x0F);
            (
                _mm512_and_si512(nib, m4),
                _mm512_and_si512(_mm512_srli_epi16::<4>(nib), m4),
            )
        }

        /// The first and second halves of the activation blocks of a group.
        #[inline]
        #[target_feature(enable = $feat)]
        fn group_qs(a: &A4Group) -> (__m512i, __m512i) {
            // SAFETY: qs is 128 bytes, 64-byte aligned.
            unsafe {
                (
                    _mm512_load_si512(a.qs.as_ptr() as *const _),
                    _mm512_load_si512(a.qs.as_ptr().add(64) as *const _),
                )
            }
        }

        /// Q5_0 times one [`A4Group`] (built with the `-16` correction): 4 blocks (88 bytes
        /// at `p`) into `acc`. As [`step_q4_0`], with the fifth bit added to each level.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn step_q5_0(p: *const u8, a: &A4Group, c: &[__m512i; 4], acc: &mut __m512) {
            // SAFETY: the caller guarantees 88 readable bytes at p.
            unsafe {
                let w0 = _mm512_loadu_si512(p as *const _);
                // Bytes 64..88 (words 32..44): a masked load reads only those 24 bytes.
                let w1 = _mm512_maskz_loadu_epi8((1u64 << 24) - 1, p.add(64) as *const i8);
                let nib = _mm512_permutex2var_epi16(w0, c[0], w1);
                // The scales, then the fifth bits (words 16..24).
                let dh = _mm512_permutex2var_epi16(w0, c[1], w1);
                let dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
                let (lo, hi) = split_nibbles(nib);
                let (lo, hi) = add_fifth_bits(lo, hi, _mm512_extracti32x4_epi32::<2>(dh));
                let corr = _mm512_load_si512(a.corr.as_ptr() as *const _);
                let (xlo, xhi) = group_qs(a);
                let i = $dp!($dp!(corr, lo, xlo), hi, xhi);
                let dx = _mm512_load_ps(a.d.as_ptr());
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw, dx), *acc);
            }
        }

        /// Q4_1 (`Q5`: Q5_1) times one [`A4Group`] (built with the plain lane sums): 4
        /// blocks (80 bytes, Q5_1 96, at `p`) into `acc`. The unsigned levels' integer
        /// products, scaled per lane by `d`, plus the lane's activation sum scaled by `m`,
        /// both by `dx`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn step_q4_1<const Q5: bool>(
            p: *const u8,
            a: &A4Group,
            c: &[__m512i; 4],
            acc: &mut __m512,
        ) {
            // SAFETY: the caller guarantees 80 (Q5: 96) readable bytes at p.
            unsafe {
                let w0 = _mm512_loadu_si512(p as *const _);
                let w1 = if Q5 {
                    _mm512_zextsi256_si512(_mm256_loadu_si256(p.add(64) as *const __m256i))
                } else {
                    _mm512_zextsi128_si512(_mm_loadu_si128(p.add(64) as *const __m128i))
                };
                let nib = _mm512_permutex2var_epi16(w0, c[0], w1);
                let dm = _mm512_permutex2var_epi16(w0, c[1], w1);
                let (mut lo, mut hi) = split_nibbles(nib);
                if Q5 {
                    let qh = _mm512_permutex2var_epi16(w0, c[2], w1);
                    (lo, hi) = add_fifth_bits(lo, hi, _mm512_castsi512_si128(qh));
                }
                let (xlo, xhi) = group_qs(a);
                let i = $dp!($dp!(_mm512_setzero_si512(), lo, xlo), hi, xhi);
                let dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dm));
                let mw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(dm));
                let s = _mm512_cvtepi32_ps(_mm512_load_si512(a.corr.as_ptr() as *const _));
                let f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), dw, _mm512_mul_ps(s, mw));
                let dx = _mm512_load_ps(a.d.as_ptr());
                *acc = _mm512_fmadd_ps(f, dx, *acc);
            }
        }

        /// The products of 64 levels of a table with 64 activations `x`, added to `i` per
        /// 32-bit lane: the levels are `tab` (the type's 16 int8 levels in every 128-bit lane)
        /// looked up by the nibbles `q`. With VNNI `tab` holds the levels made unsigned,
        /// `k ^ 0x80 = k + 128` (the caller's start `i` holds the `-128 * sum(x)` that
        /// corrects it); without it `|k|` meets `x` with the sign of `k`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn dot_lut(i: __m512i, q: __m512i, x: __m512i, tab: __m512i) -> __m512i {
            let k = _mm512_shuffle_epi8(tab, q);
            if $vnni {
                $dp!(i, k, x)
            } else {
                let neg = _mm512_movepi8_mask(k);
                let s = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
                $dp!(i, _mm512_abs_epi8(k), s)
            }
        }

        /// The integer products of 4 table blocks' nibbles `nib` (16 bytes per block) with
        /// one [`A4Group`] (built with the `-128` correction, which only VNNI uses), per lane.
        #[inline]
        #[target_feature(enable = $feat)]
        fn lut_group(nib: __m512i, a: &A4Group, tab: __m512i) -> __m512i {
            let (lo, hi) = split_nibbles(nib);
            let (xlo, xhi) = group_qs(a);
            let i = if $vnni {
                // SAFETY: corr is 64 bytes, 64-byte aligned.
                unsafe { _mm512_load_si512(a.corr.as_ptr() as *const _) }
            } else {
                _mm512_setzero_si512()
            };
            dot_lut(dot_lut(i, lo, xlo, tab), hi, xhi, tab)
        }

        /// IQ4_NL times one [`A4Group`]: 4 blocks (72 bytes at `p`, Q4_0's layout) into
        /// `acc`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn step_iq4_nl(p: *const u8, a: &A4Group, c: &[__m512i; 4], acc: &mut __m512) {
            // SAFETY: the caller guarantees 72 readable bytes at p.
            unsafe {
                let w0 = _mm512_loadu_si512(p as *const _);
                let w1 = _mm512_zextsi128_si512(_mm_loadl_epi64(p.add(64) as *const __m128i));
                let nib = _mm512_permutex2var_epi16(w0, c[0], w1);
                let dh = _mm512_permutex2var_epi16(w0, c[1], w1);
                let dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dh));
                let i = lut_group(nib, a, c[2]);
                let dx = _mm512_load_ps(a.d.as_ptr());
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw, dx), *acc);
            }
        }

        /// `x` times ggml's `GGML_E8M0_TO_FP32_HALF` of the exponent bytes `e` (zero-extended
        /// dwords), `2^(e - 128)`, rounded once: the same f32 as the product with the exact
        /// power of two, for every byte.
        #[inline]
        #[target_feature(enable = $feat)]
        fn scale_e8m0(x: __m512, e: __m512i) -> __m512 {
            let p = _mm512_cvtepi32_ps(_mm512_sub_epi32(e, _mm512_set1_epi32(128)));
            _mm512_scalef_ps(x, p)
        }

        /// ggml's `GGML_E8M0_TO_FP32_HALF` of exponent bytes `e` (zero-extended dwords):
        /// `2^(e - 128)`, exact for every byte (subnormal for `e < 2`).
        #[inline]
        #[target_feature(enable = $feat)]
        pub(super) fn e8m0_half(e: __m512i) -> __m512 {
            scale_e8m0(_mm512_set1_ps(1.0), e)
        }

        /// MXFP4 times one [`A4Group`]: 4 blocks (68 bytes at `p`) into `acc`. The blocks'
        /// nibbles and their exponents gathered by byte shuffles.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn step_mxfp4(p: *const u8, a: &A4Group, c: &[__m512i; 4], acc: &mut __m512) {
            // SAFETY: the caller guarantees 68 readable bytes at p.
            unsafe {
                let w0 = _mm512_loadu_si512(p as *const _);
                // Bytes 64..68: a masked load reads only those 4.
                let w1 = _mm512_maskz_loadu_epi8(0xF, p.add(64) as *const i8);
                // Block k's nibbles, bytes 17k + 1..17k + 17, start in 128-bit lane k at
                // byte k + 1 and end in lane k + 1: each part by a byte shuffle, of the group
                // and of the group moved down by one lane.
                let next = _mm512_alignr_epi32::<4>(w1, w0);
                let nib = _mm512_shuffle_epi8(w0, c[1]);
                let nib = _mm512_mask_shuffle_epi8(nib, MX_NEXT_LANE, next, c[2]);
                let i = lut_group(nib, a, c[3]);
                let dx = _mm512_load_ps(a.d.as_ptr());
                let s = scale_e8m0(dx, _mm512_shuffle_epi8(w0, c[0]));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, *acc);
            }
        }

        /// The 16 int8 levels `t` in every 128-bit lane, made unsigned (`^ 0x80`) with VNNI
        /// (see [`dot_lut`]).
        #[inline]
        #[target_feature(enable = $feat)]
        fn lut(t: &[i8; 16]) -> __m512i {
            // SAFETY: t is 16 bytes.
            let v = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(t.as_ptr() as *const _) });
            if $vnni {
                _mm512_xor_si512(v, _mm512_set1_epi8(-128))
            } else {
                v
            }
        }

        /// 32 word indices in a register.
        #[inline]
        #[target_feature(enable = $feat)]
        fn idx_words(t: &[i16; 32]) -> __m512i {
            // SAFETY: t is 64 bytes.
            unsafe { _mm512_loadu_si512(t.as_ptr() as *const _) }
        }

        /// 64 byte-shuffle controls in a register.
        #[inline]
        #[target_feature(enable = $feat)]
        fn shuf_bytes(t: &[i8; 64]) -> __m512i {
            // SAFETY: t is 64 bytes.
            unsafe { _mm512_loadu_si512(t.as_ptr() as *const _) }
        }

        /// The constants of [`step_g4`] for the type `K`: its permutation indices or shuffle
        /// controls, and for the table types the table ([`lut`]).
        #[inline]
        #[target_feature(enable = $feat)]
        fn consts_g4<const K: u8>() -> [__m512i; 4] {
            let ld = idx_words;
            let z = _mm512_setzero_si512();
            let sh = shuf_bytes;
            match K {
                G_Q5_0 => [ld(&IDX_Q5_NIB), ld(&IDX_Q5_D), z, z],
                G_Q4_1 => [ld(&IDX_Q41_NIB), ld(&IDX_Q41_DM), z, z],
                G_Q5_1 => [ld(&IDX_Q51_NIB), ld(&IDX_Q51_DM), ld(&IDX_Q51_QH), z],
                G_IQ4_NL => [ld(&IDX_Q4_NIB), ld(&IDX_Q4_D), lut(&KVALUES_IQ4NL), z],
                _ => [
                    sh(&SHUF_MX_E),
                    sh(&SHUF_MX_NIB[0]),
                    sh(&SHUF_MX_NIB[1]),
                    lut(&KVALUES_FP4),
                ],
            }
        }

        /// One step of [`rows_g4`]: 4 blocks of the type `K` at `p` times one [`A4Group`]
        /// into `acc`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn step_g4<const K: u8>(
            p: *const u8,
            a: &A4Group,
            c: &[__m512i; 4],
            acc: &mut __m512,
        ) {
            // SAFETY: the caller guarantees 4 blocks of the type at p.
            unsafe {
                match K {
                    G_Q5_0 => step_q5_0(p, a, c, acc),
                    G_Q4_1 => step_q4_1::<false>(p, a, c, acc),
                    G_Q5_1 => step_q4_1::<true>(p, a, c, acc),
                    G_IQ4_NL => step_iq4_nl(p, a, c, acc),
                    _ => step_mxfp4(p, a, c, acc),
                }
            }
        }

        /// `R` rows of the block type `K` ([`g4_block_bytes`]; `nb` blocks each at `p[r]`)
        /// times one token in the [`A4Group`] layout, 4 blocks per step, each group of
        /// activations used for all `R` rows; two accumulators alternate between steps.
        #[target_feature(enable = $feat)]
        unsafe fn rows_g4<const K: u8, const R: usize>(
            p: [*const u8; R],
            nb: usize,
            a: &[A4Group],
        ) -> [f32; R] {
            let bb = g4_block_bytes(K);
            // SAFETY: the caller guarantees every row's `nb` blocks; `a` has a group per 4
            // blocks (checked), and the tail group is copied into a zeroed buffer first.
            unsafe {
                assert_eq!(a.len(), nb.div_ceil(4), "activation groups");
                let c = consts_g4::<K>();
                let mut acc = [[_mm512_setzero_ps(); 2]; R];
                let ng = nb / 4;
                // Pairs of groups, one accumulator each (indexed by constants, so that they
                // stay in registers).
                let mut g = 0;
                while g + 2 <= ng {
                    for r in 0..R {
                        let pg = p[r].add(4 * bb * g);
                        prefetch_lines(pg, 3);
                        step_g4::<K>(pg, &a[g], &c, &mut acc[r][0]);
                        step_g4::<K>(pg.add(4 * bb), &a[g + 1], &c, &mut acc[r][1]);
                    }
                    g += 2;
                }
                if g < ng {
                    for r in 0..R {
                        step_g4::<K>(p[r].add(4 * bb * g), &a[g], &c, &mut acc[r][0]);
                    }
                }
                if nb % 4 != 0 {
                    for r in 0..R {
                        let mut buf = [0u8; 4 * G4_MAX_BYTES];
                        std::ptr::copy_nonoverlapping(
                            p[r].add(4 * bb * ng),
                            buf.as_mut_ptr(),
                            bb * (nb % 4),
                        );
                        step_g4::<K>(buf.as_ptr(), &a[ng], &c, &mut acc[r][1]);
                    }
                }
                acc.map(|a| _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1])))
            }
        }

        /// [`rows_g4`] for `dtype`, one of the types it multiplies ([`g4_kind`]).
        #[target_feature(enable = $feat)]
        unsafe fn rows_g4_of<const R: usize>(
            dtype: DType,
            p: [*const u8; R],
            nb: usize,
            a: &[A4Group],
        ) -> [f32; R] {
            // SAFETY: the caller's guarantees, passed on.
            unsafe {
                match g4_kind(dtype) {
                    Some(G_Q5_0) => rows_g4::<G_Q5_0, R>(p, nb, a),
                    Some(G_Q4_1) => rows_g4::<G_Q4_1, R>(p, nb, a),
                    Some(G_Q5_1) => rows_g4::<G_Q5_1, R>(p, nb, a),
                    Some(G_IQ4_NL) => rows_g4::<G_IQ4_NL, R>(p, nb, a),
                    Some(G_MXFP4) => rows_g4::<G_MXFP4, R>(p, nb, a),
                    _ => unreachable!("{} has no 4-block decode kernel", dtype.name()),
                }
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
                let idx: [__m512i; 4] =
                    std::array::from_fn(
                        |i| _mm512_loadu_si512(SHUF_Q4K_SC[i].as_ptr() as *const _),
                    );
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
                let idx: [__m512i; 4] =
                    std::array::from_fn(|i| _mm512_loadu_si512(IDX_Q6K_SC[i].as_ptr() as *const _));
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

        /// `R` Q5_K rows (`nb` super-blocks each at `p[r]`) times one token, as
        /// [`rows_q4_k`] with the fifth bits.
        #[target_feature(enable = $feat)]
        unsafe fn rows_q5_k<const R: usize>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let m4 = _mm512_set1_epi8(0x0F);
                let b5 = _mm512_set1_epi8(0x10);
                let idx: [__m512i; 4] =
                    std::array::from_fn(
                        |i| _mm512_loadu_si512(SHUF_Q4K_SC[i].as_ptr() as *const _),
                    );
                let hb: [__m512i; 4] =
                    std::array::from_fn(|i| _mm512_loadu_si512(Q5K_HBITS[i].as_ptr() as *const _));
                let mut acc = [_mm512_setzero_ps(); R];
                let mut accm = [_mm_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    let bs = _mm_loadu_si128(xb.bsums32.as_ptr() as *const __m128i);
                    for r in 0..R {
                        let b = p[r].add(176 * k);
                        prefetch_lines(b, 3);
                        let (sm, dd) = q4k_head(b, xb.d);
                        let mins = _mm_cvtepu8_epi16(_mm_srli_si128::<8>(sm));
                        let sb = _mm512_broadcast_i32x4(sm);
                        let qh =
                            _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(16) as *const __m256i));
                        let v0 = _mm512_loadu_si512(b.add(48) as *const _);
                        let v1 = _mm512_loadu_si512(b.add(112) as *const _);
                        let q = [
                            _mm512_and_si512(v0, m4),
                            _mm512_and_si512(_mm512_srli_epi16::<4>(v0), m4),
                            _mm512_and_si512(v1, m4),
                            _mm512_and_si512(_mm512_srli_epi16::<4>(v1), m4),
                        ];
                        let mut i = _mm512_setzero_si512();
                        for g in 0..4 {
                            let q5 = _mm512_mask_add_epi8(
                                q[g],
                                _mm512_test_epi8_mask(qh, hb[g]),
                                q[g],
                                b5,
                            );
                            let sg = _mm512_shuffle_epi8(sb, idx[g]);
                            i = $dpw!(i, _mm512_maddubs_epi16(q5, xv[g]), sg);
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

        /// The 256 2-bit levels of a Q2_K or Q3_K block's 64 bytes at `qs`, in natural order
        /// (chunk `c` of 64 values in `q[c]`): per half of 128 one 32-byte load in both
        /// 256-bit halves, shifted by 0 and 2 (chunk `2h`), 4 and 6 (chunk `2h + 1`).
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels2(qs: *const u8, sh: &[__m512i; 2]) -> [__m512i; 4] {
            // SAFETY: the caller guarantees 64 readable bytes at qs.
            unsafe {
                let m3 = _mm512_set1_epi8(3);
                let h = [0, 1].map(|h| {
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(qs.add(32 * h) as *const __m256i))
                });
                std::array::from_fn(|c| {
                    _mm512_and_si512(_mm512_srlv_epi16(h[c / 2], sh[c % 2]), m3)
                })
            }
        }

        /// The four registers of 2-bit levels of a Q2_K or Q3_K block's 64 bytes at `qs` in
        /// the activations' order ([`crate::qmat::q2_pos`]): bit pairs `2k` in register `k`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels2_k(qs: *const u8) -> [__m512i; 4] {
            // SAFETY: the caller guarantees 64 readable bytes at qs.
            unsafe {
                let m3 = _mm512_set1_epi8(3);
                let v = _mm512_loadu_si512(qs as *const _);
                [
                    _mm512_and_si512(v, m3),
                    _mm512_and_si512(_mm512_srli_epi16::<2>(v), m3),
                    _mm512_and_si512(_mm512_srli_epi16::<4>(v), m3),
                    _mm512_and_si512(_mm512_srli_epi16::<6>(v), m3),
                ]
            }
        }

        /// The sixteen 6-bit scales of a Q3_K block less 32, as signed bytes, from its 12
        /// packed bytes at `s` (as llama.cpp unpacks them with 32-bit masks): low nibbles
        /// from dwords 0-1 (scales 0..8) and their high nibbles (8..16), the high 2 bits from
        /// dword 2 shifted by 0, 2, 4, 6 for the four groups of 4.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn q3k_scales(s: *const u8) -> __m128i {
            // SAFETY: the caller guarantees 12 readable bytes at s.
            unsafe {
                let u: [u32; 3] = (s as *const [u32; 3]).read_unaligned();
                let v = _mm_set_epi32(0, u[2] as i32, u[1] as i32, u[0] as i32);
                let a = _mm_shuffle_epi32::<0b01_00_01_00>(v); // [u0, u1, u0, u1]
                let lo = _mm_and_si128(
                    _mm_srlv_epi32(a, _mm_set_epi32(4, 4, 0, 0)),
                    _mm_set1_epi8(0x0F),
                );
                let t = _mm_shuffle_epi32::<0b10_10_10_10>(v); // [u2; 4]
                let hi = _mm_slli_epi32::<4>(_mm_and_si128(
                    _mm_srlv_epi32(t, _mm_set_epi32(6, 4, 2, 0)),
                    _mm_set1_epi8(3),
                ));
                _mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32))
            }
        }

        /// `R` Q3_K rows (`nb` super-blocks each at `p[r]`) times one token (activations in
        /// the order of [`crate::qmat::q2_pos`]), as [`rows_q6_k`]: levels `q | 4h` in `0..8`,
        /// the `-4` through the sub-block sums.
        #[target_feature(enable = $feat)]
        unsafe fn rows_q3_k<const R: usize>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let b3 = _mm512_set1_epi8(4);
                let idx: [__m512i; 4] =
                    std::array::from_fn(
                        |i| _mm512_loadu_si512(SHUF_Q2K_SC[i].as_ptr() as *const _),
                    );
                let hb: [__m512i; 4] =
                    std::array::from_fn(|i| _mm512_loadu_si512(Q3K_HBITS[i].as_ptr() as *const _));
                let mut acc = [_mm512_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    let bs = _mm256_loadu_si256(xb.bsums16.as_ptr() as *const __m256i);
                    for r in 0..R {
                        let b = p[r].add(110 * k);
                        prefetch_lines(b, 2);
                        let d = f16_at(b.add(108));
                        let sc16 = _mm256_cvtepi8_epi16(q3k_scales(b.add(96)));
                        let sc512 = _mm512_castsi256_si512(sc16);
                        let sc4 = _mm512_shuffle_i64x2::<0b01_01_00_00>(sc512, sc512);
                        let hm = _mm512_broadcast_i64x4(_mm256_loadu_si256(b as *const __m256i));
                        let q = levels2_k(b.add(32));
                        let mut i = _mm512_setzero_si512();
                        for g in 0..4 {
                            let q3 = _mm512_mask_add_epi8(
                                q[g],
                                _mm512_test_epi8_mask(hm, hb[g]),
                                q[g],
                                b3,
                            );
                            let sg = _mm512_shuffle_epi8(sc4, idx[g]);
                            i = $dpw!(i, _mm512_maddubs_epi16(q3, xv[g]), sg);
                        }
                        let c = _mm256_slli_epi32::<2>(_mm256_madd_epi16(sc16, bs));
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

        /// `R` Q2_K rows (`nb` super-blocks each at `p[r]`) times one token (activations in
        /// the order of [`crate::qmat::q2_pos`]), as [`rows_q6_k`]: levels in `0..4`, the
        /// mins through the sub-block sums.
        #[target_feature(enable = $feat)]
        unsafe fn rows_q2_k<const R: usize>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let idx: [__m512i; 4] =
                    std::array::from_fn(
                        |i| _mm512_loadu_si512(SHUF_Q2K_SC[i].as_ptr() as *const _),
                    );
                let m4 = _mm256_set1_epi16(0x0F);
                let mut acc = [_mm512_setzero_ps(); R];
                let mut accm = [_mm256_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    let bs = _mm256_loadu_si256(xb.bsums16.as_ptr() as *const __m256i);
                    for r in 0..R {
                        let b = p[r].add(84 * k);
                        prefetch_lines(b, 2);
                        let s16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(b as *const __m128i));
                        let sc512 = _mm512_castsi256_si512(_mm256_and_si256(s16, m4));
                        let sc4 = _mm512_shuffle_i64x2::<0b01_01_00_00>(sc512, sc512);
                        let mins = _mm256_srli_epi16::<4>(s16);
                        // [d, dmin] * dx in lanes 0 and 1.
                        let dd = _mm_mul_ps(
                            _mm_cvtph_ps(_mm_cvtsi32_si128(
                                (b.add(80) as *const i32).read_unaligned(),
                            )),
                            _mm_set1_ps(xb.d),
                        );
                        let q = levels2_k(b.add(16));
                        let mut i = _mm512_setzero_si512();
                        for g in 0..4 {
                            let sg = _mm512_shuffle_epi8(sc4, idx[g]);
                            i = $dpw!(i, _mm512_maddubs_epi16(q[g], xv[g]), sg);
                        }
                        acc[r] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i),
                            _mm512_broadcastss_ps(dd),
                            acc[r],
                        );
                        let m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bs));
                        let dm = _mm256_broadcastss_ps(_mm_permute_ps::<0b01_01_01_01>(dd));
                        accm[r] = _mm256_fmadd_ps(m, dm, accm[r]);
                    }
                }
                std::array::from_fn(|r| {
                    let m = _mm_add_ps(
                        _mm256_castps256_ps128(accm[r]),
                        _mm256_extractf128_ps::<1>(accm[r]),
                    );
                    _mm512_reduce_add_ps(acc[r]) - hsum4(m)
                })
            }
        }

        /// The eight sub-block scales of an IQ4_XS block at `b` less 32, as i16: low nibbles
        /// of `scales_l` (4 bytes at `b + 4`), high 2 bits from `scales_h` (`b + 2`).
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn iq4xs_scales(b: *const u8) -> __m128i {
            // SAFETY: the caller guarantees 8 readable bytes at b.
            unsafe {
                let sh = (b.add(2) as *const u16).read_unaligned();
                let sl = _mm_cvtsi32_si128((b.add(4) as *const i32).read_unaligned());
                let m4 = _mm_set1_epi8(0x0F);
                let lo = _mm_cvtepu8_epi16(_mm_unpacklo_epi8(
                    _mm_and_si128(sl, m4),
                    _mm_and_si128(_mm_srli_epi16::<4>(sl), m4),
                ));
                let hi = _mm_srlv_epi16(
                    _mm_set1_epi16(sh as i16),
                    _mm_set_epi16(14, 12, 10, 8, 6, 4, 2, 0),
                );
                let hi = _mm_slli_epi16::<4>(_mm_and_si128(hi, _mm_set1_epi16(3)));
                _mm_sub_epi16(_mm_or_si128(lo, hi), _mm_set1_epi16(32))
            }
        }

        /// `R` IQ4_XS rows (`nb` super-blocks each at `p[r]`) times one token (activations
        /// in the order of [`crate::qmat::iq4_pos`]): 64 bytes of nibbles per half, low and
        /// high nibbles against one activation register each.
        #[target_feature(enable = $feat)]
        unsafe fn rows_iq4_xs<const R: usize>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let m4 = _mm512_set1_epi8(0x0F);
                let b8 = _mm512_set1_epi8(8);
                let zero = _mm512_setzero_si512();
                let tbl = _mm512_loadu_si512(IQ4_ABS.as_ptr() as *const _);
                let idx: [__m512i; 2] =
                    std::array::from_fn(
                        |i| _mm512_loadu_si512(SHUF_IQ4_SC[i].as_ptr() as *const _),
                    );
                let mut acc = [_mm512_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    for r in 0..R {
                        let b = p[r].add(136 * k);
                        prefetch_lines(b, 3);
                        let d = f16_at(b);
                        let sc4 = _mm512_broadcast_i32x4(iq4xs_scales(b));
                        let mut i = _mm512_setzero_si512();
                        for h in 0..2 {
                            let v = _mm512_loadu_si512(b.add(8 + 64 * h) as *const _);
                            // Sub-blocks 4h..4h + 4: 8 words each in both nibble registers.
                            let sg = _mm512_shuffle_epi8(sc4, idx[h]);
                            let nib = [
                                _mm512_and_si512(v, m4),
                                _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4),
                            ];
                            for (e, n) in nib.into_iter().enumerate() {
                                let xg = xv[2 * h + e];
                                let neg = _mm512_testn_epi8_mask(n, b8);
                                let xs = _mm512_mask_sub_epi8(xg, neg, zero, xg);
                                let w = _mm512_shuffle_epi8(tbl, n);
                                i = $dpw!(i, _mm512_maddubs_epi16(w, xs), sg);
                            }
                        }
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
    };
}
