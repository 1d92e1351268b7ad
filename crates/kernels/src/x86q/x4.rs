//! The AVX-512 kernels of the x4 layouts ([`crate::DType::Q4_0X4`], [`crate::DType::Q8_0X4`];
//! see [`frugal_quant::x4`]): a quad of 4 rows is one contiguous stream of pieces of 16 blocks,
//! and each 64-byte word vector of a piece holds one word of all 16 blocks, so each block sums
//! in its own lane with no shuffle. Here are the loads of a piece, the decode of a quad, and the
//! unpacking of 16 rows of pieces into the prefill scratch ([`super::prefill::TB`]), all in
//! `avx512_x4!`, which `avx512_quant!` (mod.rs) expands once per feature set.

/// The AVX-512 kernels of the x4 layouts for one feature set (the arguments of
/// `avx512_quant!`).
macro_rules! avx512_x4 {
    ($feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
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
                let piece = |r: usize| base.add(r / 4 * 4 * stride + piece_at(bb, nb, g, r % 4).0);
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
                                let s = _mm512_mask_sub_epi8(*xk, neg, _mm512_setzero_si512(), *xk);
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
    };
}
