//! Hugging Face safetensors: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Headers are parsed and validated by the `safetensors` crate
//! (header length within the file, ranges contiguous and inside the data, byte length equal to
//! shape times dtype); frugal adds the file name and tensor to every error.

use super::{MappedFile, StoredDType, TensorIndex, TensorInfo};
use anyhow::{bail, Context, Result};
use frugal_tensor::DType;
use safetensors::tensor::SafeTensors;
use safetensors::{Dtype, SafeTensorError};
use std::path::Path;

/// Name of the single-file checkpoint in a model folder.
pub const SINGLE: &str = "model.safetensors";
/// Name of the shard index in a model folder.
pub const INDEX: &str = "model.safetensors.index.json";

/// True if `dir` holds a safetensors checkpoint.
pub fn is_safetensors_dir(dir: &Path) -> bool {
    dir.join(SINGLE).is_file() || dir.join(INDEX).is_file()
}

fn stored_dtype(d: Dtype) -> StoredDType {
    match d {
        Dtype::F32 => StoredDType::Known(DType::F32),
        Dtype::F16 => StoredDType::Known(DType::F16),
        Dtype::BF16 => StoredDType::Known(DType::BF16),
        Dtype::I8 => StoredDType::Known(DType::I8),
        other => StoredDType::Other(format!("{other:?}").to_lowercase()),
    }
}

/// Maps one safetensors file and adds its tensors to `index`.
pub fn add_file(index: &mut TensorIndex, path: &Path) -> Result<Vec<String>> {
    let mapped = MappedFile::open(path)?;
    let len = mapped.map.len();
    if len < 8 {
        bail!("{}: {} bytes is too short for a safetensors file (it starts with an 8-byte header length): the file is truncated", path.display(), len);
    }
    let n = u64::from_le_bytes(mapped.map[..8].try_into().expect("8 bytes"));
    if n > (len as u64).saturating_sub(8) {
        bail!(
            "{}: header length field says {n} bytes but the file has only {} bytes after it: the file is truncated or not safetensors",
            path.display(),
            len - 8
        );
    }
    let (header_len, meta) = SafeTensors::read_metadata(&mapped.map).map_err(|e| match e {
        SafeTensorError::InvalidOffset(name) => anyhow::anyhow!(
            "{}: tensor `{name}`: its byte range overlaps another tensor's or leaves a gap (safetensors data must be contiguous); the header is corrupt, download or convert the file again",
            path.display()
        ),
        e => anyhow::anyhow!("{}: invalid safetensors header: {e}; the file is corrupt or truncated, download or convert it again", path.display()),
    })?;
    let data_start = 8 + header_len;
    let file = index.files.len();
    index.files.push(mapped);
    let mut names = Vec::new();
    let mut entries: Vec<(String, TensorInfo)> = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (b, e) = info.data_offsets;
            (
                name,
                TensorInfo {
                    file,
                    dtype: stored_dtype(info.dtype),
                    shape: info.shape.clone(),
                    offset: data_start + b,
                    len: e - b,
                },
            )
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, info) in entries {
        names.push(name.clone());
        index
            .insert(name, info)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(names)
}

/// Builds the tensor index of a model folder from headers only.
pub fn open_dir(dir: &Path) -> Result<TensorIndex> {
    let index = if dir.join(INDEX).is_file() {
        super::open_sharded(dir, INDEX, add_file)?
    } else {
        let path = dir.join(SINGLE);
        if !path.is_file() {
            bail!("{}: no {SINGLE} or {INDEX} in this folder", dir.display());
        }
        let mut index = TensorIndex::new();
        add_file(&mut index, &path)?;
        index
    };
    index.check_overlaps()?;
    Ok(index)
}

/// Where `write_shards` starts the data section.
const DATA_ALIGN: usize = 4096;

/// A tensor to write.
pub struct OutTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl OutTensor {
    /// Bytes of data (element dtypes: [`write_shards`] refuses quantized ones).
    pub fn bytes(&self) -> u64 {
        self.dtype.tensor_bytes(&self.shape).map_or(0, |b| b as u64)
    }
}

/// Writes `tensors` into `dir` as `model.safetensors`, or as shards of at most `shard_bytes`
/// with `model.safetensors.index.json`. `emit(i, w)` must write exactly tensor `i`'s bytes; data
/// is streamed, so memory stays at whatever `emit` holds. Returns the bytes of tensor data.
pub fn write_shards(
    dir: &Path,
    tensors: &[OutTensor],
    shard_bytes: u64,
    generator: &str,
    mut emit: impl FnMut(usize, &mut dyn std::io::Write) -> Result<()>,
) -> Result<u64> {
    use serde_json::json;
    use std::io::Write;
    if let Some(t) = tensors.iter().find(|t| t.dtype.is_quantized()) {
        bail!(
            "tensor `{}` is {}, a block-quantized type safetensors cannot store",
            t.name,
            t.dtype.name()
        );
    }
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut cur = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        if cur > 0 && cur + t.bytes() > shard_bytes {
            shards.push(Vec::new());
            cur = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        cur += t.bytes();
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    for (si, list) in shards.iter().enumerate() {
        let fname = if n == 1 {
            SINGLE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", si + 1, n)
        };
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            json!({"format": "pt", "generator": generator}),
        );
        let mut off = 0u64;
        for &i in list {
            let t = &tensors[i];
            let dt = match t.dtype {
                DType::BF16 => "BF16",
                DType::F16 => "F16",
                DType::F32 => "F32",
                DType::I8 => "I8",
                d => unreachable!("{} refused above", d.name()),
            };
            header.insert(
                t.name.clone(),
                json!({"dtype": dt, "shape": t.shape, "data_offsets": [off, off + t.bytes()]}),
            );
            weight_map.insert(t.name.clone(), json!(fname));
            off += t.bytes();
        }
        let mut h = serde_json::to_vec(&serde_json::Value::Object(header))?;
        // Pad the header (with spaces, as the format allows) so the data starts on a 4 KiB
        // boundary: every tensor whose size is a multiple of 64 bytes is then cache-line
        // aligned, and vector loads never straddle two lines.
        while !(8 + h.len()).is_multiple_of(DATA_ALIGN) {
            h.push(b' ');
        }
        let path = dir.join(&fname);
        let file = std::fs::File::create(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        let mut f = CountingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            written: 0,
        };
        let io = |e: std::io::Error| {
            anyhow::anyhow!(
                "{}: write failed: {e} (is the disk full? `df -h`)",
                path.display()
            )
        };
        f.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
        f.write_all(&h).map_err(io)?;
        for &i in list {
            let before = f.written;
            emit(i, &mut f).with_context(|| {
                format!("{}: writing tensor `{}`", path.display(), tensors[i].name)
            })?;
            if f.written - before != tensors[i].bytes() {
                bail!(
                    "internal error: tensor `{}` wrote {} bytes, expected {}",
                    tensors[i].name,
                    f.written - before,
                    tensors[i].bytes()
                );
            }
            total += tensors[i].bytes();
        }
        f.inner.flush().map_err(io)?;
    }
    if n > 1 {
        let idx = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(dir.join(INDEX), serde_json::to_vec_pretty(&idx)?)?;
    }
    Ok(total)
}

struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
