//! `frugal bench`: load time, time to first token, prefill and decode rates (medians over
//! runs) and the memory report, as text or JSON.

use crate::ModelArgs;
use anyhow::{bail, Result};
use clap::Args;
use frugal_engine::generate::sampler::argmax;
use frugal_engine::memory::human;
use frugal_engine::session::Session;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: usize,
    /// Tokens to decode per run.
    #[arg(long, default_value_t = 16)]
    pub gen_tokens: usize,
    /// Runs (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub fn bench(a: BenchArgs) -> Result<()> {
    if a.prompt_tokens == 0 || a.gen_tokens == 0 || a.runs == 0 {
        bail!("--prompt-tokens, --gen-tokens and --runs must each be at least 1");
    }
    let ctx = a.prompt_tokens + a.gen_tokens;
    if ctx > a.model.ctx {
        bail!(
            "--prompt-tokens + --gen-tokens = {ctx} exceeds --ctx {}: raise --ctx",
            a.model.ctx
        );
    }
    let t0 = Instant::now();
    let s = Session::open(a.model.settings(), |w| {
        w.with_ctx(ctx).with_tokens(a.prompt_tokens, a.gen_tokens)
    })?;
    let model = s.model()?;
    let load_s = t0.elapsed().as_secs_f64();
    // A fixed pseudo-random prompt of valid ids, starting with BOS.
    let limit = s.tok.as_ref().map_or(model.cfg.vocab_size, |t| {
        t.vocab_size.min(model.cfg.vocab_size)
    }) as u64;
    let mut st = 12345u64;
    let mut prompt = vec![model.cfg.bos_token_id];
    while prompt.len() < a.prompt_tokens {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        prompt.push(((st >> 33) % limit.max(5)).max(4) as u32);
    }
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    // Bytes fetched from storage while decoding (streamed layers), and the time it took.
    let (mut decode_read_bytes, mut decode_secs) = (0u64, 0f64);
    let mut ttft_s = 0.0;
    let mut kv_bytes = 0usize;
    // The decode ceiling: after each run's decode, the weights one token reads are read once
    // more at the memory's full rate (not when streaming: they are not all resident).
    let resident = s.stream_plan().is_none();
    let mats = model.decode_matrices();
    let parts: Vec<&[u8]> = mats
        .iter()
        .flat_map(|m| std::iter::once(m.data).chain(m.scale.map(|s| s.data)))
        .collect();
    let token_bytes: u64 = mats.iter().map(|m| m.stored_bytes() as u64).sum();
    let mut read_rates = Vec::new();
    for run in 0..a.runs {
        let mut cache = model.new_cache(ctx);
        if run == 0 {
            frugal_engine::trace::mark(frugal_engine::trace::phase::PREFILL);
        }
        let t = Instant::now();
        let logits = model.forward(&prompt, &mut cache, false)?;
        let p = t.elapsed().as_secs_f64();
        let mut tok = argmax(&logits) as u32;
        if run == 0 {
            ttft_s = t0.elapsed().as_secs_f64();
            frugal_engine::trace::mark(frugal_engine::trace::phase::FIRST_TOKEN);
        }
        let io0 = frugal_engine::memory::io_read_bytes();
        let t = Instant::now();
        for _ in 1..a.gen_tokens {
            let l = model.forward(&[tok], &mut cache, false)?;
            tok = argmax(&l) as u32;
        }
        let d = t.elapsed().as_secs_f64();
        if let (Some(a0), Some(a1)) = (io0, frugal_engine::memory::io_read_bytes()) {
            decode_read_bytes += a1.saturating_sub(a0);
            decode_secs += d;
        }
        prefill.push(prompt.len() as f64 / p);
        if a.gen_tokens > 1 {
            decode.push((a.gen_tokens - 1) as f64 / d);
        }
        if resident {
            read_rates.push(frugal_kernels::read_rate(&parts));
        }
        kv_bytes = kv_bytes.max(cache.bytes());
        s.monitor.sample();
    }
    let report = s.report(kv_bytes as u64);
    let prefill_tok_s = median(&mut prefill);
    let decode_tok_s = median(&mut decode);
    let threads = rayon::current_num_threads();
    let read_rate = (!read_rates.is_empty()).then(|| median(&mut read_rates));
    let ceiling = read_rate.map(|r| r / token_bytes.max(1) as f64);
    if a.json {
        let mut v = serde_json::to_value(report)?;
        let o = v.as_object_mut().expect("object");
        for (k, val) in [
            ("load_s", serde_json::json!(load_s)),
            ("ttft_s", serde_json::json!(ttft_s)),
            ("prefill_tok_s", serde_json::json!(prefill_tok_s)),
            ("decode_tok_s", serde_json::json!(decode_tok_s)),
            ("prompt_tokens", serde_json::json!(prompt.len())),
            ("gen_tokens", serde_json::json!(a.gen_tokens)),
            ("runs", serde_json::json!(a.runs)),
            ("threads", serde_json::json!(threads)),
            ("exact", serde_json::json!(a.model.exact)),
            ("prefill_runs_tok_s", serde_json::json!(prefill)),
            ("decode_runs_tok_s", serde_json::json!(decode)),
        ] {
            o.insert(k.into(), val);
        }
        o.insert(
            "decode_bytes_per_token".into(),
            serde_json::json!(token_bytes),
        );
        if let (Some(r), Some(c)) = (read_rate, ceiling) {
            o.insert("weights_read_bytes_per_s".into(), serde_json::json!(r));
            o.insert("decode_ceiling_tok_s".into(), serde_json::json!(c));
            o.insert(
                "decode_of_ceiling".into(),
                serde_json::json!(decode_tok_s / c),
            );
        }
        if let Some(p) = s.stream_plan() {
            o.insert(
                "streamed_bytes_per_token".into(),
                serde_json::json!(p.streamed_bytes_per_token),
            );
            o.insert(
                "decode_disk_read_bytes_per_s".into(),
                serde_json::json!(decode_read_bytes as f64 / decode_secs.max(1e-9)),
            );
        }
        let w = report.weights_bytes.max(1) as f64;
        o.insert(
            "peak_rss_ratio".into(),
            serde_json::json!(report.peaks.peak_rss_bytes as f64 / w),
        );
        o.insert(
            "peak_anon_ratio".into(),
            serde_json::json!(report.peaks.peak_anon_bytes as f64 / w),
        );
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} ({}, {} threads)",
            s.ck.source(),
            human(report.weights_bytes),
            threads
        );
        println!("  load              {load_s:.3} s");
        println!(
            "  time to 1st token {ttft_s:.3} s ({} prompt tokens, cold)",
            prompt.len()
        );
        println!(
            "  prefill           {prefill_tok_s:.1} tok/s (median of {})",
            a.runs
        );
        println!(
            "  decode            {decode_tok_s:.2} tok/s (median of {})",
            a.runs
        );
        if let (Some(r), Some(c)) = (read_rate, ceiling) {
            println!(
                "  ceiling           {c:.2} tok/s: {} per token, the weights read at {:.1} GB/s \
                 (decode at {:.0} % of it)",
                human(token_bytes),
                r / 1e9,
                100.0 * decode_tok_s / c
            );
        }
        if let Some(p) = s.stream_plan() {
            let rate = decode_read_bytes as f64 / decode_secs.max(1e-9);
            println!(
                "  streaming         {} per token from disk; decoding read {}/s",
                human(p.streamed_bytes_per_token),
                human(rate as u64)
            );
        }
    }
    eprintln!("{}", report.text());
    Ok(())
}
