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
    pub rss: u64,
    pub anon: u64,
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

/// Samples memory in the background and keeps the peaks.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    peaks: Arc<[AtomicU64; 3]>,
    handle: Option<JoinHandle<()>>,
}

/// Peaks observed over a run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Peaks {
    pub peak_rss_bytes: u64,
    pub peak_anon_bytes: u64,
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
                    record(&p2);
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

fn record(p: &[AtomicU64; 3]) {
    let s = status();
    p[0].fetch_max(s.rss, Ordering::Relaxed);
    p[1].fetch_max(s.anon, Ordering::Relaxed);
    p[2].fetch_max(s.file, Ordering::Relaxed);
}

/// The memory report of a run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Report {
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    #[serde(flatten)]
    pub peaks: Peaks,
    /// The `--max-memory` budget, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
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
        ) + &self
            .budget_bytes
            .map(|b| {
                format!(
                    "\n  budget         {:>10}  (peak RSS {:.1} % of it)",
                    human(b),
                    p.peak_rss_bytes as f64 * 100.0 / b.max(1) as f64
                )
            })
            .unwrap_or_default()
    }
}

/// Parses a memory size: a number (decimals allowed) with an optional unit. `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`, `T`/`TiB` are powers of 1024 (as `free`, `top` and llama.cpp count); `KB`, `MB`,
/// `GB`, `TB` are powers of 1000; no unit or `B` means bytes. Case-insensitive: `4GiB`, `4096M`,
/// `1.5g`, `8GB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("`{s}` is not a size: give a number with an optional unit, like 4GiB, 4096MiB, 4G or 1.5GB (K/M/G/T = 1024-based, KB/MB/GB/TB = 1000-based)")
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let b = v * mult;
    if !b.is_finite() || b < 1.0 || b > u64::MAX as f64 / 2.0 {
        return Err(format!("`{s}`: the size must be at least 1 byte"));
    }
    Ok(b as u64)
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4096MiB"), Ok(4 << 30));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        for bad in ["", "GiB", "4 parsecs", "-1G", "0", "1.2.3G", "nanG"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
