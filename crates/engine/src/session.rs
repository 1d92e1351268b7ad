//! Opening a model for a run, as one library call: the command line and any other front end
//! (a server, bindings) say what they want in [`Settings`], decided once, and
//! [`Session::open`] does the rest in the order the memory promise needs: map the checkpoint
//! and read its headers, predict the run's memory, keep or refuse the budget (streaming layers
//! when the weights do not all fit), quantize while loading, load the tokenizer. Nothing large
//! is read or allocated before the budget is known to hold.

use crate::load::{budget, plan, quantize::QuantKind, Checkpoint, OpenOptions};
use crate::memory::{human, Monitor, Report};
use anyhow::{bail, Context, Result};
use frugal_model::Model;
use frugal_tokenizer::GemmaTokenizer;
use std::path::PathBuf;

/// Largest context accepted (no Gemma model is trained beyond 128K tokens).
pub const MAX_CTX: usize = 1 << 24;

/// Checks a context limit: at least one token, at most [`MAX_CTX`].
pub fn check_ctx(ctx: usize) -> Result<()> {
    if ctx == 0 {
        bail!("--ctx 0: the context must hold at least one token; give --ctx N with N >= 1 (the prompt plus the tokens to generate)");
    }
    if ctx > MAX_CTX {
        bail!("--ctx {ctx}: at most {MAX_CTX} tokens are supported");
    }
    Ok(())
}

/// An upper bound on the tokens of a prompt of `bytes` bytes (BOS and the chat template
/// included): every token covers at least one byte. Lets a run plan before its tokenizer is
/// loaded.
pub fn prompt_tokens_bound(bytes: usize, chat: bool) -> usize {
    // BOS, and the template's `<start_of_turn>user\n` ... `<end_of_turn>\n<start_of_turn>model\n`.
    1 + bytes + if chat { 64 } else { 0 }
}

/// What a run asks for, decided once.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A model folder, a `.gguf` file or a `.ckpt` file.
    pub model: PathBuf,
    /// Where the config comes from when the checkpoint has none.
    pub open: OpenOptions,
    /// The context limit (prompt plus generated tokens).
    pub ctx: usize,
    /// f32 activations throughout (else bf16 weights meet bf16-rounded activations).
    pub exact: bool,
    /// Quantize the weight matrices while loading.
    pub quant: Option<QuantKind>,
    /// Keep resident memory within this many bytes.
    pub max_memory: Option<u64>,
    /// Write a memory trace to this file.
    pub mem_trace: Option<PathBuf>,
    /// The command's name in the memory trace.
    pub command: String,
}

/// The tokenizer, or why the checkpoint's vocabulary could not be built.
type TokenizerOrError = (Option<GemmaTokenizer>, Option<String>);

/// A model opened for a run: its checkpoint (quantized if asked), tokenizer, memory plan and
/// budget, with the memory monitor that started before anything was loaded.
pub struct Session {
    pub settings: Settings,
    pub monitor: Monitor,
    pub ck: Checkpoint,
    pub tok: Option<GemmaTokenizer>,
    /// Why the checkpoint's vocabulary could not be built (a kind frugal does not read yet),
    /// told when a tokenizer is needed: runs from token ids do not need one.
    pub tok_error: Option<String>,
    /// The run's memory, predicted from the headers before anything was loaded.
    pub plan: plan::MemoryPlan,
    /// The `--max-memory` budget and how it is kept.
    pub budget: Option<budget::Budget>,
}

impl Session {
    /// Starts the memory monitor (and the memory trace), opens the checkpoint (headers only),
    /// plans the run and checks the budget, quantizes if asked, then loads the tokenizer.
    /// `workload` adjusts the plan of a generation filling the context to what the caller will
    /// do (its prompt, its output). An impossible budget is refused before any tensor data is
    /// read or any large allocation is made.
    pub fn open(
        settings: Settings,
        workload: impl FnOnce(plan::Workload) -> plan::Workload,
    ) -> Result<Self> {
        if let Some(path) = &settings.mem_trace {
            crate::trace::begin(path, &settings.command, &settings.model)?;
        }
        let monitor = Monitor::start();
        match Self::load(&settings, workload) {
            Ok((ck, (tok, tok_error), plan, budget)) => Ok(Session {
                settings,
                monitor,
                ck,
                tok,
                tok_error,
                plan,
                budget,
            }),
            Err(e) => {
                let _ = crate::trace::finish(Some(monitor.peaks()));
                Err(e)
            }
        }
    }

    fn load(
        s: &Settings,
        workload: impl FnOnce(plan::Workload) -> plan::Workload,
    ) -> Result<(
        Checkpoint,
        TokenizerOrError,
        plan::MemoryPlan,
        Option<budget::Budget>,
    )> {
        use crate::trace::{mark, phase};
        check_ctx(s.ctx)?;
        mark(phase::MAP);
        let mut ck = Checkpoint::open_with(&s.model, &s.open)?;
        mark(phase::PLAN);
        let entries = plan::entries_for(&ck, s.quant)?;
        let mut w = plan::Workload::generate(s.ctx, rayon::current_num_threads());
        w.fast_bf16 = !s.exact;
        if s.quant.is_some() {
            w = w.with_quantizing();
        }
        let w = workload(w.with_tokenizer_of(&ck));
        let p = plan::predict(&ck.cfg, &ck.index, &entries, &w);
        crate::trace::info(crate::trace::Info {
            weights_bytes: Some(p.weights_bytes()),
            budget_bytes: s.max_memory,
            predicted_peak_rss_bytes: Some(p.peak_rss_bytes),
            predicted_peak_anon_bytes: Some(p.peak_anon_bytes),
        });
        // The budget is decided from the headers alone: an impossible one is refused here,
        // before any weight is read or memory is reserved.
        let budget = match s.max_memory {
            None => None,
            Some(b) if p.peak_rss_bytes <= b => Some(budget::Budget {
                bytes: b,
                placement: budget::Placement::Resident,
                predicted_peak: p.peak_rss_bytes,
            }),
            // The weights do not all fit: layer streaming (of the quantized copy with
            // --quant), or a refusal with the least budget that works.
            Some(b) => Some(budget::decide(&ck, &w, s.quant, b, false)?),
        };
        let stream = matches!(
            budget.as_ref().map(|b| &b.placement),
            Some(budget::Placement::Stream(_))
        );
        if let Some(b) = &budget {
            eprintln!(
                "memory budget {}: {}, predicted peak {}",
                human(b.bytes),
                match &b.placement {
                    budget::Placement::Resident => "every weight resident".to_string(),
                    budget::Placement::Stream(p) => format!(
                        "streaming {} of {} layers from disk ({} per token)",
                        p.pinned.iter().filter(|&&x| !x).count(),
                        p.pinned.len(),
                        human(p.streamed_bytes_per_token)
                    ),
                },
                human(b.predicted_peak)
            );
        }
        mark(phase::LOAD);
        if let Some(kind) = s.quant {
            mark("quantize");
            let t = std::time::Instant::now();
            if stream {
                ck.quantize_to_cache(kind)?;
            } else {
                ck.quantize(kind)?;
            }
            let q = ck.quant.as_ref().map_or(0, |q| q.bytes());
            eprintln!(
                "quantized the weight matrices to {} in {:.1} s: {}",
                kind.name(),
                t.elapsed().as_secs_f64(),
                human(q)
            );
        }
        let tok = match ck.tokenizer() {
            Ok(t) => (t, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        Ok((ck, tok, p, budget))
    }

    /// The layer-streaming plan, when the budget made the run stream.
    pub fn stream_plan(&self) -> Option<&crate::load::stream::StreamPlan> {
        match self.budget.as_ref().map(|b| &b.placement) {
            Some(budget::Placement::Stream(p)) => Some(p),
            _ => None,
        }
    }

    /// Binds the model in the settings' precision, streaming its layers when the budget says
    /// so.
    pub fn model(&self) -> Result<Model<'_>> {
        let mut model = self.ck.model()?;
        model.fast_bf16 = !self.settings.exact;
        if let Some(p) = self.stream_plan() {
            model.streaming = Some(p.streaming(&self.ck));
        }
        Ok(model)
    }

    /// The tokenizer, or an error saying where it was looked for.
    pub fn tokenizer(&self) -> Result<&GemmaTokenizer> {
        if let (None, Some(e)) = (&self.tok, &self.tok_error) {
            anyhow::bail!(
                "{e} (runs from token ids need no tokenizer: --prompt-ids, logits --tokens)"
            );
        }
        self.tok.as_ref().with_context(|| {
            format!(
                "{}: no tokenizer (no tokenizer.json or tokenizer.model beside the weights; a GGUF file without a vocabulary in its metadata)",
                self.ck.source()
            )
        })
    }

    /// The memory report so far.
    pub fn report(&self, kv_cache_bytes: u64) -> Report {
        Report {
            weights_bytes: self.ck.weights_bytes(),
            budget_bytes: self.budget.as_ref().map(|b| b.bytes),
            kv_cache_bytes,
            peaks: self.monitor.peaks(),
        }
    }
}

impl Drop for Session {
    /// Ends a memory trace with the run's peaks.
    fn drop(&mut self) {
        if let Err(e) = crate::trace::finish(Some(self.monitor.peaks())) {
            eprintln!("{e:#}");
        }
    }
}
