//! Gemma 2 (`gemma2`; llama.cpp's `gemma2`): sliding-window and global layers alternating,
//! attention and final logit softcaps, `query_pre_attn_scalar`; a layer adds post-norms after
//! attention and after the feed-forward (both sandwiched between pre- and post-norms).

use super::gemma1::{attention, base_json, mlp};
use super::gguf::{self, Common};
use super::hf::HfRules;
use super::{variant, Architecture, Variant};
use crate::bind::Bound;
use crate::blocks::{self, Attention, Mlp, Ops};
use crate::config::{GemmaConfig, Rope};
use crate::kv::LayerCache;
use crate::model::Layer;
use crate::tensors::{key, Role, Table, TensorSpec};
use anyhow::Result;
use frugal_formats::gguf::Gguf;
use frugal_formats::gguf_write::Value as GgufValue;
use frugal_formats::TensorIndex;
use frugal_kernels::ops;
use serde_json::{json, Value};

/// transformers' `Gemma2Config` defaults.
const HF: HfRules = HfRules {
    model_type: "gemma2",
    class: "Gemma2ForCausalLM",
    vocab: 256000,
    kv_heads: Some(4),
    head_dim: 256,
    rope_theta: 10000.0,
    local_theta: 10000.0,
    window: Some(4096),
    pattern: 2,
    pattern_key: false,
    attn_cap: Some(50.0),
    final_cap: Some(30.0),
    query_scalar: Some(256.0),
    local_base_key: false,
};

/// llama.cpp's sliding-window period: every second layer is global.
const PERIOD: usize = 2;
/// The layer count llama.cpp treats as its 27B type (queries scaled by `hidden / heads`).
const BIG_LAYERS: usize = 46;

pub struct Gemma2;

impl Architecture for Gemma2 {
    fn name(&self) -> &'static str {
        "Gemma 2"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma2"]
    }

    fn gguf_arch(&self) -> &'static str {
        "gemma2"
    }

    fn hf_rules(&self) -> &'static HfRules {
        &HF
    }

    fn config_from_gguf(&self, g: &Gguf, index: &TensorIndex) -> Result<GemmaConfig> {
        let c = Common::read(g, index, self.gguf_arch())?;
        let window = g.uint(&c.key("attention.sliding_window"))?.unwrap_or(4096) as usize;
        let local = Rope {
            theta: g.float(&c.key("rope.freq_base_swa"))?.unwrap_or(c.theta),
            factor: c.factor,
        };
        let kinds = c.layer_kinds(g, index, Some(window), PERIOD)?;
        let attn_cap = c.softcap(g, "attn_logit_softcapping", Some(50.0))?;
        let final_cap = c.softcap(g, "final_logit_softcapping", Some(30.0))?;
        let scalar =
            gguf::llama_query_scalar(c.hidden, c.heads, c.head_dim, c.layers == BIG_LAYERS);
        c.config(
            HF.model_type,
            Some(window),
            &kinds,
            local,
            attn_cap,
            final_cap,
            scalar,
        )
    }

    fn gguf_hparams(
        &self,
        cfg: &GemmaConfig,
        ctx_len: u32,
        source: &str,
    ) -> Result<Vec<(String, GgufValue)>> {
        let a = self.gguf_arch();
        let big = cfg.num_layers == BIG_LAYERS;
        let mut kv = gguf::common_hparams(cfg, a, ctx_len, big, source)?;
        kv.extend(gguf::window_hparam(cfg, a));
        kv.extend(gguf::pattern_hparam(cfg, a, PERIOD));
        if let Some(c) = cfg.attn_softcap {
            kv.push((format!("{a}.attn_logit_softcapping"), GgufValue::F32(c)));
        }
        kv.extend(gguf::tail_hparams(cfg, a, source)?);
        Ok(kv)
    }

    fn default_context_length(&self) -> u32 {
        8192
    }

    #[rustfmt::skip]
    fn variants(&self) -> Vec<Variant> {
        let g2 = |mut v: Variant| {
            v.window = Some(4096);
            v.softcaps = Some((50.0, 30.0));
            v
        };
        // variant(name, model_type, vocab, hidden, intermediate, layers, heads, kv heads, head_dim, query_pre_attn_scalar)
        vec![
            g2(variant("gemma2-2b", "gemma2", 256000, 2304, 9216, 26, 8, 4, 256, 256)),
            g2(variant("gemma2-9b", "gemma2", 256000, 3584, 14336, 42, 16, 8, 256, 256)),
            g2(variant("gemma2-27b", "gemma2", 256000, 4608, 36864, 46, 32, 16, 128, 144)),
            g2(variant("tiny-gemma2", "gemma2", 2048, 64, 128, 4, 4, 2, 32, 32)),
        ]
    }

    fn variant_json(&self, v: &Variant) -> Value {
        let mut c = base_json(HF.class, v);
        let o = c.as_object_mut().expect("object");
        o.insert("query_pre_attn_scalar".into(), json!(v.qpas));
        o.insert("sliding_window".into(), json!(v.window));
        if let Some((a, f)) = v.softcaps {
            o.insert("attn_logit_softcapping".into(), json!(a));
            o.insert("final_logit_softcapping".into(), json!(f));
        }
        c
    }

    fn tensors(&self, cfg: &GemmaConfig) -> Vec<TensorSpec> {
        let t = Table::new(cfg);
        let mut v = vec![t.embedding()];
        for l in 0..cfg.num_layers {
            v.extend(t.qkv(l));
            v.push(t.attn_output(l));
            v.extend(t.mlp(l));
            v.extend(sandwich_norms(&t, l));
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
                let attn = attention(cfg, l, w, None, None)?;
                Ok(Box::new(SandwichLayer::new(cfg, l, w, attn)?) as Box<dyn Layer + 'a>)
            })
            .collect()
    }
}

/// The four norms around attention and the feed-forward of Gemma 2 and 3.
pub(super) fn sandwich_norms(t: &Table, l: usize) -> [TensorSpec; 4] {
    [
        t.norm(l, key::ATTN_NORM, "input_layernorm", "attn_norm"),
        t.norm(
            l,
            key::POST_ATTN_NORM,
            "post_attention_layernorm",
            "post_attention_norm",
        ),
        t.norm(l, key::FFN_NORM, "pre_feedforward_layernorm", "ffn_norm"),
        t.norm(
            l,
            key::POST_FFN_NORM,
            "post_feedforward_layernorm",
            "post_ffw_norm",
        ),
    ]
}

/// Gemma 2's layer (Gemma 3's too, whose attention block carries q/k norms): attention and
/// the feed-forward each between a pre-norm and a post-norm, added to the residual stream.
pub(super) struct SandwichLayer<'a> {
    attn: Attention<'a>,
    mlp: Mlp<'a>,
    input_norm: Vec<f32>,
    post_attn_norm: Vec<f32>,
    pre_ffw_norm: Vec<f32>,
    post_ffw_norm: Vec<f32>,
    eps: f32,
}

impl<'a> SandwichLayer<'a> {
    pub(super) fn new(
        cfg: &GemmaConfig,
        l: usize,
        w: &mut Bound<'a>,
        attn: Attention<'a>,
    ) -> Result<Self> {
        let r = Role::Layer(l);
        Ok(SandwichLayer {
            attn,
            mlp: mlp(w, l)?,
            input_norm: w.vector(r, key::ATTN_NORM)?,
            post_attn_norm: w.vector(r, key::POST_ATTN_NORM)?,
            pre_ffw_norm: w.vector(r, key::FFN_NORM)?,
            post_ffw_norm: w.vector(r, key::POST_FFN_NORM)?,
            eps: cfg.rms_norm_eps,
        })
    }
}

impl Layer for SandwichLayer<'_> {
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
        blocks::norm_in_place(&mut o, &self.post_attn_norm, self.eps);
        ops::add_assign(x, &o);
        blocks::norm_rows(x, xn, &self.pre_ffw_norm, self.eps);
        self.mlp.forward(mm, xn, n, &mut o);
        blocks::norm_in_place(&mut o, &self.post_ffw_norm, self.eps);
        ops::add_assign(x, &o);
    }
}
