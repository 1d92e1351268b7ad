//! Gemma 4's tokenizer: the `tokenizer.json` path against transformers' ids and the GGUF
//! `gemma4` vocabulary against llama.cpp's (`llama-tokenize` on the same vocabulary), on hostile
//! strings; decoding round trips; the chat format against the template as transformers renders
//! it; the thought channel kept apart. Fixture: scripts/make_gemma4_tokenizer.py
//! (tests/fixtures/gemma4_tokenizer/).

use frugal::tokenizer::{ChatFormat, ChatText, GemmaTokenizer};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma4_tokenizer")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(dir().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn json_tokenizer() -> GemmaTokenizer {
    GemmaTokenizer::from_file(&dir().join("tokenizer.json")).unwrap()
}

fn gguf_tokenizer() -> GemmaTokenizer {
    let (g, index) = frugal::checkpoint::gguf::open(&dir().join("vocab.gguf")).unwrap();
    assert_eq!(g.str("tokenizer.ggml.model").unwrap(), Some("gemma4"));
    frugal::tokenizer::gguf::tokenizer(&g, &index.files[0].map)
        .unwrap()
        .expect("the file has a vocabulary")
}

/// Both paths, each against its reference: every case matches, and the references' one known
/// disagreement (a newline run longer than the longest newline token) is in the fixture.
#[test]
fn ids_match_transformers_and_llama_cpp() {
    let doc = cases();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 25);
    let (json, gguf) = (json_tokenizer(), gguf_tokenizer());
    assert_eq!(json.vocab_size, gguf.vocab_size);
    assert_eq!(json.vocab_size as u64, doc["vocab_size"].as_u64().unwrap());
    let mut disagree = 0;
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let (hf, ll) = (ids(&c["hf_ids"]), ids(&c["llama_ids"]));
        assert_eq!(
            json.encode(text).unwrap(),
            hf,
            "tokenizer.json ids of {text:?}"
        );
        assert_eq!(gguf.encode(text).unwrap(), ll, "GGUF ids of {text:?}");
        assert_eq!(
            json.decode(&hf).unwrap(),
            c["hf_decoded"].as_str().unwrap(),
            "tokenizer.json decoding of {text:?}"
        );
        // Every case decodes back to its text, but for a `▁` written in the text, which reads
        // back as a space (in transformers too); the GGUF path decodes llama.cpp's ids to the
        // same text.
        let back = text.replace('\u{2581}', " ");
        assert_eq!(json.decode(&hf).unwrap(), back, "round trip of {text:?}");
        assert_eq!(
            gguf.decode(&ll).unwrap(),
            back,
            "GGUF round trip of {text:?}"
        );
        disagree += usize::from(hf != ll);
    }
    assert_eq!(
        disagree, 1,
        "the references disagree on the 40-newline run only"
    );
}

/// Byte fallback and the special tokens are what make the hostile cases pass: a tokenizer.json
/// without byte fallback, or with its control tokens unmarked, fails them.
#[test]
fn mutations_are_caught() {
    let doc = cases();
    let text = std::fs::read_to_string(dir().join("tokenizer.json")).unwrap();
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(&text).unwrap();
        f(&mut v);
        let p = std::env::temp_dir().join(format!(
            "frugal-g4-mutant-{}-{}.json",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
        let t = GemmaTokenizer::from_file(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        doc["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| t.encode(c["text"].as_str().unwrap()).unwrap() != ids(&c["hf_ids"]))
            .count()
    };
    assert_eq!(mutate(&|_| {}), 0, "the unmutated copy matches");
    assert!(mutate(&|v| v["model"]["byte_fallback"] = false.into()) > 0);
    assert!(mutate(&|v| v["normalizer"] = Value::Null) > 0);
    assert!(
        mutate(&|v| {
            let added = v["added_tokens"].as_array_mut().unwrap();
            added.retain(|a| a["content"] != "<|turn>");
        }) > 0
    );
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Gemma 4's special ids, the same from both paths.
#[test]
fn gguf_special_ids_and_markers() {
    for t in [json_tokenizer(), gguf_tokenizer()] {
        assert_eq!(t.chat_format, Some(ChatFormat::Gemma4));
        assert_eq!(t.bos, Some(2));
        assert_eq!((t.start_of_turn, t.end_of_turn), (Some(105), Some(106)));
        assert_eq!((t.channel_open, t.channel_close), (Some(100), Some(101)));
        assert_eq!(t.chat_stop_ids(), vec![106, 50]);
        assert_eq!(t.pieces(&[0, 1, 3, 4, 46, 52, 107]).len(), 7);
        assert_eq!(
            t.pieces(&[0, 1, 2, 3, 4, 50, 105, 106, 107]),
            [
                "<pad>",
                "<eos>",
                "<bos>",
                "<unk>",
                "<mask>",
                "<|tool_response>",
                "<|turn>",
                "<turn|>",
                "\n"
            ]
        );
    }
}

/// frugal's hard-coded Gemma 4 chat text is what transformers renders with the checkpoint's
/// template (with and without a system message); the ids are the tokenizer's for that text.
#[test]
fn chat_prompt_matches_the_template() {
    let doc = cases();
    let r = &doc["chat_template_render"];
    for t in [json_tokenizer(), gguf_tokenizer()] {
        let with_sys = r["system+user"].as_str().unwrap();
        let user = r["user"].as_str().unwrap();
        assert_eq!(
            format!(
                "<bos>{}",
                t.chat_text(Some("Be brief."), "Hi there", false).unwrap()
            ),
            with_sys
        );
        assert_eq!(
            format!("<bos>{}", t.chat_text(None, "Hi there", false).unwrap()),
            user
        );
        assert_eq!(
            format!(
                "<bos>{}",
                t.chat_text(Some("Be brief."), "Hi there", true).unwrap()
            ),
            r["system+user thinking"].as_str().unwrap()
        );
        let ids = t.chat(None, "Hi there", 2, false).unwrap();
        assert_eq!(ids[..2], [2, 105]);
        assert_eq!(ids, t.encode(user).unwrap(), "ids of the rendered prompt");
        assert_eq!(t.decode(&ids).unwrap(), user);
    }
    // Gemma 1-3's format is unchanged and has no thinking.
    let g3 = GemmaTokenizer::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tokenizer/tokenizer.json"),
    )
    .unwrap();
    assert_eq!(g3.chat_format, Some(ChatFormat::Gemma));
    assert_eq!(
        g3.chat_text(Some("S"), "U", false).unwrap(),
        "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
    );
    assert!(g3.chat_text(None, "U", true).is_err());
    assert_eq!(g3.chat_stop_ids(), vec![g3.end_of_turn.unwrap()]);
}

/// The thought channel is kept apart from the answer, token by token.
#[test]
fn thought_channel_is_kept_apart() {
    let t = json_tokenizer();
    let ids = t
        .encode("<|channel>thought\nLet me think 🙂<channel|>The answer is 42.")
        .unwrap();
    let mut s = t.chat_stream();
    let mut all = ChatText::default();
    for &i in &ids {
        let p = s.push(i).unwrap();
        assert!(!p.answer.contains('\u{FFFD}') && !p.thought.contains('\u{FFFD}'));
        all.thought += &p.thought;
        all.answer += &p.answer;
    }
    let p = s.finish().unwrap();
    all.thought += &p.thought;
    all.answer += &p.answer;
    assert_eq!(all.thought, "thought\nLet me think 🙂");
    assert_eq!(all.answer, "The answer is 42.");
}

/// `run --think` needs --chat and Gemma 4's markers: a clear error otherwise.
#[test]
fn think_needs_gemma4_chat() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/gemma1-mqa-bf16");
    let m = model.to_str().unwrap();
    for (args, want) in [
        (
            vec!["run", "-m", m, "-p", "hi", "--think"],
            "--think needs --chat",
        ),
        (
            vec!["run", "-m", m, "-p", "hi", "--chat", "--think"],
            "thinking needs Gemma 4's chat format",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_frugal"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
