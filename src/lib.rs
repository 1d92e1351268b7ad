//! frugal: run Google's Gemma language models on a CPU in the least memory possible.
//!
//! Data flows one way: checkpoint formats ([`checkpoint`]) -> load plan and weights in memory
//! ([`load`]) -> model ([`model`]) -> generation ([`generate`]) -> command line ([`cli`]).
//! Weights stored in a dtype the [`kernels`] can read are used in place from the memory map;
//! [`quant`] holds the GGUF-compatible block formats the kernels also multiply in place;
//! [`export`] writes checkpoints for other runtimes (GGUF for llama.cpp).

pub mod chart;
pub mod checkpoint;
pub mod cli;
pub mod export;
pub mod generate;
pub mod load;
pub mod memory;
pub mod model;
pub mod output;
pub mod progress;
pub mod synth;
pub mod tiny;
pub mod tokenizer;
pub mod trace;

pub use frugal_kernels as kernels;
pub use frugal_quant as quant;
pub use frugal_tensor as tensor;
