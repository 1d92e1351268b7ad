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
    (0..head_dim / 2)
        .map(|k| {
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
    pub k: MatRef<'a>,
    pub v: MatRef<'a>,
    pub o: MatRef<'a>,
    /// Per-head RMSNorms of queries and keys (`1 + w`).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
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
            k,
            v,
            o,
            q_norm,
            k_norm,
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
        let mut k = vec![0f32; n * nkv * hd];
        let mut v = vec![0f32; n * nkv * hd];
        mm.matmul_many(
            &mut [(&self.q, &mut q), (&self.k, &mut k), (&self.v, &mut v)],
            xn,
            n,
        );
        let inv_freq = &self.inv_freq;
        let eps = self.eps;
        let prep = |buf: &mut [f32], heads: usize, norm: Option<&Vec<f32>>| {
            buf.par_chunks_mut(hd).enumerate().for_each(|(i, head)| {
                if let Some(w) = norm {
                    ops::rms_norm(head, w, eps);
                }
                ops::rope(head, p0 + i / heads, inv_freq);
            });
        };
        prep(&mut q, nh, self.q_norm.as_ref());
        prep(&mut k, nkv, self.k_norm.as_ref());
        Qkv { q, k, v }
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
        let (hd, nh, nkv) = (self.head_dim, self.heads, self.kv_heads);
        let (q, k, v) = (&qkv.q, &qkv.k, &qkv.v);
        let window = self.window;
        let qscale = self.qscale;
        let softcap = self.softcap;
        let group = nh / nkv;
        let kvw = nkv * hd;
        let lc = &*cache;
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
                    (k, v, j - p0)
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
        cache.store(k, v, p0, n);
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
