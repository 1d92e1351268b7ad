//! The building blocks architectures compose their layers from: products in the run's chosen
//! precision ([`Ops`]), RMSNorm over token rows, rotary tables, attention over the KV cache
//! ([`Attention`]) and the gated feed-forward ([`Mlp`]). Every constant comes from the config;
//! matrices are read in their stored dtype by `frugal_kernels`.

use crate::config::{GemmaConfig, LayerKind, Rope};
use crate::kv::LayerCache;
use frugal_kernels::{self as kernels, ops};
use frugal_tensor::MatRef;
use rayon::prelude::*;

/// Products as the run asked for them: exact f32 activations, or bf16 weights multiplied with
/// bf16-rounded activations ([`kernels::matmul_bf16_fast`]: AVX512_BF16 dot products, as
/// llama.cpp does; no longer bit-exact f32 products).
#[derive(Clone, Copy, Debug)]
pub struct Ops {
    pub fast_bf16: bool,
}

impl Ops {
    /// `y = x W^T` for `n` tokens.
    pub fn matmul(&self, w: &MatRef, x: &[f32], n: usize, y: &mut [f32]) {
        if self.fast_bf16 {
            kernels::matmul_bf16_fast(w, x, n, y);
        } else {
            kernels::matmul(w, x, n, y);
        }
    }

    /// [`Ops::matmul`] of several matrices sharing the input `x`, in one parallel pass on the
    /// fast path.
    pub fn matmul_many(&self, items: &mut [(&MatRef, &mut [f32])], x: &[f32], n: usize) {
        if self.fast_bf16 {
            kernels::matmul_bf16_fast_many(items, x, n);
        } else {
            for (w, y) in items.iter_mut() {
                kernels::matmul(w, x, n, y);
            }
        }
    }
}

/// `out` = `x` with each row of `w.len()` values RMS-normalized by `w` (`1 + w` already).
pub fn norm_rows(x: &[f32], out: &mut [f32], w: &[f32], eps: f32) {
    let h = w.len();
    out.copy_from_slice(x);
    out.par_chunks_mut(h).for_each(|r| ops::rms_norm(r, w, eps));
}

/// Each row of `x` RMS-normalized by `w` in place.
pub fn norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    x.par_chunks_mut(w.len())
        .for_each(|r| ops::rms_norm(r, w, eps));
}

/// Rotary inverse frequencies of a head of `head_dim`, already divided by the linear scaling
/// factor: `theta ^ (2k / head_dim)` in f32, as the reference implementations compute it.
pub fn inv_freq(r: Rope, head_dim: usize) -> Vec<f32> {
    inv_freq_partial(r, head_dim, head_dim / 2)
}

/// [`inv_freq`] with only the first `pairs` pairs rotating (the exponent's denominator still
/// the whole `head_dim`) and the others 0 (they pass through): Gemma 4's proportional RoPE.
pub fn inv_freq_partial(r: Rope, head_dim: usize, pairs: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|k| {
            if k >= pairs {
                return 0.0;
            }
            let f = 1.0f32 / (r.theta as f32).powf((2 * k) as f32 / head_dim as f32);
            f / r.factor as f32
        })
        .collect()
}

/// Self-attention of one layer: projections, optional per-head q/k norms, rotary embeddings,
/// softmax attention over the cached and fresh keys (a sliding window and a logit softcap when
/// set), the output projection.
pub struct Attention<'a> {
    pub q: MatRef<'a>,
    /// `None`: the layer projects no keys or values; it attends over another layer's cache
    /// ([`Attention::attend_cached`]).
    pub k: Option<MatRef<'a>>,
    /// `None`: values are the keys' projection (before their norm and rotation).
    pub v: Option<MatRef<'a>>,
    pub o: MatRef<'a>,
    /// Per-head RMSNorms of queries and keys, as multiplied (`1 + w` for Gemma 1-3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Per-head RMSNorm of values (Gemma 4's has no weight: ones).
    pub v_norm: Option<Vec<f32>>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    /// Sees only the last `window` tokens when set.
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    /// Queries are multiplied by it.
    pub qscale: f32,
    pub inv_freq: Vec<f32>,
}

/// The projected queries, keys and values of a chunk of tokens.
pub struct Qkv {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl<'a> Attention<'a> {
    /// Layer `l`'s attention as `cfg` describes it (its window, rope and scales), over these
    /// matrices and norms.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &GemmaConfig,
        l: usize,
        q: MatRef<'a>,
        k: MatRef<'a>,
        v: MatRef<'a>,
        o: MatRef<'a>,
        q_norm: Option<Vec<f32>>,
        k_norm: Option<Vec<f32>>,
    ) -> Self {
        Attention {
            q,
            k: Some(k),
            v: Some(v),
            o,
            q_norm,
            k_norm,
            v_norm: None,
            heads: cfg.num_heads,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            eps: cfg.rms_norm_eps,
            window: match cfg.layer_kinds[l] {
                LayerKind::Local => cfg.sliding_window,
                LayerKind::Global => None,
            },
            softcap: cfg.attn_softcap,
            qscale: (cfg.query_pre_attn_scalar as f32).powf(-0.5),
            inv_freq: inv_freq(cfg.rope(l), cfg.head_dim),
        }
    }

    /// Queries, keys and values of `n` tokens at positions `p0..` from their normed inputs
    /// `xn`, q/k norms and rotary embeddings applied.
    pub fn project(&self, mm: &Ops, xn: &[f32], p0: usize, n: usize) -> Qkv {
        let (hd, nh, nkv) = (self.head_dim, self.heads, self.kv_heads);
        let mut q = vec![0f32; n * nh * hd];
        let Some(wk) = &self.k else {
            // Attends over another layer's cache: queries only.
            mm.matmul(&self.q, xn, n, &mut q);
            self.prep(&mut q, nh, self.q_norm.as_ref(), p0, true);
            return Qkv {
                q,
                k: Vec::new(),
                v: Vec::new(),
            };
        };
        let mut k = vec![0f32; n * nkv * hd];
        let mut v = match &self.v {
            Some(wv) => {
                let mut v = vec![0f32; n * nkv * hd];
                mm.matmul_many(&mut [(&self.q, &mut q), (wk, &mut k), (wv, &mut v)], xn, n);
                v
            }
            None => {
                mm.matmul_many(&mut [(&self.q, &mut q), (wk, &mut k)], xn, n);
                k.clone()
            }
        };
        self.prep(&mut q, nh, self.q_norm.as_ref(), p0, true);
        self.prep(&mut k, nkv, self.k_norm.as_ref(), p0, true);
        if let Some(w) = &self.v_norm {
            self.prep(&mut v, nkv, Some(w), p0, false);
        }
        Qkv { q, k, v }
    }

    /// Each head of `buf` (`heads` per token, tokens from position `p0`) RMS-normed by `norm`
    /// when given, then rotated when `rotate`.
    fn prep(
        &self,
        buf: &mut [f32],
        heads: usize,
        norm: Option<&Vec<f32>>,
        p0: usize,
        rotate: bool,
    ) {
        let (inv_freq, eps) = (&self.inv_freq, self.eps);
        buf.par_chunks_mut(self.head_dim)
            .enumerate()
            .for_each(|(i, head)| {
                if let Some(w) = norm {
                    ops::rms_norm(head, w, eps);
                }
                if rotate {
                    ops::rope(head, p0 + i / heads, inv_freq);
                }
            });
    }

    /// Attention of the projected tokens over the cache's positions and their own (stored in
    /// the cache afterwards), through the output projection: `[n, hidden]`.
    pub fn attend(
        &self,
        mm: &Ops,
        qkv: &Qkv,
        cache: &mut LayerCache,
        p0: usize,
        n: usize,
    ) -> Vec<f32> {
        let o = self.attention(mm, &qkv.q, Some((&qkv.k, &qkv.v)), cache, p0, n);
        cache.store(&qkv.k, &qkv.v, p0, n);
        o
    }

    /// Attention of the projected queries of `n` tokens at positions `p0..` over keys and
    /// values another layer stored in `cache` (theirs included: KV sharing), through the output
    /// projection: `[n, hidden]`. Stores nothing.
    pub fn attend_cached(
        &self,
        mm: &Ops,
        qkv: &Qkv,
        cache: &LayerCache,
        p0: usize,
        n: usize,
    ) -> Vec<f32> {
        self.attention(mm, &qkv.q, None, cache, p0, n)
    }

    /// Softmax attention of queries `q` over positions up to their own: `fresh` keys and values
    /// for positions `p0..` (else the cache's), the cache's before; the output projection.
    fn attention(
        &self,
        mm: &Ops,
        q: &[f32],
        fresh: Option<(&[f32], &[f32])>,
        cache: &LayerCache,
        p0: usize,
        n: usize,
    ) -> Vec<f32> {
        let (hd, nh, nkv) = (self.head_dim, self.heads, self.kv_heads);
        let window = self.window;
        let qscale = self.qscale;
        let softcap = self.softcap;
        let group = nh / nkv;
        let kvw = nkv * hd;
        let lc = cache;
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
                let (kb, vb, r) = match fresh {
                    Some((k, v)) if j >= p0 => (k, v, j - p0),
                    _ => (&lc.k[..], &lc.v[..], j % cap),
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
        let mut o = vec![0f32; n * self.o.rows];
        mm.matmul(&self.o, &att, n, &mut o);
        o
    }
}

/// The gated feed-forward: `down(gelu_tanh(gate x) * up x)`.
pub struct Mlp<'a> {
    pub gate: MatRef<'a>,
    pub up: MatRef<'a>,
    pub down: MatRef<'a>,
}

impl Mlp<'_> {
    /// The feed-forward of `n` tokens' normed inputs `xn` into `out` (`[n, hidden]`).
    pub fn forward(&self, mm: &Ops, xn: &[f32], n: usize, out: &mut [f32]) {
        let inter = self.gate.rows;
        let mut gate = vec![0f32; n * inter];
        let mut up = vec![0f32; n * inter];
        mm.matmul_many(&mut [(&self.gate, &mut gate), (&self.up, &mut up)], xn, n);
        gate.par_chunks_mut(inter)
            .zip(up.par_chunks(inter))
            .for_each(|(g, u)| ops::gelu_mul(g, u));
        drop(up);
        mm.matmul(&self.down, &gate, n, out);
    }
}

/// Gemma 4's per-layer embeddings: for each token, an input of `width` values for every layer,
/// from the token's row of a `[vocab, layers * width]` table (read in place, one row per token:
/// the table is never read whole) and from a projection of the token's scaled embedding.
pub struct PerLayerEmbedding<'a> {
    /// `[vocab, layers * width]`, layer-major within a row.
    pub table: MatRef<'a>,
    /// `[layers * width, hidden]`.
    pub proj: MatRef<'a>,
    /// The projection's RMSNorm over each layer's `width` values (one weight for all layers).
    pub norm: Vec<f32>,
    pub layers: usize,
    pub width: usize,
    pub hidden: usize,
    pub eps: f32,
}

impl PerLayerEmbedding<'_> {
    /// The per-layer inputs of `tokens` whose scaled embeddings are `x0` (`[n, hidden]`):
    /// `(norm(proj(x0) / sqrt(hidden)) + table[token] * sqrt(width)) / sqrt(2)`, as
    /// `[layers, n, width]` (each layer's rows together). `on_row` is told each table row read.
    pub fn inputs(
        &self,
        mm: &Ops,
        tokens: &[u32],
        x0: &[f32],
        mut on_row: impl FnMut(&[u8]),
    ) -> Vec<f32> {
        let (n, lw, w) = (tokens.len(), self.layers * self.width, self.width);
        let mut proj = vec![0f32; n * lw];
        mm.matmul(&self.proj, x0, n, &mut proj);
        let proj_scale = (self.hidden as f64).powf(-0.5) as f32;
        let tok_scale = (w as f32).sqrt();
        let sum_scale = 0.5f64.sqrt() as f32;
        let mut row = vec![0f32; lw];
        let mut out = vec![0f32; n * lw];
        for (t, &tok) in tokens.iter().enumerate() {
            frugal_quant::row_to_f32(&self.table, tok as usize, &mut row);
            on_row(self.table.row_span(tok as usize));
            let p = &mut proj[t * lw..(t + 1) * lw];
            for (l, pl) in p.chunks_mut(w).enumerate() {
                pl.iter_mut().for_each(|v| *v *= proj_scale);
                ops::rms_norm(pl, &self.norm, self.eps);
                let dst = &mut out[(l * n + t) * w..(l * n + t + 1) * w];
                for ((d, a), b) in dst.iter_mut().zip(pl.iter()).zip(&row[l * w..(l + 1) * w]) {
                    *d = (a + b * tok_scale) * sum_scale;
                }
            }
        }
        out
    }
}

/// A mixture of experts (Gemma 4 26B-A4B): a router picks `top_k` of `experts` feed-forwards
/// per token; each expert's matrices are row ranges of the stored 3-D tensors (views, no copy),
/// and only the experts some token was routed to are read.
pub struct Experts<'a> {
    /// `[experts, hidden]`.
    pub router: MatRef<'a>,
    /// Multiplies the router's (weightless) RMS-normed input, with `1 / sqrt(hidden)`.
    pub router_scale: Vec<f32>,
    /// Multiplies each chosen expert's weight.
    pub per_expert_scale: Vec<f32>,
    /// `[experts * 2 * inter, hidden]`: each expert's gate rows, then its up rows.
    pub gate_up: MatRef<'a>,
    /// `[experts * hidden, inter]`.
    pub down: MatRef<'a>,
    pub experts: usize,
    pub top_k: usize,
    pub inter: usize,
    pub eps: f32,
}

impl Experts<'_> {
    /// The routing of `n` tokens from their residual stream `r` (`[n, hidden]`): for each token
    /// its `top_k` experts and their weights (softmax over all experts, the chosen renormalised
    /// to sum 1, each times its expert's scale).
    pub fn route(&self, mm: &Ops, r: &[f32], n: usize) -> Vec<Vec<(usize, f32)>> {
        let h = self.router.cols;
        let ones = vec![1f32; h];
        let root = (h as f64).powf(-0.5) as f32;
        let mut z = r.to_vec();
        z.par_chunks_mut(h).for_each(|row| {
            ops::rms_norm(row, &ones, self.eps);
            for (v, s) in row.iter_mut().zip(&self.router_scale) {
                *v = *v * s * root;
            }
        });
        let e = self.experts;
        let mut logits = vec![0f32; n * e];
        mm.matmul(&self.router, &z, n, &mut logits);
        logits
            .chunks_mut(e)
            .map(|p| {
                ops::softmax(p);
                let mut idx: Vec<usize> = (0..e).collect();
                idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                idx.truncate(self.top_k);
                let sum: f32 = idx.iter().map(|&i| p[i]).sum();
                idx.into_iter()
                    .map(|i| (i, p[i] / sum * self.per_expert_scale[i]))
                    .collect()
            })
            .collect()
    }

    /// The experts' weighted sum for `n` tokens into `out` (`[n, hidden]`, overwritten): the
    /// router reads the residual stream `r`, the experts the normed `xe`. Tokens are grouped by
    /// expert, so each routed expert's matrices are read once per call.
    pub fn forward(&self, mm: &Ops, r: &[f32], xe: &[f32], n: usize, out: &mut [f32]) {
        let h = self.router.cols;
        let i2 = 2 * self.inter;
        let routes = self.route(mm, r, n);
        out.fill(0.0);
        for e in 0..self.experts {
            let users: Vec<(usize, f32)> = routes
                .iter()
                .enumerate()
                .filter_map(|(t, rs)| rs.iter().find(|(x, _)| *x == e).map(|(_, w)| (t, *w)))
                .collect();
            if users.is_empty() {
                continue;
            }
            let m = users.len();
            let mut xs = Vec::with_capacity(m * h);
            for (t, _) in &users {
                xs.extend_from_slice(&xe[t * h..(t + 1) * h]);
            }
            let gate_up = self.gate_up.rows_range(e * i2, (e + 1) * i2);
            let mut gu = vec![0f32; m * i2];
            mm.matmul(&gate_up, &xs, m, &mut gu);
            let mut act = vec![0f32; m * self.inter];
            for (row, a) in gu.chunks_mut(i2).zip(act.chunks_mut(self.inter)) {
                let (g, u) = row.split_at_mut(self.inter);
                ops::gelu_mul(g, u);
                a.copy_from_slice(g);
            }
            let down = self.down.rows_range(e * h, (e + 1) * h);
            let mut y = vec![0f32; m * h];
            mm.matmul(&down, &act, m, &mut y);
            for (k, (t, w)) in users.iter().enumerate() {
                let o = &mut out[t * h..(t + 1) * h];
                for (a, b) in o.iter_mut().zip(&y[k * h..(k + 1) * h]) {
                    *a += b * w;
                }
            }
        }
    }
}
