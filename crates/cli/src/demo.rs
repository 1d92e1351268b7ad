//! `frugal demo`: the README's first command. Runs the tiny trained model embedded in the
//! binary ([`crate::tiny`]: written once to the cache folder) on a Python prompt and prints its
//! text, speed and the memory report. `--synthetic` instead makes (once) a synthetic checkpoint
//! with the real shapes of a Gemma model (`--shape`, random weights) and runs that: the memory
//! figures of a real-sized model.

use anyhow::{Context, Result};
use clap::Args;
use frugal_engine::generate::{self, sampler::SamplerConfig, GenerateOptions};
use frugal_engine::memory::human;
use frugal_engine::session::{prompt_tokens_bound, Session, Settings};
use frugal_engine::synth;
use frugal_model::arch::Variant;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run a synthetic checkpoint with a real Gemma model's shapes (random weights, made once
    /// in the cache folder: about 2 GB for gemma3-1b) instead of the tiny trained model.
    #[arg(long)]
    pub synthetic: bool,
    /// With --synthetic: the shape of the synthetic model.
    #[arg(long, default_value = "gemma3-1b")]
    pub shape: String,
    /// The prompt of the tiny model.
    #[arg(short = 'p', long = "prompt", default_value = "def main(")]
    pub prompt: String,
    /// Tokens to generate (default: 80 for the tiny model, 32 with --synthetic).
    #[arg(short = 'n', long)]
    pub n: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep the run within SIZE of resident memory (as `run --max-memory`).
    #[arg(long = "max-memory", value_name = "SIZE", value_parser = frugal_engine::memory::parse_size)]
    pub max_memory: Option<u64>,
    /// Write a memory trace of the run to FILE (as `run --mem-trace`).
    #[arg(long = "mem-trace", value_name = "FILE")]
    pub mem_trace: Option<PathBuf>,
}

/// Where demo models are cached.
pub fn cache_dir() -> PathBuf {
    frugal_engine::load::cache_dir()
}

pub fn demo(a: DemoArgs) -> Result<()> {
    if a.synthetic {
        synthetic(a)
    } else {
        tiny(a)
    }
}

/// The tiny trained model: greedy continuation of a Python prompt.
fn tiny(a: DemoArgs) -> Result<()> {
    if a.prompt.is_empty() {
        anyhow::bail!("the prompt is empty: give some text with -p");
    }
    let n = a.n.unwrap_or(80);
    let dir = crate::tiny::model_dir()?;
    let settings = settings(&a, dir.clone(), 512);
    let ctx = settings.ctx;
    let bound = prompt_tokens_bound(a.prompt.len(), false);
    let s = Session::open(settings, |w| w.with_tokens(bound, n))?;
    let tok = s.tokenizer()?;
    let model = s.model()?;
    let cfg = &model.cfg;
    eprintln!(
        "{}: the tiny model embedded in frugal (scripts/train_tiny.py: {} layers, hidden {}, \
         vocab {}, trained on CPython's standard library), {} of bf16 weights used in place; \
         predicted peak RSS {} (anonymous {})",
        dir.display(),
        cfg.num_layers,
        cfg.hidden_size,
        cfg.vocab_size,
        human(s.ck.index.total_bytes()),
        human(s.plan.peak_rss_bytes),
        human(s.plan.peak_anon_bytes)
    );
    let mut prompt = vec![cfg.bos_token_id];
    prompt.extend(tok.encode(&a.prompt)?);
    let opts = GenerateOptions {
        max_new_tokens: n,
        ctx,
        sampler: SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        },
        stop_ids: cfg.eos_token_ids.clone(),
        sample_limit: generate::sample_limit(&model, tok.vocab_size),
    };
    print!("{}", a.prompt);
    let stats = generate::generate_to_stdout(&model, &prompt, &opts, tok)?;
    println!(
        "{} prompt tokens at {:.1} tok/s, {} new tokens at {:.1} tok/s on {} threads (greedy)",
        stats.prompt_tokens,
        stats.prefill_tok_s(),
        stats.new_tokens,
        stats.decode_tok_s(),
        rayon::current_num_threads()
    );
    println!("{}", s.report(stats.kv_cache_bytes as u64).text());
    Ok(())
}

/// How the demo loads `dir`: the demo's own threads and memory flags, a context of `ctx`,
/// bf16 activations (the default of every run).
fn settings(a: &DemoArgs, dir: PathBuf, ctx: usize) -> Settings {
    Settings {
        model: dir,
        open: Default::default(),
        ctx,
        exact: false,
        quant: None,
        max_memory: a.max_memory,
        mem_trace: a.mem_trace.clone(),
        command: "demo".into(),
    }
}

/// A synthetic checkpoint with real shapes: sampled ids from random weights.
fn synthetic(a: DemoArgs) -> Result<()> {
    let n = a.n.unwrap_or(32);
    let shape = Variant::by_name(&a.shape)?;
    let dir = cache_dir().join(format!("synth-{}-bf16", shape.name));
    if !dir.join("config.json").is_file() {
        eprintln!(
            "making a synthetic {} checkpoint (random weights, real shapes) in {} ...",
            shape.name,
            dir.display()
        );
        let bytes = synth::write(&shape, frugal_tensor::DType::BF16, &dir, 0, true)
            .with_context(|| format!("writing the demo model to {}", dir.display()))?;
        eprintln!("  wrote {}", human(bytes));
    }
    let settings = settings(&a, dir.clone(), 256);
    let ctx = settings.ctx;
    let text = "The memory-mapped weights";
    let bound = prompt_tokens_bound(text.len(), false);
    let s = Session::open(settings, |w| w.with_tokens(bound, n))?;
    let tok = s.tokenizer()?;
    let model = s.model()?;
    let p = &s.plan;
    eprintln!(
        "{}: {} {} layers, {} of bf16 weights used in place; predicted peak RSS {} (anonymous {})",
        dir.display(),
        model.cfg.arch.name(),
        model.cfg.num_layers,
        human(s.ck.index.total_bytes()),
        human(p.peak_rss_bytes),
        human(p.peak_anon_bytes)
    );
    let mut prompt = vec![model.cfg.bos_token_id];
    prompt.extend(tok.encode(text)?);
    let opts = GenerateOptions {
        max_new_tokens: n,
        ctx,
        // Random weights make greedy decoding repeat one token; sampling shows the machinery.
        sampler: SamplerConfig {
            temperature: 1.0,
            top_k: 40,
            top_p: 0.95,
            seed: 1,
        },
        stop_ids: vec![],
        sample_limit: generate::sample_limit(&model, tok.vocab_size),
    };
    println!("prompt: {text:?} -> {} tokens {:?}", prompt.len(), prompt);
    print!("generated ids:");
    let mut ids = Vec::new();
    frugal_engine::trace::mark(frugal_engine::trace::phase::PREFILL);
    let (_, stats) = generate::generate(&model, &prompt, &opts, |t| {
        if ids.is_empty() {
            frugal_engine::trace::mark(frugal_engine::trace::phase::FIRST_TOKEN);
        }
        ids.push(t);
        print!(" {t}");
        std::io::stdout().flush()?;
        Ok(())
    })?;
    println!();
    println!(
        "generated text (random weights, sampled at temperature 1: no meaning): {:?}",
        tok.decode(&ids)?
    );
    println!(
        "prefill {:.1} tok/s, decode {:.2} tok/s on {} threads",
        stats.prefill_tok_s(),
        stats.decode_tok_s(),
        rayon::current_num_threads()
    );
    println!("{}", s.report(stats.kv_cache_bytes as u64).text());
    Ok(())
}
