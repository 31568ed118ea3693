//! Walks one side's tree in parallel into a [`Tree`](crate::tree::Entry).
//!
//! Each directory is read through its own handle (`openat` with `O_NOFOLLOW`, `statat` with
//! `AT_SYMLINK_NOFOLLOW`), so a symlink is recorded as a link and never walked through. The
//! entries of a directory are stat'ed in parallel and its subdirectories walked in parallel
//! (rayon): on a 2-core machine the two walks of a no-op sync overlap instead of queueing.
//! Filter rules are applied here, on the way down, so an excluded directory is never read.
//!
//! The one exception to "never through a symlink" is the sender's `-L`, `-k` and
//! `--copy-unsafe-links`: a link they select is stat'ed and opened *with* following, on
//! purpose, and marked [`Entry::followed`] so the later reads follow it too. A followed
//! directory that is one of its own ancestors (`a/loop -> ..`) is a loop: rsync walks it
//! until the kernel's 40-link limit (ELOOP, exit 23); the handle walk would never hit that
//! limit, so [`Up`] catches the loop at its first turn with the same error and exit code.

use crate::config::Options;
use crate::error::{io_message, show};
use crate::exit::ExitCode;
use crate::filter::{DirRules, Filters, Side, Verdict};
use crate::fs::{cstr, open_dir_at, open_dir_following, open_file_at};
use crate::pathsafe::{join, unsafe_link};
use crate::report::Report;
use crate::tree::{Entry, Kind, Meta};
use rayon::prelude::*;
use rustix::fs::{AtFlags, Dir, readlinkat, statat};
use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

/// An entry's metadata as `--fake-super` presents it, and a fake symlink's target.
type Faked = (Meta, Option<Box<[u8]>>);

/// What one side's scan needs to know besides the tree itself.
pub struct Scanner<'a, 'r> {
    pub side: Side,
    pub filters: &'a Filters,
    pub opts: &'a Options,
    pub report: &'a Report<'r>,
    /// Receiver side: xsync temp files left by a killed run, found while scanning; the job
    /// removes them (unless `-n`).
    pub stale_temps: Mutex<Vec<Vec<u8>>>,
    /// Whether directories are walked into: `-r`; and on the receiving side of `-R` always,
    /// since implied directories bring children without `-r` (only what the sender's
    /// tree names is compared there; the rest is never deleted, as it is incomplete).
    pub recurse: bool,
    /// `-X`: the names this side reads (a receiver only those it may set).
    xattr_scope: Option<crate::xattr::Scope>,
    /// Receiver under `-K`: the destination's root, from which a symlink to a directory is
    /// resolved (never out of it) and then walked as the directory ([`Entry::followed`]).
    dirlinks_root: std::sync::OnceLock<OwnedFd>,
    /// Sender side: the first bad rule found in a per-directory merge file, which ends
    /// the run (rsync's exit 1) once the scan is done.
    pub rule_error: Mutex<Option<String>>,
    /// Sender side: entries in rsync's file list that xsync's tree leaves out (kinds this
    /// run does not carry, `-m`'s pruned directories), which `--stats` still counts.
    pub left_out: crate::report::Tallies,
}

/// Worker threads at nice 10, for a scan that runs while the remote shell logs in: it then
/// takes only the CPU that ssh's key exchange leaves idle. (Linux applies nice per
/// thread.) `None` if the pool cannot be built; the caller scans at normal priority.
pub fn background_pool() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .start_handler(|_| {
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
        })
        .build()
        .ok()
}

/// The directories (by dev and inode) from the source's base down to the one being read.
#[derive(Clone, Copy)]
pub struct Up<'u> {
    dev: u64,
    ino: u64,
    parent: Option<&'u Up<'u>>,
}

impl<'u> Up<'u> {
    /// The chain's start: the directory a source is read from (`src` for `src/`, its
    /// parent for `src`), which a link can point back at too.
    pub fn base(fd: impl AsFd) -> Up<'static> {
        let (dev, ino) = rustix::fs::fstat(fd).map_or((0, 0), |s| (s.st_dev, s.st_ino));
        Up {
            dev,
            ino,
            parent: None,
        }
    }

    fn below(&'u self, m: &Meta) -> Up<'u> {
        Up {
            dev: m.dev,
            ino: m.ino,
            parent: Some(self),
        }
    }

    fn contains(&self, m: &Meta) -> bool {
        let mut cur = Some(self);
        while let Some(u) = cur {
            if (u.dev, u.ino) == (m.dev, m.ino) {
                return true;
            }
            cur = u.parent;
        }
        false
    }
}

/// Whether the sender replaces a symlink by its referent: every link with `-L`, one that
/// points out of the transfer with `--copy-unsafe-links`, one to a directory with `-k`.
pub fn follows(opts: &Options, target: &[u8], rel: &[u8], to_dir: bool) -> bool {
    opts.copy_links
        || (opts.copy_unsafe_links && unsafe_link(target, rel))
        || (opts.copy_dirlinks && to_dir)
}

impl<'a, 'r> Scanner<'a, 'r> {
    pub fn new(
        side: Side,
        filters: &'a Filters,
        opts: &'a Options,
        report: &'a Report<'r>,
    ) -> Self {
        Scanner {
            side,
            filters,
            opts,
            report,
            stale_temps: Mutex::new(Vec::new()),
            rule_error: Mutex::new(None),
            left_out: Default::default(),
            recurse: opts.recursive || (side == Side::Receiver && opts.relative),
            xattr_scope: match side {
                Side::Sender => opts.xattrs,
                Side::Receiver => opts.receiver_xattrs(),
            },
            dirlinks_root: std::sync::OnceLock::new(),
        }
    }

    /// The destination's root, for `-K` (a receiver's scan of the destination calls this
    /// before it walks; without `-K` it does nothing).
    pub fn dest_root(&self, root: BorrowedFd<'_>) {
        if self.side == Side::Receiver
            && self.opts.keep_dirlinks
            && let Ok(fd) = rustix::io::dup(root)
        {
            let _ = self.dirlinks_root.set(fd);
        }
    }

    /// `-K`: whether the destination symlink at `rel` leads to a directory inside the
    /// destination; its directory's metadata if so. One that leads out of it is named.
    fn dirlink(&self, dirfd: BorrowedFd<'_>, c: &CStr, rel: &[u8]) -> Option<Meta> {
        let root = self.dirlinks_root.get()?;
        match crate::fs::open_dirlink_beneath(root.as_fd(), rel) {
            Ok(fd) => rustix::fs::fstat(&fd).ok().map(|st| Meta::from_stat(&st)),
            Err(e) => {
                if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
                    && statat(dirfd, c, AtFlags::empty())
                        .is_ok_and(|st| Kind::from_mode(st.st_mode) == Kind::Dir)
                {
                    self.report.info(format!(
                        "not following symlink \"{}\" (-K): it leads out of the destination",
                        show(rel)
                    ));
                }
                None
            }
        }
    }

    /// A transfer-dir root's attributes beyond its stat (`-X`, `-A`), read through its
    /// handle: no parent lists the root, so [`Self::scan_entry`] never reads them.
    pub fn read_root_attrs(&self, fd: BorrowedFd<'_>, root: &mut Entry) {
        let at = crate::xattr::At::Fd(fd);
        let failed = |what: &str, e: &io::Error| {
            if self.side == Side::Sender {
                self.report
                    .error(ExitCode::Partial, io_message(what, b".", e));
            }
        };
        if let Some(scope) = self.xattr_scope {
            match crate::xattr::read(at, scope) {
                Ok(x) => root.xattrs = x,
                Err(e) => failed("read extended attributes of", &e),
            }
        }
        if self.opts.acls {
            match crate::acl::read(at, true, false) {
                Ok(a) => root.acls = a,
                Err(e) => failed("read the ACLs of", &e),
            }
        }
    }

    fn verdict(&self, here: &DirRules, rel: &[u8], is_dir: bool) -> Verdict {
        if self.filters.is_empty() {
            return Verdict::Kept;
        }
        self.filters
            .check(here, self.side, rel, is_dir, self.opts.delete_excluded)
    }

    /// The filter rules a walk from the directory `base` starts with (see
    /// [`Filters::outer`]): `contents` when the walk reads `base`'s entries (`src/`), not
    /// only a name in it.
    pub fn outer_rules(&self, base: BorrowedFd<'_>, contents: bool) -> DirRules {
        if !self.filters.per_dir() {
            return DirRules::default();
        }
        // The directory's own path, as rsync's getcwd() after its chdir sees it.
        let path = std::fs::read_link(format!("/proc/self/fd/{}", base.as_raw_fd()))
            .unwrap_or_else(|_| std::path::PathBuf::from("/"));
        let (rules, errors) = self.filters.outer(&path, contents);
        for e in errors {
            self.rule_failed(e);
        }
        rules
    }

    /// The rules inside the open directory `fd` at `rel`, whose parent's are `parent`:
    /// its per-directory merge files, read through the handle without following a link.
    fn enter(&self, parent: &DirRules, fd: BorrowedFd<'_>, rel: &[u8]) -> DirRules {
        if !self.filters.per_dir() {
            return DirRules::default();
        }
        let (rules, errors) = self.filters.enter(parent, rel, |name| {
            let c = cstr(name).ok()?;
            let fd = open_file_at(fd, &c, false).ok()?;
            let mut data = Vec::new();
            std::fs::File::from(fd).read_to_end(&mut data).ok()?;
            Some(data)
        });
        for e in errors {
            let shown = if rel.is_empty() {
                ".".into()
            } else {
                show(rel)
            };
            self.rule_failed(format!("{e} (in a merge file in `{shown}`)"));
        }
        rules
    }

    /// A bad rule in a merge file: fatal on the sender (after the scan), reported on the
    /// receiver, whose rules only protect from --delete.
    fn rule_failed(&self, message: String) {
        match self.side {
            Side::Sender => {
                let mut first = self.rule_error.lock().unwrap();
                first.get_or_insert(message);
            }
            Side::Receiver => self.report.error(ExitCode::Usage, message),
        }
    }

    /// Builds the entry for `name` in `dirfd` (root-relative path `rel`) and, for a
    /// directory with `-r`, everything below it. `None` when the entry is filtered out,
    /// skipped for its kind, or vanished.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_entry(
        &self,
        dirfd: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        root_dev: u64,
        recurse: bool,
        up: &Up<'_>,
        here: &DirRules,
    ) -> Option<Entry> {
        let c = cstr(name).ok()?;
        let st = match statat(dirfd, &c, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                let e = io::Error::from(e);
                self.stat_failed(rel, &e);
                return None;
            }
        };
        let meta = Meta::from_stat(&st);
        let mut entry = self.entry_from(dirfd, &c, name, rel, meta, here)?;
        if entry.is_dir() && recurse {
            self.fill_dir(dirfd, &c, rel, &mut entry, root_dev, up, here);
        } else if entry.is_dir() {
            // (-d: sent without its contents, so nothing in it is extraneous; and a
            // destination directory not read is removed whole.)
            entry.complete = false;
        }
        Some(entry)
    }

    fn stat_failed(&self, rel: &[u8], e: &io::Error) {
        if e.kind() == io::ErrorKind::NotFound && self.side == Side::Sender {
            self.report.error(
                ExitCode::Vanished,
                format!("file has vanished: `{}`", show(rel)),
            );
        } else if self.side == Side::Sender {
            self.report
                .error(ExitCode::Partial, io_message("stat", rel, e));
        }
    }

    /// The entry for one stat'ed name, or None when the rules say to leave it out. Long
    /// because the sender's symlink rules (`-L`, `-k`, `--copy-unsafe-links`: a link may
    /// be replaced by what it points at) and the kinds each side carries are decided in
    /// order on the one stat, each reading the previous one's outcome.
    fn entry_from(
        &self,
        dirfd: BorrowedFd<'_>,
        c: &CStr,
        name: &[u8],
        rel: &[u8],
        meta: Meta,
        here: &DirRules,
    ) -> Option<Entry> {
        let mut meta = meta;
        let mut target = None;
        let mut followed = false;
        if self.opts.fake_super {
            match self.fake_super(dirfd, c, name, rel, meta) {
                Ok((m, t)) => (meta, target) = (m, t),
                Err(()) => return None,
            }
        }
        if meta.kind == Kind::Symlink
            && target.is_none()
            && self.side == Side::Receiver
            && let Some(m) = self.dirlink(dirfd, c, rel)
        {
            meta = m;
            followed = true;
        }
        if meta.kind == Kind::Symlink && target.is_none() && self.side == Side::Sender {
            let t = match readlinkat(dirfd, c, Vec::new()) {
                Ok(t) => t.into_bytes(),
                Err(e) => {
                    self.stat_failed(rel, &io::Error::from(e));
                    return None;
                }
            };
            if self.opts.follows_links() {
                let referent = statat(dirfd, c, AtFlags::empty());
                let to_dir = referent
                    .as_ref()
                    .is_ok_and(|st| Kind::from_mode(st.st_mode) == Kind::Dir);
                if follows(self.opts, &t, rel, to_dir) {
                    match referent {
                        Ok(st) => {
                            if !self.opts.copy_links
                                && self.opts.copy_unsafe_links
                                && self.opts.verbose > 0
                                && unsafe_link(&t, rel)
                            {
                                self.report.info(format!(
                                    "copying unsafe symlink \"{}\" -> \"{}\"",
                                    show(rel),
                                    show(&t)
                                ));
                            }
                            meta = Meta::from_stat(&st);
                            followed = true;
                        }
                        Err(e) => {
                            self.no_referent(rel, io::Error::from(e));
                            return None;
                        }
                    }
                }
            }
            if !followed {
                // (--safe-links skips an unsafe one on the receiving side: see plan.rs.)
                target = Some(t.into_boxed_slice());
            }
        }
        let is_dir = meta.kind == Kind::Dir;
        let mut entry = Entry::new(name.into(), meta);
        entry.followed = followed;
        match self.side {
            Side::Sender => {
                if self.verdict(here, rel, is_dir) != Verdict::Kept {
                    return None;
                }
                if !carried(self.opts, meta.kind) {
                    self.report
                        .info(format!("skipping non-regular file \"{}\"", show(rel)));
                    self.left_out.add(crate::tree::Tally::one(meta.kind));
                    return None;
                }
            }
            Side::Receiver => {
                if meta.kind == Kind::File {
                    match crate::temps::owner(name) {
                        crate::temps::Owner::NotOurs => {}
                        // (Another run's file in flight is neither compared nor deleted.)
                        crate::temps::Owner::Live => return None,
                        crate::temps::Owner::Dead => {
                            self.stale_temps.lock().unwrap().push(rel.to_vec());
                            return None;
                        }
                    }
                }
                let v = self.verdict(here, rel, is_dir);
                entry.protected = v != Verdict::Kept;
                entry.perishable = v == Verdict::Perishable;
            }
        }
        if meta.kind == Kind::Symlink && target.is_some() {
            entry.target = target;
        } else if meta.kind == Kind::Symlink {
            match readlinkat(dirfd, c, Vec::new()) {
                Ok(t) => entry.target = Some(t.into_bytes().into_boxed_slice()),
                Err(e) => {
                    self.stat_failed(rel, &io::Error::from(e));
                    return None;
                }
            }
        }
        if let Some(scope) = self.xattr_scope
            && !entry.protected
        {
            match crate::xattr::read(crate::xattr::At::Name(dirfd, c), scope) {
                Ok(x) => entry.xattrs = x,
                Err(e) if self.side == Side::Sender => {
                    self.report.error(
                        ExitCode::Partial,
                        io_message("read extended attributes of", rel, &e),
                    );
                    return None;
                }
                // The receiver's attributes are then all set again.
                Err(_) => {}
            }
        }
        if self.opts.acls && meta.kind != Kind::Symlink && !entry.protected {
            match crate::acl::read(crate::xattr::At::Name(dirfd, c), is_dir, followed) {
                Ok(a) => entry.acls = a,
                Err(e) if self.side == Side::Sender => {
                    self.report
                        .error(ExitCode::Partial, io_message("read the ACLs of", rel, &e));
                    return None;
                }
                // The receiver's ACLs are then all set again.
                Err(_) => {}
            }
        }
        if meta.kind == Kind::File && self.opts.checksum && !entry.protected {
            match hash_file(dirfd, c, followed) {
                Ok(h) => entry.hash = Some(h),
                Err(e) => {
                    if self.side == Side::Sender {
                        self.report
                            .error(ExitCode::Partial, io_message("read", rel, &e));
                        return None;
                    }
                    // A receiver file that cannot be read simply never matches.
                }
            }
        }
        Some(entry)
    }

    /// `--fake-super`: the entry as its `user.rsync.%stat` describes it (see fakesuper.rs),
    /// with a fake symlink's target read from the file. A real symlink on the receiving
    /// side has no target, as rsync's receiver reads it, so it is replaced by a fake one.
    /// A corrupt attribute is rsync's error, and the entry is left out.
    fn fake_super(
        &self,
        dirfd: BorrowedFd<'_>,
        c: &CStr,
        name: &[u8],
        rel: &[u8],
        meta: Meta,
    ) -> Result<Faked, ()> {
        match meta.kind {
            Kind::Symlink if self.side == Side::Receiver => {
                return Ok((meta, Some(Box::default())));
            }
            // (A temporary stays one, whatever it was to become: see temps.rs.)
            Kind::File
                if self.side == Side::Receiver
                    && !matches!(crate::temps::owner(name), crate::temps::Owner::NotOurs) =>
            {
                return Ok((meta, None));
            }
            Kind::File | Kind::Dir => {}
            _ => return Ok((meta, None)),
        }
        let stat = match crate::fakesuper::read(crate::xattr::At::Name(dirfd, c)) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok((meta, None)),
            Err(crate::fakesuper::ReadError::Corrupt(v)) => {
                self.report.error(
                    ExitCode::FileIo,
                    format!(
                        "Corrupt user.rsync.%stat xattr attached to {}: \"{v}\"",
                        show(rel)
                    ),
                );
                return Err(());
            }
            Err(crate::fakesuper::ReadError::Os(e)) => {
                self.report.error(
                    ExitCode::Partial,
                    io_message("read xattr user.rsync.%stat of", rel, &io::Error::from(e)),
                );
                return Err(());
            }
        };
        let faked = stat.present(&meta);
        if faked.kind != Kind::Symlink {
            return Ok((faked, None));
        }
        let read = open_file_at(dirfd, c, false)
            .and_then(|fd| crate::fakesuper::read_target(std::os::fd::AsFd::as_fd(&fd)));
        match read {
            Ok(t) => Ok((
                Meta {
                    size: t.len() as u64,
                    ..faked
                },
                Some(t.into_boxed_slice()),
            )),
            Err(e) => {
                self.stat_failed(rel, &e);
                Err(())
            }
        }
    }

    /// A followed link that leads nowhere (or round a chain of links): rsync's wording.
    fn no_referent(&self, rel: &[u8], e: io::Error) {
        if e.kind() == io::ErrorKind::NotFound {
            self.report.error(
                ExitCode::Partial,
                format!("symlink has no referent: \"{}\"", show(rel)),
            );
        } else {
            self.report
                .error(ExitCode::Partial, io_message("stat", rel, &e));
        }
    }

    /// Reads a directory's children into `entry`, recursing in parallel. (A receiver's
    /// directory kept only by a perishable rule is read: it goes if its parent goes.)
    #[allow(clippy::too_many_arguments)]
    fn fill_dir(
        &self,
        parent: BorrowedFd<'_>,
        c: &CStr,
        rel: &[u8],
        entry: &mut Entry,
        root_dev: u64,
        up: &Up<'_>,
        rules: &DirRules,
    ) {
        if entry.protected && !entry.perishable {
            return;
        }
        if self.opts.one_file_system && entry.meta.dev != root_dev {
            entry.complete = false;
            return;
        }
        let opened = if !entry.followed {
            open_dir_at(parent, c)
        } else if up.contains(&entry.meta) {
            Err(io::Error::from_raw_os_error(eloop()))
        } else if let Some(root) = self.dirlinks_root.get() {
            crate::fs::open_dirlink_beneath(root.as_fd(), rel)
        } else {
            open_dir_following(parent, c)
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) => {
                self.dir_failed(rel, &e, entry);
                return;
            }
        };
        let here = up.below(&entry.meta);
        match self.read_children(fd, rel, root_dev, &here, rules) {
            Ok((children, complete)) => {
                entry.children = children;
                entry.complete &= complete;
            }
            Err(e) => self.dir_failed(rel, &e, entry),
        }
    }

    fn dir_failed(&self, rel: &[u8], e: &io::Error, entry: &mut Entry) {
        entry.complete = false;
        if e.kind() == io::ErrorKind::NotFound && self.side == Side::Sender {
            self.report.error(
                ExitCode::Vanished,
                format!("directory has vanished: `{}`", show(rel)),
            );
        } else {
            self.report
                .error(ExitCode::Partial, io_message("open directory", rel, e));
        }
    }

    /// Lists, stats and (for directories) recurses into the children of an open directory.
    /// Returns them sorted by name, and whether the listing was complete. `parent`: the
    /// filter rules of the directory that holds it (for a walk's root,
    /// [`outer_rules`](Self::outer_rules)).
    pub fn read_children(
        &self,
        fd: OwnedFd,
        rel: &[u8],
        root_dev: u64,
        up: &Up<'_>,
        parent: &DirRules,
    ) -> io::Result<(Vec<Entry>, bool)> {
        let rules = self.enter(parent, fd.as_fd(), rel);
        let rules = &rules;
        let mut dir = Dir::new(fd)?;
        let mut names: Vec<CString> = Vec::new();
        let mut complete = true;
        while let Some(ent) = dir.read() {
            match ent {
                Ok(ent) => {
                    let n = ent.file_name();
                    let b = n.to_bytes();
                    if b != b"." && b != b".." {
                        names.push(n.to_owned());
                    }
                }
                Err(e) => {
                    complete = false;
                    self.report.error(
                        ExitCode::Partial,
                        io_message("read directory", rel, &io::Error::from(e)),
                    );
                    break;
                }
            }
        }
        let dirfd = dir.fd()?;
        let recurse = self.recurse;
        let build = |c: &CString| -> Option<Entry> {
            let name = c.as_bytes();
            let child_rel = join(rel, name);
            let st = match statat(dirfd, c, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    self.stat_failed(&child_rel, &io::Error::from(e));
                    return None;
                }
            };
            let mut e = self.entry_from(dirfd, c, name, &child_rel, Meta::from_stat(&st), rules)?;
            if e.is_dir() && recurse {
                self.fill_dir(dirfd, c, &child_rel, &mut e, root_dev, up, rules);
            } else if e.is_dir() {
                e.complete = false;
            }
            Some(e)
        };
        // Small directories are cheaper walked on this thread than split up.
        let mut children: Vec<Entry> = if names.len() > 16 {
            names.par_iter().with_min_len(8).filter_map(build).collect()
        } else {
            names.iter().filter_map(build).collect()
        };
        children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok((children, complete))
    }
}

fn eloop() -> i32 {
    rustix::io::Errno::LOOP.raw_os_error()
}

/// blake3 of a file's content, for `-c`.
fn hash_file(dirfd: BorrowedFd<'_>, c: &CStr, followed: bool) -> io::Result<[u8; 32]> {
    let fd = open_file_at(dirfd, c, followed)?;
    let mut f = std::fs::File::from(fd);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

/// With `-H`: marks every name of a multiply-linked regular file but the first (in the
/// depth-first name order both sides share) with the path of that first name.
pub fn assign_link_leaders(root: &mut Entry) {
    use std::collections::HashMap;
    let mut first: HashMap<(u64, u64), Box<[u8]>> = HashMap::new();
    fn visit(e: &mut Entry, prefix: &[u8], first: &mut HashMap<(u64, u64), Box<[u8]>>) {
        for c in &mut e.children {
            let p = join(prefix, &c.name);
            if c.meta.kind == Kind::File && c.meta.nlink > 1 && !c.protected {
                let key = (c.meta.dev, c.meta.ino);
                match first.get(&key) {
                    Some(leader) => c.link_leader = Some(leader.clone()),
                    None => {
                        first.insert(key, p.clone().into_boxed_slice());
                    }
                }
            }
            if c.is_dir() {
                visit(c, &p, first);
            }
        }
    }
    visit(root, b"", &mut first);
}

/// The dev of an open directory, for `-x`.
pub fn dev_of(fd: impl AsFd) -> u64 {
    rustix::fs::fstat(fd).map(|s| s.st_dev).unwrap_or(0)
}

/// Whether a run with these options carries entries of this kind: symlinks with `-l`,
/// devices with `-D`/`--devices`, fifos and sockets with `-D`/`--specials`. The sender
/// leaves the others out, and the receiver drops them again from what a peer sends (as
/// rsync's receiver does), so a server cannot plant a device node in a `-r` pull.
pub fn carried(opts: &Options, kind: Kind) -> bool {
    if opts.list_only {
        // rsync lists every kind, whatever would be copied.
        return true;
    }
    match kind {
        Kind::File | Kind::Dir => true,
        Kind::Symlink => opts.links,
        Kind::CharDev | Kind::BlockDev => opts.devices,
        Kind::Fifo | Kind::Socket => opts.specials,
    }
}
