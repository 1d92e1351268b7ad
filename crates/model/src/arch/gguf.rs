//! GGUF metadata for Gemma architectures, both ways: the keys every generation shares read
//! into a config as llama.cpp's `llama_model::load_hparams` reads them ([`Common`]), and
//! written as its `convert_hf_to_gguf.py` writes them ([`common_hparams`]). What a generation
//! adds or hard-codes is in its own file.

use crate::config::{GemmaConfig, LayerKind, Rope};
use crate::tensors::{EMBED_NAMES, OUTPUT_NAMES};
use anyhow::{bail, Context, Result};
use frugal_formats::gguf::{Gguf, Meta};
use frugal_formats::gguf_write::Value;
use frugal_formats::TensorIndex;

/// The hyper-parameters every Gemma GGUF file carries, read and checked.
pub struct Common {
    /// `general.architecture`, the prefix of the architecture's keys.
    pub arch: &'static str,
    pub path: String,
    pub layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    /// The embedding's rows.
    pub vocab: usize,
    pub theta: f64,
    /// Linear rope scaling (1 when none).
    pub factor: f64,
    pub bos: u64,
    pub eos: Vec<u64>,
    /// No separate output projection.
    pub tied: bool,
}

impl Common {
    /// The architecture's key `s` (`{arch}.{s}`).
    pub fn key(&self, s: &str) -> String {
        format!("{}.{s}", self.arch)
    }

    /// Reads the shared keys of a file whose architecture is `arch`.
    pub fn read(g: &Gguf, index: &TensorIndex, arch: &'static str) -> Result<Common> {
        let path = g.path.clone();
        let k = |s: &str| format!("{arch}.{s}");
        let n = |s: &str| -> Result<usize> {
            let v = g.uint_req(&k(s))?;
            if v == 0 || v > 1 << 24 {
                bail!("{path}: metadata `{}` is {v}", k(s));
            }
            Ok(v as usize)
        };
        for key in [
            "feed_forward_length",
            "attention.head_count",
            "attention.head_count_kv",
        ] {
            if let Some(Meta::Array { .. }) = g.get(&k(key)) {
                bail!("{path}: metadata `{}` varies by layer, which Gemma models do not and frugal does not support", k(key));
            }
        }
        let layers = n("block_count")?;
        let hidden = n("embedding_length")?;
        let ffn = n("feed_forward_length")?;
        let heads = n("attention.head_count")?;
        let kv_heads = match g.uint(&k("attention.head_count_kv"))? {
            None => heads,
            Some(_) => n("attention.head_count_kv")?,
        };
        // llama.cpp: the head size defaults to n_embd / n_head.
        let head_dim = match g.uint(&k("attention.key_length"))? {
            None => hidden / heads,
            Some(_) => n("attention.key_length")?,
        };
        if let Some(v) = g.uint(&k("attention.value_length"))? {
            if v as usize != head_dim {
                bail!("{path}: metadata `{}` ({v}) differs from the key length ({head_dim}); Gemma's keys and values have one head size", k("attention.value_length"));
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
        // Vocabulary: the embedding's rows.
        let name = EMBED_NAMES[2];
        let embd = index
            .tensors
            .get(name)
            .with_context(|| format!("{path}: no tensor `{name}` (the token embedding)"))?;
        let vocab = embd.shape[0];
        let theta = g.float(&k("rope.freq_base"))?.unwrap_or(10000.0);
        let scaling = g.str(&k("rope.scaling.type"))?.unwrap_or("linear");
        let factor = match g
            .float(&k("rope.scaling.factor"))?
            .or(g.float(&k("rope.scale_linear"))?)
        {
            None => 1.0,
            Some(0.0) => 1.0,
            Some(f) => f,
        };
        if !matches!(scaling, "linear" | "none") && factor != 1.0 {
            bail!("{path}: rope scaling `{scaling}` is not supported (Gemma uses linear scaling)");
        }
        let factor = if scaling == "none" { 1.0 } else { factor };
        let id = |key: &str| -> Result<Option<u64>> { g.uint(&format!("tokenizer.ggml.{key}")) };
        let bos = id("bos_token_id")?.unwrap_or(2);
        let mut eos: Vec<u64> = id("eos_token_id")?.into_iter().collect();
        if eos.is_empty() {
            eos.push(1);
        }
        // `tokenizer.ggml.eot_token_id` is not added: llama.cpp's converter writes 107 for
        // every Gemma 1 file (a CodeGemma id), whatever that id is; the end of a chat turn is
        // found by its piece (`<end_of_turn>`) instead.
        Ok(Common {
            arch,
            path,
            layers,
            hidden,
            ffn,
            heads,
            kv_heads,
            head_dim,
            eps,
            vocab,
            theta,
            factor,
            bos,
            eos,
            tied: !index.tensors.contains_key(OUTPUT_NAMES[1]),
        })
    }

    /// Which layers slide: none without a window; else the per-layer bool array
    /// `attention.sliding_window_pattern` when the file has one, else llama.cpp's
    /// `set_swa_pattern` with the file's period or `period` (layer `i` is local when
    /// `i % period < period - 1`; period 0: every layer local).
    pub fn layer_kinds(
        &self,
        g: &Gguf,
        index: &TensorIndex,
        window: Option<usize>,
        period: usize,
    ) -> Result<Vec<LayerKind>> {
        let key = self.key("attention.sliding_window_pattern");
        let layers = self.layers;
        Ok(match (window, g.get(&key)) {
            (None, _) => vec![LayerKind::Global; layers],
            (Some(_), Some(Meta::Array { .. })) => {
                let a = g.array(&index.files[0].map, &key)?.expect("present");
                if a.len != layers || a.elem != frugal_formats::gguf::vt::BOOL {
                    bail!(
                        "{}: metadata `{key}` must be {layers} bools (one per layer)",
                        self.path
                    );
                }
                a.bools()?
                    .into_iter()
                    .map(|b| {
                        if b {
                            LayerKind::Local
                        } else {
                            LayerKind::Global
                        }
                    })
                    .collect()
            }
            (Some(_), p) => {
                let period = match p {
                    None => period,
                    Some(_) => g.uint(&key)?.unwrap_or(period as u64) as usize,
                };
                (0..layers)
                    .map(|i| {
                        if period == 0 || i % period < period - 1 {
                            LayerKind::Local
                        } else {
                            LayerKind::Global
                        }
                    })
                    .collect()
            }
        })
    }

    /// A logit softcap key, or `default` when absent (0 means none).
    pub fn softcap(&self, g: &Gguf, key: &str, default: Option<f64>) -> Result<Option<f64>> {
        Ok(g.float(&self.key(key))?.or(default).filter(|&c| c > 0.0))
    }

    /// The config: the shared keys with what the architecture resolved, checked by the
    /// architecture's config.json rules (`model_type`).
    #[allow(clippy::too_many_arguments)]
    pub fn config(
        &self,
        model_type: &str,
        window: Option<usize>,
        kinds: &[LayerKind],
        local: Rope,
        attn_cap: Option<f64>,
        final_cap: Option<f64>,
        query_scalar: usize,
    ) -> Result<GemmaConfig> {
        let kinds: Vec<&str> = kinds
            .iter()
            .map(|l| match l {
                LayerKind::Local => "sliding_attention",
                LayerKind::Global => "full_attention",
            })
            .collect();
        let json = serde_json::json!({
            "model_type": model_type,
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.ffn,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.eps,
            "query_pre_attn_scalar": query_scalar,
            "sliding_window": window,
            "layer_types": kinds,
            "rope_theta": self.theta,
            "rope_scaling": if self.factor != 1.0 { serde_json::json!({"rope_type": "linear", "factor": self.factor}) } else { serde_json::Value::Null },
            "rope_local_base_freq": local.theta,
            "attn_logit_softcapping": attn_cap,
            "final_logit_softcapping": final_cap,
            "tie_word_embeddings": self.tied,
            "bos_token_id": self.bos,
            "eos_token_id": self.eos,
        });
        let mut cfg = GemmaConfig::from_json(&json, &self.path)?;
        cfg.rope_local = local;
        Ok(cfg)
    }
}

/// llama.cpp scales queries by `1/sqrt(head_dim)`, or by `1/sqrt(hidden / heads)` for the
/// layer counts it treats as its 27B types (`big_layers`); no GGUF key says otherwise.
pub fn llama_query_scalar(hidden: usize, heads: usize, head_dim: usize, big: bool) -> usize {
    if big {
        hidden / heads
    } else {
        head_dim
    }
}

/// The keys every Gemma GGUF file carries, as llama.cpp's converter writes them for `cfg`
/// under the architecture `a`: `general.architecture` first, then the shared
/// hyper-parameters. Refuses a `query_pre_attn_scalar` llama.cpp would not use (`big`: the
/// shape is one of its 27B types).
pub fn common_hparams(
    cfg: &GemmaConfig,
    a: &str,
    ctx_len: u32,
    big: bool,
    source: &str,
) -> Result<Vec<(String, Value)>> {
    let llama_scalar = llama_query_scalar(cfg.hidden_size, cfg.num_heads, cfg.head_dim, big) as f64;
    if (cfg.query_pre_attn_scalar - llama_scalar).abs() > 1e-9 {
        bail!(
            "{source}: query_pre_attn_scalar is {} but llama.cpp would scale queries by 1/sqrt({llama_scalar}) for this shape, and GGUF has no key to say otherwise; this model cannot be written as a GGUF file that runs the same",
            cfg.query_pre_attn_scalar
        );
    }
    let k = |s: &str| format!("{a}.{s}");
    let u = |x: usize| Value::U32(x as u32);
    Ok(vec![
        ("general.architecture".to_string(), Value::Str(a.into())),
        (k("context_length"), Value::U32(ctx_len)),
        (k("embedding_length"), u(cfg.hidden_size)),
        (k("block_count"), u(cfg.num_layers)),
        (k("feed_forward_length"), u(cfg.intermediate_size)),
        (k("attention.head_count"), u(cfg.num_heads)),
        (k("attention.head_count_kv"), u(cfg.num_kv_heads)),
        (
            k("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps),
        ),
        (k("attention.key_length"), u(cfg.head_dim)),
        (k("attention.value_length"), u(cfg.head_dim)),
        (
            k("rope.freq_base"),
            Value::F32(cfg.rope_global.theta as f32),
        ),
    ])
}

/// `attention.sliding_window`, when the model has a window.
pub fn window_hparam(cfg: &GemmaConfig, a: &str) -> Option<(String, Value)> {
    cfg.sliding_window.map(|w| {
        (
            format!("{a}.attention.sliding_window"),
            Value::U32(w as u32),
        )
    })
}

/// The per-layer pattern key when the layers do not follow llama.cpp's default of `period`
/// (layer `i` local when `i % period < period - 1`).
pub fn pattern_hparam(cfg: &GemmaConfig, a: &str, period: usize) -> Option<(String, Value)> {
    let default = (0..cfg.num_layers)
        .all(|i| (cfg.layer_kinds[i] == LayerKind::Local) == (i % period < period - 1));
    (!default).then(|| {
        (
            format!("{a}.attention.sliding_window_pattern"),
            Value::BoolArray(
                cfg.layer_kinds
                    .iter()
                    .map(|l| *l == LayerKind::Local)
                    .collect(),
            ),
        )
    })
}

/// The final softcap and linear rope scaling keys, the last the converter writes.
pub fn tail_hparams(cfg: &GemmaConfig, a: &str, source: &str) -> Result<Vec<(String, Value)>> {
    let k = |s: &str| format!("{a}.{s}");
    let mut kv = Vec::new();
    if let Some(c) = cfg.final_softcap {
        kv.push((k("final_logit_softcapping"), Value::F32(c)));
    }
    if cfg.rope_global.factor != 1.0 {
        kv.push((k("rope.scaling.type"), Value::Str("linear".into())));
        kv.push((
            k("rope.scaling.factor"),
            Value::F32(cfg.rope_global.factor as f32),
        ));
    }
    if cfg.rope_local.factor != 1.0 {
        bail!("{source}: llama.cpp cannot scale the positions of local layers");
    }
    Ok(kv)
}
