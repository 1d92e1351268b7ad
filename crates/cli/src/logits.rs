//! `frugal logits`: the model's logits at every position of a token sequence (exact f32
//! products), as text or JSON, then the memory report.

use crate::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use frugal_engine::memory::Report;
use frugal_engine::session::Session;
use std::io::Write;

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated token ids, e.g. 2,17,99.
    #[arg(long)]
    pub tokens: String,
    /// Print JSON: {"logits": [[...], ...]}.
    #[arg(long)]
    pub json: bool,
}

/// Parses `2,17,99`.
pub fn parse_tokens(s: &str) -> Result<Vec<u32>> {
    let ids: Vec<u32> = s
        .split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>().with_context(|| {
                format!("--tokens: `{p}` is not a token id (give ids like 2,17,99)")
            })
        })
        .collect::<Result<_>>()?;
    if ids.is_empty() {
        bail!("--tokens is empty: give ids like 2,17,99");
    }
    Ok(ids)
}

pub fn logits(a: LogitsArgs) -> Result<()> {
    let tokens = parse_tokens(&a.tokens)?;
    let n = tokens.len();
    // Logits are for comparing with references: always the exact f32 products.
    let mut settings = a.model.settings();
    settings.exact = true;
    let s = Session::open(settings, |w| {
        let mut w = w.with_ctx(a.model.ctx.max(n)).with_tokens(n, 0);
        w.logits_rows = n;
        w
    })?;
    let model = s.model()?;
    let vocab = model.cfg.vocab_size;
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        bail!(
            "--tokens: id {bad} is out of range for {} (vocab_size {vocab} in config.json, ids 0..{})",
            s.ck.source(),
            vocab - 1
        );
    }
    let ctx = a.model.ctx.max(tokens.len());
    let mut cache = model.new_cache(ctx);
    frugal_engine::trace::mark(frugal_engine::trace::phase::PREFILL);
    let logits = model.forward(&tokens, &mut cache, true)?;
    let report = s.report(cache.bytes() as u64);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if a.json {
        // Serialized straight from the logits: no second copy of them as JSON values.
        #[derive(serde::Serialize)]
        struct Out<'a> {
            logits: Vec<&'a [f32]>,
            memory: Report,
        }
        let rows: Vec<&[f32]> = logits.chunks(vocab).collect();
        serde_json::to_writer(
            &mut out,
            &Out {
                logits: rows,
                memory: report,
            },
        )?;
        writeln!(out)?;
    } else {
        for row in logits.chunks(vocab) {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    out.write_all(b" ")?;
                }
                write!(out, "{v}")?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    drop(out);
    eprintln!("{}", report.text());
    Ok(())
}
