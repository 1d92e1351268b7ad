//! The tiny trained model (`assets/tiny`, made by `scripts/train_tiny.py`: a 4M-parameter
//! Gemma trained on CPython's standard library), embedded in the binary so that `frugal demo`
//! works from any install with no download and no repository. It is written once to
//! `load::cache_dir()/tiny-<hash>/` (the hash of the embedded bytes, so a new build with a
//! retrained model writes a new folder) and then used in place from the map like any model.
//!
//! Only the SentencePiece `tokenizer.model` is embedded, not `tokenizer.json`: frugal's own
//! reader keeps less memory for it.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The embedded files: (name, bytes).
pub const FILES: [(&str, &[u8]); 3] = [
    (
        "config.json",
        include_bytes!("../../../assets/tiny/config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../../../assets/tiny/model.safetensors"),
    ),
    (
        "tokenizer.model",
        include_bytes!("../../../assets/tiny/tokenizer.model"),
    ),
];

/// FNV-1a of the embedded files' names, lengths and first and last 64 KiB (any retrained
/// model differs there). Not the whole: reading 8 MB of the binary would make it resident on
/// every run.
fn hash() -> u64 {
    const EDGE: usize = 64 << 10;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in FILES {
        let head = &bytes[..bytes.len().min(EDGE)];
        let tail = &bytes[bytes.len().saturating_sub(EDGE)..];
        let len = (bytes.len() as u64).to_le_bytes();
        for &b in name.as_bytes().iter().chain(&len).chain(head).chain(tail) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The folder of the tiny model in frugal's cache, written from the binary on first use.
pub fn model_dir() -> Result<PathBuf> {
    model_dir_in(&frugal_engine::load::cache_dir())
}

/// The folder of the tiny model under `cache`, written on first use.
pub fn model_dir_in(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join(format!("tiny-{:016x}", hash()));
    let complete = FILES.iter().all(|(name, bytes)| {
        std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
    });
    if !complete {
        frugal_formats::output::atomic_dir(&dir, true, |tmp| {
            for (name, bytes) in FILES {
                let p = tmp.join(name);
                std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(())
        })
        .with_context(|| format!("writing the tiny model to {}", dir.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_once_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let d = super::model_dir_in(tmp.path()).unwrap();
        let ck = frugal_engine::load::Checkpoint::open(&d).unwrap();
        assert_eq!(ck.cfg.vocab_size, 4096);
        assert!(ck.tokenizer_path().unwrap().ends_with("tokenizer.model"));
        assert_eq!(super::model_dir_in(tmp.path()).unwrap(), d);
    }
}
