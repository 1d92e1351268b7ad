//! `frugal convert IN OUT.gguf`: the bytes frugal writes are the ones checked against gguf-py
//! and llama.cpp by `scripts/check_gguf_export.py` (which recorded their sha256 in
//! tests/fixtures/gguf_export/expected.json); bad requests are refused without a partial file.

use sha2::{Digest, Sha256};

use crate::common::fixture_with_spm;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn frugal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn written_bytes_are_the_checked_ones() {
    let expected: std::collections::BTreeMap<String, String> = serde_json::from_slice(
        &std::fs::read(root().join("tests/fixtures/gguf_export/expected.json")).unwrap(),
    )
    .unwrap();
    assert!(expected.len() >= 12);
    let tmp = tempfile::tempdir().unwrap();
    for (key, sha) in &expected {
        let (name, kind) = key.rsplit_once('-').unwrap();
        let src = fixture_with_spm(tmp.path(), name);
        let out = tmp.path().join(format!("{key}.gguf"));
        let mut args = vec![
            "convert",
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            "--force",
        ];
        if kind != "float" {
            args.extend_from_slice(&["--quant", kind]);
        }
        let o = frugal(&args);
        assert!(
            o.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = format!("{:x}", Sha256::digest(std::fs::read(&out).unwrap()));
        assert_eq!(&got, sha, "{key}: the GGUF bytes changed; rerun scripts/check_gguf_export.py --write-expected after checking them");
    }
}

#[test]
fn unrepresentable_or_bad_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // llama.cpp would scale this model's queries differently: refused, no file left.
    let src = fixture_with_spm(tmp.path(), "gemma2-gqa-bf16");
    let out = tmp.path().join("g2.gguf");
    let o = frugal(&["convert", src.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("query_pre_attn_scalar"));
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no partial file"
    );
    // No tokenizer.model: the vocabulary cannot be written.
    let bare = root().join("tests/fixtures/models/gemma3-bf16");
    let o = frugal(&["convert", bare.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("tokenizer.model"));
    // An existing output needs --force.
    let src = fixture_with_spm(tmp.path(), "gemma3-bf16");
    std::fs::write(&out, b"keep me").unwrap();
    let o = frugal(&["convert", src.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    // --quant only makes sense for GGUF.
    let folder = tmp.path().join("st");
    let o = frugal(&[
        "convert",
        src.to_str().unwrap(),
        folder.to_str().unwrap(),
        "--quant",
        "q8",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("GGUF"));
}
