//! Synthetic checkpoints: random weights with the real shapes of Gemma models, a valid
//! config.json and a tokenizer, written as Hugging Face safetensors shards. Written streaming
//! (one chunk in memory at a time) into a temporary folder renamed at the end, so a failed run
//! never leaves a half-written model. Used by the demo, the benchmarks and the memory tests.

use crate::progress::Progress;
use anyhow::{bail, Result};
use frugal_formats::safetensors::{write_shards, OutTensor};
use frugal_model::arch::Variant;
use frugal_model::tensors::{key, Kind, PtName, Role, TensorSpec};
use frugal_model::GemmaConfig;
use frugal_tensor::DType;
use rayon::prelude::*;
use serde_json::json;
use std::path::Path;

/// The tokenizer written beside every synthetic model (trained by scripts/make_fixtures.py on
/// the CPython standard library; about 2048 ids, Gemma's layout and special tokens).
pub const TOKENIZER_JSON: &[u8] = include_bytes!("../../../../assets/tokenizer/tokenizer.json");
/// The same tokenizer as a SentencePiece model.
pub const TOKENIZER_MODEL: &[u8] = include_bytes!("../../../../assets/tokenizer/tokenizer.model");

/// Largest shard written, in bytes.
const SHARD_BYTES: u64 = 4 << 30;
/// Elements generated per chunk.
const CHUNK: usize = 1 << 22;

/// Parses `bf16`, `f16`, `f32` or `int8`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    Ok(match s {
        "bf16" | "bfloat16" => DType::BF16,
        "f16" | "float16" => DType::F16,
        "f32" | "float32" => DType::F32,
        "int8" | "i8" => DType::I8,
        other => bail!("--dtype: `{other}` is not one of bf16, f16, f32, int8"),
    })
}

/// One tensor to write: name, shape, and the standard deviation of its values (norm weights
/// get a small spread around 0, i.e. around 1 after Gemma's `1 + w`).
struct Spec {
    name: String,
    shape: Vec<usize>,
    std: f32,
}

/// The standard deviation of a tensor's random values: small around 0 for norms (around 1
/// after Gemma's `1 + w`), `1 / sqrt(fan_in)` for matrices, 0.03 for the embedding.
fn std_of(t: &TensorSpec) -> f32 {
    match (t.kind, t.role) {
        (Kind::NormPlusOne | Kind::Vector, _) => 0.1,
        (Kind::Matrix, Role::Embedding) => 0.03,
        (Kind::Matrix, _) => (1.0 / t.shape[1] as f32).sqrt(),
    }
}

/// The variant's tensor table in the order synth writes it: transformers' module order within
/// a layer ([`key::MODULE_ORDER`]; keys it does not list last, in table order).
fn table(cfg: &GemmaConfig) -> Vec<TensorSpec> {
    let mut t = cfg.arch.tensors(cfg);
    let rank = |k: &str| {
        key::MODULE_ORDER
            .iter()
            .position(|m| *m == k)
            .unwrap_or(key::MODULE_ORDER.len())
    };
    t.sort_by_key(|s| (s.role, rank(s.key)));
    t
}

/// Every tensor of the variant's table, under its Hugging Face name.
fn specs(cfg: &GemmaConfig) -> Vec<Spec> {
    table(cfg)
        .iter()
        .map(|t| Spec {
            name: t.hf.clone(),
            shape: t.shape.clone(),
            std: std_of(t),
        })
        .collect()
}

/// Every stored tensor of the variant's table under gemma_pytorch's names: fused tensors (Q, K
/// and V in `qkv_proj`) once, with the rows of all their parts.
fn pytorch_specs(cfg: &GemmaConfig) -> Vec<Spec> {
    let mut out: Vec<Spec> = Vec::new();
    for t in table(cfg) {
        let (name, rows) = match &t.pytorch {
            PtName::Plain(n) => (n.clone(), None),
            PtName::Rows { fused, rows } => (fused.clone(), Some(rows.end)),
        };
        match out.iter_mut().find(|s| s.name == name) {
            Some(s) => s.shape[0] = s.shape[0].max(rows.unwrap_or(0)),
            None => {
                let mut shape = t.shape.clone();
                if let Some(r) = rows {
                    shape[0] = r;
                }
                out.push(Spec {
                    name,
                    shape,
                    std: std_of(&t),
                })
            }
        }
    }
    out
}

/// A fast deterministic generator (SplitMix64) for reproducible weights.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with little-endian values of `dtype`: uniform with standard deviation `std`.
fn fill(out: &mut [u8], dtype: DType, std: f32, seed: u64) {
    let a = std * 3f32.sqrt();
    assert!(!dtype.is_quantized(), "synth writes element dtypes");
    let es = dtype.block_bytes();
    out.par_chunks_mut(es * 4096)
        .enumerate()
        .for_each(|(ci, chunk)| {
            let mut st = seed ^ (ci as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            for e in chunk.chunks_exact_mut(es) {
                let r = splitmix(&mut st);
                let u = (r >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
                let x = (2.0 * u - 1.0) * a;
                match dtype {
                    DType::F32 => e.copy_from_slice(&x.to_le_bytes()),
                    DType::F16 => e.copy_from_slice(&half::f16::from_f32(x).to_le_bytes()),
                    DType::BF16 => e.copy_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
                    // The int8 grid of [-a, a]: the per-row scale is a / 127.
                    DType::I8 => e[0] = ((x / a * 127.0).round() as i8) as u8,
                    d => unreachable!("{} refused above", d.name()),
                }
            }
        });
}

/// File layout `synth` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Hugging Face: config.json, safetensors shards, tokenizer.json.
    Safetensors,
    /// gemma_pytorch: one torch.save `model.ckpt` (fused qkv, RoPE buffers, no config.json) and
    /// tokenizer.model.
    Ckpt,
}

/// Writes a synthetic checkpoint of `shape` to `out`; returns the bytes of weights written.
pub fn write(shape: &Variant, dtype: DType, out: &Path, seed: u64, force: bool) -> Result<u64> {
    write_format(shape, dtype, Format::Safetensors, out, seed, force)
}

/// Writes a synthetic checkpoint in `format`.
pub fn write_format(
    shape: &Variant,
    dtype: DType,
    format: Format,
    out: &Path,
    seed: u64,
    force: bool,
) -> Result<u64> {
    if dtype == DType::I8 && format != Format::Ckpt {
        bail!("--dtype int8 writes gemma_pytorch's int8 layout (int8 matrices with per-row `weight_scaler`); add --format ckpt");
    }
    frugal_formats::output::atomic_dir(out, force, |tmp| match format {
        Format::Safetensors => write_into(shape, dtype, tmp, seed),
        Format::Ckpt => write_ckpt_into(shape, dtype, tmp, seed),
    })
}

/// Streams random values of `spec` into `w`, a chunk at a time.
fn emit_random(
    spec: &Spec,
    i: usize,
    dtype: DType,
    seed: u64,
    buf: &mut Vec<u8>,
    w: &mut dyn std::io::Write,
    progress: &Progress,
) -> Result<()> {
    let n = spec.shape.iter().product::<usize>();
    let mut done = 0;
    let mut ci = 0u64;
    while done < n {
        let m = CHUNK.min(n - done);
        buf.resize(m * dtype.block_bytes(), 0);
        let tseed = seed ^ splitmix(&mut (i as u64 * 1_000_003 + ci));
        fill(buf, dtype, spec.std, tseed);
        w.write_all(buf)?;
        progress.add(buf.len() as u64);
        done += m;
        ci += 1;
    }
    Ok(())
}

/// gemma_pytorch layout: `embedder.weight`, fused `qkv_proj`, `query_norm`/`key_norm`, and the
/// complex64 RoPE tables it stores as buffers. With `dtype` int8, as gemma_pytorch's quantized
/// checkpoints: every matrix int8 with a bf16 `weight_scaler` per row, norms in bf16.
fn write_ckpt_into(shape: &Variant, dtype: DType, dir: &Path, seed: u64) -> Result<u64> {
    use frugal_formats::pytorch::{write_archive, ArchiveTensor};
    let cfg = shape.config();
    let out = pytorch_specs(&cfg);
    // (spec, stored dtype, constant value for per-row scales)
    let mut items: Vec<(Spec, DType, Option<f32>)> = Vec::new();
    for s in out {
        if dtype == DType::I8 && s.shape.len() == 2 {
            let scaler = Spec {
                name: format!("{}_scaler", s.name),
                shape: vec![s.shape[0]],
                std: 0.0,
            };
            let scale = s.std * 3f32.sqrt() / 127.0;
            items.push((s, DType::I8, None));
            items.push((scaler, DType::BF16, Some(scale)));
        } else {
            let d = if dtype == DType::I8 {
                DType::BF16
            } else {
                dtype
            };
            items.push((s, d, None));
        }
    }
    let storage = |d: DType| match d {
        DType::BF16 => "BFloat16Storage",
        DType::F16 => "HalfStorage",
        DType::F32 => "FloatStorage",
        DType::I8 => "CharStorage",
        d => unreachable!("synth writes element dtypes, not {}", d.name()),
    };
    let mut tensors: Vec<ArchiveTensor> = items
        .iter()
        .map(|(s, d, _)| ArchiveTensor {
            name: s.name.clone(),
            storage: storage(*d),
            elem_size: d.block_bytes(),
            shape: s.shape.clone(),
        })
        .collect();
    let rope_len = 8192usize;
    let buffers = cfg.arch.pytorch_buffers(&cfg);
    for (b, _) in &buffers {
        tensors.push(ArchiveTensor {
            name: b.to_string(),
            storage: "ComplexFloatStorage",
            elem_size: 8,
            shape: vec![rope_len, shape.head_dim / 2],
        });
    }
    let mut buf = Vec::new();
    let progress = Progress::bytes(
        "synthesizing",
        tensors
            .iter()
            .map(|t| (t.shape.iter().product::<usize>() * t.elem_size) as u64)
            .sum(),
    );
    let total = write_archive(&dir.join("model.ckpt"), &tensors, |i, w| {
        if let Some((spec, d, constant)) = items.get(i) {
            if let Some(c) = constant {
                let n = spec.shape[0];
                buf.clear();
                for _ in 0..n {
                    buf.extend_from_slice(&half::bf16::from_f32(*c).to_le_bytes());
                }
                w.write_all(&buf)?;
                progress.add(buf.len() as u64);
                return Ok(());
            }
            return emit_random(spec, i, *d, seed, &mut buf, w, &progress);
        }
        // RoPE table: exp(i * pos * theta^(-2k/d)) as (cos, sin) f32 pairs.
        let half = shape.head_dim / 2;
        let theta = buffers[i - items.len()].1;
        for pos in 0..rope_len {
            buf.clear();
            for k in 0..half {
                let a = pos as f64 * theta.powf(-((2 * k) as f64) / shape.head_dim as f64);
                buf.extend_from_slice(&(a.cos() as f32).to_le_bytes());
                buf.extend_from_slice(&(a.sin() as f32).to_le_bytes());
            }
            w.write_all(&buf)?;
            progress.add(buf.len() as u64);
        }
        Ok(())
    })?;
    progress.finish();
    std::fs::write(dir.join("tokenizer.model"), TOKENIZER_MODEL)?;
    Ok(total)
}

/// The variant's config.json, with `torch_dtype` saying how it is stored.
fn config_json(shape: &Variant, dtype: DType) -> serde_json::Value {
    let mut c = shape.config_json();
    c["torch_dtype"] = json!(match dtype {
        DType::F16 => "float16",
        DType::F32 => "float32",
        _ => "bfloat16",
    });
    c
}

fn write_into(shape: &Variant, dtype: DType, dir: &Path, seed: u64) -> Result<u64> {
    let specs = specs(&shape.config());
    let tensors: Vec<OutTensor> = specs
        .iter()
        .map(|s| OutTensor {
            name: s.name.clone(),
            dtype,
            shape: s.shape.clone(),
        })
        .collect();
    let mut buf = Vec::new();
    let progress = Progress::bytes("synthesizing", tensors.iter().map(|t| t.bytes()).sum());
    let total = write_shards(dir, &tensors, SHARD_BYTES, "frugal synth", |i, f| {
        emit_random(&specs[i], i, dtype, seed, &mut buf, f, &progress)
    })?;
    progress.finish();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config_json(shape, dtype))?,
    )?;
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER_JSON)?;
    std::fs::write(dir.join("tokenizer.model"), TOKENIZER_MODEL)?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_vec_pretty(
            &json!({"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>", "add_bos_token": true, "add_eos_token": false}),
        )?,
    )?;
    Ok(total)
}
