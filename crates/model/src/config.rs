//! The resolved configuration of a model: what the forward pass, the tensor table and the
//! memory plan need, whatever file it came from. Each architecture (`crate::arch`) resolves it
//! from config.json and from GGUF metadata with its own defaults and rules (and reads and
//! writes it there: `GemmaConfig::from_json`, `to_hf_json`); nothing outside the architecture
//! files asks which generation a model is.

/// A model's architecture: which of the registered architectures (`crate::arch::ALL`)
/// resolved the config and builds the model. It dereferences to the architecture's trait
/// object there; this module knows no architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch(pub(crate) usize);

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

/// The shape of one decoder layer where layers differ (Gemma 4: head size and key/value heads by
/// layer type, wider feed-forwards on some layers, layers that attend over another layer's
/// cache). [`GemmaConfig::layer`] gives it for every architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerShape {
    pub head_dim: usize,
    pub kv_heads: usize,
    /// Width of the dense feed-forward.
    pub ffn: usize,
    /// The layer whose KV cache this one attends over: itself, or (KV sharing) an earlier
    /// layer of the same kind; a layer that reads another's cache holds none and projects no
    /// keys or values.
    pub kv_layer: usize,
    /// Values are the keys' projection (no value matrix).
    pub values_from_keys: bool,
    /// Rotary pairs that rotate, the first of each half of the head (`head_dim / 2`: all of
    /// them; fewer under Gemma 4's proportional RoPE, the others pass through).
    pub rotary_pairs: usize,
}

/// A mixture of experts beside the dense feed-forward (Gemma 4 26B-A4B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moe {
    pub experts: usize,
    /// Experts each token is routed to.
    pub top_k: usize,
    /// Width of each expert's feed-forward.
    pub inter: usize,
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
    /// Each layer's shape where layers differ; empty: every layer as `head_dim`,
    /// `num_kv_heads` and `intermediate_size` say, holding its own cache.
    pub layer_shapes: Vec<LayerShape>,
    /// Width of each layer's per-layer input (Gemma 4's per-layer embeddings); 0: none.
    pub per_layer_input: usize,
    /// Rows of the per-layer embedding table.
    pub per_layer_vocab: usize,
    pub moe: Option<Moe>,
}

impl GemmaConfig {
    /// The embedding multiplier, as the architecture computes it.
    pub fn embed_scale(&self) -> f32 {
        self.arch.embed_scale(self)
    }

    /// The shape of layer `l`.
    pub fn layer(&self, l: usize) -> LayerShape {
        match self.layer_shapes.get(l) {
            Some(s) => *s,
            None => LayerShape {
                head_dim: self.head_dim,
                kv_heads: self.num_kv_heads,
                ffn: self.intermediate_size,
                kv_layer: l,
                values_from_keys: false,
                rotary_pairs: self.head_dim / 2,
            },
        }
    }

    /// Whether another layer attends over layer `l`'s cache.
    pub fn shares_cache(&self, l: usize) -> bool {
        (0..self.num_layers).any(|i| i != l && self.layer(i).kv_layer == l)
    }

    /// Rotary parameters of layer `i`.
    pub fn rope(&self, i: usize) -> Rope {
        match self.layer_kinds[i] {
            LayerKind::Global => self.rope_global,
            LayerKind::Local => self.rope_local,
        }
    }
}
