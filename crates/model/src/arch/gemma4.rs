//! Gemma 4 (`gemma4_text`, or the text part of a multimodal `gemma4`; llama.cpp's `gemma4`):
//! Gemma 3's sandwich-normed layer with plain-`w` RMSNorms (no `1 +`), attention scale 1 (the
//! q/k norms take its place) and a weightless RMSNorm of the values; head size and key/value
//! heads per layer type (full layers wider, 512 against 256 in the released models), keys used
//! as values on full layers of the `attention_k_eq_v` models, proportional RoPE on full layers
//! (only the first quarter of each half of the head rotates, frequencies over the whole head),
//! and each layer's output scaled by its `layer_scalar`. The E models add per-layer embeddings
//! (a `[vocab, layers * 256]` table read one row per token, mixed with a projection of the
//! embedding, fed to each layer through a gate after its feed-forward) and KV sharing (the last
//! layers attend over the cache of the last earlier layer of their type and hold none), with a
//! feed-forward twice as wide on those layers; the 26B-A4B runs a mixture of experts beside the
//! dense feed-forward of every layer. The embedding is scaled by sqrt(hidden) in f32, final
//! logits softcapped (30 in every released config). Reference: transformers 5.25
//! `modeling_gemma4.py`; the architecture, its variants and its pitfalls are described in
//! docs beside the issue (`gemma4.md`).

use super::gemma1::base_json;
use super::hf::{self, HfRules, Keys};
use super::{Architecture, Variant};
use crate::bind::Bound;
use crate::blocks::{self, Attention, Experts, Mlp, Ops};
use crate::config::{Arch, GemmaConfig, LayerKind, LayerShape, Moe, Rope};
use crate::kv::LayerCache;
use crate::model::Layer;
use crate::tensors::{key, Kind, Part, PtName, Role, Table, TensorSpec};
use anyhow::{bail, Context, Result};
use frugal_formats::gguf::Gguf;
use frugal_formats::gguf_write::Value as GgufValue;
use frugal_formats::TensorIndex;
use frugal_kernels::ops;
use serde_json::{json, Map, Value};

/// transformers' `Gemma4TextConfig` defaults (those `hf::resolve` reads).
const HF: HfRules = HfRules {
    model_type: "gemma4_text",
    class: "Gemma4ForCausalLM",
    vocab: 262144,
    kv_heads: Some(4),
    head_dim: 256,
    rope_theta: 1_000_000.0,
    local_theta: 10000.0,
    window: Some(512),
    pattern: 6,
    pattern_key: false,
    attn_cap: None,
    final_cap: None,
    query_scalar: None,
    local_base_key: false,
};

/// `Gemma4TextConfig` defaults of the keys only Gemma 4 reads.
const GLOBAL_HEAD_DIM: usize = 512;
const PER_LAYER_INPUT: usize = 256;
const PER_LAYER_VOCAB: usize = 262144;
/// Full layers' default rotary: proportional, a quarter of the head, base 1e6.
const FULL_ROTARY_FRACTION: f64 = 0.25;
/// The key of llama.cpp's `rope_freqs.weight`.
const ROPE_FREQS: &str = "rope_freqs";

/// Keys of the tensors only Gemma 4 has (layer tensors; the per-layer embedding's global ones
/// are in [`key`], the model reads them).
pub mod k4 {
    pub const LAYER_SCALAR: &str = "layer_output_scale";
    pub const PLE_GATE: &str = "inp_gate";
    pub const PLE_PROJ: &str = "proj";
    pub const PLE_POST_NORM: &str = "post_norm";
    pub const ROUTER: &str = "ffn_gate_inp";
    pub const ROUTER_SCALE: &str = "ffn_gate_inp_scale";
    pub const EXPERT_SCALE: &str = "ffn_down_exps_scale";
    pub const GATE_UP_EXPS: &str = "ffn_gate_up_exps";
    pub const DOWN_EXPS: &str = "ffn_down_exps";
    pub const PRE_FFN_NORM_2: &str = "pre_ffw_norm_2";
    pub const POST_FFN_NORM_1: &str = "post_ffw_norm_1";
    pub const POST_FFN_NORM_2: &str = "post_ffw_norm_2";
}

pub struct Gemma4;

impl Architecture for Gemma4 {
    fn name(&self) -> &'static str {
        "Gemma 4"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma4_text", "gemma4"]
    }

    fn gguf_arch(&self) -> &'static str {
        "gemma4"
    }

    fn hf_rules(&self) -> &'static HfRules {
        &HF
    }

    fn config_from_json(
        &self,
        model_type: &str,
        top: &Map<String, Value>,
        path: &str,
    ) -> Result<GemmaConfig> {
        let (obj, prefix, multimodal) = if model_type == "gemma4" {
            // The multimodal checkpoint: the text model's keys are in `text_config`.
            let tc = top
                .get("text_config")
                .and_then(|t| t.as_object())
                .with_context(|| {
                    format!("{path}: model_type gemma4 needs an object `text_config`")
                })?;
            (tc, "text_config.", true)
        } else {
            (top, "", false)
        };
        resolve(model_type, top, obj, prefix, multimodal, path)
    }

    fn config_to_json(&self, cfg: &GemmaConfig) -> Value {
        to_json(cfg)
    }

    /// As llama.cpp's converter writes Gemma 4 and its `gemma4` loader reads it: per-layer
    /// `head_count_kv` and `feed_forward_length` (scalar or array), `sliding_window_pattern`
    /// (true = sliding), `key_length` for full layers and `key_length_swa` for sliding ones,
    /// `rope_freqs.weight` (full layers' proportional RoPE as frequency factors), no `attn_v` on
    /// full layers when keys are the values. Resolved through the config.json rules.
    fn config_from_gguf(&self, g: &Gguf, index: &TensorIndex) -> Result<GemmaConfig> {
        let json = gguf_config_json(g, index)?;
        GemmaConfig::from_json(&json, &g.path)
    }

    fn gguf_hparams(
        &self,
        _cfg: &GemmaConfig,
        _ctx_len: u32,
        source: &str,
    ) -> Result<Vec<(String, GgufValue)>> {
        bail!("{source}: writing Gemma 4 as GGUF is not supported yet")
    }

    fn default_context_length(&self) -> u32 {
        131072
    }

    /// The released shapes (gemma4.md §1.1); what only Gemma 4 has is in [`variant_extra`].
    #[rustfmt::skip]
    fn variants(&self) -> Vec<Variant> {
        let g4 = |mut v: Variant, w: usize| {
            v.window = Some(w);
            v.softcaps = Some((0.0, 30.0));
            v
        };
        // variant(name, model_type, vocab, hidden, intermediate, layers, heads, kv heads (sliding), head_dim (sliding), qpas)
        vec![
            g4(super::variant("gemma4-e2b", "gemma4_text", 262144, 1536, 6144, 35, 8, 1, 256, 1), 512),
            g4(super::variant("gemma4-e4b", "gemma4_text", 262144, 2560, 10240, 42, 8, 2, 256, 1), 512),
            g4(super::variant("gemma4-12b", "gemma4_text", 262144, 3840, 15360, 48, 16, 8, 256, 1), 1024),
            g4(super::variant("gemma4-26b-a4b", "gemma4_text", 262144, 2816, 2112, 30, 16, 8, 256, 1), 1024),
            g4(super::variant("gemma4-31b", "gemma4_text", 262144, 5376, 21504, 60, 32, 16, 256, 1), 1024),
        ]
    }

    fn variant_json(&self, v: &Variant) -> Value {
        let mut c = base_json(HF.class, v);
        let o = c.as_object_mut().expect("object");
        o.remove("rope_theta");
        o.insert("sliding_window".into(), json!(v.window));
        o.insert(
            "final_logit_softcapping".into(),
            json!(v.softcaps.map(|s| s.1)),
        );
        for (k, x) in variant_extra(v) {
            o.insert(k.into(), x);
        }
        c
    }

    fn tensors(&self, cfg: &GemmaConfig) -> Vec<TensorSpec> {
        let t = Table::new(cfg);
        let (h, p, nl) = (cfg.hidden_size, cfg.per_layer_input, cfg.num_layers);
        let mut v = vec![t.embedding()];
        if p > 0 {
            v.push(global(
                key::PER_LAYER_EMBD,
                Part::Embedding,
                Kind::Matrix,
                "embed_tokens_per_layer.weight",
                "per_layer_token_embd.weight",
                vec![cfg.per_layer_vocab, nl * p],
            ));
            v.push(global(
                key::PER_LAYER_PROJ,
                Part::Embedding,
                Kind::Matrix,
                "per_layer_model_projection.weight",
                "per_layer_model_proj.weight",
                vec![nl * p, h],
            ));
            v.push(global(
                key::PER_LAYER_PROJ_NORM,
                Part::Norm,
                Kind::Vector,
                "per_layer_projection_norm.weight",
                "per_layer_proj_norm.weight",
                vec![p],
            ));
        }
        for l in 0..nl {
            v.extend(layer_tensors(cfg, l));
        }
        let mut f = t.final_norm();
        f.kind = Kind::Vector;
        v.push(f);
        if !cfg.tie_word_embeddings {
            v.push(t.output());
        }
        v
    }

    /// Google's original E2B/E4B files carry keys, values and key norms for the layers that
    /// read another layer's cache; nothing uses them (transformers ignores them too).
    /// llama.cpp's converter adds `rope_freqs.weight` (the full layers' proportional RoPE as
    /// frequency factors), read with the metadata.
    fn unread(&self, cfg: &GemmaConfig) -> Vec<TensorSpec> {
        let h = cfg.hidden_size;
        let full = (0..cfg.num_layers).find(|&l| cfg.layer_kinds[l] == LayerKind::Global);
        let rope_freqs = full.map(|l| {
            global(
                ROPE_FREQS,
                Part::Norm,
                Kind::Vector,
                "rope_freqs",
                "rope_freqs.weight",
                vec![cfg.layer(l).head_dim / 2],
            )
        });
        rope_freqs
            .into_iter()
            .chain(
                (0..cfg.num_layers)
                    .filter(|&l| cfg.layer(l).kv_layer != l)
                    .flat_map(|l| {
                        let s = cfg.layer(l);
                        let kv = s.kv_heads * s.head_dim;
                        let m = |key, name: &str, gguf: &str| {
                            layer(
                                l,
                                key,
                                Part::Attention,
                                Kind::Matrix,
                                name,
                                gguf,
                                vec![kv, h],
                            )
                        };
                        [
                            m(key::ATTN_K, "self_attn.k_proj.weight", "attn_k.weight"),
                            m(key::ATTN_V, "self_attn.v_proj.weight", "attn_v.weight"),
                            layer(
                                l,
                                key::ATTN_K_NORM,
                                Part::Norm,
                                Kind::Vector,
                                "self_attn.k_norm.weight",
                                "attn_k_norm.weight",
                                vec![s.head_dim],
                            ),
                        ]
                    }),
            )
            .collect()
    }

    fn pytorch_buffers(&self, _cfg: &GemmaConfig) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    fn layers<'a>(&self, cfg: &GemmaConfig, w: &mut Bound<'a>) -> Result<Vec<Box<dyn Layer + 'a>>> {
        (0..cfg.num_layers)
            .map(|l| Ok(Box::new(Gemma4Layer::new(cfg, l, w)?) as Box<dyn Layer + 'a>))
            .collect()
    }

    /// sqrt(hidden) in f32 (transformers in float32, llama.cpp); transformers in bf16 rounds
    /// it to bf16 first.
    fn embed_scale(&self, cfg: &GemmaConfig) -> f32 {
        (cfg.hidden_size as f64).sqrt() as f32
    }
}

/// The keys of a released shape (gemma4.md §1.1) beyond [`Variant`]'s: layer types (the E
/// models 4 or 5 sliding to 1 full, the others 5 to 1), full layers' head size 512 and, with
/// keys as values, their KV heads; per-layer embeddings, KV sharing and the double-wide MLP of
/// the E models; the 26B's experts.
fn variant_extra(v: &Variant) -> Vec<(&'static str, Value)> {
    let period = if v.name == "gemma4-e2b" { 5 } else { 6 };
    let types: Vec<&str> = (0..v.layers)
        .map(|l| {
            if l % period == period - 1 {
                "full_attention"
            } else {
                "sliding_attention"
            }
        })
        .collect();
    // (PLE width, shared layers, double-wide, global KV heads with k_eq_v, experts)
    let (ple, shared, double, global_kv, moe) = match v.name {
        "gemma4-e2b" => (256, 20, true, None, None),
        "gemma4-e4b" => (256, 18, false, None, None),
        "gemma4-12b" => (0, 0, false, Some(1), None),
        "gemma4-26b-a4b" => (0, 0, false, Some(2), Some((128, 8, 704))),
        _ => (0, 0, false, Some(4), None),
    };
    let mut x = vec![
        ("layer_types", json!(types)),
        ("global_head_dim", json!(GLOBAL_HEAD_DIM)),
        ("hidden_size_per_layer_input", json!(ple)),
        ("vocab_size_per_layer_input", json!(PER_LAYER_VOCAB)),
        ("num_kv_shared_layers", json!(shared)),
        ("use_double_wide_mlp", json!(double)),
        ("attention_k_eq_v", json!(global_kv.is_some())),
        ("num_global_key_value_heads", json!(global_kv)),
        (
            "max_position_embeddings",
            json!(if ple > 0 { 131072 } else { 262144 }),
        ),
        (
            "rope_parameters",
            json!({
                "sliding_attention": {"rope_type": "default", "rope_theta": HF.local_theta},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": FULL_ROTARY_FRACTION,
                    "rope_theta": HF.rope_theta},
            }),
        ),
        ("enable_moe_block", json!(moe.is_some())),
    ];
    if let Some((e, k, i)) = moe {
        x.push(("num_experts", json!(e)));
        x.push(("top_k_experts", json!(k)));
        x.push(("moe_intermediate_size", json!(i)));
    }
    x
}

/// The `gemma4_text` config.json a GGUF file's metadata and tensors describe (see
/// [`Gemma4::config_from_gguf`]).
fn gguf_config_json(g: &Gguf, index: &TensorIndex) -> Result<Value> {
    let path = &g.path;
    let a = "gemma4";
    let k = |s: &str| format!("{a}.{s}");
    let map = &index.files[0].map;
    let n = |s: &str| -> Result<usize> {
        let v = g.uint_req(&k(s))?;
        if v == 0 || v > 1 << 24 {
            bail!("{path}: metadata `{}` is {v}", k(s));
        }
        Ok(v as usize)
    };
    let nl = n("block_count")?;
    let hidden = n("embedding_length")?;
    let heads = n("attention.head_count")?;
    let per_layer = |s: &str| -> Result<Vec<usize>> {
        let v = g
            .uints(map, &k(s), nl)?
            .with_context(|| format!("{path}: missing metadata `{}`", k(s)))?;
        if let Some(x) = v.iter().find(|&&x| x == 0 || x > 1 << 24) {
            bail!("{path}: metadata `{}` holds {x}", k(s));
        }
        Ok(v.into_iter().map(|x| x as usize).collect())
    };
    let ffn = per_layer("feed_forward_length")?;
    let kv_heads = match g.get(&k("attention.head_count_kv")) {
        None => vec![heads; nl],
        Some(_) => per_layer("attention.head_count_kv")?,
    };
    let pattern = k("attention.sliding_window_pattern");
    let window = g
        .uint(&k("attention.sliding_window"))?
        .filter(|&w| w > 0)
        .map(|w| w as usize);
    let sliding: Vec<bool> = match (window, g.array(map, &pattern)?) {
        (None, _) => vec![false; nl],
        (Some(_), Some(arr)) if arr.len == nl => arr.bools()?,
        (Some(_), _) => {
            bail!("{path}: metadata `{pattern}` must be {nl} bools (true: the layer slides)")
        }
    };
    let full_dim = n("attention.key_length")?;
    let swa_dim = match g.uint(&k("attention.key_length_swa"))? {
        None => full_dim,
        Some(_) => n("attention.key_length_swa")?,
    };
    for (key, want) in [
        ("attention.value_length", full_dim),
        ("attention.value_length_swa", swa_dim),
    ] {
        if let Some(v) = g.uint(&k(key))? {
            if v as usize != want {
                bail!("{path}: metadata `{}` ({v}) differs from the key length ({want}); Gemma 4's keys and values have one head size per layer type", k(key));
            }
        }
    }
    let eps = g
        .float(&k("attention.layer_norm_rms_epsilon"))?
        .with_context(|| {
            format!(
                "{path}: missing metadata `{}`",
                k("attention.layer_norm_rms_epsilon")
            )
        })?;
    let rows = |name: &str| index.tensors.get(name).map(|t| t.shape[0]);
    let vocab = rows("token_embd.weight")
        .with_context(|| format!("{path}: no tensor `token_embd.weight` (the token embedding)"))?;
    let shared = g.uint(&k("attention.shared_kv_layers"))?.unwrap_or(0) as usize;
    if shared >= nl && shared > 0 {
        bail!(
            "{path}: metadata `{}` ({shared}) leaves no layer to hold a cache ({nl} layers)",
            k("attention.shared_kv_layers")
        );
    }
    let first_shared = nl - shared;
    // The dense width: one for every layer, or twice it on the KV-sharing layers
    // (`use_double_wide_mlp`).
    let base = ffn[0];
    let double_wide = shared > 0 && ffn[first_shared..].iter().all(|&f| f == 2 * base);
    if !(0..nl).all(|l| ffn[l] == base || (double_wide && l >= first_shared)) {
        bail!("{path}: metadata `{}` is {ffn:?}: Gemma 4 has one width, or twice it on the last `shared_kv_layers` layers", k("feed_forward_length"));
    }
    // Keys as values: full layers holding a cache without `attn_v`.
    let owning_full: Vec<usize> = (0..nl)
        .filter(|&l| !sliding[l] && l < first_shared)
        .collect();
    let no_v: Vec<bool> = owning_full
        .iter()
        .map(|l| {
            !index
                .tensors
                .contains_key(&format!("blk.{l}.attn_v.weight"))
        })
        .collect();
    let k_eq_v = no_v.iter().any(|&b| b);
    if k_eq_v && !no_v.iter().all(|&b| b) {
        bail!("{path}: some full-attention layers have `attn_v` and others not (Gemma 4 uses keys as values on all of them or none)");
    }
    // RoPE: sliding layers rotate the whole head; full layers as `rope_freqs.weight` says
    // (the converter's proportional RoPE: factor 1 for the pairs that rotate, 1e30 for the
    // rest, frequencies over the whole head), else the whole head too.
    if let Some(d) = g.uint(&k("rope.dimension_count_swa"))? {
        if d as usize != swa_dim {
            bail!("{path}: metadata `{}` is {d}, expected the sliding head size {swa_dim} (Gemma 4 rotates whole sliding heads)", k("rope.dimension_count_swa"));
        }
    }
    let rope_dims = g
        .uint(&k("rope.dimension_count"))?
        .map_or(full_dim, |d| d as usize);
    if rope_dims != full_dim {
        bail!("{path}: metadata `{}` is {rope_dims}, expected the full-layer head size {full_dim} (a partial rotation is given by `rope_freqs.weight`)", k("rope.dimension_count"));
    }
    let fraction = match index.tensors.get("rope_freqs.weight") {
        None => 1.0,
        Some(t) => {
            let name = "rope_freqs.weight";
            if t.dtype != frugal_formats::StoredDType::Known(frugal_tensor::DType::F32)
                || t.shape != [full_dim / 2]
            {
                bail!(
                    "{path}: tensor `{name}` is {} {:?}, expected f32 [{}] (one factor per rotary pair of a full layer)",
                    t.dtype,
                    t.shape,
                    full_dim / 2
                );
            }
            let f: Vec<f32> = index
                .bytes(t)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let rot = f.iter().take_while(|&&x| x == 1.0).count();
            if rot == 0 || f[rot..].iter().any(|&x| x < 1e20) {
                bail!("{path}: tensor `{name}` holds frequency factors frugal does not honour (it reads the converter's proportional RoPE: 1 for the pairs that rotate, then 1e30)");
            }
            2.0 * rot as f64 / full_dim as f64
        }
    };
    let theta = g.float(&k("rope.freq_base"))?.unwrap_or(HF.rope_theta);
    let theta_swa = g.float(&k("rope.freq_base_swa"))?.unwrap_or(HF.local_theta);
    for key in ["rope.scaling.type", "rope.scaling.factor"] {
        if g.get(&k(key)).is_some() && g.float(&k("rope.scaling.factor"))?.unwrap_or(1.0) != 1.0 {
            bail!("{path}: metadata `{}`: Gemma 4 has no rope scaling", k(key));
        }
    }
    let (sw_kv, full_kv) = (
        (0..nl)
            .find(|&l| sliding[l])
            .map_or(kv_heads[0], |l| kv_heads[l]),
        (0..nl)
            .find(|&l| !sliding[l])
            .map_or(kv_heads[0], |l| kv_heads[l]),
    );
    let mut plc = Map::new();
    for l in 0..nl {
        let d = if sliding[l] { swa_dim } else { full_dim };
        plc.insert(
            l.to_string(),
            json!({"head_dim": d, "num_key_value_heads": kv_heads[l]}),
        );
    }
    let ple = g.uint(&k("embedding_length_per_layer_input"))?.unwrap_or(0) as usize;
    let moe = match g.uint(&k("expert_count"))?.filter(|&e| e > 0) {
        None => json!({"enable_moe_block": false}),
        Some(e) => json!({"enable_moe_block": true, "num_experts": e,
            "top_k_experts": g.uint_req(&k("expert_used_count"))?,
            "moe_intermediate_size": g.uint_req(&k("expert_feed_forward_length"))?}),
    };
    let id = |key: &str| -> Result<Option<u64>> { g.uint(&format!("tokenizer.ggml.{key}")) };
    let mut v = json!({
        "model_type": "gemma4_text",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": base,
        "num_hidden_layers": nl,
        "num_attention_heads": heads,
        "num_key_value_heads": sw_kv,
        "num_global_key_value_heads": full_kv,
        "head_dim": swa_dim,
        "global_head_dim": full_dim,
        "rms_norm_eps": eps,
        "sliding_window": window,
        "layer_types": sliding.iter().map(|&s| if s { "sliding_attention" } else { "full_attention" }).collect::<Vec<_>>(),
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": theta_swa},
            "full_attention": {"rope_type": "proportional", "rope_theta": theta, "partial_rotary_factor": fraction},
        },
        "per_layer_config": plc,
        "num_kv_shared_layers": shared,
        "use_double_wide_mlp": double_wide,
        "attention_k_eq_v": k_eq_v,
        "hidden_size_per_layer_input": ple,
        "vocab_size_per_layer_input": rows("per_layer_token_embd.weight").unwrap_or(vocab),
        "final_logit_softcapping": g.float(&k("final_logit_softcapping"))?.filter(|&c| c > 0.0),
        "tie_word_embeddings": !index.tensors.contains_key("output.weight"),
        "bos_token_id": id("bos_token_id")?.unwrap_or(2),
        "eos_token_id": id("eos_token_id")?.unwrap_or(1),
    });
    let o = v.as_object_mut().expect("object");
    for (key, val) in moe.as_object().expect("object") {
        o.insert(key.clone(), val.clone());
    }
    if let Some(c) = g.uint(&k("context_length"))? {
        o.insert("max_position_embeddings".into(), json!(c));
    }
    Ok(v)
}

/// Resolves Gemma 4's text keys `obj` (named by `prefix` in errors) of the config `top`.
fn resolve(
    model_type: &str,
    top: &Map<String, Value>,
    obj: &Map<String, Value>,
    prefix: &'static str,
    multimodal: bool,
    path: &str,
) -> Result<GemmaConfig> {
    let arch = Arch::named("Gemma 4");
    // The keys every Gemma reads, by the shared rules; the rotary parameters and the per-layer
    // geometry below.
    let mut shared = obj.clone();
    for k in [
        "rope_parameters",
        "rope_scaling",
        "rope_theta",
        "per_layer_config",
    ] {
        shared.remove(k);
    }
    let mut c = hf::resolve(
        arch, &HF, model_type, top, &shared, prefix, multimodal, path,
    )?;
    let k = Keys {
        obj,
        path: path.to_string(),
        prefix,
    };
    let flag = |key: &str| -> Result<bool> {
        match k.raw(key) {
            None => Ok(false),
            Some(v) => v.as_bool().with_context(|| {
                format!("{path}: key `{prefix}{key}` must be true or false, found {v}")
            }),
        }
    };
    match k.raw("use_bidirectional_attention").and_then(|v| v.as_str()) {
        None | Some("vision") => {}
        Some(other) => bail!(
            "{path}: `{prefix}use_bidirectional_attention` is `{other}`: frugal runs Gemma 4's causal text decoder"
        ),
    }
    // transformers forces the last layer to full attention.
    let nl = c.num_layers;
    c.layer_kinds[nl - 1] = LayerKind::Global;
    c.query_pre_attn_scalar = 1.0;
    c.text_vocab_size = c.vocab_size;

    // Rotary embeddings per layer type: sliding `default`, full `proportional`.
    let rp = match k.raw("rope_parameters") {
        None => Map::new(),
        Some(v) => v
            .as_object()
            .with_context(|| format!("{path}: `{prefix}rope_parameters` must be an object"))?
            .clone(),
    };
    let rope = |name: &str, theta: f64, fraction: f64| -> Result<(Rope, Option<f64>)> {
        let field = format!("{prefix}rope_parameters.{name}");
        let Some(o) = rp.get(name) else {
            return Ok((Rope { theta, factor: 1.0 }, Some(fraction)));
        };
        let o = o
            .as_object()
            .with_context(|| format!("{path}: `{field}` must be an object"))?;
        let num = |key: &str, default: f64| -> Result<f64> {
            match o.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .with_context(|| format!("{path}: `{field}.{key}` must be a positive number")),
            }
        };
        let theta = num("rope_theta", theta)?;
        match o.get("rope_type").and_then(|t| t.as_str()).unwrap_or("default") {
            "default" => Ok((Rope { theta, factor: 1.0 }, None)),
            "proportional" => Ok((
                Rope {
                    theta,
                    factor: num("factor", 1.0)?,
                },
                Some(num("partial_rotary_factor", 1.0)?),
            )),
            other => bail!(
                "{path}: `{field}.rope_type` is `{other}`; Gemma 4 uses default and proportional rotary embeddings"
            ),
        }
    };
    let (local, local_fraction) = rope("sliding_attention", HF.local_theta, 1.0)?;
    let (global, global_fraction) = rope("full_attention", HF.rope_theta, FULL_ROTARY_FRACTION)?;
    c.rope_local = local;
    c.rope_global = global;

    // Per-layer geometry: transformers' `per_layer_config` where written back, else Google's
    // keys (full layers take `global_head_dim`, and `num_global_key_value_heads` only with
    // `attention_k_eq_v`).
    let k_eq_v = flag("attention_k_eq_v")?;
    let global_head_dim = k.usize_or("global_head_dim", GLOBAL_HEAD_DIM)?;
    let global_kv = match k.raw("num_global_key_value_heads") {
        Some(v) if k_eq_v => k.as_usize("num_global_key_value_heads", v)?,
        _ => c.num_kv_heads,
    };
    let per_layer = match k.raw("per_layer_config") {
        None => None,
        Some(v) => Some(
            v.as_object()
                .with_context(|| format!("{path}: `{prefix}per_layer_config` must be an object"))?,
        ),
    };
    let geometry = |l: usize| -> Result<(usize, usize)> {
        let global = c.layer_kinds[l] == LayerKind::Global;
        let Some(plc) = per_layer else {
            return Ok(if global {
                (global_head_dim, global_kv)
            } else {
                (c.head_dim, c.num_kv_heads)
            });
        };
        let (mut hd, mut kv) = (c.head_dim, c.num_kv_heads);
        if let Some(o) = plc.get(&l.to_string()) {
            let o = o.as_object().with_context(|| {
                format!("{path}: `{prefix}per_layer_config.{l}` must be an object")
            })?;
            let lk = Keys {
                obj: o,
                path: path.to_string(),
                prefix,
            };
            for key in o.keys() {
                if !matches!(key.as_str(), "head_dim" | "num_key_value_heads") {
                    bail!("{path}: `{prefix}per_layer_config.{l}.{key}` is not supported (frugal reads head_dim and num_key_value_heads)");
                }
            }
            hd = lk.usize_or("head_dim", hd)?;
            kv = lk.usize_or("num_key_value_heads", kv)?;
        }
        Ok((hd, kv))
    };

    // KV sharing: the last `num_kv_shared_layers` layers read the cache of the last earlier
    // layer of their type.
    let shared_layers = k.usize_or("num_kv_shared_layers", 0)?;
    if shared_layers >= nl && shared_layers > 0 {
        bail!("{path}: `{prefix}num_kv_shared_layers` ({shared_layers}) leaves no layer to hold a cache ({nl} layers)");
    }
    let first_shared = nl - shared_layers;
    let double_wide = flag("use_double_wide_mlp")?;
    let mut shapes = Vec::with_capacity(nl);
    for l in 0..nl {
        let (head_dim, kv_heads) = geometry(l)?;
        if head_dim == 0 || head_dim % 2 != 0 || kv_heads == 0 || c.num_heads % kv_heads != 0 {
            bail!("{path}: layer {l} has head size {head_dim} and {kv_heads} key/value heads for {} query heads", c.num_heads);
        }
        let global = c.layer_kinds[l] == LayerKind::Global;
        let kv_layer = if l < first_shared {
            l
        } else {
            (0..first_shared)
                .rev()
                .find(|&j| c.layer_kinds[j] == c.layer_kinds[l])
                .with_context(|| {
                    format!("{path}: layer {l} shares the cache of an earlier layer of its type, and there is none")
                })?
        };
        let fraction = if global {
            global_fraction
        } else {
            local_fraction
        };
        let rotary_pairs = match fraction {
            // transformers: int(fraction * head_dim // 2)
            Some(f) => ((f * head_dim as f64 / 2.0).floor() as usize).min(head_dim / 2),
            None => head_dim / 2,
        };
        shapes.push(LayerShape {
            head_dim,
            kv_heads,
            ffn: c.intermediate_size
                * if double_wide && l >= first_shared {
                    2
                } else {
                    1
                },
            kv_layer,
            values_from_keys: k_eq_v && global,
            rotary_pairs,
        });
    }
    for (l, s) in shapes.iter().enumerate() {
        let d = shapes[s.kv_layer];
        if (d.head_dim, d.kv_heads) != (s.head_dim, s.kv_heads) {
            bail!(
                "{path}: layer {l} reads the cache of layer {}, whose heads differ",
                s.kv_layer
            );
        }
    }
    c.layer_shapes = shapes;

    c.per_layer_input = match k.raw("hidden_size_per_layer_input") {
        // transformers' default when the key is absent; some copies write null for none.
        None if !obj.contains_key("hidden_size_per_layer_input") => PER_LAYER_INPUT,
        None => 0,
        Some(v) => k.as_usize("hidden_size_per_layer_input", v)?,
    };
    c.per_layer_vocab = k.usize_or("vocab_size_per_layer_input", PER_LAYER_VOCAB)?;
    if c.per_layer_input > 0 && c.per_layer_vocab < c.vocab_size {
        bail!(
            "{path}: `{prefix}vocab_size_per_layer_input` ({}) is smaller than the vocabulary ({})",
            c.per_layer_vocab,
            c.vocab_size
        );
    }
    if flag("enable_moe_block")? {
        let inter = match k.raw("moe_intermediate_size") {
            Some(v) => k.as_usize("moe_intermediate_size", v)?,
            None => k.usize_req("expert_intermediate_size")?,
        };
        let moe = Moe {
            experts: k.usize_req("num_experts")?,
            top_k: k.usize_req("top_k_experts")?,
            inter,
        };
        if moe.experts == 0 || moe.inter == 0 || moe.top_k == 0 || moe.top_k > moe.experts {
            bail!(
                "{path}: the mixture of experts has {} experts of width {}, {} per token",
                moe.experts,
                moe.inter,
                moe.top_k
            );
        }
        c.moe = Some(moe);
    }
    Ok(c)
}

/// A `gemma4_text` config.json for `cfg`, per-layer geometry as transformers writes it back
/// (`per_layer_config`).
fn to_json(cfg: &GemmaConfig) -> Value {
    let mut v = hf::to_json(&HF, cfg);
    let o = v.as_object_mut().expect("object");
    for k in [
        "query_pre_attn_scalar",
        "attn_logit_softcapping",
        "rope_scaling",
        "rope_theta",
    ] {
        o.remove(k);
    }
    let full = (0..cfg.num_layers).find(|&l| cfg.layer_kinds[l] == LayerKind::Global);
    let fraction = full.map_or(FULL_ROTARY_FRACTION, |l| {
        let s = cfg.layer(l);
        2.0 * s.rotary_pairs as f64 / s.head_dim as f64
    });
    o.insert(
        "rope_parameters".into(),
        json!({
            "sliding_attention": {"rope_type": "default", "rope_theta": cfg.rope_local.theta},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": fraction,
                "rope_theta": cfg.rope_global.theta, "factor": cfg.rope_global.factor},
        }),
    );
    let mut plc = Map::new();
    for l in 0..cfg.num_layers {
        let s = cfg.layer(l);
        if (s.head_dim, s.kv_heads) != (cfg.head_dim, cfg.num_kv_heads) {
            plc.insert(
                l.to_string(),
                json!({"head_dim": s.head_dim, "num_key_value_heads": s.kv_heads}),
            );
        }
    }
    o.insert("per_layer_config".into(), Value::Object(plc));
    let shared = (0..cfg.num_layers)
        .filter(|&l| cfg.layer(l).kv_layer != l)
        .count();
    o.insert("num_kv_shared_layers".into(), json!(shared));
    o.insert(
        "use_double_wide_mlp".into(),
        json!((0..cfg.num_layers).any(|l| cfg.layer(l).ffn != cfg.intermediate_size)),
    );
    o.insert(
        "attention_k_eq_v".into(),
        json!((0..cfg.num_layers).any(|l| cfg.layer(l).values_from_keys)),
    );
    o.insert(
        "hidden_size_per_layer_input".into(),
        json!(cfg.per_layer_input),
    );
    o.insert(
        "vocab_size_per_layer_input".into(),
        json!(cfg.per_layer_vocab.max(cfg.vocab_size)),
    );
    o.insert("enable_moe_block".into(), json!(cfg.moe.is_some()));
    if let Some(m) = cfg.moe {
        o.insert("num_experts".into(), json!(m.experts));
        o.insert("top_k_experts".into(), json!(m.top_k));
        o.insert("moe_intermediate_size".into(), json!(m.inter));
    }
    v
}

/// A tensor outside the layers (beside the embedding): its Hugging Face name after `model.`,
/// its GGUF name.
fn global(
    key: &'static str,
    part: Part,
    kind: Kind,
    hf: &str,
    gguf: &str,
    shape: Vec<usize>,
) -> TensorSpec {
    let hf = format!("model.{hf}");
    TensorSpec {
        key,
        role: Role::Embedding,
        part,
        kind,
        pytorch: PtName::Plain(hf.clone()),
        hf,
        gguf: gguf.into(),
        shape,
        optional: false,
    }
}

/// A tensor of layer `l`: its Hugging Face name after `model.layers.{l}.`, its GGUF name after
/// `blk.{l}.` (suffix included: some are `.scale`).
fn layer(
    l: usize,
    key: &'static str,
    part: Part,
    kind: Kind,
    hf: &str,
    gguf: &str,
    shape: Vec<usize>,
) -> TensorSpec {
    let hf = format!("model.layers.{l}.{hf}");
    TensorSpec {
        key,
        role: Role::Layer(l),
        part,
        kind,
        pytorch: PtName::Plain(hf.clone()),
        hf,
        gguf: format!("blk.{l}.{gguf}"),
        shape,
        optional: false,
    }
}

/// Layer `l`'s tensors: attention (keys and values only where it holds a cache, values only
/// without k_eq_v on its type), the dense feed-forward of its width, the four sandwich norms,
/// its scalar, the per-layer input's gate, the experts.
fn layer_tensors(cfg: &GemmaConfig, l: usize) -> Vec<TensorSpec> {
    let s = cfg.layer(l);
    let (h, d) = (cfg.hidden_size, s.head_dim);
    let (nq, nkv) = (cfg.num_heads * d, s.kv_heads * d);
    let owns = s.kv_layer == l;
    let m =
        |key, part, hf: &str, gguf: &str, shape| layer(l, key, part, Kind::Matrix, hf, gguf, shape);
    let vec =
        |key, part, hf: &str, gguf: &str, n| layer(l, key, part, Kind::Vector, hf, gguf, vec![n]);
    let norm = |key, hf: &str, gguf: &str| {
        vec(
            key,
            Part::Norm,
            &format!("{hf}.weight"),
            &format!("{gguf}.weight"),
            h,
        )
    };
    let att = Part::Attention;
    let mut v = vec![m(
        key::ATTN_Q,
        att,
        "self_attn.q_proj.weight",
        "attn_q.weight",
        vec![nq, h],
    )];
    if owns {
        v.push(m(
            key::ATTN_K,
            att,
            "self_attn.k_proj.weight",
            "attn_k.weight",
            vec![nkv, h],
        ));
        if !s.values_from_keys {
            v.push(m(
                key::ATTN_V,
                att,
                "self_attn.v_proj.weight",
                "attn_v.weight",
                vec![nkv, h],
            ));
        }
    }
    v.push(m(
        key::ATTN_OUT,
        att,
        "self_attn.o_proj.weight",
        "attn_output.weight",
        vec![h, nq],
    ));
    v.push(vec(
        key::ATTN_Q_NORM,
        Part::Norm,
        "self_attn.q_norm.weight",
        "attn_q_norm.weight",
        d,
    ));
    if owns {
        v.push(vec(
            key::ATTN_K_NORM,
            Part::Norm,
            "self_attn.k_norm.weight",
            "attn_k_norm.weight",
            d,
        ));
    }
    let (i, ff) = (s.ffn, Part::FeedForward);
    v.push(m(
        key::FFN_GATE,
        ff,
        "mlp.gate_proj.weight",
        "ffn_gate.weight",
        vec![i, h],
    ));
    v.push(m(
        key::FFN_UP,
        ff,
        "mlp.up_proj.weight",
        "ffn_up.weight",
        vec![i, h],
    ));
    v.push(m(
        key::FFN_DOWN,
        ff,
        "mlp.down_proj.weight",
        "ffn_down.weight",
        vec![h, i],
    ));
    v.push(norm(key::ATTN_NORM, "input_layernorm", "attn_norm"));
    v.push(norm(
        key::POST_ATTN_NORM,
        "post_attention_layernorm",
        "post_attention_norm",
    ));
    v.push(norm(key::FFN_NORM, "pre_feedforward_layernorm", "ffn_norm"));
    v.push(norm(
        key::POST_FFN_NORM,
        "post_feedforward_layernorm",
        "post_ffw_norm",
    ));
    v.push(vec(
        k4::LAYER_SCALAR,
        Part::Norm,
        "layer_scalar",
        "layer_output_scale.weight",
        1,
    ));
    let p = cfg.per_layer_input;
    if p > 0 {
        v.push(m(
            k4::PLE_GATE,
            ff,
            "per_layer_input_gate.weight",
            "inp_gate.weight",
            vec![p, h],
        ));
        v.push(m(
            k4::PLE_PROJ,
            ff,
            "per_layer_projection.weight",
            "proj.weight",
            vec![h, p],
        ));
        v.push(norm(
            k4::PLE_POST_NORM,
            "post_per_layer_input_norm",
            "post_norm",
        ));
    }
    if let Some(moe) = cfg.moe {
        let (e, mi) = (moe.experts, moe.inter);
        v.push(m(
            k4::ROUTER,
            ff,
            "router.proj.weight",
            "ffn_gate_inp.weight",
            vec![e, h],
        ));
        v.push(vec(
            k4::ROUTER_SCALE,
            ff,
            "router.scale",
            "ffn_gate_inp.scale",
            h,
        ));
        v.push(vec(
            k4::EXPERT_SCALE,
            ff,
            "router.per_expert_scale",
            "ffn_down_exps.scale",
            e,
        ));
        v.push(m(
            k4::GATE_UP_EXPS,
            ff,
            "experts.gate_up_proj",
            "ffn_gate_up_exps.weight",
            vec![e, 2 * mi, h],
        ));
        v.push(m(
            k4::DOWN_EXPS,
            ff,
            "experts.down_proj",
            "ffn_down_exps.weight",
            vec![e, h, mi],
        ));
        v.push(norm(
            k4::PRE_FFN_NORM_2,
            "pre_feedforward_layernorm_2",
            "pre_ffw_norm_2",
        ));
        v.push(norm(
            k4::POST_FFN_NORM_1,
            "post_feedforward_layernorm_1",
            "post_ffw_norm_1",
        ));
        v.push(norm(
            k4::POST_FFN_NORM_2,
            "post_feedforward_layernorm_2",
            "post_ffw_norm_2",
        ));
    }
    v
}

/// The per-layer input's path into the residual stream.
struct PerLayerGate<'a> {
    /// `[width, hidden]`.
    gate: frugal_tensor::MatRef<'a>,
    /// `[hidden, width]`.
    proj: frugal_tensor::MatRef<'a>,
    post_norm: Vec<f32>,
}

/// The experts beside the dense feed-forward, with their three norms.
struct MoeBlock<'a> {
    experts: Experts<'a>,
    pre_norm: Vec<f32>,
    post_norm_dense: Vec<f32>,
    post_norm_experts: Vec<f32>,
}

/// Gemma 4's decoder layer: attention and the feed-forward (with the experts beside it) between
/// pre- and post-norms, the per-layer input's gate, the whole residual stream scaled.
struct Gemma4Layer<'a> {
    attn: Attention<'a>,
    /// Attends over another layer's cache (KV sharing).
    reads_other: bool,
    mlp: Mlp<'a>,
    moe: Option<MoeBlock<'a>>,
    ple: Option<PerLayerGate<'a>>,
    input_norm: Vec<f32>,
    post_attn_norm: Vec<f32>,
    pre_ffw_norm: Vec<f32>,
    post_ffw_norm: Vec<f32>,
    scalar: f32,
    eps: f32,
}

impl<'a> Gemma4Layer<'a> {
    fn new(cfg: &GemmaConfig, l: usize, w: &mut Bound<'a>) -> Result<Self> {
        let r = Role::Layer(l);
        let s = cfg.layer(l);
        let reads_other = s.kv_layer != l;
        let attn = Attention {
            q: w.matrix(r, key::ATTN_Q)?,
            k: if reads_other {
                None
            } else {
                Some(w.matrix(r, key::ATTN_K)?)
            },
            v: if reads_other || s.values_from_keys {
                None
            } else {
                Some(w.matrix(r, key::ATTN_V)?)
            },
            o: w.matrix(r, key::ATTN_OUT)?,
            q_norm: Some(w.vector(r, key::ATTN_Q_NORM)?),
            k_norm: w.opt_vector(r, key::ATTN_K_NORM)?,
            v_norm: Some(vec![1.0; s.head_dim]),
            heads: cfg.num_heads,
            kv_heads: s.kv_heads,
            head_dim: s.head_dim,
            eps: cfg.rms_norm_eps,
            window: match cfg.layer_kinds[l] {
                LayerKind::Local => cfg.sliding_window,
                LayerKind::Global => None,
            },
            softcap: None,
            qscale: 1.0,
            inv_freq: blocks::inv_freq_partial(cfg.rope(l), s.head_dim, s.rotary_pairs),
        };
        let scalar = w.vector(r, k4::LAYER_SCALAR)?;
        let ple = if cfg.per_layer_input > 0 {
            Some(PerLayerGate {
                gate: w.matrix(r, k4::PLE_GATE)?,
                proj: w.matrix(r, k4::PLE_PROJ)?,
                post_norm: w.vector(r, k4::PLE_POST_NORM)?,
            })
        } else {
            None
        };
        let moe = match cfg.moe {
            None => None,
            Some(m) => Some(MoeBlock {
                experts: Experts {
                    router: w.matrix(r, k4::ROUTER)?,
                    router_scale: w.vector(r, k4::ROUTER_SCALE)?,
                    per_expert_scale: w.vector(r, k4::EXPERT_SCALE)?,
                    gate_up: w.matrix(r, k4::GATE_UP_EXPS)?,
                    down: w.matrix(r, k4::DOWN_EXPS)?,
                    experts: m.experts,
                    top_k: m.top_k,
                    inter: m.inter,
                    eps: cfg.rms_norm_eps,
                },
                pre_norm: w.vector(r, k4::PRE_FFN_NORM_2)?,
                post_norm_dense: w.vector(r, k4::POST_FFN_NORM_1)?,
                post_norm_experts: w.vector(r, k4::POST_FFN_NORM_2)?,
            }),
        };
        Ok(Gemma4Layer {
            attn,
            reads_other,
            mlp: super::gemma1::mlp(w, l)?,
            moe,
            ple,
            input_norm: w.vector(r, key::ATTN_NORM)?,
            post_attn_norm: w.vector(r, key::POST_ATTN_NORM)?,
            pre_ffw_norm: w.vector(r, key::FFN_NORM)?,
            post_ffw_norm: w.vector(r, key::POST_FFN_NORM)?,
            scalar: scalar[0],
            eps: cfg.rms_norm_eps,
        })
    }
}

impl Layer for Gemma4Layer<'_> {
    fn forward(
        &self,
        mm: &Ops,
        x: &mut [f32],
        xn: &mut [f32],
        cache: &mut LayerCache,
        p0: usize,
        n: usize,
        per_layer_input: Option<&[f32]>,
    ) {
        let eps = self.eps;
        blocks::norm_rows(x, xn, &self.input_norm, eps);
        let qkv = self.attn.project(mm, xn, p0, n);
        let mut o = if self.reads_other {
            self.attn.attend_cached(mm, &qkv, cache, p0, n)
        } else {
            self.attn.attend(mm, &qkv, cache, p0, n)
        };
        drop(qkv);
        blocks::norm_in_place(&mut o, &self.post_attn_norm, eps);
        ops::add_assign(x, &o);
        blocks::norm_rows(x, xn, &self.pre_ffw_norm, eps);
        self.mlp.forward(mm, xn, n, &mut o);
        if let Some(m) = &self.moe {
            blocks::norm_in_place(&mut o, &m.post_norm_dense, eps);
            blocks::norm_rows(x, xn, &m.pre_norm, eps);
            let mut y = vec![0f32; x.len()];
            m.experts.forward(mm, x, xn, n, &mut y);
            blocks::norm_in_place(&mut y, &m.post_norm_experts, eps);
            ops::add_assign(&mut o, &y);
        }
        blocks::norm_in_place(&mut o, &self.post_ffw_norm, eps);
        ops::add_assign(x, &o);
        if let (Some(p), Some(pli)) = (&self.ple, per_layer_input) {
            let mut g = vec![0f32; n * p.gate.rows];
            mm.matmul(&p.gate, x, n, &mut g);
            ops::gelu_mul(&mut g, pli);
            mm.matmul(&p.proj, &g, n, &mut o);
            blocks::norm_in_place(&mut o, &p.post_norm, eps);
            ops::add_assign(x, &o);
        }
        let s = self.scalar;
        x.iter_mut().for_each(|v| *v *= s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::Scheme;

    fn fixture_config(name: &str) -> GemmaConfig {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/models")
            .join(name)
            .join("config.json");
        GemmaConfig::from_file(&p).unwrap()
    }

    /// Both key forms resolve to the same per-layer geometry; donors are the last earlier
    /// layer of the same type (not llama.cpp's "last owning layer minus one").
    #[test]
    fn geometry_from_both_key_forms() {
        let e = fixture_config("gemma4-e-bf16");
        assert!(e.multimodal);
        assert_eq!(e.per_layer_input, 16);
        let donors: Vec<usize> = (0..7).map(|l| e.layer(l).kv_layer).collect();
        assert_eq!(donors, [0, 1, 2, 3, 3, 3, 2]);
        // num_global_key_value_heads is ignored without attention_k_eq_v.
        assert_eq!((e.layer(2).head_dim, e.layer(2).kv_heads), (32, 2));
        assert_eq!((e.layer(0).head_dim, e.layer(0).kv_heads), (16, 2));
        assert_eq!(e.layer(2).rotary_pairs, 4);
        assert_eq!(e.layer(0).rotary_pairs, 8);
        let ffn: Vec<usize> = (0..7).map(|l| e.layer(l).ffn).collect();
        assert_eq!(ffn, [64, 64, 64, 64, 128, 128, 128]);
        let d = fixture_config("gemma4-dense-f32");
        assert!(!d.multimodal);
        assert_eq!((d.layer(2).head_dim, d.layer(2).kv_heads), (32, 1));
        assert!(d.layer(2).values_from_keys && !d.layer(1).values_from_keys);
        assert_eq!(d.per_layer_input, 0);
        assert_eq!(d.final_softcap, Some(30.0));
        assert_eq!(d.query_pre_attn_scalar, 1.0);
        let m = fixture_config("gemma4-moe-bf16");
        assert_eq!(
            m.moe,
            Some(Moe {
                experts: 8,
                top_k: 2,
                inter: 16
            })
        );
        // Google's keys and transformers' written-back form agree.
        let mut g = e.to_hf_json();
        let back = GemmaConfig::from_json(&g, "round trip").unwrap();
        assert_eq!(back.layer_shapes, e.layer_shapes);
        g.as_object_mut().unwrap().remove("per_layer_config");
        g["global_head_dim"] = json!(32);
        let google = GemmaConfig::from_json(&g, "google").unwrap();
        assert_eq!(google.layer_shapes, e.layer_shapes);
    }

    #[test]
    fn config_rules() {
        let base = json!({"model_type": "gemma4_text", "hidden_size": 64, "intermediate_size": 32,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 16, "global_head_dim": 32, "vocab_size": 100,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
            "hidden_size_per_layer_input": null, "enable_moe_block": true, "num_experts": 4,
            "top_k_experts": 2, "expert_intermediate_size": 8});
        let c = GemmaConfig::from_json(&base, "t").unwrap();
        // The last layer is forced to full attention; null PLE width is none.
        assert_eq!(c.layer_kinds[3], LayerKind::Global);
        assert_eq!(c.layer(3).head_dim, 32);
        assert_eq!(c.per_layer_input, 0);
        assert_eq!(c.moe.unwrap().inter, 8);
        assert_eq!(c.final_softcap, None);
        // Absent, transformers' defaults: PLE width 256.
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .remove("hidden_size_per_layer_input");
        b["vocab_size_per_layer_input"] = json!(100);
        assert_eq!(
            GemmaConfig::from_json(&b, "t").unwrap().per_layer_input,
            256
        );
        let mut b = base.clone();
        b["rope_parameters"] = json!({"full_attention": {"rope_type": "yarn"}});
        let e = GemmaConfig::from_json(&b, "t").unwrap_err();
        assert!(e.to_string().contains("yarn"), "{e}");
    }

    /// The released shapes' text parameters as transformers counts them (gemma4.md §1.3,
    /// `layer_scalar` included), and their geometry (§1.2).
    #[test]
    fn variant_parameter_counts() {
        for (name, billions, full_q, full_kv, ffn_last) in [
            ("gemma4-e2b", 4.6286, 4096, 512, 12288),
            ("gemma4-e4b", 7.4630, 4096, 1024, 10240),
            ("gemma4-12b", 11.9074, 8192, 512, 15360),
            ("gemma4-26b-a4b", 25.2331, 8192, 1024, 2112),
            ("gemma4-31b", 30.6973, 16384, 2048, 21504),
        ] {
            let cfg = Variant::by_name(name).unwrap().config();
            let p = cfg.num_params() as f64 / 1e9;
            assert!(
                (p - billions).abs() < 6e-5,
                "{name}: {p} B, expected {billions} B"
            );
            let l = cfg.num_layers - 1;
            assert_eq!(cfg.layer_kinds[l], LayerKind::Global, "{name}");
            let s = cfg.layer(l);
            assert_eq!(
                (cfg.num_heads * s.head_dim, s.kv_heads * s.head_dim, s.ffn),
                (full_q, full_kv, ffn_last),
                "{name}"
            );
            assert_eq!(s.rotary_pairs, 64, "{name}");
        }
        let e2b = Variant::by_name("gemma4-e2b").unwrap().config();
        assert_eq!((e2b.layer(34).kv_layer, e2b.layer(33).kv_layer), (14, 13));
    }

    /// Every tensor's names agree with its role; GGUF names follow llama.cpp's.
    #[test]
    fn table_names() {
        for f in ["gemma4-e-bf16", "gemma4-dense-f32", "gemma4-moe-bf16"] {
            let cfg = fixture_config(f);
            let table = cfg.arch.tensors(&cfg);
            let mut seen = std::collections::BTreeSet::new();
            for t in &table {
                assert!(seen.insert((t.role, t.key)), "{f}: {:?} {}", t.role, t.key);
                assert!(t.kind != Kind::NormPlusOne, "{f}: {}", t.hf);
                let hf = Scheme::hf().stored_name(t);
                if let Role::Layer(l) = t.role {
                    assert!(hf.starts_with(&format!("model.layers.{l}.")), "{hf}");
                    assert!(t.gguf.starts_with(&format!("blk.{l}.")), "{}", t.gguf);
                }
            }
        }
        let cfg = fixture_config("gemma4-moe-bf16");
        let t = cfg.arch.tensors(&cfg);
        let g = |k: &str| {
            t.iter()
                .find(|s| s.role == Role::Layer(0) && s.key == k)
                .unwrap()
        };
        assert_eq!(g(k4::GATE_UP_EXPS).gguf, "blk.0.ffn_gate_up_exps.weight");
        assert_eq!(g(k4::GATE_UP_EXPS).shape, [8, 32, 64]);
        assert_eq!(g(k4::EXPERT_SCALE).gguf, "blk.0.ffn_down_exps.scale");
        assert_eq!(g(k4::LAYER_SCALAR).hf, "model.layers.0.layer_scalar");
        // k_eq_v: no value projection on full layers.
        assert!(!t
            .iter()
            .any(|s| s.role == Role::Layer(2) && s.key == key::ATTN_V));
    }
}
