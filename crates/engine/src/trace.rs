//! `--mem-trace FILE`: resident memory sampled through a run, with phase marks, written as it
//! goes (a run that is killed still leaves its trace up to the last second), and read back by
//! `frugal report` (which draws it as a chart).
//!
//! Samples come from the [`crate::memory::Monitor`]'s thread, which reads `/proc/self/status`
//! every 2 ms; the trace keeps one reading every [`INTERVAL_MS`] ms. The file stays small on long
//! runs: after [`SAMPLES_PER_INTERVAL`] samples the interval doubles, so a run of length T writes
//! at most `SAMPLES_PER_INTERVAL * (1 + log2(T / 100 s))` samples and the process holds none of
//! them (each line is written through an 8 KiB buffer, flushed every second and at every mark).
//!
//! # File format
//!
//! JSON lines, one object per line, each with a `kind`; times `t` are seconds since the trace
//! began, sizes are bytes:
//!
//! ```text
//! {"kind":"header","format":"frugal-mem-trace","version":1,"command":"run","model":"m/","args":["run","-m","m/"],"interval_ms":10}
//! {"kind":"sample","t":0.0102,"rss":9043968,"anon":2195456,"file":6848512}
//! {"kind":"mark","t":0.0151,"phase":"plan"}
//! {"kind":"info","t":0.0152,"weights_bytes":5012345678,"budget_bytes":6442450944,"predicted_peak_rss_bytes":5123456789,"predicted_peak_anon_bytes":123456789}
//! {"kind":"end","t":12.5,"peak_rss_bytes":5100000000,"peak_anon_bytes":120000000,"peak_file_bytes":4980000000}
//! ```
//!
//! The header comes first; a mark is the moment the named phase begins (the phases of a run:
//! `map` (mapping the files, reading headers), `plan`, `load` (tokenizer, binding the weights),
//! `prefill`, `first token` (decoding begins), `end`; other code may add its own with [`mark`],
//! e.g. `quantize`). `info` lines may repeat; later values win, `budget_bytes` may be `null`.
//! Readers skip kinds they do not know.

use crate::memory::{Peaks, Status};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The sampling interval a trace starts with, in milliseconds.
pub const INTERVAL_MS: u64 = 10;

/// Samples written at one interval before the interval doubles.
pub const SAMPLES_PER_INTERVAL: usize = 10_000;

/// The `format` value of a trace's header line.
pub const FORMAT: &str = "frugal-mem-trace";

/// Phase names the commands mark (see the module doc).
pub mod phase {
    /// Mapping the checkpoint's files and reading their headers.
    pub const MAP: &str = "map";
    /// Predicting memory from the headers and checking the budget.
    pub const PLAN: &str = "plan";
    /// Loading the tokenizer and binding the weights.
    pub const LOAD: &str = "load";
    /// Running the prompt (or the tokens of `logits`) through the model.
    pub const PREFILL: &str = "prefill";
    /// The first new token is out; decoding begins.
    pub const FIRST_TOKEN: &str = "first token";
    /// The run is over.
    pub const END: &str = "end";
}

/// The first line of a trace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// The frugal command traced (`run`, `logits`, ...).
    pub command: String,
    /// The model path as given.
    pub model: String,
    /// The command line after the program name.
    #[serde(default)]
    pub args: Vec<String>,
    /// The starting sampling interval.
    pub interval_ms: u64,
}

/// One reading of resident memory.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Seconds since the trace began.
    pub t: f64,
    /// Resident set size.
    pub rss: u64,
    /// Resident anonymous memory.
    pub anon: u64,
    /// Resident file-backed memory.
    pub file: u64,
}

/// The moment a phase begins.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Mark {
    /// Seconds since the trace began.
    pub t: f64,
    /// The phase's name.
    pub phase: String,
}

/// Facts about the run learnt after it began (from the plan).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Info {
    /// Bytes of the weights the model uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_bytes: Option<u64>,
    /// The `--max-memory` budget (`null` without one).
    #[serde(default)]
    pub budget_bytes: Option<u64>,
    /// The plan's predicted peak RSS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_peak_rss_bytes: Option<u64>,
    /// The plan's predicted peak anonymous memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_peak_anon_bytes: Option<u64>,
}

/// One line of a trace file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line {
    Header(Header),
    Sample(Sample),
    Mark(Mark),
    Info {
        t: f64,
        #[serde(flatten)]
        info: Info,
    },
    End {
        t: f64,
        #[serde(flatten)]
        peaks: Peaks,
    },
}

/// A trace being written.
struct Writer {
    out: std::io::BufWriter<std::fs::File>,
    path: String,
    start: Instant,
    interval: Duration,
    next: Instant,
    at_interval: usize,
    last_flush: Instant,
    error: Option<std::io::Error>,
}

impl Writer {
    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn line(&mut self, l: &Line) {
        if self.error.is_some() {
            return;
        }
        let r = serde_json::to_writer(&mut self.out, l)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    fn sample(&mut self, s: &Status) {
        let t = self.t();
        self.line(&Line::Sample(Sample {
            t,
            rss: s.rss,
            anon: s.anon,
            file: s.file,
        }));
        self.at_interval += 1;
        if self.at_interval >= SAMPLES_PER_INTERVAL {
            self.interval *= 2;
            self.at_interval = 0;
        }
        let now = Instant::now();
        self.next = now + self.interval;
        if now.duration_since(self.last_flush) >= Duration::from_secs(1) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }
}

static TRACE: Mutex<Option<Writer>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Writer) -> R) -> Option<R> {
    let mut g = TRACE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_mut().map(f)
}

/// Starts tracing into `path` (created or truncated) for `command` on `model`. Samples are taken
/// by a running [`crate::memory::Monitor`]; until [`finish`], [`mark`] and [`info`] add lines.
pub fn begin(path: &Path, command: &str, model: &Path) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| {
        format!(
            "--mem-trace {}: cannot create the trace file (does its folder exist?)",
            path.display()
        )
    })?;
    let now = Instant::now();
    let mut w = Writer {
        out: std::io::BufWriter::with_capacity(8 << 10, file),
        path: path.display().to_string(),
        start: now,
        interval: Duration::from_millis(INTERVAL_MS),
        next: now,
        at_interval: 0,
        last_flush: now,
        error: None,
    };
    w.line(&Line::Header(Header {
        format: FORMAT.into(),
        version: 1,
        command: command.into(),
        model: model.display().to_string(),
        args: std::env::args().skip(1).collect(),
        interval_ms: INTERVAL_MS,
    }));
    w.sample(&crate::memory::status());
    *TRACE.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
    crate::memory::on_sample(tick);
    Ok(())
}

/// Called by the monitor thread with each reading: writes a sample when one is due.
pub fn tick(s: &Status) {
    with(|w| {
        if Instant::now() >= w.next {
            w.sample(s);
        }
    });
}

/// Marks the beginning of phase `name` (with a sample taken now). Does nothing when no trace is
/// being written, so any code may call it (e.g. `mark("quantize")`).
pub fn mark(name: &str) {
    with(|w| {
        let t = w.t();
        w.line(&Line::Mark(Mark {
            t,
            phase: name.into(),
        }));
        w.sample(&crate::memory::status());
        w.flush();
    });
}

/// Records facts learnt during the run (weights' size, budget, prediction) for the chart.
pub fn info(info: Info) {
    with(|w| {
        let t = w.t();
        w.line(&Line::Info { t, info });
    });
}

/// Ends the trace: a last sample, the `end` mark and line (with the run's peaks when known), and
/// the file flushed and closed. Does nothing when no trace is being written; a write error
/// anywhere in the trace is reported here.
pub fn finish(peaks: Option<Peaks>) -> Result<()> {
    let Some(mut w) = TRACE.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return Ok(());
    };
    let t = w.t();
    w.line(&Line::Mark(Mark {
        t,
        phase: phase::END.into(),
    }));
    w.sample(&crate::memory::status());
    let t = w.t();
    w.line(&Line::End {
        t,
        peaks: peaks.unwrap_or_default(),
    });
    w.flush();
    match w.error {
        Some(e) => bail!("--mem-trace {}: writing the trace failed: {e}", w.path),
        None => Ok(()),
    }
}

/// A trace read back from its file.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The first line.
    pub header: Header,
    /// Readings in time order.
    pub samples: Vec<Sample>,
    /// Phase marks in time order.
    pub marks: Vec<Mark>,
    /// Facts about the run (later `info` lines override earlier ones).
    pub info: Info,
    /// The run's peaks, when it ended normally.
    pub end: Option<Peaks>,
    /// True when the last line was cut short (the run was killed while writing): it is ignored.
    pub truncated: bool,
}

impl Trace {
    /// Reads and checks a trace file; errors name the file and line.
    pub fn read(path: &Path) -> Result<Trace> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot open the trace", path.display()))?;
        Self::parse(std::io::BufReader::new(file), &path.display().to_string())
    }

    /// Parses a trace from `r`; `name` is used in errors.
    pub fn parse(mut r: impl BufRead, name: &str) -> Result<Trace> {
        let not_trace = |why: String| {
            anyhow::anyhow!("{name}: not a frugal memory trace ({why}); make one with `frugal run ... --mem-trace FILE`")
        };
        let mut header: Option<Header> = None;
        let (mut samples, mut marks) = (Vec::new(), Vec::new());
        let mut info = Info::default();
        let mut end = None;
        let mut truncated = false;
        let mut buf = Vec::new();
        let mut n = 0usize;
        loop {
            buf.clear();
            let got = r
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("{name}: cannot read"))?;
            if got == 0 {
                break;
            }
            n += 1;
            let complete = buf.ends_with(b"\n");
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let v: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) if !complete && header.is_some() => {
                    truncated = true;
                    break;
                }
                Err(e) => {
                    if header.is_none() {
                        return Err(not_trace(format!("line 1 is not JSON: {e}")));
                    }
                    bail!("{name} line {n}: not valid JSON ({e}); the trace is corrupt");
                }
            };
            let known = matches!(
                v.get("kind").and_then(|k| k.as_str()),
                Some("header" | "sample" | "mark" | "info" | "end")
            );
            if header.is_none() && v.get("kind").and_then(|k| k.as_str()) != Some("header") {
                return Err(not_trace("the first line is not its header".into()));
            }
            if !known {
                if v.get("kind").and_then(|k| k.as_str()).is_none() {
                    bail!("{name} line {n}: a line without a `kind`; the trace is corrupt");
                }
                continue;
            }
            let line: Line = serde_json::from_value(v)
                .with_context(|| format!("{name} line {n}: a malformed trace line"))?;
            match line {
                Line::Header(h) => {
                    if header.is_some() {
                        bail!("{name} line {n}: a second header; the trace is corrupt (two runs written into one file?)");
                    }
                    if h.format != FORMAT {
                        return Err(not_trace(format!("its format is `{}`", h.format)));
                    }
                    if h.version != 1 {
                        bail!("{name}: trace format version {} is newer than this frugal reads (1); use a newer frugal", h.version);
                    }
                    header = Some(h);
                }
                Line::Sample(s) => {
                    if !s.t.is_finite() || s.t < 0.0 {
                        bail!("{name} line {n}: sample time {} is not a time", s.t);
                    }
                    samples.push(s)
                }
                Line::Mark(m) => marks.push(m),
                Line::Info { info: i, .. } => {
                    info.weights_bytes = i.weights_bytes.or(info.weights_bytes);
                    info.budget_bytes = i.budget_bytes.or(info.budget_bytes);
                    info.predicted_peak_rss_bytes =
                        i.predicted_peak_rss_bytes.or(info.predicted_peak_rss_bytes);
                    info.predicted_peak_anon_bytes = i
                        .predicted_peak_anon_bytes
                        .or(info.predicted_peak_anon_bytes);
                }
                Line::End { peaks, .. } => end = Some(peaks),
            }
        }
        let Some(header) = header else {
            return Err(not_trace("the file is empty".into()));
        };
        if samples.is_empty() {
            bail!("{name}: the trace holds no samples");
        }
        samples.sort_by(|a, b| a.t.total_cmp(&b.t));
        marks.sort_by(|a, b| a.t.total_cmp(&b.t));
        Ok(Trace {
            header,
            samples,
            marks,
            info,
            end,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Trace> {
        Trace::parse(s.as_bytes(), "t.jsonl")
    }

    const HEAD: &str = r#"{"kind":"header","format":"frugal-mem-trace","version":1,"command":"run","model":"m","args":[],"interval_ms":10}"#;

    #[test]
    fn reads_lines() {
        let text = format!(
            "{HEAD}\n{}\n{}\n{}\n{}\n{}\n",
            r#"{"kind":"sample","t":0.0,"rss":10,"anon":4,"file":6}"#,
            r#"{"kind":"mark","t":0.5,"phase":"load"}"#,
            r#"{"kind":"info","t":0.5,"weights_bytes":100,"budget_bytes":null}"#,
            r#"{"kind":"future","t":0.6,"x":1}"#,
            r#"{"kind":"end","t":1.0,"peak_rss_bytes":10,"peak_anon_bytes":4,"peak_file_bytes":6}"#,
        );
        let t = parse(&text).unwrap();
        assert_eq!(t.samples.len(), 1);
        assert_eq!(t.marks[0].phase, "load");
        assert_eq!(t.info.weights_bytes, Some(100));
        assert_eq!(t.end.unwrap().peak_rss_bytes, 10);
        assert!(!t.truncated);
    }

    #[test]
    fn long_runs_sample_less_often() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let now = Instant::now();
        let mut w = Writer {
            out: std::io::BufWriter::new(std::fs::File::create(&path).unwrap()),
            path: "t".into(),
            start: now,
            interval: Duration::from_millis(INTERVAL_MS),
            next: now,
            at_interval: 0,
            last_flush: now,
            error: None,
        };
        for _ in 0..SAMPLES_PER_INTERVAL * 2 + 5 {
            w.sample(&Status::default());
        }
        assert_eq!(w.interval, Duration::from_millis(INTERVAL_MS * 4));
        assert_eq!(w.at_interval, 5);
    }

    #[test]
    fn a_cut_last_line_is_ignored() {
        let text = format!(
            "{HEAD}\n{}\n{}",
            r#"{"kind":"sample","t":0.0,"rss":10,"anon":4,"file":6}"#,
            r#"{"kind":"sample","t":0.01,"rss":1"#
        );
        let t = parse(&text).unwrap();
        assert!(t.truncated);
        assert_eq!(t.samples.len(), 1);
    }

    #[test]
    fn corrupt_traces_are_errors() {
        let sample = r#"{"kind":"sample","t":0.0,"rss":10,"anon":4,"file":6}"#;
        for (text, want) in [
            (String::new(), "not a frugal memory trace"),
            ("hello\n".to_string(), "not a frugal memory trace"),
            (format!("{sample}\n"), "not a frugal memory trace"),
            (format!("{HEAD}\n"), "no samples"),
            (
                format!("{HEAD}\n{{\"kind\":\"sample\"\n{sample}\n"),
                "line 2",
            ),
            (
                format!(
                    "{HEAD}\n{}\n",
                    r#"{"kind":"sample","t":"x","rss":1,"anon":1,"file":1}"#
                ),
                "line 2",
            ),
            (format!("{HEAD}\n{HEAD}\n{sample}\n"), "second header"),
            (format!("{HEAD}\n[1,2]\n"), "line 2"),
        ] {
            let e = format!("{:#}", parse(&text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
