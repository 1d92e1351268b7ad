//! Which block dtype each matrix gets for a `--quant` kind: llama.cpp's `llama_tensor_get_type`
//! (src/llama-quant.cpp) for the file type the kind names, as data ([`MIXES`]) and one function
//! ([`QuantKind::choose`]), decided from names and shapes alone so the plan knows every
//! matrix's dtype and bytes before any data is read.
//!
//! The rules, as llama.cpp applies them to a Gemma model (no experts, not Falcon, not 70B, no
//! importance matrix, no overrides):
//! - the output projection, or the token embedding when it is the output (tied), is Q8_0 where
//!   its rows are not whole blocks of the mix's base type, else Q6_K (Q8_0 stays Q8_0);
//! - `attn_v` (and a fused qkv, which llama.cpp treats as `attn_v`) and `ffn_down` take the
//!   mix's `more_bits` type in the layers `use_more_bits` picks: the first and last eighths and
//!   every third layer between; the `attn_v` index counts `attn_v` tensors, the `ffn_down` one
//!   counts `ffn_down` tensors against the number of layers, both in llama.cpp's order (by
//!   layer);
//! - everything else is the base type;
//! - then the fallback where a row is not a multiple of the type's block (`tensor_type_fallback`):
//!   Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; where even that does not divide the row,
//!   llama.cpp writes F16 and frugal leaves the matrix as stored.
//!
//! The pure kinds (`q4`, `q4k`) are `llama-quantize --pure`: the base type everywhere but for
//! the fallback.

use frugal_model::tensors::{key, Role};
use frugal_tensor::DType;

/// What `--quant` asks for: a llama.cpp file type, each matrix's dtype chosen as
/// `llama-quantize` chooses it ([`MIXES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum QuantKind {
    /// Q8_0 everywhere (`llama-quantize Q8_0`).
    Q8,
    /// Q4_0 everywhere (`llama-quantize --pure Q4_0`).
    Q4,
    /// Q4_K everywhere, Q5_0 where a row is not a multiple of 256 (`llama-quantize --pure
    /// Q4_K_S`).
    Q4k,
    /// llama.cpp's Q4_K_M mix (`llama-quantize Q4_K_M`).
    Q4km,
    /// llama.cpp's Q5_K_M mix (`llama-quantize Q5_K_M`).
    Q5km,
    /// llama.cpp's Q6_K file type (`llama-quantize Q6_K`).
    Q6k,
}

/// One llama.cpp file type as `llama_tensor_get_type` treats a Gemma model.
#[derive(Debug)]
pub struct Mix {
    pub kind: QuantKind,
    /// The name on the command line.
    pub name: &'static str,
    /// llama.cpp's `llama_ftype`, written as `general.file_type`.
    pub file_type: u32,
    /// `llama_ftype_get_default_type`: every matrix no rule picks.
    pub base: DType,
    /// `llama-quantize --pure`: no rule but the fallback.
    pub pure: bool,
    /// The type of `attn_v` and `ffn_down` in the layers `use_more_bits` picks.
    pub more_bits: Option<DType>,
}

/// Every kind, in the order the command line lists them.
pub const MIXES: [Mix; 6] = [
    Mix {
        kind: QuantKind::Q8,
        name: "q8",
        file_type: 7,
        base: DType::Q8_0,
        pure: false,
        more_bits: None,
    },
    Mix {
        kind: QuantKind::Q4,
        name: "q4",
        file_type: 2,
        base: DType::Q4_0,
        pure: true,
        more_bits: None,
    },
    Mix {
        kind: QuantKind::Q4k,
        name: "q4k",
        file_type: 14,
        base: DType::Q4_K,
        pure: true,
        more_bits: None,
    },
    Mix {
        kind: QuantKind::Q4km,
        name: "q4km",
        file_type: 15,
        base: DType::Q4_K,
        pure: false,
        more_bits: Some(DType::Q6_K),
    },
    Mix {
        kind: QuantKind::Q5km,
        name: "q5km",
        file_type: 17,
        base: DType::Q5_K,
        pure: false,
        more_bits: Some(DType::Q6_K),
    },
    Mix {
        kind: QuantKind::Q6k,
        name: "q6k",
        file_type: 18,
        base: DType::Q6_K,
        pure: false,
        more_bits: None,
    },
];

/// llama.cpp's `tensor_type_fallback` for the 256-element types the mixes use: the 32-element
/// type taken where a row is not a multiple of 256.
const FALLBACK: [(DType, DType); 3] = [
    (DType::Q4_K, DType::Q5_0),
    (DType::Q5_K, DType::Q5_1),
    (DType::Q6_K, DType::Q8_0),
];

/// A matrix as the rules see it: its table keys (several for a fused tensor), its role and the
/// length of its rows (GGUF's `ne[0]`).
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub keys: &'a [&'static str],
    pub role: Role,
    pub cols: usize,
}

/// llama.cpp's tensor categories that the mixes treat apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    FfnDown,
    Other,
}

fn category(m: &Matrix) -> Category {
    if m.role == Role::Output {
        Category::Output
    } else if m.keys.contains(&key::EMBED) {
        Category::TokenEmbd
    } else if m.keys.contains(&key::ATTN_V) {
        // A fused qkv: llama.cpp's ATTENTION_QKV, which its rules treat as attn_v.
        Category::AttnV
    } else if m.keys == [key::FFN_DOWN] {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighths of `n`, and every third between.
fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// `t`, or its fallback where `cols` is not a multiple of its block; `None` where neither fits
/// (llama.cpp writes F16 there).
fn fallback(t: DType, cols: usize) -> Option<DType> {
    if cols.is_multiple_of(t.block_len()) {
        return Some(t);
    }
    let f = FALLBACK
        .iter()
        .find(|(from, _)| *from == t)
        .map_or(t, |&(_, to)| to);
    cols.is_multiple_of(f.block_len()).then_some(f)
}

impl QuantKind {
    /// Every kind, in the order the command line lists them.
    pub const ALL: [QuantKind; 6] = [
        QuantKind::Q8,
        QuantKind::Q4,
        QuantKind::Q4k,
        QuantKind::Q4km,
        QuantKind::Q5km,
        QuantKind::Q6k,
    ];

    /// Its row of [`MIXES`].
    pub fn mix(self) -> &'static Mix {
        MIXES
            .iter()
            .find(|m| m.kind == self)
            .expect("every kind has a row")
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        self.mix().name
    }

    /// llama.cpp's `general.file_type` of a file of this kind.
    pub fn file_type(self) -> u32 {
        self.mix().file_type
    }

    /// The block dtype of each of a model's matrices (`mats`: every matrix of the model, in
    /// any order, `layers` decoder layers), as `llama-quantize` chooses it for this file type;
    /// `None` leaves a matrix as stored (rows not a multiple of 32). Plain GGUF block dtypes:
    /// the loader may hold Q4_0 and Q8_0 in their x4 layouts.
    pub fn choose(self, mats: &[Matrix], layers: usize) -> Vec<Option<DType>> {
        let mix = self.mix();
        let tied = !mats.iter().any(|m| m.role == Role::Output);
        // llama.cpp counts attn_v and ffn_down tensors in the order it visits them: by layer.
        let rank = |cat: Category| -> Vec<Option<usize>> {
            let mut idx: Vec<usize> = (0..mats.len())
                .filter(|&i| category(&mats[i]) == cat)
                .collect();
            idx.sort_by_key(|&i| match mats[i].role {
                Role::Layer(l) => l,
                _ => usize::MAX,
            });
            let mut r = vec![None; mats.len()];
            for (k, i) in idx.into_iter().enumerate() {
                r[i] = Some(k);
            }
            r
        };
        let (v_rank, down_rank) = (rank(Category::AttnV), rank(Category::FfnDown));
        let n_v = v_rank.iter().flatten().count();
        mats.iter()
            .enumerate()
            .map(|(i, m)| {
                let mut t = mix.base;
                if !mix.pure {
                    match category(m) {
                        Category::Output | Category::TokenEmbd
                            if tied || category(m) == Category::Output =>
                        {
                            t = if !m.cols.is_multiple_of(mix.base.block_len()) {
                                DType::Q8_0
                            } else if mix.base != DType::Q8_0 {
                                DType::Q6_K
                            } else {
                                mix.base
                            };
                        }
                        Category::AttnV => {
                            if let (Some(more), Some(k)) = (mix.more_bits, v_rank[i]) {
                                if use_more_bits(k, n_v) {
                                    t = more;
                                }
                            }
                        }
                        Category::FfnDown => {
                            if let (Some(more), Some(k)) = (mix.more_bits, down_rank[i]) {
                                if use_more_bits(k, layers) {
                                    t = more;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                fallback(t, m.cols)
            })
            .collect()
    }
}

impl std::str::FromStr for QuantKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        QuantKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = MIXES.iter().map(|m| m.name).collect();
                anyhow::anyhow!("`{s}` is not one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_more_bits_as_llama_cpp() {
        // n = 4: 4/8 = 0, 7*4/8 = 3: layers 2 ((2-0)%3 == 2) and 3.
        let picked = |n| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        assert_eq!(picked(4), [2, 3]);
        // n = 26 (gemma3-1b): 26/8 = 3, 7*26/8 = 22.
        assert_eq!(picked(26), [0, 1, 2, 5, 8, 11, 14, 17, 20, 22, 23, 24, 25]);
    }

    #[test]
    fn fallbacks() {
        assert_eq!(fallback(DType::Q4_K, 1152), Some(DType::Q5_0));
        assert_eq!(fallback(DType::Q5_K, 640), Some(DType::Q5_1));
        assert_eq!(fallback(DType::Q6_K, 1152), Some(DType::Q8_0));
        assert_eq!(fallback(DType::Q6_K, 2048), Some(DType::Q6_K));
        assert_eq!(fallback(DType::Q4_K, 48), None);
        assert_eq!(fallback(DType::Q8_0, 48), None);
        assert_eq!(fallback(DType::Q4_0, 64), Some(DType::Q4_0));
    }

    /// The published Gemma 3 270M Q4_K_M file (hidden 640, 18 layers, tied): its types, as its
    /// header lists them, follow from the rules (640 is not a multiple of 256: Q5_0 and Q8_0
    /// by the fallbacks, the tied embedding Q8_0).
    #[test]
    fn published_gemma3_270m_q4_k_m() {
        let layer_keys = [
            (key::ATTN_Q, 640),
            (key::ATTN_K, 640),
            (key::ATTN_V, 640),
            (key::ATTN_OUT, 1024),
            (key::FFN_GATE, 640),
            (key::FFN_UP, 640),
            (key::FFN_DOWN, 2048),
        ];
        let keys: Vec<[&'static str; 1]> = layer_keys.iter().map(|(k, _)| [*k]).collect();
        let embd = [key::EMBED];
        let mut mats = vec![Matrix {
            keys: &embd,
            role: Role::Embedding,
            cols: 640,
        }];
        for l in 0..18 {
            for (k, (_, cols)) in keys.iter().zip(layer_keys) {
                mats.push(Matrix {
                    keys: k,
                    role: Role::Layer(l),
                    cols,
                });
            }
        }
        let got = QuantKind::Q4km.choose(&mats, 18);
        assert_eq!(got[0], Some(DType::Q8_0));
        let more = [0, 1, 4, 7, 10, 13, 15, 16, 17];
        for l in 0..18 {
            let t = &got[1 + 7 * l..1 + 7 * (l + 1)];
            let (v, down) = if more.contains(&l) {
                (DType::Q8_0, DType::Q6_K)
            } else {
                (DType::Q5_0, DType::Q4_K)
            };
            let want = [
                DType::Q5_0,
                DType::Q5_0,
                v,
                DType::Q4_K,
                DType::Q5_0,
                DType::Q5_0,
                down,
            ];
            assert_eq!(t, want.map(Some), "layer {l}");
        }
    }

    #[test]
    fn names_round_trip() {
        for k in QuantKind::ALL {
            assert_eq!(k.name().parse::<QuantKind>().unwrap(), k);
        }
        let e = "q3".parse::<QuantKind>().unwrap_err().to_string();
        assert!(e.contains("q4km"), "{e}");
    }
}
