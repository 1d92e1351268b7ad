//! Bad input gets a clear error naming the file and the field, a non-zero exit, and no panic.

use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURE: &str = "tests/fixtures/models/gemma1-mqa-bf16";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_frugal"))
}

/// Copies the fixture into a fresh temporary folder.
fn copy_fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    (tmp, dir)
}

/// Runs frugal and returns stderr, asserting failure without a panic.
fn fails(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure for {args:?}, got success; stderr: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "exit code for {args:?}: {err}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

fn logits_args(dir: &Path) -> Vec<String> {
    vec![
        "logits".into(),
        "-m".into(),
        dir.display().to_string(),
        "--tokens".into(),
        "2,5,7".into(),
    ]
}

fn fails_logits(dir: &Path) -> String {
    let a = logits_args(dir);
    fails(&a.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

/// Reads the safetensors header of `file`.
fn header(file: &Path) -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (h.as_object().unwrap().clone(), bytes[8 + n..].to_vec())
}

/// Writes a safetensors file from a header map and data.
fn write_st(file: &Path, h: &serde_json::Map<String, serde_json::Value>, data: &[u8]) {
    let mut hb = serde_json::to_vec(h).unwrap();
    while !hb.len().is_multiple_of(8) {
        hb.push(b' ');
    }
    let mut out = (hb.len() as u64).to_le_bytes().to_vec();
    out.extend(hb);
    out.extend(data);
    std::fs::write(file, out).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let (_t, dir) = copy_fixture();
    let f = dir.join("model.safetensors");
    let (mut h, data) = header(&f);
    // Drop the last tensor in the data and its bytes so the file stays valid safetensors.
    let (name, end_start) = {
        let mut v: Vec<(String, u64, u64)> = h
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(k, v)| {
                (
                    k.clone(),
                    v["data_offsets"][0].as_u64().unwrap(),
                    v["data_offsets"][1].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort_by_key(|x| x.1);
        let last = v.pop().unwrap();
        (last.0, last.1)
    };
    h.remove(&name);
    write_st(&f, &h, &data[..end_start as usize]);
    let err = fails_logits(&dir);
    assert!(
        err.contains("missing tensors") && err.contains(&name),
        "{err}"
    );
}

#[test]
fn extra_tensor_is_named() {
    let (_t, dir) = copy_fixture();
    let f = dir.join("model.safetensors");
    let (mut h, mut data) = header(&f);
    let n = data.len() as u64;
    h.insert(
        "model.layers.0.mystery.weight".into(),
        serde_json::json!({"dtype":"BF16","shape":[4],"data_offsets":[n, n + 8]}),
    );
    data.extend([0u8; 8]);
    write_st(&f, &h, &data);
    let err = fails_logits(&dir);
    assert!(
        err.contains("unexpected tensors") && err.contains("model.layers.0.mystery.weight"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let (_t, dir) = copy_fixture();
    let cfg = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(&cfg, text).unwrap();
    let err = fails_logits(&dir);
    assert!(
        err.contains("mlp.gate_proj.weight")
            && err.contains("[128, 64]")
            && err.contains("[96, 64]"),
        "{err}"
    );
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn wrong_dtype_is_named() {
    let (_t, dir) = copy_fixture();
    let f = dir.join("model.safetensors");
    let (mut h, data) = header(&f);
    // Relabel a bf16 tensor as i16 (same size): the loader must refuse it by name.
    h.get_mut("model.layers.1.mlp.up_proj.weight").unwrap()["dtype"] = serde_json::json!("I16");
    write_st(&f, &h, &data);
    let err = fails_logits(&dir);
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("i16"),
        "{err}"
    );
}

#[test]
fn truncated_file() {
    let (_t, dir) = copy_fixture();
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let err = fails_logits(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn header_length_past_end() {
    let (_t, dir) = copy_fixture();
    let f = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&f, &bytes).unwrap();
    let err = fails_logits(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("header length"),
        "{err}"
    );
}

#[test]
fn overlapping_ranges() {
    let (_t, dir) = copy_fixture();
    let f = dir.join("model.safetensors");
    let (mut h, data) = header(&f);
    // Point the final norm at the first tensor's bytes.
    h.get_mut("model.norm.weight").unwrap()["data_offsets"] = serde_json::json!([0, 128]);
    write_st(&f, &h, &data);
    let err = fails_logits(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("overlaps another tensor"),
        "{err}"
    );
}

#[test]
fn unknown_model_type_and_missing_key() {
    let (_t, dir) = copy_fixture();
    let cfg = dir.join("config.json");
    let orig = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        orig.replace("\"model_type\": \"gemma\"", "\"model_type\": \"llama\""),
    )
    .unwrap();
    let err = fails_logits(&dir);
    assert!(
        err.contains("config.json") && err.contains("unknown model_type `llama`"),
        "{err}"
    );
    std::fs::write(&cfg, orig.replace("\"num_hidden_layers\": 2,", "")).unwrap();
    let err = fails_logits(&dir);
    assert!(
        err.contains("config.json") && err.contains("missing key `num_hidden_layers`"),
        "{err}"
    );
}

#[test]
fn empty_prompt_ctx_zero_and_bad_token() {
    let err = fails(&["run", "-m", FIXTURE, "-p", ""]);
    assert!(err.contains("prompt is empty"), "{err}");
    let err = fails(&["run", "-m", FIXTURE, "-p", "hi", "--ctx", "0"]);
    assert!(err.contains("--ctx 0"), "{err}");
    let err = fails(&["logits", "-m", FIXTURE, "--tokens", "2,2048"]);
    assert!(
        err.contains("id 2048 is out of range") && err.contains("vocab_size 2048"),
        "{err}"
    );
    let err = fails(&["logits", "-m", FIXTURE, "--tokens", "2,x"]);
    assert!(err.contains("`x` is not a token id"), "{err}");
    let err = fails(&["run", "-m", "/nonexistent/model", "-p", "hi"]);
    assert!(err.contains("/nonexistent/model"), "{err}");
    let err = fails(&["synth", "--shape", "gemma-5b", "--out", "/tmp/never"]);
    assert!(err.contains("unknown shape `gemma-5b`"), "{err}");
}

#[test]
fn bad_flags_exit_nonzero() {
    let out = bin().args(["run", "--no-such-flag"]).output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
