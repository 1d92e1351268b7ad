//! The Gemma model: configuration ([`config`]), weights bound to the checkpoint ([`weights`]),
//! and the forward pass with its KV cache ([`gemma`]).

pub mod config;
pub mod gemma;
pub mod variants;
pub mod weights;
