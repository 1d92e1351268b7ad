//! Progress bars on stderr for long jobs that move bytes (converting, synthesizing, quantizing
//! while loading): bytes done of total, rate and time left, drawn by `indicatif`. Nothing is
//! drawn when stderr is not a terminal, so logs, pipes and tests see only the final summary
//! lines.
//!
//! A [`Progress`] is `Send + Sync`: workers on the rayon pool may all [`Progress::add`] to one
//! bar (indicatif redraws at most 20 times a second, so adding per chunk costs nothing):
//!
//! ```
//! use rayon::prelude::*;
//! let chunks = vec![vec![0u8; 1 << 16]; 8];
//! let bar = frugal_engine::progress::Progress::bytes("quantizing", 8 << 16);
//! chunks.par_iter().for_each(|c| bar.add(c.len() as u64));
//! bar.finish();
//! ```

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A byte-counting progress bar, or nothing when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar labelled `what` for a job of `total` bytes.
    pub fn bytes(what: &str, total: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}, {eta} left",
        )
        .expect("valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    /// A bar that is never drawn (for a caller that reports progress its own way).
    pub fn hidden() -> Self {
        Progress { bar: None }
    }

    /// True when the bar is drawn (stderr is a terminal).
    pub fn is_visible(&self) -> bool {
        self.bar.is_some()
    }

    /// Replaces the label (e.g. with the tensor being worked on).
    pub fn set_message(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.set_message(what.to_string());
        }
    }

    /// Adds `n` bytes done.
    pub fn add(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn shared_by_threads_and_quiet_when_hidden() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Progress>();
        let p = Progress::hidden();
        assert!(!p.is_visible());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| p.add(10));
            }
        });
        p.set_message("done");
        p.finish();
    }
}
