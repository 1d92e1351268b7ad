//! Hugging Face safetensors: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Headers are parsed and validated by the `safetensors` crate
//! (header length within the file, ranges contiguous and inside the data, byte length equal to
//! shape times dtype); frugal adds the file name and tensor to every error.

use super::{MappedFile, StoredDType, TensorIndex, TensorInfo};
use crate::kernels::DType;
use anyhow::{bail, Context, Result};
use safetensors::tensor::SafeTensors;
use safetensors::{Dtype, SafeTensorError};
use std::collections::{BTreeMap, BTreeSet};
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
        Dtype::F32 => StoredDType::Float(DType::F32),
        Dtype::F16 => StoredDType::Float(DType::F16),
        Dtype::BF16 => StoredDType::Float(DType::BF16),
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
    let mut index = TensorIndex::new();
    let idx_path = dir.join(INDEX);
    if idx_path.is_file() {
        let text = std::fs::read_to_string(&idx_path)
            .with_context(|| format!("{}: cannot read", idx_path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", idx_path.display()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{}: missing object `weight_map`", idx_path.display()))?;
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for (name, file) in map {
            let f = file.as_str().with_context(|| {
                format!(
                    "{}: `weight_map.{name}` is not a file name",
                    idx_path.display()
                )
            })?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                bail!("{}: `weight_map.{name}` names `{f}`, which is not a plain file name in the folder", idx_path.display());
            }
            wanted.insert(name.clone(), f.to_string());
        }
        let shards: BTreeSet<&String> = wanted.values().collect();
        for shard in shards {
            let path = dir.join(shard);
            let names = add_file(&mut index, &path)?;
            for n in names {
                match wanted.get(&n) {
                    Some(f) if f == shard => {}
                    Some(f) => bail!(
                        "{}: tensor `{n}` is found in {shard} but the index says {f}",
                        idx_path.display()
                    ),
                    None => bail!(
                        "{}: tensor `{n}` of {shard} is not listed in the index's weight_map",
                        idx_path.display()
                    ),
                }
            }
        }
        for (n, f) in &wanted {
            if !index.tensors.contains_key(n) {
                bail!(
                    "{}: tensor `{n}` is listed for {f} but that file does not hold it",
                    idx_path.display()
                );
            }
        }
    } else {
        let path = dir.join(SINGLE);
        if !path.is_file() {
            bail!("{}: no {SINGLE} or {INDEX} in this folder", dir.display());
        }
        add_file(&mut index, &path)?;
    }
    index.check_overlaps()?;
    Ok(index)
}
