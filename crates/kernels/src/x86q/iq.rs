//! AVX-512 kernels of the I-quant grid types (IQ2_XXS; the scalar twins are in `crate::iq`).
//!
//! A block's 256 values are four registers of 64 (two sub-blocks of 32 each), in natural
//! order against natural activations ([`crate::qmat::AK`]). Each register is built from the
//! grid: 8 entries of 8 levels (IQ2) gathered by their indices. The levels are unsigned; the
//! signs are a 64-bit mask per register applied to the activations (`vpsubb` under the mask),
//! so `vpmaddubsw` meets `|w|` and `x * sign` (no saturation: levels are below 64, so a pair
//! stays below `2 * 63 * 127 < 2^15`), and `vpdpwssd` weights the pairs by the sub-block
//! scales `2s + 1`, spread over the words by `vpshufb`. IQ2_XXS's signs are 7-bit indices into
//! `KSIGNS_IQ2XS`, which is the index with its parity as the eighth bit: computed for a whole
//! block at once (fields spread into bytes by shifts, parity by `vpshufb` of the nibbles).
//!
//! Decode streams each row once (`R` rows sharing each activation load for long rows, as
//! `decode.rs`); prefill unpacks the signed levels into the [`super::TK`] tiles of
//! `prefill.rs` (`K_IQ32`: sub-blocks of 32, natural order).

/// `vpshufb` controls spreading 8 byte scales of sub-blocks of 32 (bytes 0..8 of every 128-bit
/// lane) over the `vpmaddubsw` words of register `g` as zero-extended words: lanes 0-1 hold
/// sub-block `2g`, lanes 2-3 sub-block `2g + 1`.
pub(super) static SHUF_IQ_SC32: [[i8; 64]; 4] = {
    let mut a = [[0i8; 64]; 4];
    let mut g = 0;
    while g < 4 {
        let mut j = 0;
        while j < 64 {
            a[g][j] = if j % 2 == 1 {
                -128
            } else {
                (2 * g + j / 32) as i8
            };
            j += 1;
        }
        g += 1;
    }
    a
};

/// The parity of a nibble as bit 7 (`0x80` for an odd count of ones), in every 128-bit lane.
pub(super) static PARITY80: [i8; 64] = {
    let mut a = [0i8; 64];
    let mut j = 0;
    while j < 64 {
        a[j] = if (j % 16).count_ones() % 2 == 1 {
            -128
        } else {
            0
        };
        j += 1;
    }
    a
};

/// The AVX-512 I-quant kernels of one feature set (the arguments of `avx512_quant!`).
macro_rules! avx512_iq {
    ($feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
        /// The four 7-bit fields of every dword of `v` (bits `7l..7l + 7`, `l < 4`) as the
        /// dword's bytes `l`, bit 7 clear.
        #[inline]
        #[target_feature(enable = $feat)]
        fn spread7(v: __m512i) -> __m512i {
            let m = _mm512_set1_epi32;
            _mm512_or_si512(
                _mm512_or_si512(
                    _mm512_and_si512(v, m(0x7f)),
                    _mm512_and_si512(_mm512_slli_epi32::<1>(v), m(0x7f00)),
                ),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_slli_epi32::<2>(v), m(0x7f_0000)),
                    _mm512_and_si512(_mm512_slli_epi32::<3>(v), m(0x7f00_0000)),
                ),
            )
        }

        /// `KSIGNS_IQ2XS` of every byte of `s` (7-bit sign indices): the byte with the parity
        /// of its bits as bit 7, from the nibble parities `par` ([`PARITY80`]).
        #[inline]
        #[target_feature(enable = $feat)]
        fn ksigns(s: __m512i, par: __m512i) -> __m512i {
            let m4 = _mm512_set1_epi8(0x0F);
            let lo = _mm512_shuffle_epi8(par, _mm512_and_si512(s, m4));
            let hi = _mm512_shuffle_epi8(par, _mm512_and_si512(_mm512_srli_epi16::<4>(s), m4));
            // s | (lo ^ hi)
            _mm512_ternarylogic_epi32::<0xF6>(s, lo, hi)
        }

        /// One IQ2_XXS block at `b`: the unsigned levels of its 256 values in four registers
        /// (natural order), the sign masks (bit `i` of `m[g]` negates value `64g + i`) and the
        /// eight scales `2s + 1` as bytes.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn block_iq2_xxs(b: *const u8, par: __m512i) -> ([__m512i; 4], [u64; 4], __m128i) {
            // SAFETY: the caller guarantees 66 readable bytes at b; the indices are bytes,
            // inside the 256 grid entries.
            unsafe {
                let v = _mm512_loadu_si512(b.add(2) as *const _);
                // Each sub-block's second dword (signs, scale) in the low half of its qword.
                let aux = _mm512_srli_epi64::<32>(v);
                let sg = ksigns(spread7(aux), par);
                let m: [u64; 4] = std::mem::transmute(_mm512_cvtepi64_epi32(sg));
                let s = _mm512_cvtepi64_epi8(_mm512_srli_epi64::<28>(aux));
                let ls = _mm_add_epi8(_mm_add_epi8(s, s), _mm_set1_epi8(1));
                let tbl = frugal_quant::tables::IQ2XXS_GRID.as_ptr();
                let w = std::array::from_fn(|g| {
                    let i0 = (b.add(2 + 16 * g) as *const u32).read_unaligned();
                    let i1 = (b.add(10 + 16 * g) as *const u32).read_unaligned();
                    let e = |q: u32, k: u32| *tbl.add((q >> (8 * k) & 255) as usize) as i64;
                    _mm512_set_epi64(
                        e(i1, 3),
                        e(i1, 2),
                        e(i1, 1),
                        e(i1, 0),
                        e(i0, 3),
                        e(i0, 2),
                        e(i0, 1),
                        e(i0, 0),
                    )
                });
                (w, m, ls)
            }
        }

        /// `R` IQ2_XXS rows (`nb` super-blocks each at `p[r]`) times one token.
        #[target_feature(enable = $feat)]
        unsafe fn rows_iq2_xxs<const R: usize>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let zero = _mm512_setzero_si512();
                let par = _mm512_loadu_si512(PARITY80.as_ptr() as *const _);
                let idx: [__m512i; 4] = std::array::from_fn(|i| {
                    _mm512_loadu_si512(SHUF_IQ_SC32[i].as_ptr() as *const _)
                });
                let mut acc = [_mm512_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    for r in 0..R {
                        let b = p[r].add(66 * k);
                        prefetch_lines(b, 2);
                        let (w, m, ls) = block_iq2_xxs(b, par);
                        let sb = _mm512_broadcast_i32x4(ls);
                        let mut i = zero;
                        for g in 0..4 {
                            let xs = _mm512_mask_sub_epi8(xv[g], m[g], zero, xv[g]);
                            let sg = _mm512_shuffle_epi8(sb, idx[g]);
                            i = $dpw!(i, _mm512_maddubs_epi16(w[g], xs), sg);
                        }
                        acc[r] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i),
                            _mm512_set1_ps(f16_at(b) * 0.125 * xb.d),
                            acc[r],
                        );
                    }
                }
                std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
            }
        }

        /// Row `r` of a [`TK`] tile from the IQ2_XXS block at `b`: its signed levels into
        /// `lv`, its scales and `d / 8`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_iq2_xxs(b: *const u8, lv: &mut [u8; 256], tk: &mut TK, r: usize) {
            // SAFETY: the caller guarantees 66 readable bytes at b; lv is 256 bytes.
            unsafe {
                let par = _mm512_loadu_si512(PARITY80.as_ptr() as *const _);
                let (w, m, ls) = block_iq2_xxs(b, par);
                for g in 0..4 {
                    let q = _mm512_mask_sub_epi8(w[g], m[g], _mm512_setzero_si512(), w[g]);
                    _mm512_storeu_si512(lv.as_mut_ptr().add(64 * g) as *mut _, q);
                }
                let ls: [u8; 16] = std::mem::transmute(ls);
                for j in 0..8 {
                    tk.sc[j][r] = ls[j] as i32;
                }
                tk.d[r] = f16_at(b) * 0.125;
            }
        }
    };
}
