//! Carries out a [`Plan`] against local directory handles, in parallel.
//!
//! Order inside a directory: deletions first (so a name can change kind), then files,
//! links and nodes alongside the subdirectories (rayon). After the whole tree (and, for a
//! remote source, after the file data has arrived): `-H` followers (their leaders must
//! exist), then directory metadata bottom-up, because every entry created in a directory
//! moves its mtime.

use crate::backup::Keep;
use crate::error::io_message;
use crate::exit::ExitCode;
use crate::plan::{Action, DirPlan, HardLink, Item, Plan};
use crate::progress::Ticket;
use crate::report::{Report, Stats};
use crate::source::TopSource;
use crate::tree::{Kind, Meta, Tally};
use crate::write::{self, MetaRules, StepError, open_rel};
use rayon::prelude::*;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where file content comes from.
pub enum Content<'c, 'p> {
    /// Local source directories: content is copied in the kernel.
    Local(&'c dyn TopSource),
    /// From a peer: transfers are collected, with their destination directory, for the
    /// caller to fill from the wire.
    Deferred(&'c Mutex<Vec<Pending<'p>>>),
}

/// A file to be filled from the wire into `dir`.
pub struct Pending<'p> {
    pub dir: Arc<OwnedFd>,
    pub item: &'p Item<'p>,
    /// The alternate DIR's directory holding this file's delta basis, for a file the
    /// destination does not have yet (`Item::alt`).
    pub basis_dir: Option<Arc<OwnedFd>>,
}

impl Pending<'_> {
    /// What the delta basis was when planned: the destination's file, or DIR's.
    pub fn basis_meta(&self) -> Option<Meta> {
        match &self.basis_dir {
            Some(_) => self.item.alt.map(|a| a.meta),
            None => self.item.dst,
        }
    }
}

pub struct Exec<'a, 'r> {
    pub rules: MetaRules,
    pub report: &'a Report<'r>,
    /// `--no-whole-file` locally: rebuild changed files from their current version.
    pub reuse_basis: bool,
    /// `--partial-dir`: where an interrupted file is kept, beside its target.
    pub partial_dir: Option<write::PartialDir>,
    /// `-B`: the delta block size for a basis signed whole (None: from its length).
    pub block_size: Option<u32>,
    /// Set by the first failure that stops the transfer (a full destination, see
    /// [`ExitCode::of_dest_error`]): from then on no file, link or directory is started,
    /// and the same failure from writers already running is counted but not printed again.
    pub stop: AtomicBool,
    /// Extraneous entries are deleted as their directory is reached (--delete-during);
    /// otherwise [`Exec::delete_pass`] does them all at once, before or after the tree.
    /// (Type replacements are always done in place: the new entry needs the name.)
    pub deletes_in_place: bool,
    /// The roots of the alternate destination DIRs (`AltUse::dir` indexes them).
    pub alt_roots: Vec<BorrowedFd<'a>>,
    /// `-b`: entries replaced or deleted are kept (crate::backup).
    pub backup: Option<Arc<crate::backup::Backup>>,
    /// `-vv`: each backup made is listed, as rsync lists it.
    pub list_backups: bool,
    /// `-K`: the destination's root, from which a directory the destination has through a
    /// symlink ([`DirPlan::via_link`]) is opened.
    pub dst_root: Option<BorrowedFd<'a>>,
    /// `--append`/`--append-verify` (see [`Exec::append_at`]).
    pub append: Option<crate::config::Append>,
    /// Under `-i` or `-v`: the flags a file is listed with again when it is sent again
    /// after failing `--append-verify`'s check (empty without `-i`), as rsync lists it.
    pub relist: Option<String>,
    /// The destination paths whose step failed (for `--remove-source-files`, which keeps
    /// their sources).
    pub failed: Mutex<std::collections::HashSet<Vec<u8>>>,
}

impl Exec<'_, '_> {
    pub fn fail(&self, rel: &[u8], e: StepError) {
        self.note_failed(rel);
        if e.err.kind() == std::io::ErrorKind::NotFound && e.op == "open" {
            self.report.file_error(
                ExitCode::Vanished,
                rel,
                format!("file has vanished: `{}`", crate::error::show(rel)),
            );
            return;
        }
        let f = ExitCode::of_dest_error(&e.err, e.writes_data());
        if f.stops && self.stop.swap(true, Ordering::AcqRel) {
            // Parallel writers hit the full disk at once; one line says it.
            self.report.record(f.code);
            return;
        }
        self.report
            .file_error(f.code, rel, io_message(e.op, rel, &e.err));
    }

    /// Marks `rel` as not in place (a failed step, or a file the sender could not send).
    pub fn note_failed(&self, rel: &[u8]) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rel.to_vec());
    }

    /// `-b`: the backup of the destination entry at `rel`.
    pub fn keep(&self, rel: &[u8]) -> Option<Keep> {
        self.backup.as_ref().map(|b| Keep::new(b, rel))
    }

    /// `-b`: the backup of what `it` replaces (nothing for a new entry).
    pub fn keep_for(&self, it: &Item<'_>) -> Option<Keep> {
        it.dst.and_then(|_| self.keep(&it.rel))
    }

    /// rsync's `-vv` line for a replaced entry's backup.
    fn backed_up(&self, it: &Item<'_>) {
        if self.list_backups
            && let Some(k) = self.keep_for(it)
        {
            self.report.info(k.message());
        }
    }

    /// `--append`: the offset a file's transfer starts at, for a destination file shorter
    /// than its source (the planner leaves out one as long or longer). None: the file is
    /// transferred as usual.
    pub fn append_at(&self, it: &Item<'_>) -> Option<u64> {
        self.append?;
        it.dst
            .filter(|d| d.kind == Kind::File && d.size > 0 && d.size < it.src.meta.size)
            .map(|d| d.size)
    }

    /// `--append-verify`'s check failed, for a file appended from `at`: rsync's warning and
    /// the file's second line (both only under `-v` or `-i`, as rsync's), and the attempt
    /// counted as rsync counts it (a transfer, its tail literal data), before the file is
    /// sent again whole.
    pub fn append_failed(&self, it: &Item<'_>, at: u64) {
        let stats = &self.report.stats;
        Stats::add(&stats.transferred, 1);
        Stats::add(&stats.transferred_size, it.src.meta.size);
        Stats::add(&stats.literal, it.src.meta.size.saturating_sub(at));
        if let Some(flags) = &self.relist {
            let shown = crate::error::show(&it.rel);
            self.report.warn_bare(format!(
                "WARNING: {shown} failed verification -- update retained (will try again)."
            ));
            self.report.line(if flags.is_empty() {
                shown
            } else {
                format!("{flags} {shown}")
            });
        }
    }

    /// Whether a failure has stopped the transfer: nothing new is started.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Deletions, directories, links, nodes, attribute updates and (locally) file copies.
    pub fn run_tree<'p>(&self, plan: &'p Plan<'p>, dst_root: &OwnedFd, content: &Content<'_, 'p>) {
        match rustix::io::dup(dst_root) {
            Ok(fd) => self.dir(&plan.root, None, &Arc::new(fd), content, true),
            Err(e) => self.fail(
                b".",
                StepError {
                    op: "open directory",
                    err: e.into(),
                },
            ),
        }
    }

    /// Hard links, then directory metadata (the root's too, when it is a transfer dir).
    pub fn finish(
        &self,
        plan: &Plan<'_>,
        dst_root: &OwnedFd,
        root_meta: Option<(&Meta, crate::tree::Attrs<'_>, Option<&Meta>)>,
    ) {
        for (name, e) in write::put_delayed_into_place() {
            self.fail(&name, e);
        }
        // Leaders may never have been written.
        if !self.stopped() {
            for l in &plan.links {
                self.link(dst_root.as_fd(), l);
            }
        }
        self.post(&plan.root, dst_root.as_fd());
        if let Some((want, attrs, have)) = root_meta
            && plan.root.set_meta
            && let Err(e) = write::set_dir_meta(dst_root, want, attrs, have, &self.rules)
        {
            self.fail(b".", e);
        }
    }

    fn dir<'p>(
        &self,
        d: &'p DirPlan<'p>,
        src_fd: Option<BorrowedFd<'_>>,
        dst: &Arc<OwnedFd>,
        content: &Content<'_, 'p>,
        at_root: bool,
    ) {
        let dst_fd = dst.as_fd();
        self.deletes(d, dst_fd, |del| del.replace || self.deletes_in_place);
        let alt_dirs = self.alt_dirs(d);
        let alt_of = |it: &Item<'_>| -> Option<&Arc<OwnedFd>> {
            it.alt
                .and_then(|a| alt_dirs.get(a.dir))
                .and_then(Option::as_ref)
        };
        let src_of = |name: &[u8]| -> Option<BorrowedFd<'_>> {
            match content {
                Content::Local(tops) if at_root => tops.dir_for(name),
                _ => src_fd,
            }
        };
        let deferred = |it: &Item<'_>| {
            it.action == Action::Transfer && matches!(content, Content::Deferred(_))
        };
        if let Content::Deferred(pending) = content {
            // A directory's transfers join the list at once: pushed one by one from every
            // worker, 30,000 new files spent 21 ms of the receiver's start on the lock.
            let mine: Vec<Pending<'p>> = d
                .items
                .iter()
                .filter(|it| deferred(it))
                .map(|it| Pending {
                    dir: dst.clone(),
                    item: it,
                    basis_dir: alt_of(it).filter(|_| it.dst.is_none()).cloned(),
                })
                .collect();
            if !mine.is_empty() {
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            }
        }
        rayon::join(
            || {
                d.items.par_iter().for_each(|it| {
                    if deferred(it) {
                        return;
                    }
                    let alt = alt_of(it).map(|f| f.as_fd());
                    self.item(it, src_of(it.name), alt, dst_fd);
                })
            },
            || {
                d.subdirs.par_iter().for_each(|sub| {
                    if self.stopped() {
                        return;
                    }
                    let sfd = match (content, src_of(sub.name)) {
                        (Content::Local(_), Some(parent)) => {
                            let opened = if sub.src.followed {
                                write::open_dir_following(parent, sub.src_name)
                            } else {
                                write::open_dir(parent, sub.src_name)
                            };
                            match opened {
                                Ok(fd) => Some(fd),
                                Err(e) => return self.fail(&sub.rel, e),
                            }
                        }
                        (Content::Local(_), None) => return,
                        (Content::Deferred(_), _) => None,
                    };
                    let dfd = if sub.dst.is_none() {
                        // (--no-implied-dirs: an implied one with default permissions.)
                        write::make_dir(dst_fd, sub.name, if sub.implied { 0o777 } else { 0o700 })
                    } else {
                        self.open_dst_dir(dst_fd, sub)
                    };
                    match dfd {
                        Ok(dfd) => {
                            if sub.dst.is_none() {
                                self.report.stats.created.add(Tally::one(Kind::Dir));
                            }
                            let sfd = sfd.as_ref().map(|f| f.as_fd());
                            self.dir(sub, sfd, &Arc::new(dfd), content, false)
                        }
                        Err(e) => self.fail(&sub.rel, e),
                    }
                })
            },
        );
    }

    /// An existing destination directory below `parent`: never through a symlink, but for
    /// `-K`'s links, resolved from the root and never out of it.
    fn open_dst_dir(&self, parent: BorrowedFd<'_>, d: &DirPlan<'_>) -> Result<OwnedFd, StepError> {
        match (d.via_link, self.dst_root) {
            (true, Some(root)) => crate::fs::open_dirlink_beneath(root, &d.rel)
                .map_err(|e| StepError::new("open directory", e)),
            _ => write::open_dir(parent, d.name),
        }
    }

    /// The alternate DIRs' directories at `d`'s path, each opened once if an item of `d`
    /// links, copies or takes its delta basis from it. Below the DIR every component is
    /// opened without following symlinks, as in the destination.
    fn alt_dirs(&self, d: &DirPlan<'_>) -> Vec<Option<Arc<OwnedFd>>> {
        let mut fds: Vec<Option<Arc<OwnedFd>>> = Vec::new();
        if self.alt_roots.is_empty() {
            return fds;
        }
        fds.resize_with(self.alt_roots.len(), || None);
        let mut failed = vec![false; self.alt_roots.len()];
        for a in d.items.iter().filter_map(|it| it.alt) {
            let (Some(root), Some(slot)) = (self.alt_roots.get(a.dir), fds.get_mut(a.dir)) else {
                continue;
            };
            if slot.is_some() || failed[a.dir] {
                continue;
            }
            match open_rel(*root, &d.rel) {
                Ok(fd) => *slot = Some(Arc::new(fd)),
                Err(e) => {
                    failed[a.dir] = true;
                    self.fail(&d.rel, e);
                }
            }
        }
        fds
    }

    /// The deletions of `d` that `which` selects.
    fn deletes(
        &self,
        d: &DirPlan<'_>,
        dst_fd: BorrowedFd<'_>,
        which: impl Fn(&crate::plan::Delete<'_>) -> bool + Sync,
    ) {
        let delete = |del: &crate::plan::Delete<'_>| {
            if !which(del) {
                return;
            }
            let keep = self.keep(&del.rel);
            let keep = keep.as_ref();
            let res = if del.under.is_empty() {
                write::remove_entry(dst_fd, del.entry, del.shallow, keep)
            } else {
                open_rel(dst_fd, &del.under)
                    .and_then(|fd| write::remove_entry(fd.as_fd(), del.entry, del.shallow, keep))
            };
            match res {
                Ok(n) => {
                    if self.list_backups
                        && let Some(k) = keep.filter(|k| !del.entry.is_dir() && !k.is_backup())
                    {
                        self.report.info(k.message());
                    }
                    if !del.replace {
                        self.report.stats.deleted.add(n);
                        self.report.file_event(|| {
                            crate::json::FileEvent::new(
                                "deleted",
                                String::from_utf8_lossy(&del.rel).into(),
                            )
                        });
                    }
                }
                Err(e) => self.fail(&del.rel, e),
            }
        };
        // One-by-one deletions (--max-delete) depend on their order; whole ones do not.
        if d.deletes.iter().any(|x| x.shallow) {
            d.deletes.iter().for_each(delete);
        } else {
            d.deletes.par_iter().for_each(delete);
        }
    }

    /// --delete-before, -after and -delay: every extraneous entry of the plan, in one pass
    /// over the directories that have any. Directories are only opened, never created:
    /// one with deletions existed when the plan was made.
    pub fn delete_pass(&self, plan: &Plan<'_>, dst_root: &OwnedFd) {
        fn has_deletes(d: &DirPlan<'_>) -> bool {
            d.deletes.iter().any(|x| !x.replace) || d.subdirs.iter().any(has_deletes)
        }
        fn walk(exec: &Exec<'_, '_>, d: &DirPlan<'_>, fd: BorrowedFd<'_>) {
            exec.deletes(d, fd, |del| !del.replace);
            d.subdirs
                .par_iter()
                .filter(|s| s.dst.is_some() && has_deletes(s))
                .for_each(|s| match exec.open_dst_dir(fd, s) {
                    Ok(sfd) => walk(exec, s, sfd.as_fd()),
                    Err(e) => exec.fail(&s.rel, e),
                });
        }
        if has_deletes(&plan.root) {
            walk(self, &plan.root, dst_root.as_fd());
        }
    }

    /// Counts a finished item for --stats.
    pub fn created(&self, it: &Item<'_>) {
        if it.dst.is_none() {
            self.report.stats.created.add(Tally::one(it.src.meta.kind));
        }
    }

    /// Counts a transferred file, and shows it under `--progress`; `ticket` is from
    /// [`Self::begin`].
    pub fn transferred(&self, it: &Item<'_>, literal: u64, matched: u64, ticket: Option<Ticket>) {
        let stats = &self.report.stats;
        Stats::add(&stats.transferred, 1);
        Stats::add(&stats.transferred_size, it.src.meta.size);
        Stats::add(&stats.literal, literal);
        Stats::add(&stats.matched, matched);
        self.created(it);
        self.backed_up(it);
        self.report.file_event(|| {
            let action = if it.dst.is_none() {
                "created"
            } else {
                "updated"
            };
            let mut e =
                crate::json::FileEvent::new(action, String::from_utf8_lossy(&it.rel).into());
            e.itemize = it
                .line
                .as_deref()
                .and_then(|l| l.split_once(' '))
                .map(|(flags, _)| flags.to_string());
            e.bytes = Some(it.src.meta.size);
            e.literal = Some(literal);
            e.matched = Some(matched);
            e
        });
        if let Some(l) = &it.late {
            // (--out-format's %b: the data sent, which is what was not matched.)
            self.report.listed(&l.filled(literal, 0));
        }
        if let (Some(p), Some(t)) = (&self.report.progress, ticket) {
            p.done(t, it.src.meta.size);
        }
    }

    /// A file starts: under progress, its ticket (nothing at all without progress).
    pub fn begin(&self, it: &Item<'_>) -> Option<Ticket> {
        self.report.progress.as_ref().map(|p| {
            p.begin(
                it.line.clone(),
                || crate::error::show(&it.rel),
                it.src.meta.size,
            )
        })
    }

    fn item(
        &self,
        it: &Item<'_>,
        src_dir: Option<BorrowedFd<'_>>,
        alt_dir: Option<BorrowedFd<'_>>,
        dst_dir: BorrowedFd<'_>,
    ) {
        if self.stopped() {
            return;
        }
        let m = &it.src.meta;
        let res = match (it.action, src_dir) {
            (Action::Transfer, Some(src_dir)) if self.append_at(it).is_some() => {
                self.append_local(it, src_dir, dst_dir)
            }
            (Action::Transfer, Some(src_dir)) => {
                let ticket = self.begin(it);
                crate::progress::copying(ticket.as_ref(), || {
                    write::copy_file(
                        write::SrcFile {
                            dir: src_dir,
                            name: it.src_name,
                            followed: it.src.followed,
                        },
                        dst_dir,
                        it.name,
                        m,
                        it.src.attrs(),
                        it.dst.as_ref(),
                        &self.rules,
                        self.reuse_basis,
                        self.keep_for(it),
                    )
                })
                .map(|(literal, matched)| self.transferred(it, literal, matched, ticket))
            }
            (Action::Transfer, None) => Ok(()),
            (Action::Special, _) => write::make_special(
                dst_dir,
                it.name,
                m,
                it.src.attrs(),
                it.src.target.as_deref(),
                &self.rules,
                self.keep_for(it).as_ref(),
            )
            .map(|()| {
                self.created(it);
                self.backed_up(it);
            }),
            (Action::AltLink | Action::AltCopy, _) => match alt_dir {
                // (Its failure to open was reported for the directory.)
                None => Ok(()),
                Some(alt) if it.action == Action::AltLink => self.alt_link(it, alt, dst_dir),
                Some(alt) => self.alt_copy(it, alt, dst_dir),
            },
            (Action::Meta, _) => match &it.dst {
                Some(have) => {
                    write::update_meta(dst_dir, it.name, m, it.src.attrs(), have, &self.rules)
                }
                None => Ok(()),
            },
        };
        if let Err(e) = res {
            self.fail(&it.rel, e);
        }
    }

    /// `--append` on a local copy: the source's tail copied onto the target in the kernel;
    /// under `--append-verify` the whole file then compared with the source, and copied
    /// again whole (atomically) when they differ.
    fn append_local(
        &self,
        it: &Item<'_>,
        src_dir: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
    ) -> Result<(), StepError> {
        let at = self.append_at(it).unwrap_or(0);
        let src = write::SrcFile {
            dir: src_dir,
            name: it.src_name,
            followed: it.src.followed,
        };
        let verify = self.append.is_some_and(|a| a.verify);
        let ticket = self.begin(it);
        let appended = crate::progress::copying(ticket.as_ref(), || {
            write::append_file(
                src,
                dst_dir,
                it.name,
                at,
                &it.src.meta,
                it.src.attrs(),
                it.dst.as_ref(),
                &self.rules,
                verify,
                self.keep_for(it),
            )
        })?;
        if let Some(literal) = appended {
            self.transferred(it, literal, 0, ticket);
            return Ok(());
        }
        // (The appended file stays as it is until the copy replaces it.)
        self.append_failed(it, at);
        let ticket = self.begin(it);
        let (literal, matched) = crate::progress::copying(ticket.as_ref(), || {
            write::copy_file(
                src,
                dst_dir,
                it.name,
                &it.src.meta,
                it.src.attrs(),
                it.dst.as_ref(),
                &self.rules,
                false,
                None,
            )
        })?;
        self.transferred(it, literal, matched, ticket);
        Ok(())
    }

    /// `--link-dest`: DIR's file becomes this name. Where the link is refused (DIR on
    /// another file system, a file at its link limit), the entry is copied from DIR
    /// instead, as rsync does, and only that entry loses the space saving.
    fn alt_link(
        &self,
        it: &Item<'_>,
        alt: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
    ) -> Result<(), StepError> {
        // (rsync relinks a destination file that DIR's copy replaces without a backup.)
        match write::hard_link(alt, it.name, dst_dir, it.name, None) {
            Ok(()) => {
                self.created(it);
                Ok(())
            }
            Err(_) => self.alt_copy(it, alt, dst_dir),
        }
    }

    /// A local copy of DIR's file (content known to be right) with the source's metadata.
    fn alt_copy(
        &self,
        it: &Item<'_>,
        alt: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
    ) -> Result<(), StepError> {
        let m = &it.src.meta;
        if m.kind != Kind::File {
            // A symlink or node is made anew; it has no content to copy.
            return write::make_special(
                dst_dir,
                it.name,
                m,
                it.src.attrs(),
                it.src.target.as_deref(),
                &self.rules,
                None,
            )
            .map(|()| self.created(it));
        }
        write::copy_file(
            write::SrcFile {
                dir: alt,
                name: it.name,
                followed: false,
            },
            dst_dir,
            it.name,
            m,
            it.src.attrs(),
            it.dst.as_ref(),
            &self.rules,
            false,
            None,
        )
        .map(|_| self.created(it))
    }

    fn link(&self, root: BorrowedFd<'_>, l: &HardLink<'_>) {
        let (ldir, lname) = split_parent(&l.leader);
        let (fdir, fname) = split_parent(&l.rel);
        let keep = self.keep(&l.rel);
        let res = open_rel(root, ldir).and_then(|lfd| {
            let ffd = open_rel(root, fdir)?;
            write::hard_link(lfd.as_fd(), lname, ffd.as_fd(), fname, keep.as_ref())
        });
        match res {
            Ok(()) if l.new => self.report.stats.created.add(Tally::one(Kind::File)),
            Ok(()) => {}
            Err(e) => self.fail(&l.rel, e),
        }
    }

    /// Directory metadata, children before parents.
    fn post(&self, d: &DirPlan<'_>, fd: BorrowedFd<'_>) {
        d.subdirs
            .par_iter()
            .filter(|s| s.needs_post())
            .for_each(|s| match self.open_dst_dir(fd, s) {
                Ok(sfd) => {
                    self.post(s, sfd.as_fd());
                    if s.set_meta
                        && let Err(e) = write::set_dir_meta(
                            &sfd,
                            &s.src.meta,
                            s.src.attrs(),
                            s.dst.as_ref(),
                            &self.rules,
                        )
                    {
                        self.fail(&s.rel, e);
                    }
                }
                // A directory the stopped transfer never made.
                Err(e) if self.stopped() && e.err.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.fail(&s.rel, e),
            });
    }
}

fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    }
}
