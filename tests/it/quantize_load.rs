//! Quantize-on-load: the loader's quantized matrices are exactly what the block quantizers make
//! of the stored rows, for every matrix the model binds, in the layout the kernels read.

use frugal::kernels::DType;
use frugal::load::quantize::QuantKind;
use frugal::load::Checkpoint;

#[test]
fn loader_output_equals_the_quantizer_on_every_matrix() {
    for (name, kind) in [
        ("gemma1-mqa-bf16", QuantKind::Q8),
        ("gemma2-gqa-bf16", QuantKind::Q4),
        ("gemma3-f32-newkeys", QuantKind::Q4k),
        // Rows of 64: Q5_0, Q5_1 and Q8_0 by the fallbacks, Q6_K nowhere.
        ("gemma1-mha-f32", QuantKind::Q4km),
        ("gemma3-bf16", QuantKind::Q5km),
        ("gemma2-f32-newkeys", QuantKind::Q6k),
    ] {
        let mut ck = Checkpoint::open(&crate::common::fixture(name)).unwrap();
        let plan = ck.quant_plan(kind).unwrap();
        ck.quantize(kind).unwrap();
        let q = ck.quant.as_ref().unwrap();
        let mats = q.matrices();
        assert!(!mats.is_empty());
        assert_eq!(q.bytes(), plan.bytes_by_dtype().values().sum::<u64>());
        for (n, m) in &mats {
            let t = &ck.index.tensors[n];
            assert_eq!(Some(m.dtype), plan.dtype_of(n), "{name}: {n}");
            let src_dtype = match t.dtype {
                frugal::checkpoint::StoredDType::Known(d) => d,
                _ => unreachable!(),
            };
            let mut want = vec![0u8; m.data.len()];
            frugal::quant::quantize_rows(
                ck.index.bytes(t),
                src_dtype,
                t.shape[1],
                m.dtype,
                &mut want,
            )
            .unwrap();
            assert!(m.data == want.as_slice(), "{name}: {n} differs");
        }
        // The model binds the quantized copies.
        let model = ck.model().unwrap();
        assert!(model.embed.dtype != DType::BF16 && model.embed.dtype != DType::F32);
    }
}

fn frugal(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frugal"))
        .args(args)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "frugal {args:?} failed:\n{se}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn logits(args: &[&str]) -> Vec<f32> {
    crate::common::json_logits(&frugal(args))
}

/// Where the kernels read them, `--quant q4` and `--quant q8` lay Q4_0 and Q8_0 out as
/// Q4_0X4 and Q8_0X4 (rows interleaved in quads, blocks transposed): the same blocks, so the
/// logits are those of the plain blocks that `frugal convert --quant` writes with the same
/// quantizer into a GGUF file, read in place, to the order of the f32 additions (decode) or
/// exactly (prefill, the same tiles); and that file's blocks with the same `--quant` are
/// rearranged the same way (losslessly) with the same logits.
#[test]
fn x4_layouts_give_the_plain_blocks_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("small");
    let d = dir.to_str().unwrap();
    // hidden 1024, feed-forward 4096, vocabulary 2048: every matrix fits the layout.
    frugal(&["synth", "--shape", "small-gemma", "--out", d]);
    for (q, kind, plain, x4) in [
        ("q4", QuantKind::Q4, DType::Q4_0, DType::Q4_0X4),
        ("q8", QuantKind::Q8, DType::Q8_0, DType::Q8_0X4),
    ] {
        let gguf = tmp.path().join(format!("small-{q}.gguf"));
        let g = gguf.to_str().unwrap();
        frugal(&["convert", d, g, "--quant", q]);

        let mut ck = Checkpoint::open(&dir).unwrap();
        ck.quantize(kind).unwrap();
        let want = if frugal::kernels::reads_x4() {
            x4
        } else {
            plain
        };
        for (n, m) in ck.quant.as_ref().unwrap().matrices() {
            assert_eq!(m.dtype, want, "{n}");
        }
        drop(ck);

        // The GGUF file's blocks with the same --quant: rearranged, not requantized.
        let mut ck = Checkpoint::open(&gguf).unwrap();
        ck.quantize(kind).unwrap();
        let mats = ck.quant.as_ref().unwrap().matrices();
        assert_eq!(
            mats.is_empty(),
            want == plain,
            "relaid only into {}",
            x4.name()
        );
        for (n, m) in mats {
            assert_eq!(m.dtype, x4, "{n}");
        }
        drop(ck);

        for tokens in ["2", "2,17,99,5,1000"] {
            let b = logits(&["logits", "-m", g, "--tokens", tokens, "--json"]);
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            for a in [
                logits(&[
                    "logits", "-m", d, "--quant", q, "--tokens", tokens, "--json",
                ]),
                logits(&[
                    "logits", "-m", g, "--quant", q, "--tokens", tokens, "--json",
                ]),
            ] {
                assert_eq!(a.len(), b.len());
                let err = a
                    .iter()
                    .zip(&b)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(err <= 1e-5 * scale, "{q} tokens {tokens}: {err} of {scale}");
            }
        }
    }
}
