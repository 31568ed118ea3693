//! The receiving side's view of the command line: where the destination root is, with
//! rsync's rules — a missing destination is created one level deep (all levels with
//! `--mkpath`), and a single file whose destination is not an existing directory is copied
//! to that name.

use crate::config::Options;
use crate::error::{Error, io_message, show};
use crate::exit::ExitCode;
use crate::fs::cstr;
use crate::protocol::SourceInfo;
use crate::report::Report;
use crate::scan::{Scanner, Up, dev_of};
use crate::source::{open_path, parent_and_name};
use crate::tree::virtual_dir_meta;
use crate::tree::{Entry, Kind, Meta};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct Dest {
    /// None only under `-n` when the destination does not exist yet.
    pub root: Option<OwnedFd>,
    /// The new name of a single file copied to a name that is not a directory.
    pub rename_to: Option<Vec<u8>>,
    pub path: PathBuf,
    /// Created by this run: `-i` shows the root as new (`cd+++++++++ ./`), as rsync does.
    pub created: bool,
}

impl Dest {
    pub fn open(
        opts: &Options,
        dst_arg: &OsStr,
        info: &SourceInfo,
        report: &Report<'_>,
    ) -> Result<Dest, Error> {
        let dst_bytes = dst_arg.as_bytes();
        let dst_path = Path::new(dst_arg);
        let dst_stat = rustix::fs::stat(dst_path).ok().map(|s| Meta::from_stat(&s));
        let dst_is_dir = dst_stat.is_some_and(|m| m.kind == Kind::Dir);
        let rename_to = (info.single_file && !dst_is_dir && !dst_bytes.ends_with(b"/"))
            .then(|| parent_and_name(dst_bytes).1);
        if dst_stat.is_some() && !dst_is_dir && rename_to.is_none() {
            return Err(Error::new(
                ExitCode::FileSelect,
                format!(
                    "destination `{}` is not a directory (needed when copying more than one file or a directory)",
                    show(dst_bytes)
                ),
            ));
        }
        let path: PathBuf = match &rename_to {
            Some(_) => parent_and_name(dst_bytes).0,
            None => dst_path.to_path_buf(),
        };
        let shown = path.as_os_str().as_bytes().to_vec();
        // With the names listed (-v, --progress, --info=name1) or itemized, as rsync, and
        // without the trailing slash it was given with (`Some(n)`: --mkpath's n levels).
        let say_created = |mkpath: Option<usize>| {
            if opts.names || opts.itemize {
                let mut name: &[u8] = &shown;
                while name.len() > 1 && name.ends_with(b"/") {
                    name = &name[..name.len() - 1];
                }
                report.info(if let Some(missing) = mkpath {
                    let plural = if missing == 1 {
                        "directory"
                    } else {
                        "directories"
                    };
                    format!("created {missing} {plural} for {}", show(name))
                } else {
                    format!("created directory {}", show(name))
                });
            }
        };
        let missing = || {
            path.ancestors()
                .take_while(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err())
                .count()
        };
        let mut created = false;
        let root = match open_path(&path) {
            Ok(fd) => Some(fd),
            // rsync's dry run says what it would make without making it, and under
            // --mkpath it says both lines (then lists the root as new).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.dry_run => {
                if opts.mkpath {
                    say_created(Some(missing()));
                }
                say_created(None);
                created = true;
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let missing = missing();
                let made = if opts.mkpath {
                    std::fs::create_dir_all(&path)
                } else {
                    std::fs::create_dir(&path)
                };
                made.map_err(|e| Error::io(ExitCode::FileIo, "create directory", &shown, &e))?;
                // (rsync's --mkpath makes the path before the transfer, which then finds
                // the root existing: `.d..t......`, not new.)
                created = !opts.mkpath;
                say_created(opts.mkpath.then_some(missing));
                Some(
                    open_path(&path)
                        .map_err(|e| Error::io(ExitCode::FileIo, "open directory", &shown, &e))?,
                )
            }
            Err(e) => {
                return Err(Error::io(
                    ExitCode::FileIo,
                    "open destination directory",
                    &shown,
                    &e,
                ));
            }
        };
        Ok(Dest {
            root,
            rename_to,
            path,
            created,
        })
    }

    /// The top-level names the receiver looks at when the root is not a transfer dir.
    pub fn tops(&self, info: &SourceInfo) -> Vec<Vec<u8>> {
        let mut tops: Vec<Vec<u8>> = info
            .named_tops
            .iter()
            .map(|n| self.rename_to.clone().unwrap_or_else(|| n.to_vec()))
            .collect();
        // --delete-missing-args: what the destination has at a missing source's name is
        // read too, to be deleted.
        for m in &info.missing {
            let top = m.split(|&b| b == b'/').next().unwrap_or_default().to_vec();
            if !tops.contains(&top) {
                tops.push(top);
            }
        }
        tops
    }

    /// Reads the destination: all of the root for a transfer-dir root (its extraneous
    /// entries matter), else only the names the sources bring.
    pub fn scan(&self, info: &SourceInfo, scanner: &Scanner<'_, '_>) -> Option<Entry> {
        let fd = self.root.as_ref()?;
        scanner.dest_root(fd.as_fd());
        let dev = dev_of(fd);
        if info.root_is_transfer_dir {
            let meta = rustix::fs::fstat(fd)
                .map(|s| Meta::from_stat(&s))
                .unwrap_or_else(|_| virtual_dir_meta());
            let mut root = Entry::new(Box::from(&b"."[..]), meta);
            scanner.read_root_attrs(fd.as_fd(), &mut root);
            let listed = rustix::io::dup(fd)
                .map_err(std::io::Error::from)
                .and_then(|d| {
                    let outer = scanner.outer_rules(fd.as_fd(), true);
                    scanner.read_children(d, b"", dev, &Up::base(fd), &outer)
                });
            match listed {
                Ok((c, complete)) => {
                    root.children = c;
                    root.complete = complete;
                }
                Err(_) => root.complete = false,
            }
            return Some(root);
        }
        let mut root = Entry::new(Box::from(&b"."[..]), virtual_dir_meta());
        // Only the named entries are read, but a killed run's temporaries sit beside them.
        if let Ok(mut d) = rustix::io::dup(fd)
            .map_err(std::io::Error::from)
            .and_then(|d| rustix::fs::Dir::new(d).map_err(std::io::Error::from))
        {
            while let Some(Ok(ent)) = d.read() {
                let n = ent.file_name().to_bytes();
                if ent.file_type() == rustix::fs::FileType::RegularFile
                    && crate::temps::owner(n) == crate::temps::Owner::Dead
                {
                    scanner.stale_temps.lock().unwrap().push(n.to_vec());
                }
            }
        }
        let up = Up::base(fd);
        let outer = scanner.outer_rules(fd.as_fd(), false);
        for name in self.tops(info) {
            if root.children.iter().any(|c| *c.name == *name) {
                continue;
            }
            if let Some(e) =
                scanner.scan_entry(fd.as_fd(), &name, &name, dev, scanner.recurse, &up, &outer)
            {
                root.children.push(e);
            }
        }
        root.children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Some(root)
    }
}

/// Removes the temporaries of runs that are gone ([`crate::temps`]) found by the
/// destination scan.
pub fn remove_stale_temps(root: &OwnedFd, scanner: &Scanner<'_, '_>, report: &Report<'_>) {
    let temps = std::mem::take(&mut *scanner.stale_temps.lock().unwrap());
    for rel in temps {
        let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], &rel[..]),
        };
        let res = crate::write::open_rel(root.as_fd(), dir).and_then(|fd| {
            let c = cstr(name).map_err(|e| crate::write::StepError {
                op: "delete",
                err: e,
            })?;
            rustix::fs::unlinkat(&fd, &c, rustix::fs::AtFlags::empty()).map_err(|e| {
                crate::write::StepError {
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
