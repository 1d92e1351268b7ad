//! `frugal plan`: a run's memory predicted from the headers alone, checked against a budget
//! (and how a run would keep it: every weight resident, or layers streamed).

use crate::ModelArgs;
use anyhow::Result;
use clap::Args;
use frugal_engine::load::{budget, plan, Checkpoint};
use frugal_engine::memory::{human, size_arg, Monitor};
use frugal_engine::session::check_ctx;
use frugal_engine::trace;

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print JSON: `peak_rss_bytes`, `peak_anon_bytes`, the breakdown, and with --max-memory
    /// `budget_bytes` and `fits`.
    #[arg(long)]
    pub json: bool,
}

/// The worker threads a run with `threads` would use.
fn threads(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// The plan of a generation filling `m.ctx`, from the headers of `m.model`.
pub fn model_plan(m: &ModelArgs, ck: &Checkpoint) -> Result<plan::MemoryPlan> {
    let mut w = plan::Workload::generate(m.ctx, threads(m.threads));
    w.fast_bf16 = !m.exact;
    plan::for_checkpoint(ck, &w, m.quant())
}

pub fn plan(a: PlanArgs) -> Result<()> {
    let m = &a.model;
    check_ctx(m.ctx)?;
    if let Some(t) = &m.mem_trace {
        trace::begin(t, "plan", &m.model)?;
    }
    let monitor = Monitor::start();
    trace::mark(trace::phase::MAP);
    let ck = Checkpoint::open_with(&m.model, &m.open_options())?;
    trace::mark(trace::phase::PLAN);
    let p = model_plan(m, &ck)?;
    let source = ck.source();
    let fits = m.max_memory.map(|b| p.peak_rss_bytes <= b);
    // The dtypes the --quant kind chose, with their bytes.
    let by_dtype = match m.quant() {
        Some(k) => Some((k, ck.quant_plan(k)?.bytes_by_dtype())),
        None => None,
    };
    if a.json {
        let mut v = serde_json::to_value(&p)?;
        let o = v.as_object_mut().expect("a plan is an object");
        for (k, val) in [
            ("model", serde_json::json!(source)),
            ("weights_bytes", serde_json::json!(p.weights_bytes())),
            (
                "weights_by_storage",
                serde_json::json!({
                    "mapped": p.mapped_weight_bytes,
                    "owned": p.owned_weight_bytes,
                    "quantized": p.quantized_weight_bytes,
                }),
            ),
            (
                "quantized_by_dtype",
                serde_json::json!(by_dtype.as_ref().map(|(_, d)| d)),
            ),
            ("budget_bytes", serde_json::json!(m.max_memory)),
            ("fits", serde_json::json!(fits)),
            (
                "smallest_budget",
                serde_json::json!(size_arg(p.peak_rss_bytes)),
            ),
        ] {
            o.insert(k.into(), val);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {} {} layers, {} tensors in {} file(s)",
            source,
            ck.cfg.arch.name(),
            ck.cfg.num_layers,
            ck.index.tensors.len(),
            ck.index.files.len()
        );
        if let Some((k, d)) = &by_dtype {
            let parts: Vec<String> = d
                .iter()
                .map(|(t, b)| format!("{} {}", t.to_uppercase(), human(*b)))
                .collect();
            println!(
                "  --quant {} (llama.cpp file type {}): {}",
                k.name(),
                k.file_type(),
                if parts.is_empty() {
                    "nothing to quantize".to_string()
                } else {
                    parts.join(", ")
                }
            );
        }
        print!("{}", plan::text(&p, m.max_memory));
    }
    trace::info(trace::Info {
        weights_bytes: Some(p.weights_bytes()),
        budget_bytes: m.max_memory,
        predicted_peak_rss_bytes: Some(p.peak_rss_bytes),
        predicted_peak_anon_bytes: Some(p.peak_anon_bytes),
    });
    trace::finish(Some(monitor.peaks()))?;
    if let Some(b) = m.max_memory.filter(|&b| p.peak_rss_bytes > b) {
        // As a run would: stream layers if one layer at a time fits, else refuse with the
        // least budget that works and what would fit.
        let d = budget::decide(&ck, &p.workload, m.quant(), b, false)?;
        if let budget::Placement::Stream(s) = &d.placement {
            println!(
                "with --max-memory {}: the weights do not all fit; a run streams {} of {} layers from disk ({} per token), predicted peak {}",
                human(b),
                s.pinned.iter().filter(|&&x| !x).count(),
                s.pinned.len(),
                human(s.streamed_bytes_per_token),
                human(d.predicted_peak)
            );
        }
    }
    Ok(())
}
