//! The model commands: run, logits, tokenize, inspect, synth.

use super::{check_ctx, ModelArgs};
use crate::generate::sampler::SamplerConfig;
use crate::generate::{self, GenerateOptions};
use crate::load::{budget, plan, Checkpoint};
use crate::memory::{human, Monitor, Report};
use crate::tokenizer::GemmaTokenizer;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 128)]
    pub n: usize,
    /// Wrap the prompt in Gemma's chat template and stop at <end_of_turn>.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: a system message, put at the start of the user turn.
    #[arg(long)]
    pub system: Option<String>,
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

/// A loaded model folder with its tokenizer, and the memory monitor started before loading.
pub struct Session {
    pub monitor: Monitor,
    pub ck: Checkpoint,
    pub tok: Option<GemmaTokenizer>,
    /// The run's memory, predicted from the headers before anything was loaded.
    pub plan: plan::MemoryPlan,
    /// The `--max-memory` budget and how it is kept.
    pub budget: Option<budget::Budget>,
}

impl Session {
    /// The layer-streaming plan, when `--max-memory` made the run stream.
    pub fn stream_plan(&self) -> Option<&crate::load::stream::StreamPlan> {
        match self.budget.as_ref().map(|b| &b.placement) {
            Some(budget::Placement::Stream(p)) => Some(p),
            _ => None,
        }
    }

    /// Starts the memory monitor (and `--mem-trace`), opens the checkpoint
    /// (headers only), plans the run and checks `--max-memory`, then loads the tokenizer.
    /// `workload` adjusts the plan of a generation filling `--ctx` to what the command will do
    /// (its prompt, its output). An impossible budget is refused before any tensor data is read
    /// or any large allocation is made.
    pub fn open_for(
        m: &ModelArgs,
        workload: impl FnOnce(plan::Workload) -> plan::Workload,
    ) -> Result<Self> {
        if let Some(path) = &m.mem_trace {
            let command = std::env::args().nth(1).unwrap_or_else(|| "frugal".into());
            crate::trace::begin(path, &command, &m.model)?;
        }
        let monitor = Monitor::start();
        match Self::load(m, workload) {
            Ok((ck, tok, plan, budget)) => Ok(Session {
                monitor,
                ck,
                tok,
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
        m: &ModelArgs,
        workload: impl FnOnce(plan::Workload) -> plan::Workload,
    ) -> Result<(
        Checkpoint,
        Option<GemmaTokenizer>,
        plan::MemoryPlan,
        Option<budget::Budget>,
    )> {
        use crate::trace::{mark, phase};
        check_ctx(m.ctx)?;
        mark(phase::MAP);
        let mut ck = Checkpoint::open_with(&m.model, &m.open_options())?;
        mark(phase::PLAN);
        let entries = plan::entries_for(&ck, m.quant)?;
        let mut w = plan::Workload::generate(m.ctx, rayon::current_num_threads());
        w.fast_bf16 = !m.exact;
        if m.quant.is_some() {
            w = w.with_quantizing();
        }
        let w = workload(w.with_tokenizer_of(&ck));
        let p = plan::predict(&ck.cfg, &ck.index, &entries, &w);
        crate::trace::info(crate::trace::Info {
            weights_bytes: Some(p.weights_bytes()),
            budget_bytes: m.max_memory,
            predicted_peak_rss_bytes: Some(p.peak_rss_bytes),
            predicted_peak_anon_bytes: Some(p.peak_anon_bytes),
        });
        // The budget is decided from the headers alone: an impossible one is refused here,
        // before any weight is read or memory is reserved.
        let budget = match m.max_memory {
            None => None,
            Some(b) if p.peak_rss_bytes <= b => Some(budget::Budget {
                bytes: b,
                placement: budget::Placement::Resident,
                predicted_peak: p.peak_rss_bytes,
            }),
            // The weights do not all fit: layer streaming (of the quantized copy with
            // --quant), or a refusal with the least budget that works.
            Some(b) => Some(budget::decide(&ck, &w, m.quant, b, false)?),
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
        if let Some(kind) = m.quant {
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
        let tok = ck.tokenizer()?;
        Ok((ck, tok, p, budget))
    }

    /// Binds the model, streaming its layers when the budget says so.
    pub fn model(&self) -> Result<crate::model::gemma::Gemma<'_>> {
        let mut model = self.ck.model()?;
        if let Some(budget::Budget {
            placement: budget::Placement::Stream(p),
            ..
        }) = &self.budget
        {
            model.streaming = Some(p.streaming(&self.ck));
        }
        Ok(model)
    }

    /// The tokenizer, or an error saying where it was looked for.
    pub fn tokenizer(&self) -> Result<&GemmaTokenizer> {
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
    /// Ends a `--mem-trace` with the run's peaks.
    fn drop(&mut self) {
        if let Err(e) = crate::trace::finish(Some(self.monitor.peaks())) {
            eprintln!("{e:#}");
        }
    }
}

/// An upper bound on the tokens of a prompt of `bytes` bytes (BOS and the chat template
/// included): every token covers at least one byte. Lets a run plan before its tokenizer is
/// loaded.
pub fn prompt_tokens_bound(bytes: usize, chat: bool) -> usize {
    // BOS, and the template's `<start_of_turn>user\n` ... `<end_of_turn>\n<start_of_turn>model\n`.
    1 + bytes + if chat { 64 } else { 0 }
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
    let prompt_bytes = a.prompt.len() + a.system.as_ref().map_or(0, |s| s.len() + 2);
    let bound = prompt_tokens_bound(prompt_bytes, a.chat);
    let s = Session::open_for(&a.model, |w| w.with_tokens(bound, a.n))?;
    let tok = s.tokenizer()?;
    let mut model = s.model()?;
    model.fast_bf16 = !a.model.exact;
    let prompt = if a.chat {
        tok.chat_prompt_with_system(a.system.as_deref(), &a.prompt, model.cfg.bos_token_id)?
    } else {
        if a.prompt.is_empty() {
            bail!("the prompt is empty: give some text with -p");
        }
        let mut ids = vec![model.cfg.bos_token_id];
        ids.extend(tok.encode(&a.prompt)?);
        ids
    };
    let mut stop_ids = model.cfg.eos_token_ids.clone();
    stop_ids.extend(tok.end_of_turn);
    let opts = GenerateOptions {
        max_new_tokens: a.n,
        ctx: a.model.ctx,
        sampler,
        stop_ids,
        sample_limit: generate::sample_limit(&model, tok.vocab_size),
    };
    if !a.chat {
        print!("{}", a.prompt);
    }
    let stats = generate::generate_to_stdout(&model, &prompt, &opts, tok)?;
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
    let s = Session::open_for(&a.model, |w| {
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
    crate::trace::mark(crate::trace::phase::PREFILL);
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

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Model folder holding tokenizer.json.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Text to tokenize.
    #[arg(long)]
    pub text: String,
    /// Put the BOS id first.
    #[arg(long)]
    pub bos: bool,
    /// Print JSON: {"ids": [...], "pieces": [...]}.
    #[arg(long)]
    pub json: bool,
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    if crate::checkpoint::gguf::is_gguf(&a.model) {
        let ck = Checkpoint::open(&a.model)?;
        let tok = ck
            .tokenizer()?
            .with_context(|| format!("{}: the file holds no vocabulary", a.model.display()))?;
        return print_tokens(&tok, &a);
    }
    let dir = if a.model.is_file() {
        a.model
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    } else {
        a.model.clone()
    };
    let path = GemmaTokenizer::find(&dir).with_context(|| {
        format!(
            "{}: no tokenizer.json or tokenizer.model in this folder",
            dir.display()
        )
    })?;
    let tok = GemmaTokenizer::from_file(&path)?;
    print_tokens(&tok, &a)
}

fn print_tokens(tok: &GemmaTokenizer, a: &TokenizeArgs) -> Result<()> {
    let mut ids = Vec::new();
    if a.bos {
        ids.push(tok.bos.context("this tokenizer has no <bos> token")?);
    }
    ids.extend(tok.encode(&a.text)?);
    let pieces = tok.pieces(&ids);
    if a.json {
        println!("{}", serde_json::json!({ "ids": ids, "pieces": pieces }));
    } else {
        for (i, p) in ids.iter().zip(&pieces) {
            println!("{i}\t{p:?}");
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model folder.
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
        // Hugging Face / gemma_pytorch names, and GGUF's (token_embd, output, attn_*, ffn_*).
        let part = if name.contains("norm") {
            "norms"
        } else if name.contains("embed") || name.starts_with("token_embd") {
            "embedding"
        } else if name.contains("lm_head") || name == "output.weight" {
            "output head"
        } else if (name.contains("self_attn") && name.ends_with("proj.weight"))
            || name.contains(".attn_")
        {
            "attention"
        } else if name.contains("mlp.") || name.contains(".ffn_") {
            "mlp"
        } else {
            "other"
        };
        *by_part.entry(part).or_default() += t.len as u64;
        *by_dtype.entry(t.dtype.to_string()).or_default() += t.len as u64;
    }
    if a.json {
        let v = serde_json::json!({
            "model_type": cfg.model_type, "family": cfg.family.name(), "layers": cfg.num_layers,
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
        .filter(|k| **k == crate::model::config::LayerKind::Local)
        .count();
    println!(
        "{}: {} ({}), {} layers ({} sliding-window, {} global)",
        ck.source(),
        cfg.family.name(),
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

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Shape to imitate (gemma-2b, gemma-7b, gemma2-2b, gemma2-9b, gemma2-27b, gemma3-1b,
    /// gemma3-4b, gemma3-12b, gemma3-27b, or the small test shapes tiny-gemma, tiny-gemma2,
    /// tiny-gemma3, small-gemma).
    #[arg(long)]
    pub shape: String,
    /// Output folder (must not exist, or be empty, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Storage dtype.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace an existing output folder.
    #[arg(long)]
    pub force: bool,
    /// File layout: safetensors (Hugging Face folder) or ckpt (gemma_pytorch model.ckpt).
    #[arg(long, default_value = "safetensors")]
    pub format: String,
}

pub fn synth(a: SynthArgs) -> Result<()> {
    let dtype = crate::synth::parse_dtype(&a.dtype)?;
    let shape = crate::synth::Shape::by_name(&a.shape)?;
    let format = match a.format.as_str() {
        "safetensors" => crate::synth::Format::Safetensors,
        "ckpt" => crate::synth::Format::Ckpt,
        other => bail!("--format: `{other}` is not one of safetensors, ckpt"),
    };
    let bytes = crate::synth::write_format(&shape, dtype, format, &a.out, a.seed, a.force)?;
    eprintln!(
        "wrote {} ({}) to {}",
        shape.name,
        human(bytes),
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input: any checkpoint frugal reads (safetensors folder, pytorch_model.bin, .ckpt, a GGUF
    /// file). From GGUF to a folder, block-quantized matrices are written dequantized in f32
    /// and the file's vocabulary as tokenizer.model; GGUF to GGUF keeps the metadata and the
    /// blocks (with --quant, other blocks are dequantized and quantized again: twice lossy).
    pub input: PathBuf,
    /// Output: a folder (Hugging Face layout: config.json, safetensors shards, tokenizer), or a
    /// file ending in `.gguf` (llama.cpp's format, as its own converter writes Gemma).
    pub output: PathBuf,
    /// GGUF output only: quantize the matrices as they are written (q8 = Q8_0, q4 = Q4_0,
    /// q4k = Q4_K with Q4_0 where rows are not a multiple of 256).
    #[arg(long, value_enum)]
    pub quant: Option<crate::load::quantize::QuantKind>,
    /// Replace an existing output folder.
    #[arg(long)]
    pub force: bool,
    /// The model variant when the input has no config.json.
    #[arg(long)]
    pub variant: Option<String>,
    /// A Hugging Face style config.json for an input that has none.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write resident memory sampled through the conversion to FILE (as `run --mem-trace`).
    #[arg(long = "mem-trace", value_name = "FILE")]
    pub mem_trace: Option<PathBuf>,
}

/// Largest shard `convert` writes.
const CONVERT_SHARD_BYTES: u64 = 4 << 30;

pub fn convert(a: ConvertArgs) -> Result<()> {
    if let Some(t) = &a.mem_trace {
        crate::trace::begin(t, "convert", &a.input)?;
    }
    let monitor = Monitor::start();
    let r = convert_with(&a, &monitor);
    crate::trace::finish(Some(monitor.peaks()))?;
    r
}

fn convert_with(a: &ConvertArgs, monitor: &Monitor) -> Result<()> {
    let opts = crate::load::OpenOptions {
        variant: a.variant.clone(),
        config: a.config.clone(),
    };
    crate::trace::mark(crate::trace::phase::MAP);
    let ck = Checkpoint::open_with(&a.input, &opts)?;
    if a.output.canonicalize().ok().is_some_and(|o| {
        a.input.canonicalize().ok() == Some(o.clone()) || ck.dir.canonicalize().ok() == Some(o)
    }) {
        bail!(
            "{}: the output folder is the input's folder; choose another",
            a.output.display()
        );
    }
    if a.output.extension().is_some_and(|e| e == "gguf") {
        let started = std::time::Instant::now();
        let bytes = crate::export::gguf::export(&ck, &a.output, a.force, a.quant)?;
        let p = monitor.peaks();
        eprintln!(
            "converted {} to {} ({}{}) in {:.1} s; peak RSS {}, peak anonymous {}",
            ck.source(),
            a.output.display(),
            human(bytes),
            a.quant
                .map(|q| format!(", {}", q.name()))
                .unwrap_or_default(),
            started.elapsed().as_secs_f64(),
            human(p.peak_rss_bytes),
            human(p.peak_anon_bytes)
        );
        return Ok(());
    }
    if let Some(q) = a.quant {
        bail!(
            "--quant {} applies to GGUF output (a file ending in .gguf); the Hugging Face safetensors format has no quantized layout",
            q.name()
        );
    }
    let sources = crate::model::weights::hf_sources(&ck.cfg, &ck.index, &ck.source())?;
    // A GGUF file's blocks become f32 (exact: every block value is an f32), its `1 + w`
    // norms `w` in f32; everything else is copied.
    let out_dtype = |s: &crate::model::weights::Source| {
        if s.dtype.is_quantized() || s.plus_one {
            crate::kernels::DType::F32
        } else {
            s.dtype
        }
    };
    let tensors: Vec<crate::checkpoint::safetensors::OutTensor> = sources
        .iter()
        .map(|s| crate::checkpoint::safetensors::OutTensor {
            name: s.name.clone(),
            dtype: out_dtype(s),
            shape: s.shape.clone(),
        })
        .collect();
    let total: u64 = tensors.iter().map(|t| t.bytes()).sum();
    crate::trace::info(crate::trace::Info {
        weights_bytes: Some(total),
        ..Default::default()
    });
    crate::trace::mark("convert");
    let started = std::time::Instant::now();
    let progress = crate::progress::Progress::bytes("converting", total);
    let bytes = crate::output::atomic_dir(&a.output, a.force, |tmp| {
        let n = crate::checkpoint::safetensors::write_shards(
            tmp,
            &tensors,
            CONVERT_SHARD_BYTES,
            "frugal convert",
            |i, w| {
                let s = &sources[i];
                if s.dtype.is_quantized() || s.plus_one {
                    // Converted whole rows at a time through one f32 buffer of about 8 MiB.
                    let cols = *s.shape.last().unwrap_or(&1);
                    let in_row = s.dtype.row_bytes(cols)?;
                    let rows = ((8 << 20) / (cols * 4)).max(1);
                    let sub = if s.plus_one { 1.0 } else { 0.0 };
                    let (mut f, mut out) = (Vec::new(), Vec::new());
                    for chunk in s.bytes.chunks(rows * in_row) {
                        f.resize(chunk.len() / in_row * cols, 0f32);
                        for (r, o) in chunk.chunks(in_row).zip(f.chunks_mut(cols)) {
                            crate::kernels::scalar::to_f32(r, s.dtype, o);
                        }
                        out.clear();
                        out.extend(f.iter().flat_map(|x| (x - sub).to_le_bytes()));
                        w.write_all(&out)?;
                        ck.index.release(chunk);
                        progress.add(chunk.len() as u64);
                    }
                    return Ok(());
                }
                // Straight from the input's map, a chunk at a time: no copy of the model in memory.
                for chunk in s.bytes.chunks(8 << 20) {
                    w.write_all(chunk)?;
                    // Consumed: drop the input's pages so they never accumulate.
                    #[cfg(unix)]
                    ck.index.release(chunk);
                    progress.add(chunk.len() as u64);
                }
                Ok(())
            },
        )?;
        std::fs::write(
            tmp.join("config.json"),
            serde_json::to_vec_pretty(&ck.cfg.to_hf_json())?,
        )?;
        if let Some(g) = &ck.gguf {
            // The vocabulary the file carries, as a SentencePiece model (the folder beside a
            // GGUF file may hold another model's tokenizer: not copied).
            if let Some(sp) = g.tokenizer(&ck.index)? {
                let id = |k: &str| -> Result<Option<u32>> {
                    Ok(g.uint(k)?.and_then(|v| u32::try_from(v).ok()))
                };
                let proto = sp.to_model_proto(
                    id("tokenizer.ggml.bos_token_id")?,
                    id("tokenizer.ggml.eos_token_id")?,
                    id("tokenizer.ggml.padding_token_id")?,
                );
                std::fs::write(tmp.join("tokenizer.model"), proto)?;
            }
            return Ok(n);
        }
        for name in [
            "tokenizer.json",
            "tokenizer.model",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "generation_config.json",
        ] {
            let src = ck.dir.join(name);
            if src.is_file() {
                std::fs::copy(&src, tmp.join(name))
                    .with_context(|| format!("copying {}", src.display()))?;
            }
        }
        Ok(n)
    })?;
    progress.finish();
    let p = monitor.peaks();
    eprintln!(
        "converted {} ({} tensors, {}) to {} in {:.1} s; peak RSS {}, peak anonymous {}",
        ck.source(),
        tensors.len(),
        human(bytes),
        a.output.display(),
        started.elapsed().as_secs_f64(),
        human(p.peak_rss_bytes),
        human(p.peak_anon_bytes)
    );
    Ok(())
}
