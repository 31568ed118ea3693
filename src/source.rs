//! The sending side's view of the command line: which source arguments name what, read
//! with rsync's rules (`src/` brings its contents, `src` itself; several sources merge
//! into one root, the first to bring a name wins it), and where each top-level name is
//! read from.

use crate::cli::Options;
use crate::error::{io_message, show};
use crate::exec::TopSource;
use crate::exit::ExitCode;
use crate::protocol::SourceInfo;
use crate::report::Report;
use crate::scan::{Scanner, dev_of};
use crate::tree::{Entry, Kind, Meta};
use rustix::fs::{Mode, OFlags};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One source argument after resolution.
pub struct Source {
    /// The directory the entry is read from (its parent, or itself for `src/`).
    pub base: OwnedFd,
    /// `None` for `src/` (its contents become the root's children).
    pub name: Option<Vec<u8>>,
    pub meta: Meta,
}

pub struct Sources {
    pub list: Vec<Source>,
    /// How many source arguments were given (some may have failed to resolve).
    pub args: usize,
}

/// A top-level name's source: index of its base directory, and its name there.
type TopOrigin = (usize, Box<[u8]>);

/// Each top-level name's source directory and its name there.
pub struct Tops {
    bases: Vec<OwnedFd>,
    map: HashMap<Box<[u8]>, TopOrigin>,
}

impl TopSource for Tops {
    fn dir_for(&self, top_name: &[u8]) -> Option<BorrowedFd<'_>> {
        self.map.get(top_name).map(|(i, _)| self.bases[*i].as_fd())
    }
}

impl Tops {
    /// The directory and name a root-relative path is read from (the sender's side of a
    /// file request).
    pub fn locate(&self, rel: &[u8]) -> Option<(BorrowedFd<'_>, Vec<u8>)> {
        let (top, rest) = match rel.iter().position(|&b| b == b'/') {
            Some(i) => (&rel[..i], Some(&rel[i + 1..])),
            None => (rel, None),
        };
        let (idx, src_name) = self.map.get(top)?;
        let mut p = src_name.to_vec();
        if let Some(rest) = rest {
            p.push(b'/');
            p.extend_from_slice(rest);
        }
        Some((self.bases[*idx].as_fd(), p))
    }
}

pub fn open_path(p: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// rsync's trailing-slash rule: `dir/` (or `dir/.`, or `.`) copies the directory's
/// contents, `dir` the directory itself.
pub fn names_contents(arg: &[u8]) -> bool {
    arg.ends_with(b"/") || arg.ends_with(b"/.") || arg == b"."
}

/// Splits a path argument into its directory and last component, ignoring trailing
/// slashes (`a/b/` → (`a`, `b`), `b` → (`.`, `b`)).
pub fn parent_and_name(p: &[u8]) -> (PathBuf, Vec<u8>) {
    let mut t = p;
    while t.len() > 1 && t.ends_with(b"/") {
        t = &t[..t.len() - 1];
    }
    match t.iter().rposition(|&b| b == b'/') {
        Some(0) => (PathBuf::from("/"), t[1..].to_vec()),
        Some(i) => (
            PathBuf::from(OsStr::from_bytes(&t[..i])),
            t[i + 1..].to_vec(),
        ),
        None => (PathBuf::from("."), t.to_vec()),
    }
}

impl Sources {
    /// Resolves the source arguments; one that cannot be read is reported (exit 23) and
    /// left out, as rsync does.
    pub fn open(opts: &Options, args: &[OsString], report: &Report<'_>) -> Sources {
        let mut list = Vec::new();
        for s in args {
            let b = s.as_bytes();
            let contents = names_contents(b);
            let path = Path::new(s);
            let st = if contents {
                rustix::fs::stat(path)
            } else {
                rustix::fs::lstat(path)
            };
            let meta = match st {
                Ok(st) => Meta::from_stat(&st),
                Err(e) => {
                    report.error(
                        ExitCode::Partial,
                        io_message("stat source", b, &std::io::Error::from(e)),
                    );
                    continue;
                }
            };
            if meta.kind == Kind::Dir && !opts.recursive {
                let n = if contents {
                    b".".to_vec()
                } else {
                    parent_and_name(b).1
                };
                report.info(format!("skipping directory {}", show(&n)));
                continue;
            }
            let (base_path, name) = if contents && meta.kind == Kind::Dir {
                (path.to_path_buf(), None)
            } else {
                let (p, n) = parent_and_name(b);
                (p, Some(n))
            };
            match open_path(&base_path) {
                Ok(base) => list.push(Source { base, name, meta }),
                Err(e) => report.error(
                    ExitCode::Partial,
                    io_message("open directory", base_path.as_os_str().as_bytes(), &e),
                ),
            }
        }
        Sources {
            list,
            args: args.len(),
        }
    }

    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            root_is_transfer_dir: self.list.iter().any(|s| s.name.is_none()),
            single_file: self.args == 1
                && self.list.len() == 1
                && self.list[0].meta.kind != Kind::Dir,
            named_tops: self
                .list
                .iter()
                .filter_map(|s| s.name.clone())
                .map(serde_bytes::ByteBuf::from)
                .collect(),
            io_error: false,
            names: Default::default(),
        }
    }

    /// The directory whose own metadata the root carries (the first `src/`).
    pub fn root_dir(&self) -> Option<BorrowedFd<'_>> {
        self.list
            .iter()
            .find(|s| s.name.is_none())
            .map(|s| s.base.as_fd())
    }

    /// Reads every source into one root. `rename_to` renames the single top entry (a file
    /// copied to a new name).
    pub fn scan(
        &self,
        scanner: &Scanner<'_, '_>,
        rename_to: Option<&[u8]>,
    ) -> std::io::Result<(Entry, Tops)> {
        let report = scanner.report;
        let root_meta = self
            .list
            .iter()
            .find(|s| s.name.is_none())
            .map(|s| s.meta)
            .unwrap_or_else(virtual_dir_meta);
        let mut root = Entry::new(Box::from(&b"."[..]), root_meta);
        let mut tops = Tops {
            bases: Vec::new(),
            map: HashMap::new(),
        };
        for (idx, s) in self.list.iter().enumerate() {
            tops.bases.push(rustix::io::dup(&s.base)?);
            let dev = dev_of(&s.base);
            let children: Vec<Entry> = match &s.name {
                None => {
                    let listed = rustix::io::dup(&s.base)
                        .map_err(std::io::Error::from)
                        .and_then(|fd| scanner.read_children(fd, b"", dev));
                    match listed {
                        Ok((c, complete)) => {
                            root.complete &= complete;
                            c
                        }
                        Err(e) => {
                            root.complete = false;
                            report.error(ExitCode::Partial, io_message("read directory", b".", &e));
                            Vec::new()
                        }
                    }
                }
                Some(n) => scanner
                    .scan_entry(s.base.as_fd(), n, n, dev, scanner.opts.recursive)
                    .into_iter()
                    .collect(),
            };
            for mut c in children {
                let src_name = c.name.clone();
                if let (Some(to), Some(_)) = (rename_to, &s.name) {
                    c.name = to.into();
                }
                if tops.map.contains_key(&c.name) {
                    continue;
                }
                tops.map.insert(c.name.clone(), (idx, src_name));
                root.children.push(c);
            }
        }
        root.children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok((root, tops))
    }
}

/// The metadata of a root that is not itself a transferred directory: only its children
/// take part in the comparison, so both sides use this same stand-in.
pub fn virtual_dir_meta() -> Meta {
    Meta {
        kind: Kind::Dir,
        mode: 0o755,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        dev: 0,
        ino: 0,
        nlink: 1,
    }
}
