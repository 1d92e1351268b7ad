//! The memory read-rate probe: how fast this machine reads the weights where they lie, the
//! ceiling of decoding (`frugal bench` and the plan report it next to the measured rate).

use crate::scalar;
#[cfg(target_arch = "x86_64")]
use crate::x86;
use rayon::prelude::*;

/// Reads every byte of `parts` once on the current rayon pool (1 MiB pieces folded by XOR:
/// 64-byte vector loads on AVX-512, else [`scalar::xor_fold`]) and returns the rate in bytes
/// per second: the memory read bandwidth that bounds decoding, measured on the weights
/// themselves where they lie (the map's page cache or the quantized arena), so
/// `bytes per token / rate` is the decode ceiling of this machine at this moment. Allocates
/// nothing.
pub fn read_rate(parts: &[&[u8]]) -> f64 {
    const PIECE: usize = 1 << 20;
    let pieces: Vec<&[u8]> = parts.iter().flat_map(|p| p.chunks(PIECE)).collect();
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let t = std::time::Instant::now();
    #[cfg(target_arch = "x86_64")]
    let simd = x86::Avx512::detect();
    let sum = pieces
        .par_iter()
        .map(|p| {
            let mut done = 0;
            let mut a = 0u64;
            #[cfg(target_arch = "x86_64")]
            if let Some(k) = &simd {
                a = k.xor_fold(p);
                done = p.len() / 256 * 256;
            }
            a ^ scalar::xor_fold(&p[done..])
        })
        .reduce(|| 0, |a, b| a ^ b);
    std::hint::black_box(sum);
    total as f64 / t.elapsed().as_secs_f64().max(1e-9)
}
