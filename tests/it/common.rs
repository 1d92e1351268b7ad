//! Shared by the integration tests: the transformers reference of a committed fixture and the
//! error measure the tests hold our logits to.
#![allow(dead_code)]

use std::path::Path;

/// What scripts/make_fixtures.py recorded for one tiny model.
pub struct Reference {
    pub tokens: Vec<u32>,
    pub shape: [usize; 2],
    pub logits: Vec<f32>,
    pub prompt: Vec<u32>,
    pub greedy: Vec<u32>,
}

/// The reference of the fixture folder `dir`.
pub fn reference(dir: &Path) -> Reference {
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
pub fn rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    let max_ref = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let max_diff = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    max_diff / max_ref
}

/// The fixture folder `tests/fixtures/models/<name>`.
pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// A copy of the fixture folder `name` under `tmp` with the bundled tokenizer.model beside it
/// (GGUF carries the SentencePiece vocabulary), as `scripts/check_gguf_export.py` prepares it.
pub fn fixture_with_spm(tmp: &Path, name: &str) -> std::path::PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tokenizer/tokenizer.model"),
        dir.join("tokenizer.model"),
    )
    .unwrap();
    dir
}

/// One case of `tests/fixtures/tokenizer/cases.json` (scripts/make_fixtures.py): a text with
/// the ids and decoding of the `tokenizers` reference and of the sentencepiece library.
pub struct TokenizerCase {
    pub text: String,
    pub ids: Vec<u32>,
    pub decoded: String,
    pub sp_ids: Vec<u32>,
    pub sp_decoded: String,
}

/// Every case of `tests/fixtures/tokenizer/cases.json`.
pub fn tokenizer_cases() -> Vec<TokenizerCase> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/cases.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| TokenizerCase {
            text: text(&c["text"]),
            ids: ids(&c["ids"]),
            decoded: text(&c["decoded"]),
            sp_ids: ids(&c["sp_ids"]),
            sp_decoded: text(&c["sp_decoded"]),
        })
        .collect()
}

/// The logits of `frugal logits --json` output (`{"logits": [[...], ...]}`), positions in order.
pub fn json_logits(out: &str) -> Vec<f32> {
    let v: serde_json::Value = serde_json::from_str(out).unwrap();
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}
