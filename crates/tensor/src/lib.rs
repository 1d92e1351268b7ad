//! frugal's tensor vocabulary, the leaf every other crate imports: the storage dtypes of
//! weights ([`DType`], element types and GGUF's block types), the errors of shapes a dtype
//! cannot store ([`LayoutError`]), and borrowed matrices ([`MatRef`], with int8 rows' per-row
//! [`Scale`]) that point into a memory map or an arena without owning or copying anything.
//! The geometry of frugal's in-memory x4 layouts ([`x4`]) is here because a [`MatRef`] in one
//! must know where its rows lie; the rearranging itself is `frugal_quant::x4`.

pub mod x4;

/// Storage dtype of a weight matrix as it lies in the file (or as frugal quantized it).
///
/// Element dtypes (`F32`, `F16`, `BF16`, `I8`) store one value per element; the quantized
/// dtypes store blocks of [`DType::block_len`] elements in [`DType::block_bytes`] bytes, laid out
/// exactly as GGUF's types of the same name (`frugal_quant` reads and writes them). A row is
/// always a whole number of blocks: use [`DType::row_bytes`] rather than multiplying by an
/// element size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // GGUF's names
pub enum DType {
    F32,
    F16,
    BF16,
    /// Signed 8-bit integers, scaled per row (gemma_pytorch's int8 checkpoints): see [`Scale`].
    I8,
    /// GGUF Q8_0: blocks of 32 int8 with one f16 scale.
    Q8_0,
    /// GGUF Q4_0: blocks of 32 4-bit values with one f16 scale.
    Q4_0,
    /// GGUF Q4_1: Q4_0 with an f16 minimum per block.
    Q4_1,
    /// GGUF Q5_0: blocks of 32 5-bit values (the high bits apart) with one f16 scale.
    Q5_0,
    /// GGUF Q5_1: Q5_0 with an f16 minimum per block.
    Q5_1,
    /// GGUF Q2_K: super-blocks of 256 2-bit values, 16 sub-blocks with 4-bit scales and mins.
    Q2_K,
    /// GGUF Q3_K: super-blocks of 256 3-bit values, 16 sub-blocks with 6-bit scales.
    Q3_K,
    /// GGUF Q4_K: super-blocks of 256 4-bit values, 8 sub-blocks with 6-bit scales and mins.
    Q4_K,
    /// GGUF Q5_K: Q4_K with a fifth bit per value.
    Q5_K,
    /// GGUF Q6_K: super-blocks of 256 6-bit values, 16 sub-blocks with int8 scales.
    Q6_K,
    /// GGUF IQ2_XXS: 2.06 bits per weight, 8-value groups from a 256-entry lattice with signs.
    IQ2_XXS,
    /// GGUF IQ2_XS: 2.31 bits per weight, a 512-entry lattice and 4-bit sub-block scales.
    IQ2_XS,
    /// GGUF IQ2_S: 2.5 bits per weight, a 1024-entry lattice.
    IQ2_S,
    /// GGUF IQ3_XXS: 3.06 bits per weight, 4-value groups from a 256-entry lattice.
    IQ3_XXS,
    /// GGUF IQ3_S: 3.44 bits per weight, a 512-entry lattice.
    IQ3_S,
    /// GGUF IQ1_S: 1.56 bits per weight, a 2048-entry ternary lattice.
    IQ1_S,
    /// GGUF IQ1_M: 1.75 bits per weight, IQ1_S with per-group deltas and no f16 scale field.
    IQ1_M,
    /// GGUF IQ4_NL: blocks of 32 4-bit indices into a non-linear table, one f16 scale.
    IQ4_NL,
    /// GGUF IQ4_XS: IQ4_NL's table in super-blocks of 256 with 6-bit sub-block scales.
    IQ4_XS,
    /// GGUF TQ1_0: ternary values, 5 a byte in base 3.
    TQ1_0,
    /// GGUF TQ2_0: ternary values in 2 bits.
    TQ2_0,
    /// GGUF MXFP4: blocks of 32 FP4 (E2M1) values with a shared E8M0 exponent.
    MXFP4,
    /// GGUF NVFP4: blocks of 64 FP4 (E2M1) values, an E4M3 scale per 16.
    NVFP4,
    /// GGUF Q1_0: blocks of 128 sign bits with one f16 scale.
    Q1_0,
    /// GGUF Q2_0: blocks of 64 2-bit values with one f16 scale.
    Q2_0,
    /// Q4_0's blocks in frugal's in-memory layout for the AVX-512 kernels: rows interleaved in
    /// quads, blocks transposed in groups of 16 ([`x4`]). Made only by the loader (`--quant
    /// q4`, from float or Q4_0 sources), never read from or written to a file; a row is not
    /// contiguous, so [`MatRef::row_bytes`] does not apply (see [`MatRef::row_span`]).
    Q4_0X4,
    /// Q8_0's blocks in the same layout ([`x4`]), made by `--quant q8`.
    Q8_0X4,
}

/// Every dtype's layout: (dtype, name, elements per block, bytes per block), in the enum's
/// order (indexed by the discriminant; `layouts_follow_the_enum` checks it).
const LAYOUTS: [(DType, &str, usize, usize); 31] = [
    (DType::F32, "f32", 1, 4),
    (DType::F16, "f16", 1, 2),
    (DType::BF16, "bf16", 1, 2),
    (DType::I8, "int8", 1, 1),
    (DType::Q8_0, "q8_0", 32, 34),
    (DType::Q4_0, "q4_0", 32, 18),
    (DType::Q4_1, "q4_1", 32, 20),
    (DType::Q5_0, "q5_0", 32, 22),
    (DType::Q5_1, "q5_1", 32, 24),
    (DType::Q2_K, "q2_k", 256, 84),
    (DType::Q3_K, "q3_k", 256, 110),
    (DType::Q4_K, "q4_k", 256, 144),
    (DType::Q5_K, "q5_k", 256, 176),
    (DType::Q6_K, "q6_k", 256, 210),
    (DType::IQ2_XXS, "iq2_xxs", 256, 66),
    (DType::IQ2_XS, "iq2_xs", 256, 74),
    (DType::IQ2_S, "iq2_s", 256, 82),
    (DType::IQ3_XXS, "iq3_xxs", 256, 98),
    (DType::IQ3_S, "iq3_s", 256, 110),
    (DType::IQ1_S, "iq1_s", 256, 50),
    (DType::IQ1_M, "iq1_m", 256, 56),
    (DType::IQ4_NL, "iq4_nl", 32, 18),
    (DType::IQ4_XS, "iq4_xs", 256, 136),
    (DType::TQ1_0, "tq1_0", 256, 54),
    (DType::TQ2_0, "tq2_0", 256, 66),
    (DType::MXFP4, "mxfp4", 32, 17),
    (DType::NVFP4, "nvfp4", 64, 36),
    (DType::Q1_0, "q1_0", 128, 18),
    (DType::Q2_0, "q2_0", 64, 18),
    (DType::Q4_0X4, "q4_0x4", 32, 18),
    (DType::Q8_0X4, "q8_0x4", 32, 34),
];

#[inline]
fn layout(d: DType) -> &'static (DType, &'static str, usize, usize) {
    &LAYOUTS[d as usize]
}

/// A row length or tensor shape that a dtype cannot store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("{dtype} stores rows in blocks of {block} elements, but a row has {cols} elements; quantize this tensor to another type or keep it in float")]
    Ragged {
        dtype: &'static str,
        block: usize,
        cols: usize,
    },
    #[error("tensor of shape {0:?} is too large to address")]
    Overflow(Vec<usize>),
}

impl DType {
    /// Every dtype a file can hold, element dtypes first (the in-memory layouts
    /// [`DType::Q4_0X4`] and [`DType::Q8_0X4`] are not among them).
    pub const ALL: [DType; 29] = {
        let mut a = [DType::F32; 29];
        let mut i = 0;
        while i < 29 {
            a[i] = LAYOUTS[i].0;
            i += 1;
        }
        a
    };

    /// Elements per block: 1 for element dtypes, 32 to 256 for GGUF's blocks.
    pub fn block_len(self) -> usize {
        layout(self).2
    }

    /// Bytes per block (per element for element dtypes).
    pub fn block_bytes(self) -> usize {
        layout(self).3
    }

    /// Byte offsets of a block's plain f16 scale fields (`d`, and `dmin` where the type has
    /// one), for the block types with integer kernels; empty where the scale is stored
    /// otherwise (MXFP4's E8M0 byte, IQ1_M's nibbles across its scale words), `None` for the
    /// other dtypes.
    pub fn f16_scale_offsets(self) -> Option<&'static [usize]> {
        Some(match self {
            DType::Q8_0 | DType::Q4_0 | DType::Q5_0 | DType::IQ4_NL | DType::IQ4_XS => &[0],
            DType::IQ1_S | DType::IQ2_XXS | DType::IQ2_XS | DType::IQ2_S => &[0],
            DType::IQ3_XXS | DType::IQ3_S => &[0],
            DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
            DType::Q2_K => &[80, 82],
            DType::Q3_K => &[108],
            DType::Q6_K => &[208],
            DType::TQ2_0 => &[64],
            DType::TQ1_0 => &[52],
            DType::MXFP4 | DType::IQ1_M => &[],
            _ => return None,
        })
    }

    /// Whether this is a block-quantized dtype.
    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Whether this is one of frugal's in-memory x4 layouts ([`x4`]).
    pub fn is_x4(self) -> bool {
        matches!(self, DType::Q4_0X4 | DType::Q8_0X4)
    }

    /// Whether this is a float element dtype (f32, f16, bf16).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Bytes of one row of `cols` elements; an error if `cols` is not a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Result<usize, LayoutError> {
        let block = self.block_len();
        if !cols.is_multiple_of(block) {
            return Err(LayoutError::Ragged {
                dtype: self.name(),
                block,
                cols,
            });
        }
        (cols / block)
            .checked_mul(self.block_bytes())
            .ok_or_else(|| LayoutError::Overflow(vec![cols]))
    }

    /// Bytes of a row-major tensor of `shape`, blocks running along the last dimension (a
    /// scalar shape `[]` is one element).
    pub fn tensor_bytes(self, shape: &[usize]) -> Result<usize, LayoutError> {
        let (cols, outer) = match shape.split_last() {
            Some((&c, rest)) => (c, rest),
            None => (1, &[][..]),
        };
        let row = self.row_bytes(cols)?;
        outer
            .iter()
            .try_fold(row, |a, &d| a.checked_mul(d))
            .ok_or_else(|| LayoutError::Overflow(shape.to_vec()))
    }

    /// Lower-case name as used on the command line and in reports.
    pub fn name(self) -> &'static str {
        layout(self).1
    }

    /// The dtype of a [`DType::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name))
    }
}

/// Per-row scales of a quantized matrix, borrowed from the map in their stored float dtype:
/// row `r` of the matrix stands for `stored[r, ..] * scale[r]`.
#[derive(Clone, Copy, Debug)]
pub struct Scale<'a> {
    /// Raw little-endian bytes, exactly `rows * dtype.block_bytes()` long.
    pub data: &'a [u8],
    /// A float dtype.
    pub dtype: DType,
}

impl Scale<'_> {
    /// The scale of row `r` as f32.
    pub fn get(&self, r: usize) -> f32 {
        let s = self.dtype.block_bytes();
        let b = &self.data[r * s..(r + 1) * s];
        match self.dtype {
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            d => unreachable!("scales are floats, not {}", d.name()),
        }
    }
}

/// A borrowed row-major matrix `[rows, cols]` of weights in their stored dtype.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    /// Raw little-endian bytes, exactly `rows * dtype.row_bytes(cols)` long.
    pub data: &'a [u8],
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    /// Per-row scales (int8 weights); the products are multiplied by them after the dot.
    pub scale: Option<Scale<'a>>,
    /// Bytes per row.
    stride: usize,
}

impl<'a> MatRef<'a> {
    /// Wraps raw bytes; panics on a programming error (callers validate shapes first, or use
    /// [`MatRef::try_new`]).
    pub fn new(data: &'a [u8], dtype: DType, rows: usize, cols: usize) -> Self {
        match Self::try_new(data, dtype, rows, cols) {
            Ok(m) => m,
            Err(e) => panic!("MatRef::new: {e}"),
        }
    }

    /// Wraps raw bytes after checking that `cols` is a whole number of `dtype`'s blocks and
    /// that `data` holds exactly `rows` rows.
    pub fn try_new(data: &'a [u8], dtype: DType, rows: usize, cols: usize) -> anyhow::Result<Self> {
        let stride = dtype.row_bytes(cols)?;
        let want = stride
            .checked_mul(rows)
            .ok_or_else(|| LayoutError::Overflow(vec![rows, cols]))?;
        anyhow::ensure!(
            data.len() == want,
            "a [{rows}, {cols}] {} matrix takes {want} bytes, but {} were given",
            dtype.name(),
            data.len()
        );
        anyhow::ensure!(
            !dtype.is_x4() || x4::fits(rows, cols),
            "a {} matrix has whole quads of rows of whole blocks, not [{rows}, {cols}]",
            dtype.name()
        );
        Ok(MatRef {
            data,
            dtype,
            rows,
            cols,
            scale: None,
            stride,
        })
    }

    /// Attaches per-row scales (`rows` values of the float dtype `dtype`).
    pub fn with_scale(mut self, data: &'a [u8], dtype: DType) -> Self {
        assert!(dtype.is_float(), "scales are floats");
        assert_eq!(
            data.len(),
            self.rows * dtype.block_bytes(),
            "scale byte length"
        );
        self.scale = Some(Scale { data, dtype });
        self
    }

    /// Bytes held in the map: the matrix and its scales.
    pub fn stored_bytes(&self) -> usize {
        self.data.len() + self.scale.map_or(0, |s| s.data.len())
    }

    /// Bytes per row.
    pub fn row_stride(&self) -> usize {
        self.stride
    }

    /// The bytes of row `r` (not for the x4 layouts, whose rows are interleaved).
    pub fn row_bytes(&self, r: usize) -> &'a [u8] {
        debug_assert!(!self.dtype.is_x4(), "x4 rows are not contiguous");
        let n = self.stride;
        &self.data[r * n..(r + 1) * n]
    }

    /// The bytes that hold row `r`: the row, or for an x4 layout its quad of 4 rows.
    pub fn row_span(&self, r: usize) -> &'a [u8] {
        if self.dtype.is_x4() {
            x4::row_span(self.data, self.stride, r)
        } else {
            self.row_bytes(r)
        }
    }

    /// A view of rows `start..end` (no copy).
    pub fn rows_range(&self, start: usize, end: usize) -> MatRef<'a> {
        assert!(
            !self.dtype.is_x4() || (start.is_multiple_of(4) && end.is_multiple_of(4)),
            "x4 rows go in quads"
        );
        let n = self.stride;
        MatRef {
            data: &self.data[start * n..end * n],
            dtype: self.dtype,
            rows: end - start,
            cols: self.cols,
            scale: self.scale.map(|s| Scale {
                data: &s.data[start * s.dtype.block_bytes()..end * s.dtype.block_bytes()],
                dtype: s.dtype,
            }),
            stride: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_the_enum() {
        for (i, l) in LAYOUTS.iter().enumerate() {
            assert_eq!(l.0 as usize, i, "{}", l.1);
            assert_eq!(
                DType::from_name(l.1).filter(|d| !d.is_x4()),
                (!l.0.is_x4()).then_some(l.0)
            );
        }
        assert!(!DType::ALL.iter().any(|d| d.is_x4()));
    }
}
