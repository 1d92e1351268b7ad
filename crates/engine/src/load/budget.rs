//! Keeping a memory budget (`--max-memory`), decided from the headers before any weight is read:
//! run with every weight resident if that fits, else stream layers ([`super::stream`]), else
//! refuse, naming the smallest budget that works and the options that would fit.

use super::plan::{self as mplan, Workload};
use super::quantize::{QuantKind, QuantPlan};
use super::stream::StreamPlan;
use super::Checkpoint;
use crate::memory::{human, size_arg};
use anyhow::{bail, Result};
use frugal_model::bind;
use frugal_model::tensors::Role;

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
    let mats: Vec<(String, u64)> = match quant {
        Some(kind) => QuantPlan::new(&ck.binding, &ck.index, kind)?.matrix_bytes(),
        None => ck
            .binding
            .matrix_names()
            .into_iter()
            .map(|n| {
                let mut b = ck.index.tensors[&n].len as u64;
                if let Some(s) = ck.index.tensors.get(&bind::scaler_name(&n)) {
                    b += s.len as u64;
                }
                (n, b)
            })
            .collect(),
    };
    let matrices: u64 = mats.iter().map(|(_, b)| b).sum();
    let mut layers = vec![0u64; ck.cfg.num_layers];
    let mut output = 0;
    // Grouped by the tensor table's roles: a layer's matrices, and the rest (the output
    // projection, or the embedding as the tied one).
    for (name, b) in mats {
        match ck.binding.find(&name).map(|s| s.role) {
            Some(Role::Layer(l)) => layers[l] += b,
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
