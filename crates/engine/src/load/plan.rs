//! The memory plan: what a run will keep resident, predicted from headers alone (no tensor data
//! is read), as the operating system will count it: peak RSS and peak anonymous memory, while
//! loading and while running, by component.
//!
//! The plan is built in two steps:
//! 1. [`weight_entries`] lists every tensor the model reads and how it is held ([`Storage`]):
//!    matrices used in place from the map, norm vectors read once and kept as f32. This is the
//!    one place a storage choice is made; quantize-on-load replaces the matrices' entries with
//!    [`Storage::Quantized`] ones of their quantized size ([`with_quantized`]) and sets
//!    [`Workload::load_transient_bytes`] to the source chunks it holds in flight.
//! 2. [`predict`] adds what a run allocates ([`Workload`]): the KV cache for the tokens held, the
//!    activations of one prefill chunk, the logits, the tokenizer and the runtime itself
//!    (measured constants: [`RUNTIME_FILE_BYTES`], [`RUNTIME_ANON_BYTES`],
//!    [`RUNTIME_THREAD_BYTES`], [`TOKENIZER_JSON`], [`TOKENIZER_MODEL`]).
//!
//! Mapped weights count in RSS as file-backed pages once read (whole 4 KiB pages of the tensors
//! the model uses; tensors it ignores, like gemma_pytorch's RoPE tables or a vision tower, stay
//! on disk); they are never anonymous. Everything else is anonymous.

use super::Checkpoint;
use crate::memory::human;
use anyhow::Result;
use frugal_formats::TensorIndex;
use frugal_model::bind::{self, Binding};
use frugal_model::tensors::key;
use frugal_model::{GemmaConfig, KvCache, PREFILL_CHUNK};
use serde::Serialize;

/// Code and shared libraries resident while running (file-backed). Measured (see
/// docs/ARCHITECTURE.md, "Memory plan"), like every constant below.
pub const RUNTIME_FILE_BYTES: u64 = 6_300 << 10;

/// The runtime's anonymous memory, threads aside: allocator arenas, the main stack, the
/// monitor thread, the rayon pool's bookkeeping, the model's small tables.
pub const RUNTIME_ANON_BYTES: u64 = 700 << 10;

/// Anonymous memory per worker thread (its touched stack and malloc arena).
pub const RUNTIME_THREAD_BYTES: u64 = 32 << 10;

/// How a tokenizer file is held: the `tokenizers` crate for `tokenizer.json`, frugal's
/// SentencePiece reader for `tokenizer.model`.
#[derive(Clone, Copy, Debug)]
pub struct TokenizerCost {
    /// Code the reader adds (file-backed).
    pub code_bytes: u64,
    /// Anonymous bytes whatever the file's size.
    pub fixed_bytes: u64,
    /// Peak anonymous bytes while reading, per byte of the file.
    pub load_per_byte: f64,
    /// Anonymous bytes kept afterwards, per byte of the file.
    pub kept_per_byte: f64,
}

/// `tokenizer.json` through the `tokenizers` crate (measured on files of 57 KB to 14.6 MB, 2K to
/// 256K BPE tokens: it holds about 13 times the file, and 15 times while parsing).
pub const TOKENIZER_JSON: TokenizerCost = TokenizerCost {
    code_bytes: 1 << 20,
    fixed_bytes: 700 << 10,
    load_per_byte: 15.0,
    kept_per_byte: 13.2,
};

/// `tokenizer.model` through frugal's SentencePiece reader (measured on files of 28 KB and
/// 4.7 MB, 2K and 256K pieces).
pub const TOKENIZER_MODEL: TokenizerCost = TokenizerCost {
    code_bytes: 0,
    fixed_bytes: 100 << 10,
    load_per_byte: 11.5,
    kept_per_byte: 9.0,
};

/// How a tensor is held while the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// Used in place from the memory map: file-backed pages in RSS once read, never anonymous,
    /// and given back by the kernel under pressure without any swap.
    Mapped,
    /// Copied into memory the process owns (norm vectors as f32): anonymous.
    Owned,
    /// Quantized while loading into memory the process owns: anonymous. The source pages are
    /// dropped as they are consumed.
    Quantized,
}

impl Storage {
    /// A short description for the plan's text.
    pub fn describe(self) -> &'static str {
        match self {
            Storage::Mapped => "in place from the map (file-backed)",
            Storage::Owned => "owned copies (anonymous)",
            Storage::Quantized => "quantized while loading (anonymous)",
        }
    }
}

/// Where a mapped tensor's bytes lie.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Span {
    /// Index into the checkpoint's files.
    pub file: usize,
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
}

/// One tensor's part of the resident memory.
#[derive(Clone, Debug, Serialize)]
pub struct WeightEntry {
    /// The tensor's name in the checkpoint.
    pub name: String,
    /// How it is held.
    pub storage: Storage,
    /// Resident bytes (for [`Storage::Mapped`], the stored bytes; the plan rounds them to pages).
    pub bytes: u64,
    /// Where the bytes lie in the checkpoint ([`Storage::Mapped`] only).
    pub span: Option<Span>,
    /// True when the bytes become resident while loading, before the first token (norms read
    /// when binding, owned and quantized copies); false when only running reads them.
    pub at_load: bool,
    /// For a mapped table read a row per token seen (Gemma 4's per-layer embeddings), the
    /// bytes of one row: only the rows of the tokens held become resident.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_row_bytes: Option<u64>,
}

/// Every tensor the model reads and how it is held: matrices and int8 scales used in place
/// (read only when running), norm vectors read once when binding (their stored pages) and kept
/// as f32 (owned). Reads headers only.
pub fn weight_entries(binding: &Binding, index: &TensorIndex) -> Vec<WeightEntry> {
    let mapped = |name: &str, at_load: bool| {
        let t = &index.tensors[name];
        WeightEntry {
            name: name.to_string(),
            storage: Storage::Mapped,
            bytes: t.len as u64,
            span: Some(Span {
                file: t.file,
                offset: t.offset as u64,
                len: t.len as u64,
            }),
            at_load,
            token_row_bytes: None,
        }
    };
    let mut out = Vec::new();
    for s in &binding.stored {
        let Some(t) = index.tensors.get(&s.name) else {
            continue; // optional and absent
        };
        // An int8 matrix's per-row scales are read with it.
        let scales = bind::scaler_name(&s.name);
        if s.matrix && index.tensors.contains_key(&scales) {
            out.push(mapped(&scales, false));
        }
        let mut e = mapped(&s.name, !s.matrix);
        if s.keys.iter().any(|k| key::read_by_token_rows(k)) && s.shape.len() == 2 && s.shape[0] > 0
        {
            e.token_row_bytes = Some(t.len as u64 / s.shape[0] as u64);
        }
        out.push(e);
        if !s.matrix {
            out.push(WeightEntry {
                name: s.name.clone(),
                storage: Storage::Owned,
                bytes: t.numel() as u64 * 4,
                span: None,
                at_load: true,
                token_row_bytes: None,
            });
        }
    }
    out
}

/// `entries` with the matrices `quantized_bytes` names (stored name -> quantized size) held as
/// [`Storage::Quantized`] instead of mapped: the hook for quantize-on-load. Their stored pages
/// are read once while loading and dropped, so they no longer count as mapped.
pub fn with_quantized(
    entries: Vec<WeightEntry>,
    quantized_bytes: impl Fn(&str) -> Option<u64>,
) -> Vec<WeightEntry> {
    entries
        .into_iter()
        .map(|e| match (e.storage, quantized_bytes(&e.name)) {
            (Storage::Mapped, Some(bytes)) => WeightEntry {
                storage: Storage::Quantized,
                bytes,
                span: None,
                at_load: true,
                ..e
            },
            _ => e,
        })
        .collect()
}

/// [`weight_entries`] as a run with `--quant kind` holds them: every matrix quantized in
/// anonymous memory at its exact block size ([`super::quantize::QuantPlan`]), the rest as
/// without it.
pub fn entries_for(
    ck: &Checkpoint,
    quant: Option<super::quantize::QuantKind>,
) -> Result<Vec<WeightEntry>> {
    let entries = weight_entries(&ck.binding, &ck.index);
    let Some(kind) = quant else {
        return Ok(entries);
    };
    let q: std::collections::BTreeMap<String, u64> =
        ck.quant_plan(kind)?.matrix_bytes().into_iter().collect();
    Ok(with_quantized(entries, |n| q.get(n).copied()))
}

/// What a run will do, as far as memory goes.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    /// The context limit the KV cache is made for (`--ctx`).
    pub ctx: usize,
    /// Most tokens the cache will hold (prompt plus generated, at most `ctx`).
    pub tokens: usize,
    /// Tokens in the largest prefill chunk (at most [`PREFILL_CHUNK`]).
    pub chunk: usize,
    /// Rows of logits kept: 1 when generating (with the sampler's candidate list), every
    /// position for `frugal logits`.
    pub logits_rows: usize,
    /// Worker threads.
    pub threads: usize,
    /// bf16 weights multiplied with bf16-rounded activations (a bf16 copy of each input).
    pub fast_bf16: bool,
    /// Size of the tokenizer file (0 when there is none).
    pub tokenizer_file_bytes: u64,
    /// Whether the tokenizer file is `tokenizer.json` (else SentencePiece `tokenizer.model`).
    #[serde(skip)]
    pub tokenizer_json: bool,
    /// Bytes held only while loading (e.g. source chunks in flight while quantizing).
    pub load_transient_bytes: u64,
}

impl Workload {
    /// Generation with a context of `ctx` tokens, assuming a prompt that fills it (the worst
    /// case for `ctx`), on `threads` workers.
    pub fn generate(ctx: usize, threads: usize) -> Self {
        let ctx = ctx.max(1);
        Workload {
            ctx,
            tokens: ctx,
            chunk: PREFILL_CHUNK.min(ctx),
            logits_rows: 1,
            threads: threads.max(1),
            fast_bf16: true,
            tokenizer_file_bytes: 0,
            tokenizer_json: true,
            load_transient_bytes: 0,
        }
    }

    /// Generation of at most `new_tokens` after a prompt of at most `prompt_tokens`.
    pub fn with_tokens(mut self, prompt_tokens: usize, new_tokens: usize) -> Self {
        let prompt = prompt_tokens.clamp(1, self.ctx);
        self.tokens = prompt.saturating_add(new_tokens).min(self.ctx);
        self.chunk = PREFILL_CHUNK.min(prompt);
        self
    }

    /// The same workload with the tokenizer beside `ck`'s weights (its file's size and kind).
    pub fn with_tokenizer_of(mut self, ck: &Checkpoint) -> Self {
        (self.tokenizer_file_bytes, self.tokenizer_json) = ck.tokenizer_source_bytes();
        self
    }

    /// The same workload with another context (tokens and chunk clipped to it).
    /// Quantizing while loading: the source chunks in flight count while loading (one being
    /// quantized, one read ahead; see `load::quantize`).
    pub fn with_quantizing(mut self) -> Self {
        self.load_transient_bytes = 2 * super::quantize::CHUNK_BYTES as u64;
        self
    }

    pub fn with_ctx(&self, ctx: usize) -> Self {
        let mut w = self.clone();
        w.ctx = ctx.max(1);
        w.tokens = w.tokens.min(w.ctx);
        w.chunk = w.chunk.min(w.ctx);
        w
    }
}

/// Predicted resident memory of a run, by component. All sizes in bytes.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryPlan {
    /// What the prediction assumes.
    pub workload: Workload,
    /// Weight pages used in place from the map (file-backed; whole pages of the tensors read,
    /// plus the headers read while opening).
    pub mapped_weight_bytes: u64,
    /// Of those, the pages of tables read a row per token (Gemma 4's per-layer embeddings):
    /// the rows of the tokens held, at most.
    pub token_row_bytes: u64,
    /// Weight bytes copied into anonymous memory (norm vectors as f32).
    pub owned_weight_bytes: u64,
    /// Weight bytes quantized while loading (anonymous).
    pub quantized_weight_bytes: u64,
    /// KV cache for the tokens held.
    pub kv_cache_bytes: u64,
    /// Activations and scratch of the largest prefill chunk.
    pub activation_bytes: u64,
    /// Logits (and the sampler's candidates). Never held at once with a chunk's activations:
    /// the peaks count the larger of the two (the logits with [`MemoryPlan::allocator_slack_bytes`]).
    pub logits_bytes: u64,
    /// What the allocator keeps of the freed activations while the logits are held.
    pub allocator_slack_bytes: u64,
    /// The tokenizer in memory once read.
    pub tokenizer_bytes: u64,
    /// The tokenizer's peak while it is read (parsing buffers included).
    pub tokenizer_load_bytes: u64,
    /// Code and libraries (file-backed).
    pub runtime_file_bytes: u64,
    /// The runtime's own anonymous memory (allocator, stacks, threads).
    pub runtime_anon_bytes: u64,
    /// Peak RSS while loading (before the first token).
    pub load_peak_rss_bytes: u64,
    /// Peak anonymous memory while loading.
    pub load_peak_anon_bytes: u64,
    /// Peak RSS while running.
    pub run_peak_rss_bytes: u64,
    /// Peak anonymous memory while running.
    pub run_peak_anon_bytes: u64,
    /// Predicted peak RSS of the whole command.
    pub peak_rss_bytes: u64,
    /// Predicted peak anonymous memory of the whole command.
    pub peak_anon_bytes: u64,
}

impl MemoryPlan {
    /// Bytes of the weights as the model uses them (mapped, owned and quantized).
    pub fn weights_bytes(&self) -> u64 {
        self.mapped_weight_bytes + self.owned_weight_bytes + self.quantized_weight_bytes
    }
}

/// Sums whole 4 KiB pages of `spans` (pages shared by neighbours counted once).
fn page_bytes(mut spans: Vec<Span>) -> u64 {
    const PAGE: u64 = 4096;
    spans.sort_by_key(|s| (s.file, s.offset));
    let mut total = 0;
    let mut cur: Option<(usize, u64, u64)> = None;
    for s in spans.iter().filter(|s| s.len > 0) {
        let (lo, hi) = (
            s.offset / PAGE * PAGE,
            (s.offset + s.len).div_ceil(PAGE) * PAGE,
        );
        match cur {
            Some((f, a, b)) if f == s.file && lo <= b => cur = Some((f, a, b.max(hi))),
            _ => {
                if let Some((_, a, b)) = cur {
                    total += b - a;
                }
                cur = Some((s.file, lo, hi));
            }
        }
    }
    if let Some((_, a, b)) = cur {
        total += b - a;
    }
    total
}

/// The pages read while opening each file: before its first tensor (safetensors' JSON header,
/// a torch archive's pickle) and after its last (a zip's central directory).
fn header_spans(index: &TensorIndex) -> Vec<Span> {
    let mut out = Vec::new();
    for (fi, f) in index.files.iter().enumerate() {
        let len = f.map.len() as u64;
        let ts = index.tensors.values().filter(|t| t.file == fi);
        let first = ts.clone().map(|t| t.offset as u64).min().unwrap_or(len);
        let last = ts.map(|t| (t.offset + t.len) as u64).max().unwrap_or(len);
        out.push(Span {
            file: fi,
            offset: 0,
            len: first,
        });
        out.push(Span {
            file: fi,
            offset: last,
            len: len.saturating_sub(last),
        });
    }
    out
}

/// Bytes of activations and scratch alive at once while a chunk of `n` tokens runs through a
/// layer (see `Gemma::layer`): the residual stream and its normed copy, q/k/v, the attention
/// output and its projection, or the MLP's gate and up; plus the bf16 copy of an input on the
/// fast path and each worker's attention scores.
fn activation_bytes(cfg: &GemmaConfig, w: &Workload) -> u64 {
    let n = w.chunk.max(1) as u64;
    let wd = frugal_model::arch::widths(cfg);
    let (h, qd, kvd, inter) = (wd.hidden as u64, wd.q as u64, wd.kv as u64, wd.ffn as u64);
    // Alive through the layer: x, its normed copy, q, k, v.
    let base = 2 * h + qd + 2 * kvd;
    // Attention: + its output and the output projection's result (and a bf16 copy of the
    // attention output on the fast path). MLP: + the projection's result, gate and up (and a bf16
    // copy of the normed input); `up` is freed before the down projection.
    let bf16 = |cols: u64| if w.fast_bf16 { 2 * n * cols } else { 0 };
    let attn = 4 * n * (base + qd + h) + bf16(qd);
    let mlp = 4 * n * (base + h + 2 * inter) + bf16(h);
    let scores = w.threads as u64 * w.tokens as u64 * 4;
    attn.max(mlp) + scores
}

/// What the allocator keeps of a chunk's freed activations while the logits are made: glibc
/// returns freed memory at the top of its heap only beyond twice its (adaptive) mmap threshold,
/// which the largest activation buffer (the MLP's gate) raises to its own size. One such buffer
/// covers what was measured (0-3 MiB on gemma-2b and gemma-7b, whose gate buffers are 4 and
/// 6 MiB).
fn allocator_slack_bytes(cfg: &GemmaConfig, w: &Workload) -> u64 {
    4 * w.chunk.max(1) as u64 * frugal_model::arch::widths(cfg).ffn as u64
}

/// Bytes of logits held: for generation the chunk's row, its copy, the previous step's and the
/// sampler's (id, value) candidates; for all positions, every row plus one chunk's. The chunk's
/// residual stream, its normed copy and the normed rows the output projection reads are still
/// alive then (and their bf16 copy on the fast path).
fn logits_bytes(cfg: &GemmaConfig, w: &Workload) -> u64 {
    let v = cfg.vocab_size as u64;
    let n = w.chunk.max(1) as u64;
    let h = cfg.hidden_size as u64;
    let (rows, held) = if w.logits_rows <= 1 {
        (1, v * (4 + 4 + 4 + 8))
    } else {
        let rows = w.logits_rows as u64;
        let chunk_rows = rows.min(PREFILL_CHUNK as u64);
        (chunk_rows, (rows + chunk_rows) * v * 4)
    };
    let stream = 4 * h * (2 * n + rows) + if w.fast_bf16 { 2 * h * rows } else { 0 };
    held + stream
}

/// Predicts the memory of running `cfg` with the weights held as `entries` say, for `w`.
pub fn predict(
    cfg: &GemmaConfig,
    index: &TensorIndex,
    entries: &[WeightEntry],
    w: &Workload,
) -> MemoryPlan {
    let headers = header_spans(index);
    let mapped_spans = |load_only: bool| -> Vec<Span> {
        entries
            .iter()
            .filter(|e| e.storage == Storage::Mapped && e.token_row_bytes.is_none())
            .filter(|e| e.at_load || !load_only)
            .filter_map(|e| e.span)
            .chain(headers.iter().copied())
            .collect()
    };
    let sum = |s: Storage| -> u64 {
        entries
            .iter()
            .filter(|e| e.storage == s)
            .map(|e| e.bytes)
            .sum()
    };
    // Tables read by token rows: the pages of at most one row per token held (a row's pages,
    // plus one where it straddles a boundary), never more than the table.
    let row_tables: u64 = entries
        .iter()
        .filter(|e| e.storage == Storage::Mapped && !e.at_load)
        .filter_map(|e| Some((e.token_row_bytes?, e.span?)))
        .map(|(rb, span)| {
            let per_row = (rb.div_ceil(4096) + 1) * 4096;
            page_bytes(vec![span]).min(per_row * w.tokens as u64)
        })
        .sum();
    let mapped = page_bytes(mapped_spans(false)) + row_tables;
    let mapped_at_load = page_bytes(mapped_spans(true));
    let owned = sum(Storage::Owned);
    let quantized = sum(Storage::Quantized);
    let kv = KvCache::bytes_after(cfg, w.ctx, w.tokens) as u64;
    let acts = activation_bytes(cfg, w);
    let logits = logits_bytes(cfg, w);
    let tc = if w.tokenizer_file_bytes == 0 {
        TokenizerCost {
            code_bytes: 0,
            fixed_bytes: 0,
            load_per_byte: 0.0,
            kept_per_byte: 0.0,
        }
    } else if w.tokenizer_json {
        TOKENIZER_JSON
    } else {
        TOKENIZER_MODEL
    };
    let tok_bytes = |per: f64| tc.fixed_bytes + (w.tokenizer_file_bytes as f64 * per) as u64;
    let (tokenizer, tokenizer_load) = (tok_bytes(tc.kept_per_byte), tok_bytes(tc.load_per_byte));
    let rt_file = RUNTIME_FILE_BYTES + tc.code_bytes;
    let rt_anon = RUNTIME_ANON_BYTES + RUNTIME_THREAD_BYTES * w.threads as u64;
    let load_anon = owned + quantized + tokenizer_load + rt_anon + w.load_transient_bytes;
    // A chunk's activations are freed before its logits are made: the larger of the two counts,
    // the logits with what the allocator keeps of the freed activations.
    let slack = allocator_slack_bytes(cfg, w);
    let run_anon = owned + quantized + kv + acts.max(logits + slack) + tokenizer + rt_anon;
    let load_rss = mapped_at_load + rt_file + load_anon;
    let run_rss = mapped + rt_file + run_anon;
    MemoryPlan {
        workload: w.clone(),
        mapped_weight_bytes: mapped,
        token_row_bytes: row_tables,
        owned_weight_bytes: owned,
        quantized_weight_bytes: quantized,
        kv_cache_bytes: kv,
        activation_bytes: acts,
        logits_bytes: logits,
        allocator_slack_bytes: slack,
        tokenizer_bytes: tokenizer,
        tokenizer_load_bytes: tokenizer_load,
        runtime_file_bytes: rt_file,
        runtime_anon_bytes: rt_anon,
        load_peak_rss_bytes: load_rss,
        load_peak_anon_bytes: load_anon,
        run_peak_rss_bytes: run_rss,
        run_peak_anon_bytes: run_anon,
        peak_rss_bytes: load_rss.max(run_rss),
        peak_anon_bytes: load_anon.max(run_anon),
    }
}

/// The plan of `ck` for `w` (the tokenizer's size taken from its file), its matrices quantized
/// while loading when `quant` says so.
pub fn for_checkpoint(
    ck: &Checkpoint,
    w: &Workload,
    quant: Option<super::quantize::QuantKind>,
) -> Result<MemoryPlan> {
    let entries = entries_for(ck, quant)?;
    let mut w = w.clone().with_tokenizer_of(ck);
    if quant.is_some() {
        w = w.with_quantizing();
    }
    Ok(predict(&ck.cfg, &ck.index, &entries, &w))
}

/// The plan as text, one component a line (shared by `plan` and `inspect`).
pub fn text(p: &MemoryPlan, budget: Option<u64>) -> String {
    let w = &p.workload;
    let row = |name: &str, b: u64| format!("    {name:<40} {:>12}\n", human(b));
    let mut s = format!(
        "  memory predicted from the headers (--ctx {}, up to {} tokens held, prefill chunks of {}, {} threads):\n",
        w.ctx, w.tokens, w.chunk, w.threads
    );
    s += &row("weights, in place from the map", p.mapped_weight_bytes);
    if p.token_row_bytes > 0 {
        s += &row("  of which per-layer table rows", p.token_row_bytes);
    }
    if p.owned_weight_bytes > 0 {
        s += &row("weights, owned copies (norms as f32)", p.owned_weight_bytes);
    }
    if p.quantized_weight_bytes > 0 {
        s += &row("weights, quantized while loading", p.quantized_weight_bytes);
    }
    s += &row("KV cache", p.kv_cache_bytes);
    s += &row("activations and scratch (one chunk)", p.activation_bytes);
    s += &row("logits (not held with the above)", p.logits_bytes);
    s += &row(
        "  + freed activations the allocator keeps",
        p.allocator_slack_bytes,
    );
    s += &format!(
        "    {:<40} {:>12}  ({} while reading it)\n",
        "tokenizer",
        human(p.tokenizer_bytes),
        human(p.tokenizer_load_bytes)
    );
    s += &row("runtime: code (file-backed)", p.runtime_file_bytes);
    s += &row("runtime: heap, stacks, threads", p.runtime_anon_bytes);
    s += &format!(
        "    {:<40} {:>12}  (anonymous {})\n",
        "peak while loading, RSS",
        human(p.load_peak_rss_bytes),
        human(p.load_peak_anon_bytes)
    );
    s += &format!(
        "    {:<40} {:>12}  (anonymous {})\n",
        "peak while running, RSS",
        human(p.run_peak_rss_bytes),
        human(p.run_peak_anon_bytes)
    );
    s += &row("peak RSS", p.peak_rss_bytes);
    s += &row("peak anonymous", p.peak_anon_bytes);
    if let Some(b) = budget {
        if p.peak_rss_bytes <= b {
            s += &format!(
                "    budget {}: fits, {} to spare\n",
                human(b),
                human(b - p.peak_rss_bytes)
            );
        } else {
            s += &format!(
                "    budget {}: does not fit, {} short\n",
                human(b),
                human(p.peak_rss_bytes - b)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_read_by_token_rows_counts_the_rows_of_the_tokens_held() {
        let cfg = GemmaConfig::from_json(
            &frugal_model::arch::Variant::by_name("tiny-gemma")
                .unwrap()
                .config_json(),
            "tiny-gemma",
        )
        .unwrap();
        let table = |row: Option<u64>| WeightEntry {
            name: "t".into(),
            storage: Storage::Mapped,
            bytes: 100 << 20,
            span: Some(Span {
                file: 0,
                offset: 0,
                len: 100 << 20,
            }),
            at_load: false,
            token_row_bytes: row,
        };
        let index = TensorIndex::new();
        let w = Workload::generate(16, 1);
        let whole = predict(&cfg, &index, &[table(None)], &w);
        let rows = predict(&cfg, &index, &[table(Some(10_000))], &w);
        assert_eq!(whole.mapped_weight_bytes, 100 << 20);
        assert_eq!(whole.token_row_bytes, 0);
        // 10,000 bytes span 3 pages, or 4 across a boundary; 16 tokens held.
        assert_eq!(rows.token_row_bytes, 16 * 4 * 4096);
        assert_eq!(rows.mapped_weight_bytes, 16 * 4 * 4096);
        // Never more than the table.
        let long = predict(
            &cfg,
            &index,
            &[table(Some(10_000))],
            &Workload::generate(1 << 20, 1),
        );
        assert_eq!(long.token_row_bytes, 100 << 20);
    }

    #[test]
    fn pages_are_counted_once() {
        let s = |file, offset, len| Span { file, offset, len };
        assert_eq!(page_bytes(vec![s(0, 0, 1)]), 4096);
        assert_eq!(page_bytes(vec![s(0, 0, 4096), s(0, 4096, 1)]), 8192);
        assert_eq!(page_bytes(vec![s(0, 10, 10), s(0, 100, 10)]), 4096);
        assert_eq!(page_bytes(vec![s(0, 10, 10), s(1, 100, 10)]), 8192);
        assert_eq!(page_bytes(vec![s(0, 4000, 200)]), 8192);
        assert_eq!(page_bytes(vec![s(0, 0, 0)]), 0);
    }

    #[test]
    fn quantized_entries_move_from_mapped_to_anonymous() {
        let cfg = GemmaConfig::from_json(
            &frugal_model::arch::Variant::by_name("tiny-gemma")
                .unwrap()
                .config_json(),
            "tiny-gemma",
        )
        .unwrap();
        let span = |offset| {
            Some(Span {
                file: 0,
                offset,
                len: 1 << 20,
            })
        };
        let entries = vec![
            WeightEntry {
                name: "a".into(),
                storage: Storage::Mapped,
                bytes: 1 << 20,
                span: span(0),
                at_load: false,
                token_row_bytes: None,
            },
            WeightEntry {
                name: "b".into(),
                storage: Storage::Mapped,
                bytes: 1 << 20,
                span: span(1 << 20),
                at_load: false,
                token_row_bytes: None,
            },
        ];
        let index = TensorIndex::new();
        let w = Workload::generate(16, 1);
        let before = predict(&cfg, &index, &entries, &w);
        let q = with_quantized(entries, |n| (n == "a").then_some(300 << 10));
        assert_eq!(q[0].storage, Storage::Quantized);
        assert_eq!(q[1].storage, Storage::Mapped);
        let after = predict(&cfg, &index, &q, &w);
        assert_eq!(before.mapped_weight_bytes, 2 << 20);
        assert_eq!(after.mapped_weight_bytes, 1 << 20);
        assert_eq!(after.quantized_weight_bytes, 300 << 10);
        assert_eq!(after.peak_anon_bytes, before.peak_anon_bytes + (300 << 10));
        assert_eq!(
            after.peak_rss_bytes + (1 << 20),
            before.peak_rss_bytes + (300 << 10)
        );
        // Quantized weights are resident from loading on.
        assert!(after.load_peak_anon_bytes >= 300 << 10);
    }
}
