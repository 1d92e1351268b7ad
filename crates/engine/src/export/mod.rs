//! Writing a checkpoint frugal reads in another format, streamed from the source's map with
//! memory bounded to one chunk: GGUF for llama.cpp ([`gguf`]), a Hugging Face safetensors
//! folder for transformers ([`hf`]).

pub mod gguf;
pub mod hf;
pub mod hf_tokenizer;
