//! The KV cache of a sequence: keys and values per layer, as f32. Global layers grow with the
//! tokens held; sliding-window layers keep a ring of the window. Memory follows the tokens
//! actually held (capacity grows by a quarter, at least 16 tokens), never beyond the context.

use crate::config::{GemmaConfig, LayerKind};

/// Cached keys and values of one layer.
pub struct LayerCache {
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    /// Token capacity: `ctx` for global layers, `min(window, ctx)` for local ones.
    pub(crate) cap: usize,
    /// Values per token (`kv_heads * head_dim`).
    pub(crate) width: usize,
}

impl LayerCache {
    /// The ring slot of position `pos`.
    fn slot(&self, pos: usize) -> usize {
        pos % self.cap
    }

    /// Appends the keys and values of `n` tokens at positions `p0..p0 + n`. Every token is
    /// written in order, so the ring fills sequentially and then wraps.
    pub(crate) fn store(&mut self, k: &[f32], v: &[f32], p0: usize, n: usize) {
        let width = self.width;
        for t in 0..n {
            let slot = self.slot(p0 + t);
            let held = self.k.len() / width;
            if slot == held {
                // Growing: reserve in steps so memory follows the tokens actually held.
                if self.k.capacity() < (held + 1) * width {
                    let want = grown_capacity(held, self.cap);
                    self.k.reserve_exact(want * width - self.k.len());
                    self.v.reserve_exact(want * width - self.v.len());
                }
                self.k.extend_from_slice(&k[t * width..(t + 1) * width]);
                self.v.extend_from_slice(&v[t * width..(t + 1) * width]);
            } else {
                self.k[slot * width..(slot + 1) * width]
                    .copy_from_slice(&k[t * width..(t + 1) * width]);
                self.v[slot * width..(slot + 1) * width]
                    .copy_from_slice(&v[t * width..(t + 1) * width]);
            }
        }
    }
}

/// The KV cache of a sequence. Memory grows with the tokens actually held, never beyond `ctx`.
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    /// Tokens processed so far (the next position).
    pub pos: usize,
    /// The context limit.
    pub ctx: usize,
}

impl KvCache {
    /// An empty cache of `cfg` for up to `ctx` tokens; nothing is allocated until tokens arrive.
    pub fn new(cfg: &GemmaConfig, ctx: usize) -> KvCache {
        let width = cfg.num_kv_heads * cfg.head_dim;
        let layers = layer_caps(cfg, ctx)
            .into_iter()
            .map(|cap| LayerCache {
                k: Vec::new(),
                v: Vec::new(),
                cap,
                width,
            })
            .collect();
        KvCache {
            layers,
            pos: 0,
            ctx,
        }
    }

    /// Bytes currently allocated.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.capacity() + l.v.capacity()) * 4)
            .sum()
    }

    /// The bytes this cache holds after `tokens` tokens with a context of `ctx`: each layer's
    /// capacity follows the cache's growth steps (a quarter, at least 16 tokens), so it can
    /// exceed the tokens held (by at most a quarter) but never its layer's cap.
    pub fn bytes_after(cfg: &GemmaConfig, ctx: usize, tokens: usize) -> usize {
        let width = cfg.num_kv_heads * cfg.head_dim;
        layer_caps(cfg, ctx)
            .iter()
            .map(|&cap| {
                let (mut have, held) = (0, tokens.min(cap));
                while have < held {
                    have = grown_capacity(have, cap);
                }
                have * width * 2 * 4
            })
            .sum()
    }
}

/// The token capacity a layer's cache grows to from `held` tokens when one more arrives: steps
/// of a quarter (at least 16 tokens), so memory follows the tokens actually held.
fn grown_capacity(held: usize, cap: usize) -> usize {
    (held + 1).max(held + held / 4).max(held + 16).min(cap)
}

fn layer_caps(cfg: &GemmaConfig, ctx: usize) -> Vec<usize> {
    cfg.layer_kinds
        .iter()
        .map(|k| match k {
            LayerKind::Global => ctx,
            LayerKind::Local => cfg.sliding_window.unwrap_or(ctx).min(ctx),
        })
        .collect()
}
