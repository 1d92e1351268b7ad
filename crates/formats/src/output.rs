//! Outputs written atomically: everything goes to a temporary sibling (`.NAME.partial-PID`)
//! that is renamed over the destination only when complete, so a failed or interrupted run
//! never leaves a half-written model where a user would load it. One implementation for
//! folders ([`atomic_dir`]) and files ([`atomic_file`]).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The temporary sibling of `out` (its parent created), after refusing an existing `out`
/// unless `force` (an empty folder counts as absent).
fn prepare(out: &Path, force: bool) -> Result<PathBuf> {
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty && !force {
            bail!(
                "{}: already exists; choose another output or pass --force to replace it",
                out.display()
            );
        }
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create", parent.display()))?;
    Ok(parent.join(format!(
        ".{}.partial-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    )))
}

/// Renames the complete `tmp` over `out` (replacing what `prepare` allowed), or removes `tmp`
/// when writing failed.
fn finish<T>(tmp: &Path, out: &Path, written: Result<T>) -> Result<T> {
    let remove = |p: &Path| {
        if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        }
    };
    match written {
        Ok(v) => {
            if out.is_dir() && tmp.is_dir() {
                remove(out).with_context(|| format!("{}: cannot replace", out.display()))?;
            }
            std::fs::rename(tmp, out)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
            Ok(v)
        }
        Err(e) => {
            let _ = remove(tmp);
            Err(e)
        }
    }
}

/// Runs `write` on a temporary folder beside `out`, then renames it to `out`. Refuses an
/// existing, non-empty `out` unless `force`. On error the temporary folder is removed.
pub fn atomic_dir<T>(out: &Path, force: bool, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = prepare(out, force)?;
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let written = write(&tmp);
    finish(&tmp, out, written)
}

/// Runs `write` on a temporary file beside `out` (created empty, flushed and synced by
/// `write`), then renames it to `out`. Refuses an existing `out` unless `force`. On error the
/// temporary file is removed.
pub fn atomic_file<T>(
    out: &Path,
    force: bool,
    write: impl FnOnce(&Path, std::fs::File) -> Result<T>,
) -> Result<T> {
    let tmp = prepare(out, force)?;
    let written = std::fs::File::create(&tmp)
        .with_context(|| format!("{}: cannot create", tmp.display()))
        .and_then(|f| write(&tmp, f));
    finish(&tmp, out, written)
}
