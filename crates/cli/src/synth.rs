//! `frugal synth`: a checkpoint of random weights with a known variant's real shapes.

use anyhow::{bail, Result};
use clap::Args;
use frugal_engine::memory::human;
use frugal_model::arch::Variant;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Shape to imitate (gemma-2b, gemma-7b, gemma2-2b, gemma2-9b, gemma2-27b, gemma3-1b,
    /// gemma3-4b, gemma3-12b, gemma3-27b, gemma4-e2b, gemma4-e4b, gemma4-12b, gemma4-26b-a4b,
    /// gemma4-31b, or the small test shapes tiny-gemma, tiny-gemma2,
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
    let dtype = frugal_engine::synth::parse_dtype(&a.dtype)?;
    let shape = Variant::by_name(&a.shape)?;
    let format = match a.format.as_str() {
        "safetensors" => frugal_engine::synth::Format::Safetensors,
        "ckpt" => frugal_engine::synth::Format::Ckpt,
        other => bail!("--format: `{other}` is not one of safetensors, ckpt"),
    };
    let bytes = frugal_engine::synth::write_format(&shape, dtype, format, &a.out, a.seed, a.force)?;
    eprintln!(
        "wrote {} ({}) to {}",
        shape.name,
        human(bytes),
        a.out.display()
    );
    Ok(())
}
