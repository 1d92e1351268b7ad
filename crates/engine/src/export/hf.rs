//! A checkpoint as a Hugging Face folder (config.json, safetensors shards, the tokenizer):
//! every tensor of the table under its Hugging Face name, copied from the source's map a chunk
//! at a time (the chunk's pages released once written), so memory stays at one chunk whatever
//! the model's size. A GGUF file's blocks become f32 (exact: every block value is an f32) and
//! its `1 + w` norms `w`; its vocabulary becomes tokenizer.model; the tokenizer's configuration
//! goes with it ([`hf_tokenizer`]), so transformers uses the model as its source intended.

use crate::load::Checkpoint;
use crate::progress::Progress;
use anyhow::{Context, Result};
use frugal_formats::safetensors::{write_shards, OutTensor};
use frugal_model::arch;
use frugal_model::bind::Source;
use frugal_tensor::DType;
use frugal_tokenizer::sentencepiece::SentencePiece;

use super::hf_tokenizer;
use std::path::Path;

/// Largest shard written.
const SHARD_BYTES: u64 = 4 << 30;

/// What a conversion wrote.
pub struct Written {
    pub tensors: usize,
    pub bytes: u64,
}

/// The tokenizer's files of the folder: a GGUF file's vocabulary as `tokenizer.model` with the
/// metadata's facts ([`hf_tokenizer`]); a folder's own tokenizer files copied, and those it
/// lacks written from its tokenizer with Gemma's defaults (a gemma_pytorch checkpoint has none).
/// The folder beside a GGUF file may hold another model's tokenizer: it is not copied.
fn tokenizer_files(ck: &Checkpoint) -> Result<Vec<(String, Vec<u8>)>> {
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON values print");
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(g) = &ck.gguf {
        let map = &ck.index.files[0].map;
        let Some(sp) = frugal_tokenizer::gguf::sentencepiece(g, map)? else {
            return Ok(out);
        };
        let id =
            |k: &str| -> Result<Option<u32>> { Ok(g.uint(k)?.and_then(|v| u32::try_from(v).ok())) };
        out.push((
            "tokenizer.model".into(),
            sp.to_model_proto(
                id("tokenizer.ggml.bos_token_id")?,
                id("tokenizer.ggml.eos_token_id")?,
                id("tokenizer.ggml.padding_token_id")?,
            ),
        ));
        let usage = hf_tokenizer::Usage {
            add_bos: g.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(true),
            add_eos: g.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            chat_template: g.str("tokenizer.chat_template")?.map(str::to_string),
            pad: id("tokenizer.ggml.padding_token_id")?,
        };
        for (name, v) in hf_tokenizer::files_for(&sp, &ck.cfg, &usage)? {
            out.push((name, json(&v)));
        }
        return Ok(out);
    }
    for name in [
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
        "chat_template.jinja",
        "chat_template.json",
    ] {
        let src = ck.dir.join(name);
        if src.is_file() {
            let bytes =
                std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?;
            out.push((name.to_string(), bytes));
        }
    }
    // What the folder's own tokenizer_config.json says, else Gemma's defaults.
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(ck.dir.join(name)).ok()?).ok()
    };
    let mut usage = hf_tokenizer::Usage::default();
    if let Some(c) = read("tokenizer_config.json") {
        usage.add_bos = c["add_bos_token"].as_bool().unwrap_or(usage.add_bos);
        usage.add_eos = c["add_eos_token"].as_bool().unwrap_or(usage.add_eos);
    }
    let written = if ck.dir.join("tokenizer.model").is_file() {
        let sp = SentencePiece::from_file(&ck.dir.join("tokenizer.model"))?;
        hf_tokenizer::files_for(&sp, &ck.cfg, &usage)?
    } else if let Some(t) = read("tokenizer.json") {
        hf_tokenizer::files_for_json(&t, &ck.cfg, &usage)
    } else {
        Vec::new()
    };
    for (name, v) in written {
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, json(&v)));
        }
    }
    if !out.iter().any(|(n, _)| n == "generation_config.json") {
        let mut g = serde_json::json!({"bos_token_id": ck.cfg.bos_token_id});
        g["eos_token_id"] = serde_json::json!(ck.cfg.eos_token_ids);
        out.push(("generation_config.json".into(), json(&g)));
    }
    Ok(out)
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
        for (name, bytes) in tokenizer_files(ck)? {
            std::fs::write(tmp.join(&name), bytes)
                .with_context(|| format!("{}: cannot write", tmp.join(&name).display()))?;
        }
        Ok(n)
    })?;
    progress.finish();
    Ok(Written {
        tensors: tensors.len(),
        bytes,
    })
}
