//! The model: each Gemma generation in one file ([`arch`]: its config from config.json and
//! GGUF metadata, its variants, its tensor table, its layer composition), the table's
//! vocabulary ([`tensors`]), binding a checkpoint's tensors in place through the table
//! ([`bind`]), the shared building blocks layers are composed of ([`blocks`]), the KV cache
//! ([`kv`]) and the forward pass with its streaming hooks ([`model`]).

pub mod arch;
pub mod bind;
pub mod blocks;
pub mod config;
pub mod kv;
pub mod model;
pub mod tensors;

pub use config::{GemmaConfig, LayerKind, Rope};
pub use kv::KvCache;
pub use model::{LanguageModel, Model, Pager, Streaming, PREFILL_CHUNK};
