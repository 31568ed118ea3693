//! The sending side's view of the command line: which source arguments name what, read
//! with rsync's rules (`src/` brings its contents, `src` itself; several sources merge
//! into one root, the first to bring a name wins it), and where each top-level name is
//! read from.

use crate::config::Options;
use crate::error::{io_message, show};
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

/// One source argument (or one `--files-from` name) after resolution.
pub struct Source {
    /// Index into [`Sources::bases`]: the directory the entry's path starts from (its
    /// parent, itself for `src/`, the part before `/./` under `-R`).
    pub base: usize,
    /// `None` for `src/` (its contents become the root's children).
    pub name: Option<Vec<u8>>,
    /// `-R`: the directories between the base and `name`, kept under the destination as
    /// implied directories (with the source's attributes).
    pub implied: Vec<Vec<u8>>,
    pub meta: Meta,
    /// Whether a directory is descended into: `-r`, or not for a `--files-from` name
    /// without `-r` (the directory itself is sent, its contents are not).
    pub recurse: bool,
}

impl Source {
    /// The root's child this source lands under.
    fn top(&self) -> Option<&[u8]> {
        self.implied
            .first()
            .or(self.name.as_ref())
            .map(|n| n.as_slice())
    }
}

/// Where the root's children are read from: each top-level name has its own source
/// directory (several sources, or `src` copied by name).
pub trait TopSource: Sync {
    fn dir_for(&self, top_name: &[u8]) -> Option<BorrowedFd<'_>>;
}

pub struct Sources {
    /// The distinct base directories, opened once (a `--files-from` list of 100,000 names
    /// shares one).
    pub bases: Vec<OwnedFd>,
    pub list: Vec<Source>,
    /// How many source arguments were given (some may have failed to resolve).
    pub args: usize,
    /// `-R` (or `--files-from`): sources are merged by their kept paths.
    relative: bool,
    /// `--delete-missing-args`: the destination paths of the named sources that do not
    /// exist (the name the argument would bring, or its kept path under `-R`).
    pub missing: Vec<Vec<u8>>,
}

/// Splits a `-R` source argument into the directory its path is read from and the kept
/// components: after the first `/./`, else the whole path (without a leading `/`, from
/// `/`). rsync refuses a `..` in the kept part (exit 1).
fn split_relative(arg: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), crate::error::Error> {
    let (base, kept) = match arg.windows(3).position(|w| w == b"/./") {
        Some(i) => (arg[..i.max(1)].to_vec(), &arg[i + 3..]),
        None if arg.starts_with(b"/") => (b"/".to_vec(), arg),
        None => (b".".to_vec(), arg),
    };
    let mut comps = Vec::new();
    for c in kept.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(crate::error::Error::usage(format!(
                    "found \"..\" dir in relative path: `{}`",
                    show(arg)
                )));
            }
            c => comps.push(c.to_vec()),
        }
    }
    Ok((base, comps))
}

/// Each top-level name's source directory and its name there.
pub struct Tops {
    bases: Vec<OwnedFd>,
    map: HashMap<Box<[u8]>, TopOrigin>,
    /// Root-relative paths of the entries the scan reached by following a symlink
    /// (`-L`, `-k`, `--copy-unsafe-links`): the only components a read may open through
    /// a link (see [`crate::fs`]); every other one is opened without following.
    followed: std::collections::HashSet<Box<[u8]>>,
    /// Files whose read failed when they were asked for (see [`Tops::note_unsent`]).
    unsent: std::sync::Mutex<std::collections::HashSet<Box<[u8]>>>,
}

/// A top-level name's source: index of its base directory, and its name there.
type TopOrigin = (usize, Box<[u8]>);

impl TopSource for Tops {
    fn dir_for(&self, top_name: &[u8]) -> Option<BorrowedFd<'_>> {
        self.map.get(top_name).map(|(i, _)| self.bases[*i].as_fd())
    }
}

impl Tops {
    /// Opens a root-relative path for reading (the sender's side of a file request),
    /// through the file-system layer: no symlink on the way is followed but those the
    /// scan followed on purpose, so a directory swapped for a link since the scan (by a
    /// local user, or while a slow peer held the run) cannot lead the read out of the tree.
    pub fn open(&self, rel: &[u8]) -> std::io::Result<OwnedFd> {
        let flags = OFlags::RDONLY;
        let (base, comps) = self.resolve(rel)?;
        if self.followed.is_empty() {
            let p = join_comps(&comps);
            return crate::fs::open_for_reading(|f| crate::fs::open_beneath(base, &p, f), flags);
        }
        crate::fs::open_for_reading(|f| crate::fs::open_walk(base, &comps, f), flags)
    }

    /// A root-relative path's base directory and its components there: the top's own name
    /// in its base (followed when the scan followed the top), then each further component,
    /// followed only where the scan followed that path.
    fn resolve<'p>(&'p self, rel: &'p [u8]) -> std::io::Result<(BorrowedFd<'p>, Walk<'p>)> {
        let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let (top, rest) = match rel.iter().position(|&b| b == b'/') {
            Some(i) => (&rel[..i], Some(&rel[i + 1..])),
            None => (rel, None),
        };
        let (idx, src_name) = self.map.get(top).ok_or_else(not_found)?;
        let base = self.bases[*idx].as_fd();
        let mut comps: Vec<(&[u8], bool)> = crate::fs::components(src_name)
            .map(|c| (c, false))
            .collect();
        if let Some(last) = comps.last_mut() {
            last.1 = self.followed.contains(top);
        }
        if let Some(rest) = rest {
            let mut end = top.len();
            for c in rest.split(|&b| b == b'/') {
                end += 1 + c.len();
                comps.push((c, self.followed.contains(&rel[..end])));
            }
        }
        if comps.is_empty() {
            return Err(not_found());
        }
        Ok((base, comps))
    }

    /// `--remove-source-files`: removes the non-directory at `rel` that was sent as `sent`,
    /// if it is still that file (kind, size, modification time, device and inode, as lstat
    /// — or stat, for an entry the scan followed — reports them now). Its directory is
    /// reached as a read is ([`Tops::open`]), so a directory swapped for a symlink since the
    /// scan cannot lead the removal out of the tree. `Ok(false)`: it changed, and stays.
    pub fn remove_sent(&self, rel: &[u8], sent: &Meta) -> std::io::Result<bool> {
        let (base, mut comps) = self.resolve(rel)?;
        let (name, follow) = comps.pop().expect("resolve gives at least one component");
        let dir = if comps.is_empty() {
            rustix::io::dup(base)?
        } else if self.followed.is_empty() {
            crate::fs::open_beneath(
                base,
                &join_comps(&comps),
                OFlags::RDONLY | OFlags::DIRECTORY,
            )?
        } else {
            crate::fs::open_walk(base, &comps, OFlags::RDONLY | OFlags::DIRECTORY)?
        };
        let c = crate::fs::cstr(name)?;
        let at = if follow {
            rustix::fs::AtFlags::empty()
        } else {
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW
        };
        let now = Meta::from_stat(&rustix::fs::statat(&dir, &c, at)?);
        let same = now.kind == sent.kind
            && now.kind != Kind::Dir
            && now.size == sent.size
            && now.mtime == sent.mtime
            && now.mtime_nsec == sent.mtime_nsec
            && now.dev == sent.dev
            && now.ino == sent.ino;
        if !same {
            return Ok(false);
        }
        rustix::fs::unlinkat(&dir, &c, rustix::fs::AtFlags::empty())?;
        Ok(true)
    }

    /// Notes a file the sender could not send (its read failed: a `Skip`), which
    /// `--remove-source-files` must then leave, whatever the receiver says.
    pub fn note_unsent(&self, rel: &[u8]) {
        self.unsent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rel.into());
    }

    pub fn was_unsent(&self, rel: &[u8]) -> bool {
        self.unsent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(rel)
    }
}

/// A path's components below its base, each with whether the scan followed it there.
type Walk<'p> = Vec<(&'p [u8], bool)>;

fn join_comps(comps: &[(&[u8], bool)]) -> Vec<u8> {
    comps
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(&b"/"[..])
}

/// `--remove-source-files`' numbering of a sent tree: its non-directories in walk order,
/// with their root-relative paths. Both ends number the same tree the same way, so the
/// receiver's confirmations name files by index and the sender looks each up in its own
/// list, never by a path from the wire.
pub fn sent_files(root: &Entry) -> Vec<(Vec<u8>, &Entry)> {
    let mut out = Vec::new();
    root.walk(b"", &mut |p, e| {
        if !e.is_dir() {
            out.push((p.to_vec(), e));
        }
    });
    out
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

/// One path to resolve: the directory it starts from, and either the contents of that
/// directory (`kept` empty) or the kept components below it.
struct Spec {
    base: Vec<u8>,
    kept: Vec<Vec<u8>>,
    /// The argument as given, for messages and the trailing-slash rule.
    arg: Vec<u8>,
    /// A `--files-from` name: a directory is sent even without `-r`.
    listed: bool,
}

impl Sources {
    /// Resolves the source arguments (or, with `--files-from`, the listed names under the
    /// one source argument); one that cannot be read is reported (exit 23) and left out,
    /// as rsync does. Usage errors (exit 1) are rsync's too.
    pub fn open(
        opts: &Options,
        args: &[OsString],
        report: &Report<'_>,
    ) -> Result<Sources, crate::error::Error> {
        let mut specs: Vec<Spec> = Vec::new();
        if let Some(names) = &opts.files_from {
            let [arg] = args else {
                return Err(crate::error::Error::usage(
                    "--files-from takes exactly one source directory (the listed names are relative to it)",
                ));
            };
            let arg = arg.as_bytes();
            for n in names {
                let mut base = arg.to_vec();
                if !n.dir.is_empty() {
                    base.push(b'/');
                    base.extend_from_slice(&n.dir);
                }
                let kept: Vec<Vec<u8>> = n
                    .path
                    .split(|&b| b == b'/')
                    .filter(|c| !c.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
                let mut shown = n.dir.clone();
                if !n.path.is_empty() {
                    shown = crate::pathsafe::join(&shown, &n.path);
                }
                specs.push(Spec {
                    base,
                    kept,
                    arg: shown,
                    listed: true,
                });
            }
        } else {
            for a in args {
                let arg = a.as_bytes().to_vec();
                let (base, kept) = if opts.relative {
                    split_relative(&arg)?
                } else {
                    (Vec::new(), Vec::new())
                };
                specs.push(Spec {
                    base,
                    kept,
                    arg,
                    listed: false,
                });
            }
        }
        let mut sources = Sources {
            bases: Vec::new(),
            list: Vec::new(),
            args: args.len(),
            relative: opts.relative,
            missing: Vec::new(),
        };
        let mut base_paths: HashMap<Vec<u8>, usize> = HashMap::new();
        // -R: every source bringing a top-level name must read it from the same base, so
        // each name below the root has one place to be read from.
        let mut top_base: HashMap<Vec<u8>, (usize, Vec<u8>)> = HashMap::new();
        for spec in specs {
            let Some((base_path, name, implied, meta, recurse)) =
                Self::resolve(opts, &spec, report, &mut sources.missing)
            else {
                continue;
            };
            let base = match base_paths.get(&base_path) {
                Some(&i) => i,
                None => match open_path(Path::new(OsStr::from_bytes(&base_path))) {
                    Ok(fd) => {
                        sources.bases.push(fd);
                        base_paths.insert(base_path.clone(), sources.bases.len() - 1);
                        sources.bases.len() - 1
                    }
                    Err(e) => {
                        report.error(
                            ExitCode::Partial,
                            io_message("open directory", &base_path, &e),
                        );
                        continue;
                    }
                },
            };
            let src = Source {
                base,
                name,
                implied,
                meta,
                recurse,
            };
            if opts.relative
                && let Some(top) = src.top()
            {
                match top_base.get(top) {
                    Some((b, first)) if *b != base => {
                        return Err(crate::error::Error::usage(format!(
                            "-R: `{}` and `{}` both bring `{}` but from different directories before `/./`; xsync does not support that",
                            show(first),
                            show(&spec.arg),
                            show(top)
                        )));
                    }
                    Some(_) => {}
                    None => {
                        top_base.insert(top.to_vec(), (base, spec.arg.clone()));
                    }
                }
            }
            sources.list.push(src);
        }
        Ok(sources)
    }

    /// Stats one spec: its base directory's path, its name there (None for contents), its
    /// implied directories, its metadata and whether to descend. None when it is reported
    /// and left out.
    #[allow(clippy::type_complexity)]
    fn resolve(
        opts: &Options,
        spec: &Spec,
        report: &Report<'_>,
        missing: &mut Vec<Vec<u8>>,
    ) -> Option<(Vec<u8>, Option<Vec<u8>>, Vec<Vec<u8>>, Meta, bool)> {
        let relative = opts.relative && !spec.kept.is_empty();
        // The path to stat, and whether it names a directory's contents.
        let (path, contents) = if relative {
            let mut p = spec.base.clone();
            for c in &spec.kept {
                if !p.ends_with(b"/") {
                    p.push(b'/');
                }
                p.extend_from_slice(c);
            }
            (p, !spec.listed && spec.arg.ends_with(b"/"))
        } else if opts.relative {
            // `src/./` or a listed `.`: the base directory's contents, as `src/`.
            let mut p = spec.base.clone();
            p.push(b'/');
            (p, true)
        } else {
            (spec.arg.clone(), names_contents(&spec.arg))
        };
        let st = if contents {
            rustix::fs::stat(OsStr::from_bytes(&path))
        } else {
            let p = Path::new(OsStr::from_bytes(&path));
            rustix::fs::lstat(p).map(|st| follow_top(opts, p, &path, st))
        };
        let meta = match st {
            Ok(st) => Meta::from_stat(&st),
            // rsync's --delete-missing-args: a named source that is not there deletes its
            // name at the destination (not a directory's contents: `gone/` is an error).
            Err(rustix::io::Errno::NOENT) if opts.delete_missing_args && !contents => {
                let name = if relative {
                    spec.kept.join(&b"/"[..])
                } else {
                    parent_and_name(&spec.arg).1
                };
                if !name.is_empty()
                    && crate::pathsafe::check_rel_path(&name).is_ok()
                    && !missing.contains(&name)
                {
                    missing.push(name);
                }
                return None;
            }
            // rsync's --ignore-missing-args: a named source that is not there is no error.
            Err(rustix::io::Errno::NOENT)
                if opts.ignore_missing_args && !(opts.delete_missing_args && contents) =>
            {
                return None;
            }
            Err(e) => {
                report.error(
                    ExitCode::Partial,
                    io_message("stat source", &path, &std::io::Error::from(e)),
                );
                return None;
            }
        };
        if meta.kind == Kind::Dir && !opts.recursive && !opts.dirs {
            if !spec.listed {
                let n = if relative {
                    spec.kept.join(&b"/"[..])
                } else if contents {
                    b".".to_vec()
                } else {
                    parent_and_name(&spec.arg).1
                };
                report.info(format!("skipping directory {}", show(&n)));
                return None;
            }
            if !relative {
                // A listed `.` without -r: the root's own attributes are all it sends.
                return None;
            }
        }
        if relative {
            let mut implied = spec.kept.clone();
            let name = implied.pop();
            return Some((spec.base.clone(), name, implied, meta, opts.recursive));
        }
        let (base_path, name) = if contents && meta.kind == Kind::Dir {
            (path, None)
        } else {
            let (p, n) = parent_and_name(&path);
            (p.into_os_string().into_vec(), Some(n))
        };
        Some((base_path, name, Vec::new(), meta, opts.recursive))
    }

    pub fn info(&self) -> SourceInfo {
        let mut named_tops: Vec<serde_bytes::ByteBuf> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for top in self.list.iter().filter_map(Source::top) {
            if seen.insert(top) {
                named_tops.push(serde_bytes::ByteBuf::from(top.to_vec()));
            }
        }
        SourceInfo {
            root_is_transfer_dir: self.list.iter().any(|s| s.name.is_none()),
            // (-R keeps a single file's path, so there is no new name to copy it to.)
            single_file: !self.relative
                && self.args == 1
                && self.list.len() == 1
                && self.list[0].meta.kind != Kind::Dir,
            named_tops,
            io_error: false,
            names: Default::default(),
            missing: self
                .missing
                .iter()
                .map(|m| serde_bytes::ByteBuf::from(m.clone()))
                .collect(),
        }
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
            .unwrap_or_else(crate::tree::virtual_dir_meta);
        let mut root = Entry::new(Box::from(&b"."[..]), root_meta);
        if let Some(s) = self.list.iter().find(|s| s.name.is_none()) {
            scanner.read_root_attrs(self.bases[s.base].as_fd(), &mut root);
        }
        let mut tops = Tops {
            bases: Vec::new(),
            map: HashMap::new(),
            followed: Default::default(),
            unsent: Default::default(),
        };
        for b in &self.bases {
            tops.bases.push(rustix::io::dup(b)?);
        }
        // -R: the kept paths already in the tree that are only implied directories (a
        // later source naming one brings its contents; any other repeat loses to the first).
        let mut implied_at: std::collections::HashSet<Vec<u8>> = Default::default();
        for s in &self.list {
            let base = self.bases[s.base].as_fd();
            let dev = dev_of(base);
            if self.relative
                && let Some(n) = &s.name
            {
                self.scan_relative(scanner, s, n, dev, &mut root, &mut implied_at);
                if let Some(top) = s.top() {
                    tops.map
                        .entry(top.into())
                        .or_insert_with(|| (s.base, top.into()));
                }
                continue;
            }
            let children: Vec<Entry> = match &s.name {
                None => {
                    let listed = rustix::io::dup(base)
                        .map_err(std::io::Error::from)
                        .and_then(|fd| {
                            let outer = scanner.outer_rules(base, true);
                            scanner.read_children(fd, b"", dev, &Up::base(base), &outer)
                        });
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
                        base,
                        n,
                        n,
                        dev,
                        s.recurse,
                        &Up::base(base),
                        &scanner.outer_rules(base, false),
                    )
                    .into_iter()
                    .collect(),
            };
            let mut fresh = Vec::new();
            for mut c in children {
                let src_name = c.name.clone();
                if let (Some(to), Some(_)) = (rename_to, &s.name) {
                    c.name = to.into();
                }
                if tops.map.contains_key(&c.name) {
                    continue;
                }
                tops.map.insert(c.name.clone(), (s.base, src_name));
                fresh.push(c);
            }
            if self.relative {
                // (`src/./` among -R sources: its children merge with the kept paths.)
                for c in fresh {
                    let rel = c.name.to_vec();
                    match root.children.binary_search_by(|x| x.name.cmp(&c.name)) {
                        Err(i) => root.children.insert(i, c),
                        Ok(i) => merge_into(&mut root.children[i], c, &rel, &mut implied_at),
                    }
                }
            } else {
                root.children.extend(fresh);
            }
        }
        root.children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if scanner.opts.prune_empty_dirs {
            let mut pruned = 0;
            prune_empty_dirs(&mut root, &mut pruned);
            // (rsync's file list has them: its receiver prunes.)
            scanner
                .left_out
                .add(crate::tree::Tally::of(Kind::Dir, pruned));
        }
        let chmod = &scanner.opts.chmod;
        if !chmod.is_empty() {
            // The root too when it is a transferred directory (`src/`), not the stand-in
            // for several sources.
            if self.list.iter().any(|s| s.name.is_none()) {
                chmod.apply_tree(&mut root);
            } else {
                root.children.iter_mut().for_each(|c| chmod.apply_tree(c));
            }
        }
        // (-R: implied directories reached through a link on the user's path.)
        if scanner.opts.follows_links() || scanner.opts.relative {
            root.walk(b"", &mut |p, e| {
                if e.followed {
                    tops.followed.insert(p.into());
                }
            });
        }
        Ok((root, tops))
    }

    /// Adds one `-R` source to the tree: its implied directories (created where missing,
    /// with the source's attributes, and never complete, so `--delete` leaves their other
    /// entries alone, as rsync), then the named entry itself.
    fn scan_relative(
        &self,
        scanner: &Scanner<'_, '_>,
        s: &Source,
        name: &[u8],
        dev: u64,
        root: &mut Entry,
        implied_at: &mut std::collections::HashSet<Vec<u8>>,
    ) {
        let report = scanner.report;
        let base = self.bases[s.base].as_fd();
        let mut rel: Vec<u8> = Vec::new();
        let mut node = root;
        for dir in &s.implied {
            rel = crate::pathsafe::join(&rel, dir);
            let pos = match node.children.binary_search_by(|c| (*c.name).cmp(dir)) {
                Ok(i) => {
                    if !node.children[i].is_dir() {
                        // An earlier source brought a non-directory by this name.
                        return;
                    }
                    i
                }
                Err(i) => {
                    let st = crate::fs::cstr(&rel).and_then(|c| {
                        rustix::fs::statat(base, &c, rustix::fs::AtFlags::empty())
                            .map_err(std::io::Error::from)
                    });
                    let meta = match st {
                        Ok(st) => Meta::from_stat(&st),
                        Err(e) => {
                            report.error(ExitCode::Partial, io_message("stat", &rel, &e));
                            return;
                        }
                    };
                    let mut e = Entry::new(dir.as_slice().into(), meta);
                    e.complete = false;
                    e.implied = true;
                    // The user's own path: a symlink on it is followed, as the stat above
                    // did and as rsync does (it sends the directory the link leads to);
                    // marked so later reads follow it too, and nothing else.
                    e.followed = crate::fs::cstr(&rel).is_ok_and(|c| {
                        rustix::fs::statat(base, &c, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                            .is_ok_and(|l| {
                                rustix::fs::FileType::from_raw_mode(l.st_mode).is_symlink()
                            })
                    });
                    node.children.insert(i, e);
                    implied_at.insert(rel.clone());
                    i
                }
            };
            node = &mut node.children[pos];
        }
        let rel = crate::pathsafe::join(&rel, name);
        let parent = if s.implied.is_empty() {
            rustix::io::dup(base).map_err(std::io::Error::from)
        } else {
            let dir = s.implied.join(&b"/"[..]);
            crate::fs::cstr(&dir).and_then(|c| {
                rustix::fs::openat(
                    base,
                    &c,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(std::io::Error::from)
            })
        };
        let parent = match parent {
            Ok(fd) => fd,
            Err(e) => {
                report.error(ExitCode::Partial, io_message("open directory", &rel, &e));
                return;
            }
        };
        let Some(mut entry) = scanner.scan_entry(
            parent.as_fd(),
            name,
            &rel,
            dev,
            s.recurse,
            &Up::base(parent.as_fd()),
            &scanner.outer_rules(base, false),
        ) else {
            return;
        };
        if entry.is_dir() && !s.recurse {
            // Sent without its contents: nothing in it may be deleted on the other side.
            entry.complete = false;
        }
        match node.children.binary_search_by(|c| (*c.name).cmp(name)) {
            Err(i) => node.children.insert(i, entry),
            Ok(i) => merge_into(&mut node.children[i], entry, &rel, implied_at),
        }
    }
}

/// Adds `c` to `dir` (at `rel`): a new name is inserted in order; a name that is only an
/// implied directory so far takes the scanned entry's attributes and contents (below it
/// the same rule applies); any other repeat is left to the first source that brought it.
fn merge_into(
    have: &mut Entry,
    new: Entry,
    rel: &[u8],
    implied_at: &mut std::collections::HashSet<Vec<u8>>,
) {
    if !(have.is_dir() && new.is_dir() && implied_at.remove(rel)) {
        return;
    }
    have.meta = new.meta;
    have.complete = new.complete;
    have.implied = false;
    for c in new.children {
        let child_rel = crate::pathsafe::join(rel, &c.name);
        match have.children.binary_search_by(|x| x.name.cmp(&c.name)) {
            Err(i) => have.children.insert(i, c),
            Ok(i) => merge_into(&mut have.children[i], c, &child_rel, implied_at),
        }
    }
}

/// rsync's `-m`: a directory with nothing but directories below it (after the filters) is
/// left out of the sender's tree, as if excluded, so it is neither created nor kept from
/// `--delete`. The root stays, and so does a directory whose listing failed: what it holds
/// is not known. Returns whether `dir` holds anything that keeps it; `pruned` counts the
/// directories left out.
fn prune_empty_dirs(dir: &mut Entry, pruned: &mut u64) -> bool {
    dir.children.retain_mut(|c| {
        let keep = !c.is_dir() || prune_empty_dirs(c, pruned) || !c.complete;
        // (Its own pruned subdirectories were counted as they went.)
        if !keep {
            *pruned += 1;
        }
        keep
    });
    !dir.children.is_empty()
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

#[cfg(test)]
mod listed_name_tests {
    use crate::pathsafe::ListedName;

    #[test]
    fn listed_names_stay_inside_the_source_and_hostile_ones_are_refused() {
        let p = |raw: &[u8]| ListedName::parse(raw).expect("a name");
        let n = |dir: &str, path: &str| ListedName {
            dir: dir.into(),
            path: path.into(),
        };
        assert_eq!(p(b"../../x/h"), n("", "x/h"));
        assert_eq!(p(b"a/../a/b/g"), n("", "a/b/g"));
        assert_eq!(p(b"/a//b/"), n("", "a/b"));
        assert_eq!(p(b"./x/./y/z"), n("x", "y/z"));
        assert_eq!(p(b"x/./../../y"), n("x", "y"));
        assert_eq!(p(b"."), n("", ""));
        for ok in [p(b"../../x/h"), p(b"./x/./y/z")] {
            assert!(ok.check().is_ok());
        }
        // What a hostile client could put in `Start` instead.
        for (dir, path) in [("", "../x"), ("..", "x"), ("/etc", "passwd"), ("a", "b//c")] {
            assert!(n(dir, path).check().is_err(), "{dir:?} {path:?}");
        }
    }
}
