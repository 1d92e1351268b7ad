//! GGUF Q4_K: super-blocks of 256 weights in 144 bytes: `f16 d`, `f16 dmin`, 12 bytes packing
//! eight 6-bit scales `sc[j]` and eight 6-bit mins `m[j]` (one per sub-block of 32), then 128
//! bytes of nibbles. Weight `i` of sub-block `j` is `d * sc[j] * q - dmin * m[j]`.
//!
//! Nibble order: the 256 values are 4 chunks of 64; chunk `c` is the 32 bytes
//! `qs[32c..32c + 32]`, whose low nibbles are elements `64c..64c + 32` (sub-block `2c`) and
//! high nibbles elements `64c + 32..64c + 64` (sub-block `2c + 1`).
//!
//! Scale packing (bytes `s[0..12]`): for `j < 4`, `sc[j] = s[j] & 63`, `m[j] = s[j + 4] & 63`;
//! for `j >= 4`, `sc[j] = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4` and
//! `m[j] = (s[j + 4] >> 4) | (s[j] >> 6) << 4`.
//!
//! Quantization follows llama.cpp's `quantize_row_q4_K_ref`: a weighted min+scale fit per
//! sub-block (`make_qkx2_quants`, weights `sqrt(mean x^2) + |x|`, 21 candidate scales), the
//! sub-block scales and mins quantized to 6 bits against the block maxima, then every value
//! re-quantized with the final scales. Dequantization equals gguf-py's `Q4_K.dequantize_blocks`.

use super::{make_qkx2_quants, nearest_int};
use half::f16;

/// Elements per super-block.
pub const BLOCK: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 144;

/// The 6-bit scale and min of sub-block `j` from the 12 packed bytes.
#[inline]
pub fn scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// All eight scales and mins.
#[inline]
pub fn scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        (sc[j], m[j]) = scale_min(j, s);
    }
    (sc, m)
}

/// Quantizes `src` (a whole number of super-blocks) into `dst` (`src.len() / 256 * 144` bytes).
#[inline(always)]
pub fn quantize_row(src: &[f32], dst: &mut [u8]) {
    assert!(
        src.len().is_multiple_of(BLOCK),
        "Q4_K rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK * BLOCK_BYTES,
        "Q4_K output length"
    );
    for (x, out) in src
        .chunks_exact(BLOCK)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        quantize_block(x, out);
    }
}

#[inline(always)]
fn quantize_block(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; BLOCK];
    levels(x, 15, -1.0, 0.1, 20, &mut out[..16], &mut l);
    let qs = &mut out[16..];
    for c in 0..4 {
        for i in 0..32 {
            qs[32 * c + i] = l[64 * c + i] | (l[64 * c + i + 32] << 4);
        }
    }
}

/// The part llama.cpp's `quantize_row_q4_K_ref` and `quantize_row_q5_K_ref` share, for one
/// super-block `x` with levels `0..=nmax`: a weighted min+scale fit per sub-block of 32
/// (`make_qkx2_quants` with weights `sqrt(mean x^2) + |x|` and the candidates `rmin`,
/// `rdelta`, `nstep`), the eight scales and mins quantized to 6 bits against their maxima and
/// packed with `d` and `dmin` into `head` (16 bytes), then every value re-quantized with the
/// final scales into `l`.
#[inline(always)]
pub(crate) fn levels(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    head: &mut [u8],
    l: &mut [u8; BLOCK],
) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut weights = [0f32; 32];
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            rmin,
            rdelta,
            nstep,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let s = &mut head[4..16];
    s.fill(0);
    for j in 0..8 {
        // `uint8_t ls = nearest_int(..)` in C: the conversion wraps, then the minimum.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    let d16 = f16::from_f32(max_scale / 63.0);
    let dmin16 = f16::from_f32(max_min / 63.0);
    head[0..2].copy_from_slice(&d16.to_le_bytes());
    head[2..4].copy_from_slice(&dmin16.to_le_bytes());
    let (d, dmin) = (d16.to_f32(), dmin16.to_f32());
    for j in 0..8 {
        let (sc, m) = scale_min(j, &head[4..16]);
        let dj = d * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
}

/// Dequantizes `src` (whole super-blocks) into `dst` (`src.len() / 144 * 256` values).
pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    assert!(
        src.len().is_multiple_of(BLOCK_BYTES),
        "Q4_K rows are whole blocks"
    );
    assert_eq!(
        dst.len(),
        src.len() / BLOCK_BYTES * BLOCK,
        "Q4_K output length"
    );
    for (b, out) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK))
    {
        let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
        let dmin = f16::from_le_bytes([b[2], b[3]]).to_f32();
        let (sc, m) = scales_mins(&b[4..16]);
        let qs = &b[16..];
        for c in 0..4 {
            for half in 0..2 {
                let j = 2 * c + half;
                // gguf-py: (d * sc) * q - dmin * m, each product rounded to f32.
                let dl = d * sc[j] as f32;
                let ml = dmin * m[j] as f32;
                for i in 0..32 {
                    let q = (qs[32 * c + i] >> (4 * half)) & 15;
                    out[32 * j + i] = dl * q as f32 - ml;
                }
            }
        }
    }
}
