//! GGUF TQ1_0 and TQ2_0: ternary weights `d * (t - 1)`, `t` in `0..3` (TQ2_0 also stores 3).
//!
//! - TQ1_0, 54 bytes per 256: `qs[48]`, `qh[4]`, `f16 d`. Each byte holds 5 (in `qs`) or 4
//!   (in `qh`) base-3 digits as a fixed-point fraction: digit `n` of byte `q` is
//!   `((q * 3^n mod 256) * 3) >> 8`. Order: digit `n` of `qs[m]` is weight `32n + m` for
//!   `m < 32`; digit `n` of `qs[32 + m]` is weight `160 + 16n + m`; digit `n` of `qh[m]` is
//!   weight `240 + 4n + m`.
//! - TQ2_0, 66 bytes per 256: `qs[64]`, `f16 d`; bits `2l..2l + 2` of `qs[32h + m]` are weight
//!   `128h + 32l + m`.
//!
//! As llama.cpp's `dequantize_row_tq1_0` / `_tq2_0` (and gguf-py's): `(t - 1) * d` in f32.

use super::{blocks_of, f16_at};

/// Elements per super-block (both types).
pub const BLOCK: usize = 256;
/// Bytes per TQ1_0 super-block.
pub const BLOCK_BYTES_1: usize = 54;
/// Bytes per TQ2_0 super-block.
pub const BLOCK_BYTES_2: usize = 66;

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Base-3 digit `n` of a TQ1_0 byte (`0..3`).
#[inline(always)]
fn trit(q: u8, n: usize) -> i32 {
    let q = q.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as i32
}

/// Dequantizes TQ1_0 `src` (whole super-blocks) into `dst` (`src.len() / 54 * 256` values).
pub fn dequantize_row_1(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("TQ1_0", BLOCK, BLOCK_BYTES_1, src, dst) {
        let d = f16_at(b, 52);
        let mut y = out.iter_mut();
        // (bytes, digits per byte): qs[0..32], qs[32..48], qh.
        for (bytes, digits) in [(&b[0..32], 5), (&b[32..48], 5), (&b[48..52], 4)] {
            for n in 0..digits {
                for &q in bytes {
                    *y.next().expect("256 weights") = (trit(q, n) - 1) as f32 * d;
                }
            }
        }
    }
}

/// Dequantizes TQ2_0 `src` (whole super-blocks) into `dst` (`src.len() / 66 * 256` values).
pub fn dequantize_row_2(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("TQ2_0", BLOCK, BLOCK_BYTES_2, src, dst) {
        let d = f16_at(b, 64);
        for (c, o) in out.chunks_exact_mut(32).enumerate() {
            let (h, l) = (c / 4, c % 4);
            for (o, &q) in o.iter_mut().zip(&b[32 * h..32 * h + 32]) {
                *o = (((q >> (2 * l)) & 3) as i32 - 1) as f32 * d;
            }
        }
    }
}
