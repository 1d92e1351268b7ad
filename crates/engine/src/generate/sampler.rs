//! Token sampling: greedy, or temperature with top-k and top-p (nucleus) filtering, seeded.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Sampling settings.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// Picks tokens from logits.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: StdRng,
    /// Ids at or above this are never picked (the tokenizer cannot decode them).
    limit: usize,
}

impl Sampler {
    /// A sampler that never picks ids `>= limit`.
    pub fn new(cfg: SamplerConfig, limit: usize) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Sampler { cfg, rng, limit }
    }

    /// Chooses the next token.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let logits = &logits[..self.limit.min(logits.len())];
        if self.cfg.temperature <= 0.0 {
            return argmax(logits) as u32;
        }
        let inv_t = 1.0 / self.cfg.temperature;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l * inv_t))
            .collect();
        let by_logit_desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        if self.cfg.top_k > 0 && self.cfg.top_k < cand.len() {
            cand.select_nth_unstable_by(self.cfg.top_k - 1, by_logit_desc);
            cand.truncate(self.cfg.top_k);
        }
        cand.sort_unstable_by(by_logit_desc);
        let m = cand[0].1;
        let mut sum = 0f32;
        for c in cand.iter_mut() {
            c.1 = (c.1 - m).exp();
            sum += c.1;
        }
        if self.cfg.top_p < 1.0 {
            let mut acc = 0f32;
            let mut keep = cand.len();
            for (i, c) in cand.iter().enumerate() {
                acc += c.1 / sum;
                if acc >= self.cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
            sum = cand.iter().map(|c| c.1).sum();
        }
        let mut r = self.rng.random::<f32>() * sum;
        for c in &cand {
            r -= c.1;
            if r <= 0.0 {
                return c.0;
            }
        }
        cand.last().map(|c| c.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_limits() {
        let mut s = Sampler::new(SamplerConfig::default(), 3);
        assert_eq!(
            s.sample(&[0.0, 1.0, 0.5, 9.0]),
            1,
            "id 3 is beyond the tokenizer"
        );
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_repeats() {
        let l = [0.1, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(
            SamplerConfig {
                temperature: 1.0,
                top_k: 1,
                top_p: 1.0,
                seed: 7,
            },
            4,
        );
        assert_eq!(s.sample(&l), 1);
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            seed: 42,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone(), 4);
            (0..20).map(|_| s.sample(&l)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg, 4);
            (0..20).map(|_| s.sample(&l)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|&t| t == 1 || t == 2 || t == 0), "{a:?}");
    }
}
