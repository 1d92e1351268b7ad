//! Opening and running a model as a library call. A [`session::Session`] opens a checkpoint
//! from its headers ([`load::Checkpoint`]), predicts the run's memory ([`load::plan`]), keeps
//! or refuses a budget ([`load::budget`], streaming layers when the weights do not all fit,
//! [`load::stream`]), quantizes while loading when asked ([`load::quantize`]), loads the
//! tokenizer and binds the model; [`generate`] runs it. [`export`] writes checkpoints for other
//! runtimes, [`synth`] synthetic ones with real shapes. [`memory`] and [`trace`] measure what
//! the operating system counts; [`progress`] shows long passes on a terminal.

pub mod export;
pub mod generate;
pub mod load;
pub mod memory;
pub mod progress;
pub mod session;
pub mod synth;
pub mod trace;
