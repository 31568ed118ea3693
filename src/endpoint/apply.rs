//! The receiving end's work, shared by the local copy and the receiver role so the
//! destination rules cannot drift: the destination's scan ([`scan_dest`]), and once the
//! source tree is known (all of it locally, or the parts whose digests differ from a
//! peer) `--chown`, plan, list, execute, finish ([`receive_tree`]).

use crate::altdest::AltDirs;
use crate::config::{DeleteWhen, Options};
use crate::dest::{Dest, remove_stale_temps};
use crate::exec::{Content, Exec, Pending};
use crate::exit::ExitCode;
use crate::filter::Side;
use crate::plan::{Plan, Planner};
use crate::protocol::SourceInfo;
use crate::report::{Report, Stats};
use crate::scan::Scanner;
use crate::summary::prepare;
use crate::tree::Entry;
use crate::write::MetaRules;
use std::os::fd::AsFd;
use std::sync::Mutex;

/// The metadata rules for this run and this process.
pub fn meta_rules(opts: &Options) -> MetaRules {
    let am_root = rustix::process::geteuid().is_root();
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    rustix::process::umask(old);
    MetaRules {
        perms: opts.perms,
        executability: opts.executability && !opts.perms,
        times: opts.times,
        atimes: opts.atimes,
        fake_super: opts.fake_super,
        omit_dir_times: opts.omit_dir_times,
        omit_link_times: opts.omit_link_times,
        // rsync silently preserves owners only as the super-user.
        // (--fake-super keeps the owner as the super-user would, in an attribute.)
        owner: opts.owner && (am_root || opts.fake_super),
        group: opts.group,
        sparse: opts.sparse,
        umask: old.bits(),
        am_root: am_root || opts.fake_super,
        inplace: opts.inplace,
        delay_updates: opts.delay_updates,
        window: opts.modify_window,
        fsync: opts.fsync,
        xattrs: opts.receiver_xattrs(),
        acls: opts.acls,
        temp_dir: None,
    }
}

/// `-T`: DIR (relative to the destination directory unless absolute) opened for the run,
/// or rsync's refusal, before anything changes: a DIR that does not exist or is not a
/// directory is its usage error (exit 1), any other failure to reach it exit 11.
fn open_temp_dir(
    dir: &str,
    dest: &std::path::Path,
) -> Result<&'static crate::write::TempDir, crate::error::Error> {
    use crate::error::Error;
    let path = if std::path::Path::new(dir).is_absolute() {
        std::path::PathBuf::from(dir)
    } else {
        dest.join(dir)
    };
    crate::write::TempDir::open(&path).map_err(|e| match e.raw_os_error() {
        Some(n) if n == rustix::io::Errno::NOENT.raw_os_error() => {
            Error::usage(format!("The temp-dir does not exist: {dir}"))
        }
        Some(n) if n == rustix::io::Errno::NOTDIR.raw_os_error() => {
            Error::usage(format!("The temp-dir is not a directory: {dir}"))
        }
        _ => Error::new(
            ExitCode::FileIo,
            format!("Failed to stat temp-dir {dir}: {e}"),
        ),
    })
}

/// The flags of the line a file gets when `--append-verify` sends it again: rsync lists it
/// against the appended file, which has the source's size and, since its time was not set,
/// another mtime (empty without `-i`: the name alone).
fn relist_flags(opts: &Options) -> String {
    if !opts.itemize {
        return String::new();
    }
    let t = if opts.times { 't' } else { 'T' };
    format!("{}f..{t}......", opts.transfer_mark())
}

/// The destination's tree, scanned (under `quiet` at low priority, while the remote
/// shell logs in) with its digests prepared; `None` when there is no destination yet.
pub fn scan_dest(
    dest: &Dest,
    info: &SourceInfo,
    scanner: &Scanner<'_, '_>,
    opts: &Options,
    quiet: bool,
) -> Option<Entry> {
    let scan = || dest.scan(info, scanner);
    let mut root = match quiet.then(crate::scan::background_pool).flatten() {
        Some(pool) => pool.install(scan),
        None => scan(),
    };
    if let Some(d) = root.as_mut() {
        prepare(d, opts, Side::Receiver);
    }
    root
}

/// Fills the files the plan transfers from a peer: called once with all of them, after
/// directories exist and before directory metadata is set.
pub type Fetch<'c> = &'c mut dyn FnMut(&Exec<'_, '_>, Vec<Pending<'_>>);

/// How file content reaches the destination.
pub enum Source<'c> {
    Local(&'c dyn crate::source::TopSource),
    Remote(Fetch<'c>),
}

/// The destination's side of the sequence once the source tree is known: the sides, and
/// where content comes from.
pub struct Receiving<'a, 'r> {
    pub opts: &'a Options,
    pub report: &'a Report<'r>,
    pub info: &'a SourceInfo,
    pub dest: &'a Dest,
    pub dst_root: Option<&'a Entry>,
    pub dst_scanner: &'a Scanner<'a, 'r>,
    pub alt: Option<&'a AltDirs>,
    /// This end is a pulling client.
    pub pulled: bool,
}

/// `--chown` (every entry the forced ids; the receiving end resolves the names, and the
/// digests already leave forced ids out), then [`apply`].
/// Returns, under `--remove-source-files`, the source paths the destination now has in
/// place ([`in_place`]).
pub fn receive_tree(
    r: &Receiving<'_, '_>,
    src_root: &mut Entry,
    source: Source<'_>,
) -> Vec<Vec<u8>> {
    let chown = crate::ids::Chown::resolve(r.opts, Some(r.report));
    if !chown.is_empty() {
        chown.apply_tree(src_root);
    }
    apply(r, src_root, source)
}

/// Plan, list, execute, finish.
fn apply(r: &Receiving<'_, '_>, src_root: &Entry, source: Source<'_>) -> Vec<Vec<u8>> {
    let Receiving {
        opts,
        report,
        info,
        dest,
        dst_root,
        dst_scanner,
        alt,
        pulled,
    } = *r;
    let mut rules = meta_rules(opts);
    let backup = match crate::backup::Backup::open(
        opts.backup.as_ref(),
        &dest.path,
        dest.root
            .as_ref()
            .map(|f| f.as_fd())
            .filter(|_| !opts.dry_run),
    ) {
        Ok(b) => b,
        Err(e) => {
            report.error(e.code, e.message());
            return Vec::new();
        }
    };
    if let Some(d) = &opts.temp_dir {
        match open_temp_dir(d, &dest.path) {
            Ok(t) => rules.temp_dir = Some(t),
            Err(e) => {
                report.error(e.code, e.message());
                return Vec::new();
            }
        }
    }
    // A sender that could not read everything must not cause deletions (rsync: "IO error
    // encountered -- skipping file deletion").
    let no_deletes = !opts.ignore_errors && (info.io_error || report.code() != ExitCode::Ok);
    if no_deletes && opts.delete {
        report.warn("IO error encountered -- skipping file deletion");
    }
    let planner = Planner {
        opts,
        missing: info.missing.iter().map(|m| m.to_vec()).collect(),
        root_is_transfer_dir: info.root_is_transfer_dir,
        no_deletes,
        rules,
        alt,
        root_is_new: dest.created,
        pulled,
    };
    let rename = match (&dest.rename_to, info.named_tops.first()) {
        (Some(to), Some(from)) => Some((to.as_slice(), from.as_slice())),
        _ => None,
    };
    let plan: Plan<'_> = planner.plan(src_root, dst_root, rename);
    // rsync counts the destination root it made among the created directories (not one
    // --mkpath made, which the transfer then found).
    if dest.created {
        report
            .stats
            .created
            .add(crate::tree::Tally::one(crate::tree::Kind::Dir));
    }
    let mut placed = Vec::new();
    for l in &plan.lines {
        report.listed(l);
    }
    for rel in &plan.refused {
        report.file_error(
            ExitCode::Partial,
            rel,
            format!(
                "--no-implied-dirs: `{}` in the destination is not a directory; xsync neither follows nor replaces it, so nothing below it is copied (rsync 3.5 fails those entries too)",
                crate::error::show(rel)
            ),
        );
    }
    if let Some(p) = &report.progress {
        p.planned(plan.root.transfers());
    }
    report.flush();
    if !opts.dry_run
        && let Some(root_fd) = dest.root.as_ref()
    {
        remove_stale_temps(root_fd, dst_scanner, report);
        let exec = Exec {
            rules,
            report,
            reuse_basis: opts.whole_file == Some(false),
            partial_dir: opts
                .partial_dir
                .as_deref()
                .map(crate::write::PartialDir::new),
            block_size: opts.block_size,
            stop: Default::default(),
            deletes_in_place: opts.delete_when == DeleteWhen::During,
            alt_roots: alt
                .map(|a| a.dirs.iter().map(|d| d.fd.as_fd()).collect())
                .unwrap_or_default(),
            backup,
            list_backups: opts.verbose > 1,
            dst_root: opts.keep_dirlinks.then(|| root_fd.as_fd()),
            append: opts.append,
            relist: (opts.itemize || opts.names).then(|| relist_flags(opts)),
            failed: Default::default(),
        };
        if opts.delete_when == DeleteWhen::Before {
            exec.delete_pass(&plan, root_fd);
        }
        match source {
            Source::Local(tops) => exec.run_tree(&plan, root_fd, &Content::Local(tops)),
            Source::Remote(fetch) => {
                let pending = Mutex::new(Vec::new());
                exec.run_tree(&plan, root_fd, &Content::Deferred(&pending));
                fetch(&exec, pending.into_inner().unwrap_or_default());
            }
        }
        // (Before the directories' times are set: a deletion moves its directory's mtime.)
        // A transfer that stopped (a full disk, a lost connection) deletes nothing after it,
        // as rsync, whose receiver has exited by then.
        if matches!(opts.delete_when, DeleteWhen::After | DeleteWhen::Delay) && !exec.stopped() {
            exec.delete_pass(&plan, root_fd);
        }
        let root_meta = info
            .root_is_transfer_dir
            .then(|| (&src_root.meta, src_root.attrs(), dst_root.map(|d| &d.meta)));
        exec.finish(&plan, root_fd, root_meta);
        if opts.remove_source_files {
            placed = in_place(src_root, dst_root, &plan, &exec, rename, opts);
        }
    }
    if plan.delete_skipped > 0 {
        report.warn(format!(
            "Deletions stopped due to --max-delete limit ({} skipped)",
            plan.delete_skipped
        ));
        report.record(ExitCode::MaxDelete);
    }
    if opts.dry_run {
        let p = plan.planned();
        let s = &report.stats;
        s.created.add(p.created);
        s.deleted.add(p.deleted);
        Stats::add(&s.transferred, p.transferred);
        Stats::add(&s.transferred_size, p.transferred_size);
    }
    placed
}

/// `--remove-source-files`: the source's non-directories (by their source paths) that the
/// destination has once the run is done, as rsync's generator confirms them: those that
/// were already up to date (equal digests: nothing to do, so not planned), and those the
/// plan created or updated whose step did not fail — nor a directory above them, nor the
/// transfer as a whole (after a stop, only what was already there counts). What the plan
/// left alone for a rule (`-u`, `--existing`, a size limit) is not in place. A source that
/// is the destination's own file (the same inode, locally) is never offered, with rsync's
/// error.
fn in_place(
    src_root: &Entry,
    dst_root: Option<&Entry>,
    plan: &Plan<'_>,
    exec: &Exec<'_, '_>,
    rename: Option<(&[u8], &[u8])>,
    opts: &Options,
) -> Vec<Vec<u8>> {
    use std::collections::HashSet;
    fn planned(d: &crate::plan::DirPlan<'_>, out: &mut HashSet<Vec<u8>>) {
        for it in d.items.iter().filter(|it| !it.src.is_dir()) {
            out.insert(it.rel.clone());
        }
        for s in &d.subdirs {
            planned(s, out);
        }
    }
    let mut done: HashSet<Vec<u8>> = HashSet::new();
    if !exec.stopped() {
        planned(&plan.root, &mut done);
        done.extend(plan.links.iter().map(|l| l.rel.clone()));
    }
    let failed = exec.failed.lock().unwrap_or_else(|p| p.into_inner());
    let failed_at = |rel: &[u8]| {
        failed.contains(rel)
            || rel
                .iter()
                .enumerate()
                .any(|(i, &b)| b == b'/' && failed.contains(&rel[..i]))
    };
    struct Walk<'w, 'r> {
        opts: &'w Options,
        done: &'w HashSet<Vec<u8>>,
        failed_at: &'w dyn Fn(&[u8]) -> bool,
        report: &'w Report<'r>,
        out: Vec<Vec<u8>>,
    }
    impl Walk<'_, '_> {
        /// `src` (at source path `rel`, destination path `drel`) against what the
        /// destination had there before the run.
        fn visit(&mut self, src: &Entry, dst: Option<&Entry>, rel: Vec<u8>, drel: Vec<u8>) {
            let dst = dst.filter(|d| d.meta.kind == src.meta.kind);
            // (rsync's generator skips for --ignore-existing and the size limits before
            // it finds a file up to date, and confirms nothing it skipped.)
            let o = self.opts;
            let skipped = (o.ignore_existing && !src.is_dir())
                || (src.meta.kind == crate::tree::Kind::File && !o.sizes.contains(src.meta.size));
            let same = !skipped && dst.is_some_and(|d| d.digest == src.digest);
            if !src.is_dir() {
                if !(same || (self.done.contains(&drel) && !(self.failed_at)(&drel))) {
                    return;
                }
                if dst.is_some_and(|d| {
                    d.meta.ino != 0 && d.meta.ino == src.meta.ino && d.meta.dev == src.meta.dev
                }) {
                    self.report.record(ExitCode::Partial);
                    self.report.warn_bare(format!(
                        "ERROR: Skipping sender remove of destination file: {}",
                        crate::error::show(&rel)
                    ));
                } else {
                    self.out.push(rel);
                }
                return;
            }
            for c in &src.children {
                let d = dst.and_then(|d| d.child(&c.name));
                self.visit(
                    c,
                    d,
                    crate::pathsafe::join(&rel, &c.name),
                    crate::pathsafe::join(&drel, &c.name),
                );
            }
        }
    }
    let mut w = Walk {
        opts,
        done: &done,
        failed_at: &failed_at,
        report: exec.report,
        out: Vec::new(),
    };
    for c in &src_root.children {
        // (The single file copied to a new name has that name at the destination.)
        let dname: &[u8] = match rename {
            Some((to, from)) if *c.name == *from => to,
            _ => &c.name,
        };
        let d = dst_root.and_then(|d| d.child(dname));
        w.visit(c, d, c.name.to_vec(), dname.to_vec());
    }
    w.out
}

/// `--list-only`: the source tree's lines on stdout (none under `-q`, as rsync's), for a
/// local source or one pulled without a destination.
pub fn print_listing(
    root: &Entry,
    opts: &Options,
    root_is_transfer_dir: bool,
    report: &Report<'_>,
) {
    // rsync leaves out the implied directories it did not send.
    let skip = |_: &[u8], e: &Entry| opts.no_implied_dirs && opts.relative && e.implied;
    for l in crate::ls::lines(root, opts, root_is_transfer_dir, &skip) {
        report.info(l);
    }
}
