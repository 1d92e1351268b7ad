//! Architectures: one file per Gemma generation, each holding everything that differs between
//! generations (its config from config.json and from GGUF metadata, its real variants, its one
//! tensor table, its layer composition), behind the [`Architecture`] trait. Everything else
//! (binding, conversion in both directions, synthesis, variant inference, streaming, budgets,
//! the memory plan) asks the architecture through this trait and its table.
//!
//! Adding an architecture: one new file implementing [`Architecture`], and its line in
//! [`ALL`].
//!
//! This module is the model crate's front door: the generic binder ([`crate::bind`]) and the
//! model ([`crate::model`]) know no architecture; [`check`], [`model`] and [`hf_sources`] join
//! them with a config's architecture.

pub mod gemma1;
pub mod gemma2;
pub mod gemma3;
pub mod gemma4;
pub mod gguf;
pub mod hf;

use crate::bind::{self, Binding, Bound, Source, Wanted};
use crate::config::{Arch, GemmaConfig};
use crate::model::{Layer, Model};
use crate::tensors::{PtName, Role, TensorSpec, EMBED_NAMES};
use anyhow::{bail, Context, Result};
use frugal_formats::gguf::Gguf;
use frugal_formats::gguf_write::Value as GgufValue;
use frugal_formats::TensorIndex;
use frugal_tensor::MatRef;
use hf::HfRules;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Every architecture frugal runs, in the order their names are listed to users.
pub const ALL: [&'static dyn Architecture; 4] = [
    &gemma1::Gemma1,
    &gemma2::Gemma2,
    &gemma3::Gemma3,
    &gemma4::Gemma4,
];

impl Arch {
    /// The handle of the registered architecture called `name` (see [`Architecture::name`]).
    pub fn named(name: &str) -> Arch {
        Arch(
            ALL.iter()
                .position(|x| x.name() == name)
                .expect("architectures are registered in arch::ALL"),
        )
    }
}

impl std::ops::Deref for Arch {
    type Target = dyn Architecture;
    fn deref(&self) -> &Self::Target {
        ALL[self.0]
    }
}

impl GemmaConfig {
    /// Reads and resolves `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "{}: cannot read the model's config.json (a Hugging Face model folder holds one)",
                path.display()
            )
        })?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        Self::from_json(&v, &path.display().to_string())
    }

    /// Resolves a parsed config.json by the architecture its `model_type` names; `path` names
    /// the source in errors.
    pub fn from_json(v: &Value, path: &str) -> Result<Self> {
        let top = v
            .as_object()
            .with_context(|| format!("{path}: the config is not a JSON object"))?;
        let model_type = top
            .get("model_type")
            .and_then(|m| m.as_str())
            .with_context(|| {
                format!(
                    "{path}: missing key `model_type` (expected {})",
                    model_types_list(" or ")
                )
            })?;
        let a = by_model_type(model_type).with_context(|| {
            format!(
                "{path}: unknown model_type `{model_type}`: frugal runs {} models",
                model_types_list(" and ")
            )
        })?;
        a.config_from_json(model_type, top, path)
    }

    /// A Hugging Face config.json for the text model.
    pub fn to_hf_json(&self) -> Value {
        self.arch.config_to_json(self)
    }

    /// Number of parameters in the text model: the elements of its tensor table (an untied
    /// output projection counted, a tied one not).
    pub fn num_params(&self) -> u64 {
        self.arch
            .tensors(self)
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum()
    }
}

/// The widest activations a layer of `cfg` makes, from its tensor table (what the memory plan
/// sizes a prefill chunk's buffers by): the residual stream, the queries, the keys (and values),
/// the feed-forward's gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Widths {
    pub hidden: usize,
    pub q: usize,
    pub kv: usize,
    pub ffn: usize,
}

/// The [`Widths`] of `cfg`: the largest output rows of each kind of layer matrix.
pub fn widths(cfg: &GemmaConfig) -> Widths {
    use crate::tensors::key;
    let rows = |k: &str| {
        cfg.arch
            .tensors(cfg)
            .iter()
            .filter(|t| matches!(t.role, Role::Layer(_)) && t.key == k)
            .map(|t| t.shape[0])
            .max()
            .unwrap_or(0)
    };
    Widths {
        hidden: cfg.hidden_size,
        q: rows(key::ATTN_Q),
        kv: rows(key::ATTN_K),
        ffn: rows(key::FFN_GATE),
    }
}

/// What binding `cfg` looks for: its architecture's table, the tensors a checkpoint may hold
/// that the model does not read (an untied output of a tied model), and gemma_pytorch's
/// buffers.
pub fn wanted(cfg: &GemmaConfig) -> Wanted {
    let mut unread = cfg.arch.unread(cfg);
    if cfg.tie_word_embeddings {
        // An untied head stored although the config ties it is harmless: it is ignored.
        let mut untied = cfg.clone();
        untied.tie_word_embeddings = false;
        unread.extend(
            untied
                .arch
                .tensors(&untied)
                .into_iter()
                .filter(|t| t.role == Role::Output),
        );
    }
    Wanted {
        arch_name: cfg.arch.name(),
        specs: cfg.arch.tensors(cfg),
        unread,
        pytorch_buffers: cfg
            .arch
            .pytorch_buffers(cfg)
            .into_iter()
            .map(|b| b.0.to_string())
            .collect(),
    }
}

/// Checks `index` against `cfg`'s table (see [`bind::check`]); reads no tensor data.
pub fn check(cfg: &GemmaConfig, index: &TensorIndex, source: &str) -> Result<Binding> {
    bind::check(cfg, &wanted(cfg), index, source)
}

/// Binds `cfg`'s table in place (the matrices in `replaced` taken from there, see
/// [`bind::bind`]) and composes the model's layers.
pub fn model<'a>(
    cfg: &GemmaConfig,
    index: &'a TensorIndex,
    source: &str,
    replaced: &BTreeMap<String, MatRef<'a>>,
) -> Result<Model<'a>> {
    let mut w = bind::bind(cfg, &wanted(cfg), index, source, replaced)?;
    let layers = cfg.arch.layers(cfg, &mut w)?;
    Model::new(cfg.clone(), w, layers)
}

/// Every tensor of `cfg`'s table under its Hugging Face name (see [`bind::hf_sources`]).
pub fn hf_sources<'a>(
    cfg: &GemmaConfig,
    index: &'a TensorIndex,
    source: &str,
) -> Result<Vec<Source<'a>>> {
    bind::hf_sources(cfg, &wanted(cfg), index, source)
}

/// One generation of models: what differs between generations, as data and small functions.
pub trait Architecture: Sync + Send + 'static {
    /// The name users know ("Gemma 2").
    fn name(&self) -> &'static str;

    /// The config.json `model_type`s this architecture reads.
    fn model_types(&self) -> &'static [&'static str];

    /// GGUF's `general.architecture` for it (llama.cpp's name).
    fn gguf_arch(&self) -> &'static str;

    /// transformers' defaults for its config class and the keys only it reads.
    fn hf_rules(&self) -> &'static HfRules;

    /// Resolves a config.json whose `model_type` is one of [`Architecture::model_types`], with
    /// transformers' defaults for absent keys; `path` names the source in errors.
    fn config_from_json(
        &self,
        model_type: &str,
        top: &Map<String, Value>,
        path: &str,
    ) -> Result<GemmaConfig> {
        let arch = Arch::named(self.name());
        hf::resolve(arch, self.hf_rules(), model_type, top, top, "", false, path)
    }

    /// A Hugging Face config.json for the text model (keys transformers reads back).
    fn config_to_json(&self, cfg: &GemmaConfig) -> Value {
        hf::to_json(self.hf_rules(), cfg)
    }

    /// The config a GGUF file's metadata describes, resolved as llama.cpp resolves it
    /// (including the values it hard-codes per architecture).
    fn config_from_gguf(&self, g: &Gguf, index: &TensorIndex) -> Result<GemmaConfig>;

    /// The hyper-parameter metadata llama.cpp's converter writes for `cfg` (after
    /// `general.architecture`), with `ctx_len` as the context length; an error where GGUF
    /// cannot say what the model does.
    fn gguf_hparams(
        &self,
        cfg: &GemmaConfig,
        ctx_len: u32,
        source: &str,
    ) -> Result<Vec<(String, GgufValue)>>;

    /// The context length written to GGUF when the source config does not give one.
    fn default_context_length(&self) -> u32;

    /// The real variants' shapes (and small ones for tests).
    fn variants(&self) -> Vec<Variant>;

    /// The config.json of a variant (the older, widely read keys).
    fn variant_json(&self, v: &Variant) -> Value;

    /// The vocabulary of a gemma_pytorch checkpoint of variant `v` whose embedding has `rows`
    /// rows, if the two agree (an exact match, or fewer rows where the published files
    /// trimmed the vocabulary).
    fn pytorch_vocab(&self, v: &Variant, rows: usize) -> Option<usize> {
        (rows == v.vocab).then_some(rows)
    }

    /// The tensor table: every tensor the model reads, under every naming, in binding order.
    fn tensors(&self, cfg: &GemmaConfig) -> Vec<TensorSpec>;

    /// Buffers a gemma_pytorch checkpoint stores beside the weights (precomputed RoPE tables):
    /// (name, rotary base), ignored when binding, written by `synth --format ckpt`.
    fn pytorch_buffers(&self, cfg: &GemmaConfig) -> Vec<(&'static str, f64)>;

    /// The decoder layers, composed from the shared blocks over the bound weights.
    fn layers<'a>(&self, cfg: &GemmaConfig, w: &mut Bound<'a>) -> Result<Vec<Box<dyn Layer + 'a>>>;

    /// The embedding multiplier: sqrt(hidden) rounded to bf16, as the reference
    /// implementations of Gemma 1-3 compute it.
    fn embed_scale(&self, cfg: &GemmaConfig) -> f32 {
        half::bf16::from_f32((cfg.hidden_size as f32).sqrt()).to_f32()
    }

    /// Tensors published checkpoints may hold that the model does not read (ignored when
    /// present, never required).
    fn unread(&self, _cfg: &GemmaConfig) -> Vec<TensorSpec> {
        Vec::new()
    }
}

/// A known model shape.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: &'static str,
    /// The config.json `model_type` it is written with.
    pub model_type: &'static str,
    pub vocab: usize,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv: usize,
    pub head_dim: usize,
    /// `query_pre_attn_scalar`.
    pub qpas: usize,
    pub window: Option<usize>,
    /// Attention and final logit softcaps.
    pub softcaps: Option<(f64, f64)>,
    /// Linear rope scaling of global layers.
    pub rope_factor: Option<f64>,
}

/// A table row: positional arguments keep each architecture's list one line per model.
#[allow(clippy::too_many_arguments)]
pub const fn variant(
    name: &'static str,
    model_type: &'static str,
    vocab: usize,
    hidden: usize,
    inter: usize,
    layers: usize,
    heads: usize,
    kv: usize,
    head_dim: usize,
    qpas: usize,
) -> Variant {
    Variant {
        name,
        model_type,
        vocab,
        hidden,
        inter,
        layers,
        heads,
        kv,
        head_dim,
        qpas,
        window: None,
        softcaps: None,
        rope_factor: None,
    }
}

impl Variant {
    /// The architecture this variant belongs to.
    pub fn arch(&self) -> &'static dyn Architecture {
        by_model_type(self.model_type).expect("variants name a registered model_type")
    }

    /// The config.json of this variant.
    pub fn config_json(&self) -> Value {
        self.arch().variant_json(self)
    }

    /// The resolved config of this variant.
    pub fn config(&self) -> GemmaConfig {
        GemmaConfig::from_json(&self.config_json(), self.name).expect("built-in variants are valid")
    }

    /// Looks a variant up by name (as `synth --shape` and `--variant` take it).
    pub fn by_name(name: &str) -> Result<Variant> {
        let all = variants();
        all.iter()
            .find(|s| s.name == name)
            .cloned()
            .with_context(|| {
                let names: Vec<&str> = all.iter().map(|s| s.name).collect();
                format!(
                    "--shape: unknown shape `{name}`; known shapes: {}",
                    names.join(", ")
                )
            })
    }
}

/// Every known variant of every architecture.
pub fn variants() -> Vec<Variant> {
    ALL.iter().flat_map(|a| a.variants()).collect()
}

/// The architecture that reads config.json's `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static dyn Architecture> {
    ALL.iter()
        .copied()
        .find(|a| a.model_types().contains(&model_type))
}

/// The architecture of GGUF's `general.architecture`.
pub fn by_gguf_arch(name: &str) -> Option<&'static dyn Architecture> {
    ALL.iter().copied().find(|a| a.gguf_arch() == name)
}

/// Every `model_type` read, as a list ending in `last` ("a, b or c").
pub fn model_types_list(last: &str) -> String {
    let all: Vec<&str> = ALL
        .iter()
        .flat_map(|a| a.model_types().iter().copied())
        .collect();
    match all.split_last() {
        Some((l, rest)) if !rest.is_empty() => format!("{}{last}{l}", rest.join(", ")),
        _ => all.join(""),
    }
}

/// The config of a GGUF file, by the architecture its metadata names.
pub fn config_from_gguf(g: &Gguf, index: &TensorIndex) -> Result<GemmaConfig> {
    let name = g.architecture()?;
    let Some(a) = by_gguf_arch(name) else {
        let known: Vec<&str> = ALL.iter().map(|a| a.gguf_arch()).collect();
        bail!(
            "{}: architecture `{name}` is not supported; frugal runs {} (text) GGUF files",
            g.path,
            known.join(", ")
        );
    };
    a.config_from_gguf(g, index)
}

/// Whether `index` holds a gemma_pytorch checkpoint (its embedding's name).
pub fn is_gemma_pytorch(index: &TensorIndex) -> bool {
    index.tensors.contains_key(EMBED_NAMES[1])
}

/// The rows of the token embedding under gemma_pytorch's or Hugging Face's name.
pub fn embedding_rows(index: &TensorIndex) -> Option<usize> {
    index
        .tensors
        .get(EMBED_NAMES[1])
        .or_else(|| index.tensors.get(EMBED_NAMES[0]))
        .map(|t| t.shape[0])
}

/// Infers the variant of a gemma_pytorch checkpoint (no config.json) from its tensors: the
/// first known variant whose tensor table, under gemma_pytorch's names, is exactly what the
/// checkpoint holds (names and shapes, the RoPE buffers aside). Returns its config (vocabulary
/// from the embedding) and name; no match is an error listing the nearest variants.
pub fn infer_pytorch_variant(
    index: &TensorIndex,
    source: &str,
) -> Result<(GemmaConfig, &'static str)> {
    let shape = |n: &str| index.tensors.get(n).map(|t| t.shape.clone());
    let name = EMBED_NAMES[1];
    let emb = shape(name)
        .with_context(|| format!("{source}: no `{name}`: not a gemma_pytorch checkpoint"))?;
    if emb.len() != 2 {
        bail!("{source}: `{name}` has shape {emb:?}, expected 2 dimensions");
    }
    let (rows, hidden) = (emb[0], emb[1]);
    let all = variants();
    for v in &all {
        let a = v.arch();
        let Some(vocab) = a.pytorch_vocab(v, rows) else {
            continue;
        };
        let mut c = v.config_json();
        c["vocab_size"] = serde_json::json!(vocab);
        let cfg = GemmaConfig::from_json(&c, &format!("{source} (inferred {})", v.name))?;
        if pytorch_table_matches(&cfg, index) {
            return Ok((cfg, v.name));
        }
    }
    // What the file holds, read through a known table's names, for the message.
    use crate::tensors::key;
    let layers = (0..)
        .take_while(|&l| {
            pytorch_name(l, key::ATTN_NORM).is_some_and(|n| index.tensors.contains_key(&n))
        })
        .count();
    let rows0 = |k: &str| {
        pytorch_name(0, k)
            .and_then(|n| shape(&n))
            .map_or(0, |s| s[0])
    };
    let (inter, qkv) = (rows0(key::FFN_GATE), rows0(key::ATTN_Q));
    // The architecture whose layer holds the most tensors, all of them present in layer 0.
    let like = ALL
        .iter()
        .filter_map(|a| {
            let cfg = a.variants().first()?.config();
            let names: Vec<String> = cfg
                .arch
                .tensors(&cfg)
                .iter()
                .filter(|t| t.role == Role::Layer(0))
                .map(|t| t.pytorch.stored().to_string())
                .collect();
            names
                .iter()
                .all(|n| index.tensors.contains_key(n))
                .then_some((names.len(), a.model_types()[0]))
        })
        .max()
        .map_or(String::new(), |(_, m)| format!("{m}-like, "));
    let mut near: Vec<&Variant> = all.iter().filter(|s| !s.name.starts_with("tiny")).collect();
    near.sort_by_key(|s| s.layers.abs_diff(layers) * 4096 + s.hidden.abs_diff(hidden));
    let list: Vec<String> = near
        .iter()
        .take(3)
        .map(|s| {
            format!(
                "{} ({}, {} layers, hidden {}, intermediate {})",
                s.name, s.model_type, s.layers, s.hidden, s.inter
            )
        })
        .collect();
    bail!(
        "{source}: no known Gemma variant has this shape ({like}{layers} layers, hidden {hidden}, intermediate {inter}, qkv rows {qkv}, vocab {rows}); nearest: {}. Name it with --variant NAME or give a Hugging Face style --config FILE",
        list.join("; ")
    )
}

/// The gemma_pytorch name of tensor `key` of layer `l` in the first registered architecture's
/// table (the stored name: a fused tensor's for Q, K and V).
fn pytorch_name(l: usize, key: &str) -> Option<String> {
    let mut cfg = ALL[0].variants().first()?.config();
    cfg.num_layers = l + 1;
    cfg.layer_kinds = vec![crate::config::LayerKind::Global; l + 1];
    cfg.arch
        .tensors(&cfg)
        .into_iter()
        .find(|t| t.role == Role::Layer(l) && t.key == key)
        .map(|t| t.pytorch.stored().to_string())
}

/// Whether `index` holds exactly `cfg`'s tensor table under gemma_pytorch's names (the fused
/// qkv as one tensor; its RoPE buffers and int8 scales aside).
fn pytorch_table_matches(cfg: &GemmaConfig, index: &TensorIndex) -> bool {
    let mut want: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for t in cfg.arch.tensors(cfg) {
        match &t.pytorch {
            PtName::Plain(n) => {
                want.insert(n.clone(), t.shape.clone());
            }
            PtName::Rows { fused, rows } => {
                let e = want
                    .entry(fused.clone())
                    .or_insert_with(|| vec![0, t.shape[1]]);
                e[0] = e[0].max(rows.end);
            }
        }
    }
    let buffers: Vec<&str> = cfg.arch.pytorch_buffers(cfg).iter().map(|b| b.0).collect();
    let held = index
        .tensors
        .iter()
        .filter(|(n, _)| !buffers.contains(&n.as_str()))
        .filter(|(n, _)| {
            !n.strip_suffix("_scaler")
                .is_some_and(|m| want.contains_key(m))
        });
    let mut count = 0;
    for (n, t) in held {
        if want.get(n) != Some(&t.shape) {
            return false;
        }
        count += 1;
    }
    count == want.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::Scheme;
    use crate::config::{LayerKind, Rope};
    use serde_json::json;

    /// Streaming and budgets group tensors by the table's roles, never by parsing names: every
    /// naming of every architecture's table agrees with those roles.
    #[test]
    fn names_agree_with_roles() {
        for v in ["tiny-gemma", "tiny-gemma2", "tiny-gemma3"] {
            let mut cfg = Variant::by_name(v).unwrap().config();
            cfg.tie_word_embeddings = false;
            let table = cfg.arch.tensors(&cfg);
            assert!(table.iter().any(|t| t.role == Role::Output), "{v}");
            for t in &table {
                let names = [
                    Scheme::hf().stored_name(t),
                    Scheme::GemmaPytorch.stored_name(t),
                    Scheme::Gguf.stored_name(t),
                ];
                let layer = |n: &str| {
                    ["model.layers.", "blk."]
                        .iter()
                        .find_map(|p| n.strip_prefix(p))
                        .and_then(|r| r.split('.').next()?.parse::<usize>().ok())
                };
                for n in &names {
                    match t.role {
                        Role::Layer(l) => assert_eq!(layer(n), Some(l), "{v}: {n}"),
                        _ => assert_eq!(layer(n), None, "{v}: {n}"),
                    }
                }
            }
            // One spec per (role, key), and a layer's keys the same in every layer.
            let mut seen = std::collections::BTreeSet::new();
            for t in &table {
                assert!(seen.insert((t.role, t.key)), "{v}: {:?} {}", t.role, t.key);
            }
            let keys = |l| -> Vec<&str> {
                table
                    .iter()
                    .filter(|t| t.role == Role::Layer(l))
                    .map(|t| t.key)
                    .collect()
            };
            for l in 1..cfg.num_layers {
                assert_eq!(keys(l), keys(0), "{v}");
            }
        }
    }

    #[test]
    fn gemma3_old_keys() {
        let c = GemmaConfig::from_json(
            &json!({"model_type":"gemma3_text","hidden_size":64,"intermediate_size":128,"num_hidden_layers":7,
                "num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"sliding_window":8,
                "rope_theta":1e6,"rope_local_base_freq":1e4,"rope_scaling":{"rope_type":"linear","factor":8.0},
                "vocab_size":100}),
            "t",
        )
        .unwrap();
        assert_eq!(c.layer_kinds[5], LayerKind::Global);
        assert_eq!(c.layer_kinds[4], LayerKind::Local);
        assert_eq!(
            c.rope(5),
            Rope {
                theta: 1e6,
                factor: 8.0
            }
        );
        assert_eq!(
            c.rope(0),
            Rope {
                theta: 1e4,
                factor: 1.0
            }
        );
        assert_eq!(c.attn_softcap, None);
    }

    #[test]
    fn unknown_type_and_missing_key() {
        let e =
            GemmaConfig::from_json(&json!({"model_type":"llama"}), "x/config.json").unwrap_err();
        assert!(e.to_string().contains("unknown model_type `llama`"), "{e}");
        let e = GemmaConfig::from_json(
            &json!({"model_type":"gemma","hidden_size":64}),
            "x/config.json",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("missing key `intermediate_size`"),
            "{e}"
        );
    }
}
