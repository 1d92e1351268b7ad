//! The float products' register-tile driver: the [`Kernel`] trait each instruction set
//! implements (`scalar.rs`, `x86.rs`), and [`run`], which gives each task of the row split
//! ([`crate::split`]) its rows and walks them in tiles of up to [`TILE_R`] rows x
//! `Kernel::TMAX` tokens.

use crate::split::par_row_tasks;
pub(crate) use crate::split::TILE_R;
use crate::MatRef;

/// Largest register tile: rows x tokens. Every kernel's `TMAX` is at most `TILE_T`.
pub(crate) const TILE_T: usize = 8;

/// Accumulator block a kernel adds one tile's dot products into: `acc[r][t]`.
pub(crate) type Acc = [[f32; TILE_T]; TILE_R];

/// One instruction-set implementation of the register-tile product.
pub(crate) trait Kernel: Sync {
    /// Activation element type (f32, or bf16 bits for the fast path).
    type X: Copy + Sync;
    /// Most tokens in one register tile (at most [`TILE_T`]).
    const TMAX: usize;

    /// `acc[r][t] += sum_{c in c0..c1} w[r0 + r, c] * x[(t0 + t) * w.cols + c]`
    /// for `r < nr <= TILE_R`, `t < nt <= TMAX`. Handles any `c0..c1`, ragged tails included.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        w: &MatRef,
        r0: usize,
        nr: usize,
        x: &[Self::X],
        t0: usize,
        nt: usize,
        c0: usize,
        c1: usize,
        acc: &mut Acc,
    );
}

/// Most tokens computed in one pass over the weights.
const TOKEN_GROUP: usize = 64;

/// Drives a kernel over the whole product, in parallel over the row split.
pub(crate) fn run<K: Kernel>(k: &K, w: &MatRef, x: &[K::X], n: usize, y: &mut [f32]) {
    let rows = w.rows;
    if rows == 0 || n == 0 {
        return;
    }
    if n > TOKEN_GROUP {
        // Bounds the activations streamed per row tile; the weights are re-read once per group,
        // which costs little next to 2 * TOKEN_GROUP flops per weight.
        let (xc, yc) = (TOKEN_GROUP * w.cols, TOKEN_GROUP * rows);
        for (xg, yg) in x.chunks(xc).zip(y.chunks_mut(yc)) {
            run(k, w, xg, yg.len() / rows, yg);
        }
        return;
    }
    // rows_per_task is already a multiple of TILE_R: no further alignment.
    par_row_tasks(rows, w.cols, n, 1, y, |r0, outs| {
        block(k, w, x, n, r0, outs)
    });
}

/// Computes rows `r0 .. r0 + outs[0].len()` for all `n` tokens into `outs[t]`: row tiles
/// outer, so a tile's converted weights stay in L1 while the token tiles' activations stream
/// from L2/L3. Whole rows at a time: each tile ends with a horizontal reduction of its
/// accumulators, and measurements showed splitting the columns into chunks (to keep the
/// activations in L2) costs more in extra reductions than it gains, up to 64 tokens.
fn block<K: Kernel>(k: &K, w: &MatRef, x: &[K::X], n: usize, r0: usize, outs: &mut [&mut [f32]]) {
    let nrows = outs[0].len();
    let mut rt = 0;
    while rt < nrows {
        let nr = TILE_R.min(nrows - rt);
        let mut tt = 0;
        while tt < n {
            let nt = K::TMAX.min(n - tt);
            let mut acc: Acc = [[0.0; TILE_T]; TILE_R];
            k.tile(w, r0 + rt, nr, x, tt, nt, 0, w.cols, &mut acc);
            for (t, o) in outs[tt..tt + nt].iter_mut().enumerate() {
                for (r, a) in acc[..nr].iter().enumerate() {
                    o[rt + r] = a[t];
                }
            }
            tt += nt;
        }
        rt += nr;
    }
}
