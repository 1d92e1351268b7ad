//! frugal: run Google's Gemma language models on a CPU in the least memory possible.
//!
//! A workspace of single-purpose crates whose dependencies are the arrows of the data flow
//! (checkpoint formats -> load plan -> weights in memory -> model -> generation -> command
//! line); this crate is the binary and one place to reach them all from (the integration tests,
//! bindings):
//!
//! - [`tensor`]: the tensor vocabulary (dtypes, borrowed matrices), imported by everything;
//! - [`quant`]: GGUF's block formats; [`kernels`]: the matrix products and element-wise ops;
//! - [`checkpoint`]: the formats read from headers and mapped in place (and written);
//! - [`tokenizer`]: tokenizer.json, SentencePiece, a GGUF file's vocabulary, the chat template;
//! - [`model`]: one file per Gemma generation, binding, the forward pass;
//! - the engine ([`load`], [`session`], [`generate`], [`export`], [`synth`], [`memory`],
//!   [`trace`], [`progress`]): opening and running a model as a library call;
//! - [`cli`]: the command line.

pub use frugal_cli as cli;
pub use frugal_engine::{export, generate, load, memory, progress, session, synth, trace};
pub use frugal_formats as checkpoint;
pub use frugal_kernels as kernels;
pub use frugal_model as model;
pub use frugal_quant as quant;
pub use frugal_tensor as tensor;
pub use frugal_tokenizer as tokenizer;
