//! Text to token ids and back with the model's `tokenizer.json` (the `tokenizers` crate), its
//! SentencePiece `tokenizer.model` ([`sentencepiece`]) or a GGUF file's vocabulary ([`gguf`]),
//! the Gemma chat template, and streaming decode that never splits a UTF-8 character.

pub mod gguf;
pub mod sentencepiece;

use anyhow::{anyhow, Context, Result};
use sentencepiece::SentencePiece;
use std::path::Path;

/// A loaded tokenizer and the special ids generation needs.
pub struct GemmaTokenizer {
    inner: Backend,
    /// Number of ids the tokenizer can decode (base vocabulary plus added tokens).
    pub vocab_size: usize,
    pub bos: Option<u32>,
    pub start_of_turn: Option<u32>,
    pub end_of_turn: Option<u32>,
}

enum Backend {
    Json(Box<tokenizers::Tokenizer>),
    SentencePiece(Box<SentencePiece>),
}

impl GemmaTokenizer {
    /// Loads `tokenizer.json`, or a SentencePiece `tokenizer.model` (by extension).
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = if path.extension().is_some_and(|e| e == "model") {
            Backend::SentencePiece(Box::new(SentencePiece::from_file(path)?))
        } else {
            Backend::Json(Box::new(tokenizers::Tokenizer::from_file(path).map_err(
                |e| anyhow!("{}: cannot load the tokenizer: {e}", path.display()),
            )?))
        };
        let id = |p: &str| match &inner {
            Backend::Json(t) => t.token_to_id(p),
            Backend::SentencePiece(sp) => sp.piece_to_id(p),
        };
        Ok(GemmaTokenizer {
            bos: id("<bos>"),
            start_of_turn: id("<start_of_turn>"),
            end_of_turn: id("<end_of_turn>"),
            vocab_size: match &inner {
                Backend::Json(t) => t.get_vocab_size(true),
                Backend::SentencePiece(sp) => sp.vocab_size(),
            },
            inner,
        })
    }

    /// A SentencePiece model built in memory (a GGUF file's vocabulary).
    pub fn from_sentencepiece(sp: SentencePiece) -> Self {
        GemmaTokenizer {
            bos: sp.piece_to_id("<bos>"),
            start_of_turn: sp.piece_to_id("<start_of_turn>"),
            end_of_turn: sp.piece_to_id("<end_of_turn>"),
            vocab_size: sp.vocab_size(),
            inner: Backend::SentencePiece(Box::new(sp)),
        }
    }

    /// The tokenizer in a model folder: `tokenizer.json`, else `tokenizer.model`.
    pub fn find(dir: &Path) -> Option<std::path::PathBuf> {
        ["tokenizer.json", "tokenizer.model"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
    }

    /// Token ids of `text`, with no BOS or other added token (special tokens written in the
    /// text, like `<start_of_turn>`, are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Backend::Json(t) => {
                let enc = t
                    .encode(text, false)
                    .map_err(|e| anyhow!("tokenizing failed: {e}"))?;
                Ok(enc.get_ids().to_vec())
            }
            Backend::SentencePiece(sp) => Ok(sp.encode(text)),
        }
    }

    /// The piece each id stands for.
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| match &self.inner {
                Backend::Json(t) => t.id_to_token(i).unwrap_or_default(),
                Backend::SentencePiece(sp) => sp.id_to_piece(i).unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.inner {
            Backend::Json(t) => t
                .decode(ids, false)
                .map_err(|e| anyhow!("decoding failed: {e}")),
            Backend::SentencePiece(sp) => Ok(sp.decode(ids)),
        }
    }

    /// A prompt in Gemma's chat format for one user turn, starting with BOS. A system message,
    /// as Gemma 3's template does, goes at the start of the user turn followed by a blank line.
    pub fn chat_prompt_with_system(
        &self,
        system: Option<&str>,
        user: &str,
        bos_id: u32,
    ) -> Result<Vec<u32>> {
        match system {
            Some(sys) if !sys.is_empty() => self.chat_prompt(&format!("{sys}\n\n{user}"), bos_id),
            _ => self.chat_prompt(user, bos_id),
        }
    }

    /// A prompt in Gemma's chat format for one user turn, starting with BOS.
    pub fn chat_prompt(&self, user: &str, bos_id: u32) -> Result<Vec<u32>> {
        self.start_of_turn.context(
            "this tokenizer has no <start_of_turn> token, so --chat cannot be used with it",
        )?;
        self.end_of_turn.context(
            "this tokenizer has no <end_of_turn> token, so --chat cannot be used with it",
        )?;
        let mut ids = vec![bos_id];
        ids.extend(self.encode(&format!(
            "<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n"
        ))?);
        Ok(ids)
    }

    /// A streaming decoder: feed ids one at a time, get text as soon as it is complete.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream {
            tok: self,
            ids: Vec::new(),
            emitted: 0,
        }
    }
}

/// Incremental decoding: emits only text that can no longer change.
pub struct TextStream<'a> {
    tok: &'a GemmaTokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream<'_> {
    /// Adds one id and returns the new complete text, if any.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tok.decode(&self.ids)?;
        // A trailing replacement character may be an incomplete byte sequence: wait for more.
        if text.ends_with('\u{FFFD}')
            || text.len() < self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return Ok(String::new());
        }
        let new = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(new)
    }

    /// Whatever is left at the end (including incomplete bytes shown as U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tok.decode(&self.ids)?;
        let new = if text.is_char_boundary(self.emitted) && self.emitted <= text.len() {
            text[self.emitted..].to_string()
        } else {
            String::new()
        };
        self.emitted = text.len();
        Ok(new)
    }
}
