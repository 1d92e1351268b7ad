//! `frugal convert`: any checkpoint frugal reads to a Hugging Face safetensors folder, or to a
//! GGUF file (quantized while writing with `--quant`), with the peaks of memory it took.

use crate::QuantArg;
use anyhow::{bail, Result};
use clap::Args;
use frugal_engine::export;
use frugal_engine::load::quantize::QuantKind;
use frugal_engine::load::{Checkpoint, OpenOptions};
use frugal_engine::memory::{human, Monitor};
use frugal_engine::trace;
use std::path::PathBuf;

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
    /// GGUF output only: quantize the matrices as they are written, each to the dtype and
    /// bytes `llama-quantize` writes for the file type (q8 = Q8_0, q4 = --pure Q4_0, q4k =
    /// --pure Q4_K_S, q4km = Q4_K_M, q5km = Q5_K_M, q6k = Q6_K), general.file_type set to it.
    #[arg(long, value_enum)]
    pub quant: Option<QuantArg>,
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

pub fn convert(a: ConvertArgs) -> Result<()> {
    if let Some(t) = &a.mem_trace {
        trace::begin(t, "convert", &a.input)?;
    }
    let monitor = Monitor::start();
    let r = convert_with(&a, &monitor);
    trace::finish(Some(monitor.peaks()))?;
    r
}

fn convert_with(a: &ConvertArgs, monitor: &Monitor) -> Result<()> {
    let opts = OpenOptions {
        variant: a.variant.clone(),
        config: a.config.clone(),
    };
    let quant: Option<QuantKind> = a.quant.map(Into::into);
    trace::mark(trace::phase::MAP);
    let ck = Checkpoint::open_with(&a.input, &opts)?;
    if a.output.canonicalize().ok().is_some_and(|o| {
        a.input.canonicalize().ok() == Some(o.clone()) || ck.dir.canonicalize().ok() == Some(o)
    }) {
        bail!(
            "{}: the output folder is the input's folder; choose another",
            a.output.display()
        );
    }
    let started = std::time::Instant::now();
    if a.output.extension().is_some_and(|e| e == "gguf") {
        let bytes = export::gguf::export(&ck, &a.output, a.force, quant)?;
        let p = monitor.peaks();
        eprintln!(
            "converted {} to {} ({}{}) in {:.1} s; peak RSS {}, peak anonymous {}",
            ck.source(),
            a.output.display(),
            human(bytes),
            quant.map(|q| format!(", {}", q.name())).unwrap_or_default(),
            started.elapsed().as_secs_f64(),
            human(p.peak_rss_bytes),
            human(p.peak_anon_bytes)
        );
        return Ok(());
    }
    if let Some(q) = quant {
        bail!(
            "--quant {} applies to GGUF output (a file ending in .gguf); the Hugging Face safetensors format has no quantized layout",
            q.name()
        );
    }
    let w = export::hf::export(&ck, &a.output, a.force)?;
    let p = monitor.peaks();
    eprintln!(
        "converted {} ({} tensors, {}) to {} in {:.1} s; peak RSS {}, peak anonymous {}",
        ck.source(),
        w.tensors,
        human(w.bytes),
        a.output.display(),
        started.elapsed().as_secs_f64(),
        human(p.peak_rss_bytes),
        human(p.peak_anon_bytes)
    );
    Ok(())
}
