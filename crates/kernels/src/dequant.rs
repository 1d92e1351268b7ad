//! Products of block types that have no integer kernel yet: each task dequantizes a row once
//! into f32 (`frugal_quant::dequantize_row`, the reference the block types are tested against)
//! and takes its dot product with every token's activations. Correct for every type
//! `frugal_quant` reads, at the cost of the conversion; the integer kernels (`qmat.rs`,
//! `x86q/`) replace it type by type.

use crate::split::par_row_tasks;
use crate::MatRef;

/// `y = x W^T` for `n` tokens of a block-quantized `w`, through f32 rows.
pub(crate) fn matmul(w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
    let cols = w.cols;
    par_row_tasks(w.rows, cols, n, 1, y, |r0, outs| {
        let mut row = vec![0f32; cols];
        for i in 0..outs[0].len() {
            frugal_quant::dequantize_row(w.row_bytes(r0 + i), w.dtype, &mut row);
            for (t, out) in outs.iter_mut().enumerate() {
                out[i] = crate::ops::dot(&row, &x[t * cols..(t + 1) * cols]);
            }
        }
    });
}
