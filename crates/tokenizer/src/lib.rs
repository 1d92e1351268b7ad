//! Text to token ids and back with the model's `tokenizer.json` (the `tokenizers` crate), its
//! SentencePiece `tokenizer.model` ([`sentencepiece`]) or a GGUF file's vocabulary ([`gguf`]),
//! the Gemma chat template, and streaming decode that never splits a UTF-8 character.

pub mod gguf;
pub mod sentencepiece;

use anyhow::{anyhow, bail, Result};
use sentencepiece::SentencePiece;
use std::path::Path;

/// The chat format a tokenizer's markers call for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    /// Gemma 1-3: `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n`; no system role
    /// (a system message opens the user turn, as Gemma 3's template puts it).
    Gemma,
    /// Gemma 4: `<|turn>system\n…<turn|>\n<|turn>user\n…<turn|>\n<|turn>model\n`; thinking in
    /// `<|channel>thought\n…<channel|>` before the answer.
    Gemma4,
}

/// A loaded tokenizer and the special ids generation needs.
pub struct GemmaTokenizer {
    inner: Backend,
    /// Number of ids the tokenizer can decode (base vocabulary plus added tokens).
    pub vocab_size: usize,
    pub bos: Option<u32>,
    /// The turn markers: `<start_of_turn>`/`<end_of_turn>` (Gemma 1-3) or `<|turn>`/`<turn|>`
    /// (Gemma 4).
    pub start_of_turn: Option<u32>,
    pub end_of_turn: Option<u32>,
    /// Which chat format the markers belong to; None when the tokenizer has neither pair.
    pub chat_format: Option<ChatFormat>,
    /// Gemma 4's `<|channel>` and `<channel|>` (the thought channel) and `<|tool_response>`.
    pub channel_open: Option<u32>,
    pub channel_close: Option<u32>,
    pub tool_response: Option<u32>,
}

pub(crate) enum Backend {
    Json(Box<tokenizers::Tokenizer>),
    SentencePiece(Box<SentencePiece>),
    /// A GGUF `gemma4` vocabulary ([`gguf::gemma4`]): the BPE transformers builds, with
    /// llama.cpp's cut of the text at newline runs (a run that is a token is that token).
    Gemma4Gguf {
        tok: Box<tokenizers::Tokenizer>,
        /// Newline-run tokens by length.
        newline_runs: std::collections::HashMap<usize, u32>,
        split_newlines: bool,
    },
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
        Ok(Self::from_backend(inner))
    }

    /// A SentencePiece model built in memory (a GGUF file's vocabulary).
    pub fn from_sentencepiece(sp: SentencePiece) -> Self {
        Self::from_backend(Backend::SentencePiece(Box::new(sp)))
    }

    pub(crate) fn from_backend(inner: Backend) -> Self {
        let id = |p: &str| match &inner {
            Backend::Json(t) | Backend::Gemma4Gguf { tok: t, .. } => t.token_to_id(p),
            Backend::SentencePiece(sp) => sp.piece_to_id(p),
        };
        let g4 = (id("<|turn>"), id("<turn|>"));
        let g3 = (id("<start_of_turn>"), id("<end_of_turn>"));
        let (chat_format, (start_of_turn, end_of_turn)) = match (g4, g3) {
            ((Some(_), Some(_)), _) => (Some(ChatFormat::Gemma4), g4),
            (_, (Some(_), Some(_))) => (Some(ChatFormat::Gemma), g3),
            _ => (None, g3),
        };
        let g4_only = |p: &str| id(p).filter(|_| chat_format == Some(ChatFormat::Gemma4));
        GemmaTokenizer {
            bos: id("<bos>"),
            start_of_turn,
            end_of_turn,
            chat_format,
            channel_open: g4_only("<|channel>"),
            channel_close: g4_only("<channel|>"),
            tool_response: g4_only("<|tool_response>"),
            vocab_size: match &inner {
                Backend::Json(t) | Backend::Gemma4Gguf { tok: t, .. } => t.get_vocab_size(true),
                Backend::SentencePiece(sp) => sp.vocab_size(),
            },
            inner,
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
            Backend::Gemma4Gguf {
                tok,
                newline_runs,
                split_newlines,
            } => {
                let enc = |s: &str| -> Result<Vec<u32>> {
                    let e = tok
                        .encode(s, false)
                        .map_err(|e| anyhow!("tokenizing failed: {e}"))?;
                    Ok(e.get_ids().to_vec())
                };
                if !split_newlines {
                    return enc(text);
                }
                // llama.cpp's pre-split `[^\n]+|[\n]+`; a newline run that is a token is taken
                // whole (llama.cpp #21343), any other piece goes through the BPE.
                let mut ids = Vec::new();
                for piece in newline_split(text) {
                    match newline_runs.get(&piece.len()) {
                        Some(&id) if piece.starts_with('\n') => ids.push(id),
                        _ => ids.extend(enc(piece)?),
                    }
                }
                Ok(ids)
            }
        }
    }

    /// The piece each id stands for.
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| match &self.inner {
                Backend::Json(t) | Backend::Gemma4Gguf { tok: t, .. } => {
                    t.id_to_token(i).unwrap_or_default()
                }
                Backend::SentencePiece(sp) => sp.id_to_piece(i).unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Text of `ids`, special tokens kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.inner {
            Backend::Json(t) | Backend::Gemma4Gguf { tok: t, .. } => t
                .decode(ids, false)
                .map_err(|e| anyhow!("decoding failed: {e}")),
            Backend::SentencePiece(sp) => Ok(sp.decode(ids)),
        }
    }

    /// A prompt in Gemma's chat format for one user turn, starting with BOS. A system message,
    /// as Gemma 3's template does, goes at the start of the user turn followed by a blank line;
    /// Gemma 4 has a system turn.
    pub fn chat_prompt_with_system(
        &self,
        system: Option<&str>,
        user: &str,
        bos_id: u32,
    ) -> Result<Vec<u32>> {
        self.chat(system, user, bos_id, false)
    }

    /// A prompt in Gemma's chat format for one user turn, starting with BOS.
    pub fn chat_prompt(&self, user: &str, bos_id: u32) -> Result<Vec<u32>> {
        self.chat(None, user, bos_id, false)
    }

    /// The text of a one-turn chat prompt (BOS not included), in the format of the tokenizer's
    /// markers ([`ChatFormat`]). frugal does not render the checkpoint's Jinja template; the two
    /// formats are written out here as the published templates render one system and one user
    /// message with the generation prompt:
    /// - Gemma 1-3: `<start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n`
    ///   (`thinking` must be false).
    /// - Gemma 4 (google/gemma-4-31B-it's template): `<|turn>system\n{<|think|>\n if
    ///   thinking}{system}<turn|>\n` when there is a system message or thinking, then
    ///   `<|turn>user\n{user}<turn|>\n<|turn>model\n` and, without thinking, the empty thought
    ///   block `<|channel>thought\n<channel|>`; messages are trimmed, as the template does.
    pub fn chat_text(&self, system: Option<&str>, user: &str, thinking: bool) -> Result<String> {
        let system = system.filter(|s| !s.is_empty());
        match self.chat_format {
            None => bail!(
                "this tokenizer has neither <start_of_turn>/<end_of_turn> (Gemma 1-3) nor <|turn>/<turn|> (Gemma 4), so --chat cannot be used with it"
            ),
            Some(ChatFormat::Gemma) => {
                if thinking {
                    bail!("thinking needs Gemma 4's chat format (<|turn>, <|channel>); this tokenizer has Gemma 1-3's");
                }
                let user = match system {
                    Some(sys) => format!("{sys}\n\n{user}"),
                    None => user.to_string(),
                };
                Ok(format!(
                    "<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n"
                ))
            }
            Some(ChatFormat::Gemma4) => {
                let mut t = String::new();
                if system.is_some() || thinking {
                    t += "<|turn>system\n";
                    if thinking {
                        t += "<|think|>\n";
                    }
                    t += system.unwrap_or("").trim();
                    t += "<turn|>\n";
                }
                t += "<|turn>user\n";
                t += user.trim();
                t += "<turn|>\n<|turn>model\n";
                if !thinking {
                    t += "<|channel>thought\n<channel|>";
                }
                Ok(t)
            }
        }
    }

    /// A one-turn chat prompt's ids, starting with BOS ([`GemmaTokenizer::chat_text`]).
    pub fn chat(
        &self,
        system: Option<&str>,
        user: &str,
        bos_id: u32,
        thinking: bool,
    ) -> Result<Vec<u32>> {
        let text = self.chat_text(system, user, thinking)?;
        let mut ids = vec![bos_id];
        ids.extend(self.encode(&text)?);
        Ok(ids)
    }

    /// The ids that end a chat answer besides the model's EOS: the end-of-turn marker, and
    /// for Gemma 4 `<|tool_response>` (the -it checkpoints stop on 1, 106 and 50).
    pub fn chat_stop_ids(&self) -> Vec<u32> {
        self.end_of_turn
            .into_iter()
            .chain(self.tool_response)
            .collect()
    }

    /// A streaming decoder for a chat answer, the thought channel kept apart ([`ChatStream`]).
    pub fn chat_stream(&self) -> ChatStream<'_> {
        ChatStream {
            answer: self.stream(),
            thought: None,
            tok: self,
        }
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

/// What one generated id adds to a chat answer: text of the thought channel, text of the
/// answer (either may be empty).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChatText {
    pub thought: String,
    pub answer: String,
}

/// Streaming decode of a chat answer that keeps Gemma 4's thought channel
/// (`<|channel>…<channel|>`) apart from the answer; the markers themselves are dropped.
pub struct ChatStream<'a> {
    answer: TextStream<'a>,
    thought: Option<TextStream<'a>>,
    tok: &'a GemmaTokenizer,
}

impl ChatStream<'_> {
    /// Adds one id.
    pub fn push(&mut self, id: u32) -> Result<ChatText> {
        let mut out = ChatText::default();
        if Some(id) == self.tok.channel_open && self.tok.channel_open.is_some() {
            self.thought = Some(self.tok.stream());
        } else if Some(id) == self.tok.channel_close && self.tok.channel_close.is_some() {
            if let Some(mut t) = self.thought.take() {
                out.thought = t.finish()?;
            }
        } else if let Some(t) = &mut self.thought {
            out.thought = t.push(id)?;
        } else {
            out.answer = self.answer.push(id)?;
        }
        Ok(out)
    }

    /// True between `<|channel>` and `<channel|>`.
    pub fn in_thought(&self) -> bool {
        self.thought.is_some()
    }

    /// Whatever is left at the end.
    pub fn finish(&mut self) -> Result<ChatText> {
        Ok(ChatText {
            thought: match &mut self.thought {
                Some(t) => t.finish()?,
                None => String::new(),
            },
            answer: self.answer.finish()?,
        })
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

/// `text` cut into maximal runs of newlines and runs of anything else (llama.cpp's `gemma4`
/// pre-split `[^\n]+|[\n]+`).
fn newline_split(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= b.len() {
            return None;
        }
        let nl = b[start] == b'\n';
        let len = b[start..]
            .iter()
            .position(|&c| (c == b'\n') != nl)
            .unwrap_or(b.len() - start);
        let piece = &text[start..start + len];
        start += len;
        Some(piece)
    })
}
