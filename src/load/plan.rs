//! The memory plan: what a run will keep resident, predicted from headers alone.

use crate::checkpoint::TensorIndex;
use crate::model::config::GemmaConfig;
use crate::model::gemma::{KvCache, PREFILL_CHUNK};

/// Predicted resident memory of a run, by component.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryPlan {
    /// Weight bytes used in place from the map (file-backed, reclaimable by the kernel).
    pub mapped_weight_bytes: u64,
    /// Weight bytes copied into anonymous memory (norm vectors as f32).
    pub owned_weight_bytes: u64,
    /// KV cache at the full context.
    pub kv_cache_bytes: u64,
    /// Activations and scratch of one prefill chunk, plus the logits.
    pub activation_bytes: u64,
    /// Predicted peak RSS: weights + KV cache + activations + runtime.
    pub peak_rss_bytes: u64,
    /// Predicted peak anonymous memory: everything but the mapped weights.
    pub peak_anon_bytes: u64,
}

/// Bytes the runtime itself needs (code, tokenizer, thread stacks, allocator slack): a stated
/// constant checked against measurements.
pub const RUNTIME_BYTES: u64 = 24 << 20;

/// Predicts the memory of running `cfg` from `index` with a context of `ctx` tokens.
pub fn plan(cfg: &GemmaConfig, index: &TensorIndex, ctx: usize) -> MemoryPlan {
    let total = index.total_bytes();
    let h = cfg.hidden_size as u64;
    let norms = (cfg.num_layers as u64 * 4 + 1) * h * 4
        + cfg.num_layers as u64 * 2 * cfg.head_dim as u64 * 4;
    let kv = KvCache::max_bytes(cfg, ctx) as u64;
    let chunk = PREFILL_CHUNK.min(ctx.max(1)) as u64;
    let qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) as u64 * cfg.head_dim as u64;
    let acts = chunk * 4 * (3 * h + 2 * qkv + 2 * cfg.intermediate_size as u64)
        + cfg.vocab_size as u64 * 4 * 2;
    let anon = norms + kv + acts + RUNTIME_BYTES;
    MemoryPlan {
        mapped_weight_bytes: total,
        owned_weight_bytes: norms,
        kv_cache_bytes: kv,
        activation_bytes: acts,
        peak_rss_bytes: total + anon,
        peak_anon_bytes: anon,
    }
}
