//! PyTorch checkpoints: a Hugging Face pytorch_model.bin written by torch.save runs like its
//! safetensors twin; hostile and broken archives are refused by name, and no code runs.

use frugal::load::Checkpoint;
use frugal::model::tensors::{key, Role};
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn pytorch_model_bin_matches_transformers() {
    let ck = Checkpoint::open(&root().join("tests/fixtures/pytorch/hf-gemma1-bf16")).unwrap();
    check_against(&ck, "gemma1-mqa-bf16");
}

/// Sharded folders: Hugging Face's (pytorch_model.bin.index.json, config.json beside it) and
/// gemma_pytorch's (its layout and plain state dicts per shard, the config given).
#[test]
fn sharded_pytorch_folders_match_transformers() {
    let ck = Checkpoint::open(&root().join("tests/fixtures/pytorch/hf-gemma1-sharded")).unwrap();
    assert_eq!(ck.index.files.len(), 2);
    check_against(&ck, "gemma1-mqa-bf16");
    let ck = Checkpoint::open_with(
        &root().join("tests/fixtures/pytorch/gemma_pytorch/gemma1-mqa-sharded"),
        &frugal::load::OpenOptions {
            config: Some(root().join("tests/fixtures/models/gemma1-mqa-bf16/config.json")),
            variant: None,
        },
    )
    .unwrap();
    assert_eq!(ck.index.files.len(), 2);
    assert!(ck.index.tensors.contains_key("embedder.weight"));
    check_against(&ck, "gemma1-mqa-bf16");
}

#[test]
fn hostile_archives_are_refused() {
    let dir = root().join("tests/fixtures/pytorch/hostile");
    let marker = std::env::temp_dir().join("frugal-pwned-marker");
    let _ = std::fs::remove_file(&marker);
    for (file, want) in [
        ("os_system.ckpt", "refusing global `posix.system`"),
        ("eval.ckpt", "refusing global `__builtin__.eval`"),
        ("nested_reduce.ckpt", "refusing global `__builtin__.exec`"),
        ("storage_too_big.ckpt", "holds 16 bytes"),
        ("missing_storage.ckpt", "is missing from the archive"),
        ("truncated.ckpt", "not a readable PyTorch zip checkpoint"),
        ("non_contiguous.ckpt", "not contiguous"),
    ] {
        let path = dir.join(file);
        let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
            .arg("inspect")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(
            err.contains(file) && err.contains(want),
            "{file}: expected `{want}` in: {err}"
        );
        assert!(!err.contains("panicked"), "{file}: {err}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("pwned"), "{file}: code ran");
    }
}

/// Logits of `ck`'s model on a fixture's tokens against that fixture's transformers logits.
fn check_against(ck: &Checkpoint, fixture: &str) {
    let model = ck.model().unwrap();
    let r = crate::common::reference(&crate::common::fixture(fixture));
    let mut cache = model.new_cache(r.tokens.len());
    let ours = model.forward(&r.tokens, &mut cache, true).unwrap();
    let e = crate::common::rel_err(&ours, &r.logits);
    assert!(e <= 1e-4, "{fixture}: relative error {e}");
}

#[test]
fn gemma_pytorch_layout_matches_transformers() {
    use frugal::load::OpenOptions;
    for name in ["gemma2-gqa-bf16", "gemma3-bf16"] {
        let ckpt = root().join(format!("tests/fixtures/pytorch/gemma_pytorch/{name}.ckpt"));
        let config = Some(root().join(format!("tests/fixtures/models/{name}/config.json")));
        let ck = Checkpoint::open_with(
            &ckpt,
            &OpenOptions {
                config,
                variant: None,
            },
        )
        .unwrap();
        // The fused qkv matrix is split by row ranges, not copied.
        let w = ck.model().unwrap();
        let layer0 = |k| w.matrix(Role::Layer(0), k).unwrap();
        let (q, k) = (layer0(key::ATTN_Q), layer0(key::ATTN_K));
        assert_eq!(q.data.as_ptr_range().end, k.data.as_ptr());
        check_against(&ck, name);
    }
}

/// gemma_pytorch's int8 layout: matrices stay int8 in the map (scaled per row after each dot)
/// and give transformers' logits and greedy tokens on the dequantised weights.
#[test]
fn gemma_pytorch_int8_matches_dequantised_reference() {
    use frugal::kernels::DType;
    let dir = root().join("tests/fixtures/pytorch/gemma_pytorch/gemma1-mqa-int8");
    let ck = Checkpoint::open(&dir).unwrap();
    let model = ck.model().unwrap();
    let l0 = |k| model.matrix(Role::Layer(0), k).unwrap();
    for m in [
        l0(key::ATTN_Q),
        l0(key::ATTN_K),
        l0(key::ATTN_V),
        l0(key::ATTN_OUT),
        l0(key::FFN_GATE),
        l0(key::FFN_UP),
        l0(key::FFN_DOWN),
        &model.embed,
    ] {
        assert_eq!(m.dtype, DType::I8);
        assert!(m.scale.is_some());
    }
    // Weights in the map: one byte per element plus the scales, nothing expanded.
    let int8_bytes: usize = ck
        .index
        .tensors
        .values()
        .filter(|t| t.dtype == frugal::checkpoint::StoredDType::Known(DType::I8))
        .map(|t| t.len)
        .sum();
    assert!(model.matrix_bytes() as usize > int8_bytes);
    assert!((model.matrix_bytes() as usize) < int8_bytes * 11 / 10);
    let r = crate::common::reference(&dir);
    let mut cache = model.new_cache(r.tokens.len());
    let ours = model.forward(&r.tokens, &mut cache, true).unwrap();
    let e = crate::common::rel_err(&ours, &r.logits);
    assert!(e <= 1e-4, "int8: relative error {e}");
    let greedy = frugal::generate::greedy_continuation(&model, &r.prompt, r.greedy.len()).unwrap();
    assert_eq!(greedy, r.greedy);

    // The fast path (what the CLI runs unless --exact) multiplies the int8 matrices by integer
    // dot products, activations quantized per block of 32 to int8 as for Q8_0 (the kernels are
    // checked against that specification exactly in the unit tests). On this random fixture,
    // whose logits are small differences of large random products, that rounding moves the
    // logits by 3.4 % of their range (weights-only Q8_0 moves the random fixtures by 3-7 %);
    // a wrong block or a lost scale would move them by far more.
    let mut fast = ck.model().unwrap();
    fast.fast_bf16 = true;
    let mut cache = fast.new_cache(r.tokens.len());
    let got = fast.forward(&r.tokens, &mut cache, true).unwrap();
    let e_fast = crate::common::rel_err(&got, &r.logits);
    assert!(
        e_fast <= 5e-2,
        "int8, integer kernels: relative error {e_fast}"
    );
    assert!(
        e_fast > e,
        "the fast path should differ from the exact one: {e_fast} vs {e}"
    );
    let mut cache = fast.new_cache(r.tokens.len());
    let mut step = Vec::new();
    for &t in &r.tokens {
        step = fast.forward(&[t], &mut cache, false).unwrap();
    }
    let last = &got[got.len() - step.len()..];
    let e_step = crate::common::rel_err(&step, last);
    eprintln!("int8 integer kernels: {e_fast} against the reference, token by token {e_step} against batched");
    assert!(
        e_step <= 1e-2,
        "int8, integer kernels token by token: {e_step}"
    );
}

/// An int8 matrix whose scales are missing or of the wrong shape is refused by name.
#[test]
fn gemma_pytorch_int8_without_scales_is_refused() {
    use frugal::checkpoint::pytorch::{write_archive, ArchiveTensor};
    let src = root().join("tests/fixtures/pytorch/gemma_pytorch/gemma1-mqa-int8");
    let ck = Checkpoint::open(&src).unwrap();
    let victim = "model.layers.1.mlp.up_proj.weight_scaler";
    for (case, want) in [
        (
            "missing",
            "per-row scales `model.layers.1.mlp.up_proj.weight_scaler` are missing",
        ),
        ("short", "needs one float scale per row"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("model.ckpt");
        let names: Vec<&String> = ck
            .index
            .tensors
            .keys()
            .filter(|n| !(case == "missing" && n.as_str() == victim))
            .collect();
        let tensors: Vec<ArchiveTensor> = names
            .iter()
            .map(|n| {
                let t = &ck.index.tensors[*n];
                let mut shape = t.shape.clone();
                if case == "short" && n.as_str() == victim {
                    shape[0] -= 1;
                }
                let (storage, size) = match t.dtype.to_string().as_str() {
                    "int8" => ("CharStorage", 1),
                    "bf16" => ("BFloat16Storage", 2),
                    _ => ("ComplexFloatStorage", 8),
                };
                ArchiveTensor {
                    name: n.to_string(),
                    storage,
                    elem_size: size,
                    shape,
                }
            })
            .collect();
        write_archive(&file, &tensors, |i, w| {
            let t = &ck.index.tensors[names[i]];
            let n = tensors[i].shape.iter().product::<usize>() * tensors[i].elem_size;
            w.write_all(&ck.index.bytes(t)[..n])?;
            Ok(())
        })
        .unwrap();
        std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
            .args(["logits", "-m"])
            .arg(&file)
            .args(["--tokens", "2,5"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {err}");
        assert!(
            err.contains("model.ckpt") && err.contains(want),
            "{case}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn gemma_pytorch_variant_inference() {
    // No config.json beside it: the shape is matched against the known variants.
    let ck =
        Checkpoint::open(&root().join("tests/fixtures/pytorch/gemma_pytorch/gemma2-gqa-bf16.ckpt"))
            .unwrap();
    assert_eq!(ck.cfg.num_layers, 4);
    assert_eq!(ck.cfg.model_type, "gemma2");
    let out = Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(["inspect", "tests/fixtures/pytorch/odd-shape.ckpt"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("no known Gemma variant")
            && err.contains("nearest: ")
            && err.contains("--variant"),
        "{err}"
    );
}

#[test]
fn convert_gemma_pytorch_to_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("hf");
    let input = root().join("tests/fixtures/pytorch/gemma_pytorch/gemma2-gqa-bf16.ckpt");
    let before = std::fs::read(&input).unwrap();
    let config = root().join("tests/fixtures/models/gemma2-gqa-bf16/config.json");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_frugal"))
            .arg("convert")
            .arg(&input)
            .arg(&out)
            .arg("--config")
            .arg(&config)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The output is a plain Hugging Face folder that gives the reference logits.
    check_against(&Checkpoint::open(&out).unwrap(), "gemma2-gqa-bf16");
    // No overwrite without --force; the input is untouched; no partial folder is left.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
    assert_eq!(std::fs::read(&input).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}
