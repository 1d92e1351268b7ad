//! Quantize-on-load: the loader's quantized matrices are exactly what the block quantizers make
//! of the stored rows, for every matrix the model binds.

use frugal::kernels::DType;
use frugal::load::quantize::QuantKind;
use frugal::load::Checkpoint;
use std::path::Path;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

#[test]
fn loader_output_equals_the_quantizer_on_every_matrix() {
    for (name, kind) in [
        ("gemma1-mqa-bf16", QuantKind::Q8),
        ("gemma2-gqa-bf16", QuantKind::Q4),
        ("gemma3-f32-newkeys", QuantKind::Q4k),
    ] {
        let mut ck = Checkpoint::open(&fixture(name)).unwrap();
        let plan = ck.quant_plan(kind).unwrap();
        ck.quantize(kind).unwrap();
        let q = ck.quant.as_ref().unwrap();
        let mats = q.matrices();
        assert!(!mats.is_empty());
        assert_eq!(q.bytes(), plan.bytes_by_dtype().values().sum::<u64>());
        for (n, m) in &mats {
            let t = &ck.index.tensors[n];
            assert_eq!(m.dtype, kind.dtype_for(t.shape[1]), "{name}: {n}");
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
        assert!(model.w.embed.dtype != DType::BF16 && model.w.embed.dtype != DType::F32);
    }
}
