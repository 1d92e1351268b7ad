//! Gemma 3 (`gemma3_text`, or the text part of a multimodal `gemma3`; llama.cpp's `gemma3`):
//! five sliding-window layers to one global, local layers on their own rotary base and
//! unscaled, no attention softcap; Gemma 2's sandwich-normed layer with per-head RMSNorms of
//! queries and keys in its attention.

use super::gemma1::{attention, base_json};
use super::gemma2::{sandwich_norms, SandwichLayer};
use super::gguf::{self, Common};
use super::hf::{self, HfRules};
use super::{variant, Architecture, Variant};
use crate::bind::Bound;
use crate::config::{Arch, GemmaConfig, Rope};
use crate::model::Layer;
use crate::tensors::{key, Role, Table, TensorSpec};
use anyhow::{Context, Result};
use frugal_formats::gguf::Gguf;
use frugal_formats::gguf_write::Value as GgufValue;
use frugal_formats::TensorIndex;
use serde_json::{json, Map, Value};

/// transformers' `Gemma3TextConfig` defaults.
const HF: HfRules = HfRules {
    model_type: "gemma3_text",
    class: "Gemma3ForCausalLM",
    vocab: 262208,
    kv_heads: Some(4),
    head_dim: 256,
    rope_theta: 1_000_000.0,
    local_theta: 10000.0,
    window: Some(4096),
    pattern: 6,
    pattern_key: true,
    attn_cap: None,
    final_cap: None,
    query_scalar: Some(256.0),
    local_base_key: true,
};

/// llama.cpp's sliding-window period: every sixth layer is global.
const PERIOD: usize = 6;
/// The layer count llama.cpp treats as its 27B type (queries scaled by `hidden / heads`).
const BIG_LAYERS: usize = 62;
/// Text token ids: multimodal embeddings add image-token rows after them.
const TEXT_VOCAB: usize = 262144;

pub struct Gemma3;

impl Architecture for Gemma3 {
    fn name(&self) -> &'static str {
        "Gemma 3"
    }

    fn model_types(&self) -> &'static [&'static str] {
        &["gemma3_text", "gemma3"]
    }

    fn gguf_arch(&self) -> &'static str {
        "gemma3"
    }

    fn config_from_json(
        &self,
        model_type: &str,
        top: &Map<String, Value>,
        path: &str,
    ) -> Result<GemmaConfig> {
        let arch = Arch::named(self.name());
        let mut c = if model_type == "gemma3" {
            // The multimodal checkpoint: the text model's keys are in `text_config`.
            let tc = top
                .get("text_config")
                .and_then(|t| t.as_object())
                .with_context(|| {
                    format!("{path}: model_type gemma3 needs an object `text_config`")
                })?;
            hf::resolve(arch, &HF, model_type, top, tc, "text_config.", true, path)?
        } else {
            hf::resolve(arch, &HF, model_type, top, top, "", false, path)?
        };
        c.text_vocab_size = c.vocab_size.min(TEXT_VOCAB);
        Ok(c)
    }

    fn hf_rules(&self) -> &'static HfRules {
        &HF
    }

    /// As llama.cpp's `gemma3`: sliding only if a window is given; local base 10000 unless
    /// `rope.freq_base_swa` says otherwise (the converter does not write it), local positions
    /// unscaled; period 6; no attention softcap, a final one only if given.
    fn config_from_gguf(&self, g: &Gguf, index: &TensorIndex) -> Result<GemmaConfig> {
        let c = Common::read(g, index, self.gguf_arch())?;
        let window = g
            .uint(&c.key("attention.sliding_window"))?
            .filter(|&w| w > 0)
            .map(|w| w as usize);
        let local = Rope {
            theta: match window {
                Some(_) => g.float(&c.key("rope.freq_base_swa"))?.unwrap_or(10000.0),
                None => 10000.0,
            },
            factor: 1.0,
        };
        let kinds = c.layer_kinds(g, index, window, PERIOD)?;
        let final_cap = c.softcap(g, "final_logit_softcapping", None)?;
        let scalar =
            gguf::llama_query_scalar(c.hidden, c.heads, c.head_dim, c.layers == BIG_LAYERS);
        c.config(
            HF.model_type,
            window,
            &kinds,
            local,
            None,
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
        kv.push((
            format!("{a}.rope.freq_base_swa"),
            GgufValue::F32(cfg.rope_local.theta as f32),
        ));
        kv.extend(gguf::pattern_hparam(cfg, a, PERIOD));
        if cfg.attn_softcap.is_some() {
            anyhow::bail!("{source}: llama.cpp applies an attention softcap only to Gemma 2");
        }
        kv.extend(gguf::tail_hparams(cfg, a, source)?);
        Ok(kv)
    }

    fn default_context_length(&self) -> u32 {
        131072
    }

    #[rustfmt::skip]
    fn variants(&self) -> Vec<Variant> {
        let g3 = |mut v: Variant, w: usize, f: Option<f64>| {
            v.window = Some(w);
            v.rope_factor = f;
            v
        };
        // variant(name, model_type, vocab, hidden, intermediate, layers, heads, kv heads, head_dim, query_pre_attn_scalar)
        vec![
            g3(variant("gemma3-1b", "gemma3_text", 262144, 1152, 6912, 26, 4, 1, 256, 256), 512, None),
            g3(variant("gemma3-4b", "gemma3_text", 262208, 2560, 10240, 34, 8, 4, 256, 256), 1024, Some(8.0)),
            g3(variant("gemma3-12b", "gemma3_text", 262208, 3840, 15360, 48, 16, 8, 256, 256), 1024, Some(8.0)),
            g3(variant("gemma3-27b", "gemma3_text", 262208, 5376, 21504, 62, 32, 16, 128, 168), 1024, Some(8.0)),
            g3(variant("tiny-gemma3", "gemma3_text", 2048, 64, 128, 7, 4, 2, 32, 32), 16, Some(8.0)),
        ]
    }

    fn variant_json(&self, v: &Variant) -> Value {
        let mut c = base_json(HF.class, v);
        let o = c.as_object_mut().expect("object");
        o.insert("query_pre_attn_scalar".into(), json!(v.qpas));
        o.insert("sliding_window".into(), json!(v.window));
        o.insert("rope_theta".into(), json!(1_000_000.0));
        o.insert("rope_local_base_freq".into(), json!(10000.0));
        o.insert("sliding_window_pattern".into(), json!(PERIOD));
        o.insert(
            "rope_scaling".into(),
            v.rope_factor
                .map_or(json!(null), |f| json!({"rope_type": "linear", "factor": f})),
        );
        o.insert("attn_logit_softcapping".into(), json!(null));
        o.insert("final_logit_softcapping".into(), json!(null));
        c
    }

    /// The published gemma_pytorch files trim the vocabulary to fewer rows than the Hugging
    /// Face ones (262144 against 262208).
    fn pytorch_vocab(&self, v: &Variant, rows: usize) -> Option<usize> {
        (rows <= v.vocab).then_some(rows)
    }

    fn tensors(&self, cfg: &GemmaConfig) -> Vec<TensorSpec> {
        let t = Table::new(cfg);
        let mut v = vec![t.embedding()];
        for l in 0..cfg.num_layers {
            v.extend(t.qkv(l));
            v.push(t.attn_output(l));
            v.extend(t.mlp(l));
            v.extend(sandwich_norms(&t, l));
            v.extend(t.qk_norms(l));
        }
        v.push(t.final_norm());
        if !cfg.tie_word_embeddings {
            v.push(t.output());
        }
        v
    }

    fn pytorch_buffers(&self, _cfg: &GemmaConfig) -> Vec<(&'static str, f64)> {
        vec![
            ("local_freqs_cis", HF.local_theta),
            ("global_freqs_cis", HF.rope_theta),
        ]
    }

    fn layers<'a>(&self, cfg: &GemmaConfig, w: &mut Bound<'a>) -> Result<Vec<Box<dyn Layer + 'a>>> {
        (0..cfg.num_layers)
            .map(|l| {
                let r = Role::Layer(l);
                let (qn, kn) = (
                    w.vector(r, key::ATTN_Q_NORM)?,
                    w.vector(r, key::ATTN_K_NORM)?,
                );
                let attn = attention(cfg, l, w, Some(qn), Some(kn))?;
                Ok(Box::new(SandwichLayer::new(cfg, l, w, attn)?) as Box<dyn Layer + 'a>)
            })
            .collect()
    }
}
