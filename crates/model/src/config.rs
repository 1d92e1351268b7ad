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
}
