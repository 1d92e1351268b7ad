//! Memory as the operating system counts it: `/proc/self/status` (VmHWM, VmRSS, RssAnon,
//! RssFile), sampled by a background thread so peaks of anonymous and file-backed memory are
//! caught, and the report printed at the end of every run.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One reading of `/proc/self/status`, in bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Status {
    /// Peak resident set size (VmHWM), kept by the kernel.
    pub hwm: u64,
    /// Resident set size now (VmRSS).
    pub rss: u64,
    /// Resident anonymous memory (RssAnon): heap, stacks, owned copies.
    pub anon: u64,
    /// Resident file-backed memory (RssFile): mapped weights, code.
    pub file: u64,
}

/// Reads `/proc/self/status`; zeros where unavailable (non-Linux).
pub fn status() -> Status {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut s = Status::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let key = it.next().unwrap_or("");
        let kb: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key {
            "VmHWM:" => s.hwm = kb * 1024,
            "VmRSS:" => s.rss = kb * 1024,
            "RssAnon:" => s.anon = kb * 1024,
            "RssFile:" => s.file = kb * 1024,
            _ => {}
        }
    }
    s
}

/// Called with every reading the monitor's thread takes (set once, by `--mem-trace`).
static SAMPLE_HOOK: std::sync::OnceLock<fn(&Status)> = std::sync::OnceLock::new();

/// Has every monitor's thread call `hook` with each reading (the first hook set stays).
pub fn on_sample(hook: fn(&Status)) {
    let _ = SAMPLE_HOOK.set(hook);
}

/// Samples memory in the background and keeps the peaks.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    peaks: Arc<[AtomicU64; 3]>,
    handle: Option<JoinHandle<()>>,
}

/// Peaks observed over a run.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct Peaks {
    /// Peak resident set size.
    pub peak_rss_bytes: u64,
    /// Peak resident anonymous memory (sampled).
    pub peak_anon_bytes: u64,
    /// Peak resident file-backed memory (sampled).
    pub peak_file_bytes: u64,
}

impl Monitor {
    /// Starts sampling every 2 ms.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks: Arc<[AtomicU64; 3]> =
            Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let (s2, p2) = (stop.clone(), peaks.clone());
        let handle = std::thread::Builder::new()
            .name("frugal-mem".into())
            .stack_size(64 << 10)
            .spawn(move || {
                while !s2.load(Ordering::Relaxed) {
                    let s = record(&p2);
                    // A `--mem-trace` in progress takes its samples from this thread.
                    if let Some(hook) = SAMPLE_HOOK.get() {
                        hook(&s);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
            .ok();
        let m = Monitor {
            stop,
            peaks,
            handle,
        };
        m.sample();
        m
    }

    /// Takes a reading now (call at phase ends so short peaks are not missed).
    pub fn sample(&self) {
        record(&self.peaks);
    }

    /// Peaks so far; peak RSS is the kernel's own high-water mark.
    pub fn peaks(&self) -> Peaks {
        self.sample();
        let st = status();
        Peaks {
            peak_rss_bytes: st.hwm.max(self.peaks[0].load(Ordering::Relaxed)),
            peak_anon_bytes: self.peaks[1].load(Ordering::Relaxed),
            peak_file_bytes: self.peaks[2].load(Ordering::Relaxed),
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn record(p: &[AtomicU64; 3]) -> Status {
    let s = status();
    p[0].fetch_max(s.rss, Ordering::Relaxed);
    p[1].fetch_max(s.anon, Ordering::Relaxed);
    p[2].fetch_max(s.file, Ordering::Relaxed);
    s
}

/// The memory report of a run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Report {
    /// Bytes of the checkpoint's tensors.
    pub weights_bytes: u64,
    /// Bytes the KV cache held at the end.
    pub kv_cache_bytes: u64,
    #[serde(flatten)]
    pub peaks: Peaks,
    /// The `--max-memory` budget, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
}

/// Bytes this process has caused to be fetched from storage (`read_bytes` of
/// `/proc/self/io`), or `None` where the kernel does not say.
pub fn io_read_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("read_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Formats bytes as MiB or GiB.
pub fn human(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

impl Report {
    /// Human-readable lines for stderr.
    pub fn text(&self) -> String {
        let w = self.weights_bytes.max(1) as f64;
        let p = &self.peaks;
        format!(
            "memory: weights {}, KV cache {}\n  peak RSS       {:>10}  ({:.3}x weights)\n  peak anonymous {:>10}  ({:.3}x weights)\n  peak file      {:>10}  ({:.3}x weights)",
            human(self.weights_bytes),
            human(self.kv_cache_bytes),
            human(p.peak_rss_bytes),
            p.peak_rss_bytes as f64 / w,
            human(p.peak_anon_bytes),
            p.peak_anon_bytes as f64 / w,
            human(p.peak_file_bytes),
            p.peak_file_bytes as f64 / w,
        ) + &self.budget_text()
    }

    /// The budget line (empty without `--max-memory`): peak RSS against the budget, and a
    /// warning when the budget was exceeded.
    fn budget_text(&self) -> String {
        let Some(b) = self.budget_bytes else {
            return String::new();
        };
        let peak = self.peaks.peak_rss_bytes;
        let mut s = format!(
            "\n  budget         {:>10}  (peak RSS {:.1} % of it)",
            human(b),
            peak as f64 * 100.0 / b.max(1) as f64
        );
        if peak > b {
            s += &format!(
                "\n  warning: peak RSS exceeded the --max-memory budget by {}; please report it with `frugal plan` output",
                human(peak - b)
            );
        }
        s
    }
}

/// A size as `--max-memory` takes it, rounded up to a MiB (so a printed budget is enough):
/// `123MiB`, or hundredths of a GiB rounded up (`1.01GiB`).
pub fn size_arg(b: u64) -> String {
    let mib = b.div_ceil(1 << 20);
    if mib >= 1024 {
        let cg = (mib * 100).div_ceil(1024);
        format!("{}.{:02}GiB", cg / 100, cg % 100)
    } else {
        format!("{mib}MiB")
    }
}

/// Parses a memory size as `--max-memory` takes it: a number (decimals allowed) and an optional
/// unit, case-insensitive. `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of 1024
/// (as `free`, `top` and llama.cpp count: `4G` = `4GiB` = 4 * 2^30 bytes); `KB`, `MB`, `GB`, `TB`
/// are powers of 1000 (`4GB` = 4 * 10^9 bytes); no unit, or `B`, means bytes. Fractions are
/// rounded down to a whole byte. Examples: `4GiB`, `4096MiB`, `4G`, `1.5GiB`, `512M`, `8GB`,
/// `1073741824`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!(
            "`{s}` is not a size: give a number and an optional unit, like 4GiB, 4096MiB, 4G, 1.5GiB, 512M, 8GB or plain bytes (K/M/G/T and KiB/MiB/GiB/TiB count in 1024s, KB/MB/GB/TB in 1000s)"
        )
    };
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return Err(bad());
    }
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = match num.parse::<u64>() {
        // Whole numbers exactly (no float rounding of large byte counts).
        Ok(n) => n.checked_mul(mult),
        Err(_) => {
            let v: f64 = num.parse().map_err(|_| bad())?;
            let b = v * mult as f64;
            (b.is_finite() && b < u64::MAX as f64).then_some(b as u64)
        }
    };
    match bytes {
        Some(0) => Err(format!("`{s}`: a memory size must be at least 1 byte")),
        Some(b) => Ok(b),
        None => Err(format!("`{s}`: too large a size")),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_size, size_arg};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4096MiB"), Ok(4 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("4gib"), Ok(4 << 30));
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1000B"), Ok(1000));
        assert_eq!(parse_size(" 2 TiB "), Ok(2 << 40));
        assert_eq!(parse_size("8MB"), Ok(8_000_000));
    }

    #[test]
    fn bad_sizes() {
        for s in [
            "",
            "G",
            "GiB",
            "4 gigs",
            "4Gi",
            "-1G",
            "1e9",
            "4..5G",
            "0",
            "0G",
            ".",
            "4GiBs",
            "99999999999T",
        ] {
            let e = parse_size(s).unwrap_err();
            assert!(!e.is_empty(), "{s}");
            if !matches!(s, "0" | "0G" | "99999999999T") {
                assert!(e.contains("4GiB, 4096MiB, 4G"), "{s}: {e}");
            }
        }
    }

    #[test]
    fn size_args_round_up() {
        assert_eq!(size_arg(1 << 30), "1.00GiB");
        assert_eq!(size_arg((1 << 30) + 1), "1.01GiB");
        assert_eq!(size_arg((1 << 20) + 1), "2MiB");
        assert_eq!(size_arg(5 << 20), "5MiB");
    }
}
