//! frugal's in-memory layout of Q4_0 for the AVX-512 decode kernel ([`DType::Q4_0X4`]): the
//! same blocks as GGUF's Q4_0 (the same bits, the same bytes in all), rearranged while the
//! loader quantizes (`--quant q4`) so that one token's product reads one contiguous stream and
//! needs no shuffles. It never reaches a file: exports quantize to plain Q4_0.
//!
//! A matrix of `rows x cols` (rows a multiple of 4, cols of 512) is stored as row quads: rows
//! `4q..4q + 4` take the `4 * row_bytes` bytes where the four plain rows would lie. A row's 32-
//! element blocks go in groups of 16 (512 elements, 288 bytes: a *piece*), and a quad's pieces
//! are interleaved: group `g` of row `4q + i` is piece `4g + i` of the quad. Within a piece, the
//! 16 blocks' f16 scales come first (32 bytes), then their nibble bytes transposed in 4-byte
//! words: byte `32 + 64k + 4j + m` is byte `4k + m` of block `j`'s 16 nibble bytes. So a 64-byte
//! load `k` of a piece holds word `k` of all 16 blocks, one block per 32-bit lane, and the
//! integer dot products of a whole piece sum per block in place; its scales are one 32-byte
//! load. Measured on this machine's 2 cores streaming 1.3 GB: 97-100 % of a plain read's rate,
//! against 75-80 % for plain Q4_0 rows (72-byte steps, two shuffles per 4 blocks) and 68 % for
//! four plain rows read side by side.

use super::{q4_0, DType};

/// Blocks per piece.
pub const PIECE_BLOCKS: usize = 16;
/// Bytes per piece (16 Q4_0 blocks).
pub const PIECE_BYTES: usize = PIECE_BLOCKS * q4_0::BLOCK_BYTES;
/// Rows per quad.
pub const QUAD: usize = 4;

/// Whether a `rows x cols` matrix can take this layout: whole quads of rows, whole pieces.
pub fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && rows.is_multiple_of(QUAD) && cols > 0 && cols.is_multiple_of(32 * PIECE_BLOCKS)
}

/// Where byte `b` (`0..18`) of block `j` (`0..16`) of a plain piece goes in the transposed one.
#[inline(always)]
fn piece_pos(j: usize, b: usize) -> usize {
    if b < 2 {
        2 * j + b
    } else {
        let (k, m) = ((b - 2) / 4, (b - 2) % 4);
        32 + 64 * k + 4 * j + m
    }
}

/// Rearranges 16 plain Q4_0 blocks (`src`, 288 bytes) into a piece (`dst`).
#[inline]
pub fn to_piece(src: &[u8], dst: &mut [u8]) {
    for j in 0..PIECE_BLOCKS {
        let blk = &src[18 * j..18 * j + 18];
        dst[2 * j] = blk[0];
        dst[2 * j + 1] = blk[1];
        for k in 0..4 {
            let o = 32 + 64 * k + 4 * j;
            dst[o..o + 4].copy_from_slice(&blk[2 + 4 * k..6 + 4 * k]);
        }
    }
}

/// The inverse of [`to_piece`].
#[inline]
pub fn from_piece(src: &[u8], dst: &mut [u8]) {
    for j in 0..PIECE_BLOCKS {
        for b in 0..18 {
            dst[18 * j + b] = src[piece_pos(j, b)];
        }
    }
}

/// Interleaves one quad of 4 plain Q4_0 rows (`plain`, `4 * row_bytes`) into `quad`.
pub fn interleave_quad(plain: &[u8], quad: &mut [u8]) {
    assert_eq!(plain.len(), quad.len(), "quad length");
    let rb = plain.len() / QUAD;
    assert!(rb.is_multiple_of(PIECE_BYTES), "whole pieces");
    let ng = rb / PIECE_BYTES;
    for i in 0..QUAD {
        for g in 0..ng {
            let s = &plain[i * rb + g * PIECE_BYTES..][..PIECE_BYTES];
            to_piece(s, &mut quad[(QUAD * g + i) * PIECE_BYTES..][..PIECE_BYTES]);
        }
    }
}

/// Row `i` (`0..4`) of a quad in plain Q4_0 (`out`: the row's bytes).
pub fn quad_row(quad: &[u8], i: usize, out: &mut [u8]) {
    let rb = quad.len() / QUAD;
    assert_eq!(out.len(), rb, "row length");
    assert!(i < QUAD && rb.is_multiple_of(PIECE_BYTES), "row of a quad");
    for (g, o) in out.chunks_exact_mut(PIECE_BYTES).enumerate() {
        from_piece(&quad[(QUAD * g + i) * PIECE_BYTES..][..PIECE_BYTES], o);
    }
}

/// Row `r` of a [`DType::Q4_0X4`] matrix (`data`, rows of `row_bytes`) in plain Q4_0.
pub fn row_plain(data: &[u8], row_bytes: usize, r: usize, out: &mut [u8]) {
    let q = r / QUAD;
    quad_row(
        &data[q * QUAD * row_bytes..(q + 1) * QUAD * row_bytes],
        r % QUAD,
        out,
    );
}

/// The bytes that hold row `r` of a [`DType::Q4_0X4`] matrix: its quad.
pub fn row_span(data: &[u8], row_bytes: usize, r: usize) -> &[u8] {
    let q = r / QUAD;
    &data[q * QUAD * row_bytes..(q + 1) * QUAD * row_bytes]
}

/// The dtype the loader gives a `rows x cols` matrix quantized to Q4_0: this layout where the
/// CPU runs the AVX-512 quantized kernels (which read it) and the shape fits, else plain Q4_0.
pub fn layout_for(rows: usize, cols: usize) -> DType {
    if fits(rows, cols) && crate::kernels::reads_q4_0x4() {
        DType::Q4_0X4
    } else {
        DType::Q4_0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_and_rows_come_back() {
        let (rows, cols) = (8, 1024);
        let rb = cols / 32 * 18;
        let plain: Vec<u8> = (0..rows * rb).map(|i| (i * 31 % 251) as u8).collect();
        let mut x4 = vec![0u8; plain.len()];
        for (p, q) in plain
            .chunks_exact(QUAD * rb)
            .zip(x4.chunks_exact_mut(QUAD * rb))
        {
            interleave_quad(p, q);
        }
        assert_ne!(plain, x4);
        let mut row = vec![0u8; rb];
        for r in 0..rows {
            row_plain(&x4, rb, r, &mut row);
            assert_eq!(row, plain[r * rb..(r + 1) * rb], "row {r}");
        }
        // Word k of block j is at 32 + 64k + 4j of its piece: check one by hand.
        let (j, k) = (5, 2);
        let piece = &x4[..PIECE_BYTES];
        assert_eq!(
            piece[32 + 64 * k + 4 * j..][..4],
            plain[18 * j + 2 + 4 * k..][..4]
        );
        assert_eq!(piece[2 * j..2 * j + 2], plain[18 * j..18 * j + 2]);
    }

    #[test]
    fn fits_only_whole_quads_and_pieces() {
        assert!(fits(4, 512));
        assert!(fits(2048, 16384));
        assert!(!fits(6, 512));
        assert!(!fits(4, 2304));
        assert!(!fits(0, 512));
    }
}
