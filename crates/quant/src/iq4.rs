//! GGUF IQ4_NL and IQ4_XS: 4-bit indices into the 16 non-linear levels `KVALUES_IQ4NL`
//! (`-127..=113`), nibbles ordered as Q4_0's (in each 16 bytes, the low nibbles are the first
//! 16 weights, the high nibbles the next 16).
//!
//! - IQ4_NL, blocks of 32 in 18 bytes: `f16 d`, `qs[16]`; weight `d * level`.
//! - IQ4_XS, super-blocks of 256 in 136 bytes: `f16 d`, `u16 scales_h`, `scales_l[4]`,
//!   `qs[128]`; sub-block `ib` of 32 has the 6-bit scale `ls` (low nibble `ib % 2` of
//!   `scales_l[ib / 2]`, high 2 bits `scales_h >> 2 ib`); weight `(d * (ls - 32)) * level`.
//!
//! As llama.cpp's `dequantize_row_iq4_nl` / `_iq4_xs` (and gguf-py's).

use super::tables::KVALUES_IQ4NL;
use super::{blocks_of, f16_at};

/// Elements per IQ4_NL block.
pub const BLOCK_NL: usize = 32;
/// Bytes per IQ4_NL block.
pub const BLOCK_BYTES_NL: usize = 18;
/// Elements per IQ4_XS super-block.
pub const BLOCK_XS: usize = 256;
/// Bytes per IQ4_XS super-block.
pub const BLOCK_BYTES_XS: usize = 136;

/// 32 weights from 16 bytes of nibbles: `dl * level`.
#[inline(always)]
fn nibbles(out: &mut [f32], dl: f32, qs: &[u8]) {
    let (lo, hi) = out.split_at_mut(16);
    for ((&q, l), h) in qs[..16].iter().zip(lo).zip(hi) {
        *l = dl * KVALUES_IQ4NL[(q & 15) as usize] as f32;
        *h = dl * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
    }
}

/// Dequantizes IQ4_NL `src` (whole blocks) into `dst` (`src.len() / 18 * 32` values).
pub fn dequantize_row_nl(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ4_NL", BLOCK_NL, BLOCK_BYTES_NL, src, dst) {
        nibbles(out, f16_at(b, 0), &b[2..]);
    }
}

/// Dequantizes IQ4_XS `src` (whole super-blocks) into `dst` (`src.len() / 136 * 256` values).
pub fn dequantize_row_xs(src: &[u8], dst: &mut [f32]) {
    for (b, out) in blocks_of("IQ4_XS", BLOCK_XS, BLOCK_BYTES_XS, src, dst) {
        let d = f16_at(b, 0);
        let scales_h = u16::from_le_bytes([b[2], b[3]]);
        let (scales_l, qs) = (&b[4..8], &b[8..]);
        for (ib, o) in out.chunks_exact_mut(32).enumerate() {
            let lo = (scales_l[ib / 2] >> (4 * (ib % 2))) & 15;
            let hi = ((scales_h >> (2 * ib)) & 3) as u8;
            let ls = (lo | (hi << 4)) as i32;
            nibbles(o, d * (ls - 32) as f32, &qs[16 * ib..]);
        }
    }
}
