//! The resolved configuration of a model: what the forward pass, the tensor table and the
//! memory plan need, whatever file it came from. Each architecture ([`crate::arch`]) resolves it
//! from config.json and from GGUF metadata with its own defaults and rules; nothing outside the
//! architecture files asks which generation a model is.

use crate::arch::{self, Architecture};
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;

/// A model's architecture: one of the registered [`Architecture`]s.
#[derive(Clone, Copy)]
pub struct Arch(pub &'static dyn Architecture);

impl Arch {
    /// The architecture's description.
    pub fn get(self) -> &'static dyn Architecture {
        self.0
    }
}

impl std::ops::Deref for Arch {
    type Target = dyn Architecture;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl std::fmt::Debug for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl PartialEq for Arch {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
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

/// Everything the forward pass needs, resolved from config.json or GGUF metadata.
#[derive(Clone, Debug)]
pub struct GemmaConfig {
    /// The architecture that resolved this config and builds the model.
    pub arch: Arch,
    /// `model_type` as written in the file.
    pub model_type: String,
    pub vocab_size: usize,
    /// Ids a tokenizer may produce and generation may sample (embedding rows past them, such as
    /// a multimodal model's image tokens, are never text).
    pub text_vocab_size: usize,
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
                    arch::model_types_list(" or ")
                )
            })?;
        let a = arch::by_model_type(model_type).with_context(|| {
            format!(
                "{path}: unknown model_type `{model_type}`: frugal runs {} models",
                arch::model_types_list(" and ")
            )
        })?;
        a.config_from_json(model_type, top, path)
    }

    /// A Hugging Face config.json for the text model.
    pub fn to_hf_json(&self) -> Value {
        self.arch.config_to_json(self)
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
