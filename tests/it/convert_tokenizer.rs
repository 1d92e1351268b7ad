//! `frugal convert` keeps what the source says about its tokenizer's use, both ways: a folder
//! gets the tokenizer_config.json, special_tokens_map.json and generation_config.json
//! transformers needs (add BOS, the special tokens, the stop ids, the chat template) from a
//! GGUF file's metadata or from Gemma's defaults (a .ckpt), and a GGUF file gets the add-BOS/EOS
//! flags and the chat template of the folder's tokenizer_config.json, as llama.cpp's converter
//! writes them. `scripts/check_roundtrip.py` runs transformers and llama.cpp on such conversions.

use crate::common::fixture_with_spm;
use std::path::Path;
use std::process::Command;

fn frugal(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The ids the bundled tokenizer gives Gemma's special pieces.
const BOS: u64 = 2;
const EOS: u64 = 1;
const PAD: u64 = 0;
const END_OF_TURN: u64 = 7;

fn check_gemma_defaults(dir: &Path, what: &str) {
    let c = json(&dir.join("tokenizer_config.json"));
    assert_eq!(c["add_bos_token"], true, "{what}");
    assert_eq!(c["add_eos_token"], false, "{what}");
    assert_eq!(c["bos_token"], "<bos>", "{what}");
    assert_eq!(c["eos_token"], "<eos>", "{what}");
    assert_eq!(c["pad_token"], "<pad>", "{what}");
    assert_eq!(c["unk_token"], "<unk>", "{what}");
    let d = &c["added_tokens_decoder"];
    assert_eq!(d["2"]["content"], "<bos>", "{what}");
    assert_eq!(d["2"]["special"], true, "{what}");
    assert_eq!(d["6"]["content"], "<start_of_turn>", "{what}");
    assert_eq!(d["6"]["special"], true, "{what}");
    assert_eq!(d["10"]["content"], "\n", "{what}");
    let g = json(&dir.join("generation_config.json"));
    assert_eq!(g["bos_token_id"], BOS, "{what}");
    assert_eq!(
        g["eos_token_id"],
        serde_json::json!([EOS, END_OF_TURN]),
        "{what}"
    );
    assert_eq!(g["pad_token_id"], PAD, "{what}");
    let m = json(&dir.join("special_tokens_map.json"));
    assert_eq!(m["bos_token"], "<bos>", "{what}");
    assert!(
        m["additional_special_tokens"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("<end_of_turn>")),
        "{what}"
    );
}

#[test]
fn a_folder_from_gguf_or_ckpt_says_how_its_tokenizer_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    // From a GGUF file llama.cpp's converter wrote (no add_bos_token key: Gemma's default).
    let gg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/gemma3-f16.gguf");
    let out = tmp.path().join("from-gguf");
    frugal(&["convert", gg.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(out.join("tokenizer.model").is_file());
    check_gemma_defaults(&out, "from GGUF");
    // From a gemma_pytorch checkpoint (tokenizer.model beside it, nothing else).
    let ck = tmp.path().join("ck");
    frugal(&[
        "synth",
        "--shape",
        "tiny-gemma3",
        "--format",
        "ckpt",
        "--out",
        ck.to_str().unwrap(),
    ]);
    let out = tmp.path().join("from-ckpt");
    frugal(&[
        "convert",
        ck.join("model.ckpt").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    check_gemma_defaults(&out, "from .ckpt");
}

#[test]
fn flags_and_chat_template_survive_folder_gguf_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_with_spm(tmp.path(), "gemma3-bf16");
    let template = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}";
    std::fs::write(
        src.join("tokenizer_config.json"),
        serde_json::json!({"add_bos_token": false, "add_eos_token": true, "chat_template": template})
            .to_string(),
    )
    .unwrap();
    let g = tmp.path().join("t.gguf");
    frugal(&["convert", src.to_str().unwrap(), g.to_str().unwrap()]);
    let (gg, _index) = frugal::checkpoint::gguf::open(&g).unwrap();
    assert_eq!(
        gg.bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(false)
    );
    assert_eq!(gg.bool("tokenizer.ggml.add_eos_token").unwrap(), Some(true));
    assert_eq!(gg.str("tokenizer.chat_template").unwrap(), Some(template));
    let back = tmp.path().join("back");
    frugal(&["convert", g.to_str().unwrap(), back.to_str().unwrap()]);
    let c = json(&back.join("tokenizer_config.json"));
    assert_eq!(c["add_bos_token"], false);
    assert_eq!(c["add_eos_token"], true);
    assert_eq!(c["chat_template"], template);
    // A folder that says nothing: Gemma's defaults, no template.
    let plain = fixture_with_spm(&tmp.path().join("plain"), "gemma3-bf16");
    let g = tmp.path().join("plain.gguf");
    frugal(&["convert", plain.to_str().unwrap(), g.to_str().unwrap()]);
    let (gg, _index) = frugal::checkpoint::gguf::open(&g).unwrap();
    assert_eq!(gg.bool("tokenizer.ggml.add_bos_token").unwrap(), Some(true));
    assert_eq!(gg.str("tokenizer.chat_template").unwrap(), None);
}
