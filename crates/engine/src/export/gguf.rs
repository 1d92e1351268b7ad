//! A Gemma checkpoint to GGUF, as llama.cpp's own converter (`convert_hf_to_gguf.py`, its
//! `GemmaModel`, `Gemma2Model` and `Gemma3Model`) writes it: the same metadata keys, tensor
//! names, RMSNorm weights stored as `1 + w` in f32, the SentencePiece vocabulary as token,
//! score and type arrays padded to the embedding's rows; optionally quantized (`--quant`) block by block as it is written.
//!
//! Streamed: each tensor is read from the source's map a chunk at a time, converted, written,
//! and the chunk's pages dropped, so memory stays at one chunk whatever the model's size.

use crate::load::mix::Matrix;
use crate::load::quantize::QuantKind;
use crate::load::Checkpoint;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use frugal_formats::gguf::file_type;
use frugal_formats::gguf_write::{self, OutTensor, Value};
use frugal_model::bind::Source;
use frugal_model::tensors::key;
use frugal_model::GemmaConfig;
use frugal_tensor::DType;
use frugal_tokenizer::sentencepiece::{PieceKind, SentencePiece};
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
            PieceKind::Normal => 1,
            PieceKind::Unknown => 2,
            PieceKind::Control => 3,
            // llama.cpp's converter writes these as normal tokens unless tokenizer_config.json
            // lists them, and llama.cpp then splits `<start_of_turn>` where SentencePiece (and
            // frugal on the source) matches it whole: as user-defined tokens (spaces
            // pre-normalized, as the converter writes added ones) llama.cpp matches them too.
            PieceKind::UserDefined => {
                tokens[i] = p.replace('\u{2581}', " ");
                4
            }
            PieceKind::Unused => 5,
            PieceKind::Byte => 6,
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
    // As llama.cpp's SpecialVocab: whether to add BOS / EOS and the chat template, from the
    // folder's tokenizer_config.json (or chat_template.jinja / .json), Gemma's defaults
    // otherwise.
    let config = read("tokenizer_config.json").unwrap_or_default();
    let flag = |k: &str, dflt: bool| config.get(k).and_then(|v| v.as_bool()).unwrap_or(dflt);
    kv.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(flag("add_bos_token", true)),
    ));
    kv.push((
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(flag("add_eos_token", false)),
    ));
    if let Some(t) = chat_template(dir, &config) {
        kv.push(("tokenizer.chat_template".into(), Value::Str(t)));
    }
    kv.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)));
    Ok(kv)
}

/// A folder's chat template: `chat_template.jinja`, `chat_template.json`'s `chat_template`, or
/// tokenizer_config.json's (a string, or the one named `default` of a list).
fn chat_template(dir: &Path, config: &serde_json::Value) -> Option<String> {
    if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Some(t);
    }
    let from_json = |v: &serde_json::Value| -> Option<String> {
        match v.get("chat_template")? {
            serde_json::Value::String(t) => Some(t.clone()),
            serde_json::Value::Array(list) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str())
                .map(str::to_string),
            _ => None,
        }
    };
    std::fs::read(dir.join("chat_template.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| from_json(&v))
        .or_else(|| from_json(config))
}

/// Writes `ck` as a GGUF file at `out` (see the module doc); `quant` quantizes the matrices.
/// Returns the file's size.
pub fn export(ck: &Checkpoint, out: &Path, force: bool, quant: Option<QuantKind>) -> Result<u64> {
    let source = ck.source();
    let cfg = &ck.cfg;
    let sources = frugal_model::arch::hf_sources(cfg, &ck.index, &source)?;
    let items = plan(&sources, quant, cfg.num_layers);
    // llama.cpp's file type: the one quantized to, else named by the feed-forward's up
    // projections' dtype.
    let main_dtype = items
        .iter()
        .find(|(s, _, _)| s.key == key::FFN_UP)
        .map_or(DType::F32, |(_, _, t)| t.dtype);
    let ftype = quant.map_or(file_type(main_dtype), |k| k.file_type());
    let kv = match &ck.gguf {
        Some(g) => {
            // From a GGUF file: its metadata as it is (tokenizer, chat template,
            // hyper-parameters), but the file type when the matrices change and the alignment,
            // which the writer's is.
            let mut kv: Vec<(String, Value)> = gguf_write::metadata_of(g, &ck.index.files[0].map)
                .into_iter()
                .filter(|(k, _)| k != "general.alignment")
                .collect();
            let ft = ("general.file_type".to_string(), Value::U32(ftype));
            match kv.iter_mut().find(|(k, _)| k == "general.file_type") {
                Some(e) if quant.is_some() => *e = ft,
                Some(_) => {}
                None => kv.push(ft),
            }
            kv
        }
        None => metadata(ck, ftype)?,
    };
    write(ck, out, force, &items, &kv)
}

/// Every tensor in file order, as llama.cpp's converter emits them (model order), with how it
/// is converted: with `quant`, each matrix's dtype as `llama-quantize` chooses it for that file
/// type ([`QuantKind::choose`]).
fn plan<'s, 'a>(
    sources: &'s [Source<'a>],
    quant: Option<QuantKind>,
    layers: usize,
) -> Vec<(&'s Source<'a>, Conv, OutTensor)> {
    let matrices: Vec<(usize, [&'static str; 1])> = sources
        .iter()
        .enumerate()
        .filter(|(_, s)| s.shape.len() == 2)
        .map(|(i, s)| (i, [s.key]))
        .collect();
    let mats: Vec<Matrix> = matrices
        .iter()
        .map(|(i, k)| Matrix {
            keys: k,
            role: sources[*i].role,
            cols: sources[*i].shape[1],
        })
        .collect();
    let mut chosen = vec![None; sources.len()];
    if let Some(k) = quant {
        for ((i, _), d) in matrices.iter().zip(k.choose(&mats, layers)) {
            chosen[*i] = d;
        }
    }
    let mut items = Vec::new();
    for (s, want) in sources.iter().zip(chosen) {
        let name = s.gguf.clone();
        let shape = s.shape.clone();
        let (conv, dtype) = if shape.len() == 1 {
            (Conv::Norm, DType::F32)
        } else {
            match want {
                // Already in the chosen blocks (a GGUF input): copied as they are.
                Some(d) if d != s.dtype => (Conv::Quant(d), d),
                _ => (Conv::Copy, s.dtype),
            }
        };
        items.push((s, conv, OutTensor { name, shape, dtype }));
    }
    items
}

/// The metadata of a Hugging Face or gemma_pytorch checkpoint written as llama.cpp's converter
/// writes it: architecture, names, hyper-parameters, the vocabulary of tokenizer.model.
fn metadata(ck: &Checkpoint, ftype: u32) -> Result<Vec<(String, Value)>> {
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
        .map_or(cfg.arch.default_context_length(), |c| c as u32);
    let mut hp = cfg.arch.gguf_hparams(cfg, ctx_len, &source)?.into_iter();
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
        ("general.file_type".to_string(), Value::U32(ftype)),
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
                frugal_quant::to_f32(src, s.dtype, &mut v);
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
                            frugal_quant::to_f32(r, s.dtype, o);
                        }
                        fbytes.clear();
                        fbytes.extend(f32s.iter().flat_map(|x| x.to_le_bytes()));
                        (&fbytes[..], DType::F32)
                    } else {
                        (chunk, s.dtype)
                    };
                    frugal_quant::quantize_rows_par(from, from_dtype, cols, *d, &mut buf)
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
