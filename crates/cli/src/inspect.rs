//! `frugal inspect`: a checkpoint described from its headers (architecture, shapes, bytes by
//! component of the tensor table and by dtype) with the memory a run of `--ctx` would need.

use anyhow::Result;
use clap::Args;
use frugal_engine::load::{plan, Checkpoint};
use frugal_engine::memory::human;
use frugal_engine::session::check_ctx;
use frugal_model::LayerKind;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The model: a Hugging Face folder, a GGUF file or a gemma_pytorch .ckpt file.
    pub model: PathBuf,
    /// Context the memory plan assumes (filled: the worst case; `frugal plan` takes every
    /// option of a run).
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(a: InspectArgs) -> Result<()> {
    check_ctx(a.ctx)?;
    let ck = Checkpoint::open(&a.model)?;
    let cfg = &ck.cfg;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let p = plan::for_checkpoint(&ck, &plan::Workload::generate(a.ctx, threads), None)?;
    // Bytes per component and dtype.
    let mut by_part: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut by_dtype: std::collections::BTreeMap<String, u64> = Default::default();
    for (name, t) in &ck.index.tensors {
        // The tensor table's components; an int8 matrix's scales count with it; tensors the
        // model does not read (a vision tower, RoPE tables) are "other".
        let bound = name.strip_suffix("_scaler").unwrap_or(name);
        let part = ck
            .binding
            .find(name)
            .or_else(|| ck.binding.find(bound))
            .map_or("other", |s| s.part.name());
        *by_part.entry(part).or_default() += t.len as u64;
        *by_dtype.entry(t.dtype.to_string()).or_default() += t.len as u64;
    }
    if a.json {
        let v = serde_json::json!({
            "model_type": cfg.model_type, "family": cfg.arch.name(), "layers": cfg.num_layers,
            "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
            "heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
            "vocab_size": cfg.vocab_size, "sliding_window": cfg.sliding_window,
            "tensors": ck.index.tensors.len(), "weights_bytes": ck.index.total_bytes(),
            "bytes_by_component": by_part, "bytes_by_dtype": by_dtype, "plan": p, "ctx": a.ctx,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let local = cfg
        .layer_kinds
        .iter()
        .filter(|k| **k == LayerKind::Local)
        .count();
    println!(
        "{}: {} ({}), {} layers ({} sliding-window, {} global)",
        ck.source(),
        cfg.arch.name(),
        cfg.model_type,
        cfg.num_layers,
        local,
        cfg.num_layers - local
    );
    println!(
        "  hidden {}, intermediate {}, heads {} (kv {}), head_dim {}, vocab {}, window {}",
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.head_dim,
        cfg.vocab_size,
        cfg.sliding_window
            .map_or("none".to_string(), |w| w.to_string())
    );
    println!(
        "  rope theta {} (global, x1/{}) / {} (local), softcaps attn {:?} final {:?}, query scale 1/sqrt({})",
        cfg.rope_global.theta, cfg.rope_global.factor, cfg.rope_local.theta, cfg.attn_softcap, cfg.final_softcap, cfg.query_pre_attn_scalar
    );
    if !cfg.layer_shapes.is_empty() {
        // Layers that differ (Gemma 4): their head size, key/value heads, feed-forward width and
        // the cache they read, in runs of equal layers.
        let mut runs: Vec<(usize, usize, String)> = Vec::new();
        for l in 0..cfg.num_layers {
            let s = cfg.layer(l);
            let kind = if cfg.layer_kinds[l] == LayerKind::Local {
                "sliding"
            } else {
                "full"
            };
            let reads = if s.kv_layer == l {
                String::new()
            } else {
                format!(", reads layer {}'s cache", s.kv_layer)
            };
            let kv = if s.values_from_keys {
                " (values = keys)"
            } else {
                ""
            };
            let d = format!(
                "{kind}: head_dim {}, kv {}{kv}, ffn {}, rotary pairs {}/{}{reads}",
                s.head_dim,
                s.kv_heads,
                s.ffn,
                s.rotary_pairs,
                s.head_dim / 2
            );
            match runs.last_mut() {
                Some((_, end, last)) if *last == d => *end = l,
                _ => runs.push((l, l, d)),
            }
        }
        for (a, b, d) in runs {
            let which = if a == b {
                format!("layer {a}")
            } else {
                format!("layers {a}-{b}")
            };
            println!("  {which:<12} {d}");
        }
        if cfg.per_layer_input > 0 {
            println!(
                "  per-layer embeddings: {} per layer ({} rows, one read per token)",
                cfg.per_layer_input, cfg.per_layer_vocab
            );
        }
        if let Some(m) = cfg.moe {
            println!(
                "  experts: {} of width {}, {} per token, beside the dense feed-forward",
                m.experts, m.inter, m.top_k
            );
        }
    }
    println!(
        "  {} tensors, {} parameters, {} in {} file(s)",
        ck.index.tensors.len(),
        cfg.num_params(),
        human(ck.index.total_bytes()),
        ck.index.files.len()
    );
    for (part, b) in &by_part {
        println!("    {part:<12} {:>12}", human(*b));
    }
    for (d, b) in &by_dtype {
        println!("    as {d:<9} {:>12}", human(*b));
    }
    print!("{}", plan::text(&p, None));
    Ok(())
}
