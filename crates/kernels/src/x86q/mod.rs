//! x86-64 SIMD kernels for block-quantized weights: AVX2 (`vpmaddubsw`), AVX-512BW and
//! AVX-512 VNNI (`vpdpbusd`, `vpdpwssd`). The AVX-512 kernels are written once in macros and
//! compiled twice, once per feature set, because a `#[target_feature]` function cannot be
//! generic over its features.
//!
//! Every kernel computes, per 32-bit lane, an exact integer partial sum of `w * x` over a part
//! of a block (signed weight levels; the unsigned-operand tricks are corrected exactly in the
//! same lane), converts it to f32 and scales it per block (Q4_1, Q5_1: the sum of `q * x`, and
//! their min times the activations' exact sum added in f32): the scalar twins in `qmat.rs`
//! compute the same block integers, and the results differ only in the order and grouping of
//! the f32 operations. AVX2 has kernels for I8, Q8_0, Q4_0, Q4_K and Q6_K only; the other types
//! take the portable job there (`quant_product` in lib.rs).
//!
//! Layouts are the file's (GGUF) blocks, read in place with unaligned loads; nothing is
//! repacked in memory. Decode (one token) streams each row once with few operations per byte;
//! prefill (several tokens) reuses each unpacked weight block for several tokens. The files:
//!
//! - `mod.rs`: the kernel types and their dispatch, the activation quantizers compiled per
//!   instruction set, what the kernels share, and `avx512_quant!`, which expands the AVX-512
//!   kernels of the files below into one module per feature set (`bw`, `vnni`) with the job
//!   that picks among them.
//! - `decode.rs`: AVX-512 decode of the plain block rows, one row (or 4 long rows) per pass.
//! - `low_bit.rs`: AVX-512 decode of TQ2_0, TQ1_0, IQ1_S and IQ1_M and their levels for the
//!   prefill tiles.
//! - `x4.rs`: AVX-512 kernels of the x4 layouts (quads of rows interleaved per 16 blocks).
//! - `prefill.rs`: AVX-512 prefill, 16-row tiles unpacked into scratch for up to 8 tokens.
//! - `iq.rs`: AVX-512 kernels of the grid I-quants (IQ2_XXS..IQ3_S): decode and the unpacking
//!   of their prefill tiles.
//! - `avx2.rs`: the AVX2 kernels, one row x up to 4 tokens.
//! - `tables.rs`: the prefetch distance and the AVX-512 permutation tables.

mod avx2;
#[macro_use]
mod decode;
#[macro_use]
mod iq;
#[macro_use]
mod low_bit;
#[macro_use]
mod prefill;
mod tables;
#[macro_use]
mod x4;

use super::qmat::{
    act_block_len, drive, group_offset, iq4_pos, k_pos, q2_pos, weight_block_bytes, A4Group,
    A8Pair, QActs, QJob, A16, AK, B32,
};
use super::x86::{Avx2, Avx512, Avx512Vnni};
use super::{DType, Isa, MatRef};
use avx2::Avx2Job;
use frugal_quant::tables::{IQ1S_GRID, KVALUES_FP4, KVALUES_IQ4NL};
use frugal_quant::x4::piece_at;
use iq::*;
use prefill::{
    put_lanes, K_IQ16, K_IQ32, K_IQ4, K_Q2, K_Q3, K_Q4, K_Q6, K_TQ, M16, TB, TB_ZERO, TK, TK_ZERO,
    ZERO_BLOCK,
};
use std::arch::x86_64::*;
use tables::*;

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

/// Checks what every kernel relies on: `w` holds `rows` whole rows of its dtype and the
/// activations have the matching number of blocks per token.
fn check_job(w: &MatRef, a: &QActs, n: usize) {
    let rb = w.dtype.row_bytes(w.cols).expect("whole blocks");
    assert_eq!(w.row_stride(), rb, "row stride");
    assert_eq!(w.data.len(), w.rows * rb, "matrix byte length");
    assert_eq!(a.nb * act_block_len(w.dtype), w.cols, "activation blocks");
    assert_eq!(a.nb * weight_block_bytes(w.dtype), rb, "weight blocks");
    if act_block_len(w.dtype) == 32 {
        assert_eq!(a.b32.len(), n * a.nb)
    } else {
        assert_eq!(a.k.len(), n * a.nb)
    }
}

/// The block types of the 4-block decode driver (`rows_g4` in `decode.rs`), as its const
/// parameter.
const G_Q5_0: u8 = 0;
const G_Q4_1: u8 = 1;
const G_Q5_1: u8 = 2;
const G_IQ4_NL: u8 = 3;
const G_MXFP4: u8 = 4;

/// The 4-block decode driver's name for `dtype`, if it multiplies it.
fn g4_kind(dtype: DType) -> Option<u8> {
    match dtype {
        DType::Q5_0 => Some(G_Q5_0),
        DType::Q4_1 => Some(G_Q4_1),
        DType::Q5_1 => Some(G_Q5_1),
        DType::IQ4_NL => Some(G_IQ4_NL),
        DType::MXFP4 => Some(G_MXFP4),
        _ => None,
    }
}

/// Bytes per block of the 4-block decode driver's type `k`.
const fn g4_block_bytes(k: u8) -> usize {
    match k {
        G_Q5_0 => 22,
        G_Q4_1 => 20,
        G_Q5_1 => 24,
        G_IQ4_NL => 18,
        _ => 17,
    }
}

/// The largest of [`g4_block_bytes`].
const G4_MAX_BYTES: usize = 24;

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
/// byte and word dot products. The kernels of `decode.rs`, `x4.rs` and `prefill.rs` are
/// expanded into one module, so that they and the job call each other by name.
macro_rules! avx512_quant {
    ($m:ident, $token:ty, $feat:literal, $vnni:literal, $dp:ident, $dpw:ident) => {
        pub(crate) mod $m {
            use super::*;

            avx512_decode!($feat, $vnni, $dp, $dpw);
            avx512_iq!($feat, $vnni, $dp, $dpw);
            avx512_low_bit!($feat, $vnni, $dp, $dpw);
            avx512_x4!($feat, $vnni, $dp, $dpw);
            avx512_prefill!($feat, $vnni, $dp, $dpw);

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
                            d if group_offset(d).is_some() => {
                                assert_eq!(a.groups.len(), a.nb.div_ceil(4))
                            }
                            DType::Q4_0X4 | DType::Q8_0X4 => {
                                assert_eq!(a.pieces.len(), a.nb.div_ceil(16))
                            }
                            _ => {}
                        }
                    }
                    Job { _k: k, w, a, n }
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
                    // Rows whose activation layout outgrows L1 (2 bytes per value for the
                    // A4Group layout of Q4_0 and the like, 3 for Q8_0; past 16 KB) go 4 at a
                    // time, sharing each activation load. K-quants: 1.25 bytes per value, past
                    // 16 KB too.
                    let multi = match self.w.dtype {
                        d if group_offset(d).is_some() => 2 * self.w.cols > 16 << 10,
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
                                    d if g4_kind(d).is_some() => {
                                        rows_g4_of::<4>(d, p, nb, &self.a.groups)
                                    }
                                    DType::Q8_0 => {
                                        rows_q8_0::<4, false>(p, nb, self.a.pairs.as_ptr())
                                    }
                                    DType::I8 => rows_q8_0::<4, true>(p, nb, self.a.pairs.as_ptr()),
                                    DType::Q4_K => rows_q4_k::<4>(p, nb, self.a.k(0).as_ptr()),
                                    DType::Q6_K => rows_q6_k::<4>(p, nb, self.a.k(0).as_ptr()),
                                    DType::Q5_K => rows_q5_k::<4>(p, nb, self.a.k(0).as_ptr()),
                                    DType::Q3_K => rows_q3_k::<4>(p, nb, self.a.k(0).as_ptr()),
                                    DType::Q2_K => rows_q2_k::<4>(p, nb, self.a.k(0).as_ptr()),
                                    DType::IQ4_XS => rows_iq4_xs::<4>(p, nb, self.a.k(0).as_ptr()),
                                    d if iq_kind(d).is_some() => {
                                        rows_iq_of::<4>(d, p, nb, self.a.k(0).as_ptr())
                                    }
                                    DType::TQ2_0 => {
                                        rows_tq::<4, false>(p, nb, self.a.k(0).as_ptr())
                                    }
                                    DType::TQ1_0 => rows_tq::<4, true>(p, nb, self.a.k(0).as_ptr()),
                                    DType::IQ1_S => {
                                        rows_iq1::<4, false>(p, nb, self.a.k(0).as_ptr())
                                    }
                                    DType::IQ1_M => {
                                        rows_iq1::<4, true>(p, nb, self.a.k(0).as_ptr())
                                    }
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
                                d if g4_kind(d).is_some() => {
                                    rows_g4_of::<1>(d, [p], nb, &self.a.groups)[0]
                                }
                                DType::Q4_K => rows_q4_k::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                DType::Q6_K => rows_q6_k::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                DType::Q5_K => rows_q5_k::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                DType::Q3_K => rows_q3_k::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                DType::Q2_K => rows_q2_k::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                DType::IQ4_XS => rows_iq4_xs::<1>([p], nb, self.a.k(0).as_ptr())[0],
                                d if iq_kind(d).is_some() => {
                                    rows_iq_of::<1>(d, [p], nb, self.a.k(0).as_ptr())[0]
                                }
                                DType::TQ2_0 => {
                                    rows_tq::<1, false>([p], nb, self.a.k(0).as_ptr())[0]
                                }
                                DType::TQ1_0 => {
                                    rows_tq::<1, true>([p], nb, self.a.k(0).as_ptr())[0]
                                }
                                DType::IQ1_S => {
                                    rows_iq1::<1, false>([p], nb, self.a.k(0).as_ptr())[0]
                                }
                                DType::IQ1_M => {
                                    rows_iq1::<1, true>([p], nb, self.a.k(0).as_ptr())[0]
                                }
                                d => unreachable!("{} is not quantized", d.name()),
                            }
                        };
                    }
                }

                fn rows(&self, r0: usize, outs: &mut [&mut [f32]]) {
                    assert_eq!(outs.len(), self.n, "one output per token");
                    assert!(r0 + outs[0].len() <= self.w.rows, "rows inside the matrix");
                    if act_block_len(self.w.dtype) == 32 {
                        self.rows16(r0, outs)
                    } else {
                        self.rows16_k(r0, outs)
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

    /// The AVX-512 E8M0 scales equal ggml's conversion bit for bit, for every exponent byte
    /// (the subnormal `0` and `1` and the largest, 255, included).
    #[test]
    fn e8m0_half_matches_ggml() {
        use std::arch::x86_64::*;
        if super::Avx512::detect().is_none() {
            return;
        }
        for e0 in (0..256).step_by(16) {
            let e: [u8; 16] = std::array::from_fn(|i| (e0 + i) as u8);
            // SAFETY: the CPU has AVX-512F/BW/VL (just detected); e is 16 bytes.
            let v: [f32; 16] = unsafe {
                let x = _mm512_cvtepu8_epi32(_mm_loadu_si128(e.as_ptr() as *const _));
                std::mem::transmute(super::bw::e8m0_half(x))
            };
            for (i, &b) in e.iter().enumerate() {
                let want = frugal_quant::fp4::e8m0_to_f32_half(b);
                assert_eq!(v[i].to_bits(), want.to_bits(), "e = {b}");
            }
        }
    }
}
