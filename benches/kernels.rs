//! Kernel benchmarks on gemma-2b shapes with bf16 and block-quantized weights.
//!
//! matvec (decode, n = 1): throughput in bytes of weights read per second (GB/s), the figure
//! that bounds decode speed. The quantized groups (`matvec_q8_0`, ...) include the bf16 decode
//! kernels (exact, and the `vdpbf16ps` fast path) on the same shapes, measured in the same run,
//! as the baseline.
//! matmul (prefill, n = 64): throughput in "elements" = multiply-adds counted twice
//! (2 * rows * cols * n), so criterion's Gelem/s reads as GFLOP/s (integer operations for the
//! quantized types), comparable across dtypes.
//!
//! Run: `cargo bench --bench kernels` (filter e.g. `-- matvec_q4_0`).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use frugal::kernels::{matmul, matmul_bf16_fast, matmul_with, DType, Isa, MatRef};
use frugal::quant;
use std::time::Duration;

/// Deterministic pseudo-random bf16 weights in about [-1, 1).
fn weights(rows: usize, cols: usize) -> Vec<u8> {
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut out = Vec::with_capacity(rows * cols * 2);
    for _ in 0..rows * cols {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        out.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
    }
    out
}

fn activations(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn bench_matvec(c: &mut Criterion) {
    let mut g = c.benchmark_group("matvec_bf16");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for &(rows, cols) in &[
        (2048, 2048),
        (256, 2048),
        (16384, 2048),
        (2048, 16384),
        (256000, 2048),
    ] {
        let data = weights(rows, cols);
        let w = MatRef::new(&data, DType::BF16, rows, cols);
        let x = activations(cols);
        let mut y = vec![0f32; rows];
        g.throughput(Throughput::Bytes((rows * cols * 2) as u64));
        for level in Isa::supported() {
            // The VNNI level only changes quantized products.
            if level == Isa::Avx512Vnni || (level == Isa::Scalar && rows * cols > 4 << 20) {
                continue;
            }
            g.bench_function(
                BenchmarkId::new(level.name(), format!("{rows}x{cols}")),
                |b| b.iter(|| matmul_with(level, &w, black_box(&x), 1, &mut y)),
            );
        }
    }
    g.finish();
}

fn bench_matmul(c: &mut Criterion) {
    let n = 64;
    let mut g = c.benchmark_group("matmul_bf16_n64");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for &(rows, cols) in &[(2048, 2048), (256, 2048), (16384, 2048), (2048, 16384)] {
        let data = weights(rows, cols);
        let w = MatRef::new(&data, DType::BF16, rows, cols);
        let x = activations(n * cols);
        let mut y = vec![0f32; n * rows];
        g.throughput(Throughput::Elements((2 * rows * cols * n) as u64));
        g.bench_function(BenchmarkId::new("exact", format!("{rows}x{cols}")), |b| {
            b.iter(|| matmul(&w, black_box(&x), n, &mut y))
        });
        g.bench_function(BenchmarkId::new("fast", format!("{rows}x{cols}")), |b| {
            b.iter(|| matmul_bf16_fast(&w, black_box(&x), n, &mut y))
        });
    }
    g.finish();
}

/// Gemma-2B matrix shapes: attention (2048x2048), MLP up/gate (16384x2048), MLP down
/// (2048x16384). The 256000x2048 embedding is left out (too slow for criterion's repetitions);
/// 16384x2048 streams the same bytes per row.
const Q_SHAPES: [(usize, usize); 3] = [(2048, 2048), (16384, 2048), (2048, 16384)];

const QTYPES: [DType; 22] = [
    DType::Q8_0,
    DType::Q4_0,
    DType::Q5_0,
    DType::Q4_1,
    DType::Q5_1,
    DType::IQ4_NL,
    DType::MXFP4,
    DType::Q4_K,
    DType::Q6_K,
    DType::Q5_K,
    DType::Q3_K,
    DType::Q2_K,
    DType::IQ4_XS,
    DType::IQ2_XXS,
    DType::IQ2_XS,
    DType::IQ2_S,
    DType::IQ3_XXS,
    DType::IQ3_S,
    DType::TQ2_0,
    DType::TQ1_0,
    DType::IQ1_S,
    DType::IQ1_M,
];

/// Whether AVX2 has kernels for `dtype` (the others take the portable job there, not worth
/// measuring).
fn has_avx2(dtype: DType) -> bool {
    matches!(dtype, DType::Q8_0 | DType::Q4_0 | DType::Q4_K | DType::Q6_K)
}

/// Random blocks of `dtype`, which has no quantizer: every bit pattern is a valid block, the
/// f16 scale fields set to `[0.001, 0.02)` (as the kernels' tests make them), MXFP4's E8M0
/// exponent to 2^-7, IQ1_M's scale (top nibbles of its scale words) to 0.01. The kernels'
/// speed does not depend on the values.
fn random_blocks(rows: usize, cols: usize, dtype: DType) -> Vec<u8> {
    let f16_at = dtype
        .f16_scale_offsets()
        .unwrap_or_else(|| panic!("no random blocks for {}", dtype.name()));
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let mut out = vec![0u8; rows * dtype.row_bytes(cols).expect("whole blocks")];
    out.iter_mut().for_each(|b| *b = next() as u8);
    for b in out.chunks_exact_mut(dtype.block_bytes()) {
        for &o in f16_at {
            let v = 0.001 + 0.019 * (next() % 1000) as f32 / 1000.0;
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        if dtype == DType::MXFP4 {
            b[0] = 120;
        }
        if dtype == DType::IQ1_M {
            // The f16 scale in the top nibbles of the four scale words.
            let v = half::f16::from_f32(0.01).to_bits();
            for k in 0..4 {
                b[49 + 2 * k] = (b[49 + 2 * k] & 15) | (((v >> (4 * k)) & 15) as u8) << 4;
            }
        }
    }
    out
}

/// The weights of [`weights`] quantized to `dtype` (random blocks for the types without a
/// quantizer).
fn qweights(rows: usize, cols: usize, dtype: DType) -> Vec<u8> {
    if !matches!(dtype, DType::Q8_0 | DType::Q4_0 | DType::Q4_K | DType::Q6_K) {
        return random_blocks(rows, cols, dtype);
    }
    let src = weights(rows, cols);
    let mut out = vec![0u8; rows * dtype.row_bytes(cols).expect("whole blocks")];
    quant::quantize_rows_par(&src, DType::BF16, cols, dtype, &mut out).expect("quantize");
    out
}

fn bench_matvec_quant(c: &mut Criterion) {
    for dtype in QTYPES {
        let mut g = c.benchmark_group(format!("matvec_{}", dtype.name()));
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(20);
        for &(rows, cols) in &Q_SHAPES {
            let x = activations(cols);
            let mut y = vec![0f32; rows];
            let shape = format!("{rows}x{cols}");
            let bf = weights(rows, cols);
            let wb = MatRef::new(&bf, DType::BF16, rows, cols);
            g.throughput(Throughput::Bytes(bf.len() as u64));
            g.bench_function(BenchmarkId::new("bf16", &shape), |b| {
                b.iter(|| matmul(&wb, black_box(&x), 1, &mut y))
            });
            g.bench_function(BenchmarkId::new("bf16_fast", &shape), |b| {
                b.iter(|| matmul_bf16_fast(&wb, black_box(&x), 1, &mut y))
            });
            drop(bf);
            let data = qweights(rows, cols, dtype);
            let w = MatRef::new(&data, dtype, rows, cols);
            g.throughput(Throughput::Bytes(data.len() as u64));
            for level in Isa::supported() {
                if (level == Isa::Scalar && rows * cols > 4 << 20)
                    || (level == Isa::Avx2 && !has_avx2(dtype))
                {
                    continue;
                }
                g.bench_function(BenchmarkId::new(level.name(), &shape), |b| {
                    b.iter(|| matmul_with(level, &w, black_box(&x), 1, &mut y))
                });
            }
        }
        g.finish();
    }
}

fn bench_matmul_quant(c: &mut Criterion) {
    let n = 64;
    for dtype in QTYPES {
        let mut g = c.benchmark_group(format!("matmul_{}_n64", dtype.name()));
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2))
            .sample_size(10);
        for &(rows, cols) in &Q_SHAPES {
            let data = qweights(rows, cols, dtype);
            let w = MatRef::new(&data, dtype, rows, cols);
            let x = activations(n * cols);
            let mut y = vec![0f32; n * rows];
            g.throughput(Throughput::Elements((2 * rows * cols * n) as u64));
            for level in Isa::supported() {
                if level == Isa::Scalar || (level == Isa::Avx2 && !has_avx2(dtype)) {
                    continue;
                }
                g.bench_function(
                    BenchmarkId::new(level.name(), format!("{rows}x{cols}")),
                    |b| b.iter(|| matmul_with(level, &w, black_box(&x), n, &mut y)),
                );
            }
        }
        g.finish();
    }
}

criterion_group!(
    benches,
    bench_matvec,
    bench_matmul,
    bench_matvec_quant,
    bench_matmul_quant
);
criterion_main!(benches);
