//! How a product's rows are split over the rayon pool: one task per block of consecutive rows,
//! each computing its rows for every token. The float driver (`tile.rs`), the quantized one
//! (`qmat::drive`) and the bf16 fast paths take their blocks from here, one implementation:
//! the block size ([`rows_per_task`]) decides which rows each task computes, so it is kept
//! unchanged (results are bit-identical across builds only if the tasks are).

use crate::MatRef;
use rayon::prelude::*;

/// Rows of a register tile: tasks are whole tiles (the float kernels' tiles, [`crate::tile`]).
pub(crate) const TILE_R: usize = 4;

/// Rows per rayon task, a multiple of [`TILE_R`]: enough tasks to balance, not so many that
/// scheduling costs show.
pub(crate) fn rows_per_task(rows: usize, cols: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let tasks = threads * 8;
    let mut rpt = rows.div_ceil(tasks);
    // At least ~32k multiply-adds per task.
    let min_rows = (32 * 1024 / (cols * n).max(1)).max(1);
    rpt = rpt.max(min_rows);
    rpt.div_ceil(TILE_R) * TILE_R
}

/// Rows of one task of a `rows x cols` product of `n` tokens whose kernel takes rows `align`
/// at a time: [`rows_per_task`] rounded up to a multiple of `align`.
fn task_rows(rows: usize, cols: usize, n: usize, align: usize) -> usize {
    rows_per_task(rows, cols, n).div_ceil(align) * align
}

/// The outputs of tasks of `rpt` rows: task `b` owns rows `b * rpt..` of every token's output
/// in `y` (`n` tokens of `rows` values, token-major), gathered as one slice per token.
fn task_outputs(y: &mut [f32], rows: usize, n: usize, rpt: usize) -> Vec<Vec<&mut [f32]>> {
    let mut per_task: Vec<Vec<&mut [f32]>> = (0..rows.div_ceil(rpt))
        .map(|_| Vec::with_capacity(n))
        .collect();
    for yt in y.chunks_mut(rows) {
        for (b, s) in yt.chunks_mut(rpt).enumerate() {
            per_task[b].push(s);
        }
    }
    per_task
}

/// Runs `f(r0, outs)` in parallel for every task of a `rows x cols` product of `n` tokens into
/// `y` (token-major): rows `r0..r0 + outs[0].len()`, token `t`'s outputs in `outs[t]`, tasks of
/// [`rows_per_task`] rows rounded up to a multiple of `align`. One token: each task's output is
/// a chunk of `y`, taken as it is (nothing gathered, nothing allocated).
pub(crate) fn par_row_tasks<F>(
    rows: usize,
    cols: usize,
    n: usize,
    align: usize,
    y: &mut [f32],
    f: F,
) where
    F: Fn(usize, &mut [&mut [f32]]) + Sync + Send,
{
    if rows == 0 || n == 0 {
        return;
    }
    let rpt = task_rows(rows, cols, n, align);
    if n == 1 {
        y.par_chunks_mut(rpt)
            .enumerate()
            .for_each(|(b, ys)| f(b * rpt, &mut [ys]));
        return;
    }
    task_outputs(y, rows, n, rpt)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut outs)| f(b * rpt, &mut outs));
}

/// One parallel task: matrix `mat` of a batch, its rows `r0..r0 + outs[0].len()`, and token
/// `t`'s outputs for those rows in `outs[t]`.
pub(crate) struct RowTask<'m, 'w, 'y> {
    pub mat: &'m MatRef<'w>,
    pub r0: usize,
    pub outs: Vec<&'y mut [f32]>,
}

/// Splits every `(matrix, y)` of a batch into the tasks of [`par_row_tasks`] (multiples of
/// `align` rows) with their output slices, ready to run in one parallel pass.
pub(crate) fn row_tasks<'s, 'm, 'w>(
    items: &'s mut [(&'m MatRef<'w>, &mut [f32])],
    n: usize,
    align: usize,
) -> Vec<RowTask<'m, 'w, 's>> {
    let mut tasks = Vec::new();
    for (w, y) in items.iter_mut() {
        let rows = w.rows;
        if rows == 0 || n == 0 {
            continue;
        }
        let rpt = task_rows(rows, w.cols, n, align);
        for (b, outs) in task_outputs(y, rows, n, rpt).into_iter().enumerate() {
            tasks.push(RowTask {
                mat: w,
                r0: b * rpt,
                outs,
            });
        }
    }
    tasks
}
