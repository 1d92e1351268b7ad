//! SentencePiece `tokenizer.model` (what gemma_pytorch ships): the model proto is read and text
//! is tokenized exactly as the sentencepiece library's BPE does — whitespace escaped to `▁`,
//! user-defined symbols matched whole, pairs merged by score (leftmost first on ties), pieces
//! outside the vocabulary spelled as `<0xXX>` byte tokens when byte fallback is on.
//!
//! Hand-written because the crates that read SentencePiece models either bind the C++ library
//! (a build dependency CI cannot count on) or implement only the unigram model; the protobuf is
//! read with a few lines of wire-format parsing rather than a generated schema, since only five
//! fields matter.

use anyhow::{bail, Context, Result};
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

/// Kind of a piece, as in `sentencepiece_model.proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceKind {
    /// The kind numbered `code` as in `sentencepiece_model.proto` (1 normal, 2 unknown,
    /// 3 control, 4 user-defined, 5 unused, 6 byte; llama.cpp's GGUF token types use the same
    /// numbers), or `None`.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => PieceKind::Normal,
            2 => PieceKind::Unknown,
            3 => PieceKind::Control,
            4 => PieceKind::UserDefined,
            5 => PieceKind::Unused,
            6 => PieceKind::Byte,
            _ => return None,
        })
    }
}

/// A SentencePiece BPE model.
pub struct SentencePiece {
    pieces: Vec<(String, f32, PieceKind)>,
    /// Normal, user-defined and unused pieces (the ones merges may produce).
    vocab: HashMap<String, u32>,
    /// Control and unknown pieces, looked up only by exact name.
    reserved: HashMap<String, u32>,
    /// User-defined symbols, longest first, matched whole before merging.
    user_defined: Vec<String>,
    byte_ids: [Option<u32>; 256],
    unk_id: u32,
    byte_fallback: bool,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

/// Minimal protobuf wire-format reader.
struct Wire<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).context("truncated varint")?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint too long")
    }
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).context("length too large")?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            w => bail!("unsupported protobuf wire type {w}"),
        };
        Ok(Some((key >> 3, f)))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() - self.pos {
            bail!(
                "truncated field ({n} bytes needed, {} left)",
                self.b.len() - self.pos
            );
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

const SPACE: char = '\u{2581}';

impl SentencePiece {
    /// Reads `tokenizer.model`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_bytes(&bytes)
            .with_context(|| format!("{}: not a valid SentencePiece model", path.display()))
    }

    /// Parses a serialized `ModelProto`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut pieces = Vec::new();
        let mut model_type = 1u64; // UNIGRAM is the proto default
        let mut byte_fallback = false;
        let (mut add_dummy_prefix, mut remove_extra_whitespaces, mut escape_whitespaces) =
            (true, true, true);
        let mut w = Wire { b: bytes, pos: 0 };
        while let Some((num, f)) = w.next()? {
            match (num, f) {
                (1, Field::Bytes(b)) => {
                    let (mut piece, mut score, mut kind) = (String::new(), 0f32, 1u64);
                    let mut pw = Wire { b, pos: 0 };
                    while let Some((n, f)) = pw.next()? {
                        match (n, f) {
                            (1, Field::Bytes(s)) => {
                                piece =
                                    String::from_utf8(s.to_vec()).context("piece is not UTF-8")?
                            }
                            (2, Field::Fixed32(x)) => score = f32::from_bits(x),
                            (3, Field::Varint(k)) => kind = k,
                            _ => {}
                        }
                    }
                    let Some(kind) = i64::try_from(kind).ok().and_then(PieceKind::from_code) else {
                        bail!("piece {} `{piece}` has unknown type {kind}", pieces.len())
                    };
                    pieces.push((piece, score, kind));
                }
                (2, Field::Bytes(b)) => {
                    let mut tw = Wire { b, pos: 0 };
                    while let Some((n, f)) = tw.next()? {
                        match (n, f) {
                            (3, Field::Varint(t)) => model_type = t,
                            (35, Field::Varint(v)) => byte_fallback = v != 0,
                            _ => {}
                        }
                    }
                }
                (3, Field::Bytes(b)) => {
                    let mut nw = Wire { b, pos: 0 };
                    while let Some((n, f)) = nw.next()? {
                        match (n, f) {
                            (3, Field::Varint(v)) => add_dummy_prefix = v != 0,
                            (4, Field::Varint(v)) => remove_extra_whitespaces = v != 0,
                            (5, Field::Varint(v)) => escape_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if model_type != 2 {
            bail!("model type {model_type} is not BPE (2); frugal reads Gemma's BPE SentencePiece models");
        }
        Self::build(
            pieces,
            byte_fallback,
            add_dummy_prefix,
            remove_extra_whitespaces,
            escape_whitespaces,
            false,
        )
    }

    /// A BPE model from its pieces (id order) as a GGUF file's metadata holds them, tokenizing
    /// as llama.cpp's SentencePiece tokenizer does: byte fallback, whitespace escaped and never
    /// folded, an optional dummy prefix, and control pieces written in the text matched whole
    /// like user-defined ones (as the Hugging Face tokenizer matches its special tokens).
    pub fn from_pieces(
        pieces: Vec<(String, f32, PieceKind)>,
        add_dummy_prefix: bool,
    ) -> Result<Self> {
        Self::build(pieces, true, add_dummy_prefix, false, true, true)
    }

    fn build(
        pieces: Vec<(String, f32, PieceKind)>,
        byte_fallback: bool,
        add_dummy_prefix: bool,
        remove_extra_whitespaces: bool,
        escape_whitespaces: bool,
        match_control: bool,
    ) -> Result<Self> {
        if pieces.is_empty() {
            bail!("the model has no pieces");
        }
        let mut vocab = HashMap::new();
        let mut reserved = HashMap::new();
        let mut user_defined = Vec::new();
        let mut byte_ids = [None; 256];
        let mut unk_id = None;
        for (i, (p, _, k)) in pieces.iter().enumerate() {
            let i = i as u32;
            match k {
                PieceKind::Normal | PieceKind::UserDefined | PieceKind::Unused => {
                    vocab.entry(p.clone()).or_insert(i);
                }
                PieceKind::Byte => {
                    let v = p
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .with_context(|| format!("byte piece `{p}` is not of the form <0xXX>"))?;
                    byte_ids[v as usize] = Some(i);
                    reserved.entry(p.clone()).or_insert(i);
                }
                PieceKind::Unknown => {
                    unk_id.get_or_insert(i);
                    reserved.entry(p.clone()).or_insert(i);
                }
                PieceKind::Control => {
                    reserved.entry(p.clone()).or_insert(i);
                }
            }
            if *k == PieceKind::UserDefined || (match_control && *k == PieceKind::Control) {
                user_defined.push(p.clone());
            }
        }
        user_defined.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(SentencePiece {
            pieces,
            vocab,
            reserved,
            user_defined,
            byte_ids,
            unk_id: unk_id.context("the model has no unknown piece")?,
            byte_fallback,
            add_dummy_prefix,
            remove_extra_whitespaces,
            escape_whitespaces,
        })
    }

    /// Number of ids.
    /// Every piece by id: its text, score and kind.
    pub fn pieces(&self) -> &[(String, f32, PieceKind)] {
        &self.pieces
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Id of a piece given by name (any kind).
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.vocab
            .get(piece)
            .or_else(|| self.reserved.get(piece))
            .copied()
    }

    /// The piece of an id.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(|p| p.0.as_str())
    }

    fn normalize(&self, text: &str) -> String {
        let mut t = text.to_string();
        if self.remove_extra_whitespaces {
            t = t
                .split(' ')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
        }
        if self.add_dummy_prefix && !t.is_empty() {
            t.insert(0, ' ');
        }
        if self.escape_whitespaces {
            t = t.replace(' ', &SPACE.to_string());
        }
        t
    }

    /// Token ids of `text` (no BOS/EOS), as `SentencePieceProcessor.encode`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let norm = self.normalize(text);
        // Initial symbols: user-defined symbols whole (frozen), else one character each.
        struct Sym {
            start: usize,
            len: usize,
            prev: isize,
            next: isize,
            frozen: bool,
        }
        let mut syms: Vec<Sym> = Vec::new();
        let mut pos = 0;
        while pos < norm.len() {
            let rest = &norm[pos..];
            let (len, frozen) = match self
                .user_defined
                .iter()
                .find(|u| rest.starts_with(u.as_str()))
            {
                Some(u) => (u.len(), true),
                None => (rest.chars().next().map_or(1, |c| c.len_utf8()), false),
            };
            let i = syms.len() as isize;
            syms.push(Sym {
                start: pos,
                len,
                prev: i - 1,
                next: i + 1,
                frozen,
            });
            pos += len;
        }
        if let Some(last) = syms.last_mut() {
            last.next = -1;
        }
        // Candidate merges: highest score first, then leftmost.
        #[derive(PartialEq)]
        struct Pair {
            score: f32,
            left: usize,
            right: usize,
            len: usize,
        }
        impl Eq for Pair {}
        impl Ord for Pair {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
            }
        }
        impl PartialOrd for Pair {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        let mut heap = BinaryHeap::new();
        let try_pair = |syms: &[Sym], heap: &mut BinaryHeap<Pair>, l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (a, b) = (&syms[l as usize], &syms[r as usize]);
            if a.frozen || b.frozen {
                return;
            }
            let piece = &norm[a.start..a.start + a.len + b.len];
            if let Some(&id) = self.vocab.get(piece) {
                heap.push(Pair {
                    score: self.pieces[id as usize].1,
                    left: l as usize,
                    right: r as usize,
                    len: piece.len(),
                });
            }
        };
        for i in 1..syms.len() {
            try_pair(&syms, &mut heap, i as isize - 1, i as isize);
        }
        while let Some(top) = heap.pop() {
            let (l, r) = (top.left, top.right);
            if syms[l].len == 0
                || syms[r].len == 0
                || syms[l].len + syms[r].len != top.len
                || syms[l].next != r as isize
            {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[r].len = 0;
            let rn = syms[r].next;
            syms[l].next = rn;
            if rn >= 0 {
                syms[rn as usize].prev = l as isize;
            }
            let lp = syms[l].prev;
            try_pair(&syms, &mut heap, lp, l as isize);
            try_pair(&syms, &mut heap, l as isize, rn);
        }
        // Emit pieces; unknown ones become bytes (byte fallback) or the unknown id.
        let mut out = Vec::new();
        let mut i: isize = if syms.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = &syms[i as usize];
            let piece = &norm[s.start..s.start + s.len];
            let found = self
                .vocab
                .get(piece)
                .or_else(|| s.frozen.then(|| self.reserved.get(piece)).flatten());
            match found {
                Some(&id) if self.pieces[id as usize].2 != PieceKind::Unused => out.push(id),
                _ => {
                    if self.byte_fallback {
                        for b in piece.bytes() {
                            out.push(self.byte_ids[b as usize].unwrap_or(self.unk_id));
                        }
                    } else if out.last() != Some(&self.unk_id) {
                        out.push(self.unk_id);
                    }
                }
            }
            i = s.next;
        }
        out
    }

    /// Text of `ids`: pieces joined, `▁` back to spaces, byte pieces reassembled into UTF-8,
    /// control pieces dropped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some((p, _, k)) = self.pieces.get(id as usize) else {
                continue;
            };
            match k {
                PieceKind::Control => {}
                PieceKind::Byte => {
                    if let Some(b) = self.byte_ids.iter().position(|x| *x == Some(id)) {
                        bytes.push(b as u8);
                    }
                }
                PieceKind::Unknown => bytes.extend_from_slice(" \u{2047} ".as_bytes()),
                _ => bytes.extend_from_slice(p.replace(SPACE, " ").as_bytes()),
            }
        }
        let mut s = String::from_utf8_lossy(&bytes).into_owned();
        if self.add_dummy_prefix && s.starts_with(' ') {
            s.remove(0);
        }
        s
    }

    /// This model as a serialized `ModelProto` (a `tokenizer.model` file): the pieces, a BPE
    /// trainer spec with byte fallback and the given special ids (`unk` is the model's; `None`
    /// writes -1, "no such token"), an `identity` normalizer with this model's whitespace rules.
    /// What [`SentencePiece::from_bytes`] and the `sentencepiece` library read back.
    pub fn to_model_proto(&self, bos: Option<u32>, eos: Option<u32>, pad: Option<u32>) -> Vec<u8> {
        fn varint(out: &mut Vec<u8>, mut v: u64) {
            while v >= 0x80 {
                out.push(v as u8 | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        fn tag(out: &mut Vec<u8>, field: u64, wire: u64) {
            varint(out, field << 3 | wire);
        }
        fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
            tag(out, field, 2);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        fn int(out: &mut Vec<u8>, field: u64, v: i64) {
            tag(out, field, 0);
            varint(out, v as u64);
        }
        let code = |k: PieceKind| match k {
            PieceKind::Normal => 1,
            PieceKind::Unknown => 2,
            PieceKind::Control => 3,
            PieceKind::UserDefined => 4,
            PieceKind::Unused => 5,
            PieceKind::Byte => 6,
        };
        let mut out = Vec::new();
        for (p, score, k) in &self.pieces {
            let mut m = Vec::new();
            bytes(&mut m, 1, p.as_bytes());
            tag(&mut m, 2, 5);
            m.extend_from_slice(&score.to_le_bytes());
            int(&mut m, 3, code(*k));
            bytes(&mut out, 1, &m);
        }
        let id = |i: Option<u32>| i.map_or(-1, i64::from);
        let piece = |i: Option<u32>| {
            i.and_then(|i| self.pieces.get(i as usize))
                .map_or("", |p| p.0.as_str())
        };
        let unk = Some(self.unk_id);
        let mut t = Vec::new();
        int(&mut t, 3, 2); // model_type: BPE
        int(&mut t, 4, self.pieces.len() as i64); // vocab_size
        int(&mut t, 35, self.byte_fallback as i64);
        for (f, i) in [(40, unk), (41, bos), (42, eos), (43, pad)] {
            int(&mut t, f, id(i));
        }
        for (f, i) in [(45, unk), (46, bos), (47, eos), (48, pad)] {
            if i.is_some() {
                bytes(&mut t, f, piece(i).as_bytes());
            }
        }
        bytes(&mut out, 2, &t);
        let mut n = Vec::new();
        bytes(&mut n, 1, b"identity");
        int(&mut n, 3, self.add_dummy_prefix as i64);
        int(&mut n, 4, self.remove_extra_whitespaces as i64);
        int(&mut n, 5, self.escape_whitespaces as i64);
        bytes(&mut out, 3, &n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_proto_round_trips() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../assets/tokenizer/tokenizer.model"
        );
        let sp = SentencePiece::from_file(std::path::Path::new(path)).unwrap();
        let back =
            SentencePiece::from_bytes(&sp.to_model_proto(Some(2), Some(1), Some(0))).unwrap();
        assert_eq!(back.pieces(), sp.pieces());
        let text = "Hello  world, \u{4f60}\u{597d} \u{1f600}\n<start_of_turn>user";
        assert_eq!(back.encode(text), sp.encode(text));
        assert_eq!(
            (
                back.add_dummy_prefix,
                back.remove_extra_whitespaces,
                back.escape_whitespaces,
                back.byte_fallback
            ),
            (
                sp.add_dummy_prefix,
                sp.remove_extra_whitespaces,
                sp.escape_whitespaces,
                sp.byte_fallback
            )
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(SentencePiece::from_bytes(b"\xff\xff\xff").is_err());
        assert!(SentencePiece::from_bytes(&[0x0a, 0x05, 0x0a]).is_err());
    }
}
