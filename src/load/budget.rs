//! Keeping a memory budget (`--max-memory`), decided from the headers before any weight is read:
//! run with every weight resident if that fits, else stream layers ([`super::stream`]), else
//! refuse, naming the smallest budget that works and the options that would fit.

use super::plan::{self as mplan, Workload};
use super::quantize::{QuantKind, QuantPlan};
use super::stream::StreamPlan;
use super::Checkpoint;
use crate::memory::human;
use crate::model::weights;
use anyhow::{bail, Result};

/// How the weights are placed to keep the budget.
#[derive(Clone, Debug)]
pub enum Placement {
    /// Every weight resident (in place, or quantized in memory).
    Resident,
    /// Layers streamed as the plan says (the quantized weights from a cache file).
    Stream(StreamPlan),
}

/// A budget that can be kept, and how.
#[derive(Clone, Debug)]
pub struct Budget {
    /// The budget in bytes.
    pub bytes: u64,
    pub placement: Placement,
    /// The predicted peak resident memory.
    pub predicted_peak: u64,
}

/// The weight bytes a run needs, split as streaming sees them.
struct Sizes {
    /// Matrix bytes per layer.
    layers: Vec<u64>,
    /// Output projection bytes.
    output: u64,
    /// Everything else the run keeps resident: KV cache, activations, logits, norms, tokenizer
    /// and runtime (anonymous and file-backed), as the run's plan predicts them.
    fixed: u64,
    /// The KV cache part of `fixed`.
    kv: u64,
}

impl Sizes {
    fn total(&self) -> u64 {
        self.layers.iter().sum::<u64>() + self.output + self.fixed
    }

    /// The least budget that runs at all (streaming), and the budget with every weight resident.
    fn least(&self) -> u64 {
        StreamPlan::new(0, self.fixed, &self.layers, self.output).unwrap_err()
    }
}

fn sizes(ck: &Checkpoint, w: &Workload, quant: Option<QuantKind>) -> Result<Sizes> {
    let source = ck.source();
    let mats: Vec<(String, u64)> = match quant {
        Some(kind) => QuantPlan::new(&ck.cfg, &ck.index, &source, kind)?.matrix_bytes(),
        None => weights::matrix_names(&ck.cfg, &ck.index, &source)?
            .into_iter()
            .map(|n| {
                let mut b = ck.index.tensors[&n].len as u64;
                if let Some(s) = ck.index.tensors.get(&weights::scaler_name(&n)) {
                    b += s.len as u64;
                }
                (n, b)
            })
            .collect(),
    };
    let matrices: u64 = mats.iter().map(|(_, b)| b).sum();
    let mut layers = vec![0u64; ck.cfg.num_layers];
    let mut output = 0;
    for (name, b) in mats {
        match layer_of(&name) {
            Some(l) if l < layers.len() => layers[l] += b,
            _ => output += b,
        }
    }
    // The run's own prediction with every weight resident, less the matrices that streaming
    // places: what stays whatever the placement (the matrices' whole pages in that
    // prediction make this bound err upwards).
    // Quantizing into the cache file happens before any layer is placed, with nothing but
    // the runtime and two source chunks resident: the run's peak is later, without them.
    let mut w = w.clone();
    w.load_transient_bytes = 0;
    let p = mplan::predict(
        &ck.cfg,
        &ck.index,
        &mplan::entries_for(ck, quant)?,
        &w.with_tokenizer_of(ck),
    );
    Ok(Sizes {
        layers,
        output,
        fixed: p.peak_rss_bytes.saturating_sub(matrices),
        kv: p.kv_cache_bytes,
    })
}

/// The layer a tensor name belongs to (`...layers.N....`, or GGUF's `blk.N....`).
fn layer_of(name: &str) -> Option<usize> {
    let rest = match name.find("layers.") {
        Some(i) => &name[i + "layers.".len()..],
        None => name.strip_prefix("blk.")?,
    };
    rest.split('.').next()?.parse().ok()
}

/// Decides how `ck` runs the workload `w` (its context, tokens held, logits) with `quant`
/// within `budget` bytes,
/// or refuses with the smallest budget that works and what else would fit. `resident`: whether
/// keeping every weight resident may be chosen (a caller that already knows from a finer
/// prediction that it does not fit passes `false`).
pub fn decide(
    ck: &Checkpoint,
    w: &Workload,
    quant: Option<QuantKind>,
    budget: u64,
    resident: bool,
) -> Result<Budget> {
    let s = sizes(ck, w, quant)?;
    let ctx = w.tokens.max(1);
    if resident && s.total() <= budget {
        return Ok(Budget {
            bytes: budget,
            placement: Placement::Resident,
            predicted_peak: s.total(),
        });
    }
    match StreamPlan::new(budget, s.fixed, &s.layers, s.output) {
        Ok(p) => Ok(Budget {
            bytes: budget,
            predicted_peak: p.resident_bytes(s.fixed),
            placement: Placement::Stream(p),
        }),
        Err(least) => {
            let mut fits = vec![format!("--max-memory {}", size_arg(least))];
            for k in [QuantKind::Q8, QuantKind::Q4] {
                if quant.is_none() || quant == Some(QuantKind::Q8) && k == QuantKind::Q4 {
                    let q = sizes(ck, w, Some(k))?;
                    let note = if q.least() <= budget { ", fits" } else { "" };
                    fits.push(format!(
                        "--quant {} (needs {} streamed, {} all resident{note})",
                        k.name(),
                        size_arg(q.least()),
                        size_arg(q.total())
                    ));
                }
            }
            let small = (ctx / 4).max(1);
            if small < ctx {
                let c = sizes(ck, &w.with_ctx(small), quant)?;
                fits.push(format!("--ctx {small} (needs {})", size_arg(c.least())));
            }
            let window = s.layers.iter().copied().max().unwrap_or(0);
            bail!(
                "--max-memory {} is too small for {} holding {ctx} tokens{}: the least that works is {} (one layer of {} streamed at a time, the output projection in chunks of {}, KV cache {}, activations, norms and runtime {}).\n  What would fit: {}",
                human(budget),
                ck.source(),
                quant.map(|k| format!(" --quant {}", k.name())).unwrap_or_default(),
                human(least),
                human(window),
                human((super::stream::OUTPUT_STEP_BYTES as u64).min(s.output)),
                human(s.kv),
                human(s.fixed - s.kv),
                fits.join("; ")
            )
        }
    }
}

/// A size as `--max-memory` takes it, rounded up to MiB.
fn size_arg(b: u64) -> String {
    let mib = b.div_ceil(1 << 20);
    if mib >= 1024 {
        format!("{:.2}GiB", (mib as f64 / 1024.0 * 100.0).ceil() / 100.0)
    } else {
        format!("{mib}MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names() {
        assert_eq!(layer_of("model.layers.12.mlp.up_proj.weight"), Some(12));
        assert_eq!(layer_of("model.embed_tokens.weight"), None);
        assert_eq!(layer_of("blk.7.ffn_down.weight"), Some(7));
        assert_eq!(layer_of("token_embd.weight"), None);
        assert_eq!(size_arg(1 << 30), "1.00GiB");
        assert_eq!(size_arg((1 << 20) + 1), "2MiB");
    }
}
