//! Binds a checkpoint's tensors to a [`GemmaConfig`]: every expected tensor's presence, shape,
//! dtype and byte range is checked before any data is read; matrices stay in place in the map.

use super::config::{Family, GemmaConfig};
use crate::checkpoint::{StoredDType, TensorIndex, TensorInfo};
use crate::kernels::{DType, MatRef};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

/// The weights of one decoder layer. Norm vectors hold `1 + w` in f32 (a few KB); matrices are
/// borrowed from the map.
pub struct LayerWeights<'a> {
    pub q: MatRef<'a>,
    pub k: MatRef<'a>,
    pub v: MatRef<'a>,
    pub o: MatRef<'a>,
    pub gate: MatRef<'a>,
    pub up: MatRef<'a>,
    pub down: MatRef<'a>,
    pub input_norm: Vec<f32>,
    /// Gemma 2/3: applied to the attention output before the residual add.
    pub post_attn_norm: Option<Vec<f32>>,
    /// The norm before the MLP (Gemma 1 calls it `post_attention_layernorm`).
    pub pre_ffw_norm: Vec<f32>,
    /// Gemma 2/3: applied to the MLP output before the residual add.
    pub post_ffw_norm: Option<Vec<f32>>,
    /// Gemma 3: per-head norms of queries and keys.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
}

/// All weights of a Gemma text model.
pub struct Weights<'a> {
    pub embed: MatRef<'a>,
    /// Present only when the output projection is not tied to the embedding.
    pub lm_head: Option<MatRef<'a>>,
    pub final_norm: Vec<f32>,
    pub layers: Vec<LayerWeights<'a>>,
}

impl<'a> Weights<'a> {
    /// The output projection (the embedding when tied).
    pub fn output(&self) -> &MatRef<'a> {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// The matrices one decoded token reads whole: every layer's projections and the output
    /// projection (the embedding only as the tied output; a lookup reads one row).
    pub fn decode_matrices(&self) -> Vec<&MatRef<'a>> {
        let mut v: Vec<&MatRef<'a>> = Vec::new();
        for l in &self.layers {
            v.extend([&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]);
        }
        v.push(self.output());
        v
    }

    /// Bytes of the matrices used in place from the map.
    pub fn mapped_bytes(&self) -> u64 {
        let mut b =
            self.embed.stored_bytes() as u64 + self.lm_head.map_or(0, |m| m.stored_bytes() as u64);
        for l in &self.layers {
            for m in [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down] {
                b += m.stored_bytes() as u64;
            }
        }
        b
    }
}

/// The names under which a checkpoint stores the text model.
pub struct Naming {
    /// Prefix of the decoder (`model.`, `language_model.model.` or `model.language_model.`).
    pub prefix: String,
    /// Name of an untied output projection.
    pub lm_head: String,
    /// Tensors outside this prefix are ignored (vision tower of a multimodal checkpoint).
    pub ignore_outside: Option<String>,
    /// The token embedding's name.
    pub embed: String,
    /// gemma_pytorch layout: Q, K and V fused in `self_attn.qkv_proj` (rows: all Q heads, then K,
    /// then V), q/k norms named `query_norm`/`key_norm`, RoPE buffers stored and ignored.
    pub gemma_pytorch: bool,
    /// GGUF layout (llama.cpp's tensor names for this family): expected names are built under
    /// Hugging Face names and translated by [`Naming::stored`].
    pub gguf: Option<Family>,
    /// Added to RMSNorm weights when binding: 1 for Hugging Face and gemma_pytorch files,
    /// which store `w` for a norm that multiplies by `1 + w`; 0 for GGUF, whose converter
    /// already stores `1 + w` (as `export/gguf.rs` writes it).
    pub norm_offset: f32,
}

impl Naming {
    /// The stored name of a tensor given under its Hugging Face name (the name itself unless
    /// the checkpoint is GGUF).
    pub fn stored(&self, name: &str) -> String {
        match self.gguf {
            Some(f) => {
                crate::checkpoint::gguf::gguf_name(name, f).unwrap_or_else(|_| name.to_string())
            }
            None => name.to_string(),
        }
    }
}

/// True if the index holds a GGUF checkpoint (llama.cpp's tensor names).
pub fn is_gguf(index: &TensorIndex) -> bool {
    index.tensors.contains_key("token_embd.weight")
}

/// Buffers of gemma_pytorch checkpoints that are not weights (precomputed RoPE tables).
pub const GEMMA_PYTORCH_BUFFERS: [&str; 3] = ["freqs_cis", "local_freqs_cis", "global_freqs_cis"];

/// True if the index holds a gemma_pytorch-layout checkpoint.
pub fn is_gemma_pytorch(index: &TensorIndex) -> bool {
    index.tensors.contains_key("embedder.weight")
}

/// Works out the prefix from which tensors exist.
pub fn naming(cfg: &GemmaConfig, index: &TensorIndex) -> Naming {
    if is_gemma_pytorch(index) {
        return Naming {
            prefix: "model.".into(),
            lm_head: "lm_head.weight".into(),
            ignore_outside: None,
            embed: "embedder.weight".into(),
            gemma_pytorch: true,
            gguf: None,
            norm_offset: 1.0,
        };
    }
    if is_gguf(index) {
        return Naming {
            prefix: "model.".into(),
            lm_head: "output.weight".into(),
            ignore_outside: None,
            embed: "token_embd.weight".into(),
            gemma_pytorch: false,
            gguf: Some(cfg.family),
            norm_offset: 0.0,
        };
    }
    if cfg.multimodal {
        for (p, head, outer) in [
            (
                "language_model.model.",
                "language_model.lm_head.weight",
                "language_model.",
            ),
            (
                "model.language_model.",
                "lm_head.weight",
                "model.language_model.",
            ),
        ] {
            if index
                .tensors
                .contains_key(&format!("{p}embed_tokens.weight"))
            {
                return Naming {
                    prefix: p.into(),
                    lm_head: head.into(),
                    ignore_outside: Some(outer.into()),
                    embed: format!("{p}embed_tokens.weight"),
                    gemma_pytorch: false,
                    gguf: None,
                    norm_offset: 1.0,
                };
            }
        }
        return Naming {
            prefix: "language_model.model.".into(),
            lm_head: "language_model.lm_head.weight".into(),
            ignore_outside: Some("language_model.".into()),
            embed: "language_model.model.embed_tokens.weight".into(),
            gemma_pytorch: false,
            gguf: None,
            norm_offset: 1.0,
        };
    }
    Naming {
        prefix: "model.".into(),
        lm_head: "lm_head.weight".into(),
        ignore_outside: None,
        embed: "model.embed_tokens.weight".into(),
        gemma_pytorch: false,
        gguf: None,
        norm_offset: 1.0,
    }
}

/// Names of the Gemma 3 per-head q and k norms.
fn qk_norm_names(nm: &Naming) -> (&'static str, &'static str) {
    if nm.gemma_pytorch {
        ("self_attn.query_norm.weight", "self_attn.key_norm.weight")
    } else {
        ("self_attn.q_norm.weight", "self_attn.k_norm.weight")
    }
}

/// One expected tensor.
struct Expect {
    name: String,
    shape: Vec<usize>,
}

/// The full list of tensors a config requires, in order.
fn expected(cfg: &GemmaConfig, nm: &Naming) -> Vec<Expect> {
    let p = &nm.prefix;
    let h = cfg.hidden_size;
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let i = cfg.intermediate_size;
    let mut v = vec![Expect {
        name: nm.embed.clone(),
        shape: vec![cfg.vocab_size, h],
    }];
    for l in 0..cfg.num_layers {
        let b = format!("{p}layers.{l}.");
        let mut add = |n: &str, s: Vec<usize>| {
            v.push(Expect {
                name: format!("{b}{n}"),
                shape: s,
            })
        };
        if nm.gemma_pytorch {
            add("self_attn.qkv_proj.weight", vec![q + 2 * kv, h]);
        } else {
            add("self_attn.q_proj.weight", vec![q, h]);
            add("self_attn.k_proj.weight", vec![kv, h]);
            add("self_attn.v_proj.weight", vec![kv, h]);
        }
        add("self_attn.o_proj.weight", vec![h, q]);
        add("mlp.gate_proj.weight", vec![i, h]);
        add("mlp.up_proj.weight", vec![i, h]);
        add("mlp.down_proj.weight", vec![h, i]);
        add("input_layernorm.weight", vec![h]);
        add("post_attention_layernorm.weight", vec![h]);
        if cfg.family != Family::Gemma1 {
            add("pre_feedforward_layernorm.weight", vec![h]);
            add("post_feedforward_layernorm.weight", vec![h]);
        }
        if cfg.family == Family::Gemma3 {
            let (qn, kn) = qk_norm_names(nm);
            add(qn, vec![cfg.head_dim]);
            add(kn, vec![cfg.head_dim]);
        }
    }
    v.push(Expect {
        name: format!("{p}norm.weight"),
        shape: vec![h],
    });
    if !cfg.tie_word_embeddings {
        v.push(Expect {
            name: nm.lm_head.clone(),
            shape: vec![cfg.vocab_size, h],
        });
    }
    for e in &mut v {
        e.name = nm.stored(&e.name);
    }
    v
}

/// Checks every expected tensor's presence, shape and dtype against the index, listing missing
/// and unexpected tensors; reads no tensor data. `source` names the checkpoint in errors.
pub fn check(cfg: &GemmaConfig, index: &TensorIndex, source: &str) -> Result<Naming> {
    let nm = naming(cfg, index);
    let exp = expected(cfg, &nm);
    let wanted: BTreeSet<&str> = exp.iter().map(|e| e.name.as_str()).collect();
    let missing: Vec<&str> = exp
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| !index.tensors.contains_key(*n))
        .collect();
    let extra: Vec<&str> = index
        .tensors
        .keys()
        .map(|s| s.as_str())
        .filter(|n| !wanted.contains(n))
        .filter(|n| {
            nm.ignore_outside
                .as_ref()
                .is_none_or(|o| n.starts_with(o.as_str()))
        })
        // An untied head stored although the config ties it is harmless: it is ignored.
        .filter(|n| !(cfg.tie_word_embeddings && *n == nm.lm_head))
        .filter(|n| !(nm.gemma_pytorch && GEMMA_PYTORCH_BUFFERS.contains(n)))
        // Per-row scales of int8 matrices (checked with their matrix below).
        .filter(|n| {
            n.strip_suffix("_scaler")
                .is_none_or(|m| !wanted.contains(m) || !is_int8(index, m))
        })
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut msg = format!(
            "{source}: the checkpoint does not match its config ({} {} layers)",
            cfg.family.name(),
            cfg.num_layers
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
        msg += if nm.gguf.is_some() {
            "\n  the file's metadata does not describe its tensors: the GGUF file is corrupt or not a Gemma model"
        } else {
            "\n  check that config.json belongs to these weights"
        };
        bail!(msg);
    }
    for e in &exp {
        let t = &index.tensors[&e.name];
        let file = index.path_of(t).display();
        if t.shape != e.shape {
            bail!(
                "{file}: tensor `{}` has shape {:?} but the config implies {:?}",
                e.name,
                t.shape,
                e.shape
            );
        }
        match t.dtype {
            StoredDType::Known(DType::I8) if e.shape.len() == 2 => {
                let sn = scaler_name(&e.name);
                let Some(s) = index.tensors.get(&sn) else {
                    bail!("{file}: tensor `{}` is int8 but its per-row scales `{sn}` are missing", e.name);
                };
                if s.shape != [e.shape[0]] || !is_float(&s.dtype) {
                    bail!(
                        "{}: tensor `{sn}` has shape {:?} and dtype {}; the int8 matrix `{}` needs one float scale per row, shape [{}]",
                        index.path_of(s).display(),
                        s.shape,
                        s.dtype,
                        e.name,
                        e.shape[0]
                    );
                }
            }
            ref d if is_float(d) => {}
            StoredDType::Known(DType::Q8_0 | DType::Q4_0 | DType::Q4_K | DType::Q6_K)
                if e.shape.len() == 2 => {}
            ref d => bail!(
                "{file}: tensor `{}` is stored as {d}; frugal reads bf16, f16 and f32 weights in place, int8 matrices with per-row `weight_scaler`, and GGUF matrices in Q8_0, Q4_0, Q4_K or Q6_K: requantize the file to one of those (llama.cpp's `llama-quantize --allow-requantize IN OUT Q4_K_M`, or `Q8_0` for the least loss), or give frugal the model's bf16 or f16 weights",
                e.name,
            ),
        }
    }
    Ok(nm)
}

/// Every stored tensor the model reads (matrices, norm vectors, int8 matrices' per-row scales;
/// gemma_pytorch's fused qkv as one), after the same checks as [`bind`]. Reads no tensor data:
/// this is what the memory plan counts.
pub fn bound_names(cfg: &GemmaConfig, index: &TensorIndex, source: &str) -> Result<Vec<String>> {
    let nm = check(cfg, index, source)?;
    let mut names = Vec::new();
    for e in expected(cfg, &nm) {
        if is_int8(index, &e.name) {
            names.push(scaler_name(&e.name));
        }
        names.push(e.name);
    }
    Ok(names)
}

/// Checks (as [`check`]) and binds every expected tensor in place.
pub fn bind<'a>(cfg: &GemmaConfig, index: &'a TensorIndex, source: &str) -> Result<Weights<'a>> {
    bind_with(cfg, index, source, &BTreeMap::new())
}

/// The stored 2-D matrices the config binds (gemma_pytorch's fused qkv as one), after the same
/// checks as [`bind`]: what quantize-on-load converts. Reads no tensor data.
pub fn matrix_names(cfg: &GemmaConfig, index: &TensorIndex, source: &str) -> Result<Vec<String>> {
    let nm = check(cfg, index, source)?;
    Ok(expected(cfg, &nm)
        .into_iter()
        .filter(|e| e.shape.len() == 2)
        .map(|e| e.name)
        .collect())
}

/// [`bind`], except that the matrices named in `replaced` (stored names, as
/// [`matrix_names`] lists them) are taken from there: the quantized copies made while loading.
pub fn bind_with<'a>(
    cfg: &GemmaConfig,
    index: &'a TensorIndex,
    source: &str,
    replaced: &BTreeMap<String, MatRef<'a>>,
) -> Result<Weights<'a>> {
    let nm = check(cfg, index, source)?;
    let mat = |n: &str| -> MatRef<'a> {
        let n = &nm.stored(n);
        if let Some(m) = replaced.get(n) {
            return *m;
        }
        let t = &index.tensors[n];
        let m = MatRef::new(index.bytes(t), dtype(t), t.shape[0], t.shape[1]);
        if m.dtype == DType::I8 {
            let s = &index.tensors[&scaler_name(n)];
            m.with_scale(index.bytes(s), dtype(s))
        } else {
            m
        }
    };
    let norm = |n: &str| -> Vec<f32> {
        let t = &index.tensors[&nm.stored(n)];
        let mut out = vec![0f32; t.numel()];
        crate::kernels::scalar::to_f32(index.bytes(t), dtype(t), &mut out);
        for x in &mut out {
            *x += nm.norm_offset;
        }
        out
    };
    let p = &nm.prefix;
    let layers = (0..cfg.num_layers)
        .map(|l| {
            let b = format!("{p}layers.{l}.");
            let g = |n: &str| format!("{b}{n}");
            let g1 = cfg.family == Family::Gemma1;
            let (q, k, v) = if nm.gemma_pytorch {
                // Row ranges of the fused matrix: views, no copy.
                let qkv = mat(&g("self_attn.qkv_proj.weight"));
                let (nq, nkv) = (
                    cfg.num_heads * cfg.head_dim,
                    cfg.num_kv_heads * cfg.head_dim,
                );
                (
                    qkv.rows_range(0, nq),
                    qkv.rows_range(nq, nq + nkv),
                    qkv.rows_range(nq + nkv, nq + 2 * nkv),
                )
            } else {
                (
                    mat(&g("self_attn.q_proj.weight")),
                    mat(&g("self_attn.k_proj.weight")),
                    mat(&g("self_attn.v_proj.weight")),
                )
            };
            let (qn, kn) = qk_norm_names(&nm);
            LayerWeights {
                q,
                k,
                v,
                o: mat(&g("self_attn.o_proj.weight")),
                gate: mat(&g("mlp.gate_proj.weight")),
                up: mat(&g("mlp.up_proj.weight")),
                down: mat(&g("mlp.down_proj.weight")),
                input_norm: norm(&g("input_layernorm.weight")),
                post_attn_norm: (!g1).then(|| norm(&g("post_attention_layernorm.weight"))),
                pre_ffw_norm: if g1 {
                    norm(&g("post_attention_layernorm.weight"))
                } else {
                    norm(&g("pre_feedforward_layernorm.weight"))
                },
                post_ffw_norm: (!g1).then(|| norm(&g("post_feedforward_layernorm.weight"))),
                q_norm: (cfg.family == Family::Gemma3).then(|| norm(&g(qn))),
                k_norm: (cfg.family == Family::Gemma3).then(|| norm(&g(kn))),
            }
        })
        .collect();
    Ok(Weights {
        embed: mat(&nm.embed),
        lm_head: (!cfg.tie_word_embeddings).then(|| mat(&nm.lm_head)),
        final_norm: norm(&format!("{p}norm.weight")),
        layers,
    })
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
        StoredDType::Other(_) => unreachable!("checked in bind"),
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

/// A tensor under its Hugging Face name, and where its bytes lie in the checkpoint.
pub struct Source<'a> {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
    /// An RMSNorm weight stored as `1 + w` (GGUF's converter writes it so), where Hugging
    /// Face stores `w`.
    pub plus_one: bool,
}

/// Every tensor the config needs, under its Hugging Face text-model name (gemma_pytorch's fused
/// qkv split by row ranges, its norms renamed; GGUF's names translated back, its norms marked
/// [`Source::plus_one`]), after the same checks as [`bind`]. For conversion: nothing is copied
/// here.
pub fn hf_sources<'a>(
    cfg: &GemmaConfig,
    index: &'a TensorIndex,
    source: &str,
) -> Result<Vec<Source<'a>>> {
    let nm = check(cfg, index, source)?;
    if let Some((n, _)) = index
        .tensors
        .iter()
        .find(|(_, t)| t.dtype == StoredDType::Known(DType::I8))
    {
        bail!("{source}: tensor `{n}` is int8 with per-row scales, which the Hugging Face Gemma format has no way to store; run this checkpoint with frugal directly (it is used in place), or convert its float original");
    }
    let hf = Naming {
        prefix: "model.".into(),
        lm_head: "lm_head.weight".into(),
        ignore_outside: None,
        embed: "model.embed_tokens.weight".into(),
        gemma_pytorch: false,
        gguf: None,
        norm_offset: 1.0,
    };
    let (nq, nkv) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    );
    let mut out = Vec::new();
    for e in expected(cfg, &hf) {
        let rest = e.name.strip_prefix("model.").unwrap_or(&e.name);
        let (src, rows): (String, Option<(usize, usize)>) = if e.name == hf.embed {
            (nm.embed.clone(), None)
        } else if e.name == hf.lm_head {
            (nm.lm_head.clone(), None)
        } else if nm.gemma_pytorch {
            let fused = |end: &str| e.name.replace(end, "qkv_proj.weight");
            if e.name.ends_with("q_proj.weight") {
                (fused("q_proj.weight"), Some((0, nq)))
            } else if e.name.ends_with("k_proj.weight") {
                (fused("k_proj.weight"), Some((nq, nq + nkv)))
            } else if e.name.ends_with("v_proj.weight") {
                (fused("v_proj.weight"), Some((nq + nkv, nq + 2 * nkv)))
            } else {
                (
                    e.name
                        .replace("self_attn.q_norm", "self_attn.query_norm")
                        .replace("self_attn.k_norm", "self_attn.key_norm"),
                    None,
                )
            }
        } else {
            (nm.stored(&format!("{}{rest}", nm.prefix)), None)
        };
        let t = &index.tensors[&src];
        let mut bytes = index.bytes(t);
        if let Some((a, b)) = rows {
            let row = dtype(t).row_bytes(t.shape[1])?;
            bytes = &bytes[a * row..b * row];
        }
        out.push(Source {
            plus_one: nm.norm_offset == 0.0 && e.shape.len() == 1,
            name: e.name,
            dtype: dtype(t),
            shape: e.shape,
            bytes,
        });
    }
    Ok(out)
}
