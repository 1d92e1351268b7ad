//! Tokenization identical to the `tokenizers` reference (Python) on a multilingual sample, made
//! by scripts/make_fixtures.py with the bundled Gemma-layout tokenizer.

use crate::common::tokenizer_cases;
use frugal::tokenizer::GemmaTokenizer;
use std::path::Path;

#[test]
fn ids_match_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tok = GemmaTokenizer::from_file(&root.join("assets/tokenizer/tokenizer.json")).unwrap();
    let cases = tokenizer_cases();
    assert!(cases.len() >= 10);
    for c in &cases {
        let text = &c.text;
        assert_eq!(tok.encode(text).unwrap(), c.ids, "ids of {text:?}");
        assert_eq!(
            tok.decode(&c.ids).unwrap(),
            c.decoded,
            "decoding of {text:?}"
        );
    }
}

#[test]
fn stream_decoding_equals_full_decoding() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tok = GemmaTokenizer::from_file(&root.join("assets/tokenizer/tokenizer.json")).unwrap();
    let text = "naïve café — 世界 🙂 done";
    let ids = tok.encode(text).unwrap();
    let mut s = tok.stream();
    let mut out = String::new();
    for &i in &ids {
        let piece = s.push(i).unwrap();
        assert!(
            !piece.contains('\u{FFFD}'),
            "partial character emitted: {piece:?}"
        );
        out += &piece;
    }
    out += &s.finish().unwrap();
    assert_eq!(out, text);
    let chat = tok.chat_prompt("hi", 2).unwrap();
    assert_eq!(chat[0], 2);
    assert_eq!(chat[1], tok.start_of_turn.unwrap());
}

#[test]
fn sentencepiece_model_matches_the_sentencepiece_library() {
    use frugal::tokenizer::sentencepiece::SentencePiece;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sp = SentencePiece::from_file(&root.join("assets/tokenizer/tokenizer.model")).unwrap();
    for c in tokenizer_cases() {
        let text = &c.text;
        assert_eq!(sp.encode(text), c.sp_ids, "sentencepiece ids of {text:?}");
        assert_eq!(
            sp.decode(&c.sp_ids),
            c.sp_decoded,
            "sentencepiece decoding of {text:?}"
        );
    }
}
