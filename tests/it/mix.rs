//! The `--quant` kinds against the files `llama-quantize` writes for the same file types
//! (tests/fixtures/mixes/llamacpp.json, made by scripts/llamacpp_mixes.py): the dtype chosen
//! for every matrix (the trained tiny model's plan from its headers, and the rules on the
//! gemma3-1b shape, whose rows of 1152 take every fallback), the bytes of every tensor of the
//! tiny model (quantized while loading and written by `frugal convert --quant`), the plan's
//! sizes, and the perplexity of q4km against llama.cpp's Q4_K_M file.

use frugal::generate::perplexity::perplexity;
use frugal::kernels::DType;
use frugal::load::mix::Matrix;
use frugal::load::quantize::QuantKind;
use frugal::load::Checkpoint;
use frugal::tokenizer::GemmaTokenizer;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tiny() -> PathBuf {
    root().join("assets/tiny")
}

fn fixture() -> Value {
    let p = root().join("tests/fixtures/mixes/llamacpp.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// The dtype llama-quantize chose for the GGUF tensor `gguf` in `types` (one kind of one
/// model: `token_embd` or `output` by name, a layer's by key and layer).
fn expected<'a>(types: &'a Value, gguf: &str) -> &'a str {
    let parts: Vec<&str> = gguf.split('.').collect();
    let v = match parts[..] {
        ["blk", l, key, ..] => &types[key][l.parse::<usize>().unwrap()],
        [name, ..] => &types[name],
        _ => unreachable!(),
    };
    v.as_str()
        .unwrap_or_else(|| panic!("no type recorded for {gguf}"))
}

/// A dtype as gguf-py names it (its plain blocks for an x4 layout).
fn ggml_name(d: DType) -> String {
    frugal::quant::x4::plain_of(d)
        .unwrap_or(d)
        .name()
        .to_uppercase()
}

/// Every kind's choice for every matrix equals llama-quantize's: on the tiny model through the
/// loader's plan (from the checkpoint's headers), on the gemma3-1b shape through the rules on
/// its tensor table.
#[test]
fn choices_equal_llama_quantize() {
    let f = fixture();
    let ck = Checkpoint::open(&tiny()).unwrap();
    let types = &f["models"]["tiny"]["types"];
    let mut checked = 0;
    for kind in QuantKind::ALL {
        let plan = ck.quant_plan(kind).unwrap();
        let t = &types[kind.name()];
        for spec in ck.binding.specs.iter().filter(|s| s.is_matrix()) {
            let stored = ck.binding.scheme.stored_name(spec);
            let got = ggml_name(plan.dtype_of(&stored).expect("every matrix quantized"));
            assert_eq!(
                got,
                expected(t, &spec.gguf),
                "tiny {}: {}",
                kind.name(),
                spec.gguf
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 29);

    let cfg = frugal::model::arch::Variant::by_name("gemma3-1b")
        .unwrap()
        .config();
    let specs: Vec<_> = frugal::model::arch::wanted(&cfg)
        .specs
        .into_iter()
        .filter(|s| s.is_matrix())
        .collect();
    let keys: Vec<[&'static str; 1]> = specs.iter().map(|s| [s.key]).collect();
    let mats: Vec<Matrix> = specs
        .iter()
        .zip(&keys)
        .map(|(s, k)| Matrix {
            keys: k,
            role: s.role,
            cols: s.shape[1],
        })
        .collect();
    let types = &f["models"]["gemma3-1b"]["types"];
    let mut seen = std::collections::BTreeSet::new();
    for kind in QuantKind::ALL {
        let t = &types[kind.name()];
        for (s, d) in specs.iter().zip(kind.choose(&mats, cfg.num_layers)) {
            let got = ggml_name(d.expect("1152 is whole blocks of 32"));
            assert_eq!(
                got,
                expected(t, &s.gguf),
                "gemma3-1b {}: {}",
                kind.name(),
                s.gguf
            );
            seen.insert(got);
        }
    }
    // The shape exercises the fallbacks.
    for d in ["Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"] {
        assert!(seen.contains(d), "{d} never chosen");
    }
}

/// The tiny model's matrices, quantized while loading and written by `frugal convert --quant`,
/// are llama-quantize's bytes (digests of its files' tensors); the file type is llama.cpp's and
/// the norms stay F32.
#[test]
fn blocks_equal_llama_quantize() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let digest = |b: &[u8]| format!("{:x}", Sha256::digest(b))[..16].to_string();
    for kind in QuantKind::ALL {
        let want = f["models"]["tiny"]["digests"][kind.name()]
            .as_object()
            .unwrap();
        assert_eq!(want.len(), 29);

        // Quantized while loading (x4 layouts taken back to their plain rows).
        let mut ck = Checkpoint::open(&tiny()).unwrap();
        ck.quantize(kind).unwrap();
        let mats = ck.quant.as_ref().unwrap().matrices();
        for spec in ck.binding.specs.iter().filter(|s| s.is_matrix()) {
            let m = &mats[&ck.binding.scheme.stored_name(spec)];
            let bytes = match frugal::quant::x4::plain_of(m.dtype) {
                None => m.data.to_vec(),
                Some(_) => {
                    let mut plain = vec![0u8; m.data.len()];
                    for (r, out) in plain.chunks_exact_mut(m.row_stride()).enumerate() {
                        frugal::quant::x4::row_plain(m.dtype, m.data, m.row_stride(), r, out);
                    }
                    plain
                }
            };
            assert_eq!(
                digest(&bytes),
                want[&spec.gguf].as_str().unwrap(),
                "{} loaded: {}",
                kind.name(),
                spec.gguf
            );
        }
        drop(ck);

        // Written to GGUF.
        let out = tmp.path().join(format!("tiny-{}.gguf", kind.name()));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_frugal"))
            .args(["convert", tiny().to_str().unwrap(), out.to_str().unwrap()])
            .args(["--quant", kind.name()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (g, index) = frugal::checkpoint::gguf::open(&out).unwrap();
        assert_eq!(
            g.uint("general.file_type").unwrap(),
            f["kinds"][kind.name()]["file_type"].as_u64(),
            "{}",
            kind.name()
        );
        // Norms (every 1-D tensor) stay F32, as llama-quantize leaves them.
        for (name, t) in &index.tensors {
            if t.shape.len() == 1 {
                assert_eq!(
                    t.dtype,
                    frugal::checkpoint::StoredDType::Known(DType::F32),
                    "{name}"
                );
            }
        }
        for (name, d) in want {
            let t = &index.tensors[name];
            assert_eq!(
                digest(index.bytes(t)),
                d.as_str().unwrap(),
                "{} written: {name}",
                kind.name()
            );
        }
    }
}

/// The plan counts each matrix at its chosen dtype's exact size: the quantized bytes are the
/// sizes of llama-quantize's tensors.
#[test]
fn plan_sizes_are_the_mix_sizes() {
    let f = fixture();
    let ck = Checkpoint::open(&tiny()).unwrap();
    for kind in QuantKind::ALL {
        let t = &f["models"]["tiny"]["types"][kind.name()];
        let want: u64 = ck
            .binding
            .specs
            .iter()
            .filter(|s| s.is_matrix())
            .map(|s| {
                let d = DType::ALL
                    .iter()
                    .copied()
                    .find(|d| d.name().to_uppercase() == expected(t, &s.gguf))
                    .unwrap();
                (s.shape[0] * d.row_bytes(s.shape[1]).unwrap()) as u64
            })
            .sum();
        let plan = ck.quant_plan(kind).unwrap();
        let got: u64 = plan.matrix_bytes().iter().map(|(_, b)| b).sum();
        assert_eq!(got, want, "{}", kind.name());
        let entries = frugal::load::plan::entries_for(&ck, Some(kind)).unwrap();
        let quantized: u64 = entries
            .iter()
            .filter(|e| e.storage == frugal::load::plan::Storage::Quantized)
            .map(|e| e.bytes)
            .sum();
        assert_eq!(quantized, want, "{} memory plan", kind.name());
    }
}

/// frugal's q4km perplexity of assets/tiny/eval.txt is at most that of llama.cpp's Q4_K_M file
/// of the same weights as frugal measured it (recorded by scripts/llamacpp_mixes.py): equal,
/// since the blocks are (the test above). On a CPU whose kernels sum in another order than the
/// recording's, 1e-5 relative is allowed for that order.
#[test]
fn q4km_perplexity_at_most_llama_cpp_q4_k_m() {
    let f = fixture();
    let want = f["models"]["tiny"]["perplexity"]["q4km"].as_f64().unwrap();
    let mut ck = Checkpoint::open(&tiny()).unwrap();
    ck.quantize(QuantKind::Q4km).unwrap();
    let tok = GemmaTokenizer::from_file(&ck.tokenizer_path().unwrap()).unwrap();
    let text = std::fs::read_to_string(tiny().join("eval.txt")).unwrap();
    let ids = tok.encode(&text).unwrap();
    let model = ck.model().unwrap();
    let r = perplexity(&model, &ids, model.cfg.bos_token_id, 256, |_, _| {}).unwrap();
    assert_eq!(r.tokens, 10909);
    let same_isa = f["isa"].as_str() == Some(frugal::kernels::isa().name());
    let slack = if same_isa { 0.0 } else { 1e-5 };
    eprintln!(
        "q4km {} vs llama.cpp Q4_K_M {want} (isa {})",
        r.perplexity,
        frugal::kernels::isa().name()
    );
    assert!(
        r.perplexity <= want * (1.0 + slack),
        "q4km perplexity {} above llama.cpp's Q4_K_M {want}",
        r.perplexity
    );
}
