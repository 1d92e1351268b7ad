//! frugal's in-memory layouts of Q4_0 and Q8_0 for the AVX-512 decode kernels
//! ([`DType::Q4_0X4`], [`DType::Q8_0X4`]): the same blocks as GGUF's (the same bits, the same
//! bytes in all), rearranged while the loader quantizes (`--quant q4`, `--quant q8`) so that one
//! token's product reads one contiguous stream and needs no shuffles. They never reach a file:
//! exports quantize to the plain types.
//!
//! A matrix of `rows x cols` (rows a multiple of 4) is stored as row quads: rows `4q..4q + 4`
//! take the `4 * row_bytes` bytes where the four plain rows would lie. A row's 32-element blocks
//! go in groups of 16 (512 elements: a *piece*, 16 blocks' bytes), and a quad's pieces are
//! interleaved: group `g` of row `4q + i` is piece `4g + i` of the quad; a row's last `t < 16`
//! blocks (when its blocks are not a multiple of 16) make a short piece, the four rows' short
//! pieces last in the quad ([`piece_at`]). Within a piece of `n` blocks, their f16 scales come
//! first (`2n` bytes), then their quant bytes (16 for Q4_0, 32 for Q8_0) transposed in 4-byte
//! words: byte `2n + 4n * k + 4j + m` is byte `4k + m` of block `j`'s quant bytes. So a 64-byte
//! load `k` of a full piece holds word `k` of all 16 blocks, one block per 32-bit lane, and the
//! integer dot products of a whole piece sum per block in place; its scales are one 32-byte
//! load (a short piece: the same with masked loads). A product then streams at nearly a plain
//! read's rate, which plain rows (Q4_0's 72-byte steps, two shuffles per 4 blocks) do not reach
//! (docs/BENCHMARKS.md, "the x4 layouts").

pub use frugal_tensor::x4::{fits, plain_of, row_span, x4_of, PIECE_BLOCKS, QUAD};
use frugal_tensor::DType;

/// Bytes per piece of a layout or of its plain dtype (16 blocks).
pub fn piece_bytes(dtype: DType) -> usize {
    PIECE_BLOCKS * dtype.block_bytes()
}

/// Pieces per row of `nb` blocks (the last one short when `nb` is not a multiple of 16).
pub fn pieces(nb: usize) -> usize {
    nb.div_ceil(PIECE_BLOCKS)
}

/// Where piece `g` of row `i` (`0..4`) lies in a quad of rows of `nb` blocks of `bb` bytes: its
/// byte offset, and the blocks it holds (16, or the short last piece's `nb % 16`).
#[inline(always)]
pub fn piece_at(bb: usize, nb: usize, g: usize, i: usize) -> (usize, usize) {
    let full = nb / PIECE_BLOCKS;
    if g < full {
        ((QUAD * g + i) * PIECE_BLOCKS * bb, PIECE_BLOCKS)
    } else {
        let t = nb % PIECE_BLOCKS;
        (QUAD * full * PIECE_BLOCKS * bb + i * t * bb, t)
    }
}

/// Rearranges `n` plain blocks of `bb` bytes (`src`) into a piece (`dst`).
#[inline]
fn to_piece(bb: usize, n: usize, src: &[u8], dst: &mut [u8]) {
    for j in 0..n {
        let blk = &src[bb * j..bb * (j + 1)];
        dst[2 * j..2 * j + 2].copy_from_slice(&blk[..2]);
        for k in 0..(bb - 2) / 4 {
            let o = 2 * n + 4 * n * k + 4 * j;
            dst[o..o + 4].copy_from_slice(&blk[2 + 4 * k..6 + 4 * k]);
        }
    }
}

/// The inverse of [`to_piece`].
#[inline]
fn from_piece(bb: usize, n: usize, src: &[u8], dst: &mut [u8]) {
    for j in 0..n {
        let blk = &mut dst[bb * j..bb * (j + 1)];
        blk[..2].copy_from_slice(&src[2 * j..2 * j + 2]);
        for k in 0..(bb - 2) / 4 {
            let o = 2 * n + 4 * n * k + 4 * j;
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
    assert!(rb.is_multiple_of(bb), "whole blocks");
    let nb = rb / bb;
    for i in 0..QUAD {
        for g in 0..pieces(nb) {
            let (at, n) = piece_at(bb, nb, g, i);
            let s = &rows[i * rb + g * pb..][..n * bb];
            to_piece(bb, n, s, &mut quad[at..at + n * bb]);
        }
    }
}

/// Row `i` (`0..4`) of a quad of `plain` blocks, as plain blocks (`out`: the row's bytes).
pub fn quad_row(plain: DType, quad: &[u8], i: usize, out: &mut [u8]) {
    let (bb, pb) = (plain.block_bytes(), piece_bytes(plain));
    let rb = quad.len() / QUAD;
    assert_eq!(out.len(), rb, "row length");
    assert!(i < QUAD && rb.is_multiple_of(bb), "row of a quad");
    let nb = rb / bb;
    for (g, o) in out.chunks_mut(pb).enumerate() {
        let (at, n) = piece_at(bb, nb, g, i);
        from_piece(bb, n, &quad[at..at + n * bb], o);
    }
}

/// Row `r` of a matrix in a layout (`data`, rows of `row_bytes`) as plain blocks.
pub fn row_plain(dtype: DType, data: &[u8], row_bytes: usize, r: usize, out: &mut [u8]) {
    let plain = plain_of(dtype).expect("an x4 layout");
    quad_row(plain, row_span(data, row_bytes, r), r % QUAD, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_and_rows_come_back() {
        for (plain, cols) in [
            (DType::Q4_0, 1024),
            (DType::Q8_0, 1024),
            (DType::Q4_0, 1152),
            (DType::Q8_0, 2304),
            (DType::Q4_0, 96),
        ] {
            let rows = 8;
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
            // Word k of block j is at 2n + 4nk + 4j of its piece: check by hand, in the first
            // piece of row 1 and in row 2's short last piece.
            let nb = cols / 32;
            let (j, k) = (1, 2);
            let (at, n) = piece_at(bb, nb, 0, 1);
            assert_eq!(
                x4[at + 2 * n + 4 * n * k + 4 * j..][..4],
                src[rb + bb * j + 2 + 4 * k..][..4]
            );
            assert_eq!(x4[at + 2 * j..][..2], src[rb + bb * j..][..2]);
            if nb % 16 != 0 {
                let g = nb / 16;
                let (at, n) = piece_at(bb, nb, g, 2);
                assert_eq!((n, at), (nb % 16, 4 * g * 16 * bb + 2 * n * bb));
                let b = 2 * rb + (16 * g + j) * bb;
                assert_eq!(
                    x4[at + 2 * n + 4 * n * k + 4 * j..][..4],
                    src[b + 2 + 4 * k..][..4]
                );
            }
        }
    }

    #[test]
    fn fits_only_whole_quads_and_pieces() {
        assert!(fits(4, 512));
        assert!(fits(2048, 16384));
        assert!(fits(4, 2304));
        assert!(fits(4, 32));
        assert!(!fits(6, 512));
        assert!(!fits(4, 48));
        assert!(!fits(0, 512));
    }
}
