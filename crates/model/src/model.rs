//! A model bound to its weights: the token embedding, the decoder layers an architecture
//! composed ([`Layer`]), the final norm and the output projection, with the KV cache; the
//! paging hooks that stream layers from disk when the weights do not fit ([`Streaming`]); and
//! the small trait generation works through ([`LanguageModel`]).

use crate::bind::Bound;
use crate::blocks::{Ops, PerLayerEmbedding};
use crate::config::GemmaConfig;
use crate::kv::{KvCache, LayerCache};
use crate::tensors::{key, Role};
use anyhow::{bail, Result};
use frugal_kernels::ops;
use frugal_tensor::MatRef;

pub use crate::kv::PREFILL_CHUNK;

/// One decoder layer as an architecture composes it from [`crate::blocks`].
pub trait Layer: Sync {
    /// Runs the layer over `n` tokens at positions `p0..p0 + n`: `x` (the residual stream,
    /// `[n, hidden]`) is updated in place, `xn` is scratch of the same size, `cache` is this
    /// layer's KV cache (the tokens are appended to it), or the cache of the layer it reads
    /// (KV sharing: [`crate::config::LayerShape::kv_layer`]; it appends nothing then);
    /// `per_layer_input` its per-layer inputs (`[n, width]`) when the model has them.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        mm: &Ops,
        x: &mut [f32],
        xn: &mut [f32],
        cache: &mut LayerCache,
        p0: usize,
        n: usize,
        per_layer_input: Option<&[f32]>,
    );
}

/// Moves weight bytes in and out of memory when the weights are streamed from disk because
/// they do not all fit in the memory budget (implemented by the loader).
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

/// What generation needs of a model: its config, a cache, and logits for tokens.
pub trait LanguageModel: Sync {
    /// The resolved config (vocabulary, special ids).
    fn config(&self) -> &GemmaConfig;

    /// An empty cache for up to `ctx` tokens; nothing is allocated until tokens arrive.
    fn new_cache(&self, ctx: usize) -> KvCache;

    /// Runs `tokens` through the model, appending them to `cache`, handing the logits to
    /// `on_logits` one prefill chunk (at most [`PREFILL_CHUNK`] rows) at a time with the index
    /// in `tokens` of the chunk's first row, so that no more than a chunk's logits are ever
    /// held (`all = true`: every row of every chunk; `all = false`: only the last row, once).
    fn forward_chunks(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
        on_logits: &mut (dyn FnMut(usize, &[f32]) -> Result<()> + Send),
    ) -> Result<()>;

    /// The logits of every position (`all = true`, `[n, vocab]`) or of the last one
    /// (`[vocab]`).
    fn forward(&self, tokens: &[u32], cache: &mut KvCache, all: bool) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.forward_chunks(tokens, cache, all, &mut |_, logits| {
            out.extend_from_slice(logits);
            Ok(())
        })?;
        Ok(out)
    }
}

/// A model bound to its weights.
pub struct Model<'a> {
    pub cfg: GemmaConfig,
    pub embed: MatRef<'a>,
    /// Present only when the output projection is not tied to the embedding.
    pub lm_head: Option<MatRef<'a>>,
    /// As multiplied (`1 + w` for Gemma 1-3).
    pub final_norm: Vec<f32>,
    /// Gemma 4's per-layer embeddings, when the model has them.
    pub per_layer: Option<PerLayerEmbedding<'a>>,
    layers: Vec<Box<dyn Layer + 'a>>,
    /// Every bound matrix by its role and key in the tensor table.
    matrices: Vec<(Role, &'static str, MatRef<'a>)>,
    /// Every layer's matrices, in table order (what streaming pages in and out).
    layer_mats: Vec<Vec<MatRef<'a>>>,
    /// bf16 weights are multiplied with bf16-rounded activations (see [`Ops`]). Default
    /// `false` (exact).
    pub fast_bf16: bool,
    /// Set when the weights are streamed: see [`Streaming`].
    pub streaming: Option<Streaming<'a>>,
}

impl<'a> Model<'a> {
    /// The model of `cfg` over its bound weights and the layers its architecture composed of
    /// them.
    pub fn new(
        cfg: GemmaConfig,
        mut w: Bound<'a>,
        layers: Vec<Box<dyn Layer + 'a>>,
    ) -> Result<Self> {
        let matrices = w.matrices();
        let mut layer_mats = vec![Vec::new(); cfg.num_layers];
        for (role, _, m) in &matrices {
            if let Role::Layer(l) = role {
                layer_mats[*l].push(*m);
            }
        }
        if layers.len() != cfg.num_layers {
            bail!(
                "{} layers composed for a config of {}",
                layers.len(),
                cfg.num_layers
            );
        }
        let per_layer = if cfg.per_layer_input > 0 {
            Some(PerLayerEmbedding {
                table: w.matrix(Role::Embedding, key::PER_LAYER_EMBD)?,
                proj: w.matrix(Role::Embedding, key::PER_LAYER_PROJ)?,
                norm: w.vector(Role::Embedding, key::PER_LAYER_PROJ_NORM)?,
                layers: cfg.num_layers,
                width: cfg.per_layer_input,
                hidden: cfg.hidden_size,
                eps: cfg.rms_norm_eps,
            })
        } else {
            None
        };
        Ok(Model {
            per_layer,
            embed: w.matrix(Role::Embedding, key::EMBED)?,
            lm_head: if cfg.tie_word_embeddings {
                None
            } else {
                Some(w.matrix(Role::Output, key::OUTPUT)?)
            },
            final_norm: w.vector(Role::FinalNorm, key::FINAL_NORM)?,
            layers,
            matrices,
            layer_mats,
            cfg,
            fast_bf16: false,
            streaming: None,
        })
    }

    /// The output projection (the embedding when tied).
    pub fn output(&self) -> &MatRef<'a> {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// The bound matrix `key` of `role` (see [`crate::tensors::key`]), if the table has one.
    pub fn matrix(&self, role: Role, key: &str) -> Option<&MatRef<'a>> {
        self.matrices
            .iter()
            .find(|(r, k, _)| *r == role && *k == key)
            .map(|(_, _, m)| m)
    }

    /// Bytes of every matrix as bound (their int8 scales included): in place from the map, or
    /// the quantized copies.
    pub fn matrix_bytes(&self) -> u64 {
        self.matrices
            .iter()
            .map(|(_, _, m)| m.stored_bytes() as u64)
            .sum()
    }

    /// The matrices one decoded token reads whole: every layer's and the output projection
    /// (the embedding only as the tied output; a lookup reads one row).
    pub fn decode_matrices(&self) -> Vec<&MatRef<'a>> {
        let mut v: Vec<&MatRef<'a>> = self.layer_mats.iter().flatten().collect();
        v.push(self.output());
        v
    }

    /// Bytes of each layer's matrices (their int8 scales included).
    pub fn layer_bytes(&self) -> Vec<u64> {
        self.layer_mats
            .iter()
            .map(|l| l.iter().map(|m| m.stored_bytes() as u64).sum())
            .collect()
    }

    fn ops(&self) -> Ops {
        Ops {
            fast_bf16: self.fast_bf16,
        }
    }

    /// An empty cache for up to `ctx` tokens; nothing is allocated until tokens arrive.
    pub fn new_cache(&self, ctx: usize) -> KvCache {
        KvCache::new(&self.cfg, ctx)
    }

    /// See [`LanguageModel::forward`].
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, all: bool) -> Result<Vec<f32>> {
        LanguageModel::forward(self, tokens, cache, all)
    }

    fn forward_chunk(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
        last: bool,
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let mm = self.ops();
        let n = tokens.len();
        let h = cfg.hidden_size;
        let scale = cfg.embed_scale();
        let mut x = vec![0f32; n * h];
        for (t, &tok) in tokens.iter().enumerate() {
            let row = &mut x[t * h..(t + 1) * h];
            frugal_quant::row_to_f32(&self.embed, tok as usize, row);
            row.iter_mut().for_each(|v| *v *= scale);
            if let Some(s) = &self.streaming {
                s.pager.evict(self.embed.row_span(tok as usize));
            }
        }
        let mut ple = self.per_layer.as_ref().map(|p| {
            p.inputs(&mm, tokens, &x, |row| {
                if let Some(s) = &self.streaming {
                    s.pager.evict(row);
                }
            })
        });
        let mut xn = vec![0f32; n * h];
        let p0 = cache.pos;
        // The tokens still computed: from layers that read another layer's cache on (they
        // store nothing), only those whose logits are wanted.
        let (mut q0, mut m) = (0, n);
        let first_reader = (0..cfg.num_layers)
            .find(|&l| cfg.layer(l).kv_layer != l)
            .unwrap_or(cfg.num_layers);
        for l in 0..cfg.num_layers {
            if l == first_reader && !all {
                if !last {
                    break;
                }
                (q0, m) = (n - 1, 1);
                x.drain(..q0 * h);
                xn.truncate(h);
                if let (Some(v), Some(p)) = (&mut ple, &self.per_layer) {
                    let w = p.width;
                    *v = (0..cfg.num_layers)
                        .flat_map(|i| v[(i * n + q0) * w..(i * n + n) * w].to_vec())
                        .collect();
                }
            }
            if let Some(s) = &self.streaming {
                if l == 0 && !s.pinned[0] {
                    self.layer_pages(0, |b| s.pager.prefetch(b));
                }
                if l + 1 < cfg.num_layers && !s.pinned[l + 1] {
                    self.layer_pages(l + 1, |b| s.pager.prefetch(b));
                }
            }
            let pli = ple.as_ref().zip(self.per_layer.as_ref()).map(|(v, p)| {
                let w = p.width;
                &v[l * m * w..(l + 1) * m * w]
            });
            let src = cfg.layer(l).kv_layer;
            self.layers[l].forward(
                &mm,
                &mut x,
                &mut xn,
                &mut cache.layers[src],
                p0 + q0,
                m,
                pli,
            );
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
        let rows: Vec<usize> = if all { (0..n).collect() } else { vec![m - 1] };
        let mut hsel = Vec::with_capacity(rows.len() * h);
        for &r in &rows {
            let mut v = x[r * h..(r + 1) * h].to_vec();
            ops::rms_norm(&mut v, &self.final_norm, cfg.rms_norm_eps);
            hsel.extend_from_slice(&v);
        }
        let out_w = self.output();
        let mut logits = vec![0f32; rows.len() * cfg.vocab_size];
        match &self.streaming {
            None => mm.matmul(out_w, &hsel, rows.len(), &mut logits),
            Some(s) => self.output_streamed(out_w, &hsel, rows.len(), &mut logits, s),
        }
        if let Some(cap) = cfg.final_softcap {
            ops::softcap(&mut logits, cap);
        }
        Ok(logits)
    }

    /// Calls `f` on the bytes of every matrix of layer `l` (and their scales).
    fn layer_pages(&self, l: usize, mut f: impl FnMut(&[u8])) {
        for m in &self.layer_mats[l] {
            f(m.data);
            if let Some(sc) = &m.scale {
                f(sc.data);
            }
        }
    }

    /// The output projection of streamed weights, in row chunks of about
    /// `s.output_step_bytes`: each chunk is read ahead while the previous one computes and
    /// dropped once used. Same products as the resident one, row by row.
    fn output_streamed(&self, w: &MatRef, x: &[f32], n: usize, logits: &mut [f32], s: &Streaming) {
        let mm = self.ops();
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
            mm.matmul(&m, x, n, part);
            for t in 0..n {
                logits[t * rows + r0..t * rows + r1]
                    .copy_from_slice(&part[t * (r1 - r0)..(t + 1) * (r1 - r0)]);
            }
            s.pager.evict(m.data);
            r0 = r1;
        }
    }
}

impl LanguageModel for Model<'_> {
    fn config(&self) -> &GemmaConfig {
        &self.cfg
    }

    fn new_cache(&self, ctx: usize) -> KvCache {
        Model::new_cache(self, ctx)
    }

    fn forward_chunks(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
        on_logits: &mut (dyn FnMut(usize, &[f32]) -> Result<()> + Send),
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
}
