//! Gemma configuration: `config.json` of Gemma 1 (`gemma`), Gemma 2 (`gemma2`) and Gemma 3
//! (`gemma3_text`, or the text part of a multimodal `gemma3`), in both generations of keys
//! (older `rope_theta`/`rope_scaling`/`sliding_window_pattern`, newer `layer_types`/
//! `rope_parameters`). Keys absent from the file take the defaults of transformers' config
//! class for that model type, exactly as transformers would.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Model generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Gemma1,
    Gemma2,
    Gemma3,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Gemma1 => "Gemma 1",
            Family::Gemma2 => "Gemma 2",
            Family::Gemma3 => "Gemma 3",
        }
    }
}

/// Attention span of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Sees every earlier token.
    Global,
    /// Sees the last `sliding_window` tokens.
    Local,
}

/// Rotary embedding parameters of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// Linear scaling factor (positions divided by it); 1 when unscaled.
    pub factor: f64,
}

/// Everything the forward pass needs, resolved from config.json.
#[derive(Clone, Debug)]
pub struct GemmaConfig {
    pub family: Family,
    /// `model_type` as written in the file.
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    /// Queries are scaled by `query_pre_attn_scalar ^ -0.5`.
    pub query_pre_attn_scalar: f64,
    pub sliding_window: Option<usize>,
    pub layer_kinds: Vec<LayerKind>,
    pub rope_global: Rope,
    pub rope_local: Rope,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: u32,
    pub eos_token_ids: Vec<u32>,
    /// Whether the text model sits inside a multimodal checkpoint (tensor prefixes differ).
    pub multimodal: bool,
}

struct Keys<'a> {
    obj: &'a Map<String, Value>,
    path: String,
    prefix: &'static str,
}

impl Keys<'_> {
    fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
    fn raw(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    fn usize_req(&self, key: &str) -> Result<usize> {
        match self.raw(key) {
            None => bail!(
                "{}: missing key `{}`: the config must give it",
                self.path,
                self.field(key)
            ),
            Some(v) => self.as_usize(key, v),
        }
    }
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => self.as_usize(key, v),
        }
    }
    fn as_usize(&self, key: &str, v: &Value) -> Result<usize> {
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
    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
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
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.f64_opt(key)?.unwrap_or(default))
    }
}

/// Defaults of transformers' config classes, per model type.
struct Defaults {
    vocab: usize,
    kv_heads: Option<usize>,
    head_dim: usize,
    rope_theta: f64,
    local_theta: f64,
    window: Option<usize>,
    pattern: usize,
    attn_cap: Option<f64>,
    final_cap: Option<f64>,
}

fn defaults(f: Family) -> Defaults {
    match f {
        Family::Gemma1 => Defaults {
            vocab: 256000,
            kv_heads: None,
            head_dim: 256,
            rope_theta: 10000.0,
            local_theta: 10000.0,
            window: None,
            pattern: 1,
            attn_cap: None,
            final_cap: None,
        },
        Family::Gemma2 => Defaults {
            vocab: 256000,
            kv_heads: Some(4),
            head_dim: 256,
            rope_theta: 10000.0,
            local_theta: 10000.0,
            window: Some(4096),
            pattern: 2,
            attn_cap: Some(50.0),
            final_cap: Some(30.0),
        },
        Family::Gemma3 => Defaults {
            vocab: 262208,
            kv_heads: Some(4),
            head_dim: 256,
            rope_theta: 1_000_000.0,
            local_theta: 10000.0,
            window: Some(4096),
            pattern: 6,
            attn_cap: None,
            final_cap: None,
        },
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

    /// Resolves a parsed config; `path` names the source in errors.
    pub fn from_json(v: &Value, path: &str) -> Result<Self> {
        let top = v
            .as_object()
            .with_context(|| format!("{path}: the config is not a JSON object"))?;
        let model_type = top
            .get("model_type")
            .and_then(|m| m.as_str())
            .with_context(|| format!("{path}: missing key `model_type` (expected gemma, gemma2, gemma3_text or gemma3)"))?;
        let (family, obj, prefix, multimodal) = match model_type {
            "gemma" => (Family::Gemma1, top, "", false),
            "gemma2" => (Family::Gemma2, top, "", false),
            "gemma3_text" => (Family::Gemma3, top, "", false),
            "gemma3" => {
                let tc = top
                    .get("text_config")
                    .and_then(|t| t.as_object())
                    .with_context(|| format!("{path}: model_type gemma3 needs an object `text_config`"))?;
                (Family::Gemma3, tc, "text_config.", true)
            }
            other => bail!(
                "{path}: unknown model_type `{other}`: frugal runs gemma, gemma2, gemma3_text and gemma3 (text part) models"
            ),
        };
        let k = Keys {
            obj,
            path: path.to_string(),
            prefix,
        };
        let d = defaults(family);
        let hidden_size = k.usize_req("hidden_size")?;
        let intermediate_size = k.usize_req("intermediate_size")?;
        let num_layers = k.usize_req("num_hidden_layers")?;
        let num_heads = k.usize_req("num_attention_heads")?;
        let num_kv_heads = match d.kv_heads {
            Some(dflt) => k.usize_or("num_key_value_heads", dflt)?,
            None => k.usize_or("num_key_value_heads", num_heads)?,
        };
        let head_dim = k.usize_or("head_dim", d.head_dim)?;
        let vocab_size = k.usize_or("vocab_size", d.vocab)?;
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
        let query_pre_attn_scalar = match family {
            Family::Gemma1 => head_dim as f64,
            _ => k.f64_or("query_pre_attn_scalar", 256.0)?,
        };
        if query_pre_attn_scalar <= 0.0 {
            bail!("{path}: key `{prefix}query_pre_attn_scalar` must be positive");
        }
        if let Some(act) = k.raw("hidden_activation").or_else(|| k.raw("hidden_act")) {
            let a = act.as_str().unwrap_or("");
            if !matches!(a, "gelu_pytorch_tanh" | "gelu_tanh" | "gelu") {
                bail!("{path}: hidden_activation `{act}` is not supported (Gemma uses gelu_pytorch_tanh)");
            }
        }

        // Which layers slide.
        let sliding_window = match family {
            Family::Gemma1 => None,
            _ => match k.raw("sliding_window") {
                None => d.window,
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
            let pattern = match family {
                Family::Gemma1 => 1,
                Family::Gemma2 => 2,
                Family::Gemma3 => k.usize_or("sliding_window_pattern", d.pattern)?,
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
        let (rope_global, rope_local) = if let Some(rp) = k.raw("rope_parameters") {
            let rp = rp
                .as_object()
                .with_context(|| format!("{path}: `{prefix}rope_parameters` must be an object"))?;
            let per_type =
                rp.contains_key("full_attention") || rp.contains_key("sliding_attention");
            if per_type {
                let g = rp.get("full_attention").and_then(|x| x.as_object());
                let l = rp.get("sliding_attention").and_then(|x| x.as_object());
                let g = match g {
                    Some(g) => parse_rope(
                        g,
                        path,
                        &format!("{prefix}rope_parameters.full_attention"),
                        d.rope_theta,
                    )?,
                    None => Rope {
                        theta: d.rope_theta,
                        factor: 1.0,
                    },
                };
                let l = match l {
                    Some(l) => parse_rope(
                        l,
                        path,
                        &format!("{prefix}rope_parameters.sliding_attention"),
                        d.local_theta,
                    )?,
                    None => Rope {
                        theta: d.local_theta,
                        factor: 1.0,
                    },
                };
                (g, l)
            } else {
                let r = parse_rope(rp, path, &format!("{prefix}rope_parameters"), d.rope_theta)?;
                match family {
                    // A single dict in Gemma 3 describes the global layers; local layers keep their base.
                    Family::Gemma3 => {
                        let lt = k.f64_or("rope_local_base_freq", d.local_theta)?;
                        (
                            r,
                            Rope {
                                theta: lt,
                                factor: 1.0,
                            },
                        )
                    }
                    _ => (r, r),
                }
            }
        } else {
            let theta = k.f64_or("rope_theta", d.rope_theta)?;
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
            match family {
                Family::Gemma3 => (
                    g,
                    Rope {
                        theta: k.f64_or("rope_local_base_freq", d.local_theta)?,
                        factor: 1.0,
                    },
                ),
                _ => (g, g),
            }
        };

        let cap = |key: &str, dflt: Option<f64>| -> Result<Option<f32>> {
            if k.obj.contains_key(key) {
                Ok(k.f64_opt(key)?.filter(|&c| c > 0.0).map(|c| c as f32))
            } else {
                Ok(dflt.map(|c| c as f32))
            }
        };
        let attn_softcap = cap("attn_logit_softcapping", d.attn_cap)?;
        let final_softcap = cap("final_logit_softcapping", d.final_cap)?;

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
            family,
            model_type: model_type.to_string(),
            vocab_size,
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
        })
    }

    /// A Hugging Face config.json for the text model: `layer_types` plus the older rope keys,
    /// which transformers reads in both generations.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mt = match self.family {
            Family::Gemma1 => "gemma",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3_text",
        };
        let arch = match self.family {
            Family::Gemma1 => "GemmaForCausalLM",
            Family::Gemma2 => "Gemma2ForCausalLM",
            Family::Gemma3 => "Gemma3ForCausalLM",
        };
        let mut c = serde_json::json!({
            "architectures": [arch],
            "model_type": mt,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_activation": "gelu_pytorch_tanh",
            // The shortest decimal of the f32 (1e-6, not 9.99999997e-7).
            "rms_norm_eps": self.rms_norm_eps.to_string().parse::<f64>().unwrap_or(self.rms_norm_eps as f64),
            "rope_theta": self.rope_global.theta,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": if self.eos_token_ids.len() == 1 { serde_json::json!(self.eos_token_ids[0]) } else { serde_json::json!(self.eos_token_ids) },
            "pad_token_id": 0,
            "tie_word_embeddings": self.tie_word_embeddings,
        });
        let o = c.as_object_mut().expect("object");
        if self.family != Family::Gemma1 {
            // transformers insists on an integer here.
            let q = self.query_pre_attn_scalar;
            let q = if q.fract() == 0.0 {
                serde_json::json!(q as u64)
            } else {
                serde_json::json!(q)
            };
            o.insert("query_pre_attn_scalar".into(), q);
            o.insert(
                "sliding_window".into(),
                serde_json::json!(self.sliding_window),
            );
            o.insert(
                "attn_logit_softcapping".into(),
                serde_json::json!(self.attn_softcap),
            );
            o.insert(
                "final_logit_softcapping".into(),
                serde_json::json!(self.final_softcap),
            );
            let types: Vec<&str> = self
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
        let scaling = (self.rope_global.factor != 1.0)
            .then(|| serde_json::json!({"rope_type": "linear", "factor": self.rope_global.factor}));
        o.insert("rope_scaling".into(), serde_json::json!(scaling));
        if self.family == Family::Gemma3 {
            o.insert(
                "rope_local_base_freq".into(),
                serde_json::json!(self.rope_local.theta),
            );
        }
        c
    }

    /// The embedding multiplier: sqrt(hidden) rounded to bf16, as the reference implementations do.
    pub fn embed_scale(&self) -> f32 {
        half::bf16::from_f32((self.hidden_size as f32).sqrt()).to_f32()
    }

    /// Rotary parameters of layer `i`.
    pub fn rope(&self, i: usize) -> Rope {
        match self.layer_kinds[i] {
            LayerKind::Global => self.rope_global,
            LayerKind::Local => self.rope_local,
        }
    }

    /// Number of parameters in the text model (embedding counted once when tied).
    pub fn num_params(&self) -> u64 {
        let h = self.hidden_size as u64;
        let q = (self.num_heads * self.head_dim) as u64;
        let kv = (self.num_kv_heads * self.head_dim) as u64;
        let i = self.intermediate_size as u64;
        let per_layer = h * q * 2 + h * kv * 2 + 3 * h * i + 4 * h + 2 * self.head_dim as u64;
        let emb = self.vocab_size as u64 * h;
        emb * if self.tie_word_embeddings { 1 } else { 2 } + per_layer * self.num_layers as u64 + h
    }
}

fn parse_rope(o: &Map<String, Value>, path: &str, field: &str, default_theta: f64) -> Result<Rope> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
