//! `frugal convert` from a GGUF file: to a Hugging Face folder (the model back, its blocks as
//! exact f32, its vocabulary as tokenizer.model) and to GGUF again (metadata and blocks kept;
//! `--quant` to other blocks). The GGUF inputs are the ones frugal writes from the fixture
//! models, which `scripts/check_gguf_export.py` checks against gguf-py and llama.cpp.

use crate::common::fixture_with_spm;
use std::path::Path;
use std::process::Command;

fn frugal(args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "frugal {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn p(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn logits(model: &Path, extra: &[&str]) -> Vec<Vec<f32>> {
    let mut args = vec![
        "logits",
        "-m",
        p(model),
        "--tokens",
        "2,17,99,5,300,42",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = frugal(&args);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    serde_json::from_value(v["logits"].clone()).unwrap()
}

fn ids(model: &Path, text: &str) -> serde_json::Value {
    let o = frugal(&["tokenize", "-m", p(model), "--text", text, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["ids"].clone()
}

const TEXT: &str = "Hello  world, \u{4f60}\u{597d} \u{1f600}\n<start_of_turn>user\ttab";

#[test]
fn gguf_to_folder_gives_the_model_back() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["gemma1-mqa-bf16", "gemma2-f32-newkeys", "gemma3-bf16"] {
        let src = fixture_with_spm(tmp.path(), name);
        let g = tmp.path().join(format!("{name}.gguf"));
        let back = tmp.path().join(format!("{name}-back"));
        frugal(&["convert", p(&src), p(&g)]);
        frugal(&["convert", p(&g), p(&back)]);
        // Float matrices copied, `1 + w` norms back to `w`: the same logits, to the bit.
        assert_eq!(
            logits(&back, &["--exact"]),
            logits(&src, &["--exact"]),
            "{name}"
        );
        // The vocabulary the file carries, written as tokenizer.model, tokenizes as the file.
        assert!(back.join("tokenizer.model").is_file());
        assert_eq!(ids(&back, TEXT), ids(&g, TEXT), "{name}");
    }
}

#[test]
fn gguf_blocks_become_exact_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_with_spm(tmp.path(), "gemma1-mqa-bf16");
    let g = tmp.path().join("q8.gguf");
    let back = tmp.path().join("back");
    frugal(&["convert", p(&src), p(&g), "--quant", "q8"]);
    frugal(&["convert", p(&g), p(&back)]);
    // Every matrix of the folder is f32 and holds the GGUF blocks' values: the folder's exact
    // product and the blocks' integer kernels then differ only by the activations' rounding.
    let st = std::fs::read(back.join("model.safetensors"))
        .or_else(|_| std::fs::read(back.join("model-00001-of-00001.safetensors")))
        .unwrap();
    let t = safetensors::SafeTensors::deserialize(&st).unwrap();
    let q = t.tensor("model.layers.0.mlp.up_proj.weight").unwrap();
    assert_eq!(q.dtype(), safetensors::Dtype::F32);
    let (gg, index) = frugal::checkpoint::gguf::open(&g).unwrap();
    drop(gg);
    let info = &index.tensors["blk.0.ffn_up.weight"];
    let blocks = index.bytes(info);
    let cols = info.shape[1];
    let mut want = vec![0f32; info.shape[0] * cols];
    let row = blocks.len() / info.shape[0];
    for (r, o) in blocks.chunks(row).zip(want.chunks_mut(cols)) {
        frugal::kernels::scalar::to_f32(r, frugal::kernels::DType::Q8_0, o);
    }
    let got: Vec<f32> = q
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, want);
    let (a, b) = (logits(&back, &["--exact"]), logits(&g, &[]));
    let max = a.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff / max < 0.05, "q8 folder vs file: {diff} of {max}");
}

#[test]
fn gguf_to_gguf_keeps_the_file_or_requantizes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_with_spm(tmp.path(), "gemma3-bf16");
    let q8 = tmp.path().join("q8.gguf");
    frugal(&["convert", p(&src), p(&q8), "--quant", "q8"]);
    // Metadata copied entry by entry, blocks as they are: the same file.
    for (i, extra) in [&[][..], &["--quant", "q8"][..]].iter().enumerate() {
        let out = tmp.path().join(format!("copy{i}.gguf"));
        let mut args = vec!["convert", p(&q8), p(&out)];
        args.extend_from_slice(extra);
        frugal(&args);
        assert!(std::fs::read(&out).unwrap() == std::fs::read(&q8).unwrap());
    }
    // To Q4_0: dequantized and quantized again; the file type says so, the model still runs
    // close to the Q8_0 one, and the vocabulary is the source's.
    let q4 = tmp.path().join("q4.gguf");
    frugal(&["convert", p(&q8), p(&q4), "--quant", "q4"]);
    let (g, index) = frugal::checkpoint::gguf::open(&q4).unwrap();
    assert_eq!(g.uint("general.file_type").unwrap(), Some(2));
    assert!(index
        .tensors
        .iter()
        .filter(|(_, t)| t.shape.len() == 2)
        .all(|(_, t)| format!("{:?}", t.dtype).contains("Q4_0")));
    assert_eq!(ids(&q4, TEXT), ids(&q8, TEXT));
    // Requantizing adds little: against the float model, Q4_0 from the Q8_0 file is about
    // as far off as Q4_0 straight from the floats (this tiny random model magnifies 4-bit
    // error: both are tens of percent; rows scrambled would be far worse).
    let q4d = tmp.path().join("q4d.gguf");
    frugal(&["convert", p(&src), p(&q4d), "--quant", "q4"]);
    let f = logits(&src, &["--exact"]);
    let max = f.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let err = |l: &[Vec<f32>]| {
        l.iter()
            .flatten()
            .zip(f.iter().flatten())
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / max
    };
    let (requant, direct) = (err(&logits(&q4, &[])), err(&logits(&q4d, &[])));
    assert!(
        requant > 0.0 && requant < 1.25 * direct,
        "Q4_0 from Q8_0 {requant}, from the floats {direct}"
    );
    // Never onto its own input.
    let o = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(["convert", p(&q8), p(&q8), "--force"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}
