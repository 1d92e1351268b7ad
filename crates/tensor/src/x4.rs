//! Where things lie in frugal's in-memory x4 layouts ([`DType::Q4_0X4`], [`DType::Q8_0X4`]):
//! rows in quads, a row's blocks in pieces of 16. What the layouts are and how blocks are
//! rearranged into them is `frugal_quant::x4`; this is the geometry a [`crate::MatRef`] needs.

use crate::DType;

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

/// Whether a `rows x cols` matrix can take these layouts: whole quads of rows, whole blocks.
pub fn fits(rows: usize, cols: usize) -> bool {
    rows > 0 && rows.is_multiple_of(QUAD) && cols > 0 && cols.is_multiple_of(32)
}

/// The bytes that hold row `r` of a matrix in a layout: its quad.
pub fn row_span(data: &[u8], row_bytes: usize, r: usize) -> &[u8] {
    let q = r / QUAD;
    &data[q * QUAD * row_bytes..(q + 1) * QUAD * row_bytes]
}
