//! Every SIMD path against the scalar reference, on random shapes including ragged tails.

use super::*;
use half::{bf16, f16};
use qmat::act_block_len;

/// SplitMix64: small deterministic generator, enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Random weights of `dtype` as raw bytes, at an odd offset inside the returned buffer when
/// `misalign` (to exercise unaligned loads): returns (buffer, offset).
fn random_matrix(
    rng: &mut Rng,
    dtype: DType,
    rows: usize,
    cols: usize,
    misalign: bool,
) -> (Vec<u8>, usize) {
    if let Some(plain_dtype) = frugal_quant::x4::plain_of(dtype) {
        // Plain rows, interleaved quad by quad as the loader does.
        let (plain, _) = random_matrix(rng, plain_dtype, rows, cols, false);
        let off = usize::from(misalign);
        let mut buf = vec![0u8; off];
        buf.extend(interleaved(plain_dtype, &plain, cols));
        return (buf, off);
    }
    if dtype.is_quantized() {
        // Any byte offset: quantized blocks are read with unaligned loads.
        let off = usize::from(misalign);
        let rb = dtype.row_bytes(cols).expect("whole blocks");
        let mut buf = vec![0u8; off + rows * rb];
        if !QUANTIZABLE.contains(&dtype) {
            // Every bit pattern is a valid block: random bytes, with scales of sane size.
            buf[off..]
                .iter_mut()
                .for_each(|b| *b = rng.next_u64() as u8);
            random_scales(rng, dtype, &mut buf[off..]);
            return (buf, off);
        }
        let mut vals = vec![0f32; cols];
        for r in 0..rows {
            vals.iter_mut().for_each(|v| *v = rng.f32() * 2.0);
            frugal_quant::quantize_row(&vals, dtype, &mut buf[off + r * rb..off + (r + 1) * rb]);
        }
        return (buf, off);
    }
    let off = if misalign { dtype.block_bytes() } else { 0 };
    let mut buf = vec![0u8; off];
    for _ in 0..rows * cols {
        let v = rng.f32() * 2.0;
        match dtype {
            DType::F32 => buf.extend_from_slice(&v.to_le_bytes()),
            DType::F16 => buf.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
            DType::BF16 => buf.extend_from_slice(&bf16::from_f32(v).to_le_bytes()),
            DType::I8 => buf.push(((v * 63.5).round() as i8) as u8),
            _ => unreachable!("quantized above"),
        }
    }
    (buf, off)
}

/// The block types `frugal_quant::quantize_row` writes; tests make the others' blocks from
/// random bytes.
const QUANTIZABLE: [DType; 4] = [DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K];

/// Overwrites the scale fields of every block in `blocks` (whole blocks of `dtype`) with
/// random f16 scales in `[0.001, 0.02)` (E8M0 exponents near 2^-4 for MXFP4), so random
/// blocks hold weights of the size trained ones have.
fn random_scales(rng: &mut Rng, dtype: DType, blocks: &mut [u8]) {
    let f16_at = dtype
        .f16_scale_offsets()
        .unwrap_or_else(|| panic!("no random blocks for {}", dtype.name()));
    for b in blocks.chunks_exact_mut(dtype.block_bytes()) {
        for &o in f16_at {
            let v = f16::from_f32(0.001 + 0.019 * (rng.f32() + 1.0) / 2.0);
            b[o..o + 2].copy_from_slice(&v.to_le_bytes());
        }
        if dtype == DType::MXFP4 {
            b[0] = 121 + rng.below(5) as u8;
        }
        if dtype == DType::IQ1_M {
            // The f16 scale in the top nibbles of the four scale words (bytes 49, 51, ...).
            let v = f16::from_f32(0.001 + 0.019 * (rng.f32() + 1.0) / 2.0).to_bits();
            for k in 0..4 {
                let n = ((v >> (4 * k)) & 15) as u8;
                b[49 + 2 * k] = (b[49 + 2 * k] & 15) | n << 4;
            }
        }
    }
}

/// Whole quads of plain rows of `cols` values (`plain`) in their x4 layout.
fn interleaved(plain_dtype: DType, plain: &[u8], cols: usize) -> Vec<u8> {
    let quad = 4 * plain_dtype.row_bytes(cols).expect("whole blocks");
    let mut x4 = vec![0u8; plain.len()];
    for (p, q) in plain.chunks_exact(quad).zip(x4.chunks_exact_mut(quad)) {
        frugal_quant::x4::interleave_quad(plain_dtype, p, q);
    }
    x4
}

/// `sum_c |w[r,c] * x[t,c]|` for every output: the scale of the rounding error.
fn abs_scale(w: &MatRef, x: &[f32], n: usize) -> Vec<f32> {
    let mut wa = vec![0f32; w.cols];
    let mut out = vec![0f32; n * w.rows];
    for r in 0..w.rows {
        frugal_quant::row_to_f32(w, r, &mut wa);
        for t in 0..n {
            out[t * w.rows + r] = wa
                .iter()
                .zip(&x[t * w.cols..(t + 1) * w.cols])
                .map(|(a, b)| (a * b).abs())
                .sum();
        }
    }
    out
}

fn assert_close(got: &[f32], want: &[f32], scale: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for i in 0..got.len() {
        let tol = 2e-6 * scale[i] + 1e-30;
        assert!(
            (got[i] - want[i]).abs() <= tol,
            "{what}: index {i}: got {} want {} (tol {tol})",
            got[i],
            want[i]
        );
    }
}

fn check_shape(rng: &mut Rng, dtype: DType, rows: usize, cols: usize, n: usize) {
    let (buf, off) = random_matrix(rng, dtype, rows, cols, rng.0 % 2 == 1);
    let scales: Vec<u8> = (0..rows)
        .flat_map(|_| bf16::from_f32(0.01 + rng.f32().abs()).to_le_bytes())
        .collect();
    let mut w = MatRef::new(&buf[off..], dtype, rows, cols);
    if dtype == DType::I8 {
        w = w.with_scale(&scales, DType::BF16);
    }
    let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
    let mut want = vec![0f32; n * rows];
    scalar::matmul(&w, &x, n, &mut want);
    let scale = abs_scale(&w, &x, n);
    for level in Isa::supported() {
        let mut got = vec![f32::NAN; n * rows];
        matmul_with(level, &w, &x, n, &mut got);
        let what = format!("{} {} {rows}x{cols} n={n}", level.name(), dtype.name());
        assert_close(&got, &want, &scale, &what);
    }
    let mut got = vec![f32::NAN; n * rows];
    matmul(&w, &x, n, &mut got);
    assert_close(&got, &want, &scale, "matmul");
}

const DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::I8];

#[test]
fn simd_matches_scalar_small_ragged() {
    let mut rng = Rng(1);
    for dtype in DTYPES {
        for cols in 1..=70 {
            let rows = 1 + rng.below(37);
            let n = 1 + rng.below(9);
            check_shape(&mut rng, dtype, rows, cols, n);
        }
        for rows in 1..=37 {
            for n in 1..=9 {
                let cols = 1 + rng.below(70);
                check_shape(&mut rng, dtype, rows, cols, n);
            }
        }
    }
}

#[test]
fn simd_matches_scalar_large() {
    let mut rng = Rng(2);
    for dtype in DTYPES {
        for &(rows, cols, n) in &[
            (300, 2048, 1),
            (129, 1000, 13),
            (64, 4099, 3),
            (37, 5000, 70),
            (1024, 256, 1),
        ] {
            check_shape(&mut rng, dtype, rows, cols, n);
        }
    }
}

#[test]
fn empty_shapes() {
    let w = MatRef::new(&[], DType::BF16, 0, 5);
    let mut y = [];
    matmul(&w, &[0.0; 10], 2, &mut y);
    let w = MatRef::new(&[], DType::F32, 3, 0);
    let mut y = [1.0; 6];
    matmul(&w, &[], 2, &mut y);
    assert_eq!(y, [0.0; 6]);
}

#[test]
fn round_to_bf16_is_nearest_even() {
    for v in [
        1.0f32,
        -2.5,
        1e-40,
        f32::MAX,
        f32::INFINITY,
        -0.0,
        3.000_000_2,
        1.007_812_5,
    ] {
        assert_eq!(
            scalar::bf16_bits(v),
            half::bf16::from_f32(v).to_bits(),
            "{v}"
        );
    }
    assert!(half::bf16::from_bits(scalar::bf16_bits(f32::NAN)).is_nan());
    // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
    let halfway = f32::from_bits(0x3F80_8000);
    let above = f32::from_bits(0x3F80_8001);
    let odd_halfway = f32::from_bits(0x3F81_8000);
    assert_eq!(
        scalar::round_to_bf16(&[halfway, above, odd_halfway]),
        vec![0x3F80, 0x3F81, 0x3F82]
    );
}

#[test]
fn bf16_fast_matches_twin() {
    let mut rng = Rng(3);
    let mut shapes: Vec<(usize, usize, usize)> = Vec::new();
    for cols in 1..=70 {
        shapes.push((1 + rng.below(37), cols, 1 + rng.below(9)));
    }
    shapes.extend_from_slice(&[
        (300, 2048, 1),
        (5, 130, 1),
        (7, 97, 1),
        (3, 4099, 1),
        (129, 1000, 13),
        (37, 4099, 70),
        // The packed prefill kernel (>= 16 tokens, even columns): ragged rows and tokens.
        (129, 1000, 16),
        (37, 4098, 70),
        (61, 2048, 64),
        (7, 130, 33),
        (300, 64, 17),
        (6, 2, 80),
        (13, 34, 129),
    ]);
    for (rows, cols, n) in shapes {
        let (buf, off) = random_matrix(&mut rng, DType::BF16, rows, cols, cols % 2 == 1);
        let w = MatRef::new(&buf[off..], DType::BF16, rows, cols);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
        let mut want = vec![0f32; n * rows];
        scalar::matmul_bf16_fast(&w, &x, n, &mut want);
        let mut got = vec![f32::NAN; n * rows];
        matmul_bf16_fast(&w, &x, n, &mut got);
        let scale = abs_scale(&w, &x, n);
        if has_bf16_dot() {
            assert_close(
                &got,
                &want,
                &scale,
                &format!("bf16 fast {rows}x{cols} n={n}"),
            );
        } else {
            let mut exact = vec![0f32; n * rows];
            scalar::matmul(&w, &x, n, &mut exact);
            assert_close(
                &got,
                &exact,
                &scale,
                &format!("bf16 fast fallback {rows}x{cols} n={n}"),
            );
        }
        // The rounding of the activations stays within bf16 precision of the exact product.
        let mut exact = vec![0f32; n * rows];
        scalar::matmul(&w, &x, n, &mut exact);
        for i in 0..exact.len() {
            assert!((want[i] - exact[i]).abs() <= 2f32.powi(-8) * scale[i] + 1e-30);
        }
    }
}

#[test]
fn deinterleave32_splits_even_and_odd() {
    let x: Vec<f32> = (0..70).map(|i| i as f32).collect();
    let d = scalar::deinterleave32(&x);
    assert_eq!(d.len(), 64);
    for b in 0..2 {
        for i in 0..16 {
            assert_eq!(d[b * 32 + i], (b * 32 + 2 * i) as f32);
            assert_eq!(d[b * 32 + 16 + i], (b * 32 + 2 * i + 1) as f32);
        }
    }
}

/// The bf16 decode kernel (n = 1) on every column count up to a few blocks, ragged tails,
/// whole and partial 64-column steps, misaligned rows.
#[test]
fn bf16_decode_matches_scalar() {
    let mut rng = Rng(4);
    for cols in (1..=200).chain([2048, 2048 + 17, 4096 + 32]) {
        let rows = 1 + rng.below(9);
        check_shape(&mut rng, DType::BF16, rows, cols, 1);
    }
}

#[test]
fn bf16_fast_many_equals_one_by_one() {
    let mut rng = Rng(11);
    for &(cols, n) in &[(64usize, 1usize), (130, 5), (96, 16), (2050, 40), (33, 20)] {
        let shapes = [37usize, 6, 130];
        let mats: Vec<(Vec<u8>, usize)> = shapes
            .iter()
            .map(|&rows| random_matrix(&mut rng, DType::BF16, rows, cols, false))
            .collect();
        let ws: Vec<MatRef> = mats
            .iter()
            .zip(shapes)
            .map(|((b, off), rows)| MatRef::new(&b[*off..], DType::BF16, rows, cols))
            .collect();
        let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
        let mut ys: Vec<Vec<f32>> = shapes.iter().map(|r| vec![f32::NAN; n * r]).collect();
        {
            let mut items: Vec<(&MatRef, &mut [f32])> = ws
                .iter()
                .zip(ys.iter_mut())
                .map(|(w, y)| (w, y.as_mut_slice()))
                .collect();
            matmul_bf16_fast_many(&mut items, &x, n);
        }
        for (w, y) in ws.iter().zip(&ys) {
            let mut one = vec![0f32; n * w.rows];
            matmul_bf16_fast(w, &x, n, &mut one);
            assert_eq!(y, &one, "{}x{cols} n={n}", w.rows);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized weights

/// The block formats with integer kernels.
const QTYPES: [DType; 22] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q5_0,
    DType::Q4_1,
    DType::Q5_1,
    DType::IQ4_NL,
    DType::MXFP4,
    DType::Q4_K,
    DType::Q6_K,
    DType::Q5_K,
    DType::Q3_K,
    DType::Q2_K,
    DType::IQ4_XS,
    DType::IQ2_XXS,
    DType::IQ2_XS,
    DType::IQ2_S,
    DType::IQ3_XXS,
    DType::IQ3_S,
    DType::TQ2_0,
    DType::TQ1_0,
    DType::IQ1_S,
    DType::IQ1_M,
];
/// The block formats and int8 with per-row scales, which the fast path runs through the same
/// integer kernels ([`matmul_fast_with`]).
fn qtypes_i8() -> impl Iterator<Item = DType> {
    QTYPES.into_iter().chain([DType::I8])
}

/// Activations with the shapes real ones have: mostly small, a few large outliers, some
/// all-zero blocks.
fn q_activations(rng: &mut Rng, len: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..len).map(|_| rng.f32()).collect();
    for _ in 0..len / 64 {
        let i = rng.below(len);
        x[i] *= 40.0;
    }
    if len >= 64 && rng.below(2) == 0 {
        let b = rng.below(len / 32) * 32;
        x[b..b + 32].fill(0.0);
    }
    x
}

/// Largest `|x|` of the activation block (of `bl` values) holding element `i` of a token.
fn block_amax(xt: &[f32], i: usize, bl: usize) -> f32 {
    let b = i / bl * bl;
    xt[b..b + bl].iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Per output, a bound on the magnitude of every partial sum any kernel forms: the sum over
/// the row of `|weight term| * max |x|` of the element's activation block, where the weight
/// term is what the kernels multiply before scaling (`w` for Q8_0/Q4_0/IQ4_XS and the other
/// types without a min, whose integer scales and offsets stay inside exact integer sums; `d*q`
/// and `m` for Q4_1/Q5_1, whose weights `d*q + m` may cancel; `d*sc*q` and `dmin*m` for Q4_K,
/// Q5_K and Q2_K; `d*|sc|*(q + 32)` for Q6_K and `d*|sc - 32|*(q + 4)` for Q3_K, whose
/// offsets are applied to sub-block sums in other lanes than the products).
fn q_abs_scale(w: &MatRef, x: &[f32], n: usize) -> Vec<f32> {
    let bl = act_block_len(w.dtype);
    let mut wa = vec![0f32; w.cols];
    let mut out = vec![0f32; n * w.rows];
    for r in 0..w.rows {
        match w.dtype {
            DType::Q8_0
            | DType::Q4_0
            | DType::Q5_0
            | DType::IQ4_XS
            | DType::IQ4_NL
            | DType::MXFP4
            | DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ2_S
            | DType::IQ3_XXS
            | DType::IQ3_S
            | DType::I8
            | DType::Q4_0X4
            | DType::Q8_0X4 => {
                frugal_quant::row_to_f32(w, r, &mut wa);
                wa.iter_mut().for_each(|v| *v = v.abs());
            }
            DType::Q4_1 | DType::Q5_1 => {
                // f16 d, f16 m, (Q5_1: the fifth bits qh,) 16 bytes of nibbles.
                let bb = w.dtype.block_bytes();
                for (b, blk) in w.row_bytes(r).chunks_exact(bb).enumerate() {
                    let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32().abs();
                    let m = f16::from_le_bytes([blk[2], blk[3]]).to_f32().abs();
                    let qh = match w.dtype {
                        DType::Q5_1 => u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]),
                        _ => 0,
                    };
                    let qs = &blk[bb - 16..];
                    for i in 0..32 {
                        let nib = if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 };
                        let q = nib as u32 | ((qh >> i) & 1) << 4;
                        wa[32 * b + i] = d * q as f32 + m;
                    }
                }
            }
            DType::Q4_K => {
                for (b, blk) in w.row_bytes(r).chunks_exact(144).enumerate() {
                    let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32().abs();
                    let dmin = f16::from_le_bytes([blk[2], blk[3]]).to_f32().abs();
                    let (sc, m) = frugal_quant::q4_k::scales_mins(&blk[4..16]);
                    for j in 0..8 {
                        for i in 0..32 {
                            wa[256 * b + 32 * j + i] = d * sc[j] as f32 * 15.0 + dmin * m[j] as f32;
                        }
                    }
                }
            }
            DType::Q5_K => {
                for (b, blk) in w.row_bytes(r).chunks_exact(176).enumerate() {
                    let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32().abs();
                    let dmin = f16::from_le_bytes([blk[2], blk[3]]).to_f32().abs();
                    let (sc, m) = frugal_quant::q4_k::scales_mins(&blk[4..16]);
                    for j in 0..8 {
                        for i in 0..32 {
                            wa[256 * b + 32 * j + i] = d * sc[j] as f32 * 31.0 + dmin * m[j] as f32;
                        }
                    }
                }
            }
            DType::Q3_K => {
                for (b, blk) in w.row_bytes(r).chunks_exact(110).enumerate() {
                    let d = f16::from_le_bytes([blk[108], blk[109]]).to_f32().abs();
                    let sc = frugal_quant::q3_k::scales(&blk[96..108]);
                    for e in 0..256 {
                        wa[256 * b + e] = d * (sc[e / 16] as f32 - 32.0).abs() * 11.0;
                    }
                }
            }
            DType::Q2_K => {
                for (b, blk) in w.row_bytes(r).chunks_exact(84).enumerate() {
                    let d = f16::from_le_bytes([blk[80], blk[81]]).to_f32().abs();
                    let dmin = f16::from_le_bytes([blk[82], blk[83]]).to_f32().abs();
                    for e in 0..256 {
                        let s = blk[e / 16];
                        wa[256 * b + e] = d * (s & 15) as f32 * 3.0 + dmin * (s >> 4) as f32;
                    }
                }
            }
            DType::TQ2_0 | DType::TQ1_0 => {
                // Levels `q` in `0..4`, the `-1` applied to the block's sum in other lanes.
                let (bb, at) = if w.dtype == DType::TQ2_0 {
                    (66, 64)
                } else {
                    (54, 52)
                };
                for (b, blk) in w.row_bytes(r).chunks_exact(bb).enumerate() {
                    let d = f16::from_le_bytes([blk[at], blk[at + 1]]).to_f32().abs();
                    wa[256 * b..256 * (b + 1)].fill(d * 4.0);
                }
            }
            DType::IQ1_S | DType::IQ1_M => {
                // Levels `8 * g + 9 + 8 * delta` in `0..=18` over 8, the `-9 / 8` applied to
                // the sub-block sums in other lanes: `d * ls * 27 / 8`.
                let bb = w.dtype.block_bytes();
                for (b, blk) in w.row_bytes(r).chunks_exact(bb).enumerate() {
                    for m in 0..16 {
                        let (d, ls) = if w.dtype == DType::IQ1_S {
                            let qh = u16::from_le_bytes([blk[34 + m / 2 * 2], blk[35 + m / 2 * 2]]);
                            let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                            (d, 2 * ((qh >> 12) & 7) + 1)
                        } else {
                            let sc: [u16; 4] = std::array::from_fn(|k| {
                                u16::from_le_bytes([blk[48 + 2 * k], blk[49 + 2 * k]])
                            });
                            let d = frugal_quant::iq1::iq1_m_scale(&sc);
                            (d, 2 * ((sc[m / 4] >> (3 * (m % 4))) & 7) + 1)
                        };
                        let v = d.abs() * ls as f32 * 27.0 / 8.0;
                        wa[256 * b + 16 * m..256 * b + 16 * m + 16].fill(v);
                    }
                }
            }
            DType::Q6_K => {
                for (b, blk) in w.row_bytes(r).chunks_exact(210).enumerate() {
                    let d = f16::from_le_bytes([blk[208], blk[209]]).to_f32().abs();
                    for e in 0..256 {
                        let sc = (blk[192 + e / 16] as i8 as f32).abs();
                        wa[256 * b + e] = d * sc * 95.0;
                    }
                }
            }
            _ => unreachable!(),
        }
        for t in 0..n {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            out[t * w.rows + r] = wa
                .iter()
                .enumerate()
                .map(|(i, a)| a * block_amax(xt, i, bl))
                .sum();
        }
    }
    out
}

fn check_quant(rng: &mut Rng, dtype: DType, rows: usize, cols: usize, n: usize) {
    let (mut buf, off) = random_matrix(rng, dtype, rows, cols, rng.0 % 2 == 1);
    let scales: Vec<u8> = (0..rows)
        .flat_map(|_| bf16::from_f32(0.01 + rng.f32().abs()).to_le_bytes())
        .collect();
    let mut w = MatRef::new(&buf[off..], dtype, rows, cols);
    if dtype == DType::I8 {
        // The extremes of int8, -128 included (gemma_pytorch's int8 may hold it; Q8_0 never does).
        let len = buf.len() - off;
        for _ in 0..len / 16 + 1 {
            let i = off + rng.below(len);
            buf[i] = if rng.below(2) == 0 { 0x80 } else { 0x7f };
        }
        w = MatRef::new(&buf[off..], dtype, rows, cols).with_scale(&scales, DType::BF16);
    }
    let x = q_activations(rng, n * cols);
    let what = |l: &str| format!("{l} {} {rows}x{cols} n={n}", dtype.name());

    // The scalar twin: integer block sums, block results added in order.
    let mut want = vec![f32::NAN; n * rows];
    matmul_fast_with(Isa::Scalar, &w, &x, n, &mut want);

    // Every SIMD level computes the same integers per block, split over lanes, and adds the
    // f32 block results in another order: with at most a few thousand terms per output the
    // rounding of those additions stays far below 1e-5 of the bound on the partial sums,
    // while one wrong block would move the result by about 1/nblocks of it.
    let scale = q_abs_scale(&w, &x, n);
    let bl = act_block_len(dtype);
    let mut wr = vec![0f32; cols];
    for level in Isa::supported() {
        let mut got = vec![f32::NAN; n * rows];
        matmul_fast_with(level, &w, &x, n, &mut got);
        for i in 0..got.len() {
            let tol = 1e-5 * scale[i] + 1e-30;
            assert!(
                (got[i] - want[i]).abs() <= tol,
                "{}: index {i}: got {} want {} (tol {tol})",
                what(level.name()),
                got[i],
                want[i]
            );
        }
    }

    // Against the specification, in f64: activations quantized per block of `bl` as
    // `q = round_half_even(x * (127 / amax))` (f32 arithmetic), `d = amax / 127`, times the
    // dequantized weights. Only the f32 scaling and additions differ.
    let mut xq = vec![0f64; cols];
    for t in 0..n {
        let xt = &x[t * cols..(t + 1) * cols];
        for (b, xb) in xt.chunks(bl).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let d = (amax / 127.0) as f64;
            for (i, &v) in xb.iter().enumerate() {
                xq[b * bl + i] = d * ((v * id).round_ties_even().clamp(-127.0, 127.0)) as f64;
            }
        }
        for r in 0..rows {
            frugal_quant::row_to_f32(&w, r, &mut wr);
            let spec: f64 = wr.iter().zip(&xq).map(|(&a, &b)| a as f64 * b).sum();
            let tol = 1e-5 * scale[t * rows + r] as f64 + 1e-30;
            let got = want[t * rows + r] as f64;
            assert!(
                (got - spec).abs() <= tol,
                "{}: row {r} token {t}: got {got} spec {spec} (tol {tol})",
                what("scalar vs spec")
            );
        }
    }

    // Against f64 on the dequantized weights and the unquantized activations: the only
    // approximation is the activations' rounding to `d * round(x / d)` with `d = amax / 127`
    // per block, at most `amax / 254` per value, so the error is at most
    // `sum |w| * amax / 254` (plus the f32 rounding of the sums). A wrong activation scale or
    // block sum breaks this bound.
    for r in 0..rows {
        frugal_quant::row_to_f32(&w, r, &mut wr);
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            let exact: f64 = wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
            let bound: f64 = wr
                .iter()
                .enumerate()
                .map(|(i, a)| a.abs() as f64 * block_amax(xt, i, bl) as f64 / 254.0)
                .sum();
            let tol = bound * 1.001 + 1e-5 * scale[t * rows + r] as f64 + 1e-30;
            let got = want[t * rows + r] as f64;
            assert!(
                (got - exact).abs() <= tol,
                "{}: row {r} token {t}: got {got} exact {exact} (tol {tol})",
                what("scalar vs f64")
            );
        }
    }
}

#[test]
fn quant_simd_matches_scalar_small_ragged() {
    let mut rng = Rng(11);
    for dtype in qtypes_i8() {
        let bl = act_block_len(dtype);
        let maxb = if bl == 32 { 20 } else { 3 };
        for nb in 1..=maxb {
            let rows = 1 + rng.below(37);
            let n = 1 + rng.below(11);
            check_quant(&mut rng, dtype, rows, nb * bl, n);
        }
        for rows in [1, 2, 3, 5, 15, 16, 17, 31, 33] {
            for n in [1, 2, 3, 5, 8, 9, 12, 17] {
                let nb = 1 + rng.below(maxb);
                check_quant(&mut rng, dtype, rows, nb * bl, n);
            }
        }
    }
}

#[test]
fn quant_simd_matches_scalar_large() {
    let mut rng = Rng(12);
    for dtype in qtypes_i8() {
        for &(rows, cols, n) in &[
            (300, 2048, 1),
            (129, 1024, 13),
            (64, 4096 + 256, 3),
            (37, 2048, 70),
            (1024, 256, 1),
            (200, 512, 64),
            // Rows too long for their activations to stay in L1: the 4-row passes, with 2
            // rows left over.
            (14, 16384 + 256, 1),
        ] {
            check_quant(&mut rng, dtype, rows, cols, n);
        }
        if act_block_len(dtype) == 32 {
            // Row lengths that leave 1, 2 and 3 blocks after the last group of 4.
            for nb in [65, 66, 67] {
                check_quant(&mut rng, dtype, 21, 32 * nb, 1);
                check_quant(&mut rng, dtype, 21, 32 * nb, 6);
            }
        }
    }
}

#[test]
fn quant_x4_matches_scalar() {
    // Whole quads; prefill tiles of 16 rows with 4, 8 and 12 left over, decode
    // and prefill token counts, rows as long as gemma's feed-forward ones.
    let mut rng = Rng(14);
    for dtype in [DType::Q4_0X4, DType::Q8_0X4] {
        for &(rows, cols, n) in &[
            (4, 512, 1),
            (4, 512, 5),
            (8, 1024, 1),
            (20, 512, 17),
            (24, 1536, 3),
            (28, 2048, 9),
            (300, 2048, 1),
            (36, 2048, 70),
            (64, 16384, 1),
            (32, 16384, 2),
            // Rows whose blocks end in a short piece (gemma2-2b's 2304 columns, gemma3-1b's
            // 1152 and 6912), and rows of a short piece only.
            (8, 2304, 1),
            (20, 2304, 6),
            (12, 1152, 1),
            (16, 1152, 17),
            (8, 6912, 1),
            (4, 32, 1),
            (8, 96, 3),
            (4, 480, 1),
        ] {
            check_quant(&mut rng, dtype, rows, cols, n);
        }
    }
}

#[test]
fn quant_x4_equals_plain() {
    // The same blocks in another layout: the same products as the plain blocks at every
    // level, to the order of the f32 additions.
    let mut rng = Rng(15);
    let (rows, cols) = (40, 2560);
    for (plain_dtype, x4_dtype) in [(DType::Q4_0, DType::Q4_0X4), (DType::Q8_0, DType::Q8_0X4)] {
        let (plain, _) = random_matrix(&mut rng, plain_dtype, rows, cols, false);
        let x4 = interleaved(plain_dtype, &plain, cols);
        let a = MatRef::new(&plain, plain_dtype, rows, cols);
        let b = MatRef::new(&x4, x4_dtype, rows, cols);
        for n in [1, 3, 16] {
            let x = q_activations(&mut rng, n * cols);
            let sc = q_abs_scale(&a, &x, n);
            for level in Isa::supported() {
                let (mut ya, mut yb) = (vec![0f32; n * rows], vec![0f32; n * rows]);
                matmul_with(level, &a, &x, n, &mut ya);
                matmul_with(level, &b, &x, n, &mut yb);
                for i in 0..ya.len() {
                    assert!(
                        (ya[i] - yb[i]).abs() <= 1e-5 * sc[i],
                        "{} {} n={n} index {i}: plain {} x4 {}",
                        level.name(),
                        x4_dtype.name(),
                        ya[i],
                        yb[i]
                    );
                }
            }
        }
    }
}

#[test]
fn quant_empty_shapes() {
    for dtype in QTYPES {
        for level in Isa::supported() {
            let w = MatRef::new(&[], dtype, 3, 0);
            let mut y = [1.0; 6];
            matmul_with(level, &w, &[], 2, &mut y);
            assert_eq!(y, [0.0; 6], "{} {}", level.name(), dtype.name());
            let w = MatRef::new(&[], dtype, 0, dtype.block_len());
            let mut y = [];
            matmul_with(level, &w, &vec![0.0; 2 * dtype.block_len()], 2, &mut y);
        }
    }
}

#[test]
fn quant_row_to_f32_dequantizes() {
    let mut rng = Rng(13);
    for dtype in QTYPES {
        let cols = 2 * dtype.block_len();
        let (buf, _) = random_matrix(&mut rng, dtype, 3, cols, false);
        let w = MatRef::new(&buf, dtype, 3, cols);
        let mut a = vec![0f32; cols];
        let mut b = vec![0f32; cols];
        frugal_quant::row_to_f32(&w, 2, &mut a);
        frugal_quant::dequantize_row(w.row_bytes(2), dtype, &mut b);
        assert_eq!(a, b);
    }
}

#[test]
fn quant_layout_errors_at_the_boundary() {
    assert!(MatRef::try_new(&[0u8; 34], DType::Q8_0, 1, 32).is_ok());
    let e = MatRef::try_new(&[0u8; 34], DType::Q8_0, 1, 33).unwrap_err();
    assert!(e.to_string().contains("blocks of 32"), "{e}");
    assert!(MatRef::try_new(&[0u8; 33], DType::Q8_0, 1, 32).is_err());
    assert_eq!(DType::Q4_K.row_bytes(512), Ok(288));
    assert!(DType::Q6_K.row_bytes(128).is_err());
    assert_eq!(DType::Q4_0.tensor_bytes(&[3, 64]), Ok(108));
    assert_eq!(DType::from_name("Q4_K"), Some(DType::Q4_K));
}

#[test]
fn read_probe_simd_fold_matches_scalar() {
    let mut rng = Rng(77);
    let data: Vec<u8> = (0..5000).map(|_| (rng.next_u64() >> 24) as u8).collect();
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = super::x86::Avx512::detect() {
        for len in [0, 255, 256, 257, 1024, 4999, 5000] {
            let b = &data[..len];
            let whole = len / 256 * 256;
            assert_eq!(
                k.xor_fold(b) ^ scalar::xor_fold(&b[whole..]),
                scalar::xor_fold(b),
                "{len} bytes"
            );
        }
    }
    // The probe reads everything and reports a finite, positive rate.
    let r = super::read_rate(&[&data[..3000], &data[3000..]]);
    assert!(r.is_finite() && r > 0.0, "{r}");
    assert_ne!(scalar::xor_fold(&data), 0);
}

/// The f32 path of block types without an integer kernel equals the float reference
/// (`scalar::dot` on the same blocks) up to the order of additions, decode and prefill, on
/// ragged row counts (exercised here on the block types it can quantize).
#[test]
fn dequant_path_equals_the_float_reference() {
    let mut rng = Rng(41);
    for dtype in [DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q4_0] {
        for (rows, cols, n) in [(5, 256, 1), (13, 512, 3), (1, 256, 70)] {
            let (buf, off) = random_matrix(&mut rng, dtype, rows, cols, true);
            let w = MatRef::new(&buf[off..], dtype, rows, cols);
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
            let mut got = vec![0f32; n * rows];
            dequant::matmul(&w, &x, n, &mut got);
            let want: Vec<f32> = (0..n)
                .flat_map(|t| {
                    let xt = &x[t * cols..(t + 1) * cols];
                    (0..rows).map(move |r| scalar::dot(w.row_bytes(r), dtype, xt))
                })
                .collect();
            let scale = abs_scale(&w, &x, n);
            assert_close(
                &got,
                &want,
                &scale,
                &format!("{} {rows}x{cols} n={n}", dtype.name()),
            );
        }
    }
}
