//! A GGUF file's vocabulary (`tokenizer.ggml.*`, as llama.cpp's converter writes it for
//! SentencePiece models) as a [`SentencePiece`] model, read through the GGUF reader's typed
//! getters.

use crate::sentencepiece::{PieceKind, SentencePiece};
use anyhow::{bail, Context, Result};
use frugal_formats::gguf::{vt, Gguf};

/// The metadata arrays the vocabulary is read from.
const ARRAYS: [&str; 3] = [
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
];

/// Bytes of the vocabulary's arrays in the header (what the memory plan counts for it).
pub fn vocab_bytes(g: &Gguf) -> u64 {
    g.array_bytes(&ARRAYS)
}

/// The SentencePiece tokenizer the metadata holds (`tokenizer.ggml.model` "llama": tokens,
/// scores and token types), or None when the file has no vocabulary. `map` is the file's map.
pub fn sentencepiece(g: &Gguf, map: &[u8]) -> Result<Option<SentencePiece>> {
    let path = &g.path;
    let Some(model) = g.str("tokenizer.ggml.model")? else {
        return Ok(None);
    };
    if model != "llama" {
        bail!("{path}: tokenizer `{model}` is not supported; frugal reads SentencePiece (`llama`) vocabularies, as Gemma's");
    }
    let tokens = g
        .array(map, ARRAYS[0])?
        .with_context(|| format!("{path}: missing metadata `{}`", ARRAYS[0]))?;
    let n = tokens.len;
    // Scores and types are read element by element beside the tokens: no copy of the arrays.
    let mut scores = match g.array(map, ARRAYS[1])? {
        None => None,
        Some(a) if a.len == n && a.elem == vt::F32 => Some(a.f32s()?),
        Some(_) => bail!("{path}: metadata `{}` must be {n} f32 values", ARRAYS[1]),
    };
    let mut types = match g.array(map, ARRAYS[2])? {
        None => None,
        Some(a) if a.len == n && a.elem == vt::I32 => Some(a.i32s()?),
        Some(_) => bail!("{path}: metadata `{}` must be {n} i32 values", ARRAYS[2]),
    };
    let mut pieces = Vec::with_capacity(n);
    for (i, p) in tokens.strings()?.enumerate() {
        let p = p?.to_string();
        let score = scores.as_mut().and_then(|s| s.next()).unwrap_or(0.0);
        let t = types.as_mut().and_then(|t| t.next()).unwrap_or(1);
        // llama.cpp's token types number the kinds as SentencePiece does.
        let Some(kind) = PieceKind::from_code(t.into()) else {
            bail!("{path}: tokenizer.ggml.token_type[{i}] is {t} (not 1..6)")
        };
        // The converter writes user-defined pieces with spaces, not `▁` (its "pre-normalized"
        // form); frugal matches them in escaped text.
        let p = if kind == PieceKind::UserDefined {
            p.replace(' ', "\u{2581}")
        } else {
            p
        };
        pieces.push((p, score, kind));
    }
    // The unknown piece: llama.cpp takes `tokenizer.ggml.unknown_token_id`; the converter marks
    // `<unk>` a control token when tokenizer_config.json calls it special.
    if !pieces.iter().any(|p| p.2 == PieceKind::Unknown) {
        let unk = match g.uint("tokenizer.ggml.unknown_token_id")? {
            Some(u) => Some(u as usize).filter(|&u| u < n),
            None => pieces.iter().position(|p| p.0 == "<unk>"),
        };
        let unk = unk.with_context(|| {
            format!("{path}: the vocabulary has no unknown token (no token of type 2, no valid `tokenizer.ggml.unknown_token_id`)")
        })?;
        pieces[unk].2 = PieceKind::Unknown;
    }
    let add_prefix = g.bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let sp = SentencePiece::from_pieces(pieces, add_prefix)
        .with_context(|| format!("{path}: the vocabulary in the metadata"))?;
    Ok(Some(sp))
}
