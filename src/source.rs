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
use crate::scan::{Scanner, Up, dev_of, follows};
use crate::tree::{Entry, Kind, Meta};
use rustix::fs::{Mode, OFlags};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
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
    /// Root-relative paths of the non-directories the scan reached by following a symlink
    /// (a request names only the path; directories on the way are followed by `openat`
    /// itself, as only the last component of a path is `O_NOFOLLOW`).
    followed: std::collections::HashSet<Box<[u8]>>,
}

impl TopSource for Tops {
    fn dir_for(&self, top_name: &[u8]) -> Option<BorrowedFd<'_>> {
        self.map.get(top_name).map(|(i, _)| self.bases[*i].as_fd())
    }
}

impl Tops {
    /// The directory and name a root-relative path is read from (the sender's side of a
    /// file request).
    pub fn locate(&self, rel: &[u8]) -> Option<(BorrowedFd<'_>, Vec<u8>, bool)> {
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
        Some((self.bases[*idx].as_fd(), p, self.followed.contains(rel)))
    }
}

pub fn open_path(p: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The remote shell's wildcard expansion of a source argument, which rsync's remote sources
/// get on their way through that shell (`host:'logs/*.gz'`, `host:'src/*/'`): xsync's paths
/// travel inside the protocol, so its server expands them itself. As in a shell: each
/// component with `*`, `?` or `[` matches the names of its directory, sorted, not those
/// starting with `.` unless the pattern does; a trailing `/` keeps only directories; and a
/// pattern that matches nothing stays as it is (to fail as a missing source).
pub fn expand_wildcards(arg: &[u8]) -> Vec<Vec<u8>> {
    let is_glob = |c: &[u8]| c.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
    let trailing = arg.ends_with(b"/");
    let comps: Vec<&[u8]> = arg
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    if !comps.iter().any(|c| is_glob(c)) {
        return vec![arg.to_vec()];
    }
    let mut found: Vec<Vec<u8>> = vec![if arg.starts_with(b"/") {
        b"/".to_vec()
    } else {
        Vec::new()
    }];
    for comp in &comps {
        let mut next = Vec::new();
        for base in &found {
            let join = |name: &[u8]| {
                let mut p = base.clone();
                if !p.is_empty() && !p.ends_with(b"/") {
                    p.push(b'/');
                }
                p.extend_from_slice(name);
                p
            };
            if !is_glob(comp) {
                next.push(join(comp));
                continue;
            }
            let dir = if base.is_empty() {
                Path::new(".")
            } else {
                Path::new(OsStr::from_bytes(base))
            };
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<Vec<u8>> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().into_vec())
                .filter(|n| {
                    (comp.starts_with(b".") || !n.starts_with(b"."))
                        && crate::filter::name_matches(comp, n)
                })
                .collect();
            names.sort();
            next.extend(names.iter().map(|n| join(n)));
        }
        found = next;
    }
    let mut out: Vec<Vec<u8>> = found
        .into_iter()
        .filter(|p| match std::fs::symlink_metadata(OsStr::from_bytes(p)) {
            Ok(m) => {
                !trailing
                    || m.is_dir()
                    || std::fs::metadata(OsStr::from_bytes(p)).is_ok_and(|m| m.is_dir())
            }
            Err(_) => false,
        })
        .map(|mut p| {
            if trailing {
                p.push(b'/');
            }
            p
        })
        .collect();
    if out.is_empty() {
        out.push(arg.to_vec());
    }
    out
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
                rustix::fs::lstat(path).map(|st| follow_top(opts, path, b, st))
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
            followed: Default::default(),
        };
        for (idx, s) in self.list.iter().enumerate() {
            tops.bases.push(rustix::io::dup(&s.base)?);
            let dev = dev_of(&s.base);
            let children: Vec<Entry> = match &s.name {
                None => {
                    let listed = rustix::io::dup(&s.base)
                        .map_err(std::io::Error::from)
                        .and_then(|fd| scanner.read_children(fd, b"", dev, &Up::base(&s.base)));
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
                    .scan_entry(
                        s.base.as_fd(),
                        n,
                        n,
                        dev,
                        scanner.opts.recursive,
                        &Up::base(&s.base),
                    )
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
        if scanner.opts.follows_links() {
            root.walk(b"", &mut |p, e| {
                if e.followed && !e.is_dir() {
                    tops.followed.insert(p.into());
                }
            });
        }
        Ok((root, tops))
    }
}

/// A source argument that is itself a symlink (`xsync -L link dst/`) is replaced by its
/// referent by the same rule as a link inside the tree (its path there is its name), so
/// that a followed directory counts as a directory (not a single file) from the start.
/// A dangling one stays a link, for the scan to report.
fn follow_top(opts: &Options, path: &Path, arg: &[u8], st: rustix::fs::Stat) -> rustix::fs::Stat {
    if !opts.follows_links() || Kind::from_mode(st.st_mode) != Kind::Symlink {
        return st;
    }
    let (Ok(target), Ok(referent)) = (std::fs::read_link(path), rustix::fs::stat(path)) else {
        return st;
    };
    let to_dir = Kind::from_mode(referent.st_mode) == Kind::Dir;
    let name = parent_and_name(arg).1;
    if follows(opts, target.as_os_str().as_bytes(), &name, to_dir) {
        referent
    } else {
        st
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

#[cfg(test)]
mod wildcard_tests {
    use super::expand_wildcards;

    #[test]
    fn remote_wildcards_expand_as_a_shell_expands_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for f in [
            "b.txt",
            "a.txt",
            ".hidden.txt",
            "c.log",
            "sub/d.txt",
            "sub2/e.log",
        ] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, b"x").expect("write");
        }
        let base = d.to_str().expect("utf-8 temp path");
        let x = |pat: &str| -> Vec<String> {
            expand_wildcards(format!("{base}/{pat}").as_bytes())
                .into_iter()
                .map(|p| String::from_utf8(p).expect("utf-8")[base.len() + 1..].to_string())
                .collect()
        };
        assert_eq!(x("*.txt"), ["a.txt", "b.txt"]);
        assert_eq!(x(".*.txt"), [".hidden.txt"]);
        assert_eq!(x("*/"), ["sub/", "sub2/"]);
        assert_eq!(x("s[u]b"), ["sub"]);
        assert_eq!(x("sub?"), ["sub2"]);
        assert_eq!(x("*/d.txt"), ["sub/d.txt"]);
        assert_eq!(x("*/*.log"), ["sub2/e.log"]);
        // No match: the pattern itself, to fail as a missing source; no wildcard: as given.
        assert_eq!(x("*.none"), ["*.none"]);
        assert_eq!(x("sub/"), ["sub/"]);
        assert_eq!(expand_wildcards(b"plain"), [b"plain".to_vec()]);
    }
}
