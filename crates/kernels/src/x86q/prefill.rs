//! Prefill (several tokens) on AVX-512, every dtype: each unpacked weight block is reused for
//! several tokens. The rows are taken 16 at a time; each block of the 16 rows is unpacked once
//! into a small per-task scratch (the levels as bytes, transposed: 16 rows x 32 columns in 8
//! vectors whose lane `r` holds 4 consecutive weights of row `r`; about 1.1 byte per weight of
//! the 16 rows, so 36-330 KB on gemma-2b shapes) and used for every token. One `vpdpbusd` with
//! 4 activation bytes broadcast advances 16 rows by 4 columns; 8 of them leave one finished
//! block (or sub-block) sum per row in each lane, so the f32 scaling is one fused multiply-add
//! per 16 rows x 32 columns (K-quants: the sub-block scale by one `vpmulld`, the super-block's
//! f32 scale once per 256 columns). Tokens go 8 at a time through the scratch. This is a
//! transient tile of 16 rows, not a copy of the matrix. Q4_1's and Q5_1's mins, which the
//! integer sums cannot carry, are kept beside the tile ([`M16`]) and meet each token's block
//! sums in one more fused multiply-add.
//!
//! Here: the scratch layouts ([`TB`], [`TK`]), and `avx512_prefill!`, the unpacking, the tile
//! products and the job's 16-row drivers, which `avx512_quant!` (mod.rs) expands once per
//! feature set. The x4 layouts' unpacking is in `x4.rs`.

/// One block of 16 rows unpacked for the prefill kernel: `w[v]` lane `r` holds weights
/// `4v..4v + 4` of row `r` as bytes, `d` the 16 rows' scales. Two encodings: unsigned levels
/// (Q4_0's `q` in `0..16`, whose `-8` the kernel applies to the activation sums; Q4_1's and
/// Q5_1's `q`, whose mins are kept apart in an [`M16`]), and the Q8_0 encoding of signed
/// levels (Q8_0, int8, and the levels of Q5_0, IQ4_NL, MXFP4): with VNNI `w ^ 0x80`, without
/// it `|w|` with the negative ones marked in `neg[v]`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct TB {
    pub(super) w: [[u8; 64]; 8],
    pub(super) d: [f32; 16],
    pub(super) neg: [u64; 8],
}

pub(super) const TB_ZERO: TB = TB {
    w: [[0; 64]; 8],
    d: [0.0; 16],
    neg: [0; 8],
};

/// The f32 mins of one block of 16 rows (Q4_1, Q5_1), next to its [`TB`].
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct M16(pub(super) [f32; 16]);

/// One super-block of 256 of 16 rows unpacked for the K-quant prefill kernel. `w[s][v]` lane
/// `r` holds values `32s + 4v..32s + 4v + 4` of row `r` as bytes (`q`: Q4_K `0..16`, Q5_K
/// `0..32`, Q6_K `0..64`, Q3_K `0..8`, Q2_K and TQ2_0 `0..4`, TQ1_0 `0..3`, IQ1_S and IQ1_M `0..=18`;
/// IQ4_XS's signed levels in the Q8_0 encoding of [`TB`], the signs in `neg[s][v]` without
/// VNNI). `sc[j]` the integer sub-block
/// scales (8 of 32 for Q4_K, Q5_K and IQ4_XS, 16 of 16 for the others), `mp[i]` the mins
/// `m[2i]`, `m[2i + 1]` as a pair of i16 per lane (Q4_K and Q5_K: 4 pairs, Q2_K: 8), `d` and
/// `dmin` the f32 scales.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct TK {
    pub(super) w: [[[u8; 64]; 8]; 8],
    pub(super) sc: [[i32; 16]; 16],
    pub(super) mp: [[i32; 16]; 8],
    pub(super) neg: [[u64; 8]; 8],
    pub(super) d: [f32; 16],
    pub(super) dmin: [f32; 16],
}

pub(super) const TK_ZERO: TK = TK {
    w: [[[0; 64]; 8]; 8],
    sc: [[0; 16]; 16],
    mp: [[0; 16]; 8],
    neg: [[0; 8]; 8],
    d: [0.0; 16],
    dmin: [0.0; 16],
};

/// The ways [`TK`] tiles meet the activations (`tgemm_k`'s `KIND`): sub-blocks of 32 with
/// mins (Q4_K, Q5_K), of 16 with the offset `AK::c16` (Q6_K, IQ1_S, IQ1_M; Q3_K with its
/// activations in the order of `q2_pos`), of 16 with mins (Q2_K, that order), of 32 with
/// signed levels (IQ4_XS, activations in the order of `iq4_pos`; IQ2_XXS, IQ3_XXS, IQ3_S in
/// natural order), of 16 with signed levels (IQ2_XS, IQ2_S, natural order), one scale per
/// super-block with the offset `-1` (TQ2_0, TQ1_0; levels in the activations' order).
pub(super) const K_Q4: u8 = 0;
pub(super) const K_Q6: u8 = 1;
pub(super) const K_Q3: u8 = 2;
pub(super) const K_Q2: u8 = 3;
pub(super) const K_IQ4: u8 = 4;
pub(super) const K_IQ32: u8 = 5;
pub(super) const K_IQ16: u8 = 6;
pub(super) const K_TQ: u8 = 7;

/// 64 zero bytes: the block of the rows past the end of a 16-row tile.
pub(super) static ZERO_BLOCK: [u8; 64] = [0; 64];

/// The first `out.len()` (at most 16) of a tile's 16 lanes into `out`: a fixed 64-byte move
/// for a whole tile, where a `memcpy` call per tile and token costs a few percent of prefill.
#[inline(always)]
pub(super) fn put_lanes(out: &mut [f32], lanes: &[f32; 16]) {
    match <&mut [f32; 16]>::try_from(&mut *out) {
        Ok(o) => *o = *lanes,
        Err(_) => {
            let n = out.len();
            out.copy_from_slice(&lanes[..n]);
        }
    }
}

/// The AVX-512 prefill kernels of one feature set (the arguments of `avx512_quant!`): the
/// unpacking of plain rows into [`TB`] and [`TK`] tiles, their products with up to 8 tokens,
/// and the job's drivers that walk a task's rows 16 at a time.
macro_rules! avx512_prefill {
    ($feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
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
                    let l = |j: usize| _mm_loadu_si128(rows[4 * i + j].add(off) as *const __m128i);
                    let v = _mm512_castsi128_si512(l(0));
                    let v = _mm512_inserti32x4::<1>(v, l(1));
                    let v = _mm512_inserti32x4::<2>(v, l(2));
                    _mm512_inserti32x4::<3>(v, l(3))
                })
            }
        }

        /// The f16 scales at `rows[r] + off` of 16 rows.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn scales16(rows: &[*const u8; 16], off: usize) -> __m512 {
            // SAFETY: the caller guarantees 2 readable bytes at every rows[r] + off.
            let dh: [u16; 16] = std::array::from_fn(|r| unsafe {
                (rows[r].add(off) as *const u16).read_unaligned()
            });
            // SAFETY: dh is 32 bytes.
            _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(dh.as_ptr() as *const __m256i) })
        }

        /// The MXFP4 scales of 16 rows (the E8M0 byte at `rows[r]`, see [`e8m0_half`]).
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn scales16_e8m0(rows: &[*const u8; 16]) -> __m512 {
            // SAFETY: the caller guarantees a readable byte at every rows[r].
            let e: [u8; 16] = std::array::from_fn(|r| unsafe { *rows[r] });
            // SAFETY: e is 16 bytes.
            let e = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(e.as_ptr() as *const _) });
            e8m0_half(e)
        }

        /// Stores the signed levels `s` as `tb.w[h]` in the Q8_0 encoding.
        #[inline]
        #[target_feature(enable = $feat)]
        fn put_q8(tb: &mut TB, h: usize, s: __m512i) {
            let u = if $vnni {
                _mm512_xor_si512(s, _mm512_set1_epi8(-128))
            } else {
                tb.neg[h] = _mm512_movepi8_mask(s);
                _mm512_abs_epi8(s)
            };
            // SAFETY: tb.w[h] is 64 bytes, 64-byte aligned.
            unsafe { _mm512_store_si512(tb.w[h].as_mut_ptr() as *mut _, u) };
        }

        /// Unpacks the 16 bytes of nibbles at `rows[r] + off` of 16 rows into `tb`'s weights
        /// as unsigned levels (the scales are the caller's).
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn unpack_nibbles(rows: &[*const u8; 16], off: usize, idx: __m512i, tb: &mut TB) {
            // SAFETY: the caller guarantees 16 readable bytes at every rows[r] + off.
            unsafe {
                let m4 = _mm512_set1_epi8(0x0F);
                let v = transpose16x4(load16x16(rows, off), idx);
                for (j, vj) in v.iter().enumerate() {
                    let lo = _mm512_and_si512(*vj, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(*vj), m4);
                    _mm512_store_si512(tb.w[j].as_mut_ptr() as *mut _, lo);
                    _mm512_store_si512(tb.w[j + 4].as_mut_ptr() as *mut _, hi);
                }
            }
        }

        /// Unpacks one Q4_0 block of 16 rows (`rows[r]` at the block) into `tb`.
        #[target_feature(enable = $feat)]
        unsafe fn unpack_q4_0(rows: &[*const u8; 16], idx: __m512i, tb: &mut TB) {
            // SAFETY: the caller guarantees 18 readable bytes at every rows[r].
            unsafe {
                unpack_nibbles(rows, 2, idx, tb);
                _mm512_store_ps(tb.d.as_mut_ptr(), scales16(rows, 0));
            }
        }

        /// Unpacks one Q4_1 block of 16 rows (`rows[r]` at the block) into `tb`, unsigned,
        /// and its mins into `m`.
        #[target_feature(enable = $feat)]
        unsafe fn unpack_q4_1(rows: &[*const u8; 16], idx: __m512i, tb: &mut TB, m: &mut M16) {
            // SAFETY: the caller guarantees 20 readable bytes at every rows[r].
            unsafe {
                unpack_nibbles(rows, 4, idx, tb);
                _mm512_store_ps(tb.d.as_mut_ptr(), scales16(rows, 0));
                _mm512_store_ps(m.0.as_mut_ptr(), scales16(rows, 2));
            }
        }

        /// Unpacks one IQ4_NL (`!MX`) or MXFP4 block of 16 rows (`rows[r]` at the block)
        /// into `tb`: the nibbles' levels of the type's table, in the Q8_0 encoding.
        #[target_feature(enable = $feat)]
        unsafe fn unpack_lut<const MX: bool>(rows: &[*const u8; 16], idx: __m512i, tb: &mut TB) {
            // SAFETY: the caller guarantees a whole block (18 or 17 bytes) at every rows[r].
            unsafe {
                let t = if MX { &KVALUES_FP4 } else { &KVALUES_IQ4NL };
                let tab = _mm512_broadcast_i32x4(_mm_loadu_si128(t.as_ptr() as *const _));
                let m4 = _mm512_set1_epi8(0x0F);
                let v = transpose16x4(load16x16(rows, if MX { 1 } else { 2 }), idx);
                for (j, vj) in v.iter().enumerate() {
                    let lo = _mm512_and_si512(*vj, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(*vj), m4);
                    put_q8(tb, j, _mm512_shuffle_epi8(tab, lo));
                    put_q8(tb, j + 4, _mm512_shuffle_epi8(tab, hi));
                }
                let d = if MX {
                    scales16_e8m0(rows)
                } else {
                    scales16(rows, 0)
                };
                _mm512_store_ps(tb.d.as_mut_ptr(), d);
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

        /// Unpacks one Q5_0 block of 16 rows (`rows[r]` at the block) into `tb` in the Q8_0
        /// encoding (levels `q - 16`); with `MIN` one Q5_1 block, unsigned (`q`), and its
        /// mins into `m`. The nibbles as for Q4_0, each row's fifth bits spread over its
        /// lane's bytes by byte masks.
        #[target_feature(enable = $feat)]
        unsafe fn unpack_q5<const MIN: bool>(
            rows: &[*const u8; 16],
            idx: __m512i,
            tb: &mut TB,
            m: &mut M16,
        ) {
            // Q5_0: f16 d, qh, nibbles; Q5_1: f16 d, f16 m, qh, nibbles.
            let qh_at = if MIN { 4 } else { 2 };
            // SAFETY: the caller guarantees 22 (MIN: 24) readable bytes at every rows[r].
            unsafe {
                let m4 = _mm512_set1_epi8(0x0F);
                let b5 = _mm512_set1_epi8(0x10);
                let v = transpose16x4(load16x16(rows, qh_at + 4), idx);
                // The 16 rows' fifth bits, row r's in dword r; byte b of every dword spread
                // over the dword's 4 bytes (bits 8b..8b + 8 of qh).
                let qh: [u32; 16] =
                    std::array::from_fn(|r| (rows[r].add(qh_at) as *const u32).read_unaligned());
                let qh = _mm512_loadu_si512(qh.as_ptr() as *const _);
                let qb: [__m512i; 4] = std::array::from_fn(|b| {
                    _mm512_shuffle_epi8(
                        qh,
                        _mm512_loadu_si512(SHUF_DW_BYTE[b].as_ptr() as *const _),
                    )
                });
                // Byte k of a dword tests bit k (first nibble) or 4 + k (second) of its byte.
                let bit = [
                    _mm512_set1_epi32(0x0804_0201),
                    _mm512_set1_epi32(0x8040_2010u32 as i32),
                ];
                for (j, vj) in v.iter().enumerate() {
                    // Byte `4r + k` of vector j holds value `4j + k` (low nibble) or
                    // `16 + 4j + k` (high) of row r: bit `4j + k` or `16 + 4j + k` of qh.
                    let mlo = _mm512_test_epi8_mask(qb[j / 2], bit[j % 2]);
                    let mhi = _mm512_test_epi8_mask(qb[2 + j / 2], bit[j % 2]);
                    let lo = _mm512_and_si512(*vj, m4);
                    let lo = _mm512_mask_add_epi8(lo, mlo, lo, b5);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(*vj), m4);
                    let hi = _mm512_mask_add_epi8(hi, mhi, hi, b5);
                    for (h, q) in [(j, lo), (j + 4, hi)] {
                        if MIN {
                            _mm512_store_si512(tb.w[h].as_mut_ptr() as *mut _, q);
                        } else {
                            put_q8(tb, h, _mm512_sub_epi8(q, b5));
                        }
                    }
                }
                _mm512_store_ps(tb.d.as_mut_ptr(), scales16(rows, 0));
                if MIN {
                    _mm512_store_ps(m.0.as_mut_ptr(), scales16(rows, 2));
                }
            }
        }

        /// Unpacks one Q8_0 block of 16 rows (`rows[r]` at the block) into `tb`.
        #[target_feature(enable = $feat)]
        unsafe fn unpack_q8_0(rows: &[*const u8; 16], idx: __m512i, tb: &mut TB) {
            // SAFETY: the caller guarantees 34 readable bytes at every rows[r].
            unsafe {
                unpack_int8(rows, 2, idx, tb);
                _mm512_store_ps(tb.d.as_mut_ptr(), scales16(rows, 0));
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
        /// correction, `-128 * sum(x)` with VNNI, none without) over the unsigned levels,
        /// Q4_0's (`-8 * sum`) or, with `MIN`, those of Q4_1 and Q5_1 (no offset; their
        /// mins `m`, one [`M16`] per block, times `dx * sum(x)`).
        #[target_feature(enable = $feat)]
        unsafe fn tgemm<const Q8: bool, const MIN: bool, const T: usize>(
            s: &[TB],
            m: &[M16],
            x: [*const B32; T],
        ) -> [__m512; T] {
            assert!(!MIN || m.len() == s.len(), "one M16 per block");
            let mut acc = [_mm512_setzero_ps(); T];
            for (k, tb) in s.iter().enumerate() {
                // SAFETY: every token has `s.len()` activation blocks (checked by the
                // caller); the scratch is 64-byte aligned.
                unsafe {
                    let w: [__m512i; 8] =
                        std::array::from_fn(|v| _mm512_load_si512(tb.w[v].as_ptr() as *const _));
                    let dw = _mm512_load_ps(tb.d.as_ptr());
                    for t in 0..T {
                        let xb = &*x[t].add(k);
                        let c = if Q8 {
                            if $vnni {
                                -128 * xb.sum
                            } else {
                                0
                            }
                        } else if MIN {
                            0
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
                        if MIN {
                            let mw = _mm512_load_ps(m[k].0.as_ptr());
                            let sx = _mm512_set1_ps(xb.d * xb.sum as f32);
                            acc[t] = _mm512_fmadd_ps(mw, sx, acc[t]);
                        }
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

        /// The 256 levels `q` (`0..32`) of one Q5_K super-block at `b`, in order: the
        /// nibbles as Q4_K's (at `b + 48`), the fifth bits added by byte masks.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels_q5_k(b: *const u8, out: &mut [u8; 256]) {
            // SAFETY: the caller guarantees 176 readable bytes at b; out is 256 bytes.
            unsafe {
                let m4 = _mm512_set1_epi8(0x0F);
                let b5 = _mm512_set1_epi8(0x10);
                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.add(16) as *const __m256i));
                for h in 0..2 {
                    let v = _mm512_loadu_si512(b.add(48 + 64 * h) as *const _);
                    let lo = _mm512_and_si512(v, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                    // Chunk 2h + e: the low nibbles of 32 bytes, then their high nibbles.
                    let nat = [
                        _mm512_inserti64x4::<1>(lo, _mm512_castsi512_si256(hi)),
                        _mm512_shuffle_i64x2::<0b11_10_11_10>(lo, hi),
                    ];
                    for (e, q) in nat.into_iter().enumerate() {
                        let c = 2 * h + e;
                        let hb = _mm512_loadu_si512(HBITS_NAT[c].as_ptr() as *const _);
                        let q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, hb), q, b5);
                        _mm512_storeu_si512(out.as_mut_ptr().add(64 * c) as *mut _, q);
                    }
                }
            }
        }

        /// The 256 levels `q | 4h` (`0..8`) of one Q3_K super-block at `b`, in order.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels_q3_k(b: *const u8, out: &mut [u8; 256]) {
            // SAFETY: the caller guarantees 110 readable bytes at b; out is 256 bytes.
            unsafe {
                let sh = [
                    _mm512_loadu_si512(Q6K_SHIFTS[0].as_ptr() as *const _),
                    _mm512_loadu_si512(Q6K_SHIFTS[1].as_ptr() as *const _),
                ];
                let b3 = _mm512_set1_epi8(4);
                let hm = _mm512_broadcast_i64x4(_mm256_loadu_si256(b as *const __m256i));
                for (c, q) in levels2(b.add(32), &sh).into_iter().enumerate() {
                    let hb = _mm512_loadu_si512(HBITS_NAT[c].as_ptr() as *const _);
                    let q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(hm, hb), q, b3);
                    _mm512_storeu_si512(out.as_mut_ptr().add(64 * c) as *mut _, q);
                }
            }
        }

        /// The 256 levels `q` (`0..4`) of one Q2_K super-block at `b`, in order.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels_q2_k(b: *const u8, out: &mut [u8; 256]) {
            // SAFETY: the caller guarantees 84 readable bytes at b; out is 256 bytes.
            unsafe {
                let sh = [
                    _mm512_loadu_si512(Q6K_SHIFTS[0].as_ptr() as *const _),
                    _mm512_loadu_si512(Q6K_SHIFTS[1].as_ptr() as *const _),
                ];
                for (c, q) in levels2(b.add(16), &sh).into_iter().enumerate() {
                    _mm512_storeu_si512(out.as_mut_ptr().add(64 * c) as *mut _, q);
                }
            }
        }

        /// The 256 signed levels of one IQ4_XS super-block at `b`, in order: sub-block `j`'s
        /// low nibbles (values `32j..32j + 16`) then its high ones, through the IQ4_NL table.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn levels_iq4_xs(b: *const u8, out: &mut [u8; 256]) {
            // SAFETY: the caller guarantees 136 readable bytes at b; out is 256 bytes.
            unsafe {
                let m4 = _mm512_set1_epi8(0x0F);
                let tbl = _mm512_loadu_si512(IQ4_LEVELS.as_ptr() as *const _);
                let ilv: [__m512i; 2] =
                    std::array::from_fn(|i| _mm512_loadu_si512(IDX_ILV128[i].as_ptr() as *const _));
                for h in 0..2 {
                    let v = _mm512_loadu_si512(b.add(8 + 64 * h) as *const _);
                    let lo = _mm512_shuffle_epi8(tbl, _mm512_and_si512(v, m4));
                    let hi =
                        _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4));
                    for (e, ix) in ilv.iter().enumerate() {
                        let q = _mm512_permutex2var_epi64(lo, *ix, hi);
                        _mm512_storeu_si512(out.as_mut_ptr().add(128 * h + 64 * e) as *mut _, q);
                    }
                }
            }
        }

        /// Unpacks super-block `k` of the 16 rows `rows[r]` (`None` past the tile's end)
        /// of a K-quant or IQ4_XS matrix of `dtype` into `tk`.
        #[target_feature(enable = $feat)]
        unsafe fn unpack_k(
            rows: &[Option<*const u8>; 16],
            dtype: DType,
            lv: &mut [[u8; 256]; 16],
            tk: &mut TK,
        ) {
            // SAFETY: the caller guarantees a whole super-block at every Some(row).
            unsafe {
                for (r, row) in rows.iter().enumerate() {
                    let Some(b) = *row else {
                        lv[r] = [0; 256];
                        for j in 0..16 {
                            tk.sc[j][r] = 0;
                        }
                        for i in 0..8 {
                            tk.mp[i][r] = 0;
                        }
                        tk.d[r] = 0.0;
                        tk.dmin[r] = 0.0;
                        continue;
                    };
                    match dtype {
                        DType::Q4_K | DType::Q5_K => {
                            if dtype == DType::Q4_K {
                                levels_q4_k(b, &mut lv[r]);
                            } else {
                                levels_q5_k(b, &mut lv[r]);
                            }
                            let sm: [u8; 16] = std::mem::transmute(q4k_scales(b.add(4)));
                            for j in 0..8 {
                                tk.sc[j][r] = sm[j] as i32;
                            }
                            for i in 0..4 {
                                tk.mp[i][r] = sm[8 + 2 * i] as i32 | (sm[9 + 2 * i] as i32) << 16;
                            }
                            tk.d[r] = f16_at(b);
                            tk.dmin[r] = f16_at(b.add(2));
                        }
                        DType::Q6_K => {
                            levels_q6_k(b, &mut lv[r]);
                            for j in 0..16 {
                                tk.sc[j][r] = *b.add(192 + j) as i8 as i32;
                            }
                            tk.d[r] = f16_at(b.add(208));
                        }
                        DType::Q3_K => {
                            levels_q3_k(b, &mut lv[r]);
                            let sc: [i8; 16] = std::mem::transmute(q3k_scales(b.add(96)));
                            for j in 0..16 {
                                tk.sc[j][r] = sc[j] as i32;
                            }
                            tk.d[r] = f16_at(b.add(108));
                        }
                        DType::Q2_K => {
                            levels_q2_k(b, &mut lv[r]);
                            for j in 0..16 {
                                tk.sc[j][r] = (*b.add(j) & 15) as i32;
                            }
                            for i in 0..8 {
                                let (m0, m1) = (*b.add(2 * i) >> 4, *b.add(2 * i + 1) >> 4);
                                tk.mp[i][r] = m0 as i32 | (m1 as i32) << 16;
                            }
                            tk.d[r] = f16_at(b.add(80));
                            tk.dmin[r] = f16_at(b.add(82));
                        }
                        d if iq_kind(d).is_some() => tile_iq_of(d, b, &mut lv[r], tk, r),
                        DType::IQ4_XS => {
                            levels_iq4_xs(b, &mut lv[r]);
                            let sc: [i16; 8] = std::mem::transmute(iq4xs_scales(b));
                            for j in 0..8 {
                                tk.sc[j][r] = sc[j] as i32;
                            }
                            tk.d[r] = f16_at(b);
                        }
                        DType::TQ2_0 => {
                            levels_tq2_0(b, &mut lv[r]);
                            tk.d[r] = f16_at(b.add(64));
                        }
                        DType::TQ1_0 => {
                            levels_tq1_0(b, &mut lv[r]);
                            tk.d[r] = f16_at(b.add(52));
                        }
                        DType::IQ1_S | DType::IQ1_M => {
                            let (q, sc16, d) = if dtype == DType::IQ1_S {
                                iq1_unpack::<false>(b)
                            } else {
                                iq1_unpack::<true>(b)
                            };
                            for (c, v) in q.into_iter().enumerate() {
                                _mm512_storeu_si512(lv[r].as_mut_ptr().add(64 * c) as *mut _, v);
                            }
                            let sc: [i16; 16] = std::mem::transmute(sc16);
                            for j in 0..16 {
                                tk.sc[j][r] = sc[j] as i32;
                            }
                            // The `1/8` of the levels `8 * g + 9 + 8 * delta`.
                            tk.d[r] = d * 0.125;
                        }
                        d => unreachable!("{} has no K tile", d.name()),
                    }
                }
                let signed = dtype == DType::IQ4_XS || iq_kind(dtype).is_some();
                // 64 columns (two sub-blocks of 32) of the 16 rows at a time.
                for c in 0..4 {
                    let z: [__m512i; 16] = std::array::from_fn(|r| {
                        _mm512_loadu_si512(lv[r].as_ptr().add(64 * c) as *const _)
                    });
                    for (d, vd) in transpose16x16(z).iter().enumerate() {
                        let (s, v) = (2 * c + d / 8, d % 8);
                        let u = if !signed {
                            *vd
                        } else if $vnni {
                            _mm512_xor_si512(*vd, _mm512_set1_epi8(-128))
                        } else {
                            tk.neg[s][v] = _mm512_movepi8_mask(*vd);
                            _mm512_abs_epi8(*vd)
                        };
                        _mm512_store_si512(tk.w[s][v].as_mut_ptr() as *mut _, u);
                    }
                }
            }
        }

        /// 16 unpacked rows (`s`, one [`TK`] per super-block) times `T` tokens, the tiles
        /// met as `KIND` says ([`K_Q4`], ...): lane `r` of result `t` is row `r` . token `t`.
        #[target_feature(enable = $feat)]
        unsafe fn tgemm_k<const KIND: u8, const T: usize>(
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
                    if KIND == K_TQ {
                        // The ternary types' `-1`: `-sum(x)` of the super-block.
                        for t in 0..T {
                            isum[t] = _mm512_set1_epi32(-crate::qmat::low_bit::ak_sum(xb[t]));
                        }
                    }
                    // Sub-blocks of 32 (Q4_K, Q5_K, IQ4_XS) or pairs of sub-blocks of 16.
                    for (sb, ws) in tk.w.iter().enumerate() {
                        let w: [__m512i; 8] =
                            std::array::from_fn(|v| _mm512_load_si512(ws[v].as_ptr() as *const _));
                        if KIND == K_TQ {
                            // One scale: the levels meet the activations in their order.
                            for t in 0..T {
                                let xq = xb[t].qs.as_ptr().add(32 * sb) as *const i32;
                                for (v, wv) in w.iter().enumerate() {
                                    let xv = _mm512_set1_epi32(xq.add(v).read_unaligned());
                                    isum[t] = $dp!(isum[t], *wv, xv);
                                }
                            }
                        } else if KIND == K_Q4 || KIND == K_IQ4 || KIND == K_IQ32 {
                            let sc = _mm512_load_si512(tk.sc[sb].as_ptr() as *const _);
                            // The sub-block's two halves of 16 in the activations.
                            let (o0, o1) = if KIND == K_Q4 {
                                (32 * k_pos(sb), 32 * k_pos(sb) + 16)
                            } else if KIND == K_IQ4 {
                                (16 * iq4_pos(2 * sb), 16 * iq4_pos(2 * sb + 1))
                            } else {
                                (32 * sb, 32 * sb + 16)
                            };
                            let signed = KIND != K_Q4;
                            for t in 0..T {
                                let xq = xb[t].qs.as_ptr();
                                let (x0, x1) = (xq.add(o0) as *const i32, xq.add(o1) as *const i32);
                                // Signed levels with VNNI: `v ^ 0x80 = v + 128`, corrected here.
                                let c = if signed && $vnni {
                                    -128 * xb[t].bsums32[sb] as i32
                                } else {
                                    0
                                };
                                // Two chains of 4 products (the tokens' 8 chains of 8
                                // would wait on the product's latency).
                                let mut ii = [_mm512_set1_epi32(c), _mm512_setzero_si512()];
                                for (v, wv) in w.iter().enumerate() {
                                    let xp = if v < 4 { x0.add(v) } else { x1.add(v - 4) };
                                    let xv = _mm512_set1_epi32(xp.read_unaligned());
                                    let xv = if signed && !$vnni {
                                        _mm512_mask_sub_epi8(
                                            xv,
                                            tk.neg[sb][v],
                                            _mm512_setzero_si512(),
                                            xv,
                                        )
                                    } else {
                                        xv
                                    };
                                    ii[v / 4] = $dp!(ii[v / 4], *wv, xv);
                                }
                                let i = _mm512_add_epi32(ii[0], ii[1]);
                                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(i, sc));
                            }
                        } else {
                            for h in 0..2 {
                                let j = 2 * sb + h;
                                let sc = _mm512_load_si512(tk.sc[j].as_ptr() as *const _);
                                let p = if KIND == K_Q6 || KIND == K_IQ16 {
                                    j
                                } else {
                                    q2_pos(j)
                                };
                                let signed = KIND == K_IQ16;
                                for t in 0..T {
                                    let xq = xb[t].qs.as_ptr().add(16 * p) as *const i32;
                                    // Signed levels with VNNI: `v ^ 0x80 = v + 128`, corrected.
                                    let c = if signed && $vnni {
                                        -128 * xb[t].bsums16[j] as i32
                                    } else {
                                        xb[t].c16[j]
                                    };
                                    let mut i = _mm512_set1_epi32(c);
                                    for v in 0..4 {
                                        let xv = _mm512_set1_epi32(xq.add(v).read_unaligned());
                                        let xv = if signed && !$vnni {
                                            _mm512_mask_sub_epi8(
                                                xv,
                                                tk.neg[sb][4 * h + v],
                                                _mm512_setzero_si512(),
                                                xv,
                                            )
                                        } else {
                                            xv
                                        };
                                        i = $dp!(i, w[4 * h + v], xv);
                                    }
                                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(i, sc));
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
                        if KIND == K_Q4 || KIND == K_Q2 {
                            // Pairs of mins times pairs of sub-block sums (of 32 or 16).
                            let (bs, np) = if KIND == K_Q4 {
                                (xb[t].bsums32.as_ptr() as *const i32, 4)
                            } else {
                                (xb[t].bsums16.as_ptr() as *const i32, 8)
                            };
                            let mut m = _mm512_setzero_si512();
                            for i in 0..np {
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

        impl Job<'_> {
            /// Rows `r0..` of every token for K-quants, 16 rows at a time through the
            /// unpacked scratch.
            fn rows16_k(&self, r0: usize, outs: &mut [&mut [f32]]) {
                let (nb, bb, dtype) = (self.a.nb, self.w.dtype.block_bytes(), self.w.dtype);
                let kind = match dtype {
                    DType::Q4_K | DType::Q5_K => K_Q4,
                    DType::Q6_K | DType::IQ1_S | DType::IQ1_M => K_Q6,
                    DType::Q3_K => K_Q3,
                    DType::Q2_K => K_Q2,
                    d if iq_kind(d).is_some_and(iq_sub16) => K_IQ16,
                    d if iq_kind(d).is_some() => K_IQ32,
                    DType::TQ2_0 | DType::TQ1_0 => K_TQ,
                    _ => K_IQ4,
                };
                let nrows = outs[0].len();
                let mut scratch = vec![TK_ZERO; nb];
                let mut lv = [[0u8; 256]; 16];
                let mut rt = 0;
                while rt < nrows {
                    let nr = 16.min(nrows - rt);
                    for (k, tk) in scratch.iter_mut().enumerate() {
                        let rows: [Option<*const u8>; 16] = std::array::from_fn(|r| {
                            (r < nr).then(|| self.w.row_bytes(r0 + rt + r)[k * bb..].as_ptr())
                        });
                        // SAFETY: the token proves the features; every Some pointer is at
                        // a whole super-block of its row.
                        unsafe { unpack_k(&rows, dtype, &mut lv, tk) };
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
                                    match kind {
                                        K_Q4 => tgemm_k::<K_Q4, $T>(&scratch, x),
                                        K_Q6 => tgemm_k::<K_Q6, $T>(&scratch, x),
                                        K_Q3 => tgemm_k::<K_Q3, $T>(&scratch, x),
                                        K_Q2 => tgemm_k::<K_Q2, $T>(&scratch, x),
                                        K_IQ32 => tgemm_k::<K_IQ32, $T>(&scratch, x),
                                        K_IQ16 => tgemm_k::<K_IQ16, $T>(&scratch, x),
                                        K_TQ => tgemm_k::<K_TQ, $T>(&scratch, x),
                                        _ => tgemm_k::<K_IQ4, $T>(&scratch, x),
                                    }
                                };
                                for (t, a) in acc.iter().enumerate() {
                                    // SAFETY: a __m512 is 16 f32 (a plain move, where
                                    // the store intrinsic would be a call out of this
                                    // non-AVX-512 function).
                                    let lanes: [f32; 16] = unsafe { std::mem::transmute(*a) };
                                    put_lanes(&mut outs[t0 + t][rt..rt + nr], &lanes);
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
                let dtype = self.w.dtype;
                let (nb, bb) = (self.a.nb, weight_block_bytes(dtype));
                let x4 = dtype.is_x4();
                // The types with signed levels are unpacked in the Q8_0 encoding; Q4_1 and
                // Q5_1 in unsigned levels with their mins apart, Q4_0 in unsigned levels.
                let q8 = matches!(
                    dtype,
                    DType::Q8_0
                        | DType::I8
                        | DType::Q5_0
                        | DType::IQ4_NL
                        | DType::MXFP4
                        | DType::Q8_0X4
                );
                let min = matches!(dtype, DType::Q4_1 | DType::Q5_1);
                let nrows = outs[0].len();
                let mut scratch = vec![TB_ZERO; nb];
                let mut mins = vec![M16([0.0; 16]); if min { nb } else { 0 }];
                let mut no_min = M16([0.0; 16]);
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
                            let m = if min { &mut mins[k] } else { &mut no_min };
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
                                match dtype {
                                    DType::I8 => unpack_i8(&rows, idx, tb),
                                    DType::Q8_0 => unpack_q8_0(&rows, idx, tb),
                                    DType::Q4_0 => unpack_q4_0(&rows, idx, tb),
                                    DType::Q5_0 => unpack_q5::<false>(&rows, idx, tb, m),
                                    DType::Q4_1 => unpack_q4_1(&rows, idx, tb, m),
                                    DType::Q5_1 => unpack_q5::<true>(&rows, idx, tb, m),
                                    DType::IQ4_NL => unpack_lut::<false>(&rows, idx, tb),
                                    DType::MXFP4 => unpack_lut::<true>(&rows, idx, tb),
                                    d => unreachable!("{} is not in blocks of 32", d.name()),
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
                                        tgemm::<true, false, $T>(&scratch, &[], x)
                                    } else if min {
                                        tgemm::<false, true, $T>(&scratch, &mins, x)
                                    } else {
                                        tgemm::<false, false, $T>(&scratch, &[], x)
                                    }
                                };
                                for (t, a) in acc.iter().enumerate() {
                                    // SAFETY: a __m512 is 16 f32 (a plain move, where
                                    // the store intrinsic would be a call out of this
                                    // non-AVX-512 function).
                                    let lanes: [f32; 16] = unsafe { std::mem::transmute(*a) };
                                    put_lanes(&mut outs[t0 + t][rt..rt + nr], &lanes);
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
    };
}
