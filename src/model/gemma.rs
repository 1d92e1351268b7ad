//! The Gemma 1, 2 and 3 text forward pass and its KV cache. Every constant comes from the
//! [`GemmaConfig`]; matrices are read in their stored dtype by [`crate::kernels`].

use super::config::{GemmaConfig, LayerKind};
use super::weights::Weights;
use crate::kernels::{self, ops};
use anyhow::{bail, Result};
use rayon::prelude::*;

/// Tokens processed per forward chunk when prefilling: bounds the activation memory.
pub const PREFILL_CHUNK: usize = 64;

/// Cached keys and values of one layer. Global layers grow with the tokens held; local layers
/// keep a ring of at most `sliding_window` tokens.
struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
    /// Token capacity: `ctx` for global layers, `min(window, ctx)` for local ones.
    cap: usize,
}

/// The KV cache of a sequence. Memory grows with the tokens actually held, never beyond `ctx`.
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// Values per token per layer (`num_kv_heads * head_dim`).
    width: usize,
    /// Tokens processed so far (the next position).
    pub pos: usize,
    /// The context limit.
    pub ctx: usize,
}

impl KvCache {
    /// Bytes currently allocated.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.capacity() + l.v.capacity()) * 4)
            .sum()
    }

    /// The most bytes this cache can grow to with `ctx` tokens.
    pub fn max_bytes(cfg: &GemmaConfig, ctx: usize) -> usize {
        let width = cfg.num_kv_heads * cfg.head_dim;
        layer_caps(cfg, ctx).iter().map(|c| c * width * 2 * 4).sum()
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

    fn slot(&self, layer: usize, pos: usize) -> usize {
        pos % self.layers[layer].cap
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

/// Moves weight bytes in and out of memory when the weights are streamed from disk because
/// they do not all fit in the memory budget (implemented by `load::stream`).
pub trait Pager: Sync {
    /// `bytes` (weights borrowed from a map) will be read soon: start reading them in.
    fn prefetch(&self, bytes: &[u8]);
    /// `bytes` were read and are not needed again soon: drop them from memory.
    fn evict(&self, bytes: &[u8]);
}

/// How a model's weights are streamed: which layers stay resident, and how the rest and the
/// output projection move through memory.
pub struct Streaming<'a> {
    pub pager: &'a dyn Pager,
    /// `pinned[l]`: layer `l` stays resident once read; the others are read before use and
    /// dropped after it, the next one read ahead while the current one computes.
    pub pinned: Vec<bool>,
    /// Bytes of the output projection multiplied per step (it is streamed in row chunks).
    pub output_step_bytes: usize,
}

/// A Gemma model bound to its weights.
pub struct Gemma<'a> {
    pub cfg: GemmaConfig,
    pub w: Weights<'a>,
    /// Rotary inverse frequencies per layer, already divided by the linear scaling factor.
    inv_freq: Vec<Vec<f32>>,
    /// bf16 weights are multiplied with [`kernels::matmul_bf16_fast`], prefill and decode:
    /// activations rounded to bf16 (AVX512_BF16 dot products, as llama.cpp does), 1.2-1.5x
    /// faster, no longer bit-exact f32 products. Default `false` (exact).
    pub fast_bf16: bool,
    /// Set when the weights are streamed: see [`Streaming`].
    pub streaming: Option<Streaming<'a>>,
}

impl<'a> Gemma<'a> {
    /// Binds a config to its weights.
    pub fn new(cfg: GemmaConfig, w: Weights<'a>) -> Self {
        let hd = cfg.head_dim;
        let inv_freq = (0..cfg.num_layers)
            .map(|l| {
                let r = cfg.rope(l);
                (0..hd / 2)
                    .map(|k| {
                        // As the reference: theta ^ (2k / hd) in f32, then divided by the factor.
                        let f = 1.0f32 / (r.theta as f32).powf((2 * k) as f32 / hd as f32);
                        f / r.factor as f32
                    })
                    .collect()
            })
            .collect();
        Gemma {
            cfg,
            w,
            inv_freq,
            fast_bf16: false,
            streaming: None,
        }
    }

    /// An empty cache for up to `ctx` tokens; nothing is allocated until tokens arrive.
    pub fn new_cache(&self, ctx: usize) -> KvCache {
        let layers = layer_caps(&self.cfg, ctx)
            .into_iter()
            .map(|cap| LayerCache {
                k: Vec::new(),
                v: Vec::new(),
                cap,
            })
            .collect();
        KvCache {
            layers,
            width: self.cfg.num_kv_heads * self.cfg.head_dim,
            pos: 0,
            ctx,
        }
    }

    /// Runs `tokens` through the model, appending them to `cache`. Returns the logits of every
    /// position (`all = true`, `[n, vocab]`) or of the last one (`[vocab]`).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, all: bool) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.forward_chunks(tokens, cache, all, |_, logits| {
            out.extend_from_slice(logits);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Gemma::forward`] handing the logits to `on_logits` one prefill chunk (at most
    /// [`PREFILL_CHUNK`] rows) at a time, with the index in `tokens` of the chunk's first row,
    /// so that no more than a chunk's logits are ever held (`all = true`: every row of every
    /// chunk; `all = false`: only the last row, once).
    pub fn forward_chunks(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
        mut on_logits: impl FnMut(usize, &[f32]) -> Result<()> + Send,
    ) -> Result<()> {
        if tokens.is_empty() {
            bail!("no tokens to process: the prompt is empty");
        }
        let vocab = self.cfg.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            bail!(
                "token id {bad} is out of range: the model's vocabulary has {vocab} ids (0..{})",
                vocab - 1
            );
        }
        if cache.pos + tokens.len() > cache.ctx {
            bail!(
                "the context limit is {} tokens and {} are needed: raise --ctx",
                cache.ctx,
                cache.pos + tokens.len()
            );
        }
        // The whole pass runs on a worker of the thread pool, so each of its ~10 parallel steps
        // per layer starts on a running thread instead of waking one from outside the pool.
        rayon::scope(|_| {
            let chunks: Vec<&[u32]> = tokens.chunks(PREFILL_CHUNK).collect();
            for (ci, chunk) in chunks.iter().enumerate() {
                let last = ci + 1 == chunks.len();
                let logits = self.forward_chunk(chunk, cache, all, last)?;
                if !logits.is_empty() {
                    let first = if all {
                        ci * PREFILL_CHUNK
                    } else {
                        tokens.len() - 1
                    };
                    on_logits(first, &logits)?;
                }
            }
            Ok(())
        })
    }

    fn forward_chunk(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
        last: bool,
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let n = tokens.len();
        let h = cfg.hidden_size;
        let scale = cfg.embed_scale();
        let mut x = vec![0f32; n * h];
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &mut x[t * h..(t + 1) * h];
            crate::quant::row_to_f32(&self.w.embed, tok as usize, row);
            row.iter_mut().for_each(|v| *v *= scale);
            if let Some(s) = &self.streaming {
                s.pager.evict(self.w.embed.row_span(tok as usize));
            }
        }
        let mut xn = vec![0f32; n * h];
        for l in 0..cfg.num_layers {
            if let Some(s) = &self.streaming {
                if l == 0 && !s.pinned[0] {
                    self.layer_pages(0, |b| s.pager.prefetch(b));
                }
                if l + 1 < cfg.num_layers && !s.pinned[l + 1] {
                    self.layer_pages(l + 1, |b| s.pager.prefetch(b));
                }
            }
            self.layer(l, &mut x, &mut xn, cache, n);
            if let Some(s) = &self.streaming {
                if !s.pinned[l] {
                    self.layer_pages(l, |b| s.pager.evict(b));
                }
            }
        }
        cache.pos += n;
        if !all && !last {
            return Ok(Vec::new());
        }
        // Final norm and output projection for the positions wanted.
        let rows: Vec<usize> = if all { (0..n).collect() } else { vec![n - 1] };
        let mut hsel = Vec::with_capacity(rows.len() * h);
        for &r in &rows {
            let mut v = x[r * h..(r + 1) * h].to_vec();
            ops::rms_norm(&mut v, &self.w.final_norm, cfg.rms_norm_eps);
            hsel.extend_from_slice(&v);
        }
        let out_w = self.w.output();
        let mut logits = vec![0f32; rows.len() * cfg.vocab_size];
        match &self.streaming {
            None => self.matmul(out_w, &hsel, rows.len(), &mut logits),
            Some(s) => self.output_streamed(out_w, &hsel, rows.len(), &mut logits, s),
        }
        if let Some(cap) = cfg.final_softcap {
            ops::softcap(&mut logits, cap);
        }
        Ok(logits)
    }

    /// Calls `f` on the bytes of every matrix of layer `l`.
    fn layer_pages(&self, l: usize, mut f: impl FnMut(&[u8])) {
        let lw = &self.w.layers[l];
        for m in [&lw.q, &lw.k, &lw.v, &lw.o, &lw.gate, &lw.up, &lw.down] {
            f(m.data);
            if let Some(sc) = &m.scale {
                f(sc.data);
            }
        }
    }

    /// The output projection of streamed weights, in row chunks of about
    /// `s.output_step_bytes`: each chunk is read ahead while the previous one computes and
    /// dropped once used. Same products as [`Gemma::matmul`], row by row.
    fn output_streamed(
        &self,
        w: &kernels::MatRef,
        x: &[f32],
        n: usize,
        logits: &mut [f32],
        s: &Streaming,
    ) {
        let rows = w.rows;
        let mut step = (s.output_step_bytes / w.row_stride().max(1)).clamp(1, rows.max(1));
        if w.dtype.is_x4() {
            // Whole quads of rows (`rows` is a multiple of 4).
            step = step.next_multiple_of(4);
        }
        let mut tmp = vec![0f32; n * step];
        s.pager.prefetch(w.rows_range(0, step.min(rows)).data);
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + step).min(rows);
            if r1 < rows {
                s.pager
                    .prefetch(w.rows_range(r1, (r1 + step).min(rows)).data);
            }
            let m = w.rows_range(r0, r1);
            let part = &mut tmp[..n * (r1 - r0)];
            self.matmul(&m, x, n, part);
            for t in 0..n {
                logits[t * rows + r0..t * rows + r1]
                    .copy_from_slice(&part[t * (r1 - r0)..(t + 1) * (r1 - r0)]);
            }
            s.pager.evict(m.data);
            r0 = r1;
        }
    }

    /// `y = x W^T` for `n` tokens: exact, or the bf16 dot-product path when
    /// [`Gemma::fast_bf16`] is set.
    fn matmul(&self, w: &kernels::MatRef, x: &[f32], n: usize, y: &mut [f32]) {
        if self.fast_bf16 {
            kernels::matmul_bf16_fast(w, x, n, y);
        } else {
            kernels::matmul(w, x, n, y);
        }
    }

    /// [`Gemma::matmul`] of several matrices sharing the input `x`, in one parallel pass on
    /// the fast path.
    fn matmul_many(&self, items: &mut [(&kernels::MatRef, &mut [f32])], x: &[f32], n: usize) {
        if self.fast_bf16 {
            kernels::matmul_bf16_fast_many(items, x, n);
        } else {
            for (w, y) in items.iter_mut() {
                kernels::matmul(w, x, n, y);
            }
        }
    }

    fn norm_rows(x: &[f32], out: &mut [f32], w: &[f32], eps: f32) {
        let h = w.len();
        out.copy_from_slice(x);
        out.par_chunks_mut(h).for_each(|r| ops::rms_norm(r, w, eps));
    }

    fn layer(&self, l: usize, x: &mut [f32], xn: &mut [f32], cache: &mut KvCache, n: usize) {
        let cfg = &self.cfg;
        let lw = &self.w.layers[l];
        let h = cfg.hidden_size;
        let hd = cfg.head_dim;
        let nh = cfg.num_heads;
        let nkv = cfg.num_kv_heads;
        let eps = cfg.rms_norm_eps;
        let p0 = cache.pos;

        Self::norm_rows(x, xn, &lw.input_norm, eps);
        let mut q = vec![0f32; n * nh * hd];
        let mut k = vec![0f32; n * nkv * hd];
        let mut v = vec![0f32; n * nkv * hd];
        self.matmul_many(
            &mut [(&lw.q, &mut q), (&lw.k, &mut k), (&lw.v, &mut v)],
            xn,
            n,
        );

        // Per-head q/k norms (Gemma 3), then rotary embeddings.
        let inv_freq = &self.inv_freq[l];
        let prep = |buf: &mut [f32], heads: usize, norm: Option<&Vec<f32>>| {
            buf.par_chunks_mut(hd).enumerate().for_each(|(i, head)| {
                if let Some(w) = norm {
                    ops::rms_norm(head, w, eps);
                }
                ops::rope(head, p0 + i / heads, inv_freq);
            });
        };
        prep(&mut q, nh, lw.q_norm.as_ref());
        prep(&mut k, nkv, lw.k_norm.as_ref());

        // Attention over cached positions and this chunk's fresh keys.
        let window = match cfg.layer_kinds[l] {
            LayerKind::Local => cfg.sliding_window,
            LayerKind::Global => None,
        };
        let qscale = (cfg.query_pre_attn_scalar as f32).powf(-0.5);
        let softcap = cfg.attn_softcap;
        let group = nh / nkv;
        let kvw = nkv * hd;
        let lc = &cache.layers[l];
        let cap = lc.cap;
        let mut att = vec![0f32; n * nh * hd];
        att.par_chunks_mut(hd).enumerate().for_each(|(i, out)| {
            let t = i / nh;
            let head = i % nh;
            let kvh = head / group;
            let pos = p0 + t;
            let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let qv = &q[i * hd..(i + 1) * hd];
            let key = |j: usize| -> (&[f32], &[f32]) {
                let (kb, vb, r) = if j >= p0 {
                    (&k, &v, j - p0)
                } else {
                    (&lc.k, &lc.v, j % cap)
                };
                let o = r * kvw + kvh * hd;
                (&kb[o..o + hd], &vb[o..o + hd])
            };
            let mut scores: Vec<f32> = (lo..=pos)
                .map(|j| ops::dot(qv, key(j).0) * qscale)
                .collect();
            if let Some(c) = softcap {
                ops::softcap(&mut scores, c);
            }
            ops::softmax(&mut scores);
            out.fill(0.0);
            for (j, p) in (lo..=pos).zip(&scores) {
                ops::axpy(out, *p, key(j).1);
            }
        });
        self.store_kv(cache, l, &k, &v, n);

        let mut o = vec![0f32; n * h];
        self.matmul(&lw.o, &att, n, &mut o);
        drop(att);
        if let Some(w) = &lw.post_attn_norm {
            o.par_chunks_mut(h).for_each(|r| ops::rms_norm(r, w, eps));
        }
        ops::add_assign(x, &o);

        // MLP.
        Self::norm_rows(x, xn, &lw.pre_ffw_norm, eps);
        let inter = cfg.intermediate_size;
        let mut gate = vec![0f32; n * inter];
        let mut up = vec![0f32; n * inter];
        self.matmul_many(&mut [(&lw.gate, &mut gate), (&lw.up, &mut up)], xn, n);
        gate.par_chunks_mut(inter)
            .zip(up.par_chunks(inter))
            .for_each(|(g, u)| ops::gelu_mul(g, u));
        drop(up);
        self.matmul(&lw.down, &gate, n, &mut o);
        if let Some(w) = &lw.post_ffw_norm {
            o.par_chunks_mut(h).for_each(|r| ops::rms_norm(r, w, eps));
        }
        ops::add_assign(x, &o);
    }

    fn store_kv(&self, cache: &mut KvCache, l: usize, k: &[f32], v: &[f32], n: usize) {
        let width = cache.width;
        let p0 = cache.pos;
        // Every token is written in order, so the ring fills sequentially and then wraps.
        for t in 0..n {
            let slot = cache.slot(l, p0 + t);
            let lc = &mut cache.layers[l];
            let cap = lc.cap;
            let held = lc.k.len() / width;
            if slot == held {
                // Growing: reserve in steps so memory follows the tokens actually held.
                if lc.k.capacity() < (held + 1) * width {
                    let want = grown_capacity(held, cap);
                    lc.k.reserve_exact(want * width - lc.k.len());
                    lc.v.reserve_exact(want * width - lc.v.len());
                }
                lc.k.extend_from_slice(&k[t * width..(t + 1) * width]);
                lc.v.extend_from_slice(&v[t * width..(t + 1) * width]);
            } else {
                lc.k[slot * width..(slot + 1) * width]
                    .copy_from_slice(&k[t * width..(t + 1) * width]);
                lc.v[slot * width..(slot + 1) * width]
                    .copy_from_slice(&v[t * width..(t + 1) * width]);
            }
        }
    }
}
