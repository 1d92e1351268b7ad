//! Writing a checkpoint frugal reads in another format, streamed from the source's map with
//! memory bounded to one chunk: GGUF for llama.cpp ([`gguf`]). (The Hugging Face safetensors
//! output is `checkpoint::safetensors::write_shards`, driven by `frugal convert`.)

pub mod gguf;
