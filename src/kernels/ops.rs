//! Element-wise operations of the Gemma forward pass, all in f32.

/// Gemma RMSNorm in place: `x * rsqrt(mean(x^2) + eps) * w1`, where `w1` already holds `1 + w`.
pub fn rms_norm(x: &mut [f32], w1: &[f32], eps: f32) {
    debug_assert_eq!(x.len(), w1.len());
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for (v, w) in x.iter_mut().zip(w1) {
        *v = *v * inv * w;
    }
}

/// GELU with the tanh approximation, as `gelu_pytorch_tanh`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

/// `gate[i] = gelu_tanh(gate[i]) * up[i]`.
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = gelu_tanh(*g) * u;
    }
}

/// `cap * tanh(x / cap)` in place.
pub fn softcap(x: &mut [f32], cap: f32) {
    for v in x.iter_mut() {
        *v = cap * (*v / cap).tanh();
    }
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0f32;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
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
    fn rope_rotates_pairs() {
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        rope(&mut x, 1, &[1.0, 0.5]);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6);
        assert!((x[2] - 1f32.sin()).abs() < 1e-6);
    }
}
