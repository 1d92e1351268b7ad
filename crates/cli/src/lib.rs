//! The `frugal` command line: argument parsing, and one short function per command (a file
//! each) over the engine's API. The binary only calls [`main`].

mod bench;
mod chart;
mod convert;
mod demo;
mod inspect;
mod logits;
mod perplexity;
mod plan;
mod report;
mod run;
mod synth;
pub mod tiny;
mod tokenize;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use frugal_engine::load::quantize::QuantKind;
use frugal_engine::session::Settings;
use std::path::PathBuf;

/// Run Gemma models on a CPU in the least memory possible.
#[derive(Parser, Debug)]
#[command(
    name = "frugal",
    version,
    about = "Run Google's Gemma language models on a CPU in the least memory possible: weights used in place from the mapped file.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--quant`'s values: the engine's [`QuantKind`]s as the command line names them, each the
/// per-matrix choice `llama-quantize` makes for that file type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantArg {
    /// GGUF Q8_0 everywhere: blocks of 32 int8 weights with an f16 scale (8.5 bits per
    /// weight); as `llama-quantize Q8_0`.
    Q8,
    /// GGUF Q4_0 everywhere: blocks of 32 4-bit weights with an f16 scale (4.5 bits per
    /// weight); as `llama-quantize --pure Q4_0`.
    Q4,
    /// GGUF Q4_K everywhere: super-blocks of 256 4-bit weights with 6-bit scales and minimums
    /// (4.5 bits per weight), Q5_0 where a row is not a multiple of 256; as `llama-quantize
    /// --pure Q4_K_S`.
    Q4k,
    /// llama.cpp's Q4_K_M mix: Q4_K; Q6_K for the output projection (the embedding when tied)
    /// and for attn_v and ffn_down in the first and last eighths of the layers and every third
    /// between; where a row is not a multiple of 256, Q5_0 for Q4_K and Q8_0 for Q6_K. As
    /// `llama-quantize Q4_K_M`.
    Q4km,
    /// llama.cpp's Q5_K_M mix: Q5_K (5.5 bits per weight), with Q4_K_M's Q6_K promotions;
    /// where a row is not a multiple of 256, Q5_1 for Q5_K and Q8_0 for Q6_K. As
    /// `llama-quantize Q5_K_M`.
    Q5km,
    /// llama.cpp's Q6_K file type: Q6_K everywhere (6.56 bits per weight), Q8_0 where a row is
    /// not a multiple of 256. As `llama-quantize Q6_K`.
    Q6k,
}

impl From<QuantArg> for QuantKind {
    fn from(q: QuantArg) -> Self {
        match q {
            QuantArg::Q8 => QuantKind::Q8,
            QuantArg::Q4 => QuantKind::Q4,
            QuantArg::Q4k => QuantKind::Q4k,
            QuantArg::Q4km => QuantKind::Q4km,
            QuantArg::Q5km => QuantKind::Q5km,
            QuantArg::Q6k => QuantKind::Q6k,
        }
    }
}

/// Options shared by every command that loads a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The model: a Hugging Face folder (config.json, safetensors or pytorch_model.bin, a
    /// tokenizer), a GGUF file, or a gemma_pytorch .ckpt file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Context limit in tokens (prompt plus generated). The KV cache grows only with the
    /// tokens actually held.
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
    /// The model variant when the checkpoint has no config.json (e.g. gemma-7b, gemma2-9b).
    #[arg(long)]
    pub variant: Option<String>,
    /// A Hugging Face style config.json for a checkpoint that has none.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Multiply with f32 activations throughout. By default bf16 weights are multiplied with
    /// activations rounded to bf16 (AVX512_BF16 dot products, as llama.cpp does): prompts about
    /// 1.5x and decoding about 1.15x faster, logits within about 1e-2 relative of exact
    /// (a few % on the test fixtures, whose large gains amplify rounding).
    #[arg(long)]
    pub exact: bool,
    /// Quantize the weight matrices while loading, each to the dtype llama-quantize chooses
    /// for the file type: q8 (Q8_0), q4 (Q4_0), q4k (Q4_K), or llama.cpp's mixes q4km
    /// (Q4_K_M), q5km (Q5_K_M), q6k (Q6_K); the blocks are llama-quantize's byte for byte.
    /// The full-precision weights are never held: the peak is the quantized size. Matrices a
    /// GGUF file holds in blocks stay in place, except that Q4_0 and Q8_0 blocks the kind also
    /// chooses are rearranged, losslessly, into the layout the AVX-512 kernels decode fastest,
    /// releasing the file's pages as it goes.
    #[arg(long, value_enum)]
    pub quant: Option<QuantArg>,
    /// Keep resident memory within SIZE (e.g. 4GiB, 4096MiB, 4G; 4GB = 4e9). Decided from the
    /// headers before loading: if the weights do not all fit, layers are streamed from disk
    /// (with --quant, from a quantized copy cached on disk); if even one layer cannot fit,
    /// the run is refused with the smallest budget that works.
    #[arg(long = "max-memory", value_name = "SIZE", value_parser = frugal_engine::memory::parse_size)]
    pub max_memory: Option<u64>,
    /// Write resident memory (RSS, anonymous, file-backed) sampled through the run, with phase
    /// marks, to FILE as JSON lines; `frugal report FILE -o chart.svg` draws it.
    #[arg(long = "mem-trace", value_name = "FILE")]
    pub mem_trace: Option<PathBuf>,
}

impl ModelArgs {
    /// The config choices for opening a checkpoint.
    pub fn open_options(&self) -> frugal_engine::load::OpenOptions {
        frugal_engine::load::OpenOptions {
            variant: self.variant.clone(),
            config: self.config.clone(),
        }
    }

    /// `--quant` as the engine's kind.
    pub fn quant(&self) -> Option<QuantKind> {
        self.quant.map(Into::into)
    }

    /// The run's settings, decided once.
    pub fn settings(&self) -> Settings {
        Settings {
            model: self.model.clone(),
            open: self.open_options(),
            ctx: self.ctx,
            exact: self.exact,
            quant: self.quant(),
            max_memory: self.max_memory,
            mem_trace: self.mem_trace.clone(),
            command: std::env::args().nth(1).unwrap_or_else(|| "frugal".into()),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text from a prompt.
    Run(run::RunArgs),
    /// Print the model's logits for every position of a token sequence.
    Logits(logits::LogitsArgs),
    /// Show the token ids the model's tokenizer gives for a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Describe a checkpoint: architecture, shapes, dtypes, bytes, and the memory a run needs.
    Inspect(inspect::InspectArgs),
    /// Write a randomly initialised checkpoint with the real shapes of a Gemma model.
    Synth(synth::SynthArgs),
    /// Convert any checkpoint frugal reads to a Hugging Face safetensors folder, or to GGUF.
    Convert(convert::ConvertArgs),
    /// Perplexity of the model on a text file, in non-overlapping windows of --ctx tokens.
    Perplexity(perplexity::PerplexityArgs),
    /// Run the tiny trained model embedded in frugal (or, with --synthetic, a synthetic
    /// checkpoint of a real model's shapes) and print the memory report.
    Demo(demo::DemoArgs),
    /// Measure load time, time to first token, prefill and decode speed, and memory.
    Bench(bench::BenchArgs),
    /// Predict a run's peak memory from the headers alone, and check it against a budget.
    Plan(plan::PlanArgs),
    /// Draw a memory trace (written with --mem-trace) as an SVG chart.
    Report(report::ReportArgs),
}

/// Parses the command line and runs the command.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command.pool_threads() {
        // The commands that compute run on a worker of the pool: the parallel products a
        // forward pass starts (about a hundred per decoded token) are then forked from inside
        // the pool, where the calling worker takes a share at once, instead of each being
        // injected from the outside and waited for on a latch.
        Some(threads) => {
            init_threads(threads)?;
            rayon::scope(|_| dispatch(cli.command))
        }
        None => dispatch(cli.command),
    }
}

impl Command {
    /// `Some(--threads)` for the commands that compute on the thread pool: every command that
    /// opens a model for a run is one, and `main` sizes the pool for it.
    fn pool_threads(&self) -> Option<Option<usize>> {
        match self {
            Command::Run(a) => Some(a.model.threads),
            Command::Logits(a) => Some(a.model.threads),
            Command::Perplexity(a) => Some(a.model.threads),
            Command::Bench(a) => Some(a.model.threads),
            Command::Demo(a) => Some(a.threads),
            _ => None,
        }
    }
}

/// Runs one command.
fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(a) => run::run(a),
        Command::Logits(a) => logits::logits(a),
        Command::Tokenize(a) => tokenize::tokenize(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::Synth(a) => synth::synth(a),
        Command::Convert(a) => convert::convert(a),
        Command::Perplexity(a) => perplexity::perplexity(a),
        Command::Demo(a) => demo::demo(a),
        Command::Bench(a) => bench::bench(a),
        Command::Plan(a) => plan::plan(a),
        Command::Report(a) => report::report(a),
    }
}

/// Configures the global thread pool once.
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    if let Some(0) = threads {
        bail!("--threads must be at least 1");
    }
    let n = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // One worker runs the whole command (see `main`), so the stacks are the main thread's
    // usual 8 MiB; untouched stack is not resident.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .stack_size(8 << 20)
        .build_global();
    Ok(())
}
