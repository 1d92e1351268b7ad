//! Layer streaming: running a model whose weights do not fit in the memory budget.
//!
//! The weights stay where they lie in the memory-mapped file. A [`StreamPlan`] made from the
//! headers decides which layers stay resident (`pinned`, from the first layer on, as many as
//! the budget allows) and checks that the rest fits: one layer at a time, plus the output
//! projection in row chunks of [`OUTPUT_STEP_BYTES`], the KV cache, activations and the runtime.
//! While a streamed layer computes, the next one is read ahead (`MADV_WILLNEED`, into the page
//! cache, not into the process); after use its pages are dropped from the process
//! (`MADV_DONTNEED`) and from the page cache (`POSIX_FADV_DONTNEED`), so a token reads every
//! streamed weight from disk once and resident memory stays within the budget. The paging is
//! `load::Checkpoint`'s implementation of [`Pager`] (its maps, or the quantized cache file).

use frugal_model::{Pager, Streaming};

/// Bytes of the output projection computed per step when streaming.
pub const OUTPUT_STEP_BYTES: usize = 64 << 20;

/// Which layers stay resident when streaming, and the resident memory that gives.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamPlan {
    /// `pinned[l]`: layer `l` is read once and kept.
    pub pinned: Vec<bool>,
    /// Bytes of the pinned layers.
    pub pinned_bytes: u64,
    /// Bytes of the largest streamed layer (resident while it computes).
    pub window_bytes: u64,
    /// Bytes of the output projection resident at a time (two chunks).
    pub output_bytes: u64,
    /// Bytes every token reads from disk: the streamed layers and the output projection.
    pub streamed_bytes_per_token: u64,
}

impl StreamPlan {
    /// Plans streaming for layers of `layer_bytes` and an output projection of `output_bytes`
    /// within `budget` bytes, of which `fixed` (KV cache, activations, runtime, norms) are
    /// taken. Err holds the smallest budget that works.
    pub fn new(
        budget: u64,
        fixed: u64,
        layer_bytes: &[u64],
        output_bytes: u64,
    ) -> Result<StreamPlan, u64> {
        let window = layer_bytes.iter().copied().max().unwrap_or(0);
        let out = output_bytes.min(2 * OUTPUT_STEP_BYTES as u64);
        let minimum = fixed + window + out;
        if budget < minimum {
            return Err(minimum);
        }
        let mut room = budget - minimum;
        let mut pinned = vec![false; layer_bytes.len()];
        let mut pinned_bytes = 0;
        for (p, &b) in pinned.iter_mut().zip(layer_bytes) {
            if b > room {
                break;
            }
            *p = true;
            room -= b;
            pinned_bytes += b;
        }
        let streamed: u64 = layer_bytes
            .iter()
            .zip(&pinned)
            .filter(|(_, &p)| !p)
            .map(|(b, _)| b)
            .sum();
        Ok(StreamPlan {
            pinned,
            pinned_bytes,
            window_bytes: window,
            output_bytes: out,
            streamed_bytes_per_token: streamed + output_bytes,
        })
    }

    /// The peak resident memory this plan allows for, `fixed` included.
    pub fn resident_bytes(&self, fixed: u64) -> u64 {
        fixed + self.pinned_bytes + self.window_bytes + self.output_bytes
    }

    /// The model-side settings that carry the plan out, paging through `pager`.
    pub fn streaming<'a>(&self, pager: &'a dyn Pager) -> Streaming<'a> {
        Streaming {
            pager,
            pinned: self.pinned.clone(),
            output_step_bytes: OUTPUT_STEP_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_what_fits_and_refuses_below_one_layer() {
        let layers = [100u64, 100, 100, 100];
        assert_eq!(
            StreamPlan::new(10 + 100 + 50 - 1, 10, &layers, 50).unwrap_err(),
            160
        );
        let p = StreamPlan::new(10 + 100 + 50 + 250, 10, &layers, 50).unwrap();
        assert_eq!(p.pinned, vec![true, true, false, false]);
        assert_eq!(p.streamed_bytes_per_token, 250);
        assert!(p.resident_bytes(10) <= 10 + 100 + 50 + 250);
    }
}
