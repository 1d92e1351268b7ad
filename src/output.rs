//! Output folders written atomically: everything goes into a temporary sibling folder that is
//! renamed over the destination only when complete, so a failed or interrupted run never leaves
//! a half-written model where a user would load it.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Runs `write` on a temporary folder beside `out`, then renames it to `out`. Refuses an
/// existing, non-empty `out` unless `force`. On error the temporary folder is removed.
pub fn atomic_dir<T>(out: &Path, force: bool, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
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
    let tmp: PathBuf = parent.join(format!(
        ".{}.partial-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    match write(&tmp) {
        Ok(v) => {
            if out.exists() {
                std::fs::remove_dir_all(out)
                    .with_context(|| format!("{}: cannot replace", out.display()))?;
            }
            std::fs::rename(&tmp, out)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}
