//! Reading and writing Hugging Face config.json for Gemma architectures, in both generations of
//! keys (older `rope_theta`/`rope_scaling`/`sliding_window_pattern`, newer `layer_types`/
//! `rope_parameters`). What differs between generations is data: an architecture's
//! [`HfRules`] are the defaults of transformers' config class for it and the few keys only it
//! reads, so absent keys resolve exactly as transformers would resolve them.

use crate::config::{Arch, GemmaConfig, LayerKind, Rope};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// An architecture's config.json rules: transformers' defaults and the keys it reads.
pub struct HfRules {
    /// `model_type` written for the text model.
    pub model_type: &'static str,
    /// `architectures[0]` written.
    pub class: &'static str,
    pub vocab: usize,
    /// Default key/value heads; `None`: as many as the attention heads.
    pub kv_heads: Option<usize>,
    pub head_dim: usize,
    pub rope_theta: f64,
    /// Rotary base of sliding-window layers when the config gives none.
    pub local_theta: f64,
    /// Default sliding window; `None`: the architecture has no sliding attention (the key is
    /// not read or written).
    pub window: Option<usize>,
    /// Every `pattern`-th layer is global, the others slide.
    pub pattern: usize,
    /// Whether `sliding_window_pattern` overrides [`HfRules::pattern`].
    pub pattern_key: bool,
    pub attn_cap: Option<f64>,
    pub final_cap: Option<f64>,
    /// Default `query_pre_attn_scalar`; `None`: the key is not read, queries are scaled by
    /// `head_dim ^ -0.5`.
    pub query_scalar: Option<f64>,
    /// Whether local layers take `rope_local_base_freq` (and a single rope dict describes only
    /// the global layers).
    pub local_base_key: bool,
}

/// Reads typed keys of one JSON object, naming `prefix` + key in errors.
pub struct Keys<'a> {
    pub obj: &'a Map<String, Value>,
    pub path: String,
    pub prefix: &'static str,
}

impl Keys<'_> {
    fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    pub fn usize_req(&self, key: &str) -> Result<usize> {
        match self.raw(key) {
            None => bail!(
                "{}: missing key `{}`: the config must give it",
                self.path,
                self.field(key)
            ),
            Some(v) => self.as_usize(key, v),
        }
    }
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => self.as_usize(key, v),
        }
    }
    pub fn as_usize(&self, key: &str, v: &Value) -> Result<usize> {
        v.as_u64()
            .filter(|&n| n <= (1u64 << 40))
            .map(|n| n as usize)
            .with_context(|| {
                format!(
                    "{}: key `{}` must be a non-negative integer, found {v}",
                    self.path,
                    self.field(key)
                )
            })
    }
    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .with_context(|| {
                    format!(
                        "{}: key `{}` must be a number, found {v}",
                        self.path,
                        self.field(key)
                    )
                }),
        }
    }
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.f64_opt(key)?.unwrap_or(default))
    }
}

/// Resolves the text model's keys `obj` (the whole config, or a multimodal config's
/// `text_config`, named by `prefix` in errors) under `r`; `top` is the whole config.
#[allow(clippy::too_many_arguments)]
pub fn resolve(
    arch: Arch,
    r: &HfRules,
    model_type: &str,
    top: &Map<String, Value>,
    obj: &Map<String, Value>,
    prefix: &'static str,
    multimodal: bool,
    path: &str,
) -> Result<GemmaConfig> {
    let k = Keys {
        obj,
        path: path.to_string(),
        prefix,
    };
    let hidden_size = k.usize_req("hidden_size")?;
    let intermediate_size = k.usize_req("intermediate_size")?;
    let num_layers = k.usize_req("num_hidden_layers")?;
    let num_heads = k.usize_req("num_attention_heads")?;
    let num_kv_heads = k.usize_or("num_key_value_heads", r.kv_heads.unwrap_or(num_heads))?;
    let head_dim = k.usize_or("head_dim", r.head_dim)?;
    let vocab_size = k.usize_or("vocab_size", r.vocab)?;
    for (key, val) in [
        ("hidden_size", hidden_size),
        ("intermediate_size", intermediate_size),
        ("num_hidden_layers", num_layers),
        ("num_attention_heads", num_heads),
        ("num_key_value_heads", num_kv_heads),
        ("head_dim", head_dim),
        ("vocab_size", vocab_size),
    ] {
        if val == 0 {
            bail!("{path}: key `{prefix}{key}` is 0");
        }
    }
    if num_heads % num_kv_heads != 0 {
        bail!("{path}: num_attention_heads ({num_heads}) is not a multiple of num_key_value_heads ({num_kv_heads})");
    }
    if head_dim % 2 != 0 {
        bail!("{path}: head_dim ({head_dim}) must be even for rotary embeddings");
    }
    let rms_norm_eps = k.f64_or("rms_norm_eps", 1e-6)? as f32;
    let query_pre_attn_scalar = match r.query_scalar {
        None => head_dim as f64,
        Some(d) => k.f64_or("query_pre_attn_scalar", d)?,
    };
    if query_pre_attn_scalar <= 0.0 {
        bail!("{path}: key `{prefix}query_pre_attn_scalar` must be positive");
    }
    if let Some(act) = k.raw("hidden_activation").or_else(|| k.raw("hidden_act")) {
        let a = act.as_str().unwrap_or("");
        if !matches!(a, "gelu_pytorch_tanh" | "gelu_tanh" | "gelu") {
            bail!(
                "{path}: hidden_activation `{act}` is not supported (Gemma uses gelu_pytorch_tanh)"
            );
        }
    }

    // Which layers slide.
    let sliding_window = match r.window {
        None => None,
        Some(d) => match k.raw("sliding_window") {
            None => Some(d),
            Some(v) => Some(k.as_usize("sliding_window", v)?),
        },
    };
    let layer_kinds = if let Some(lt) = k.raw("layer_types") {
        let arr = lt
            .as_array()
            .with_context(|| format!("{path}: key `{prefix}layer_types` must be a list"))?;
        if arr.len() != num_layers {
            bail!("{path}: `{prefix}layer_types` lists {} layers but num_hidden_layers is {num_layers}", arr.len());
        }
        arr.iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                Some("sliding_attention") => Ok(LayerKind::Local),
                Some("full_attention") => Ok(LayerKind::Global),
                _ => bail!("{path}: `{prefix}layer_types[{i}]` is {t}, expected sliding_attention or full_attention"),
            })
            .collect::<Result<Vec<_>>>()?
    } else {
        let pattern = if r.pattern_key {
            k.usize_or("sliding_window_pattern", r.pattern)?
        } else {
            r.pattern
        };
        (0..num_layers)
            .map(|i| {
                if pattern > 1 && (i + 1) % pattern != 0 {
                    LayerKind::Local
                } else {
                    LayerKind::Global
                }
            })
            .collect()
    };
    if layer_kinds.contains(&LayerKind::Local) && sliding_window.is_none_or(|w| w == 0) {
        bail!("{path}: some layers use sliding attention but `{prefix}sliding_window` is missing or 0");
    }

    // Rotary embeddings: newer `rope_parameters`, else older keys.
    let local_base = |k: &Keys| -> Result<Rope> {
        Ok(Rope {
            theta: k.f64_or("rope_local_base_freq", r.local_theta)?,
            factor: 1.0,
        })
    };
    let (rope_global, rope_local) = if let Some(rp) = k.raw("rope_parameters") {
        let rp = rp
            .as_object()
            .with_context(|| format!("{path}: `{prefix}rope_parameters` must be an object"))?;
        let per_type = rp.contains_key("full_attention") || rp.contains_key("sliding_attention");
        if per_type {
            let one = |name: &str, theta: f64| -> Result<Rope> {
                match rp.get(name).and_then(|x| x.as_object()) {
                    Some(o) => {
                        parse_rope(o, path, &format!("{prefix}rope_parameters.{name}"), theta)
                    }
                    None => Ok(Rope { theta, factor: 1.0 }),
                }
            };
            (
                one("full_attention", r.rope_theta)?,
                one("sliding_attention", r.local_theta)?,
            )
        } else {
            let g = parse_rope(rp, path, &format!("{prefix}rope_parameters"), r.rope_theta)?;
            if r.local_base_key {
                // A single dict describes the global layers; local layers keep their base.
                (g, local_base(&k)?)
            } else {
                (g, g)
            }
        }
    } else {
        let theta = k.f64_or("rope_theta", r.rope_theta)?;
        let factor = match k.raw("rope_scaling") {
            None => 1.0,
            Some(s) => {
                let s = s.as_object().with_context(|| {
                    format!("{path}: `{prefix}rope_scaling` must be an object or null")
                })?;
                parse_rope(s, path, &format!("{prefix}rope_scaling"), theta)?.factor
            }
        };
        let g = Rope { theta, factor };
        if r.local_base_key {
            (g, local_base(&k)?)
        } else {
            (g, g)
        }
    };

    let cap = |key: &str, dflt: Option<f64>| -> Result<Option<f32>> {
        if k.obj.contains_key(key) {
            Ok(k.f64_opt(key)?.filter(|&c| c > 0.0).map(|c| c as f32))
        } else {
            Ok(dflt.map(|c| c as f32))
        }
    };
    let attn_softcap = cap("attn_logit_softcapping", r.attn_cap)?;
    let final_softcap = cap("final_logit_softcapping", r.final_cap)?;

    let tie_word_embeddings = top
        .get("tie_word_embeddings")
        .or_else(|| obj.get("tie_word_embeddings"))
        .and_then(|t| t.as_bool())
        .unwrap_or(true);
    let bos_token_id = k.usize_or("bos_token_id", 2)? as u32;
    let eos_token_ids = match k
        .raw("eos_token_id")
        .or_else(|| top.get("eos_token_id").filter(|v| !v.is_null()))
    {
        None => vec![1],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        Some(v) => vec![v
            .as_u64()
            .with_context(|| format!("{path}: `eos_token_id` must be an integer or a list"))?
            as u32],
    };

    Ok(GemmaConfig {
        arch,
        model_type: model_type.to_string(),
        vocab_size,
        text_vocab_size: vocab_size,
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps,
        query_pre_attn_scalar,
        sliding_window,
        layer_kinds,
        rope_global,
        rope_local,
        attn_softcap,
        final_softcap,
        tie_word_embeddings,
        bos_token_id,
        eos_token_ids,
        multimodal,
        layer_shapes: Vec::new(),
        per_layer_input: 0,
        per_layer_vocab: 0,
        moe: None,
    })
}

/// A Hugging Face config.json for `c` under `r`: `layer_types` plus the older rope keys,
/// which transformers reads in both generations.
pub fn to_json(r: &HfRules, c: &GemmaConfig) -> Value {
    let mut v = serde_json::json!({
        "architectures": [r.class],
        "model_type": r.model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        // The shortest decimal of the f32 (1e-6, not 9.99999997e-7).
        "rms_norm_eps": c.rms_norm_eps.to_string().parse::<f64>().unwrap_or(c.rms_norm_eps as f64),
        "rope_theta": c.rope_global.theta,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": if c.eos_token_ids.len() == 1 { serde_json::json!(c.eos_token_ids[0]) } else { serde_json::json!(c.eos_token_ids) },
        "pad_token_id": 0,
        "tie_word_embeddings": c.tie_word_embeddings,
    });
    let o = v.as_object_mut().expect("object");
    if r.window.is_some() {
        // transformers insists on an integer here.
        let q = c.query_pre_attn_scalar;
        let q = if q.fract() == 0.0 {
            serde_json::json!(q as u64)
        } else {
            serde_json::json!(q)
        };
        o.insert("query_pre_attn_scalar".into(), q);
        o.insert("sliding_window".into(), serde_json::json!(c.sliding_window));
        o.insert(
            "attn_logit_softcapping".into(),
            serde_json::json!(c.attn_softcap),
        );
        o.insert(
            "final_logit_softcapping".into(),
            serde_json::json!(c.final_softcap),
        );
        let types: Vec<&str> = c
            .layer_kinds
            .iter()
            .map(|k| {
                if *k == LayerKind::Local {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        o.insert("layer_types".into(), serde_json::json!(types));
    }
    let scaling = (c.rope_global.factor != 1.0)
        .then(|| serde_json::json!({"rope_type": "linear", "factor": c.rope_global.factor}));
    o.insert("rope_scaling".into(), serde_json::json!(scaling));
    if r.local_base_key {
        o.insert(
            "rope_local_base_freq".into(),
            serde_json::json!(c.rope_local.theta),
        );
    }
    v
}

/// One rotary description (`rope_type` default or linear).
pub fn parse_rope(
    o: &Map<String, Value>,
    path: &str,
    field: &str,
    default_theta: f64,
) -> Result<Rope> {
    let ty = o
        .get("rope_type")
        .or_else(|| o.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("default");
    let theta = match o.get("rope_theta") {
        None | Some(Value::Null) => default_theta,
        Some(v) => v
            .as_f64()
            .with_context(|| format!("{path}: `{field}.rope_theta` must be a number"))?,
    };
    let factor = match ty {
        "default" => 1.0,
        "linear" => o
            .get("factor")
            .and_then(|f| f.as_f64())
            .filter(|f| *f > 0.0)
            .with_context(|| format!("{path}: `{field}` is linear scaling without a positive `factor`"))?,
        other => bail!("{path}: `{field}.rope_type` is `{other}`; frugal supports default and linear rotary embeddings"),
    };
    if theta <= 0.0 {
        bail!("{path}: `{field}.rope_theta` must be positive");
    }
    Ok(Rope { theta, factor })
}
