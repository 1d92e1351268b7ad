//! `--max-memory`: impossible budgets refused before loading, streaming within the budget with
//! logits identical to the unbounded run (in place and from a quantized cache file).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn frugal(args: &[&str], cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .env("FRUGAL_CACHE", cache)
        .output()
        .unwrap()
}

/// `(logits, peak RSS bytes)` of `frugal logits --json` with `extra` arguments.
fn logits(model: &str, extra: &[&str], cache: &Path) -> (Vec<Vec<f32>>, u64) {
    let mut args = vec![
        "logits",
        "-m",
        model,
        "--tokens",
        "2,100,200,300,7",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = frugal(&args, cache);
    assert!(
        out.status.success(),
        "frugal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = serde_json::from_value(v["logits"].clone()).unwrap();
    (l, v["memory"]["peak_rss_bytes"].as_u64().unwrap())
}

#[test]
fn impossible_budget_is_refused_before_loading() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/models/gemma2-gqa-bf16"
    );
    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = frugal(
        &["run", "-m", fixture, "-p", "hi", "--max-memory", "1MiB"],
        tmp.path(),
    );
    assert!(t.elapsed().as_secs_f64() < 1.0);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the least that works is"), "{err}");
    assert!(err.contains("--quant q4") && err.contains("--ctx"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Decided from the headers: nothing was quantized or cached.
    assert!(!tmp.path().join("quant").exists());

    let out = frugal(
        &["run", "-m", fixture, "-p", "hi", "--max-memory", "lots"],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("4GiB"));
}

/// A 232 MiB model run within budgets well below it: every layer streamed, or some pinned;
/// from the file in place and from quantized cache files. Peak RSS stays within the budget
/// and the logits are bit for bit those of the unbounded run.
#[test]
fn streaming_keeps_the_budget_and_the_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("small");
    let d = dir.to_str().unwrap();
    let cache = tmp.path().join("cache");
    let out = frugal(&["synth", "--shape", "small-gemma", "--out", d], &cache);
    assert!(out.status.success());
    for (quant, budgets) in [
        (None, &["100MiB", "160MiB"][..]),
        (Some("q8"), &["90MiB"][..]),
        (Some("q4"), &["72MiB"][..]),
    ] {
        let q: Vec<&str> = quant.map(|q| vec!["--quant", q]).unwrap_or_default();
        let (want, full_peak) = logits(d, &q, &cache);
        for b in budgets {
            let budget = frugal::memory::parse_size(b).unwrap();
            assert!(budget < full_peak, "{b} must be below the unbounded peak");
            let mut extra = q.clone();
            extra.extend_from_slice(&["--max-memory", b]);
            let (got, peak) = logits(d, &extra, &cache);
            assert!(
                got == want,
                "{quant:?} {b}: logits differ from the unbounded run"
            );
            assert!(
                peak <= budget,
                "{quant:?} {b}: peak RSS {peak} over the budget"
            );
        }
    }
    // The quantized copies were cached for streaming.
    assert_eq!(std::fs::read_dir(cache.join("quant")).unwrap().count(), 2);
}
