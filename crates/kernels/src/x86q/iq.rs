//! AVX-512 kernels of the I-quant grid types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S (the
//! scalar twins are in `crate::qmat::iq`).
//!
//! A block's 256 values are four registers of 64, in natural order against natural
//! activations ([`crate::qmat::AK`]). Each register is built from the grid: 8 entries of 8
//! levels (IQ2_XS, IQ2_S: scalar loads by index) or 16 of 4 (IQ3, `vpgatherdd`). IQ2_XXS's
//! 256 entries are 16-bit codes of their levels (all 8, 25 or 43: 2 bits each), looked up for
//! the whole block by `vpermi2w` and spread into levels by `vpermw`, a mask and `vpshufb`
//! (no scalar loads). The levels are
//! unsigned; the signs are a 64-bit mask per register applied to the activations (`vpsubb`
//! under the mask), so `vpmaddubsw` meets `|w|` and `x * sign` (no saturation: levels are
//! below 64, so a pair stays below `2 * 63 * 127 < 2^15`), and `vpdpwssd` weights the pairs by
//! the sub-block scales `2s + 1`, spread over the words by `vpshufb`. IQ2_XXS's, IQ2_XS's and
//! IQ3_XXS's signs are 7-bit indices into `KSIGNS_IQ2XS`, which is the index with its parity
//! as the eighth bit: computed for a whole block at once (parity by `vpshufb` of the nibbles);
//! IQ2_S and IQ3_S store the sign bits themselves.
//!
//! Decode streams each row once (`R` rows sharing each activation load for long rows, as
//! `decode.rs`); prefill unpacks the signed levels into the [`super::TK`] tiles of
//! `prefill.rs` (`K_IQ32`, `K_IQ16`: sub-blocks of 32 or 16, natural order).

use super::DType;

/// The grid types as const parameters.
pub(super) const I2XXS: u8 = 0;
pub(super) const I2XS: u8 = 1;
pub(super) const I2S: u8 = 2;
pub(super) const I3XXS: u8 = 3;
pub(super) const I3S: u8 = 4;

/// Bytes per block of grid type `i`.
pub(super) const fn iq_bytes(i: u8) -> usize {
    match i {
        I2XXS => 66,
        I2XS => 74,
        I2S => 82,
        I3XXS => 98,
        _ => 110,
    }
}

/// The power of two `f` of `db = d * ls * f` ([`crate::qmat::iq`]).
pub(super) const fn iq_f(i: u8) -> f32 {
    match i {
        I2XXS | I2XS | I2S => 0.125,
        I3XXS => 0.25,
        _ => 1.0,
    }
}

/// Whether grid type `i` has sub-blocks of 16 (else 32).
pub(super) const fn iq_sub16(i: u8) -> bool {
    matches!(i, I2XS | I2S)
}

/// The grid type of `dtype`, if it is one.
pub(super) fn iq_kind(dtype: DType) -> Option<u8> {
    match dtype {
        DType::IQ2_XXS => Some(I2XXS),
        DType::IQ2_XS => Some(I2XS),
        DType::IQ2_S => Some(I2S),
        DType::IQ3_XXS => Some(I3XXS),
        DType::IQ3_S => Some(I3S),
        _ => None,
    }
}

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

/// The same for 16 byte scales of sub-blocks of 16: register `g` holds sub-blocks
/// `4g..4g + 4`, 16 values (8 words) each.
pub(super) static SHUF_IQ_SC16: [[i8; 64]; 4] = {
    let mut a = [[0i8; 64]; 4];
    let mut g = 0;
    while g < 4 {
        let mut j = 0;
        while j < 64 {
            a[g][j] = if j % 2 == 1 {
                -128
            } else {
                (4 * g + j / 16) as i8
            };
            j += 1;
        }
        g += 1;
    }
    a
};

/// IQ2_XXS's grid entries as 16-bit codes: level `j` (8, 25 or 43 as 0, 1, 2) in bits
/// `8 (j % 2) + 2 (j / 2)`, so that byte `j` of the code repeated four times holds it under
/// [`IQ2_CODE_POS`].
pub(super) static IQ2XXS_CODES: [u16; 256] = {
    let mut a = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let e = frugal_quant::tables::IQ2XXS_GRID[i];
        let mut j = 0;
        while j < 8 {
            let c = match (e >> (8 * j)) as u8 {
                8 => 0u16,
                25 => 1,
                43 => 2,
                _ => panic!("an IQ2 level other than 8, 25, 43"),
            };
            a[i] |= c << (8 * (j % 2) + 2 * (j / 2));
            j += 1;
        }
        i += 1;
    }
    a
};

/// `vpermw` controls repeating code `8g + k` over the words of qword `k` (register `g`).
pub(super) static IQ2_CODE_REP: [[u16; 32]; 4] = {
    let mut a = [[0u16; 32]; 4];
    let mut g = 0;
    while g < 4 {
        let mut p = 0;
        while p < 32 {
            a[g][p] = (8 * g + p / 4) as u16;
            p += 1;
        }
        g += 1;
    }
    a
};

/// The bits of byte `j` of every qword's level code: `3 << 2 (j / 2)`.
pub(super) static IQ2_CODE_POS: [u8; 64] = {
    let mut a = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        a[j] = 3 << (2 * (j % 8 / 2));
        j += 1;
    }
    a
};

/// The levels of a code as the low nibble holds it, shifted by 0 or 2 (every 128-bit lane).
pub(super) static IQ2_CODE_LEVELS: [u8; 64] = {
    let mut a = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        a[j] = match j % 16 {
            0 => 8,
            1 | 4 => 25,
            2 | 8 => 43,
            _ => 0,
        };
        j += 1;
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

        /// `2s + 1` of 8 bytes of 4-bit scales `s` (low nibble first): 16 bytes.
        #[inline]
        #[target_feature(enable = $feat)]
        fn iq_scales16(s: __m128i) -> __m128i {
            let m4 = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(s, m4);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(s), m4);
            let v = _mm_unpacklo_epi8(lo, hi);
            _mm_add_epi8(_mm_add_epi8(v, v), _mm_set1_epi8(1))
        }

        /// One block of grid type `I` at `b`: the unsigned levels of its 256 values in four
        /// registers (natural order), the sign masks (bit `i` of `m[g]` negates value
        /// `64g + i`) and the scales `2s + 1` as bytes (8 of sub-blocks of 32 or 16 of 16).
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn block_iq<const I: u8>(
            b: *const u8,
            par: __m512i,
        ) -> ([__m512i; 4], [u64; 4], __m128i) {
            // SAFETY: the caller guarantees `iq_bytes(I)` readable bytes at b; every grid index
            // is masked to its table's length (256, 512 or 1024 entries).
            unsafe {
                use frugal_quant::tables::*;
                let one = _mm_set1_epi8(1);
                match I {
                    I2XXS => {
                        let v = _mm512_loadu_si512(b.add(2) as *const _);
                        // Each sub-block's second dword (signs, scale) in the low half of its
                        // qword.
                        let aux = _mm512_srli_epi64::<32>(v);
                        let sg = ksigns(spread7(aux), par);
                        let m: [u64; 4] = std::mem::transmute(_mm512_cvtepi64_epi32(sg));
                        let s = _mm512_cvtepi64_epi8(_mm512_srli_epi64::<28>(aux));
                        let ls = _mm_add_epi8(_mm_add_epi8(s, s), one);
                        // The 32 grid indices (the first dwords) as words, their entries'
                        // level codes by four 64-word table lookups chosen by index bits 6, 7.
                        let q = _mm512_cvtepu8_epi16(_mm512_cvtepi64_epi32(v));
                        let t = |i: usize| {
                            _mm512_loadu_si512(IQ2XXS_CODES.as_ptr().add(32 * i) as *const _)
                        };
                        let r = |k: usize| _mm512_permutex2var_epi16(t(2 * k), q, t(2 * k + 1));
                        let b6 = _mm512_test_epi16_mask(q, _mm512_set1_epi16(64));
                        let b7 = _mm512_test_epi16_mask(q, _mm512_set1_epi16(128));
                        let c = _mm512_mask_blend_epi16(
                            b7,
                            _mm512_mask_blend_epi16(b6, r(0), r(1)),
                            _mm512_mask_blend_epi16(b6, r(2), r(3)),
                        );
                        let pos = _mm512_loadu_si512(IQ2_CODE_POS.as_ptr() as *const _);
                        let lut = _mm512_loadu_si512(IQ2_CODE_LEVELS.as_ptr() as *const _);
                        let w = std::array::from_fn(|g| {
                            let rep = _mm512_loadu_si512(IQ2_CODE_REP[g].as_ptr() as *const _);
                            let a = _mm512_and_si512(_mm512_permutexvar_epi16(rep, c), pos);
                            // (a | a >> 4) & 0x0F: the code, shifted by 0 or 2.
                            let n = _mm512_ternarylogic_epi32::<0xA8>(
                                a,
                                _mm512_srli_epi16::<4>(a),
                                _mm512_set1_epi8(0x0F),
                            );
                            _mm512_shuffle_epi8(lut, n)
                        });
                        (w, m, ls)
                    }
                    I2XS => {
                        let v = _mm512_loadu_si512(b.add(2) as *const _);
                        let si = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<9>(v));
                        let sg = ksigns(_mm512_castsi256_si512(si), par);
                        let m: [u64; 4] = std::mem::transmute(_mm512_castsi512_si256(sg));
                        let ls = iq_scales16(_mm_loadl_epi64(b.add(66) as *const _));
                        let tbl = IQ2XS_GRID.as_ptr();
                        let w = std::array::from_fn(|g| {
                            let e = |k: usize| {
                                let q = (b.add(2 + 16 * g + 2 * k) as *const u16).read_unaligned();
                                *tbl.add((q & 511) as usize) as i64
                            };
                            _mm512_set_epi64(e(7), e(6), e(5), e(4), e(3), e(2), e(1), e(0))
                        });
                        (w, m, ls)
                    }
                    I2S => {
                        let m = (b.add(34) as *const [u64; 4]).read_unaligned();
                        let ls = iq_scales16(_mm_loadl_epi64(b.add(74) as *const _));
                        let tbl = IQ2S_GRID.as_ptr();
                        let w = std::array::from_fn(|g| {
                            let e = |k: usize| {
                                let j = 8 * g + k;
                                let h = (*b.add(66 + j / 4) as usize >> (2 * (j % 4))) & 3;
                                *tbl.add(*b.add(2 + j) as usize | h << 8) as i64
                            };
                            _mm512_set_epi64(e(7), e(6), e(5), e(4), e(3), e(2), e(1), e(0))
                        });
                        (w, m, ls)
                    }
                    I3XXS => {
                        let aux = _mm256_loadu_si256(b.add(66) as *const _);
                        let sg = ksigns(spread7(_mm512_castsi256_si512(aux)), par);
                        let m: [u64; 4] = std::mem::transmute(_mm512_castsi512_si256(sg));
                        let s = _mm256_cvtepi32_epi8(_mm256_srli_epi32::<28>(aux));
                        let ls = _mm_add_epi8(_mm_add_epi8(s, s), one);
                        let tbl = IQ3XXS_GRID.as_ptr() as *const i32;
                        let w = std::array::from_fn(|g| {
                            let q = _mm_loadu_si128(b.add(2 + 16 * g) as *const _);
                            _mm512_i32gather_epi32::<4>(_mm512_cvtepu8_epi32(q), tbl)
                        });
                        (w, m, ls)
                    }
                    _ => {
                        let m = (b.add(74) as *const [u64; 4]).read_unaligned();
                        let s = _mm_cvtsi32_si128((b.add(106) as *const i32).read_unaligned());
                        let m4 = _mm_set1_epi8(0x0F);
                        let s = _mm_unpacklo_epi8(
                            _mm_and_si128(s, m4),
                            _mm_and_si128(_mm_srli_epi16::<4>(s), m4),
                        );
                        let ls = _mm_add_epi8(_mm_add_epi8(s, s), one);
                        let tbl = IQ3S_GRID.as_ptr() as *const i32;
                        let nine = _mm512_set1_epi32(256);
                        let w = std::array::from_fn(|g| {
                            let q = _mm_loadu_si128(b.add(2 + 16 * g) as *const _);
                            let h = (b.add(66 + 2 * g) as *const u16).read_unaligned();
                            let q = _mm512_cvtepu8_epi32(q);
                            let q = _mm512_mask_or_epi32(q, h, q, nine);
                            _mm512_i32gather_epi32::<4>(q, tbl)
                        });
                        (w, m, ls)
                    }
                }
            }
        }

        /// `R` rows of grid type `I` (`nb` blocks each at `p[r]`) times one token.
        #[target_feature(enable = $feat)]
        unsafe fn rows_iq<const I: u8, const R: usize>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            // SAFETY: the caller guarantees every row's `nb` blocks and `nb` activation
            // blocks.
            unsafe {
                let zero = _mm512_setzero_si512();
                let par = _mm512_loadu_si512(PARITY80.as_ptr() as *const _);
                let tbl = if iq_sub16(I) {
                    &SHUF_IQ_SC16
                } else {
                    &SHUF_IQ_SC32
                };
                let idx: [__m512i; 4] =
                    std::array::from_fn(|i| _mm512_loadu_si512(tbl[i].as_ptr() as *const _));
                let mut acc = [_mm512_setzero_ps(); R];
                for k in 0..nb {
                    let xb = &*x.add(k);
                    let xv: [__m512i; 4] = std::array::from_fn(|g| {
                        _mm512_load_si512(xb.qs.as_ptr().add(64 * g) as *const _)
                    });
                    for r in 0..R {
                        let b = p[r].add(iq_bytes(I) * k);
                        prefetch_lines(b, 2);
                        let (w, m, ls) = block_iq::<I>(b, par);
                        let sb = _mm512_broadcast_i32x4(ls);
                        let mut i = zero;
                        for g in 0..4 {
                            let xs = _mm512_mask_sub_epi8(xv[g], m[g], zero, xv[g]);
                            let sg = _mm512_shuffle_epi8(sb, idx[g]);
                            i = $dpw!(i, _mm512_maddubs_epi16(w[g], xs), sg);
                        }
                        acc[r] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i),
                            _mm512_set1_ps(f16_at(b) * iq_f(I) * xb.d),
                            acc[r],
                        );
                    }
                }
                std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
            }
        }

        /// [`rows_iq`] of the grid type `dtype`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn rows_iq_of<const R: usize>(
            dtype: DType,
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
            // SAFETY: as rows_iq's.
            unsafe {
                match iq_kind(dtype) {
                    Some(I2XXS) => rows_iq::<I2XXS, R>(p, nb, x),
                    Some(I2XS) => rows_iq::<I2XS, R>(p, nb, x),
                    Some(I2S) => rows_iq::<I2S, R>(p, nb, x),
                    Some(I3XXS) => rows_iq::<I3XXS, R>(p, nb, x),
                    Some(I3S) => rows_iq::<I3S, R>(p, nb, x),
                    _ => unreachable!("{} is not a grid I-quant", dtype.name()),
                }
            }
        }

        /// Row `r` of a [`TK`] tile from the block of grid type `I` at `b`: its signed levels
        /// into `lv`, its scales and `d * f`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_iq<const I: u8>(b: *const u8, lv: &mut [u8; 256], tk: &mut TK, r: usize) {
            // SAFETY: the caller guarantees `iq_bytes(I)` readable bytes at b; lv is 256 bytes.
            unsafe {
                let par = _mm512_loadu_si512(PARITY80.as_ptr() as *const _);
                let (w, m, ls) = block_iq::<I>(b, par);
                for g in 0..4 {
                    let q = _mm512_mask_sub_epi8(w[g], m[g], _mm512_setzero_si512(), w[g]);
                    _mm512_storeu_si512(lv.as_mut_ptr().add(64 * g) as *mut _, q);
                }
                let ls: [u8; 16] = std::mem::transmute(ls);
                for j in 0..if iq_sub16(I) { 16 } else { 8 } {
                    tk.sc[j][r] = ls[j] as i32;
                }
                tk.d[r] = f16_at(b) * iq_f(I);
            }
        }

        /// [`tile_iq`] of the grid type `dtype`.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_iq_of(
            dtype: DType,
            b: *const u8,
            lv: &mut [u8; 256],
            tk: &mut TK,
            r: usize,
        ) {
            // SAFETY: as tile_iq's.
            unsafe {
                match iq_kind(dtype) {
                    Some(I2XXS) => tile_iq::<I2XXS>(b, lv, tk, r),
                    Some(I2XS) => tile_iq::<I2XS>(b, lv, tk, r),
                    Some(I2S) => tile_iq::<I2S>(b, lv, tk, r),
                    Some(I3XXS) => tile_iq::<I3XXS>(b, lv, tk, r),
                    Some(I3S) => tile_iq::<I3S>(b, lv, tk, r),
                    _ => unreachable!("{} is not a grid I-quant", dtype.name()),
                }
            }
        }
    };
}
