//! Element-wise operations of the Gemma forward pass, all in f32.
//!
//! The loops are written so that the compiler vectorizes them (fixed-width lane arrays, no
//! library calls in the hot loops: [`exp`] is our own polynomial), and `multiversion` compiles
//! each for AVX-512 and AVX2+FMA besides the baseline, picked at run time. No `unsafe` here.

use multiversion::multiversion;

/// Lanes of the explicit accumulator arrays: one AVX-512 register of f32.
const L: usize = 16;

/// `e^x` for f32 without a library call, so loops over it vectorize. Cody-Waite range reduction
/// `x = n ln2 + r`, `|r| <= ln2/2`, then a degree-6 polynomial for `e^r` (the Cephes `expf`
/// coefficients) and `2^n` built in the exponent bits. Relative error within 2 ulp on
/// [-87.3, 88.7]; below that it returns 0 and above it +inf, as `f32::exp` does (to within the
/// subnormal range, which it flushes to 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer, held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_83);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n in [-126, 128]; 2^128 is split in two factors so the exponent field never overflows.
    let h = ni >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - h + 127) as u32) << 23);
    let v = er * s1 * s2;
    if x > 88.722_83 {
        f32::INFINITY
    } else if x < -87.336_55 {
        0.0
    } else {
        v
    }
}

/// Gemma RMSNorm in place: `x * rsqrt(mean(x^2) + eps) * w1`, where `w1` already holds `1 + w`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn rms_norm(x: &mut [f32], w1: &[f32], eps: f32) {
    debug_assert_eq!(x.len(), w1.len());
    let ss = dot(x, x) / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for (v, w) in x.iter_mut().zip(w1) {
        *v = *v * inv * w;
    }
}

/// GELU with the tanh approximation, as `gelu_pytorch_tanh`:
/// `0.5 x (1 + tanh(z)) = x / (1 + e^(-2z))` with `z = sqrt(2/pi) (x + 0.044715 x^3)`; the
/// second form has no cancellation where `tanh(z)` nears -1.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    let z = C * (x + 0.044715 * x * x * x);
    x / (1.0 + exp(-2.0 * z))
}

/// `gate[i] = gelu_tanh(gate[i]) * up[i]`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = gelu_tanh(*g) * u;
    }
}

/// `sum_i a[i] * b[i]`, accumulated in [`L`] lanes.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; L];
    let (ac, bc) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// `y[i] += p * x[i]`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn axpy(y: &mut [f32], p: f32, x: &[f32]) {
    debug_assert_eq!(y.len(), x.len());
    for (a, b) in y.iter_mut().zip(x) {
        *a += p * b;
    }
}

/// `cap * tanh(x / cap)` in place.
pub fn softcap(x: &mut [f32], cap: f32) {
    for v in x.iter_mut() {
        *v = cap * (*v / cap).tanh();
    }
}

/// Numerically stable softmax in place.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = exp(*v - m);
    }
    let s: f32 = x.iter().sum();
    let inv = 1.0 / s;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Rotary position embedding with half-split pairing (`rotate_half`) on one head vector.
/// `inv_freq` has `head_dim / 2` entries.
pub fn rope(x: &mut [f32], pos: usize, inv_freq: &[f32]) {
    let half = inv_freq.len();
    debug_assert_eq!(x.len(), 2 * half);
    for k in 0..half {
        // Matches the reference: angle computed in f32 as pos * inv_freq.
        let ang = pos as f32 * inv_freq[k];
        let (s, c) = ang.sin_cos();
        let a = x[k];
        let b = x[k + half];
        x[k] = a * c - b * s;
        x[k + half] = b * c + a * s;
    }
}

/// `y += x`.
#[multiversion(targets("x86_64+avx512f+avx512vl", "x86_64+avx2+fma"))]
pub fn add_assign(y: &mut [f32], x: &[f32]) {
    for (a, b) in y.iter_mut().zip(x) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one() {
        let mut v = vec![1.0, 2.0, 3.0, -1e9];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[3] == 0.0);
    }

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.5 {
            let (a, b) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        assert!(worst < 3.0 * f32::EPSILON as f64, "relative error {worst}");
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn gelu_matches_tanh_form() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let c = 0.797_884_560_802_865_4f64;
            let xd = x as f64;
            let want = 0.5 * xd * (1.0 + (c * (xd + 0.044715 * xd * xd * xd)).tanh());
            let got = gelu_tanh(x) as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "gelu({x}) = {got}, want {want}"
            );
            x += 0.01;
        }
        let mut g = vec![0.5f32; 37];
        gelu_mul(&mut g, &[2.0; 37]);
        assert!(g.iter().all(|&v| (v - 2.0 * gelu_tanh(0.5)).abs() < 1e-7));
    }

    #[test]
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-3);
        let mut y = b.clone();
        axpy(&mut y, 2.0, &a);
        assert!(y
            .iter()
            .zip(a.iter().zip(&b))
            .all(|(y, (a, b))| *y == b + 2.0 * a));
    }

    #[test]
    fn rope_rotates_pairs() {
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        rope(&mut x, 1, &[1.0, 0.5]);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6);
        assert!((x[2] - 1f32.sin()).abs() < 1e-6);
    }
}
