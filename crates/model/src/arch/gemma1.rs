//! Gemma 1 (`gemma`; llama.cpp's `gemma`): every layer global, no softcaps, queries scaled by
//! `head_dim ^ -0.5`; a layer is pre-norm attention then a pre-norm gated feed-forward (its
//! `post_attention_layernorm` is the feed-forward's pre-norm, GGUF's `ffn_norm`).

use super::gguf::{self, Common};
use super::hf::HfRules;
use super::{variant, Architecture, Variant};
use crate::bind::Bound;
use crate::blocks::{self, Attention, Mlp, Ops};
use crate::config::{GemmaConfig, LayerKind};
use crate::kv::LayerCache;
use crate::model::Layer;
use crate::tensors::{key, Role, Table, TensorSpec};
use anyhow::{bail, Result};
use frugal_formats::gguf::Gguf;
use frugal_formats::gguf_write::Value as GgufValue;
use frugal_formats::TensorIndex;
use frugal_kernels::ops;
use serde_json::{json, Value};

/// transformers' `GemmaConfig` defaults.
const HF: HfRules = HfRules {
    model_type: "gemma",
    class: "GemmaForCausalLM",
    vocab: 256000,
    kv_heads: None,
    head_dim: 256,
    rope_theta: 10000.0,
    local_theta: 10000.0,
    window: None,
    pattern: 1,
    pattern_key: false,
    attn_cap: None,
    final_cap: None,
    query_scalar: None,
    local_base_key: false,
};

pub struct Gemma1;

impl Architecture for Gemma1 {
    fn name(&self) -> &'static str {
        "Gemma 1"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma"]
    }

    fn gguf_arch(&self) -> &'static str {
        "gemma"
    }

    fn hf_rules(&self) -> &'static HfRules {
        &HF
    }

    fn config_from_gguf(&self, g: &Gguf, index: &TensorIndex) -> Result<GemmaConfig> {
        let c = Common::read(g, index, self.gguf_arch())?;
        let local = crate::config::Rope {
            theta: c.theta,
            factor: c.factor,
        };
        let kinds = c.layer_kinds(g, index, None, 1)?;
        c.config(HF.model_type, None, &kinds, local, None, None, c.head_dim)
    }

    fn gguf_hparams(
        &self,
        cfg: &GemmaConfig,
        ctx_len: u32,
        source: &str,
    ) -> Result<Vec<(String, GgufValue)>> {
        let a = self.gguf_arch();
        let mut kv = gguf::common_hparams(cfg, a, ctx_len, false, source)?;
        if cfg.layer_kinds.contains(&LayerKind::Local) {
            bail!("{source}: a Gemma 1 model with sliding-window layers cannot be written as GGUF");
        }
        if cfg.attn_softcap.is_some() {
            bail!("{source}: llama.cpp applies an attention softcap only to Gemma 2");
        }
        kv.extend(gguf::tail_hparams(cfg, a, source)?);
        Ok(kv)
    }

    fn default_context_length(&self) -> u32 {
        8192
    }

    #[rustfmt::skip]
    fn variants(&self) -> Vec<Variant> {
        // variant(name, model_type, vocab, hidden, intermediate, layers, heads, kv heads, head_dim, query_pre_attn_scalar)
        vec![
            variant("gemma-2b", "gemma", 256000, 2048, 16384, 18, 8, 1, 256, 256),
            variant("gemma-7b", "gemma", 256000, 3072, 24576, 28, 16, 16, 256, 256),
            // Small shapes for tests: the vocabulary is the bundled tokenizer's.
            variant("tiny-gemma", "gemma", 2048, 64, 128, 2, 4, 1, 32, 32),
            // Big enough for memory tests to see layers come and go (268 MB in bf16).
            variant("small-gemma", "gemma", 2048, 1024, 4096, 8, 8, 1, 128, 128),
        ]
    }

    fn variant_json(&self, v: &Variant) -> Value {
        base_json(HF.class, v)
    }

    fn tensors(&self, cfg: &GemmaConfig) -> Vec<TensorSpec> {
        let t = Table::new(cfg);
        let mut v = vec![t.embedding()];
        for l in 0..cfg.num_layers {
            v.extend(t.qkv(l));
            v.push(t.attn_output(l));
            v.extend(t.mlp(l));
            v.push(t.norm(l, key::ATTN_NORM, "input_layernorm", "attn_norm"));
            v.push(t.norm(l, key::FFN_NORM, "post_attention_layernorm", "ffn_norm"));
        }
        v.push(t.final_norm());
        if !cfg.tie_word_embeddings {
            v.push(t.output());
        }
        v
    }

    fn pytorch_buffers(&self, _cfg: &GemmaConfig) -> Vec<(&'static str, f64)> {
        vec![("freqs_cis", 10000.0)]
    }

    fn layers<'a>(&self, cfg: &GemmaConfig, w: &mut Bound<'a>) -> Result<Vec<Box<dyn Layer + 'a>>> {
        (0..cfg.num_layers)
            .map(|l| {
                let r = Role::Layer(l);
                Ok(Box::new(Gemma1Layer {
                    attn: attention(cfg, l, w, None, None)?,
                    mlp: mlp(w, l)?,
                    input_norm: w.vector(r, key::ATTN_NORM)?,
                    ffw_norm: w.vector(r, key::FFN_NORM)?,
                    eps: cfg.rms_norm_eps,
                }) as Box<dyn Layer + 'a>)
            })
            .collect()
    }
}

/// The config.json keys every Gemma variant writes.
pub(super) fn base_json(class: &str, v: &Variant) -> Value {
    json!({
        "architectures": [class],
        "model_type": v.model_type,
        "vocab_size": v.vocab,
        "hidden_size": v.hidden,
        "intermediate_size": v.inter,
        "num_hidden_layers": v.layers,
        "num_attention_heads": v.heads,
        "num_key_value_heads": v.kv,
        "head_dim": v.head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 8192,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "tie_word_embeddings": true,
        "torch_dtype": "bfloat16",
    })
}

/// Layer `l`'s attention block from its bound matrices and optional q/k norms.
pub(super) fn attention<'a>(
    cfg: &GemmaConfig,
    l: usize,
    w: &Bound<'a>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
) -> Result<Attention<'a>> {
    let r = Role::Layer(l);
    Ok(Attention::new(
        cfg,
        l,
        w.matrix(r, key::ATTN_Q)?,
        w.matrix(r, key::ATTN_K)?,
        w.matrix(r, key::ATTN_V)?,
        w.matrix(r, key::ATTN_OUT)?,
        q_norm,
        k_norm,
    ))
}

/// Layer `l`'s feed-forward block.
pub(super) fn mlp<'a>(w: &Bound<'a>, l: usize) -> Result<Mlp<'a>> {
    let r = Role::Layer(l);
    Ok(Mlp {
        gate: w.matrix(r, key::FFN_GATE)?,
        up: w.matrix(r, key::FFN_UP)?,
        down: w.matrix(r, key::FFN_DOWN)?,
    })
}

/// Pre-norm attention, then a pre-norm feed-forward, each added to the residual stream.
struct Gemma1Layer<'a> {
    attn: Attention<'a>,
    mlp: Mlp<'a>,
    input_norm: Vec<f32>,
    ffw_norm: Vec<f32>,
    eps: f32,
}

impl Layer for Gemma1Layer<'_> {
    fn forward(
        &self,
        mm: &Ops,
        x: &mut [f32],
        xn: &mut [f32],
        cache: &mut LayerCache,
        p0: usize,
        n: usize,
        _per_layer_input: Option<&[f32]>,
    ) {
        blocks::norm_rows(x, xn, &self.input_norm, self.eps);
        let qkv = self.attn.project(mm, xn, p0, n);
        let mut o = self.attn.attend(mm, &qkv, cache, p0, n);
        ops::add_assign(x, &o);
        blocks::norm_rows(x, xn, &self.ffw_norm, self.eps);
        self.mlp.forward(mm, xn, n, &mut o);
        ops::add_assign(x, &o);
    }
}
