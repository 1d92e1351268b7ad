//! AVX-512 kernels of the low-bit block types (`crate::low_bit` has their formulas and scalar
//! twins), expanded once per feature set by `avx512_quant!` (mod.rs) next to the others:
//!
//! - TQ2_0 decode: one super-block (66 bytes) per step, the bit pairs `2k` of its 64 bytes of
//!   levels against one activation register each (Q2_K's order), the `-1` as the start of the
//!   integer accumulator (the activations' `c16`, `-sum(x)` per sub-block of 16). Prefill: the
//!   levels in the activations' order in a [`super::TK`] tile of kind `K_TQ` (one scale per
//!   super-block).

/// The AVX-512 kernels of the low-bit types for one feature set (the arguments of
/// `avx512_quant!`).
macro_rules! avx512_low_bit {
    ($feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
        /// `R` TQ2_0 rows (`nb` super-blocks each at `p[r]`) times one token (activations in
        /// the order of [`crate::qmat::q2_pos`], `c16 = -bsums16`).
        #[target_feature(enable = $feat)]
        unsafe fn rows_tq2_0<const R: usize>(
            p: [*const u8; R],
            nb: usize,
            x: *const AK,
        ) -> [f32; R] {
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
                        let b = p[r].add(66 * k);
                        prefetch_lines(b, 2);
                        let q = levels2_k(b);
                        let mut i = c;
                        for g in 0..4 {
                            i = $dp!(i, q[g], xv[g]);
                        }
                        acc[r] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i),
                            _mm512_set1_ps(f16_at(b.add(64)) * xb.d),
                            acc[r],
                        );
                    }
                }
                std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]))
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
    };
}
