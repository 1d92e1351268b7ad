//! The known Gemma variants: their real shapes and config.json, used to name a checkpoint that
//! carries no config (gemma_pytorch) and to synthesize checkpoints.

use super::config::GemmaConfig;
use crate::checkpoint::TensorIndex;
use crate::kernels::DType;
use anyhow::{bail, Context, Result};
use serde_json::json;

/// The shape of a Gemma model.
#[derive(Clone, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub model_type: &'static str,
    pub vocab: usize,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv: usize,
    pub head_dim: usize,
    pub qpas: usize,
    pub window: Option<usize>,
    pub softcaps: Option<(f64, f64)>,
    /// Gemma 3 linear scaling of global layers.
    pub rope_factor: Option<f64>,
}

// A table row: positional arguments keep the table below one line per model.
#[allow(clippy::too_many_arguments)]
const fn shape(
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
) -> Shape {
    Shape {
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

/// Every known shape (the real models, then small ones for tests).
#[rustfmt::skip]
pub fn shapes() -> Vec<Shape> {
    let g2 = |mut s: Shape| {
        s.window = Some(4096);
        s.softcaps = Some((50.0, 30.0));
        s
    };
    let g3 = |mut s: Shape, w: usize, f: Option<f64>| {
        s.window = Some(w);
        s.rope_factor = f;
        s
    };
    // shape(name, model_type, vocab, hidden, intermediate, layers, heads, kv heads, head_dim, query_pre_attn_scalar)
    vec![
        shape("gemma-2b", "gemma", 256000, 2048, 16384, 18, 8, 1, 256, 256),
        shape("gemma-7b", "gemma", 256000, 3072, 24576, 28, 16, 16, 256, 256),
        g2(shape("gemma2-2b", "gemma2", 256000, 2304, 9216, 26, 8, 4, 256, 256)),
        g2(shape("gemma2-9b", "gemma2", 256000, 3584, 14336, 42, 16, 8, 256, 256)),
        g2(shape("gemma2-27b", "gemma2", 256000, 4608, 36864, 46, 32, 16, 128, 144)),
        g3(shape("gemma3-1b", "gemma3_text", 262144, 1152, 6912, 26, 4, 1, 256, 256), 512, None),
        g3(shape("gemma3-4b", "gemma3_text", 262208, 2560, 10240, 34, 8, 4, 256, 256), 1024, Some(8.0)),
        g3(shape("gemma3-12b", "gemma3_text", 262208, 3840, 15360, 48, 16, 8, 256, 256), 1024, Some(8.0)),
        g3(shape("gemma3-27b", "gemma3_text", 262208, 5376, 21504, 62, 32, 16, 128, 168), 1024, Some(8.0)),
        // Small shapes for tests: the vocabulary is the bundled tokenizer's.
        shape("tiny-gemma", "gemma", 2048, 64, 128, 2, 4, 1, 32, 32),
        g2(shape("tiny-gemma2", "gemma2", 2048, 64, 128, 4, 4, 2, 32, 32)),
        g3(shape("tiny-gemma3", "gemma3_text", 2048, 64, 128, 7, 4, 2, 32, 32), 16, Some(8.0)),
        // Big enough for memory tests to see layers come and go (268 MB in bf16).
        shape("small-gemma", "gemma", 2048, 1024, 4096, 8, 8, 1, 128, 128),
    ]
}

impl Shape {
    /// Looks a shape up by name.
    pub fn by_name(name: &str) -> Result<Shape> {
        let all = shapes();
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

    /// The config.json of this shape (the older, widely read keys).
    pub fn config_json(&self, dtype: DType) -> serde_json::Value {
        let mut c = json!({
            "architectures": [match self.model_type { "gemma" => "GemmaForCausalLM", "gemma2" => "Gemma2ForCausalLM", _ => "Gemma3ForCausalLM" }],
            "model_type": self.model_type,
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.inter,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv,
            "head_dim": self.head_dim,
            "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "max_position_embeddings": 8192,
            "bos_token_id": 2,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "tie_word_embeddings": true,
            "torch_dtype": match dtype { DType::F16 => "float16", DType::F32 => "float32", _ => "bfloat16" },
        });
        let o = c.as_object_mut().expect("object");
        if self.model_type != "gemma" {
            o.insert("query_pre_attn_scalar".into(), json!(self.qpas));
            o.insert("sliding_window".into(), json!(self.window));
        }
        if let Some((a, f)) = self.softcaps {
            o.insert("attn_logit_softcapping".into(), json!(a));
            o.insert("final_logit_softcapping".into(), json!(f));
        }
        if self.model_type == "gemma3_text" {
            o.insert("rope_theta".into(), json!(1_000_000.0));
            o.insert("rope_local_base_freq".into(), json!(10000.0));
            o.insert("sliding_window_pattern".into(), json!(6));
            o.insert(
                "rope_scaling".into(),
                self.rope_factor
                    .map_or(json!(null), |f| json!({"rope_type": "linear", "factor": f})),
            );
            o.insert("attn_logit_softcapping".into(), json!(null));
            o.insert("final_logit_softcapping".into(), json!(null));
        }
        c
    }
}

/// Infers the variant of a gemma_pytorch checkpoint from its tensor names and shapes. Returns
/// the config and the variant's name; an unmatched shape is an error listing the nearest ones.
pub fn infer(index: &TensorIndex, source: &str) -> Result<(GemmaConfig, &'static str)> {
    let shape = |n: &str| index.tensors.get(n).map(|t| t.shape.clone());
    let emb = shape("embedder.weight").with_context(|| {
        format!("{source}: no `embedder.weight`: not a gemma_pytorch checkpoint")
    })?;
    if emb.len() != 2 {
        bail!("{source}: `embedder.weight` has shape {emb:?}, expected 2 dimensions");
    }
    let (vocab, hidden) = (emb[0], emb[1]);
    let layers = (0..)
        .take_while(|l| {
            index
                .tensors
                .contains_key(&format!("model.layers.{l}.input_layernorm.weight"))
        })
        .count();
    let model_type = if index
        .tensors
        .contains_key("model.layers.0.self_attn.query_norm.weight")
    {
        "gemma3_text"
    } else if index
        .tensors
        .contains_key("model.layers.0.pre_feedforward_layernorm.weight")
    {
        "gemma2"
    } else {
        "gemma"
    };
    let qkv = shape("model.layers.0.self_attn.qkv_proj.weight")
        .map(|s| s[0])
        .unwrap_or(0);
    let q = shape("model.layers.0.self_attn.o_proj.weight")
        .and_then(|s| s.get(1).copied())
        .unwrap_or(0);
    let inter = shape("model.layers.0.mlp.gate_proj.weight")
        .map(|s| s[0])
        .unwrap_or(0);
    let all = shapes();
    let fits = |s: &Shape| {
        s.model_type == model_type
            && s.hidden == hidden
            && s.layers == layers
            && s.inter == inter
            && s.heads * s.head_dim == q
            && (s.heads + 2 * s.kv) * s.head_dim == qkv
            && (s.vocab == vocab || (model_type == "gemma3_text" && vocab <= s.vocab))
    };
    if let Some(s) = all.iter().find(|s| fits(s)) {
        let mut c = s.config_json(DType::BF16);
        c["vocab_size"] = json!(vocab);
        let cfg = GemmaConfig::from_json(&c, &format!("{source} (inferred {})", s.name))?;
        return Ok((cfg, s.name));
    }
    let mut near: Vec<&Shape> = all.iter().filter(|s| !s.name.starts_with("tiny")).collect();
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
        "{source}: no known Gemma variant has this shape ({model_type}-like, {layers} layers, hidden {hidden}, intermediate {inter}, qkv rows {qkv}, vocab {vocab}); nearest: {}. Name it with --variant NAME or give a Hugging Face style --config FILE",
        list.join("; ")
    )
}
