//! PyTorch checkpoints (`torch.save` zip archives): gemma_pytorch `.ckpt` files and Hugging Face
//! `pytorch_model.bin`, single or sharded (`pytorch_model.bin.index.json`). The zip's central
//! directory is read by the `zip` crate; `data.pkl` is run by frugal's own allowlist
//! interpreter ([`super::pickle`]); storages are used in place from the map of the archive, at
//! each record's data offset (torch stores records uncompressed).

use super::pickle::{self, StorageDType, TensorRef, Value};
use super::{MappedFile, StoredDType, TensorIndex, TensorInfo};
use anyhow::{bail, Context, Result};
use frugal_tensor::DType;
use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

/// Name of the Hugging Face shard index for PyTorch weights.
pub const INDEX: &str = "pytorch_model.bin.index.json";

/// One stored record of the archive.
struct Record {
    data_start: u64,
    size: u64,
}

fn stored_dtype(d: StorageDType) -> StoredDType {
    match d {
        StorageDType::F32 => StoredDType::Known(DType::F32),
        StorageDType::F16 => StoredDType::Known(DType::F16),
        StorageDType::BF16 => StoredDType::Known(DType::BF16),
        StorageDType::I8 => StoredDType::Known(DType::I8),
        other => StoredDType::Other(other.name().to_string()),
    }
}

/// Maps one torch.save archive and adds its tensors to `index`; returns their names.
pub fn add_archive(index: &mut TensorIndex, path: &Path) -> Result<Vec<String>> {
    let mapped = MappedFile::open(path)?;
    let shown = path.display().to_string();
    let (records, pkl_name) = {
        let mut zip = zip::ZipArchive::new(Cursor::new(&mapped.map[..])).map_err(|e| {
            anyhow::anyhow!("{shown}: not a readable PyTorch zip checkpoint ({e}); the file may be truncated or in the legacy pre-1.6 format, which frugal does not read")
        })?;
        let mut records = HashMap::new();
        let mut pkl = None;
        for i in 0..zip.len() {
            let f = zip
                .by_index_raw(i)
                .map_err(|e| anyhow::anyhow!("{shown}: zip entry {i} is corrupt: {e}"))?;
            let name = f
                .name()
                .map_err(|e| anyhow::anyhow!("{shown}: zip entry {i} has an unreadable name: {e}"))?
                .to_string();
            if f.compression() != zip::CompressionMethod::Stored {
                bail!("{shown}: record `{name}` is compressed; torch.save stores records uncompressed, so this file cannot be used in place");
            }
            let start = f.data_start().unwrap_or(0);
            let size = f.size();
            if start
                .checked_add(size)
                .is_none_or(|e| e > mapped.map.len() as u64)
            {
                bail!("{shown}: record `{name}` extends past the end of the file: the file is truncated");
            }
            if name.ends_with("/data.pkl") || name == "data.pkl" {
                if pkl.is_some() {
                    bail!("{shown}: more than one data.pkl in the archive");
                }
                pkl = Some(name.clone());
            }
            records.insert(
                name,
                Record {
                    data_start: start,
                    size,
                },
            );
        }
        (
            records,
            pkl.with_context(|| {
                format!("{shown}: no data.pkl in the archive: not a torch.save checkpoint")
            })?,
        )
    };
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or("").to_string();
    let rec = &records[&pkl_name];
    let pkl = &mapped.map[rec.data_start as usize..(rec.data_start + rec.size) as usize];
    let root = pickle::load(pkl).with_context(|| format!("{shown}: refusing {pkl_name}"))?;
    let state = state_dict(root).with_context(|| format!("{shown}: {pkl_name}"))?;

    let file = index.files.len();
    let mut entries = Vec::new();
    for (name, t) in state {
        let info = locate(&t, &name, &prefix, &records, file)
            .with_context(|| format!("{shown}: tensor `{name}`"))?;
        entries.push((name, info));
    }
    index.files.push(mapped);
    let mut names = Vec::new();
    for (name, info) in entries {
        names.push(name.clone());
        index.insert(name, info)?;
    }
    Ok(names)
}

/// The flat name -> tensor map: the root dict, or its `model_state_dict` / `state_dict` entry.
fn state_dict(root: Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(mut d) = root else {
        bail!("the pickled object is not a dict of tensors")
    };
    if let Some(i) = d.iter().position(
        |(k, _)| matches!(k, Value::Str(s) if s == "model_state_dict" || s == "state_dict"),
    ) {
        match d.swap_remove(i).1 {
            Value::Dict(inner) => d = inner,
            _ => bail!("`model_state_dict` is not a dict"),
        }
    }
    let mut out = Vec::new();
    for (k, v) in d {
        let Value::Str(name) = k else { continue };
        if let Value::Tensor(t) = v {
            out.push((name, t));
        }
    }
    if out.is_empty() {
        bail!("no tensors found in the state dict");
    }
    Ok(out)
}

/// Checks a tensor against its storage record and places it in the file.
fn locate(
    t: &TensorRef,
    name: &str,
    prefix: &str,
    records: &HashMap<String, Record>,
    file: usize,
) -> Result<TensorInfo> {
    let key = format!("{prefix}data/{}", t.key);
    let rec = records
        .get(&key)
        .with_context(|| format!("its storage `{key}` is missing from the archive"))?;
    let es = t.dtype.size() as u64;
    let storage_bytes = t
        .storage_numel
        .checked_mul(es)
        .context("storage size overflows")?;
    if storage_bytes > rec.size {
        bail!("its storage claims {} elements ({storage_bytes} bytes) but record `{key}` holds {} bytes: the file is corrupt", t.storage_numel, rec.size);
    }
    let numel = t.numel();
    if t.offset
        .checked_add(numel)
        .is_none_or(|e| e > t.storage_numel)
        && numel > 0
    {
        bail!(
            "elements {}..{} lie outside its storage of {} elements",
            t.offset,
            t.offset as u128 + numel as u128,
            t.storage_numel
        );
    }
    if !t.is_contiguous() {
        bail!(
            "it is not contiguous (shape {:?}, strides {:?}); frugal uses tensors in place and cannot gather strided data: save it with .contiguous()",
            t.shape,
            t.stride
        );
    }
    let _ = name;
    Ok(TensorInfo {
        file,
        dtype: stored_dtype(t.dtype),
        shape: t.shape.iter().map(|&d| d as usize).collect(),
        offset: (rec.data_start + t.offset * es) as usize,
        len: (numel * es) as usize,
    })
}

/// Reads a folder or file of PyTorch weights: a `.ckpt`/`.bin` file, a folder with one
/// `pytorch_model.bin`, or shards listed by `pytorch_model.bin.index.json`.
pub fn open(path: &Path) -> Result<TensorIndex> {
    let mut index = TensorIndex::new();
    if path.is_file() {
        add_archive(&mut index, path)?;
        return Ok(index);
    }
    if path.join(INDEX).is_file() {
        return super::open_sharded(path, INDEX, add_archive);
    }
    let single = path.join("pytorch_model.bin");
    if single.is_file() {
        add_archive(&mut index, &single)?;
        return Ok(index);
    }
    let ckpts: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
        .collect();
    match ckpts.as_slice() {
        [one] => {
            add_archive(&mut index, one)?;
            Ok(index)
        }
        [] => bail!(
            "{}: no PyTorch weights here (pytorch_model.bin, {INDEX} or a .ckpt file)",
            path.display()
        ),
        many => bail!(
            "{}: {} .ckpt files here; give -m the one to use",
            path.display(),
            many.len()
        ),
    }
}

/// True if `path` looks like PyTorch weights.
pub fn is_pytorch(path: &Path) -> bool {
    if path.is_file() {
        return path
            .extension()
            .is_some_and(|x| x == "ckpt" || x == "bin" || x == "pt" || x == "pth");
    }
    path.join(INDEX).is_file()
        || path.join("pytorch_model.bin").is_file()
        || std::fs::read_dir(path)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.path().extension().is_some_and(|x| x == "ckpt"))
            })
            .unwrap_or(false)
}

/// A tensor to write into a torch.save archive: its storage class, element size and shape.
pub struct ArchiveTensor {
    pub name: String,
    /// Storage class in the `torch` module, e.g. `BFloat16Storage`, `ComplexFloatStorage`.
    pub storage: &'static str,
    pub elem_size: usize,
    pub shape: Vec<usize>,
}

impl ArchiveTensor {
    fn numel(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64
    }
}

/// The pickle torch.save writes for `{"model_state_dict": {name: tensor, ...}}` (protocol 2),
/// each tensor with its own storage record `data/<i>`.
fn state_dict_pickle(tensors: &[ArchiveTensor]) -> Vec<u8> {
    fn text(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    }
    fn int(p: &mut Vec<u8>, v: u64) {
        // LONG1: little-endian two's complement, with room for the sign bit.
        let mut b = v.to_le_bytes().to_vec();
        while b.len() > 1 && b[b.len() - 1] == 0 && b[b.len() - 2] & 0x80 == 0 {
            b.pop();
        }
        if b[b.len() - 1] & 0x80 != 0 {
            b.push(0);
        }
        p.push(0x8a);
        p.push(b.len() as u8);
        p.extend_from_slice(&b);
    }
    fn tuple(p: &mut Vec<u8>, v: &[u64]) {
        p.push(b'(');
        for &x in v {
            int(p, x);
        }
        p.push(b't');
    }
    let mut p = vec![0x80, 2, b'}'];
    text(&mut p, "model_state_dict");
    p.extend_from_slice(b"}(");
    for (i, t) in tensors.iter().enumerate() {
        text(&mut p, &t.name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        text(&mut p, "storage");
        p.extend_from_slice(format!("ctorch\n{}\n", t.storage).as_bytes());
        text(&mut p, &i.to_string());
        text(&mut p, "cpu");
        int(&mut p, t.numel());
        p.extend_from_slice(b"tQ"); // the persistent id tuple, BINPERSID
        int(&mut p, 0);
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        let mut stride = vec![1u64; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1];
        }
        tuple(&mut p, &shape);
        tuple(&mut p, &stride);
        p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend_from_slice(b"us.");
    p
}

/// Writes `tensors` as a gemma_pytorch-style torch.save archive at `path`, records stored
/// uncompressed and 64-byte aligned as torch does; `emit(i, w)` writes tensor `i`'s bytes.
pub fn write_archive(
    path: &Path,
    tensors: &[ArchiveTensor],
    mut emit: impl FnMut(usize, &mut dyn std::io::Write) -> Result<()>,
) -> Result<u64> {
    use std::io::Write;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("archive")
        .to_string();
    let file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let zerr = |e: zip::result::ZipError| anyhow::anyhow!("{}: {e}", path.display());
    zip.start_file(format!("{stem}/data.pkl"), opts)
        .map_err(zerr)?;
    zip.write_all(&state_dict_pickle(tensors))?;
    for (name, data) in [
        ("byteorder", "little"),
        (".format_version", "1"),
        (".storage_alignment", "64"),
    ] {
        zip.start_file(format!("{stem}/{name}"), opts)
            .map_err(zerr)?;
        zip.write_all(data.as_bytes())?;
    }
    let mut total = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        let bytes = t.numel() * t.elem_size as u64;
        zip.start_file(
            format!("{stem}/data/{i}"),
            opts.large_file(bytes >= u32::MAX as u64),
        )
        .map_err(zerr)?;
        emit(i, &mut zip).with_context(|| format!("{}: writing `{}`", path.display(), t.name))?;
        total += bytes;
    }
    zip.start_file(format!("{stem}/version"), opts)
        .map_err(zerr)?;
    zip.write_all(b"3\n")?;
    let mut inner = zip.finish().map_err(zerr)?;
    inner
        .flush()
        .with_context(|| format!("{}: write failed (is the disk full?)", path.display()))?;
    Ok(total)
}
