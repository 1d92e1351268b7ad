//! `frugal run`: generate text from a prompt (optionally in the chat template), streamed to
//! stdout, then the speed and the memory report.

use crate::ModelArgs;
use anyhow::{bail, Result};
use clap::Args;
use frugal_engine::generate::{self, sampler::SamplerConfig, GenerateOptions};
use frugal_engine::session::{prompt_tokens_bound, Session};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long = "prompt", required_unless_present = "prompt_ids")]
    pub prompt: Option<String>,
    /// The prompt as token ids (comma-separated, BOS included if wanted), instead of text: no
    /// tokenizer is read and the new tokens are printed as ids.
    #[arg(long = "prompt-ids", value_delimiter = ',', conflicts_with_all = ["prompt", "chat"])]
    pub prompt_ids: Option<Vec<u32>>,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 128)]
    pub n: usize,
    /// Wrap the prompt in the chat format of the tokenizer's turn markers and stop at the end
    /// of the turn: Gemma 1-3 `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n`
    /// (stop at <end_of_turn>), Gemma 4 `<|turn>user\n…<turn|>\n<|turn>model\n` (stop at
    /// <turn|> or <|tool_response>). The formats are written out in frugal, as the published
    /// templates render one turn; a checkpoint's own template is not read. Gemma 4's thought
    /// channel (<|channel>…<channel|>) is never printed to stdout: see --think.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: a system message (Gemma 4: a system turn; Gemma 1-3, which have none: put
    /// at the start of the user turn).
    #[arg(long)]
    pub system: Option<String>,
    /// With --chat, Gemma 4 only: ask the model to think first (<|think|> in the system turn)
    /// and print its thought to stderr between [thought] and [/thought] lines, the answer to
    /// stdout. Without it the prompt closes an empty thought block, as Gemma 4's template does
    /// when thinking is off, and a thought the model writes anyway is not printed.
    #[arg(long)]
    pub think: bool,
    /// Sampling temperature (0 = greedy).
    #[arg(long = "temp", default_value_t = 0.0)]
    pub temp: f32,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(long = "top-k", default_value_t = 0)]
    pub top_k: usize,
    /// Sample among the tokens whose probabilities sum to p.
    #[arg(long = "top-p", default_value_t = 1.0)]
    pub top_p: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn sampler_config(a: &RunArgs) -> Result<SamplerConfig> {
    if !(a.temp >= 0.0 && a.temp.is_finite()) {
        bail!("--temp must be a finite number >= 0, got {}", a.temp);
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], got {}", a.top_p);
    }
    Ok(SamplerConfig {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    })
}

pub fn run(a: RunArgs) -> Result<()> {
    let sampler = sampler_config(&a)?;
    if a.system.is_some() && !a.chat {
        bail!("--system needs --chat: a system message only exists in the chat template");
    }
    if a.think && !a.chat {
        bail!("--think needs --chat: thinking is part of Gemma 4's chat format");
    }
    if let Some(ids) = &a.prompt_ids {
        return run_ids(&a, ids, sampler);
    }
    let text = a.prompt.clone().unwrap_or_default();
    let prompt_bytes = text.len() + a.system.as_ref().map_or(0, |s| s.len() + 2);
    let bound = prompt_tokens_bound(prompt_bytes, a.chat);
    let s = Session::open(a.model.settings(), |w| w.with_tokens(bound, a.n))?;
    let tok = s.tokenizer()?;
    let model = s.model()?;
    let prompt = if a.chat {
        tok.chat(a.system.as_deref(), &text, model.cfg.bos_token_id, a.think)?
    } else {
        if text.is_empty() {
            bail!("the prompt is empty: give some text with -p");
        }
        let mut ids = vec![model.cfg.bos_token_id];
        ids.extend(tok.encode(&text)?);
        ids
    };
    let mut stop_ids = model.cfg.eos_token_ids.clone();
    if a.chat {
        stop_ids.extend(tok.chat_stop_ids());
    } else {
        stop_ids.extend(tok.end_of_turn);
    }
    let opts = GenerateOptions {
        max_new_tokens: a.n,
        ctx: a.model.ctx,
        sampler,
        stop_ids,
        sample_limit: generate::sample_limit(&model, tok.vocab_size),
    };
    if !a.chat {
        print!("{text}");
    }
    let stats = if a.chat {
        generate::generate_chat_to_stdout(&model, &prompt, &opts, tok, a.think)?
    } else {
        generate::generate_to_stdout(&model, &prompt, &opts, tok)?
    };
    eprintln!(
        "{} prompt tokens at {:.1} tok/s, {} new tokens at {:.2} tok/s",
        stats.prompt_tokens,
        stats.prefill_tok_s(),
        stats.new_tokens,
        stats.decode_tok_s()
    );
    eprintln!("{}", s.report(stats.kv_cache_bytes as u64).text());
    Ok(())
}

/// `run --prompt-ids`: generation from token ids, the new ids printed as they come (no
/// tokenizer is read: for checkpoints without one).
fn run_ids(a: &RunArgs, ids: &[u32], sampler: SamplerConfig) -> Result<()> {
    if ids.is_empty() {
        bail!("--prompt-ids is empty: give at least one token id");
    }
    let s = Session::open(a.model.settings(), |w| w.with_tokens(ids.len(), a.n))?;
    let model = s.model()?;
    let opts = GenerateOptions {
        max_new_tokens: a.n,
        ctx: a.model.ctx,
        sampler,
        stop_ids: model.cfg.eos_token_ids.clone(),
        sample_limit: generate::sample_limit(&model, usize::MAX),
    };
    let (_, stats) = generate::generate(&model, ids, &opts, |t| {
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        write!(o, "{t} ")?;
        o.flush()?;
        Ok(())
    })?;
    println!();
    eprintln!(
        "{} prompt tokens at {:.1} tok/s, {} new tokens at {:.2} tok/s",
        stats.prompt_tokens,
        stats.prefill_tok_s(),
        stats.new_tokens,
        stats.decode_tok_s()
    );
    eprintln!("{}", s.report(stats.kv_cache_bytes as u64).text());
    Ok(())
}
