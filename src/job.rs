//! One run: resolve the command line's sources and destination with rsync's rules, scan
//! both sides at once, compare, plan, execute, report.
//!
//! rsync's path rules live here: `src/` copies the contents, `src` the directory itself;
//! one missing destination level is created (all of them with `--mkpath`); a single file
//! whose destination is not an existing directory is copied to that name.

use crate::cli::Options;
use crate::error::{Error, io_message, show};
use crate::exec::{Exec, TopSource};
use crate::exit::ExitCode;
use crate::filter::Side;
use crate::plan::{Plan, Planner};
use crate::report::{Report, Stats, num};
use crate::scan::{Scanner, assign_link_leaders, cstr, dev_of};
use crate::summary::{Compared, digest_tree};
use crate::tree::{Entry, Kind, Meta};
use crate::write::{self, MetaRules};
use rustix::fs::{Mode, OFlags};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One source argument after resolution.
struct Source {
    /// The directory the entry is read from (its parent, or itself for `src/`).
    base: OwnedFd,
    /// `None` for `src/` (its contents become the root's children).
    name: Option<Vec<u8>>,
    meta: Meta,
}

struct Tops {
    bases: Vec<OwnedFd>,
    /// destination top-level name → (index into bases, name in that directory)
    map: HashMap<Box<[u8]>, (usize, Box<[u8]>)>,
}

impl TopSource for Tops {
    fn dir_for(&self, top_name: &[u8]) -> Option<BorrowedFd<'_>> {
        self.map.get(top_name).map(|(i, _)| self.bases[*i].as_fd())
    }
}

fn open_path(p: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// rsync's rule for telling a remote spec from a local path: a colon before the first slash.
pub fn is_remote(arg: &[u8]) -> bool {
    match arg.iter().position(|&b| b == b':') {
        Some(c) => !arg[..c].contains(&b'/') && c > 0,
        None => false,
    }
}

fn parent_and_name(p: &[u8]) -> (PathBuf, Vec<u8>) {
    let trimmed = {
        let mut t = p;
        while t.len() > 1 && t.ends_with(b"/") {
            t = &t[..t.len() - 1];
        }
        t
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(0) => (PathBuf::from("/"), trimmed[1..].to_vec()),
        Some(i) => (
            PathBuf::from(OsStr::from_bytes(&trimmed[..i])),
            trimmed[i + 1..].to_vec(),
        ),
        None => (PathBuf::from("."), trimmed.to_vec()),
    }
}

pub fn run(opts: &mut Options, report: &Report<'_>) -> Result<(), Error> {
    let start = Instant::now();
    if opts.paths.len() < 2 {
        return Err(Error::usage(if opts.paths.is_empty() {
            "no source or destination given (usage: xsync [OPTION]... SRC [SRC]... DEST)"
                .to_string()
        } else {
            "no destination given; xsync does not support rsync's listing mode (usage: xsync [OPTION]... SRC [SRC]... DEST)".to_string()
        }));
    }
    for p in &opts.paths {
        if is_remote(p.as_bytes()) {
            return Err(Error::new(
                ExitCode::Usage,
                format!(
                    "remote path `{}`: remote transfers are not supported by this build of xsync yet",
                    show(p.as_bytes())
                ),
            ));
        }
    }
    let am_root = rustix::process::geteuid().is_root();
    // rsync silently preserves owners only as the super-user.
    opts.owner &= am_root;
    let opts = &*opts;
    let old = rustix::process::umask(Mode::empty());
    rustix::process::umask(old);
    let rules = MetaRules {
        perms: opts.perms,
        times: opts.times,
        owner: opts.owner,
        group: opts.group,
        sparse: opts.sparse,
        umask: old.bits(),
        am_root,
    };

    let (dst_arg, src_args) = opts.paths.split_last().expect("checked above");
    let dst_bytes = dst_arg.as_bytes();

    // Resolve the sources.
    let mut sources: Vec<Source> = Vec::new();
    for s in src_args {
        let b = s.as_bytes();
        let contents = b.ends_with(b"/") || b.ends_with(b"/.") || b == b".";
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
        let base = open_path(&base_path).map_err(|e| {
            Error::io(
                ExitCode::Partial,
                "open directory",
                base_path.as_os_str().as_bytes(),
                &e,
            )
        });
        match base {
            Ok(base) => sources.push(Source { base, name, meta }),
            Err(e) => report.error(ExitCode::Partial, e.message()),
        }
    }

    // Single non-directory source to a name that is not an existing directory: rsync
    // copies it to that name.
    let dst_path = Path::new(dst_arg);
    let dst_stat = rustix::fs::stat(dst_path).ok().map(|s| Meta::from_stat(&s));
    let dst_is_dir = dst_stat.map(|m| m.kind == Kind::Dir).unwrap_or(false);
    let rename_to: Option<Vec<u8>> = if sources.len() == 1
        && src_args.len() == 1
        && sources[0].meta.kind != Kind::Dir
        && !dst_is_dir
        && !dst_bytes.ends_with(b"/")
    {
        Some(parent_and_name(dst_bytes).1)
    } else {
        None
    };
    if dst_stat.is_some() && !dst_is_dir && rename_to.is_none() {
        return Err(Error::new(
            ExitCode::FileSelect,
            format!(
                "destination `{}` is not a directory (needed when copying more than one file or a directory)",
                show(dst_bytes)
            ),
        ));
    }
    let dst_root_path: PathBuf = match &rename_to {
        Some(_) => parent_and_name(dst_bytes).0,
        None => dst_path.to_path_buf(),
    };

    // The destination root: open it, or create it (one level; all with --mkpath).
    let dst_root: Option<OwnedFd> = match open_path(&dst_root_path) {
        Ok(fd) => Some(fd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if opts.dry_run {
                None
            } else {
                let r = if opts.mkpath {
                    std::fs::create_dir_all(&dst_root_path)
                } else {
                    std::fs::create_dir(&dst_root_path)
                };
                if let Err(e) = r {
                    return Err(Error::io(
                        ExitCode::FileIo,
                        "create directory",
                        dst_root_path.as_os_str().as_bytes(),
                        &e,
                    ));
                }
                if opts.verbose > 0 {
                    report.info(format!(
                        "created directory {}",
                        show(dst_root_path.as_os_str().as_bytes())
                    ));
                }
                Some(open_path(&dst_root_path).map_err(|e| {
                    Error::io(
                        ExitCode::FileIo,
                        "open directory",
                        dst_root_path.as_os_str().as_bytes(),
                        &e,
                    )
                })?)
            }
        }
        Err(e) => {
            return Err(Error::io(
                ExitCode::FileIo,
                "open destination directory",
                dst_root_path.as_os_str().as_bytes(),
                &e,
            ));
        }
    };

    // Scan both sides at once. The destination is read whole for a transfer-dir root
    // (extraneous entries matter there); otherwise only the names the sources bring.
    let src_scanner = Scanner::new(Side::Sender, &opts.filters, opts, report);
    let dst_scanner = Scanner::new(Side::Receiver, &opts.filters, opts, report);
    let root_is_transfer_dir = sources.iter().any(|s| s.name.is_none());
    let named_tops: Vec<&[u8]> = sources
        .iter()
        .filter_map(|s| s.name.as_deref())
        .map(|n| rename_to.as_deref().unwrap_or(n))
        .collect();
    let (scanned, mut dst_root_entry) = rayon::join(
        || scan_sources(&sources, rename_to.as_deref(), &src_scanner, report),
        || {
            dst_root
                .as_ref()
                .map(|fd| scan_dest(fd, root_is_transfer_dir, &named_tops, &dst_scanner))
        },
    );
    let (mut src_root, origin) = scanned;
    let mut tops = Tops {
        bases: Vec::new(),
        map: HashMap::new(),
    };
    for s in &sources {
        tops.bases.push(
            rustix::io::dup(&s.base)
                .map_err(|e| Error::io(ExitCode::FileIo, "open directory", b".", &e.into()))?,
        );
    }
    for (top, idx) in origin {
        let src_name: Box<[u8]> = match (&sources[idx].name, &rename_to) {
            (Some(n), Some(_)) => n.clone().into_boxed_slice(),
            _ => top.clone(),
        };
        tops.map.insert(top, (idx, src_name));
    }
    let scan_done = start.elapsed();

    let cmp = Compared::from_options(opts);
    if opts.hard_links {
        assign_link_leaders(&mut src_root);
        if let Some(d) = dst_root_entry.as_mut() {
            assign_link_leaders(d);
        }
    }
    rayon::join(
        || digest_tree(&mut src_root, &cmp),
        || {
            if let Some(d) = dst_root_entry.as_mut() {
                digest_tree(d, &cmp)
            }
        },
    );

    // A sender that could not read everything must not cause deletions (rsync: "IO error
    // encountered -- skipping file deletion").
    let sender_trouble = report.code() != ExitCode::Ok;
    if sender_trouble && opts.delete {
        report.warn("IO error encountered -- skipping file deletion");
    }
    let planner = Planner {
        opts,
        root_is_transfer_dir,
        no_deletes: sender_trouble,
    };
    let rename = match (&rename_to, sources.first().and_then(|s| s.name.as_deref())) {
        (Some(to), Some(from)) => Some((to.as_slice(), from)),
        _ => None,
    };
    let plan: Plan<'_> = planner.plan(&src_root, dst_root_entry.as_ref(), rename);
    for l in &plan.lines {
        report.line(l);
    }

    if !opts.dry_run {
        if let Some(root_fd) = dst_root.as_ref() {
            remove_stale_temps(root_fd, &dst_scanner, report);
            let exec = Exec { rules, report };
            let root_src = sources
                .iter()
                .find(|s| s.name.is_none())
                .map(|s| s.base.as_fd());
            exec.run(&plan, root_fd, &tops, root_src);
            if root_is_transfer_dir && plan.root.set_meta {
                if let Err(e) = write::set_dir_meta(
                    root_fd,
                    &src_root.meta,
                    dst_root_entry.as_ref().map(|d| &d.meta),
                    &rules,
                ) {
                    report.error(ExitCode::Partial, io_message(e.op, b".", &e.err));
                }
            }
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
        // Nothing ran, but -n --stats should still say what would have been sent.
        Stats::add(&report.stats.deleted, plan.delete_count);
    }
    count_files(&src_root, report);
    if opts.stats || opts.verbose > 0 {
        print_summary(
            opts,
            report,
            scan_done.as_secs_f64(),
            start.elapsed().as_secs_f64(),
        );
    }
    Ok(())
}

/// Reads every source into one root: `src/` contributes its children, `src` itself.
/// The first source to bring a name wins it. Returns the root and, for each top-level
/// name, the index of the source it came from.
fn scan_sources(
    sources: &[Source],
    rename_to: Option<&[u8]>,
    scanner: &Scanner<'_, '_>,
    report: &Report<'_>,
) -> (Entry, Vec<(Box<[u8]>, usize)>) {
    let root_meta = sources
        .iter()
        .find(|s| s.name.is_none())
        .map(|s| s.meta)
        .unwrap_or_else(virtual_dir_meta);
    let mut root = Entry::new(Box::from(&b"."[..]), root_meta);
    let mut origin: Vec<(Box<[u8]>, usize)> = Vec::new();
    for (idx, s) in sources.iter().enumerate() {
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
            Some(n) => {
                let top = rename_to.unwrap_or(n);
                scanner
                    .scan_entry(s.base.as_fd(), n, top, dev, scanner.opts.recursive)
                    .map(|mut e| {
                        e.name = top.into();
                        e
                    })
                    .into_iter()
                    .collect()
            }
        };
        for c in children {
            if origin.iter().any(|(n, _)| *n == c.name) {
                continue;
            }
            origin.push((c.name.clone(), idx));
            root.children.push(c);
        }
    }
    root.children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    (root, origin)
}

/// Reads the destination root: all of it for a transfer-dir root, else only `tops`.
fn scan_dest(fd: &OwnedFd, whole: bool, tops: &[&[u8]], scanner: &Scanner<'_, '_>) -> Entry {
    let meta = rustix::fs::fstat(fd)
        .map(|s| Meta::from_stat(&s))
        .unwrap_or_else(|_| virtual_dir_meta());
    let dev = dev_of(fd);
    let mut root = Entry::new(Box::from(&b"."[..]), meta);
    if whole {
        let listed = rustix::io::dup(fd)
            .map_err(std::io::Error::from)
            .and_then(|d| scanner.read_children(d, b"", dev));
        match listed {
            Ok((c, complete)) => {
                root.children = c;
                root.complete = complete;
            }
            Err(_) => root.complete = false,
        }
    } else {
        // Only the named entries are read, but a killed run's temporaries sit beside them.
        if let Ok(mut d) = rustix::io::dup(fd)
            .map_err(std::io::Error::from)
            .and_then(|d| rustix::fs::Dir::new(d).map_err(std::io::Error::from))
        {
            while let Some(Ok(ent)) = d.read() {
                let n = ent.file_name().to_bytes();
                if crate::pathsafe::is_temp_name(n)
                    && ent.file_type() == rustix::fs::FileType::RegularFile
                {
                    scanner.stale_temps.lock().unwrap().push(n.to_vec());
                }
            }
        }
        for name in tops {
            if root.children.iter().any(|c| *c.name == **name) {
                continue;
            }
            if let Some(e) = scanner.scan_entry(fd.as_fd(), name, name, dev, scanner.opts.recursive)
            {
                root.children.push(e);
            }
        }
        root.children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    }
    root
}

fn virtual_dir_meta() -> Meta {
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

/// Removes `.xsync-tmp.*` leftovers of a killed run found by the destination scan.
fn remove_stale_temps(root: &OwnedFd, scanner: &Scanner<'_, '_>, report: &Report<'_>) {
    let temps = std::mem::take(&mut *scanner.stale_temps.lock().unwrap());
    for rel in temps {
        let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], &rel[..]),
        };
        let res = crate::exec::open_rel(root.as_fd(), dir).and_then(|fd| {
            let c = cstr(name).map_err(|e| write::StepError {
                op: "delete",
                err: e,
            })?;
            rustix::fs::unlinkat(&fd, &c, rustix::fs::AtFlags::empty()).map_err(|e| {
                write::StepError {
                    op: "delete stale temporary",
                    err: e.into(),
                }
            })
        });
        if let Err(e) = res {
            report.error(ExitCode::Partial, io_message(e.op, &rel, &e.err));
        }
    }
}

fn count_files(root: &Entry, report: &Report<'_>) {
    let s = &report.stats;
    let count = |e: &Entry| {
        Stats::add(&s.files, 1);
        match e.meta.kind {
            Kind::File => {
                Stats::add(&s.reg_files, 1);
                Stats::add(&s.total_size, e.meta.size);
            }
            Kind::Dir => Stats::add(&s.dirs, 1),
            Kind::Symlink => {
                Stats::add(&s.links, 1);
                Stats::add(
                    &s.total_size,
                    e.target.as_ref().map(|t| t.len() as u64).unwrap_or(0),
                );
            }
            Kind::CharDev | Kind::BlockDev => Stats::add(&s.devices, 1),
            _ => Stats::add(&s.specials, 1),
        }
    };
    if root.name.as_ref() == b"." && root.meta.ino != 0 {
        count(root);
    }
    root.walk(b"", &mut |_, e| count(e));
}

fn kinds(reg: u64, dir: u64, link: u64, dev: u64, special: u64) -> String {
    let mut parts = Vec::new();
    for (n, label) in [
        (reg, "reg"),
        (dir, "dir"),
        (link, "link"),
        (dev, "dev"),
        (special, "special"),
    ] {
        if n > 0 {
            parts.push(format!("{label}: {}", num(n, 0)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn print_summary(opts: &Options, report: &Report<'_>, scan_secs: f64, total_secs: f64) {
    let s = &report.stats;
    let g = Stats::get;
    let h = opts.human_readable;
    let literal = g(&s.literal);
    let total = g(&s.total_size);
    let sent = literal;
    let speedup = if sent > 0 {
        total as f64 / sent as f64
    } else {
        0.0
    };
    if opts.stats {
        let lines = [
            format!(
                "Number of files: {}{}",
                num(g(&s.files), 0),
                kinds(
                    g(&s.reg_files),
                    g(&s.dirs),
                    g(&s.links),
                    g(&s.devices),
                    g(&s.specials)
                )
            ),
            format!(
                "Number of created files: {}{}",
                num(g(&s.created), 0),
                kinds(
                    g(&s.created_reg),
                    g(&s.created_dir),
                    g(&s.created_link),
                    g(&s.created_dev),
                    g(&s.created_special)
                )
            ),
            format!("Number of deleted files: {}", num(g(&s.deleted), 0)),
            format!(
                "Number of regular files transferred: {}",
                num(g(&s.transferred), 0)
            ),
            format!("Total file size: {} bytes", num(total, h)),
            format!(
                "Total transferred file size: {} bytes",
                num(g(&s.transferred_size), h)
            ),
            format!("Literal data: {} bytes", num(literal, h)),
            format!("Matched data: {} bytes", num(g(&s.matched), h)),
            "File list size: 0".to_string(),
            format!("File list generation time: {scan_secs:.3} seconds"),
            "File list transfer time: 0.000 seconds".to_string(),
            format!("Total bytes sent: {}", num(sent, h)),
            "Total bytes received: 0".to_string(),
            String::new(),
        ];
        for l in lines {
            report.line(l);
        }
    }
    let rate = if total_secs > 0.0 {
        sent as f64 / total_secs
    } else {
        0.0
    };
    report.line(format!(
        "sent {} bytes  received 0 bytes  {} bytes/sec",
        num(sent, h),
        num(rate as u64, h)
    ));
    report.line(format!(
        "total size is {}  speedup is {speedup:.2}{}",
        num(total, h),
        if opts.dry_run { " (DRY RUN)" } else { "" }
    ));
}
