//! Dequantization of every GGUF block type against references no one here wrote: the
//! fixtures in tests/fixtures/quant/dequant/ (scripts/make_dequant_fixtures.py: blocks written
//! by llama.cpp or gguf-py, values from gguf-py's `dequantize` checked bit for bit against
//! llama.cpp's `dequantize_row_*`, or from the C function alone where gguf-py lacks the type)
//! and tests/fixtures/quant/ for Q8_0, Q4_0, Q4_K and Q6_K (scripts/make_quant_fixtures.py).
//! Every value must have the reference's bits. Then ragged inputs: any whole number of blocks
//! dequantizes as its blocks one by one, anything else panics.

use frugal_quant::{dequantize_row, dequantizes, fp4, tables, to_f32, DType};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The types with fixtures in tests/fixtures/quant/dequant/.
const NEW: [DType; 21] = [
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q5_K,
    DType::IQ2_XXS,
    DType::IQ2_XS,
    DType::IQ2_S,
    DType::IQ3_XXS,
    DType::IQ3_S,
    DType::IQ1_S,
    DType::IQ1_M,
    DType::IQ4_NL,
    DType::IQ4_XS,
    DType::TQ1_0,
    DType::TQ2_0,
    DType::MXFP4,
    DType::NVFP4,
    DType::Q1_0,
    DType::Q2_0,
];

/// The types quantized here too, whose fixtures are in tests/fixtures/quant/.
const OLD: [DType; 4] = [DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/quant")
}

fn bytes(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn floats(path: PathBuf) -> Vec<f32> {
    bytes(path)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The same bits, value for value (a NaN equal to any NaN: its payload is the CPU's).
fn assert_same_bits(got: &[f32], want: &[f32], dt: DType, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(
            same,
            "{what}: value {i} (block {}, element {}): got {g:e} ({:#010x}) want {w:e} ({:#010x})",
            i / dt.block_len(),
            i % dt.block_len(),
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// Dequantizes `<dir>/<prefix><name>.bin` and compares with `<prefix><name>.dequant.f32`; returns
/// the number of values.
fn check_fixture(dir: &Path, prefix: &str, dt: DType) -> usize {
    let name = format!("{prefix}{}", dt.name());
    let src = bytes(dir.join(format!("{name}.bin")));
    let want = floats(dir.join(format!("{name}.dequant.f32")));
    assert!(!want.is_empty(), "{name}: empty fixture");
    assert_eq!(
        src.len(),
        dt.row_bytes(want.len()).unwrap(),
        "{name}: sizes"
    );
    let mut got = vec![f32::NAN; want.len()];
    dequantize_row(&src, dt, &mut got);
    assert_same_bits(&got, &want, dt, &name);
    let mut again = vec![0f32; want.len()];
    to_f32(&src, dt, &mut again);
    assert_same_bits(&again, &want, dt, &format!("{name} (to_f32)"));
    want.len()
}

#[test]
fn every_block_type_equals_llama_cpp() {
    let dir = fixtures().join("dequant");
    for dt in NEW {
        let n = check_fixture(&dir, "", dt);
        let r = check_fixture(&dir, "random.", dt);
        assert!(n >= 1024 && r >= 1024, "{}: {n} + {r} values", dt.name());
    }
}

#[test]
fn the_four_quantized_types_still_equal_gguf_py() {
    for dt in OLD {
        check_fixture(&fixtures(), "", dt);
        check_fixture(&fixtures(), "random.", dt);
    }
}

#[test]
fn the_fixtures_are_not_trivial() {
    // Blocks quantized from real-looking rows give many distinct values, some negative.
    let dir = fixtures().join("dequant");
    for dt in NEW {
        for prefix in ["", "random."] {
            let v = floats(dir.join(format!("{prefix}{}.dequant.f32", dt.name())));
            let mut bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
            bits.sort_unstable();
            bits.dedup();
            assert!(
                bits.len() >= 8,
                "{prefix}{}: {} values",
                dt.name(),
                bits.len()
            );
            assert!(v.iter().any(|&x| x < 0.0), "{prefix}{}", dt.name());
            // Random MXFP4 exponents reach 2^127: 12 * 2^127 is infinite, in ggml too.
            if prefix.is_empty() {
                assert!(v.iter().all(|x| x.is_finite()), "{}", dt.name());
            }
        }
    }
}

#[test]
fn dequantizes_every_block_type_and_nothing_else() {
    for dt in DType::ALL {
        assert_eq!(dequantizes(dt), dt.is_quantized(), "{}", dt.name());
    }
    for dt in NEW.into_iter().chain(OLD) {
        assert!(dequantizes(dt), "{}", dt.name());
    }
    assert_eq!(
        NEW.len() + OLD.len(),
        DType::ALL.iter().filter(|d| d.is_quantized()).count()
    );
    assert!(!dequantizes(DType::Q4_0X4) && !dequantizes(DType::Q8_0X4));
}

/// xorshift64: random block bytes (any bytes: NaN and infinite scales included, compared by
/// bits against the same code).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect()
}

fn panics(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

#[test]
fn any_whole_number_of_blocks_dequantizes_block_by_block() {
    for (k, dt) in NEW.into_iter().chain(OLD).enumerate() {
        let (bl, bb) = (dt.block_len(), dt.block_bytes());
        let src = random_bytes(5 * bb, 0x9E37_79B9_7F4A_7C15 ^ k as u64);
        for n in 0..=5 {
            let mut whole = vec![0f32; n * bl];
            dequantize_row(&src[..n * bb], dt, &mut whole);
            for b in 0..n {
                let mut one = vec![0f32; bl];
                dequantize_row(&src[b * bb..(b + 1) * bb], dt, &mut one);
                let same = whole[b * bl..(b + 1) * bl]
                    .iter()
                    .zip(&one)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{}: block {b} of {n}", dt.name());
            }
        }
    }
}

#[test]
fn ragged_inputs_panic() {
    for dt in NEW.into_iter().chain(OLD) {
        let (bl, bb) = (dt.block_len(), dt.block_bytes());
        let src = random_bytes(3 * bb, 7);
        for n in 0..3 {
            for extra in [1, bb - 1] {
                let s = &src[..n * bb + extra];
                // A partial block, whatever the output length.
                for len in [n * bl, (n + 1) * bl] {
                    assert!(
                        panics(|| dequantize_row(s, dt, &mut vec![0f32; len])),
                        "{}: {} bytes into {len} values",
                        dt.name(),
                        s.len()
                    );
                }
            }
            // Whole blocks but an output of another length.
            for len in [n * bl + 1, (n + 1) * bl, (n * bl).saturating_sub(1)] {
                if len == n * bl {
                    continue;
                }
                assert!(
                    panics(|| dequantize_row(&src[..n * bb], dt, &mut vec![0f32; len])),
                    "{}: {n} blocks into {len} values",
                    dt.name()
                );
            }
        }
    }
    assert!(panics(|| dequantize_row(
        &[0; 34],
        DType::Q8_0X4,
        &mut [0f32; 32]
    )));
    assert!(panics(|| dequantize_row(
        &[0; 4],
        DType::F32,
        &mut [0f32; 1]
    )));
}

#[test]
fn scale_conversions_follow_ggml() {
    // E8M0, halved: 2^(e - 128); e = 0 and 1 are subnormal, 255 is 2^127 (ggml has no NaN).
    assert_eq!(fp4::e8m0_to_f32_half(0), 2f32.powi(-128));
    assert_eq!(fp4::e8m0_to_f32_half(1), 2f32.powi(-127));
    assert_eq!(fp4::e8m0_to_f32_half(127), 0.5);
    assert_eq!(fp4::e8m0_to_f32_half(128), 1.0);
    assert_eq!(fp4::e8m0_to_f32_half(255), 2f32.powi(127));
    // UE4M3, halved: 0x00 and 0x7F are 0, the top bit is ignored, exponent 0 is subnormal.
    assert_eq!(fp4::ue4m3_to_f32_half(0x00), 0.0);
    assert_eq!(fp4::ue4m3_to_f32_half(0x7F), 0.0);
    assert_eq!(fp4::ue4m3_to_f32_half(0x01), 2f32.powi(-10));
    assert_eq!(fp4::ue4m3_to_f32_half(0x38), 0.5);
    assert_eq!(fp4::ue4m3_to_f32_half(0x7E), 224.0);
    assert_eq!(fp4::ue4m3_to_f32_half(0xB8), 0.5);
    assert_eq!(fp4::ue4m3_to_f32_half(0xFF), 240.0);
    assert_eq!(fp4::ue4m3_to_f32_half(0x80), 0.0);
}

#[test]
fn generated_tables_have_their_shapes() {
    // Each sign byte has an even number of minus signs; the low 7 bits are the index.
    for (i, &s) in tables::KSIGNS_IQ2XS.iter().enumerate() {
        assert_eq!(s.count_ones() % 2, 0);
        assert_eq!((s & 127) as usize, i);
    }
    assert!(tables::KMASK_IQ2XS
        .iter()
        .enumerate()
        .all(|(j, &m)| m == 1 << j));
    let bytes_in = |g: &[u64], set: &[u8]| {
        g.iter()
            .all(|v| v.to_le_bytes().iter().all(|b| set.contains(b)))
    };
    assert!(bytes_in(&tables::IQ2XXS_GRID, &[8, 25, 43]));
    assert!(bytes_in(&tables::IQ2XS_GRID, &[8, 25, 43]));
    assert!(bytes_in(&tables::IQ2S_GRID, &[8, 25, 43]));
    assert!(bytes_in(&tables::IQ1S_GRID, &[0xff, 0, 1]));
    let iq3 = |g: &[u32], set: &[u8]| {
        g.iter()
            .all(|v| v.to_le_bytes().iter().all(|b| set.contains(b)))
    };
    assert!(iq3(&tables::IQ3XXS_GRID, &[4, 12, 20, 28, 36, 44, 52, 62]));
    assert!(iq3(&tables::IQ3S_GRID, &[1, 3, 5, 7, 9, 11, 13, 15]));
    assert_eq!(tables::KVALUES_IQ4NL[0], -127);
    assert_eq!(tables::KVALUES_FP4[15], -12);
    assert_eq!(tables::IQ1S_DELTA, 0.125);
}
