//! A Gemma checkpoint to GGUF, as llama.cpp's own converter (`convert_hf_to_gguf.py`, its
//! `GemmaModel`, `Gemma2Model` and `Gemma3Model`) writes it: the same metadata keys, tensor
//! names, RMSNorm weights stored as `1 + w` in f32, the SentencePiece vocabulary as token,
//! score and type arrays padded to the embedding's rows; optionally quantized (`--quant`) block by block as it is written.
//!
//! Streamed: each tensor is read from the source's map a chunk at a time, converted, written,
//! and the chunk's pages dropped, so memory stays at one chunk whatever the model's size.

use crate::checkpoint::gguf::{arch_name, file_type, gguf_name};
use crate::checkpoint::gguf_write::{self, OutTensor, Value};
use crate::kernels::DType;
use crate::load::quantize::QuantKind;
use crate::load::Checkpoint;
use crate::model::config::{Family, GemmaConfig, LayerKind};
use crate::model::weights::{self, Source};
use crate::progress::Progress;
use crate::tokenizer::sentencepiece::{PieceKind, SentencePiece};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Source bytes converted per step.
const CHUNK_BYTES: usize = 16 << 20;

/// How a source tensor becomes its GGUF tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Conv {
    /// The bytes as they are.
    Copy,
    /// An RMSNorm weight: to f32, plus one.
    Norm,
    /// Quantized to a block dtype.
    Quant(DType),
}

/// The architecture name and the metadata keys llama.cpp reads for it.
fn hparams(cfg: &GemmaConfig, ctx_len: u32, source: &str) -> Result<Vec<(String, Value)>> {
    let a = arch_name(cfg.family);
    // llama.cpp scales queries by 1/sqrt(head_dim), or by 1/sqrt(hidden/heads) for its 27B
    // types (46-layer Gemma 2, 62-layer Gemma 3): src/models/gemma2.cpp, gemma3.cpp. No key
    // can say otherwise, so another query_pre_attn_scalar cannot be written faithfully.
    let big = matches!(
        (cfg.family, cfg.num_layers),
        (Family::Gemma2, 46) | (Family::Gemma3, 62)
    );
    let llama_scalar = if big {
        (cfg.hidden_size / cfg.num_heads) as f64
    } else {
        cfg.head_dim as f64
    };
    if (cfg.query_pre_attn_scalar - llama_scalar).abs() > 1e-9 {
        bail!(
            "{source}: query_pre_attn_scalar is {} but llama.cpp would scale queries by 1/sqrt({llama_scalar}) for this shape, and GGUF has no key to say otherwise; this model cannot be written as a GGUF file that runs the same",
            cfg.query_pre_attn_scalar
        );
    }
    let k = |s: &str| format!("{a}.{s}");
    let u = |x: usize| Value::U32(x as u32);
    let mut kv = vec![
        ("general.architecture".to_string(), Value::Str(a.into())),
        (k("context_length"), Value::U32(ctx_len)),
        (k("embedding_length"), u(cfg.hidden_size)),
        (k("block_count"), u(cfg.num_layers)),
        (k("feed_forward_length"), u(cfg.intermediate_size)),
        (k("attention.head_count"), u(cfg.num_heads)),
        (k("attention.head_count_kv"), u(cfg.num_kv_heads)),
        (
            k("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps),
        ),
        (k("attention.key_length"), u(cfg.head_dim)),
        (k("attention.value_length"), u(cfg.head_dim)),
        (
            k("rope.freq_base"),
            Value::F32(cfg.rope_global.theta as f32),
        ),
    ];
    if cfg.family == Family::Gemma1 && cfg.layer_kinds.contains(&LayerKind::Local) {
        bail!("{source}: a Gemma 1 model with sliding-window layers cannot be written as GGUF");
    }
    if cfg.family != Family::Gemma1 {
        if let Some(w) = cfg.sliding_window {
            kv.push((k("attention.sliding_window"), u(w)));
        }
        if cfg.family == Family::Gemma3 {
            kv.push((
                k("rope.freq_base_swa"),
                Value::F32(cfg.rope_local.theta as f32),
            ));
        }
        // llama.cpp's default pattern: layer i is local when i % period < period - 1, with
        // period 2 (Gemma 2) or 6 (Gemma 3). Anything else is written out layer by layer.
        let period = if cfg.family == Family::Gemma2 { 2 } else { 6 };
        let default = (0..cfg.num_layers)
            .all(|i| (cfg.layer_kinds[i] == LayerKind::Local) == (i % period < period - 1));
        if !default {
            kv.push((
                k("attention.sliding_window_pattern"),
                Value::BoolArray(
                    cfg.layer_kinds
                        .iter()
                        .map(|l| *l == LayerKind::Local)
                        .collect(),
                ),
            ));
        }
    }
    if let Some(c) = cfg.attn_softcap {
        if cfg.family != Family::Gemma2 {
            bail!("{source}: llama.cpp applies an attention softcap only to Gemma 2");
        }
        kv.push((k("attn_logit_softcapping"), Value::F32(c)));
    }
    if let Some(c) = cfg.final_softcap {
        kv.push((k("final_logit_softcapping"), Value::F32(c)));
    }
    if cfg.rope_global.factor != 1.0 {
        kv.push((k("rope.scaling.type"), Value::Str("linear".into())));
        kv.push((
            k("rope.scaling.factor"),
            Value::F32(cfg.rope_global.factor as f32),
        ));
    }
    if cfg.rope_local.factor != 1.0 {
        bail!("{source}: llama.cpp cannot scale the positions of local layers");
    }
    Ok(kv)
}

/// Whether llama.cpp's converter takes an added token for a control token although it is not
/// marked special (`does_token_look_special` in its `conversion/base.py`).
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// The vocabulary as llama.cpp's `_set_vocab_sentencepiece` writes it: `vocab_size` entries
/// (ids past the SentencePiece model padded as `[PAD<id>]`, unused), SentencePiece's pieces,
/// scores and kinds (user-defined pieces count as normal), then the added tokens of
/// `added_tokens.json` and `tokenizer_config.json` (control if special, else user-defined).
fn vocab(sp: &SentencePiece, cfg: &GemmaConfig, dir: &Path) -> Result<Vec<(String, Value)>> {
    let n = cfg.vocab_size;
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000f32; n];
    let mut types = vec![5i32; n];
    for (i, (p, sc, k)) in sp.pieces().iter().enumerate().take(n) {
        tokens[i] = p.clone();
        scores[i] = *sc;
        types[i] = match k {
            PieceKind::Unknown => 2,
            PieceKind::Control => 3,
            PieceKind::Unused => 5,
            PieceKind::Byte => 6,
            PieceKind::Normal | PieceKind::UserDefined => 1,
        };
    }
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
    };
    if let Some(serde_json::Value::Object(m)) = read("added_tokens.json") {
        for (text, id) in m {
            if let Some(i) = id.as_u64().map(|i| i as usize).filter(|&i| i < n) {
                tokens[i] = text;
                scores[i] = -1000.0;
                types[i] = 4;
            }
        }
    }
    if let Some(serde_json::Value::Object(m)) =
        read("tokenizer_config.json").and_then(|c| c.get("added_tokens_decoder").cloned())
    {
        for (id, d) in m {
            let (Some(i), Some(text)) = (
                id.parse::<usize>().ok().filter(|&i| i < n),
                d.get("content").and_then(|c| c.as_str()),
            ) else {
                continue;
            };
            let special = d.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
            if special || looks_special(text) {
                types[i] = 3;
                tokens[i] = text.to_string();
            } else {
                types[i] = 4;
                tokens[i] = text.replace('\u{2581}', " ");
            }
            scores[i] = -1000.0;
        }
    }
    let id = |p: &str| tokens.iter().position(|t| t == p);
    let mut kv = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::Str("llama".into()),
        ),
        (
            "tokenizer.ggml.pre".to_string(),
            Value::Str("default".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::StrArray(tokens.clone()),
        ),
        ("tokenizer.ggml.scores".to_string(), Value::F32Array(scores)),
        (
            "tokenizer.ggml.token_type".to_string(),
            Value::I32Array(types),
        ),
        (
            "tokenizer.ggml.bos_token_id".to_string(),
            Value::U32(cfg.bos_token_id),
        ),
    ];
    if let Some(&e) = cfg.eos_token_ids.first() {
        kv.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
    }
    for (key, piece) in [
        ("tokenizer.ggml.unknown_token_id", "<unk>"),
        ("tokenizer.ggml.padding_token_id", "<pad>"),
        ("tokenizer.ggml.eot_token_id", "<end_of_turn>"),
    ] {
        if let Some(i) = id(piece) {
            kv.push((key.into(), Value::U32(i as u32)));
        }
    }
    kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)));
    kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(false)));
    kv.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)));
    Ok(kv)
}

/// Writes `ck` as a GGUF file at `out` (see the module doc); `quant` quantizes the matrices.
/// Returns the file's size.
pub fn export(ck: &Checkpoint, out: &Path, force: bool, quant: Option<QuantKind>) -> Result<u64> {
    let source = ck.source();
    let cfg = &ck.cfg;
    let sources = weights::hf_sources(cfg, &ck.index, &source)?;
    let items = plan(&sources, cfg, quant)?;
    let main_dtype = items
        .iter()
        .find(|(s, _, _)| s.name.ends_with("mlp.up_proj.weight"))
        .map_or(DType::F32, |(_, _, t)| t.dtype);
    let kv = match &ck.gguf {
        Some(g) => {
            // From a GGUF file: its metadata as it is (tokenizer, chat template,
            // hyper-parameters), but the file type when the matrices change and the alignment,
            // which the writer's is.
            let mut kv: Vec<(String, Value)> = g
                .raw_metadata(&ck.index.files[0].map)
                .into_iter()
                .filter(|(k, _)| k != "general.alignment")
                .collect();
            let ft = (
                "general.file_type".to_string(),
                Value::U32(file_type(main_dtype)),
            );
            match kv.iter_mut().find(|(k, _)| k == "general.file_type") {
                Some(e) if quant.is_some() => *e = ft,
                Some(_) => {}
                None => kv.push(ft),
            }
            kv
        }
        None => metadata(ck, main_dtype)?,
    };
    write(ck, out, force, &items, &kv)
}

/// Every tensor in file order, as llama.cpp's converter emits them (model order), with how it
/// is converted.
fn plan<'s, 'a>(
    sources: &'s [Source<'a>],
    cfg: &GemmaConfig,
    quant: Option<QuantKind>,
) -> Result<Vec<(&'s Source<'a>, Conv, OutTensor)>> {
    let mut items = Vec::new();
    for s in sources {
        if s.name == "lm_head.weight" && cfg.tie_word_embeddings {
            continue;
        }
        let name = gguf_name(&s.name, cfg.family)?;
        let shape = s.shape.clone();
        let (conv, dtype) = if shape.len() == 1 {
            (Conv::Norm, DType::F32)
        } else {
            match quant.map(|k| k.dtype_for(shape[1])) {
                // Already in the asked-for blocks (a GGUF input): copied as they are.
                Some(d) if d != s.dtype => (Conv::Quant(d), d),
                _ => (Conv::Copy, s.dtype),
            }
        };
        items.push((s, conv, OutTensor { name, shape, dtype }));
    }
    Ok(items)
}

/// The metadata of a Hugging Face or gemma_pytorch checkpoint written as llama.cpp's converter
/// writes it: architecture, names, hyper-parameters, the vocabulary of tokenizer.model.
fn metadata(ck: &Checkpoint, main_dtype: DType) -> Result<Vec<(String, Value)>> {
    let source = ck.source();
    let cfg = &ck.cfg;
    let tok = ck.dir.join("tokenizer.model");
    if !tok.is_file() {
        bail!(
            "{}: a GGUF file carries the SentencePiece vocabulary, and there is no tokenizer.model beside the weights",
            ck.dir.display()
        );
    }
    let sp = SentencePiece::from_file(&tok)?;
    let ctx_len = std::fs::read(ck.dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("max_position_embeddings")
                .or_else(|| v.get("text_config")?.get("max_position_embeddings"))
                .and_then(|x| x.as_u64())
        })
        .unwrap_or(match cfg.family {
            Family::Gemma3 => 131072,
            _ => 8192,
        }) as u32;
    let mut hp = hparams(cfg, ctx_len, &source)?.into_iter();
    let mut kv: Vec<(String, Value)> = hp.next().into_iter().collect();
    kv.extend([
        (
            "general.name".to_string(),
            Value::Str(
                ck.dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("gemma")
                    .to_string(),
            ),
        ),
        (
            "general.file_type".to_string(),
            Value::U32(file_type(main_dtype)),
        ),
        ("general.quantization_version".to_string(), Value::U32(2)),
    ]);
    kv.extend(hp);
    kv.extend(vocab(&sp, cfg, &ck.dir)?);
    Ok(kv)
}

/// Writes the file: `items`' tensors converted chunk by chunk from the source's map, each
/// chunk's pages released once written.
fn write(
    ck: &Checkpoint,
    out: &Path,
    force: bool,
    items: &[(&Source, Conv, OutTensor)],
    kv: &[(String, Value)],
) -> Result<u64> {
    let tensors: Vec<OutTensor> = items.iter().map(|(_, _, t)| t.clone()).collect();
    let total: u64 = items.iter().map(|(s, _, _)| s.bytes.len() as u64).sum();
    let progress = Progress::bytes("writing GGUF", total);
    let n = gguf_write::write(out, force, kv, &tensors, |i, w| {
        let (s, conv, t) = &items[i];
        let src = s.bytes;
        let in_row = src.len() / s.shape[0].max(1);
        match conv {
            Conv::Norm => {
                let mut v = vec![0f32; s.shape[0]];
                crate::kernels::scalar::to_f32(src, s.dtype, &mut v);
                let add = if s.plus_one { 0.0 } else { 1.0 };
                for x in &mut v {
                    w.write_all(&(*x + add).to_le_bytes())?;
                }
            }
            Conv::Copy => {
                for chunk in src.chunks(CHUNK_BYTES) {
                    w.write_all(chunk)?;
                    ck.index.release(chunk);
                    progress.add(chunk.len() as u64);
                }
            }
            Conv::Quant(d) => {
                let cols = t.shape[1];
                let out_row = d.row_bytes(cols)?;
                // Blocks of another kind (a GGUF input) are dequantized to f32 first: the
                // chunk is sized by that.
                let blocks = s.dtype.is_quantized();
                let chunk_rows = (CHUNK_BYTES / in_row.max(cols * 4).max(1)).max(1);
                let (mut buf, mut f32s, mut fbytes) = (Vec::new(), Vec::new(), Vec::new());
                for chunk in src.chunks(chunk_rows * in_row) {
                    buf.resize(chunk.len() / in_row * out_row, 0);
                    let (from, from_dtype) = if blocks {
                        f32s.resize(chunk.len() / in_row * cols, 0f32);
                        for (r, o) in chunk.chunks(in_row).zip(f32s.chunks_mut(cols)) {
                            crate::kernels::scalar::to_f32(r, s.dtype, o);
                        }
                        fbytes.clear();
                        fbytes.extend(f32s.iter().flat_map(|x| x.to_le_bytes()));
                        (&fbytes[..], DType::F32)
                    } else {
                        (chunk, s.dtype)
                    };
                    crate::quant::quantize_rows_par(from, from_dtype, cols, *d, &mut buf)
                        .with_context(|| format!("tensor `{}`", s.name))?;
                    w.write_all(&buf)?;
                    ck.index.release(chunk);
                    progress.add(chunk.len() as u64);
                }
            }
        }
        Ok(())
    })?;
    progress.finish();
    Ok(n)
}
