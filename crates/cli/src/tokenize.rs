//! `frugal tokenize`: the token ids (and pieces) the model's tokenizer gives for a text.

use anyhow::{Context, Result};
use clap::Args;
use frugal_engine::load::Checkpoint;
use frugal_tokenizer::GemmaTokenizer;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// A model folder (tokenizer.json or tokenizer.model), or a GGUF file (its vocabulary).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Text to tokenize.
    #[arg(long)]
    pub text: String,
    /// Put the BOS id first.
    #[arg(long)]
    pub bos: bool,
    /// Print JSON: {"ids": [...], "pieces": [...]}.
    #[arg(long)]
    pub json: bool,
}

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    if frugal_formats::gguf::is_gguf(&a.model) {
        let ck = Checkpoint::open(&a.model)?;
        let tok = ck
            .tokenizer()?
            .with_context(|| format!("{}: the file holds no vocabulary", a.model.display()))?;
        return print_tokens(&tok, &a);
    }
    let dir = if a.model.is_file() {
        a.model
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    } else {
        a.model.clone()
    };
    let path = GemmaTokenizer::find(&dir).with_context(|| {
        format!(
            "{}: no tokenizer.json or tokenizer.model in this folder",
            dir.display()
        )
    })?;
    let tok = GemmaTokenizer::from_file(&path)?;
    print_tokens(&tok, &a)
}

fn print_tokens(tok: &GemmaTokenizer, a: &TokenizeArgs) -> Result<()> {
    let mut ids = Vec::new();
    if a.bos {
        ids.push(tok.bos.context("this tokenizer has no <bos> token")?);
    }
    ids.extend(tok.encode(&a.text)?);
    let pieces = tok.pieces(&ids);
    if a.json {
        println!("{}", serde_json::json!({ "ids": ids, "pieces": pieces }));
    } else {
        for (i, p) in ids.iter().zip(&pieces) {
            println!("{i}\t{p:?}");
        }
    }
    Ok(())
}
