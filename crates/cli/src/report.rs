//! `frugal report`: a `--mem-trace` drawn as an SVG chart, with its sampled peaks and phases.

use anyhow::Result;
use clap::Args;
use frugal_engine::memory::human;
use frugal_engine::trace;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A memory trace written with --mem-trace FILE.
    pub trace: PathBuf,
    /// The SVG chart to write.
    #[arg(short = 'o', long = "out", value_name = "SVG")]
    pub out: PathBuf,
}

pub fn report(a: ReportArgs) -> Result<()> {
    let t = crate::chart::render(&a.trace, &a.out)?;
    let peak = |f: fn(&trace::Sample) -> u64| t.samples.iter().map(f).max().unwrap_or(0);
    let span = t.samples.last().map_or(0.0, |s| s.t);
    let marks: Vec<String> = t
        .marks
        .iter()
        .map(|m| format!("{} {:.2}s", m.phase, m.t))
        .collect();
    eprintln!(
        "{}: frugal {} on {}, {} samples over {:.2} s; sampled peaks RSS {}, anonymous {}, file-backed {}{}",
        a.out.display(),
        t.header.command,
        t.header.model,
        t.samples.len(),
        span,
        human(peak(|s| s.rss)),
        human(peak(|s| s.anon)),
        human(peak(|s| s.file)),
        if t.truncated {
            " (the trace's last line was cut short: the run was stopped)"
        } else {
            ""
        }
    );
    if !marks.is_empty() {
        eprintln!("  phases: {}", marks.join(", "));
    }
    Ok(())
}
