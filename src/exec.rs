//! Carries out a [`Plan`] against local directory handles, in parallel.
//!
//! Order inside a directory: deletions first (so a name can change kind), then files,
//! links and nodes alongside the subdirectories (rayon). After the whole tree: `-H`
//! followers (their leaders must exist), then directory metadata bottom-up, because every
//! entry created in a directory moves its mtime.

use crate::error::io_message;
use crate::exit::ExitCode;
use crate::plan::{Action, DirPlan, Item, Plan};
use crate::report::{Report, Stats};
use crate::tree::Kind;
use crate::write::{self, MetaRules, StepError};
use rayon::prelude::*;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Where the root's children are read from: each top-level name has its own source
/// directory (several sources, or `src` copied by name).
pub trait TopSource: Sync {
    fn dir_for(&self, top_name: &[u8]) -> Option<BorrowedFd<'_>>;
}

pub struct Exec<'a, 'r> {
    pub rules: MetaRules,
    pub report: &'a Report<'r>,
}

impl Exec<'_, '_> {
    fn fail(&self, rel: &[u8], e: StepError) {
        let code = if e.err.kind() == std::io::ErrorKind::NotFound && e.op == "open" {
            ExitCode::Vanished
        } else {
            ExitCode::Partial
        };
        if code == ExitCode::Vanished {
            self.report.error(
                code,
                format!("file has vanished: `{}`", crate::error::show(rel)),
            );
        } else {
            self.report.error(code, io_message(e.op, rel, &e.err));
        }
    }

    pub fn run(
        &self,
        plan: &Plan<'_>,
        dst_root: &OwnedFd,
        tops: &dyn TopSource,
        root_src: Option<BorrowedFd<'_>>,
    ) {
        self.dir(&plan.root, root_src, dst_root.as_fd(), Some(tops));
        for l in &plan.links {
            self.link(dst_root.as_fd(), l);
        }
        self.post(&plan.root, dst_root.as_fd());
    }

    fn dir(
        &self,
        d: &DirPlan<'_>,
        src_fd: Option<BorrowedFd<'_>>,
        dst_fd: BorrowedFd<'_>,
        tops: Option<&dyn TopSource>,
    ) {
        let delete = |del: &crate::plan::Delete<'_>| {
            let res = if del.under.is_empty() {
                write::remove_entry(dst_fd, del.entry, del.shallow)
            } else {
                open_rel(dst_fd, &del.under)
                    .and_then(|fd| write::remove_entry(fd.as_fd(), del.entry, del.shallow))
            };
            match res {
                Ok(n) => {
                    if !del.replace {
                        Stats::add(&self.report.stats.deleted, n);
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
        let src_of = |name: &[u8]| -> Option<BorrowedFd<'_>> {
            match tops {
                Some(t) => t.dir_for(name),
                None => src_fd,
            }
        };
        rayon::join(
            || {
                d.items.par_iter().for_each(|it| {
                    if let Some(s) = src_of(it.name) {
                        self.item(it, s, dst_fd);
                    }
                })
            },
            || {
                d.subdirs.par_iter().for_each(|sub| {
                    let Some(sparent) = src_of(sub.name) else {
                        return;
                    };
                    let sfd = match write::open_dir(sparent, sub.src_name) {
                        Ok(fd) => fd,
                        Err(e) => return self.fail(&sub.rel, e),
                    };
                    let dfd = if sub.dst.is_none() {
                        write::make_dir(dst_fd, sub.name)
                    } else {
                        write::open_dir(dst_fd, sub.name)
                    };
                    match dfd {
                        Ok(dfd) => {
                            if sub.dst.is_none() {
                                Stats::add(&self.report.stats.created, 1);
                                Stats::add(&self.report.stats.created_dir, 1);
                            }
                            self.dir(sub, Some(sfd.as_fd()), dfd.as_fd(), None)
                        }
                        Err(e) => self.fail(&sub.rel, e),
                    }
                })
            },
        );
    }

    fn item(&self, it: &Item<'_>, src_dir: BorrowedFd<'_>, dst_dir: BorrowedFd<'_>) {
        let m = &it.src.meta;
        let stats = &self.report.stats;
        let res = match it.action {
            Action::Transfer => write::copy_file(
                src_dir,
                it.src_name,
                dst_dir,
                it.name,
                m,
                it.dst.as_ref(),
                &self.rules,
            )
            .map(|n| {
                Stats::add(&stats.transferred, 1);
                Stats::add(&stats.transferred_size, m.size);
                Stats::add(&stats.literal, n);
            }),
            Action::Special => {
                write::make_special(dst_dir, it.name, m, it.src.target.as_deref(), &self.rules)
            }
            Action::Meta => match &it.dst {
                Some(have) => write::update_meta(dst_dir, it.name, m, have, &self.rules),
                None => Ok(()),
            },
        };
        match res {
            Ok(()) => {
                if it.dst.is_none() {
                    Stats::add(&stats.created, 1);
                    let c = match m.kind {
                        Kind::File => &stats.created_reg,
                        Kind::Symlink => &stats.created_link,
                        Kind::CharDev | Kind::BlockDev => &stats.created_dev,
                        _ => &stats.created_special,
                    };
                    Stats::add(c, 1);
                }
            }
            Err(e) => self.fail(&it.rel, e),
        }
    }

    fn link(&self, root: BorrowedFd<'_>, l: &crate::plan::HardLink<'_>) {
        let (ldir, lname) = split_parent(l.leader);
        let (fdir, fname) = split_parent(&l.rel);
        let res = open_rel(root, ldir).and_then(|lfd| {
            let ffd = open_rel(root, fdir)?;
            write::hard_link(lfd.as_fd(), lname, ffd.as_fd(), fname)
        });
        match res {
            Ok(()) => {
                Stats::add(&self.report.stats.created, 1);
                Stats::add(&self.report.stats.created_reg, 1);
            }
            Err(e) => self.fail(&l.rel, e),
        }
    }

    /// Directory metadata, children before parents.
    fn post(&self, d: &DirPlan<'_>, fd: BorrowedFd<'_>) {
        d.subdirs
            .par_iter()
            .filter(|s| s.needs_post())
            .for_each(|s| match write::open_dir(fd, s.name) {
                Ok(sfd) => {
                    self.post(s, sfd.as_fd());
                    if s.set_meta {
                        if let Err(e) =
                            write::set_dir_meta(&sfd, &s.src.meta, s.dst.as_ref(), &self.rules)
                        {
                            self.fail(&s.rel, e);
                        }
                    }
                }
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

/// Opens a root-relative directory one component at a time, never following a symlink.
pub fn open_rel(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, StepError> {
    let mut cur = rustix::io::dup(root).map_err(|e| StepError {
        op: "open directory",
        err: e.into(),
    })?;
    if rel.is_empty() {
        return Ok(cur);
    }
    for comp in rel.split(|&b| b == b'/') {
        cur = write::open_dir(cur.as_fd(), comp)?;
    }
    Ok(cur)
}
