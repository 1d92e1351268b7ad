//! Every file type llama-quantize writes for a Gemma model, on the trained tiny model
//! (`scripts/make_peer_fixtures.py`: llama-imatrix, llama-quantize and llama-simple's greedy
//! text for each file). frugal reads each file in place and continues the prompt greedily as
//! llama.cpp did.
//!
//! The files (70 MB) are made on demand, not committed: CI makes them before the tests and sets
//! `FRUGAL_REQUIRE_PEER=1`, so that there the test cannot skip; elsewhere it is skipped, with a
//! message, until the script has run.

use frugal::checkpoint::StoredDType;
use frugal::load::Checkpoint;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest gap, relative to the largest |logit|, between frugal's top logit and that of the
/// token llama.cpp chose, where the two choose differently. Engines that round activations to
/// int8 in different places (llama.cpp always does, frugal keeps f32 activations for the
/// I-quants it multiplies through f32 rows) may swap near-ties; a wrong kernel moves logits by
/// far more.
const NEAR_TIE: f32 = 0.02;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("FRUGAL_PEER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peer-fixtures"));
    if dir.join("expected.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("FRUGAL_REQUIRE_PEER").is_none(),
        "FRUGAL_REQUIRE_PEER is set but {} has no expected.json: run scripts/make_peer_fixtures.py",
        dir.display()
    );
    eprintln!(
        "{}: no llama.cpp fixtures (scripts/make_peer_fixtures.py makes them): skipped",
        dir.display()
    );
    None
}

/// How one file's greedy walk went: the near-ties where frugal chose another token than
/// llama.cpp (as `(step, relative gap)`), or why it failed.
fn walk(file: &Path, prompt: &str, want: &str, n: usize) -> Result<Vec<(usize, f32)>, String> {
    let ck = Checkpoint::open(file).map_err(|e| format!("{e:#}"))?;
    let model = ck.model().map_err(|e| format!("{e:#}"))?;
    let tok = ck.tokenizer().unwrap().expect("a vocabulary");
    let mut ids = vec![tok.bos.expect("BOS")];
    ids.extend(tok.encode(prompt).unwrap());
    let text = |ids: &[u32]| tok.decode(&ids[1..]).unwrap();
    assert_eq!(text(&ids), prompt, "the prompt decodes to itself");
    let mut cache = model.new_cache(ids.len() + n);
    let mut logits = model.forward(&ids, &mut cache, false).unwrap();
    let mut ties = Vec::new();
    for step in 0..n {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let extends = |t: usize| {
            let mut next = ids.clone();
            next.push(t as u32);
            want.starts_with(&text(&next))
        };
        let best = order[0];
        let chosen = if extends(best) {
            best
        } else {
            // llama.cpp's token: the one among ours that continues its text.
            let Some(&theirs) = order[1..8].iter().find(|&&t| extends(t)) else {
                return Err(format!(
                    "step {step}: llama.cpp's text {:?} continues with none of frugal's top 8 \
                     after {:?}",
                    &want[text(&ids).len().min(want.len())..],
                    text(&ids)
                ));
            };
            let max = logits.iter().fold(0f32, |m, x| m.max(x.abs()));
            let gap = (logits[best] - logits[theirs]) / max;
            if gap > NEAR_TIE {
                return Err(format!(
                    "step {step}: frugal's top token {best} leads llama.cpp's {theirs} by \
                     {gap:.3} of the largest logit (near-tie bound {NEAR_TIE})"
                ));
            }
            ties.push((step, gap));
            theirs
        };
        ids.push(chosen as u32);
        if step + 1 < n {
            logits = model.forward(&[chosen as u32], &mut cache, false).unwrap();
        }
    }
    let got = text(&ids);
    if got.trim_end() != want.trim_end() {
        return Err(format!("text {got:?}, llama.cpp {want:?}"));
    }
    Ok(ties)
}

#[test]
fn every_llama_quantize_type_continues_as_llama_cpp() {
    let Some(dir) = fixtures() else { return };
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let prompt = e["prompt"].as_str().unwrap();
    let n = e["n_tokens"].as_u64().unwrap() as usize;
    let mut report = format!("llama.cpp: {}\n", e["llama.cpp"]);
    let mut failed = false;
    for (ty, v) in e["types"].as_object().unwrap() {
        let file = dir.join(v["file"].as_str().unwrap());
        // The block types the file holds (llama-quantize mixes several per file type).
        let ck = Checkpoint::open(&file).unwrap();
        let mut types = BTreeMap::<String, usize>::new();
        for t in ck.index.tensors.values() {
            let name = match &t.dtype {
                StoredDType::Known(d) => d.name().to_uppercase(),
                StoredDType::Other(s) => s.clone(),
            };
            *types.entry(name).or_default() += 1;
        }
        drop(ck);
        let line = match walk(&file, prompt, v["text"].as_str().unwrap(), n) {
            Ok(t) if t.is_empty() => "identical".to_string(),
            Ok(t) => format!("same text through {} near-ties {t:?}", t.len()),
            Err(e) => {
                failed = true;
                format!("FAILED: {e}")
            }
        };
        report += &format!("{ty:10} {types:?}: {line}\n");
    }
    eprintln!("{report}");
    assert!(!failed, "{report}");
}
