//! The forward pass against transformers' float32 logits and greedy continuations, on the tiny
//! checkpoints that `scripts/make_fixtures.py` made and committed under tests/fixtures/models.

mod common;

use common::{reference, rel_err};
use frugal::generate::greedy_continuation;
use frugal::load::Checkpoint;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures folder")
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(
        v.len() >= 7,
        "expected the committed fixtures under {}",
        root.display()
    );
    v
}

#[test]
fn logits_match_transformers() {
    for dir in fixtures() {
        let r = reference(&dir);
        let ck = Checkpoint::open(&dir).unwrap();
        let model = ck.model().unwrap();
        assert_eq!(model.cfg.vocab_size, r.shape[1]);
        // All at once, and token by token through the cache: both must match.
        let mut cache = model.new_cache(r.tokens.len());
        let all = model.forward(&r.tokens, &mut cache, true).unwrap();
        let e = rel_err(&all, &r.logits);
        assert!(
            e <= 1e-4,
            "{}: batched logits differ from transformers by {e:e} (relative)",
            dir.display()
        );
        let mut cache = model.new_cache(r.tokens.len());
        let mut stepped = Vec::new();
        for t in &r.tokens {
            stepped.extend(model.forward(&[*t], &mut cache, false).unwrap());
        }
        let e = rel_err(&stepped, &r.logits);
        assert!(
            e <= 1e-4,
            "{}: step-by-step logits differ from transformers by {e:e} (relative)",
            dir.display()
        );
    }
}

#[test]
fn greedy_matches_transformers() {
    for dir in fixtures() {
        let r = reference(&dir);
        let ck = Checkpoint::open(&dir).unwrap();
        let model = ck.model().unwrap();
        let got = greedy_continuation(&model, &r.prompt, r.greedy.len()).unwrap();
        assert_eq!(
            got,
            r.greedy,
            "{}: greedy continuation differs",
            dir.display()
        );
    }
}
