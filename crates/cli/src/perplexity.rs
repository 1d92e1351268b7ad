//! `frugal perplexity`: the model's perplexity on a text file (the computation is in
//! `frugal_engine::generate::perplexity`).

use crate::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use frugal_engine::generate::perplexity;
use frugal_engine::session::{check_ctx, Session};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file (UTF-8). It is tokenized without BOS and cut into non-overlapping windows
    /// of --ctx tokens, each starting with BOS; every token of the text is scored once.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Print JSON: {"perplexity": .., "tokens": .., "nll": .., "windows": .., "ctx": .., "memory": {..}}.
    #[arg(long)]
    pub json: bool,
}

pub fn perplexity(a: PerplexityArgs) -> Result<()> {
    let ctx = a.model.ctx;
    check_ctx(ctx)?;
    if ctx < 2 {
        bail!("--ctx {ctx}: a perplexity window holds BOS and at least one token to score, so --ctx must be at least 2");
    }
    let text = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let text = String::from_utf8(text)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", a.file.display()))?;
    if text.is_empty() {
        bail!(
            "{}: the file is empty: there is nothing to score",
            a.file.display()
        );
    }
    // A window never holds more than --ctx tokens, nor more than the text (every token covers
    // at least one byte): the cache, activations and a chunk of logits are planned for that.
    let window = ctx.min(text.len() + 1);
    let s = Session::open(a.model.settings(), |w| {
        let mut w = w.with_ctx(window).with_tokens(window, 0);
        w.logits_rows = frugal_model::PREFILL_CHUNK.min(window);
        w
    })?;
    let tok = s.tokenizer()?;
    let model = s.model()?;
    let ids = tok
        .encode(&text)
        .with_context(|| format!("tokenizing {}", a.file.display()))?;
    if ids.is_empty() {
        bail!("{}: the text gives no tokens", a.file.display());
    }
    frugal_engine::trace::mark(frugal_engine::trace::phase::PREFILL);
    let show = std::io::stderr().is_terminal() && !a.json;
    let r = perplexity::perplexity(&model, &ids, model.cfg.bos_token_id, ctx, |done, total| {
        if show {
            eprint!("\rwindow {done}/{total}");
            if done == total {
                eprintln!();
            }
        }
    })
    .with_context(|| format!("evaluating {}", a.file.display()))?;
    let report = s.report(r.kv_cache_bytes as u64);
    if a.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            r: &'a perplexity::Perplexity,
            memory: frugal_engine::memory::Report,
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(
            &mut out,
            &Out {
                r: &r,
                memory: report,
            },
        )?;
        writeln!(out)?;
    } else {
        println!(
            "perplexity {:.4} (mean NLL {:.6} nats) over {} tokens of {} in {} windows of --ctx {}",
            r.perplexity,
            r.nll,
            r.tokens,
            a.file.display(),
            r.windows,
            r.ctx
        );
    }
    eprintln!(
        "{} tokens in {:.2} s ({:.1} tok/s)",
        r.tokens + r.windows,
        r.elapsed.as_secs_f64(),
        r.tok_s()
    );
    eprintln!("{}", report.text());
    Ok(())
}
