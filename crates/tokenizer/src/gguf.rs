//! A GGUF file's vocabulary (`tokenizer.ggml.*`, as llama.cpp's converter writes it), read
//! through the GGUF reader's typed getters: `tokenizer.ggml.model` "llama" (Gemma 1-3, a
//! SentencePiece model: tokens, scores, types) as a [`SentencePiece`] model, "gemma4" (Gemma 4:
//! a BPE over tokens and merges) as a `tokenizers` BPE ([`gemma4`]).

use crate::sentencepiece::{PieceKind, SentencePiece};
use crate::GemmaTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use frugal_formats::gguf::{vt, Gguf};
use std::collections::HashMap;
use tokenizers::decoders::{
    byte_fallback::ByteFallback, fuse::Fuse, sequence::Sequence, DecoderWrapper,
};
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// The metadata arrays the vocabulary is read from.
const ARRAYS: [&str; 4] = [
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
];

/// Bytes of the vocabulary's arrays in the header (what the memory plan counts for it).
pub fn vocab_bytes(g: &Gguf) -> u64 {
    g.array_bytes(&ARRAYS)
}

/// The tokenizer the metadata holds, of either kind ("llama": SentencePiece, "gemma4": BPE with
/// merges), or None when the file has no vocabulary. `map` is the file's map.
pub fn tokenizer(g: &Gguf, map: &[u8]) -> Result<Option<GemmaTokenizer>> {
    match g.str("tokenizer.ggml.model")? {
        Some("gemma4") => gemma4(g, map).map(Some),
        _ => Ok(sentencepiece(g, map)?.map(GemmaTokenizer::from_sentencepiece)),
    }
}

/// llama.cpp's token types (`llama_token_type`).
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Gemma 4's vocabulary (`tokenizer.ggml.model` "gemma4"): what transformers' `GemmaTokenizer`
/// builds from `tokenizer.json` (as mistral.rs rebuilds it from a GGUF file): a BPE over the
/// tokens and merges with byte fallback (`<0xXX>` tokens) and `fuse_unk`, spaces normalised to
/// `▁`, no prefix space, decoder `▁` -> space / byte fallback / fuse; control and user-defined
/// tokens (`<bos>`, `<|turn>`, `<|channel>`, ...) are matched whole in the text. As llama.cpp
/// does with this vocabulary, text is first cut into newline runs and the rest, and a newline
/// run that is a token is that token ([`GemmaTokenizer::encode`]): transformers differs only
/// where a run of newlines is longer than any newline token the vocabulary has
/// (tests/fixtures/gemma4_tokenizer/cases.json).
pub fn gemma4(g: &Gguf, map: &[u8]) -> Result<GemmaTokenizer> {
    let path = &g.path;
    let tokens = g
        .array(map, ARRAYS[0])?
        .with_context(|| format!("{path}: missing metadata `{}`", ARRAYS[0]))?;
    let n = tokens.len;
    let mut types = match g.array(map, ARRAYS[2])? {
        None => None,
        Some(a) if a.len == n && a.elem == vt::I32 => Some(a.i32s()?),
        Some(_) => bail!("{path}: metadata `{}` must be {n} i32 values", ARRAYS[2]),
    };
    let mut vocab = HashMap::with_capacity(n);
    let mut added = Vec::new();
    for (i, p) in tokens.strings()?.enumerate() {
        let p = p?;
        let t = types.as_mut().and_then(|t| t.next()).unwrap_or(1);
        if vocab.insert(p.to_string(), i as u32).is_some() {
            bail!("{path}: token {p:?} appears twice in `{}`", ARRAYS[0]);
        }
        if t == CONTROL || t == USER_DEFINED {
            added.push(AddedToken::from(p, t == CONTROL).normalized(false));
        }
    }
    let merges_arr = g.array(map, ARRAYS[3])?.with_context(|| {
        format!(
            "{path}: missing metadata `{}` (a gemma4 vocabulary is a BPE with merges)",
            ARRAYS[3]
        )
    })?;
    let mut merges = Vec::with_capacity(merges_arr.len);
    for (i, m) in merges_arr.strings()?.enumerate() {
        let m = m?;
        // As llama.cpp reads them: the pair splits at the first space after the first byte.
        let cut = m
            .bytes()
            .skip(1)
            .position(|b| b == b' ')
            .map(|c| c + 1)
            .with_context(|| format!("{path}: merge {i} ({m:?}) is not two tokens"))?;
        let (a, b) = (&m[..cut], &m[cut + 1..]);
        for part in [a, b, &m.replace(' ', "")] {
            if !vocab.contains_key(part) {
                bail!("{path}: merge {i} ({m:?}) names {part:?}, which is not a token");
            }
        }
        merges.push((a.to_string(), b.to_string()));
    }
    let unk = match g.uint("tokenizer.ggml.unknown_token_id")? {
        Some(u) => tokens_at(&vocab, u as u32),
        None => vocab.contains_key("<unk>").then(|| "<unk>".to_string()),
    };
    let mut bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .iter()
                .map(|(p, &i)| (p.clone(), i))
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(u) = unk {
        bpe = bpe.unk_token(u);
    }
    let bpe = bpe
        .build()
        .map_err(|e| anyhow!("{path}: the gemma4 vocabulary: {e}"))?;
    let mut t = tokenizers::Tokenizer::new(bpe);
    let text = |e: tokenizers::Error| anyhow!("{path}: the gemma4 tokenizer: {e}");
    t.with_normalizer(Some(Replace::new(" ", "\u{2581}").map_err(text)?));
    t.with_pre_tokenizer(Some(
        Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false).map_err(text)?,
    ));
    t.with_decoder(Some(Sequence::new(vec![
        DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(text)?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    // Added tokens with a newline would be cut by the newline split before they are matched.
    let split_newlines = !added.iter().any(|a| a.content.contains('\n'));
    t.add_tokens(&added);
    let newline_runs = if split_newlines {
        vocab
            .iter()
            .filter(|(p, _)| !p.is_empty() && p.bytes().all(|b| b == b'\n'))
            .map(|(p, &id)| (p.len(), id))
            .collect()
    } else {
        HashMap::new()
    };
    Ok(GemmaTokenizer::from_backend(crate::Backend::Gemma4Gguf {
        tok: Box::new(t),
        newline_runs,
        split_newlines,
    }))
}

fn tokens_at(vocab: &HashMap<String, u32>, id: u32) -> Option<String> {
    vocab.iter().find(|(_, &i)| i == id).map(|(p, _)| p.clone())
}

/// The SentencePiece tokenizer the metadata holds (`tokenizer.ggml.model` "llama": tokens,
/// scores and token types), or None when the file has no vocabulary. `map` is the file's map.
pub fn sentencepiece(g: &Gguf, map: &[u8]) -> Result<Option<SentencePiece>> {
    let path = &g.path;
    let Some(model) = g.str("tokenizer.ggml.model")? else {
        return Ok(None);
    };
    if model != "llama" {
        bail!("{path}: tokenizer `{model}` is not a SentencePiece (`llama`) vocabulary; frugal reads those (Gemma 1-3) and `gemma4` (Gemma 4)");
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
