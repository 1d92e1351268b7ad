//! Checkpoint formats, each behind one [`TensorIndex`]: a map from tensor name to
//! (file, dtype, shape, byte range) built from headers alone, with every file memory-mapped.
//! No tensor data is read while the index is built. The readers know no model architecture:
//! which tensors a model needs and what a GGUF file's metadata means is the model's business.
//!
//! Threat model: checkpoints come from strangers. Every length, count and offset in a header is
//! checked against the bytes that back it before anything is sized by it; a tensor must lie
//! inside its file and overlap no other; pickles run through an allowlist interpreter that
//! builds tensor descriptions and nothing else. Errors name the file and the tensor or field.
//! Data is never copied: tensors are byte ranges of read-only maps (the one `unsafe` here).

pub mod gguf;
pub mod gguf_write;
pub mod output;
pub mod pickle;
pub mod pytorch;
pub mod safetensors;

use anyhow::{bail, Context, Result};
use frugal_tensor::DType;
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Element type of a stored tensor. Types the kernels cannot use are kept by name so errors can
/// say what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredDType {
    /// A dtype the kernels read in place (a float, or int8 with per-row scales).
    Known(DType),
    /// Anything else, by its name in the file.
    Other(String),
}

impl StoredDType {
    /// Bytes of a tensor of `shape`, when the dtype is known: `None` for unknown dtypes,
    /// `Some(Err(..))` when `shape` cannot be stored in it (a quantized row that is not a whole
    /// number of blocks) or is too large.
    pub fn tensor_bytes(
        &self,
        shape: &[usize],
    ) -> Option<Result<usize, frugal_tensor::LayoutError>> {
        match self {
            StoredDType::Known(d) => Some(d.tensor_bytes(shape)),
            StoredDType::Other(_) => None,
        }
    }
}

impl std::fmt::Display for StoredDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredDType::Known(d) => f.write_str(d.name()),
            StoredDType::Other(s) => f.write_str(s),
        }
    }
}

/// Where one tensor lies.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Index into [`TensorIndex::files`].
    pub file: usize,
    pub dtype: StoredDType,
    pub shape: Vec<usize>,
    /// Absolute byte offset in the file.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A memory-mapped checkpoint file.
pub struct MappedFile {
    pub path: PathBuf,
    pub map: Mmap,
    /// The open file, kept for page-cache advice ([`TensorIndex::drop_cache`]).
    file: File,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        // SAFETY: the map is read-only (shared, never written by frugal). If another process
        // truncates the file while it is mapped, reads may fault (SIGBUS), which is the documented
        // limit of every mmap-based loader. Checkpoints are not expected to change while in use.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("{}: cannot memory-map", path.display()))?;
        Ok(MappedFile {
            path: path.to_path_buf(),
            map,
            file,
        })
    }

    /// Asks for the map's pages not yet cached to come in 2 MiB folios that the kernel maps
    /// with one TLB entry each: decoding reads every weight once per token, and with 4 KiB
    /// pages it takes a TLB miss every 4 KiB. Only for a model about to run: reading headers
    /// through a hugepage-advised map faults a whole folio per header read. Advice only (a
    /// no-op where file THP is off).
    pub fn advise_hugepage(&self) {
        let _ = self.map.advise(memmap2::Advice::HugePage);
    }

    /// Drops the pages of `bytes` (a slice of this map) from the process, as a streaming reader
    /// does once it has consumed them: resident memory stays at what is in use. Only whole
    /// pages inside the slice are dropped; a later read faults them in again from the file, so
    /// the data seen never changes.
    pub fn release(&self, bytes: &[u8]) {
        let page = 4096usize;
        let Some((start, len)) = self.range_of(bytes) else {
            return;
        };
        let lo = start.div_ceil(page) * page;
        let hi = (start + len) / page * page;
        if hi > lo {
            // SAFETY: MADV_DONTNEED on a read-only file mapping only unmaps this process's pages
            // of the range; the mapping stays valid and later reads refault the unchanged file
            // contents, so no reference into the map observes a change.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo)
            };
        }
    }

    /// Asks the kernel to read `bytes` (a slice of this map) ahead, so the reads of a streaming
    /// pass overlap its computation. Advice only: errors are ignored.
    pub fn will_need(&self, bytes: &[u8]) {
        if let Some((start, len)) = self.range_of(bytes) {
            let _ = self.map.advise_range(memmap2::Advice::WillNeed, start, len);
        }
    }

    /// Drops the file's clean pages of `bytes` from the page cache (`POSIX_FADV_DONTNEED`), so
    /// a pass that reads a file once does not leave it all cached. Advice only.
    pub fn drop_cache(&self, bytes: &[u8]) {
        if let Some((start, len)) = self.range_of(bytes) {
            let _ = rustix::fs::fadvise(
                &self.file,
                start as u64,
                std::num::NonZeroU64::new(len as u64),
                rustix::fs::Advice::DontNeed,
            );
        }
    }

    /// Undoes [`MappedFile::advise_random`] for `bytes` (a slice of this map): a matrix still
    /// used in place beside quantized ones is read whole, so faults should read ahead.
    pub fn advise_normal(&self, bytes: &[u8]) {
        if let Some((start, len)) = self.range_of(bytes) {
            let _ = self.map.advise_range(memmap2::Advice::Normal, start, len);
        }
    }

    /// Asks the kernel not to read around faults in this map (`MADV_RANDOM`, and no 2 MiB
    /// folios, which would be read whole whatever the advice): what is still read through it
    /// (norm vectors beside quantized matrices) brings in its own pages, not megabytes of the
    /// neighbours'. Advice only.
    pub fn advise_random(&self) {
        let _ = self.map.advise(memmap2::Advice::NoHugePage);
        let _ = self.map.advise(memmap2::Advice::Random);
    }

    /// Advice for a table read a row per token (`bytes`, a slice of this map): no 2 MiB folios
    /// and no read-around, so a row brings in its own pages only, not megabytes of rows no
    /// token asked for. Advice only.
    pub fn advise_rows(&self, bytes: &[u8]) {
        if let Some((start, len)) = self.range_of(bytes) {
            let _ = self
                .map
                .advise_range(memmap2::Advice::NoHugePage, start, len);
            let _ = self.map.advise_range(memmap2::Advice::Random, start, len);
        }
    }

    /// Reads `buf.len()` bytes at `offset` with `pread` (the quantizer's source reads: large
    /// sequential reads keep the disk busier than page faults on the map do).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, offset).with_context(|| {
            format!(
                "{}: cannot read {} bytes at offset {offset}",
                self.path.display(),
                buf.len()
            )
        })
    }

    /// Whether `bytes` lie inside this file's map.
    pub fn contains(&self, bytes: &[u8]) -> bool {
        self.range_of(bytes).is_some()
    }

    /// The byte range of `bytes` within this file's map, if it lies inside it.
    fn range_of(&self, bytes: &[u8]) -> Option<(usize, usize)> {
        let base = self.map.as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        (start >= base && start + bytes.len() <= base + self.map.len())
            .then(|| (start - base, bytes.len()))
    }
}

/// Every tensor of a checkpoint, by name, with the files that hold them.
pub struct TensorIndex {
    pub files: Vec<MappedFile>,
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl TensorIndex {
    /// An empty index.
    pub fn new() -> Self {
        TensorIndex {
            files: Vec::new(),
            tensors: BTreeMap::new(),
        }
    }

    /// The bytes of a tensor, straight from the map (no copy).
    pub fn bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.files[t.file].map[t.offset..t.offset + t.len]
    }

    /// Drops the pages of `bytes` (a slice of one of this index's maps) from the process, as a
    /// streaming reader does once it has consumed them ([`MappedFile::release`]).
    pub fn release(&self, bytes: &[u8]) {
        if let Some(f) = self.file_of(bytes) {
            f.release(bytes);
        }
    }

    /// Reads `bytes` ahead ([`MappedFile::will_need`]).
    pub fn will_need(&self, bytes: &[u8]) {
        if let Some(f) = self.file_of(bytes) {
            f.will_need(bytes);
        }
    }

    /// Advises `bytes` as a table read a row per token ([`MappedFile::advise_rows`]).
    pub fn advise_rows(&self, bytes: &[u8]) {
        if let Some(f) = self.file_of(bytes) {
            f.advise_rows(bytes);
        }
    }

    /// Drops the clean page cache of `bytes` ([`MappedFile::drop_cache`]).
    pub fn drop_cache(&self, bytes: &[u8]) {
        if let Some(f) = self.file_of(bytes) {
            f.drop_cache(bytes);
        }
    }

    /// The mapped file whose map holds `bytes`.
    pub fn file_of(&self, bytes: &[u8]) -> Option<&MappedFile> {
        self.files.iter().find(|f| f.range_of(bytes).is_some())
    }

    /// Path of the file holding `t`.
    pub fn path_of(&self, t: &TensorInfo) -> &Path {
        &self.files[t.file].path
    }

    /// Total bytes of all tensors.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.len as u64).sum()
    }

    /// Adds a tensor after checking that its range lies inside its file and its length matches
    /// its shape and dtype.
    pub fn insert(&mut self, name: String, info: TensorInfo) -> Result<()> {
        let path = self.files[info.file].path.display().to_string();
        let file_len = self.files[info.file].map.len();
        let end = info.offset.checked_add(info.len);
        if end.is_none_or(|e| e > file_len) {
            bail!(
                "{path}: tensor `{name}` spans bytes {}..{} but the file has {file_len} bytes: the file is truncated or its header is corrupt; download or convert it again",
                info.offset,
                info.offset as u128 + info.len as u128
            );
        }
        if let Some(bytes) = info.dtype.tensor_bytes(&info.shape) {
            let bytes = bytes.with_context(|| format!("{path}: tensor `{name}`"))?;
            if bytes != info.len {
                bail!(
                    "{path}: tensor `{name}` has shape {:?} of {} but occupies {} bytes",
                    info.shape,
                    info.dtype,
                    info.len
                );
            }
        }
        if self.tensors.contains_key(&name) {
            bail!("{path}: tensor `{name}` appears twice in the checkpoint");
        }
        self.tensors.insert(name, info);
        Ok(())
    }

    /// Checks that no two tensors of the same file share bytes.
    pub fn check_overlaps(&self) -> Result<()> {
        let mut by_file: Vec<Vec<(&String, &TensorInfo)>> = vec![Vec::new(); self.files.len()];
        for (n, t) in &self.tensors {
            by_file[t.file].push((n, t));
        }
        for (fi, list) in by_file.iter_mut().enumerate() {
            list.sort_by_key(|(_, t)| t.offset);
            for w in list.windows(2) {
                let (an, a) = w[0];
                let (bn, b) = w[1];
                if a.offset + a.len > b.offset && b.len > 0 && a.len > 0 {
                    bail!(
                        "{}: tensors `{an}` and `{bn}` overlap (bytes {}..{} and {}..{}): the header is corrupt",
                        self.files[fi].path.display(),
                        a.offset,
                        a.offset + a.len,
                        b.offset,
                        b.offset + b.len
                    );
                }
            }
        }
        Ok(())
    }
}

impl Default for TensorIndex {
    fn default() -> Self {
        Self::new()
    }
}

/// Opens the shards a `*.index.json` in `dir` lists (its `weight_map`: tensor name -> file),
/// each with `add`, and checks the index against what the shards hold: every tensor in the file
/// the index names, none unlisted, none missing. Shard names must be plain file names.
pub fn open_sharded(
    dir: &Path,
    index_name: &str,
    mut add: impl FnMut(&mut TensorIndex, &Path) -> Result<Vec<String>>,
) -> Result<TensorIndex> {
    let idx_path = dir.join(index_name);
    let shown = idx_path.display();
    let text =
        std::fs::read_to_string(&idx_path).with_context(|| format!("{shown}: cannot read"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{shown}: not valid JSON"))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{shown}: missing object `weight_map`"))?;
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for (name, file) in map {
        let f = file
            .as_str()
            .with_context(|| format!("{shown}: `weight_map.{name}` is not a file name"))?;
        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
            bail!("{shown}: `weight_map.{name}` names `{f}`, which is not a plain file name in the folder");
        }
        wanted.insert(name.clone(), f.to_string());
    }
    let shards: std::collections::BTreeSet<&String> = wanted.values().collect();
    let mut index = TensorIndex::new();
    for shard in shards {
        for n in add(&mut index, &dir.join(shard))? {
            match wanted.get(&n) {
                Some(f) if f == shard => {}
                Some(f) => {
                    bail!("{shown}: tensor `{n}` is found in {shard} but the index says {f}")
                }
                None => bail!(
                    "{shown}: tensor `{n}` of {shard} is not listed in the index's weight_map"
                ),
            }
        }
    }
    for (n, f) in &wanted {
        if !index.tensors.contains_key(n) {
            bail!("{shown}: tensor `{n}` is listed for {f} but that file does not hold it");
        }
    }
    Ok(index)
}
