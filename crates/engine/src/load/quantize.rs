//! Quantize while loading: every weight matrix of a float (or int8) checkpoint is converted to
//! a block format as it is read, and nothing of the full-precision model is kept.
//!
//! The quantized matrices live in one anonymous mapping sized from the headers (their exact
//! block bytes) before any data is read; its pages become resident only as they are written.
//! Each matrix is read in row chunks of [`CHUNK_BYTES`] by a reader thread (`pread` into one of
//! two chunk buffers, the file's pages then dropped from the page cache with
//! `POSIX_FADV_DONTNEED`), while the previous chunk is quantized on all threads
//! ([`frugal_quant::quantize_rows_par`]) straight into its place. So the peak is the quantized
//! bytes plus two chunks in flight, the source file's pages never accumulate, and the disk is
//! kept busy with large sequential reads while the CPU quantizes.

use super::mix::Matrix;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use frugal_formats::{MappedFile, StoredDType, TensorIndex};
use frugal_model::bind::{self, Binding};
use frugal_model::tensors::Role;
use frugal_tensor::{DType, MatRef};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Source bytes read, quantized and released per step.
pub const CHUNK_BYTES: usize = 8 << 20;

/// The chunks of the source matrices in the order they are quantized, read by a thread one
/// chunk ahead of the quantizer into two recycled buffers.
struct Source {
    chunks: std::sync::mpsc::Receiver<Result<Vec<u8>>>,
    back: std::sync::mpsc::Sender<Vec<u8>>,
}

impl Source {
    /// The next chunk's bytes.
    fn next(&self) -> Result<Vec<u8>> {
        self.chunks
            .recv()
            .map_err(|_| anyhow::anyhow!("the reader thread stopped"))?
    }

    /// Hands a used buffer back to the reader.
    fn done(&self, buf: Vec<u8>) {
        let _ = self.back.send(buf);
    }
}

/// The bytes of one source row of `e`'s matrix, and the row ranges `r0..r1` in which it is
/// read (by [`with_source`]'s reader) and quantized (by [`quantize_entry`]), in order: about
/// [`CHUNK_BYTES`] each, at least one row.
fn row_chunks(index: &TensorIndex, e: &Entry) -> (usize, impl Iterator<Item = (usize, usize)>) {
    let in_row = index.tensors[&e.name].len / e.rows.max(1);
    let mut step = (CHUNK_BYTES / in_row.max(1)).max(1);
    if e.dtype.is_x4() {
        step = step.next_multiple_of(frugal_quant::x4::QUAD);
    }
    let rows = e.rows;
    (
        in_row,
        (0..rows)
            .step_by(step)
            .map(move |r0| (r0, (r0 + step).min(rows))),
    )
}

/// Runs `f` with a [`Source`] of `plan`'s matrices (in order, chunk by chunk as
/// [`quantize_entry`] consumes them) fed by a reader thread.
fn with_source<R>(
    index: &TensorIndex,
    plan: &QuantPlan,
    f: impl FnOnce(&Source) -> Result<R>,
) -> Result<R> {
    let mut reads = Vec::new();
    for e in &plan.entries {
        let t = &index.tensors[&e.name];
        let (in_row, chunks) = row_chunks(index, e);
        for (r0, r1) in chunks {
            reads.push((t.file, t.offset + r0 * in_row, (r1 - r0) * in_row));
        }
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>>>(1);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..2 {
        let _ = back_tx.send(Vec::new());
    }
    std::thread::scope(|sc| {
        sc.spawn(move || {
            for (file, off, len) in reads {
                let Ok(mut buf) = back_rx.recv() else { return };
                let f = &index.files[file];
                buf.resize(len, 0);
                let r = f.read_at(&mut buf, off as u64);
                f.drop_cache(&f.map[off..off + len]);
                let failed = r.is_err();
                if tx.send(r.map(|()| buf)).is_err() || failed {
                    return;
                }
            }
        });
        let src = Source {
            chunks: rx,
            back: back_tx,
        };
        f(&src)
        // `src` drops here: the reader's channels close and it stops.
    })
}

pub use super::mix::QuantKind;

/// The dtype the loader holds a `rows x cols` matrix of plain block dtype `plain` in: Q4_0 and
/// Q8_0 in their x4 layouts where this CPU's kernels read them (the same bytes, see
/// [`frugal_quant::x4`]), any other as it is.
pub fn layout(plain: DType, rows: usize, cols: usize) -> DType {
    match plain {
        DType::Q4_0 | DType::Q8_0 => frugal_kernels::layout_for(plain, rows, cols),
        d => d,
    }
}

/// One quantized matrix: where it lies in the arena.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    offset: usize,
    len: usize,
    dtype: DType,
    rows: usize,
    cols: usize,
}

/// The plan of a quantized load, from headers alone: every matrix's target dtype and bytes.
#[derive(Clone, Debug)]
pub struct QuantPlan {
    entries: Vec<Entry>,
    /// Bytes of the quantized matrices (the arena).
    pub quantized_bytes: u64,
    /// Bytes of the source matrices read and released.
    pub source_bytes: u64,
}

impl QuantPlan {
    /// Plans `kind` for every matrix `binding` binds from `index`, in file order: each
    /// matrix's dtype as llama.cpp's file type chooses it ([`QuantKind::choose`]), from the
    /// headers alone.
    pub fn new(binding: &Binding, index: &TensorIndex, kind: QuantKind) -> Result<Self> {
        let stored: Vec<_> = binding
            .stored
            .iter()
            // 3-D tensors of experts stay in place as stored (quantizing them while loading
            // is yet to come).
            .filter(|s| s.matrix && s.shape.len() == 2 && index.tensors.contains_key(&s.name))
            .collect();
        let layers = stored
            .iter()
            .filter_map(|s| match s.role {
                Role::Layer(l) => Some(l + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let mats: Vec<Matrix> = stored
            .iter()
            .map(|s| Matrix {
                keys: &s.keys,
                role: s.role,
                cols: index.tensors[&s.name].shape[1],
            })
            .collect();
        let chosen = kind.choose(&mats, layers);
        // Matrices already stored in a block format (a quantized GGUF file) stay as they are,
        // used in place: re-quantizing blocks would only lose precision. Only float (and int8)
        // matrices are converted, so `--quant` on a Q4_K_M file quantizes nothing. The one
        // exception is lossless: Q4_0 and Q8_0 blocks the mix also chooses are rearranged into
        // the layout the kernels stream fastest where this CPU has one (Q4_0X4, Q8_0X4: the
        // same bytes). Matrices the mix leaves as stored (rows not whole blocks of 32) stay too.
        let mut planned: Vec<(&str, DType)> = Vec::new();
        for (s, plain) in stored.iter().zip(chosen) {
            let Some(plain) = plain else { continue };
            let t = &index.tensors[&s.name];
            let target = layout(plain, t.shape[0], t.shape[1]);
            let convert = match t.dtype {
                StoredDType::Known(d @ (DType::Q4_0 | DType::Q8_0)) => {
                    frugal_quant::x4::plain_of(target) == Some(d)
                }
                StoredDType::Known(d) => d.block_len() == 1,
                StoredDType::Other(_) => true,
            };
            if convert {
                planned.push((&s.name, target));
            }
        }
        planned.sort_by_key(|(n, _)| {
            let t = &index.tensors[*n];
            (t.file, t.offset)
        });
        let mut entries = Vec::with_capacity(planned.len());
        let (mut offset, mut src) = (0usize, 0u64);
        for (name, dtype) in planned {
            let t = &index.tensors[name];
            let (rows, cols) = (t.shape[0], t.shape[1]);
            let row = dtype.row_bytes(cols).with_context(|| {
                format!(
                    "{}: tensor `{name}` cannot be quantized to {}",
                    index.path_of(t).display(),
                    dtype.name()
                )
            })?;
            let len = rows.checked_mul(row).with_context(|| {
                format!(
                    "{}: tensor `{name}` of {rows} rows is too large to quantize",
                    index.path_of(t).display()
                )
            })?;
            entries.push(Entry {
                name: name.to_string(),
                offset,
                len,
                dtype,
                rows,
                cols,
            });
            // Cache-line aligned starts.
            offset = (offset + len).div_ceil(64) * 64;
            src += t.len as u64;
        }
        Ok(QuantPlan {
            entries,
            quantized_bytes: offset as u64,
            source_bytes: src,
        })
    }

    /// The dtype matrix `name` is quantized to (`None`: used as stored).
    pub fn dtype_of(&self, name: &str) -> Option<DType> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.dtype)
    }

    /// Every matrix's stored name and quantized bytes.
    pub fn matrix_bytes(&self) -> Vec<(String, u64)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.len as u64))
            .collect()
    }

    /// The dtypes used, with the bytes of each.
    pub fn bytes_by_dtype(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for e in &self.entries {
            *m.entry(e.dtype.name()).or_insert(0) += e.len as u64;
        }
        m
    }
}

/// Where quantized matrices live.
enum Store {
    /// Anonymous memory (the whole quantized model resident).
    Anon(memmap2::MmapMut),
    /// A cache file, mapped read-only, so its layers can be streamed like a checkpoint's.
    File(MappedFile),
}

/// Quantized matrices, in one anonymous mapping or one mapped cache file.
pub struct Quantized {
    store: Store,
    entries: Vec<Entry>,
    /// The request this was made for.
    pub kind: QuantKind,
}

impl Quantized {
    /// Carries out `plan`: reads, quantizes and releases every matrix chunk by chunk (see the
    /// module doc), with a progress bar on a terminal.
    pub fn build(index: &TensorIndex, plan: &QuantPlan, kind: QuantKind) -> Result<Self> {
        let mut arena = memmap2::MmapMut::map_anon(plan.quantized_bytes.max(1) as usize)
            .context("cannot reserve memory for the quantized weights")?;
        // 2 MiB pages where the kernel allows them: fewer page faults while writing, fewer TLB
        // misses while decoding. Advice only.
        #[cfg(target_os = "linux")]
        let _ = arena.advise(memmap2::Advice::HugePage);
        let progress =
            Progress::bytes(&format!("quantizing to {}", kind.name()), plan.source_bytes);
        with_source(index, plan, |src| {
            for e in &plan.entries {
                let dst = &mut arena[e.offset..e.offset + e.len];
                let out_row = e.len / e.rows.max(1);
                quantize_entry(index, e, &progress, src, |r0, r1, f| {
                    f(&mut dst[r0 * out_row..r1 * out_row])
                })?;
            }
            Ok(())
        })?;
        progress.finish();
        Ok(Quantized {
            store: Store::Anon(arena),
            entries: plan.entries.clone(),
            kind,
        })
    }

    /// Like [`Quantized::build`], but the quantized matrices go to the file `path` (written
    /// sequentially through one chunk-sized buffer, then renamed into place) and are used
    /// from its memory map, so they can be streamed. A file already at `path` with the plan's
    /// size is reused: it was made from the same source (see [`cache_path`]).
    pub fn build_file(
        index: &TensorIndex,
        plan: &QuantPlan,
        kind: QuantKind,
        path: &Path,
    ) -> Result<Self> {
        let size = plan.quantized_bytes.max(1);
        let reuse = std::fs::metadata(path).is_ok_and(|m| m.len() == size);
        if !reuse {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
            }
            let progress =
                Progress::bytes(&format!("quantizing to {}", kind.name()), plan.source_bytes);
            frugal_formats::output::atomic_file(path, true, |tmp, file| {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                let mut written = 0usize;
                let mut buf = Vec::new();
                with_source(index, plan, |src| {
                    for e in &plan.entries {
                        out.write_all(&vec![0u8; e.offset - written])?;
                        let out_row = e.len / e.rows.max(1);
                        quantize_entry(index, e, &progress, src, |r0, r1, f| {
                            buf.clear();
                            buf.resize((r1 - r0) * out_row, 0);
                            f(&mut buf)?;
                            out.write_all(&buf)
                                .with_context(|| format!("{}: cannot write", tmp.display()))
                        })?;
                        written = e.offset + e.len;
                    }
                    Ok(())
                })?;
                out.write_all(&vec![0u8; size as usize - written])?;
                out.into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .with_context(|| format!("{}: cannot write", tmp.display()))
            })?;
            progress.finish();
        }
        let file = MappedFile::open(path)?;
        // Streamed layers are read whole: in 2 MiB folios.
        file.advise_hugepage();
        Ok(Quantized {
            store: Store::File(file),
            entries: plan.entries.clone(),
            kind,
        })
    }

    /// The mapped cache file, when the matrices live in one.
    pub fn file(&self) -> Option<&MappedFile> {
        match &self.store {
            Store::File(f) => Some(f),
            Store::Anon(_) => None,
        }
    }

    fn data(&self) -> &[u8] {
        match &self.store {
            Store::Anon(m) => m,
            Store::File(f) => &f.map,
        }
    }

    /// The quantized matrices by stored name, for `frugal_model::arch::model`.
    pub fn matrices(&self) -> BTreeMap<String, MatRef<'_>> {
        self.entries
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    MatRef::new(
                        &self.data()[e.offset..e.offset + e.len],
                        e.dtype,
                        e.rows,
                        e.cols,
                    ),
                )
            })
            .collect()
    }

    /// Bytes of the quantized matrices.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.len as u64).sum()
    }
}

/// Quantizes the matrix of `e` chunk by chunk: for rows `r0..r1`, `place(r0, r1, q)` is given a
/// function `q` that fills the chunk's destination bytes; the chunk's source pages are then
/// read from `src` (which reads it ahead and drops the file's pages).
fn quantize_entry(
    index: &TensorIndex,
    e: &Entry,
    progress: &Progress,
    src: &Source,
    mut place: impl FnMut(usize, usize, &mut dyn FnMut(&mut [u8]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let t = &index.tensors[&e.name];
    let (in_row, chunks) = row_chunks(index, e);
    let out_row = e.len / e.rows.max(1);
    let scale = match t.dtype {
        StoredDType::Known(DType::I8) => {
            let s = &index.tensors[&bind::scaler_name(&e.name)];
            match s.dtype {
                StoredDType::Known(d) => Some((index.bytes(s), d)),
                StoredDType::Other(_) => unreachable!("checked by matrix_names"),
            }
        }
        _ => None,
    };
    let src_dtype = match t.dtype {
        StoredDType::Known(d) => d,
        StoredDType::Other(ref o) => bail!(
            "{}: tensor `{}` is stored as {o}, which cannot be quantized",
            index.path_of(t).display(),
            e.name
        ),
    };
    for (r0, r1) in chunks {
        let chunk = src.next()?;
        let s = &chunk[..];
        debug_assert_eq!(s.len(), (r1 - r0) * in_row);
        place(r0, r1, &mut |d: &mut [u8]| {
            match scale {
                None if src_dtype.is_quantized() => {
                    // Blocks rearranged into their x4 layout, not quantized again (see
                    // QuantPlan::new).
                    let quad = frugal_quant::x4::QUAD * in_row;
                    d.par_chunks_mut(quad)
                        .zip(s.par_chunks(quad))
                        .for_each(|(o, i)| frugal_quant::x4::interleave_quad(src_dtype, i, o));
                }
                None => {
                    frugal_quant::quantize_rows_par(s, src_dtype, e.cols, e.dtype, d)
                        .with_context(|| {
                            format!("{}: tensor `{}`", index.path_of(t).display(), e.name)
                        })?;
                }
                Some((sb, sd)) => {
                    // int8 with per-row scales: dequantize a row, quantize it again.
                    let m = MatRef::new(s, DType::I8, r1 - r0, e.cols)
                        .with_scale(&sb[r0 * sd.block_bytes()..r1 * sd.block_bytes()], sd);
                    if let Some(plain_dtype) = frugal_quant::x4::plain_of(e.dtype) {
                        // Plain blocks a quad of rows at a time, then interleaved.
                        let quad = frugal_quant::x4::QUAD;
                        d.par_chunks_mut(quad * out_row).enumerate().for_each_init(
                            || (vec![0f32; e.cols], vec![0u8; quad * out_row]),
                            |(row, plain), (q, out)| {
                                for (i, p) in plain.chunks_exact_mut(out_row).enumerate() {
                                    frugal_quant::row_to_f32(&m, quad * q + i, row);
                                    frugal_quant::quantize_row(row, plain_dtype, p);
                                }
                                frugal_quant::x4::interleave_quad(plain_dtype, plain, out);
                            },
                        );
                    } else {
                        d.par_chunks_mut(out_row).enumerate().for_each_init(
                            || vec![0f32; e.cols],
                            |row, (r, out)| {
                                frugal_quant::row_to_f32(&m, r, row);
                                frugal_quant::quantize_row(row, e.dtype, out);
                            },
                        );
                    }
                }
            }
            Ok(())
        })?;
        progress.add(s.len() as u64);
        src.done(chunk);
    }
    Ok(())
}

/// Where the quantized copy of `index`'s checkpoint for `kind` is cached: a file under the
/// user's cache folder named by a hash of the source files' paths, sizes and modification
/// times, the kind, and this layout's version (and whether Q4_0 is laid out as
/// [`DType::Q4_0X4`] and [`DType::Q8_0X4`]), so a changed source or another layout never
/// meets a stale copy.
pub fn cache_path(index: &TensorIndex, kind: QuantKind) -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // v2: Q4_0 and Q8_0 may be in their x4 layouts, which depends on this CPU's kernels.
    // v3: a dtype per matrix as llama.cpp's file types choose them.
    let layout = frugal_kernels::reads_x4();
    ("frugal-quant-v3", kind.name(), layout).hash(&mut h);
    for f in &index.files {
        let p = std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone());
        p.hash(&mut h);
        if let Ok(m) = std::fs::metadata(&p) {
            m.len().hash(&mut h);
            if let Ok(t) = m.modified() {
                t.hash(&mut h);
            }
        }
    }
    Ok(super::cache_dir()
        .join("quant")
        .join(format!("{:016x}-{}.bin", h.finish(), kind.name())))
}
