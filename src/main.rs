//! The `frugal` binary: a thin wrapper around [`frugal::cli`].

fn main() {
    if let Err(e) = frugal_cli::main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
