//! rsync's alternate destination directories (`--compare-dest`, `--copy-dest`,
//! `--link-dest`): trees beside the destination that a file missing from it is compared
//! with before it is transferred — yesterday's snapshot, typically.
//!
//! Each DIR is resolved on the receiving side, relative to the destination directory when
//! it is not absolute (rsync's rule, and the classic trap: `--link-dest=../day1`), opened
//! once, and scanned like the destination (so `-c` has its hashes and the planner compares
//! it with the same quick check as the destination, in `plan.rs`). A DIR that does not
//! exist gets rsync's warning and is left out; the run goes on.
//!
//! The DIR itself is the user's choice and may be anywhere (it is opened by path, following
//! symlinks, like the destination); every name below it comes from the tree and is opened
//! one component at a time with `O_NOFOLLOW` by `write.rs`.

use crate::config::{AltDest, Options};
use crate::dest::Dest;
use crate::filter::Side;
use crate::protocol::SourceInfo;
use crate::report::Report;
use crate::scan::Scanner;
use crate::source::open_path;
use crate::tree::Entry;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// One existing DIR: its handle and what it holds.
pub struct AltDir {
    pub fd: OwnedFd,
    pub root: Entry,
}

/// The DIRs of this run that exist, in the order given (rsync searches them in order).
pub struct AltDirs {
    pub kind: AltDest,
    /// Indexed as the plan's `AltUse::dir`.
    pub dirs: Vec<AltDir>,
}

impl AltDirs {
    /// Resolves, opens and scans the run's DIRs against the destination `dest`; `None`
    /// without the options.
    pub fn open(
        opts: &Options,
        dest: &Dest,
        info: &SourceInfo,
        report: &Report<'_>,
    ) -> Option<AltDirs> {
        let (kind, given) = opts.alt_dest.as_ref()?;
        let scanner = Scanner::new(Side::Receiver, &opts.filters, opts, report);
        let mut dirs = Vec::new();
        for d in given {
            let path = resolve(&dest.path, d);
            let fd = match open_path(&path) {
                Ok(fd) => fd,
                Err(_) => {
                    report.warn_bare(format!(
                        "{} arg does not exist: {}",
                        kind.word(),
                        shown_abs(&path).display()
                    ));
                    continue;
                }
            };
            // Scanned as the destination would be (the named tops only, when the root is
            // not a transfer directory). Its stale temporaries are not ours to remove.
            let as_dest = Dest {
                root: Some(fd),
                rename_to: dest.rename_to.clone(),
                path,
                created: false,
            };
            let root = as_dest.scan(info, &scanner);
            if let (Some(fd), Some(root)) = (as_dest.root, root) {
                dirs.push(AltDir { fd, root });
            }
        }
        Some(AltDirs { kind: *kind, dirs })
    }
}

/// DIR relative to the destination directory unless it is absolute.
fn resolve(dest: &Path, dir: &str) -> PathBuf {
    let dir = Path::new(dir);
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        dest.join(dir)
    }
}

/// rsync's warning names the DIR as an absolute path (from its working directory), without
/// normalising `..` away.
fn shown_abs(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(p),
        Err(_) => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_dir_is_relative_to_the_destination() {
        assert_eq!(
            resolve(Path::new("bk/day2/"), "../day1"),
            Path::new("bk/day2/../day1")
        );
        assert_eq!(resolve(Path::new("bk/day2"), "/abs/d"), Path::new("/abs/d"));
    }
}
