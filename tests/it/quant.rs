//! The block formats against their references (fixtures written by
//! scripts/make_quant_fixtures.py): Q8_0 and Q4_0 quantization byte for byte against gguf-py,
//! Q4_K and Q6_K quantization against llama.cpp's reference quantizers, dequantization of all
//! four against gguf-py value for value; and every type frugal quantizes to (Q8_0, Q4_0, Q5_0,
//! Q5_1, Q4_K, Q5_K, Q6_K) byte for byte against the blocks llama.cpp's `ggml_quantize_chunk`
//! writes without an importance matrix, as `llama-quantize` calls it (tests/fixtures/quant/ggml,
//! scripts/make_mix_fixtures.py).

use frugal::kernels::DType;
use frugal::quant;
use half::{bf16, f16};
use std::path::PathBuf;

const COLS: usize = 256;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant")
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn floats(name: &str) -> Vec<f32> {
    bytes(name)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn rows() -> Vec<f32> {
    floats("rows.f32")
}

const TYPES: [(&str, DType); 4] = [
    ("q8_0", DType::Q8_0),
    ("q4_0", DType::Q4_0),
    ("q4_k", DType::Q4_K),
    ("q6_k", DType::Q6_K),
];

/// Equal as values, NaN equal to NaN (a scale that overflowed f16 times a zero level), signed
/// zeros told apart.
fn assert_same_values(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits();
        assert!(same, "{what}: value {i}: got {g:e} want {w:e}");
    }
}

fn assert_same_bytes(got: &[u8], want: &[u8], block: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let b = i / block;
        panic!(
            "{what}: first difference at byte {i} (block {b}, byte {} of it)\n got {:02x?}\nwant {:02x?}",
            i % block,
            &got[b * block..(b + 1) * block],
            &want[b * block..(b + 1) * block]
        );
    }
}

#[test]
fn quantize_equals_reference() {
    let x = rows();
    for (name, dt) in TYPES {
        let want = bytes(&format!("{name}.bin"));
        let mut got = vec![0u8; want.len()];
        quant::quantize_row(&x, dt, &mut got);
        let who = if dt.block_len() == 32 {
            "gguf-py"
        } else {
            "llama.cpp ref"
        };
        assert_same_bytes(&got, &want, dt.block_bytes(), &format!("{name} vs {who}"));
    }
}

/// The types frugal quantizes to, with their fixture names in tests/fixtures/quant/ggml/.
const GGML_TYPES: [(&str, DType); 7] = [
    ("q8_0", DType::Q8_0),
    ("q4_0", DType::Q4_0),
    ("q5_0", DType::Q5_0),
    ("q5_1", DType::Q5_1),
    ("q4_k", DType::Q4_K),
    ("q5_k", DType::Q5_K),
    ("q6_k", DType::Q6_K),
];

/// Byte for byte what llama-quantize writes (without an importance matrix) for the same rows:
/// `quantize_row`, and `quantize_rows` from f32, bf16 and f16 bytes where those hold the rows
/// exactly.
#[test]
fn quantize_equals_ggml_quantize_chunk() {
    let mut x = rows();
    x.extend(floats("ggml/rows.f32"));
    let nrows = x.len() / COLS;
    let exact16 = x
        .chunks(COLS)
        .filter(|r| {
            r.iter()
                .all(|&v| bf16::from_f32(v).to_f32().to_bits() == v.to_bits())
        })
        .count();
    assert!(exact16 >= 3, "bf16 rows: {exact16}");
    for (name, dt) in GGML_TYPES {
        assert!(quant::quantizes(dt), "{name}");
        let want = bytes(&format!("ggml/{name}.bin"));
        assert_eq!(want.len(), nrows * dt.row_bytes(COLS).unwrap(), "{name}");
        let mut got = vec![0u8; want.len()];
        quant::quantize_row(&x, dt, &mut got);
        assert_same_bytes(&got, &want, dt.block_bytes(), &format!("{name} vs ggml"));
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        got.fill(0);
        quant::quantize_rows_par(&src, DType::F32, COLS, dt, &mut got).unwrap();
        assert_same_bytes(
            &got,
            &want,
            dt.block_bytes(),
            &format!("{name} rows vs ggml"),
        );
        let out_row = dt.row_bytes(COLS).unwrap();
        for (r, xr) in x.chunks(COLS).enumerate() {
            let wr = &want[r * out_row..(r + 1) * out_row];
            if xr
                .iter()
                .all(|&v| bf16::from_f32(v).to_f32().to_bits() == v.to_bits())
            {
                let src: Vec<u8> = xr
                    .iter()
                    .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                    .collect();
                let mut g = vec![0u8; out_row];
                quant::quantize_rows(&src, DType::BF16, COLS, dt, &mut g).unwrap();
                assert_same_bytes(&g, wr, dt.block_bytes(), &format!("{name} row {r} bf16"));
            }
        }
    }
}

#[test]
fn quantize_rows_from_float_bytes() {
    let x = rows();
    let nrows = x.len() / COLS;
    for (name, dt) in TYPES {
        let want = bytes(&format!("{name}.bin"));
        // f32 source: every row.
        let src: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut got = vec![0u8; want.len()];
        assert_eq!(
            quant::quantize_rows(&src, DType::F32, COLS, dt, &mut got),
            Ok(nrows)
        );
        assert_same_bytes(&got, &want, dt.block_bytes(), &format!("{name} from f32"));
        // bf16 and f16 sources: the rows whose values those types hold exactly.
        let out_row = dt.row_bytes(COLS).unwrap();
        for r in 0..nrows {
            let xr = &x[r * COLS..(r + 1) * COLS];
            let wr = &want[r * out_row..(r + 1) * out_row];
            for (src_dt, conv) in [
                (
                    DType::BF16,
                    (|v: f32| {
                        let b = bf16::from_f32(v);
                        (b.to_f32(), b.to_le_bytes())
                    }) as fn(f32) -> (f32, [u8; 2]),
                ),
                (DType::F16, |v: f32| {
                    let h = f16::from_f32(v);
                    (h.to_f32(), h.to_le_bytes())
                }),
            ] {
                if xr.iter().all(|&v| conv(v).0.to_bits() == v.to_bits()) {
                    let src: Vec<u8> = xr.iter().flat_map(|&v| conv(v).1).collect();
                    let mut got = vec![0u8; out_row];
                    quant::quantize_rows(&src, src_dt, COLS, dt, &mut got).unwrap();
                    assert_same_bytes(
                        &got,
                        wr,
                        dt.block_bytes(),
                        &format!("{name} row {r} from {}", src_dt.name()),
                    );
                }
            }
        }
    }
}

#[test]
fn some_rows_are_bf16_and_f16() {
    // The test above must exercise both 16-bit sources.
    let x = rows();
    let exact = |f: fn(f32) -> f32| {
        x.chunks(COLS)
            .filter(|r| r.iter().all(|&v| f(v).to_bits() == v.to_bits()))
            .count()
    };
    assert!(exact(|v| bf16::from_f32(v).to_f32()) >= 2);
    assert!(exact(|v| f16::from_f32(v).to_f32()) >= 2);
}

#[test]
fn dequantize_equals_gguf_py() {
    for (name, dt) in TYPES {
        for prefix in ["", "random."] {
            let q = bytes(&format!("{prefix}{name}.bin"));
            let want = floats(&format!("{prefix}{name}.dequant.f32"));
            let mut got = vec![0f32; want.len()];
            quant::dequantize_row(&q, dt, &mut got);
            assert_same_values(&got, &want, &format!("{prefix}{name} dequantize"));
        }
    }
}

#[test]
fn special_blocks_behave() {
    // Zero block: every level at its zero (Q4_0: 8); Q8_0's scale is +0, Q4_0's is
    // 0 / -8 = -0 (as gguf-py writes it).
    let mut out = [0u8; 34];
    quant::q8_0::quantize_row(&[0.0; 32], &mut out);
    assert_eq!(out, [0u8; 34]);
    let mut out = [0u8; 18];
    quant::q4_0::quantize_row(&[0.0; 32], &mut out);
    assert_eq!(&out[..2], &[0, 0x80]);
    assert!(out[2..].iter().all(|&b| b == 0x88));
    // Round trips stay within half a step.
    let x: Vec<f32> = (0..512)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    for (_, dt) in GGML_TYPES {
        let mut q = vec![0u8; dt.row_bytes(x.len()).unwrap()];
        quant::quantize_row(&x, dt, &mut q);
        let mut y = vec![0f32; x.len()];
        quant::dequantize_row(&q, dt, &mut y);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let step = match dt {
            DType::Q8_0 => amax / 127.0,
            DType::Q6_K => amax / 31.0,
            DType::Q5_0 | DType::Q5_1 | DType::Q5_K => amax / 15.0,
            _ => amax / 7.0,
        };
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= step, "{}: {a} -> {b}", dt.name());
        }
    }
}
