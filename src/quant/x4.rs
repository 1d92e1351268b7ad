//! frugal's in-memory layouts of Q4_0 and Q8_0 for the AVX-512 decode kernels
//! ([`DType::Q4_0X4`], [`DType::Q8_0X4`]): the same blocks as GGUF's (the same bits, the same
//! bytes in all), rearranged while the loader quantizes (`--quant q4`, `--quant q8`) so that one
//! token's product reads one contiguous stream and needs no shuffles. They never reach a file:
//! exports quantize to the plain types.
//!
//! A matrix of `rows x cols` (rows a multiple of 4, cols of 512) is stored as row quads: rows
//! `4q..4q + 4` take the `4 * row_bytes` bytes where the four plain rows would lie. A row's 32-
//! element blocks go in groups of 16 (512 elements: a *piece*, 16 blocks' bytes), and a quad's
//! pieces are interleaved: group `g` of row `4q + i` is piece `4g + i` of the quad. Within a
//! piece, the 16 blocks' f16 scales come first (32 bytes), then their quant bytes (16 for Q4_0,
//! 32 for Q8_0) transposed in 4-byte words: byte `32 + 64k + 4j + m` is byte `4k + m` of block
//! `j`'s quant bytes. So a 64-byte load `k` of a piece holds word `k` of all 16 blocks, one
//! block per 32-bit lane, and the integer dot products of a whole piece sum per block in place;
//! its scales are one 32-byte load. Measured for Q4_0 on this machine's 2 cores streaming
//! 1.3 GB: 97-100 % of a plain read's rate, against 75-80 % for plain Q4_0 rows (72-byte steps,
//! two shuffles per 4 blocks) and 68 % for four plain rows read side by side.

use super::DType;

/// Blocks per piece.
pub const PIECE_BLOCKS: usize = 16;
/// Rows per quad.
pub const QUAD: usize = 4;

/// The plain block dtype of a layout (`Q4_0X4` -> `Q4_0`, `Q8_0X4` -> `Q8_0`).
pub fn plain_of(dtype: DType) -> Option<DType> {
    match dtype {
        DType::Q4_0X4 => Some(DType::Q4_0),
        DType::Q8_0X4 => Some(DType::Q8_0),
        _ => None,
    }
}

/// The layout of a plain block dtype, if it has one.
pub fn x4_of(plain: DType) -> Option<DType> {
    match plain {
        DType::Q4_0 => Some(DType::Q4_0X4),
        DType::Q8_0 => Some(DType::Q8_0X4),
        _ => None,
    }
}

/// Bytes per piece of a layout or of its plain dtype (16 blocks).
pub fn piece_bytes(dtype: DType) -> usize {
    PIECE_BLOCKS * dtype.block_bytes()
}

/// Whether a `rows x cols` matrix can take these layouts: whole quads of rows, whole pieces.
pub fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && rows.is_multiple_of(QUAD) && cols > 0 && cols.is_multiple_of(32 * PIECE_BLOCKS)
}

/// Rearranges 16 plain blocks of `bb` bytes (`src`) into a piece (`dst`).
#[inline]
fn to_piece(bb: usize, src: &[u8], dst: &mut [u8]) {
    for j in 0..PIECE_BLOCKS {
        let blk = &src[bb * j..bb * (j + 1)];
        dst[2 * j..2 * j + 2].copy_from_slice(&blk[..2]);
        for k in 0..(bb - 2) / 4 {
            let o = 32 + 64 * k + 4 * j;
            dst[o..o + 4].copy_from_slice(&blk[2 + 4 * k..6 + 4 * k]);
        }
    }
}

/// The inverse of [`to_piece`].
#[inline]
fn from_piece(bb: usize, src: &[u8], dst: &mut [u8]) {
    for j in 0..PIECE_BLOCKS {
        let blk = &mut dst[bb * j..bb * (j + 1)];
        blk[..2].copy_from_slice(&src[2 * j..2 * j + 2]);
        for k in 0..(bb - 2) / 4 {
            let o = 32 + 64 * k + 4 * j;
            blk[2 + 4 * k..6 + 4 * k].copy_from_slice(&src[o..o + 4]);
        }
    }
}

/// Interleaves one quad of 4 plain rows of `plain` blocks (`rows`, `4 * row_bytes`) into
/// `quad`.
pub fn interleave_quad(plain: DType, rows: &[u8], quad: &mut [u8]) {
    assert_eq!(rows.len(), quad.len(), "quad length");
    let (bb, pb) = (plain.block_bytes(), piece_bytes(plain));
    let rb = rows.len() / QUAD;
    assert!(rb.is_multiple_of(pb), "whole pieces");
    for i in 0..QUAD {
        for g in 0..rb / pb {
            let s = &rows[i * rb + g * pb..][..pb];
            to_piece(bb, s, &mut quad[(QUAD * g + i) * pb..][..pb]);
        }
    }
}

/// Row `i` (`0..4`) of a quad of `plain` blocks, as plain blocks (`out`: the row's bytes).
pub fn quad_row(plain: DType, quad: &[u8], i: usize, out: &mut [u8]) {
    let (bb, pb) = (plain.block_bytes(), piece_bytes(plain));
    let rb = quad.len() / QUAD;
    assert_eq!(out.len(), rb, "row length");
    assert!(i < QUAD && rb.is_multiple_of(pb), "row of a quad");
    for (g, o) in out.chunks_exact_mut(pb).enumerate() {
        from_piece(bb, &quad[(QUAD * g + i) * pb..][..pb], o);
    }
}

/// Row `r` of a matrix in a layout (`data`, rows of `row_bytes`) as plain blocks.
pub fn row_plain(dtype: DType, data: &[u8], row_bytes: usize, r: usize, out: &mut [u8]) {
    let plain = plain_of(dtype).expect("an x4 layout");
    quad_row(plain, row_span(data, row_bytes, r), r % QUAD, out);
}

/// The bytes that hold row `r` of a matrix in a layout: its quad.
pub fn row_span(data: &[u8], row_bytes: usize, r: usize) -> &[u8] {
    let q = r / QUAD;
    &data[q * QUAD * row_bytes..(q + 1) * QUAD * row_bytes]
}

/// The dtype the loader gives a `rows x cols` matrix of `plain` blocks: its layout where the CPU
/// runs the AVX-512 quantized kernels (which read it) and the shape fits, else `plain`.
pub fn layout_for(plain: DType, rows: usize, cols: usize) -> DType {
    match x4_of(plain) {
        Some(x4) if fits(rows, cols) && crate::kernels::reads_x4() => x4,
        _ => plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_and_rows_come_back() {
        for plain in [DType::Q4_0, DType::Q8_0] {
            let (rows, cols) = (8, 1024);
            let rb = plain.row_bytes(cols).unwrap();
            let bb = plain.block_bytes();
            let src: Vec<u8> = (0..rows * rb).map(|i| (i * 31 % 251) as u8).collect();
            let mut x4 = vec![0u8; src.len()];
            for (p, q) in src
                .chunks_exact(QUAD * rb)
                .zip(x4.chunks_exact_mut(QUAD * rb))
            {
                interleave_quad(plain, p, q);
            }
            assert_ne!(src, x4);
            let layout = x4_of(plain).unwrap();
            let mut row = vec![0u8; rb];
            for r in 0..rows {
                row_plain(layout, &x4, rb, r, &mut row);
                assert_eq!(row, src[r * rb..(r + 1) * rb], "row {r}");
            }
            // Word k of block j is at 32 + 64k + 4j of its piece: check one by hand.
            let (j, k) = (5, 2);
            let piece = &x4[..piece_bytes(plain)];
            assert_eq!(
                piece[32 + 64 * k + 4 * j..][..4],
                src[bb * j + 2 + 4 * k..][..4]
            );
            assert_eq!(piece[2 * j..2 * j + 2], src[bb * j..bb * j + 2]);
            // The second piece of the quad is row 1's first.
            assert_eq!(piece_bytes(plain), 16 * bb);
            assert_eq!(x4[piece_bytes(plain)..][..2], src[rb..rb + 2]);
        }
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
