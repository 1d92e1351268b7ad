//! The integration tests, one binary (one link) with a module per area. Fixtures are made by
//! the scripts named in each module, from reference implementations (transformers,
//! sentencepiece, gguf-py, llama.cpp); see tests/fixtures/README.md.

mod arrows;
mod bad_input;
mod budget;
mod cli;
mod common;
mod convert_gguf;
mod convert_tokenizer;
mod gemma4;
mod gemma4_tokenizer;
mod gguf_export;
mod gguf_read;
mod mix;
mod peer_types;
mod perplexity;
mod plan;
mod pytorch;
mod quant;
mod quantize_load;
mod reference;
mod tokenizer;
