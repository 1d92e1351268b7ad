//! The forward pass against transformers' float32 logits and greedy continuations, on the tiny
//! checkpoints that `scripts/make_fixtures.py` made and committed under tests/fixtures/models.

use crate::common::{reference, rel_err};
use frugal::generate::greedy_continuation;
use frugal::load::Checkpoint;
use std::path::{Path, PathBuf};

/// The Gemma 1-3 fixtures (Gemma 4's, made by scripts/make_gemma4_fixtures.py, have no
/// tokenizer and their own module, `gemma4`).
fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures folder")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("gemma4")
        })
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

/// The default fast path of the CLI (bf16 weights times bf16-rounded activations, prefill and
/// decode) stays close to transformers' float32 logits and picks the same tokens.
#[test]
fn fast_bf16_path_stays_close() {
    for dir in fixtures() {
        let r = reference(&dir);
        let ck = Checkpoint::open(&dir).unwrap();
        let mut model = ck.model().unwrap();
        model.fast_bf16 = true;
        let mut cache = model.new_cache(r.tokens.len());
        let all = model.forward(&r.tokens, &mut cache, true).unwrap();
        let mut cache = model.new_cache(r.tokens.len());
        let mut stepped = Vec::new();
        for t in &r.tokens {
            stepped.extend(model.forward(&[*t], &mut cache, false).unwrap());
        }
        for (what, got) in [("batched", &all), ("step-by-step", &stepped)] {
            let e = rel_err(got, &r.logits);
            let v = r.shape[1];
            let argmax = |l: &[f32]| {
                l.chunks(v)
                    .map(|row| (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap())
                    .collect::<Vec<_>>()
            };
            let (a, b) = (argmax(got), argmax(&r.logits));
            let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f32 / a.len() as f32;
            eprintln!(
                "{}: fast {what}: relative error {e:e}, top-1 agreement {agree}",
                dir.display()
            );
            // f32 weights never take the bf16 path; bf16 ones may move by the activations'
            // rounding (the fixtures' large gains and biting softcaps amplify it to a few %),
            // and must still pick the same top token (kernels are checked against their scalar
            // twin exactly in the unit tests).
            let (max_e, min_agree) = if dir.to_string_lossy().contains("f32") {
                (1e-4, 1.0)
            } else {
                (0.1, 0.9)
            };
            assert!(
                e <= max_e && agree >= min_agree,
                "{}: fast {what}: relative error {e:e}, top-1 agreement {agree}",
                dir.display()
            );
        }
    }
}
