//! Generation: sampling ([`sampler`]) and the token loop that feeds the model, stops at an end
//! token, and hands each new token to the caller as soon as it is chosen.

pub mod perplexity;
pub mod sampler;

use anyhow::{bail, Result};
use frugal_model::LanguageModel;
use frugal_tokenizer::GemmaTokenizer;
use sampler::{Sampler, SamplerConfig};
use std::io::Write;
use std::time::{Duration, Instant};

/// Greedy continuation of `prompt` by `n` tokens with no stop condition (for tests and references).
pub fn greedy_continuation(
    model: &dyn LanguageModel,
    prompt: &[u32],
    n: usize,
) -> Result<Vec<u32>> {
    let mut cache = model.new_cache(prompt.len() + n);
    let mut logits = model.forward(prompt, &mut cache, false)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = sampler::argmax(&logits) as u32;
        out.push(t);
        if i + 1 < n {
            logits = model.forward(&[t], &mut cache, false)?;
        }
    }
    Ok(out)
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// Context limit (prompt plus new tokens).
    pub ctx: usize,
    pub sampler: SamplerConfig,
    /// Generation stops after producing any of these.
    pub stop_ids: Vec<u32>,
    /// Ids at or above this are never sampled (the tokenizer cannot decode them).
    pub sample_limit: usize,
}

/// Timings of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Prompt processing time (up to the first new token's logits).
    pub prefill: Duration,
    /// Time of the decode steps after the first token.
    pub decode: Duration,
    /// True if an end token stopped generation.
    pub stopped: bool,
    /// Bytes the KV cache held at the end.
    pub kv_cache_bytes: usize,
}

impl GenerateStats {
    pub fn prefill_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }
    /// Decode rate: tokens after the first over the time they took.
    pub fn decode_tok_s(&self) -> f64 {
        let steps = self.new_tokens.saturating_sub(1);
        if steps == 0 {
            return 0.0;
        }
        steps as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

/// The largest id worth sampling for a model whose tokenizer decodes `tokenizer_vocab` ids:
/// text ids only (a multimodal embedding's image-token rows are never sampled).
pub fn sample_limit(model: &dyn LanguageModel, tokenizer_vocab: usize) -> usize {
    model.config().text_vocab_size.min(tokenizer_vocab)
}

/// Generates as [`generate`] and writes the new text to stdout as it is produced (tokens in
/// `opts.stop_ids` are not printed; characters are never split), then the decoder's remainder
/// and a newline. Marks the prefill and first-token phases of the memory trace.
pub fn generate_to_stdout(
    model: &dyn LanguageModel,
    prompt: &[u32],
    opts: &GenerateOptions,
    tok: &GemmaTokenizer,
) -> Result<GenerateStats> {
    let mut stream = tok.stream();
    let stdout = std::io::stdout();
    crate::trace::mark(crate::trace::phase::PREFILL);
    let mut first = true;
    let (_, stats) = generate(model, prompt, opts, |t| {
        if std::mem::take(&mut first) {
            crate::trace::mark(crate::trace::phase::FIRST_TOKEN);
        }
        if !opts.stop_ids.contains(&t) {
            let text = stream.push(t)?;
            let mut o = stdout.lock();
            o.write_all(text.as_bytes())?;
            o.flush()?;
        }
        Ok(())
    })?;
    println!("{}", stream.finish()?);
    Ok(stats)
}

/// Generates a chat answer as [`generate_to_stdout`] does, Gemma 4's thought channel
/// (`<|channel>…<channel|>`) kept apart ([`frugal_tokenizer::ChatStream`]): the answer goes to
/// stdout; the thought, when `show_thought`, to stderr between `[thought]` and `[/thought]`
/// lines, else nowhere.
pub fn generate_chat_to_stdout(
    model: &dyn LanguageModel,
    prompt: &[u32],
    opts: &GenerateOptions,
    tok: &GemmaTokenizer,
    show_thought: bool,
) -> Result<GenerateStats> {
    let mut stream = tok.chat_stream();
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let mut in_thought = false;
    let mut emit = |t: frugal_tokenizer::ChatText, thinking: bool| -> Result<()> {
        if show_thought {
            let mut e = stderr.lock();
            if thinking && !in_thought {
                e.write_all(b"[thought]\n")?;
            }
            e.write_all(t.thought.as_bytes())?;
            if !thinking && in_thought {
                e.write_all(b"\n[/thought]\n")?;
            }
            e.flush()?;
        }
        in_thought = thinking;
        let mut o = stdout.lock();
        o.write_all(t.answer.as_bytes())?;
        o.flush()?;
        Ok(())
    };
    crate::trace::mark(crate::trace::phase::PREFILL);
    let mut first = true;
    let (_, stats) = generate(model, prompt, opts, |t| {
        if std::mem::take(&mut first) {
            crate::trace::mark(crate::trace::phase::FIRST_TOKEN);
        }
        if !opts.stop_ids.contains(&t) {
            let text = stream.push(t)?;
            emit(text, stream.in_thought())?;
        }
        Ok(())
    })?;
    emit(stream.finish()?, false)?;
    println!();
    Ok(stats)
}

/// Generates from `prompt`, calling `on_token` with each new token as soon as it is chosen.
pub fn generate(
    model: &dyn LanguageModel,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<(Vec<u32>, GenerateStats)> {
    if prompt.is_empty() {
        bail!("the prompt is empty: give some text with -p (or use --bos to start from BOS alone)");
    }
    if prompt.len() >= opts.ctx {
        bail!(
            "the prompt has {} tokens but --ctx is {}: raise --ctx above the prompt length plus the tokens to generate",
            prompt.len(),
            opts.ctx
        );
    }
    let mut stats = GenerateStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let mut sampler = Sampler::new(opts.sampler.clone(), opts.sample_limit);
    let mut cache = model.new_cache(opts.ctx);
    let t0 = Instant::now();
    let mut logits = model.forward(prompt, &mut cache, false)?;
    stats.prefill = t0.elapsed();
    let mut out = Vec::new();
    let t1 = Instant::now();
    while out.len() < opts.max_new_tokens {
        let tok = sampler.sample(&logits);
        out.push(tok);
        on_token(tok)?;
        if opts.stop_ids.contains(&tok) {
            stats.stopped = true;
            break;
        }
        if out.len() == opts.max_new_tokens || cache.pos >= opts.ctx {
            break;
        }
        logits = model.forward(&[tok], &mut cache, false)?;
    }
    stats.decode = t1.elapsed();
    stats.new_tokens = out.len();
    stats.kv_cache_bytes = cache.bytes();
    Ok((out, stats))
}
