//! The KV cache of a sequence: keys and values per layer, as f32. Global layers grow with the
//! tokens held; sliding-window layers keep a ring of the window. Memory follows the tokens
//! actually held (capacity grows by a quarter, at least 16 tokens), never beyond the context.

use crate::config::{GemmaConfig, LayerKind};

/// Tokens processed per forward chunk when prefilling: bounds the activation memory (and the
/// ring of a sliding-window layer whose cache later layers read).
pub const PREFILL_CHUNK: usize = 64;

/// Cached keys and values of one layer.
pub struct LayerCache {
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    /// Token capacity: `ctx` for global layers, `min(window, ctx)` for local ones (see
    /// `layer_caps`), 0 for a layer that reads another's cache.
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
        let layers = layer_caps(cfg, ctx)
            .into_iter()
            .enumerate()
            .map(|(l, cap)| LayerCache {
                k: Vec::new(),
                v: Vec::new(),
                cap,
                width: width(cfg, l),
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
        layer_caps(cfg, ctx)
            .iter()
            .enumerate()
            .map(|(l, &cap)| {
                let (mut have, held) = (0, tokens.min(cap));
                while have < held {
                    have = grown_capacity(have, cap);
                }
                have * width(cfg, l) * 2 * 4
            })
            .sum()
    }
}

/// The token capacity a layer's cache grows to from `held` tokens when one more arrives: steps
/// of a quarter (at least 16 tokens), so memory follows the tokens actually held.
fn grown_capacity(held: usize, cap: usize) -> usize {
    (held + 1).max(held + held / 4).max(held + 16).min(cap)
}

/// Values per token of layer `l`'s keys (and of its values).
fn width(cfg: &GemmaConfig, l: usize) -> usize {
    let s = cfg.layer(l);
    s.kv_heads * s.head_dim
}

/// Each layer's token capacity: none for a layer that attends over another's cache (KV
/// sharing); a sliding window's ring, a prefill chunk longer when later layers read it (they
/// attend after the whole chunk is stored, so the ring must still hold the window before the
/// chunk's first token); else the context.
fn layer_caps(cfg: &GemmaConfig, ctx: usize) -> Vec<usize> {
    (0..cfg.num_layers)
        .map(|l| {
            if cfg.layer(l).kv_layer != l {
                return 0;
            }
            match cfg.layer_kinds[l] {
                LayerKind::Global => ctx,
                LayerKind::Local => {
                    let w = cfg.sliding_window.unwrap_or(ctx);
                    let extra = if cfg.shares_cache(l) {
                        PREFILL_CHUNK
                    } else {
                        0
                    };
                    (w + extra).min(ctx)
                }
            }
        })
        .collect()
}
