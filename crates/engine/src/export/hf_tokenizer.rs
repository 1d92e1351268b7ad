//! The tokenizer's side of a Hugging Face folder: what transformers needs to use a converted
//! model as its source intended. `tokenizer_config.json` (the tokenizer class, whether to add
//! BOS and EOS, the special tokens and every added token with its id, the chat template when
//! the source has one), `special_tokens_map.json`, and `generation_config.json` (BOS, the stop
//! ids, padding). Without them transformers' Gemma tokenizer adds no BOS, and a Gemma model fed
//! no BOS answers nonsense.
//!
//! The facts come from the source: a GGUF file's metadata (`tokenizer.ggml.add_bos_token`,
//! `tokenizer.chat_template`, its token types), a folder's own files, or for a gemma_pytorch
//! checkpoint, which has none, Gemma's defaults (BOS added, no EOS, no chat template).

use anyhow::Result;
use frugal_model::GemmaConfig;
use frugal_tokenizer::sentencepiece::{PieceKind, SentencePiece};
use serde_json::{json, Map, Value};

/// How the source says its tokenizer is used.
#[derive(Clone, Debug)]
pub struct Usage {
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
    /// The padding id, when the source names one.
    pub pad: Option<u32>,
}

impl Default for Usage {
    /// Gemma's: BOS added, no EOS, no chat template.
    fn default() -> Self {
        Usage {
            add_bos: true,
            add_eos: false,
            chat_template: None,
            pad: None,
        }
    }
}

/// A token transformers treats apart from the vocabulary's merges.
struct Added {
    id: u32,
    content: String,
    special: bool,
}

/// The added tokens of a SentencePiece vocabulary: control and unknown pieces (special), and
/// user-defined ones (special when they read as markup, `<start_of_turn>`).
fn added_of(sp: &SentencePiece) -> Vec<Added> {
    sp.pieces()
        .iter()
        .enumerate()
        .filter_map(|(i, (p, _, k))| {
            let special = match k {
                PieceKind::Control | PieceKind::Unknown => true,
                PieceKind::UserDefined => p.starts_with('<') && p.ends_with('>'),
                _ => return None,
            };
            Some(Added {
                id: i as u32,
                // User-defined pieces are matched in escaped text: `▁` is a space to transformers.
                content: p.replace('\u{2581}', " "),
                special,
            })
        })
        .collect()
}

/// The three files for a SentencePiece vocabulary `sp` used as `u` says, for `cfg`'s ids.
pub fn files_for(sp: &SentencePiece, cfg: &GemmaConfig, u: &Usage) -> Result<Vec<(String, Value)>> {
    let piece = |id: u32| sp.id_to_piece(id).map(str::to_string);
    let unk = sp
        .pieces()
        .iter()
        .find(|p| p.2 == PieceKind::Unknown)
        .map(|p| p.0.clone());
    let pad = u.pad.or_else(|| sp.piece_to_id("<pad>"));
    let eot = sp.piece_to_id("<end_of_turn>");
    Ok(files(&added_of(sp), cfg, u, &piece, unk, pad, eot))
}

/// The three files for a `tokenizer.json` (its added tokens) used as `u` says.
pub fn files_for_json(
    tokenizer_json: &Value,
    cfg: &GemmaConfig,
    u: &Usage,
) -> Vec<(String, Value)> {
    let added: Vec<Added> = tokenizer_json["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some(Added {
                        id: t["id"].as_u64()? as u32,
                        content: t["content"].as_str()?.to_string(),
                        special: t["special"].as_bool().unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let vocab = &tokenizer_json["model"]["vocab"];
    let by_id = |id: u32| -> Option<String> {
        added
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.content.clone())
            .or_else(|| {
                vocab.as_object().and_then(|m| {
                    m.iter()
                        .find(|(_, v)| v.as_u64() == Some(id as u64))
                        .map(|(k, _)| k.clone())
                })
            })
    };
    let id_of = |c: &str| added.iter().find(|a| a.content == c).map(|a| a.id);
    let unk = tokenizer_json["model"]["unk_token"]
        .as_str()
        .map(str::to_string);
    let pad = u.pad.or_else(|| id_of("<pad>"));
    files(&added, cfg, u, &by_id, unk, pad, id_of("<end_of_turn>"))
}

#[allow(clippy::too_many_arguments)]
fn files(
    added: &[Added],
    cfg: &GemmaConfig,
    u: &Usage,
    piece: &dyn Fn(u32) -> Option<String>,
    unk: Option<String>,
    pad: Option<u32>,
    eot: Option<u32>,
) -> Vec<(String, Value)> {
    let bos = piece(cfg.bos_token_id);
    let eos = cfg.eos_token_ids.first().and_then(|&e| piece(e));
    let pad_piece = pad.and_then(piece);
    let mut decoder = Map::new();
    for a in added {
        decoder.insert(
            a.id.to_string(),
            json!({
                "content": a.content,
                "lstrip": false,
                "normalized": false,
                "rstrip": false,
                "single_word": false,
                "special": a.special,
            }),
        );
    }
    let mut config = json!({
        "tokenizer_class": "GemmaTokenizer",
        "add_bos_token": u.add_bos,
        "add_eos_token": u.add_eos,
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": unk,
        "pad_token": pad_piece,
        "added_tokens_decoder": decoder,
        "clean_up_tokenization_spaces": false,
        "spaces_between_special_tokens": false,
    });
    if let Some(t) = &u.chat_template {
        config["chat_template"] = json!(t);
    }
    let special = |name: &str, v: &Option<String>| v.as_ref().map(|p| (name.to_string(), json!(p)));
    let mut map: Map<String, Value> = [
        special("bos_token", &bos),
        special("eos_token", &eos),
        special("unk_token", &unk),
        special("pad_token", &pad_piece),
    ]
    .into_iter()
    .flatten()
    .collect();
    let extra: Vec<&str> = added
        .iter()
        .filter(|a| {
            a.special
                && [&bos, &eos, &unk, &pad_piece]
                    .iter()
                    .all(|s| s.as_deref() != Some(&a.content))
        })
        .filter(|a| a.content.starts_with("<start_of_") || a.content.starts_with("<end_of_"))
        .map(|a| a.content.as_str())
        .collect();
    if !extra.is_empty() {
        map.insert("additional_special_tokens".into(), json!(extra));
    }
    let mut stops = cfg.eos_token_ids.clone();
    if let Some(e) = eot.filter(|e| !stops.contains(e)) {
        stops.push(e);
    }
    let mut generation = json!({
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": if stops.len() == 1 { json!(stops[0]) } else { json!(stops) },
    });
    if let Some(p) = pad {
        generation["pad_token_id"] = json!(p);
    }
    vec![
        ("tokenizer_config.json".into(), config),
        ("special_tokens_map.json".into(), Value::Object(map)),
        ("generation_config.json".into(), generation),
    ]
}
