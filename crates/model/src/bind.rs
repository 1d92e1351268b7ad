//! Binding a checkpoint's tensors to a config through a tensor table: every
//! tensor's presence, shape and dtype is checked before any data is read ([`check`]); matrices
//! are then bound in place as [`MatRef`]s borrowing the map (gemma_pytorch's fused qkv split by
//! row ranges, no copy) and only norm vectors (a few KB) are read into f32 ([`bind`]). The same
//! table gives the stored tensors the memory plan, quantizer and budgets count ([`Binding`]) and
//! the tensors under Hugging Face names that `convert` writes ([`hf_sources`]).

use crate::config::GemmaConfig;
use crate::tensors::{Kind, Part, PtName, Role, TensorSpec};
use anyhow::{bail, Result};
use frugal_formats::{StoredDType, TensorIndex, TensorInfo};
use frugal_tensor::{DType, MatRef};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// How a checkpoint names the table's tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Hugging Face names, the decoder's `model.` prefix replaced by `decoder` and an untied
    /// output named `head`; with `keep`, tensors outside that prefix (a multimodal checkpoint's
    /// vision tower) are ignored.
    Hf {
        decoder: String,
        head: String,
        keep: Option<String>,
    },
    /// gemma_pytorch's names (`embedder.weight`, fused `qkv_proj`), RoPE buffers ignored.
    GemmaPytorch,
    /// llama.cpp's names; norms stored as used (`1 + w`).
    Gguf,
}

impl Scheme {
    /// The naming `index` uses for `cfg`'s table: the one under which its embedding exists
    /// (a multimodal config tries the prefixes transformers has written text models under).
    pub fn detect(cfg: &GemmaConfig, index: &TensorIndex) -> Scheme {
        let emb = crate::tensors::Table::new(cfg).embedding();
        if index.tensors.contains_key(emb.pytorch.stored()) {
            return Scheme::GemmaPytorch;
        }
        if index.tensors.contains_key(&emb.gguf) {
            return Scheme::Gguf;
        }
        let hf = |decoder: &str, head: &str, keep: Option<&str>| Scheme::Hf {
            decoder: decoder.into(),
            head: head.into(),
            keep: keep.map(Into::into),
        };
        if cfg.multimodal {
            for s in [
                hf(
                    "language_model.model.",
                    "language_model.lm_head.weight",
                    Some("language_model."),
                ),
                hf(
                    "model.language_model.",
                    "lm_head.weight",
                    Some("model.language_model."),
                ),
            ] {
                if index.tensors.contains_key(&s.stored_name(&emb)) {
                    return s;
                }
            }
            return hf(
                "language_model.model.",
                "language_model.lm_head.weight",
                Some("language_model."),
            );
        }
        hf("model.", "lm_head.weight", None)
    }

    /// The plain Hugging Face naming (what `convert` writes).
    pub fn hf() -> Scheme {
        Scheme::Hf {
            decoder: "model.".into(),
            head: "lm_head.weight".into(),
            keep: None,
        }
    }

    /// The stored name of `t` (for a fused tensor, the fused one's).
    pub fn stored_name(&self, t: &TensorSpec) -> String {
        match self {
            Scheme::Hf { decoder, head, .. } => {
                if t.role == Role::Output {
                    head.clone()
                } else {
                    match t.hf.strip_prefix("model.") {
                        Some(rest) => format!("{decoder}{rest}"),
                        None => t.hf.clone(),
                    }
                }
            }
            Scheme::GemmaPytorch => t.pytorch.stored().to_string(),
            Scheme::Gguf => t.gguf.clone(),
        }
    }

    /// The rows of its stored tensor that `t` is, when fused.
    pub fn rows(&self, t: &TensorSpec) -> Option<Range<usize>> {
        match (self, &t.pytorch) {
            (Scheme::GemmaPytorch, PtName::Rows { rows, .. }) => Some(rows.clone()),
            _ => None,
        }
    }

    /// Whether `t`'s stored values are `1 + w` already (GGUF), so nothing is added.
    pub fn stores_plus_one(&self, t: &TensorSpec) -> bool {
        t.kind == Kind::NormPlusOne && *self == Scheme::Gguf
    }
}

/// What a config's architecture wants bound (`crate::arch::wanted`): its tensor table, the
/// tensors a checkpoint may hold that the model does not read, and gemma_pytorch's buffers.
pub struct Wanted {
    /// The architecture's name, for errors.
    pub arch_name: &'static str,
    pub specs: Vec<TensorSpec>,
    pub unread: Vec<TensorSpec>,
    pub pytorch_buffers: Vec<String>,
}

/// A tensor as stored: one per stored name (gemma_pytorch's fused qkv once).
#[derive(Clone, Debug)]
pub struct Stored {
    pub name: String,
    /// The table keys of the tensors it holds: one, or several for a fused tensor
    /// (gemma_pytorch's `qkv_proj`: `attn_q`, `attn_k`, `attn_v`).
    pub keys: Vec<&'static str>,
    pub role: Role,
    pub part: Part,
    /// A matrix used in place (else a vector read into f32).
    pub matrix: bool,
    pub shape: Vec<usize>,
}

/// A checkpoint checked against its config's table.
#[derive(Clone, Debug)]
pub struct Binding {
    pub scheme: Scheme,
    pub specs: Vec<TensorSpec>,
    /// The stored tensors the table binds, in table order.
    pub stored: Vec<Stored>,
    /// Stored names the model ignores when present (an untied output of a tied model, RoPE
    /// buffers).
    ignored: BTreeSet<String>,
}

impl Binding {
    /// The stored matrices (what quantize-on-load converts).
    pub fn matrix_names(&self) -> Vec<String> {
        self.stored
            .iter()
            .filter(|s| s.matrix)
            .map(|s| s.name.clone())
            .collect()
    }

    /// The stored tensor `name`'s entry, if the table binds it.
    pub fn find(&self, name: &str) -> Option<&Stored> {
        self.stored.iter().find(|s| s.name == name)
    }

    /// Whether the model ignores the stored tensor `name` (see [`Binding::ignored`]).
    pub fn ignores(&self, name: &str) -> bool {
        self.ignored.contains(name)
    }
}

/// Checks every tensor `w` wants of `cfg` against the index (presence, shape, dtype), listing
/// missing and unexpected tensors; reads no tensor data. `source` names the checkpoint.
pub fn check(cfg: &GemmaConfig, w: &Wanted, index: &TensorIndex, source: &str) -> Result<Binding> {
    let scheme = Scheme::detect(cfg, index);
    let specs = w.specs.clone();
    let mut stored: Vec<Stored> = Vec::new();
    for t in &specs {
        let name = scheme.stored_name(t);
        let rows = scheme.rows(t);
        match stored.iter_mut().find(|s| s.name == name) {
            Some(s) => {
                if let Some(r) = rows {
                    s.shape[0] = s.shape[0].max(r.end);
                }
                s.keys.push(t.key);
            }
            None => {
                let mut shape = t.shape.clone();
                if let Some(r) = rows {
                    shape[0] = r.end;
                }
                stored.push(Stored {
                    name,
                    keys: vec![t.key],
                    role: t.role,
                    part: t.part,
                    matrix: t.is_matrix(),
                    shape,
                });
            }
        }
    }
    let mut ignored: BTreeSet<String> = w.unread.iter().map(|t| scheme.stored_name(t)).collect();
    if scheme == Scheme::GemmaPytorch {
        ignored.extend(w.pytorch_buffers.iter().cloned());
    }
    let optional: BTreeSet<String> = specs
        .iter()
        .filter(|t| t.optional)
        .map(|t| scheme.stored_name(t))
        .collect();
    let wanted: BTreeSet<&str> = stored.iter().map(|s| s.name.as_str()).collect();
    let missing: Vec<&str> = stored
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !index.tensors.contains_key(*n))
        .filter(|n| !optional.contains(*n))
        .collect();
    let keep = match &scheme {
        Scheme::Hf { keep, .. } => keep.clone(),
        _ => None,
    };
    let extra: Vec<&str> = index
        .tensors
        .keys()
        .map(|s| s.as_str())
        .filter(|n| !wanted.contains(n))
        .filter(|n| keep.as_ref().is_none_or(|o| n.starts_with(o.as_str())))
        .filter(|n| !ignored.contains(*n))
        // Per-row scales of int8 matrices (checked with their matrix below).
        .filter(|n| {
            n.strip_suffix("_scaler")
                .is_none_or(|m| !wanted.contains(m) || !is_int8(index, m))
        })
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut msg = format!(
            "{source}: the checkpoint does not match its config ({} {} layers)",
            w.arch_name, cfg.num_layers
        );
        if !missing.is_empty() {
            msg += &format!(
                "\n  missing tensors ({}): {}",
                missing.len(),
                list(&missing)
            );
        }
        if !extra.is_empty() {
            msg += &format!("\n  unexpected tensors ({}): {}", extra.len(), list(&extra));
        }
        msg += if scheme == Scheme::Gguf {
            "\n  the file's metadata does not describe its tensors: the GGUF file is corrupt or not a Gemma model"
        } else {
            "\n  check that config.json belongs to these weights"
        };
        bail!(msg);
    }
    for s in &stored {
        let Some(t) = index.tensors.get(&s.name) else {
            continue; // optional and absent
        };
        let file = index.path_of(t).display();
        if t.shape != s.shape {
            bail!(
                "{file}: tensor `{}` has shape {:?} but the config implies {:?}",
                s.name,
                t.shape,
                s.shape
            );
        }
        match t.dtype {
            StoredDType::Known(DType::I8) if s.shape.len() == 2 => {
                let sn = scaler_name(&s.name);
                let Some(sc) = index.tensors.get(&sn) else {
                    bail!(
                        "{file}: tensor `{}` is int8 but its per-row scales `{sn}` are missing",
                        s.name
                    );
                };
                if sc.shape != [s.shape[0]] || !is_float(&sc.dtype) {
                    bail!(
                        "{}: tensor `{sn}` has shape {:?} and dtype {}; the int8 matrix `{}` needs one float scale per row, shape [{}]",
                        index.path_of(sc).display(),
                        sc.shape,
                        sc.dtype,
                        s.name,
                        s.shape[0]
                    );
                }
            }
            ref d if is_float(d) => {}
            StoredDType::Known(d)
                if d.is_quantized() && frugal_quant::dequantizes(d) && s.shape.len() == 2 => {}
            ref d => {
                let read: Vec<&str> = DType::ALL
                    .iter()
                    .filter(|d| d.is_quantized() && frugal_quant::dequantizes(**d))
                    .map(|d| d.name())
                    .collect();
                bail!(
                    "{file}: tensor `{}` is stored as {d}; frugal reads bf16, f16 and f32 weights in place, int8 matrices with per-row `weight_scaler`, and GGUF matrices in {}: requantize the file to one of those (llama.cpp's `llama-quantize --allow-requantize IN OUT Q4_K_M`, or `Q8_0` for the least loss), or give frugal the model's bf16 or f16 weights",
                    s.name,
                    read.join(", ")
                )
            }
        }
    }
    Ok(Binding {
        scheme,
        specs,
        stored,
        ignored,
    })
}

/// A bound tensor.
enum Tensor<'a> {
    Matrix(MatRef<'a>),
    Vector(Vec<f32>),
}

/// The table's tensors bound in place, for an architecture to compose its layers from: each
/// is taken by its role and key.
pub struct Bound<'a> {
    specs: Vec<TensorSpec>,
    items: Vec<Option<Tensor<'a>>>,
}

impl<'a> Bound<'a> {
    fn index_of(&self, role: Role, key: &str) -> Option<usize> {
        self.specs
            .iter()
            .position(|t| t.role == role && t.key == key)
    }

    /// The matrix `key` of `role`; an error if the table has none (an architecture's bug, or
    /// an optional tensor the checkpoint lacks).
    pub fn matrix(&self, role: Role, key: &str) -> Result<MatRef<'a>> {
        match self
            .index_of(role, key)
            .and_then(|i| self.items[i].as_ref())
        {
            Some(Tensor::Matrix(m)) => Ok(*m),
            _ => bail!("no matrix `{key}` of {role:?} in the tensor table"),
        }
    }

    /// The vector `key` of `role` (a norm, as the forward pass multiplies by it), taken out.
    pub fn vector(&mut self, role: Role, key: &str) -> Result<Vec<f32>> {
        self.opt_vector(role, key)?
            .ok_or_else(|| anyhow::anyhow!("no vector `{key}` of {role:?} in the tensor table"))
    }

    /// The vector `key` of `role` if the table has it and the checkpoint holds it.
    pub fn opt_vector(&mut self, role: Role, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(i) = self.index_of(role, key) else {
            return Ok(None);
        };
        match self.items[i].take() {
            Some(Tensor::Vector(v)) => Ok(Some(v)),
            Some(Tensor::Matrix(_)) => bail!("`{key}` of {role:?} is a matrix, not a vector"),
            None => Ok(None),
        }
    }

    /// Every bound matrix with its role and key, in table order.
    pub fn matrices(&self) -> Vec<(Role, &'static str, MatRef<'a>)> {
        self.specs
            .iter()
            .zip(&self.items)
            .filter_map(|(t, item)| match item {
                Some(Tensor::Matrix(m)) => Some((t.role, t.key, *m)),
                _ => None,
            })
            .collect()
    }
}

/// Checks (as [`check`]) and binds every tensor `w` wants in place, except that the matrices
/// named in `replaced` (stored names, as [`Binding::matrix_names`] lists them) are taken from
/// there: the quantized copies made while loading.
pub fn bind<'a>(
    cfg: &GemmaConfig,
    w: &Wanted,
    index: &'a TensorIndex,
    source: &str,
    replaced: &BTreeMap<String, MatRef<'a>>,
) -> Result<Bound<'a>> {
    let b = check(cfg, w, index, source)?;
    let mat = |n: &str| -> MatRef<'a> {
        if let Some(m) = replaced.get(n) {
            return *m;
        }
        let t = &index.tensors[n];
        // A 3-D tensor (experts) as `[experts * rows, cols]`: each expert's rows a range.
        let cols = t.shape[t.shape.len() - 1];
        let rows = t.shape[..t.shape.len() - 1].iter().product();
        let m = MatRef::new(index.bytes(t), dtype(t), rows, cols);
        if m.dtype == DType::I8 {
            let s = &index.tensors[&scaler_name(n)];
            m.with_scale(index.bytes(s), dtype(s))
        } else {
            m
        }
    };
    let items = b
        .specs
        .iter()
        .map(|t| {
            let name = b.scheme.stored_name(t);
            let info = index.tensors.get(&name)?;
            Some(if t.is_matrix() {
                let m = mat(&name);
                match b.scheme.rows(t) {
                    // Row ranges of the fused matrix: views, no copy.
                    Some(r) => Tensor::Matrix(m.rows_range(r.start, r.end)),
                    None => Tensor::Matrix(m),
                }
            } else {
                let mut out = vec![0f32; info.numel()];
                frugal_quant::to_f32(index.bytes(info), dtype(info), &mut out);
                if !b.scheme.stores_plus_one(t) && t.kind == Kind::NormPlusOne {
                    for x in &mut out {
                        *x += 1.0;
                    }
                }
                Tensor::Vector(out)
            })
        })
        .collect();
    Ok(Bound {
        specs: b.specs,
        items,
    })
}

/// A tensor under its Hugging Face name, and where its bytes lie in the checkpoint.
pub struct Source<'a> {
    pub name: String,
    /// Its key in the tensor table.
    pub key: &'static str,
    pub role: Role,
    /// Its GGUF name.
    pub gguf: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
    /// An RMSNorm weight stored as `1 + w` (GGUF's converter writes it so), where Hugging
    /// Face stores `w`.
    pub plus_one: bool,
}

/// Every tensor `w` wants under its Hugging Face name (gemma_pytorch's fused qkv split by row
/// ranges; GGUF's norms marked [`Source::plus_one`]), in table order, after the same checks as
/// [`bind`]. For conversion: nothing is copied here.
pub fn hf_sources<'a>(
    cfg: &GemmaConfig,
    w: &Wanted,
    index: &'a TensorIndex,
    source: &str,
) -> Result<Vec<Source<'a>>> {
    let b = check(cfg, w, index, source)?;
    if let Some((n, _)) = index
        .tensors
        .iter()
        .find(|(_, t)| t.dtype == StoredDType::Known(DType::I8))
    {
        bail!("{source}: tensor `{n}` is int8 with per-row scales, which the Hugging Face Gemma format has no way to store; run this checkpoint with frugal directly (it is used in place), or convert its float original");
    }
    let mut out = Vec::new();
    for t in &b.specs {
        let name = b.scheme.stored_name(t);
        let Some(info) = index.tensors.get(&name) else {
            continue; // optional and absent
        };
        let mut bytes = index.bytes(info);
        if let Some(r) = b.scheme.rows(t) {
            let row = dtype(info).row_bytes(info.shape[1])?;
            bytes = &bytes[r.start * row..r.end * row];
        }
        out.push(Source {
            plus_one: b.scheme.stores_plus_one(t),
            name: t.hf.clone(),
            key: t.key,
            role: t.role,
            gguf: t.gguf.clone(),
            dtype: dtype(info),
            shape: t.shape.clone(),
            bytes,
        });
    }
    Ok(out)
}

/// Name of the per-row scales of an int8 matrix (gemma_pytorch: `x.weight` -> `x.weight_scaler`).
pub fn scaler_name(weight: &str) -> String {
    format!("{weight}_scaler")
}

fn is_int8(index: &TensorIndex, name: &str) -> bool {
    index
        .tensors
        .get(name)
        .is_some_and(|t| t.dtype == StoredDType::Known(DType::I8))
}

fn is_float(d: &StoredDType) -> bool {
    matches!(d, StoredDType::Known(DType::F32 | DType::F16 | DType::BF16))
}

fn dtype(t: &TensorInfo) -> DType {
    match t.dtype {
        StoredDType::Known(d) => d,
        StoredDType::Other(_) => unreachable!("checked when binding"),
    }
}

fn list(names: &[&str]) -> String {
    const SHOW: usize = 12;
    let mut s = names
        .iter()
        .take(SHOW)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOW {
        s += &format!(", ... and {} more", names.len() - SHOW);
    }
    s
}
