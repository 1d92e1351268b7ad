//! The tensor table's vocabulary: one [`TensorSpec`] per tensor a model reads, with its name
//! in each checkpoint naming, its shape, its place in the model ([`Role`]) and its component
//! ([`Part`]); and the constructors of the tensors Gemma generations share ([`Table`]), from
//! which each architecture lists its own table once.

use crate::config::GemmaConfig;
use std::ops::Range;

/// Where a tensor belongs in the model: what streaming and budgets group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The token embedding (read one row per token; the output projection too when tied), and
    /// what turns tokens into Gemma 4's per-layer inputs (its table, one row per token, and
    /// the projection of the embedding).
    Embedding,
    /// Decoder layer `l`.
    Layer(usize),
    /// The norm after the last layer.
    FinalNorm,
    /// An untied output projection.
    Output,
}

/// The component a tensor is part of (`inspect`'s breakdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Embedding,
    Attention,
    FeedForward,
    Norm,
    Output,
}

impl Part {
    /// The name `inspect` shows.
    pub fn name(self) -> &'static str {
        match self {
            Part::Embedding => "embedding",
            Part::Attention => "attention",
            Part::FeedForward => "mlp",
            Part::Norm => "norms",
            Part::Output => "output head",
        }
    }
}

/// How a tensor is stored and used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A weight matrix, used in place in its stored dtype.
    Matrix,
    /// An RMSNorm weight for a norm that multiplies by `1 + w`: Hugging Face and gemma_pytorch
    /// files store `w`, GGUF files (llama.cpp's converter) `1 + w`. Read once into f32 as
    /// `1 + w`.
    NormPlusOne,
    /// A vector used as stored in every format, read once into f32: Gemma 4's RMSNorm weights
    /// (plain multipliers), its layer scalars and router scales.
    Vector,
}

/// A tensor's name in gemma_pytorch checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtName {
    Plain(String),
    /// Rows `rows` of the tensor `fused` (gemma_pytorch fuses Q, K and V into `qkv_proj`).
    Rows {
        fused: String,
        rows: Range<usize>,
    },
}

impl PtName {
    /// The stored tensor's name.
    pub fn stored(&self) -> &str {
        match self {
            PtName::Plain(n) => n,
            PtName::Rows { fused, .. } => fused,
        }
    }
}

/// One tensor of a model.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    /// What the architecture binds it by, unique within its [`Role`] (e.g. `attn_q`).
    pub key: &'static str,
    pub role: Role,
    pub part: Part,
    pub kind: Kind,
    /// Hugging Face name (`model.`-prefixed decoder names, `lm_head.weight`).
    pub hf: String,
    /// gemma_pytorch name.
    pub pytorch: PtName,
    /// GGUF name (llama.cpp's `tensor_mapping.py`).
    pub gguf: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Whether a checkpoint may lack it.
    pub optional: bool,
}

impl TensorSpec {
    /// Whether it is a matrix (used in place; a 3-D tensor of experts as `[experts * rows,
    /// cols]`) rather than a vector read into f32.
    pub fn is_matrix(&self) -> bool {
        self.kind == Kind::Matrix
    }
}

/// The token embedding's names: Hugging Face, gemma_pytorch, GGUF.
pub const EMBED_NAMES: [&str; 3] = [
    "model.embed_tokens.weight",
    "embedder.weight",
    "token_embd.weight",
];
/// An untied output projection's names: Hugging Face (and gemma_pytorch), GGUF.
pub const OUTPUT_NAMES: [&str; 2] = ["lm_head.weight", "output.weight"];

/// Keys of the tensors Gemma generations share.
pub mod key {
    pub const EMBED: &str = "token_embd";
    pub const OUTPUT: &str = "output";
    pub const FINAL_NORM: &str = "output_norm";
    pub const ATTN_Q: &str = "attn_q";
    pub const ATTN_K: &str = "attn_k";
    pub const ATTN_V: &str = "attn_v";
    pub const ATTN_OUT: &str = "attn_output";
    pub const ATTN_Q_NORM: &str = "attn_q_norm";
    pub const ATTN_K_NORM: &str = "attn_k_norm";
    pub const FFN_GATE: &str = "ffn_gate";
    pub const FFN_UP: &str = "ffn_up";
    pub const FFN_DOWN: &str = "ffn_down";
    pub const ATTN_NORM: &str = "attn_norm";
    pub const POST_ATTN_NORM: &str = "post_attention_norm";
    pub const FFN_NORM: &str = "ffn_norm";
    pub const POST_FFN_NORM: &str = "post_ffw_norm";
    /// Gemma 4's per-layer embeddings: the table `[vocab, layers * width]`, the projection of
    /// the embedding `[layers * width, hidden]` and its norm `[width]`.
    pub const PER_LAYER_EMBD: &str = "per_layer_token_embd";

    /// Whether the tensor of `key` is read a row per token seen (never whole): only the rows of
    /// the tokens held become resident.
    pub fn read_by_token_rows(key: &str) -> bool {
        key == PER_LAYER_EMBD
    }
    pub const PER_LAYER_PROJ: &str = "per_layer_model_proj";
    pub const PER_LAYER_PROJ_NORM: &str = "per_layer_proj_norm";

    /// The order of a decoder layer's modules in transformers' Gemma code (its state dict's
    /// order): what `synth` writes in, so a seed always gives the same weights.
    pub const MODULE_ORDER: [&str; 13] = [
        ATTN_NORM,
        ATTN_Q,
        ATTN_K,
        ATTN_V,
        ATTN_OUT,
        ATTN_Q_NORM,
        ATTN_K_NORM,
        POST_ATTN_NORM,
        FFN_NORM,
        POST_FFN_NORM,
        FFN_GATE,
        FFN_UP,
        FFN_DOWN,
    ];
}

/// Constructors of the tensors Gemma generations share, sized by a config. An architecture's
/// table is the list of these it calls.
pub struct Table<'c> {
    c: &'c GemmaConfig,
}

impl<'c> Table<'c> {
    pub fn new(c: &'c GemmaConfig) -> Self {
        Table { c }
    }

    #[allow(clippy::too_many_arguments)]
    fn spec(
        key: &'static str,
        role: Role,
        part: Part,
        kind: Kind,
        hf: String,
        pytorch: PtName,
        gguf: String,
        shape: Vec<usize>,
    ) -> TensorSpec {
        TensorSpec {
            key,
            role,
            part,
            kind,
            hf,
            pytorch,
            gguf,
            shape,
            optional: false,
        }
    }

    /// The token embedding, `[vocab, hidden]`.
    pub fn embedding(&self) -> TensorSpec {
        Self::spec(
            key::EMBED,
            Role::Embedding,
            Part::Embedding,
            Kind::Matrix,
            EMBED_NAMES[0].into(),
            PtName::Plain(EMBED_NAMES[1].into()),
            EMBED_NAMES[2].into(),
            vec![self.c.vocab_size, self.c.hidden_size],
        )
    }

    /// The norm after the last layer.
    pub fn final_norm(&self) -> TensorSpec {
        Self::spec(
            key::FINAL_NORM,
            Role::FinalNorm,
            Part::Norm,
            Kind::NormPlusOne,
            "model.norm.weight".into(),
            PtName::Plain("model.norm.weight".into()),
            "output_norm.weight".into(),
            vec![self.c.hidden_size],
        )
    }

    /// An untied output projection, `[vocab, hidden]`.
    pub fn output(&self) -> TensorSpec {
        Self::spec(
            key::OUTPUT,
            Role::Output,
            Part::Output,
            Kind::Matrix,
            OUTPUT_NAMES[0].into(),
            PtName::Plain(OUTPUT_NAMES[0].into()),
            OUTPUT_NAMES[1].into(),
            vec![self.c.vocab_size, self.c.hidden_size],
        )
    }

    /// A layer tensor: `key`, its Hugging Face name after `model.layers.{l}.` (gemma_pytorch
    /// the same unless `pytorch` says), its GGUF name after `blk.{l}.`.
    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        l: usize,
        key: &'static str,
        part: Part,
        kind: Kind,
        hf: &str,
        pytorch: Option<PtName>,
        gguf: &str,
        shape: Vec<usize>,
    ) -> TensorSpec {
        let hf = format!("model.layers.{l}.{hf}");
        Self::spec(
            key,
            Role::Layer(l),
            part,
            kind,
            hf.clone(),
            pytorch.unwrap_or(PtName::Plain(hf)),
            format!("blk.{l}.{gguf}.weight"),
            shape,
        )
    }

    /// Q, K and V projections (`[heads * head_dim, hidden]`, `[kv_heads * head_dim, hidden]`
    /// twice): gemma_pytorch stores them as row ranges of one fused `qkv_proj`.
    pub fn qkv(&self, l: usize) -> [TensorSpec; 3] {
        let c = self.c;
        let (h, nq, nkv) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
        );
        let fused = |rows: Range<usize>| {
            Some(PtName::Rows {
                fused: format!("model.layers.{l}.self_attn.qkv_proj.weight"),
                rows,
            })
        };
        let m = |key, hf: &str, rows: Range<usize>, gguf: &str| {
            self.layer(
                l,
                key,
                Part::Attention,
                Kind::Matrix,
                hf,
                fused(rows.clone()),
                gguf,
                vec![rows.len(), h],
            )
        };
        [
            m(key::ATTN_Q, "self_attn.q_proj.weight", 0..nq, "attn_q"),
            m(
                key::ATTN_K,
                "self_attn.k_proj.weight",
                nq..nq + nkv,
                "attn_k",
            ),
            m(
                key::ATTN_V,
                "self_attn.v_proj.weight",
                nq + nkv..nq + 2 * nkv,
                "attn_v",
            ),
        ]
    }

    /// The attention output projection, `[hidden, heads * head_dim]`.
    pub fn attn_output(&self, l: usize) -> TensorSpec {
        let c = self.c;
        self.layer(
            l,
            key::ATTN_OUT,
            Part::Attention,
            Kind::Matrix,
            "self_attn.o_proj.weight",
            None,
            "attn_output",
            vec![c.hidden_size, c.num_heads * c.head_dim],
        )
    }

    /// Per-head RMSNorms of queries and keys, `[head_dim]` (gemma_pytorch: `query_norm`,
    /// `key_norm`).
    pub fn qk_norms(&self, l: usize) -> [TensorSpec; 2] {
        let n = |key, hf: &str, pt: &str, gguf: &str| {
            self.layer(
                l,
                key,
                Part::Norm,
                Kind::NormPlusOne,
                hf,
                Some(PtName::Plain(format!("model.layers.{l}.{pt}"))),
                gguf,
                vec![self.c.head_dim],
            )
        };
        [
            n(
                key::ATTN_Q_NORM,
                "self_attn.q_norm.weight",
                "self_attn.query_norm.weight",
                "attn_q_norm",
            ),
            n(
                key::ATTN_K_NORM,
                "self_attn.k_norm.weight",
                "self_attn.key_norm.weight",
                "attn_k_norm",
            ),
        ]
    }

    /// The gated feed-forward: gate and up `[intermediate, hidden]`, down `[hidden,
    /// intermediate]`.
    pub fn mlp(&self, l: usize) -> [TensorSpec; 3] {
        let (h, i) = (self.c.hidden_size, self.c.intermediate_size);
        let m = |key, hf: &str, gguf: &str, shape| {
            self.layer(
                l,
                key,
                Part::FeedForward,
                Kind::Matrix,
                hf,
                None,
                gguf,
                shape,
            )
        };
        [
            m(
                key::FFN_GATE,
                "mlp.gate_proj.weight",
                "ffn_gate",
                vec![i, h],
            ),
            m(key::FFN_UP, "mlp.up_proj.weight", "ffn_up", vec![i, h]),
            m(
                key::FFN_DOWN,
                "mlp.down_proj.weight",
                "ffn_down",
                vec![h, i],
            ),
        ]
    }

    /// A `[hidden]` RMSNorm of layer `l`: `key`, its Hugging Face name after
    /// `model.layers.{l}.` and its GGUF name after `blk.{l}.`.
    pub fn norm(&self, l: usize, key: &'static str, hf: &str, gguf: &str) -> TensorSpec {
        self.layer(
            l,
            key,
            Part::Norm,
            Kind::NormPlusOne,
            &format!("{hf}.weight"),
            None,
            gguf,
            vec![self.c.hidden_size],
        )
    }
}
