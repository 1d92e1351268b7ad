//! A checkpoint as a Hugging Face folder (config.json, safetensors shards, the tokenizer):
//! every tensor of the table under its Hugging Face name, copied from the source's map a chunk
//! at a time (the chunk's pages released once written), so memory stays at one chunk whatever
//! the model's size. A GGUF file's blocks become f32 (exact: every block value is an f32) and
//! its `1 + w` norms `w`; its vocabulary becomes tokenizer.model.

use crate::load::Checkpoint;
use crate::progress::Progress;
use anyhow::{Context, Result};
use frugal_formats::safetensors::{write_shards, OutTensor};
use frugal_model::arch;
use frugal_model::bind::Source;
use frugal_tensor::DType;
use std::path::Path;

/// Largest shard written.
const SHARD_BYTES: u64 = 4 << 30;

/// What a conversion wrote.
pub struct Written {
    pub tensors: usize,
    pub bytes: u64,
}

/// The dtype a source tensor is written in: blocks and `1 + w` norms as f32, the rest as
/// stored.
fn out_dtype(s: &Source) -> DType {
    if s.dtype.is_quantized() || s.plus_one {
        DType::F32
    } else {
        s.dtype
    }
}

fn out_tensor(s: &Source) -> OutTensor {
    OutTensor {
        name: s.name.clone(),
        dtype: out_dtype(s),
        shape: s.shape.clone(),
    }
}

/// Writes `ck` as a Hugging Face folder at `out` (atomically: a temporary sibling renamed when
/// complete); refuses an existing, non-empty `out` unless `force`.
pub fn export(ck: &Checkpoint, out: &Path, force: bool) -> Result<Written> {
    let sources = arch::hf_sources(&ck.cfg, &ck.index, &ck.source())?;
    let tensors: Vec<OutTensor> = sources.iter().map(out_tensor).collect();
    let total: u64 = tensors.iter().map(|t| t.bytes()).sum();
    crate::trace::info(crate::trace::Info {
        weights_bytes: Some(total),
        ..Default::default()
    });
    crate::trace::mark("convert");
    let progress = Progress::bytes("converting", total);
    let bytes = frugal_formats::output::atomic_dir(out, force, |tmp| {
        let n = write_shards(tmp, &tensors, SHARD_BYTES, "frugal convert", |i, w| {
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
                        frugal_quant::to_f32(r, s.dtype, o);
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
                ck.index.release(chunk);
                progress.add(chunk.len() as u64);
            }
            Ok(())
        })?;
        std::fs::write(
            tmp.join("config.json"),
            serde_json::to_vec_pretty(&ck.cfg.to_hf_json())?,
        )?;
        if let Some(g) = &ck.gguf {
            // The vocabulary the file carries, as a SentencePiece model (the folder beside a
            // GGUF file may hold another model's tokenizer: not copied).
            if let Some(sp) = frugal_tokenizer::gguf::sentencepiece(g, &ck.index.files[0].map)? {
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
    Ok(Written {
        tensors: tensors.len(),
        bytes,
    })
}
