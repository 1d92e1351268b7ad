//! Tokenization identical to the `tokenizers` reference (Python) on a multilingual sample, made
//! by scripts/make_fixtures.py with the bundled Gemma-layout tokenizer.

use frugal::tokenizer::GemmaTokenizer;
use std::path::Path;

#[test]
fn ids_match_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tok = GemmaTokenizer::from_file(&root.join("assets/tokenizer/tokenizer.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/tokenizer/cases.json")).unwrap(),
    )
    .unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(text).unwrap(), want, "ids of {text:?}");
        assert_eq!(
            tok.decode(&want).unwrap(),
            c["decoded"].as_str().unwrap(),
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
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/tokenizer/cases.json")).unwrap(),
    )
    .unwrap();
    for c in cases.as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["sp_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(sp.encode(text), want, "sentencepiece ids of {text:?}");
        assert_eq!(
            sp.decode(&want),
            c["sp_decoded"].as_str().unwrap(),
            "sentencepiece decoding of {text:?}"
        );
    }
}
