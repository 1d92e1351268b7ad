//! The forward pass against transformers' float32 logits and greedy continuations, on the tiny
//! checkpoints that `scripts/make_fixtures.py` made and committed under tests/fixtures/models.

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

struct Reference {
    tokens: Vec<u32>,
    shape: [usize; 2],
    logits: Vec<f32>,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
}

fn reference(dir: &Path) -> Reference {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let ids = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect::<Vec<_>>()
    };
    let shape = v["logits_shape"].as_array().unwrap();
    let shape = [
        shape[0].as_u64().unwrap() as usize,
        shape[1].as_u64().unwrap() as usize,
    ];
    let raw = std::fs::read(dir.join("logits.f32")).unwrap();
    let logits: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(logits.len(), shape[0] * shape[1]);
    Reference {
        tokens: ids("tokens"),
        shape,
        logits,
        prompt: ids("prompt"),
        greedy: ids("greedy"),
    }
}

/// max |ours - ref| / max |ref|.
fn rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    let max_ref = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let max_diff = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    max_diff / max_ref
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
