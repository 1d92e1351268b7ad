//! `frugal demo`: the README's first command. Makes a synthetic checkpoint once (cached under
//! the user's cache folder), runs it, prints the tokens and the memory report.

use super::commands::Session;
use super::ModelArgs;
use crate::generate::{self, sampler::SamplerConfig, GenerateOptions};
use crate::memory::human;
use crate::synth::{self, Shape};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Shape of the synthetic model.
    #[arg(long, default_value = "gemma3-1b")]
    pub shape: String,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 32)]
    pub n: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep the run within SIZE of resident memory (as `run --max-memory`).
    #[arg(long = "max-memory", value_name = "SIZE", value_parser = crate::memory::parse_size)]
    pub max_memory: Option<u64>,
    /// Write a memory trace of the run to FILE (as `run --mem-trace`).
    #[arg(long = "mem-trace", value_name = "FILE")]
    pub mem_trace: Option<PathBuf>,
}

/// Where demo models are cached.
pub fn cache_dir() -> PathBuf {
    crate::load::cache_dir()
}

pub fn demo(a: DemoArgs) -> Result<()> {
    let shape = Shape::by_name(&a.shape)?;
    let dir = cache_dir().join(format!("synth-{}-bf16", shape.name));
    if !dir.join("config.json").is_file() {
        eprintln!(
            "making a synthetic {} checkpoint (random weights, real shapes) in {} ...",
            shape.name,
            dir.display()
        );
        super::init_threads(a.threads)?;
        let bytes = synth::write(&shape, crate::kernels::DType::BF16, &dir, 0, true)
            .with_context(|| format!("writing the demo model to {}", dir.display()))?;
        eprintln!("  wrote {}", human(bytes));
    }
    let m = ModelArgs {
        model: dir.clone(),
        threads: a.threads,
        ctx: 256,
        variant: None,
        config: None,
        exact: false,
        quant: None,
        max_memory: a.max_memory,
        mem_trace: a.mem_trace.clone(),
    };
    let text = "The memory-mapped weights";
    let bound = super::commands::prompt_tokens_bound(text.len(), false);
    let s = Session::open_for(&m, |w| w.with_tokens(bound, a.n))?;
    let tok = s.tokenizer()?;
    let mut model = s.model()?;
    model.fast_bf16 = true;
    let p = &s.plan;
    eprintln!(
        "{}: {} {} layers, {} of bf16 weights used in place; predicted peak RSS {} (anonymous {})",
        dir.display(),
        model.cfg.family.name(),
        model.cfg.num_layers,
        human(s.ck.index.total_bytes()),
        human(p.peak_rss_bytes),
        human(p.peak_anon_bytes)
    );
    let mut prompt = vec![model.cfg.bos_token_id];
    prompt.extend(tok.encode(text)?);
    let opts = GenerateOptions {
        max_new_tokens: a.n,
        ctx: m.ctx,
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
    crate::trace::mark(crate::trace::phase::PREFILL);
    let (_, stats) = generate::generate(&model, &prompt, &opts, |t| {
        if ids.is_empty() {
            crate::trace::mark(crate::trace::phase::FIRST_TOKEN);
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
