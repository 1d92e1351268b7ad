//! Perplexity of a model on a text, as `frugal perplexity` and `scripts/tiny_reference.py`
//! compute it.
//!
//! Definition (the reference script follows it exactly): the text is tokenized without BOS into
//! `t_1 .. t_N`, and cut into consecutive, non-overlapping pieces of `ctx - 1` tokens (the last
//! one shorter). Each piece is evaluated as its own window `[BOS, piece...]` from an empty KV
//! cache, so a window holds at most `ctx` tokens, and every text token is predicted exactly
//! once: the first token of a piece from BOS alone, the others from BOS and the piece's
//! earlier tokens. The mean negative log-likelihood is
//! `nll = -(1/N) sum_i log softmax(logits_i)[t_i]`, computed from the model's f32 logits in f64,
//! and the perplexity is `exp(nll)`.
//!
//! The windows go through the prefill path ([`LanguageModel::forward_chunks`]): batched products
//! over chunks of 64 positions, the logits of one chunk at a time.

use anyhow::{bail, Result};
use frugal_model::LanguageModel;
use std::time::{Duration, Instant};

/// The result of [`perplexity`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    /// `exp(nll)`.
    pub perplexity: f64,
    /// Tokens scored (the text's tokens; BOS is context, never scored).
    pub tokens: usize,
    /// Mean negative log-likelihood per token, in nats.
    pub nll: f64,
    /// Windows evaluated.
    pub windows: usize,
    /// Context of a window (BOS included).
    pub ctx: usize,
    /// Time of the forward passes.
    #[serde(skip)]
    pub elapsed: Duration,
    /// Bytes the KV cache held in the largest window.
    #[serde(skip)]
    pub kv_cache_bytes: usize,
}

impl Perplexity {
    /// Tokens evaluated per second (BOS included).
    pub fn tok_s(&self) -> f64 {
        (self.tokens + self.windows) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The pieces of `text` (token ids without BOS) that make the windows of `ctx` tokens.
pub fn pieces(text: &[u32], ctx: usize) -> Result<std::slice::Chunks<'_, u32>> {
    check_ctx(ctx)?;
    Ok(text.chunks(ctx - 1))
}

fn check_ctx(ctx: usize) -> Result<()> {
    if ctx < 2 {
        bail!(
            "--ctx {ctx}: a perplexity window holds BOS and at least one token to score, so --ctx must be at least 2"
        );
    }
    Ok(())
}

/// `log(sum(exp(row)))` in f64.
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + sum.ln()
}

/// Perplexity of `model` on `text` (token ids, without BOS) in windows of `ctx` tokens, each
/// starting with `bos` (see the module documentation). `on_window(done, total)` is called after
/// each window (for progress).
pub fn perplexity(
    model: &dyn LanguageModel,
    text: &[u32],
    bos: u32,
    ctx: usize,
    mut on_window: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    check_ctx(ctx)?;
    if text.is_empty() {
        bail!("the text has no tokens to score");
    }
    let vocab = model.config().vocab_size;
    let total = text.len().div_ceil(ctx - 1);
    let t0 = Instant::now();
    let mut sum = 0f64;
    let mut kv = 0;
    let mut window = Vec::with_capacity(ctx);
    for (wi, piece) in pieces(text, ctx)?.enumerate() {
        window.clear();
        window.push(bos);
        window.extend_from_slice(piece);
        let mut cache = model.new_cache(window.len());
        let mut part = 0f64;
        model.forward_chunks(&window, &mut cache, true, &mut |first, logits| {
            for (r, row) in logits.chunks(vocab).enumerate() {
                // Position first + r predicts window[first + r + 1]; the last position
                // predicts nothing.
                if let Some(&target) = window.get(first + r + 1) {
                    part += log_sum_exp(row) - row[target as usize] as f64;
                }
            }
            Ok(())
        })?;
        sum += part;
        kv = kv.max(cache.bytes());
        on_window(wi + 1, total);
    }
    let nll = sum / text.len() as f64;
    Ok(Perplexity {
        perplexity: nll.exp(),
        tokens: text.len(),
        nll,
        windows: total,
        ctx,
        elapsed: t0.elapsed(),
        kv_cache_bytes: kv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text_once() {
        let text: Vec<u32> = (10..20).collect();
        let p: Vec<&[u32]> = pieces(&text, 4).unwrap().collect();
        assert_eq!(p, vec![&text[0..3], &text[3..6], &text[6..9], &text[9..10]]);
        assert!(pieces(&text, 1).is_err());
        assert!(pieces(&text, 0).is_err());
        assert_eq!(pieces(&text, 2).unwrap().count(), 10);
    }

    #[test]
    fn log_sum_exp_is_stable() {
        let v = log_sum_exp(&[1000.0, 1000.0]);
        assert!((v - (1000.0 + 2f64.ln())).abs() < 1e-9);
        let v = log_sum_exp(&[0.0, (3f32).ln()]);
        assert!((v - 4f64.ln()).abs() < 1e-7);
    }
}
