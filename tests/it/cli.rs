//! The commands end to end: synth writes a loadable model; run, logits, tokenize, inspect and
//! bench work on it and report memory.

use std::process::Command;

fn frugal(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout).to_string();
    let se = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "frugal {args:?} failed:\n{se}");
    (so, se)
}

#[test]
fn synth_then_run_bench_logits() {
    let tmp = tempfile::tempdir().unwrap();
    for shape in ["tiny-gemma", "tiny-gemma2", "tiny-gemma3"] {
        let dir = tmp.path().join(shape);
        let d = dir.to_str().unwrap();
        frugal(&["synth", "--shape", shape, "--out", d, "--dtype", "f16"]);
        // Refuses to overwrite without --force, and leaves no partial folder behind.
        let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
            .args(["synth", "--shape", shape, "--out", d])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));

        let sampled = [
            "run",
            "-m",
            d,
            "-p",
            "def main():",
            "-n",
            "8",
            "--temp",
            "0.8",
            "--top-k",
            "40",
            "--top-p",
            "0.9",
            "--seed",
            "3",
        ];
        let (so, se) = frugal(&sampled);
        assert!(so.starts_with("def main():"), "{so}");
        assert!(
            se.contains("peak RSS") && se.contains("peak anonymous") && se.contains("peak file"),
            "{se}"
        );
        let (so2, _) = frugal(&sampled);
        assert_eq!(so, so2, "same seed, same text");
        frugal(&["run", "-m", d, "-p", "hello", "-n", "4", "--chat"]);

        let (so, _) = frugal(&[
            "bench",
            "-m",
            d,
            "--prompt-tokens",
            "8",
            "--gen-tokens",
            "4",
            "--runs",
            "2",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&so).unwrap();
        for k in [
            "load_s",
            "ttft_s",
            "prefill_tok_s",
            "decode_tok_s",
            "weights_bytes",
            "peak_rss_bytes",
            "peak_anon_bytes",
            "peak_file_bytes",
        ] {
            assert!(
                v[k].as_f64().is_some_and(|x| x >= 0.0),
                "bench --json lacks {k}: {so}"
            );
        }
        assert!(v["peak_rss_bytes"].as_u64().unwrap() > v["peak_anon_bytes"].as_u64().unwrap());

        let (so, _) = frugal(&["logits", "-m", d, "--tokens", "2,100,200", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&so).unwrap();
        let rows = v["logits"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].as_array().unwrap().len(), 2048);
        assert!(rows
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .all(|x| x.as_f64().unwrap().is_finite()));

        let (so, _) = frugal(&["inspect", d, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&so).unwrap();
        assert!(
            v["plan"]["peak_rss_bytes"].as_u64().unwrap() > v["weights_bytes"].as_u64().unwrap()
        );
    }
}

#[test]
fn tokenize_json() {
    let (so, _) = frugal(&[
        "tokenize",
        "-m",
        "tests/fixtures/models/gemma2-gqa-bf16",
        "--text",
        "Hello, world!",
        "--bos",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&so).unwrap();
    let ids: Vec<u64> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![2, 1858, 330, 342, 1816, 1184, 1224, 1876]);
    assert_eq!(v["pieces"][0], "<bos>");
}

#[test]
fn logits_json_equals_reference() {
    let dir = crate::common::fixture("gemma3-bf16");
    let r = crate::common::reference(&dir);
    let toks: Vec<String> = r.tokens.iter().map(|x| x.to_string()).collect();
    let (so, _) = frugal(&[
        "logits",
        "-m",
        dir.to_str().unwrap(),
        "--tokens",
        &toks.join(","),
        "--json",
    ]);
    let ours = crate::common::json_logits(&so);
    assert_eq!(ours.len(), r.logits.len());
    let e = crate::common::rel_err(&ours, &r.logits);
    assert!(e <= 1e-4, "{e}");
}

#[test]
fn synth_ckpt_runs_with_inferred_variant() {
    let tmp = tempfile::tempdir().unwrap();
    for (shape, dtype) in [
        ("tiny-gemma", "bf16"),
        ("tiny-gemma3", "bf16"),
        ("tiny-gemma2", "int8"),
    ] {
        let dir = tmp.path().join(format!("{shape}-{dtype}"));
        let d = dir.to_str().unwrap();
        frugal(&[
            "synth", "--shape", shape, "--out", d, "--format", "ckpt", "--dtype", dtype,
        ]);
        let ckpt = dir.join("model.ckpt");
        let (so, se) = frugal(&[
            "run",
            "-m",
            ckpt.to_str().unwrap(),
            "-p",
            "import os",
            "-n",
            "4",
        ]);
        assert!(so.starts_with("import os"), "{so}");
        assert!(se.contains(&format!("inferred variant {shape}")), "{se}");
    }
}

/// `frugal demo` runs the tiny model embedded in the binary from an empty cache, prints its
/// continuation of the prompt and the memory report; a second run reuses the written folder.
#[test]
fn demo_runs_the_embedded_tiny_model() {
    let cache = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
            .args(["demo", "-n", "16", "--threads", "2"])
            .env("FRUGAL_CACHE", cache.path())
            .output()
            .unwrap();
        let so = String::from_utf8_lossy(&out.stdout);
        let se = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{se}");
        assert!(so.starts_with("def main("), "{so}");
        assert!(so.contains("16 new tokens"), "{so}");
        assert!(so.contains("peak RSS"), "{so}");
    }
    let dirs: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(dirs.len(), 1);
}
