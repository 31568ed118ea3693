//! A local copy: both ends in this process, with no serialisation. The sending half's scan
//! and the receiving half's steps are the roles' own ([`super::sender::scan_sources`],
//! [`super::apply`]); only the connection between them is missing.

use super::apply::{Receiving, Source, receive_tree, scan_dest};
use super::sender::scan_sources;
use crate::altdest::AltDirs;
use crate::config::Options;
use crate::dest::Dest;
use crate::error::Error;
use crate::filter::Side;
use crate::report::{Report, print_summary};
use crate::scan::Scanner;
use crate::source::Sources;
use std::time::Instant;

pub fn run(opts: &mut Options, report: &Report<'_>, start: Instant) -> Result<(), Error> {
    // rsync's local --bwlimit slows the pipe between its two processes, and so the copy;
    // xsync's local copy has no pipe and does not pace its disk I/O, so it refuses the
    // limit rather than copy at full speed when asked not to. (--timeout is accepted: with
    // no connection there is nothing that can stand still waiting on a peer.)
    if opts.bwlimit.is_some() {
        return Err(Error::usage(
            "--bwlimit limits the connection to a remote host; a local copy has none and xsync does not pace local disk I/O (leave the option out, or use e.g. `ionice`)",
        ));
    }
    // Locally both ends are this process: as rsync, `-o` counts only for the super-user,
    // in the comparison too (an owner we cannot set is not a difference).
    opts.owner &= rustix::process::geteuid().is_root() || opts.fake_super;
    let opts = &*opts;
    let (dst_arg, src_args) = opts.paths.split_last().expect("checked by the caller");
    let sources = Sources::open(opts, src_args, report)?;
    let info = sources.info();
    let dest = Dest::open(opts, dst_arg, &info, report)?;

    // Scan both sides at once.
    let src_scanner = Scanner::new(Side::Sender, &opts.filters, opts, report);
    let dst_scanner = Scanner::new(Side::Receiver, &opts.filters, opts, report);
    let ((scanned, dst_root), alt) = rayon::join(
        || {
            rayon::join(
                || {
                    let rename_to = dest.rename_to.as_deref();
                    scan_sources(&sources, &src_scanner, opts, report, rename_to, false)
                },
                || scan_dest(&dest, &info, &dst_scanner, opts, false),
            )
        },
        || AltDirs::open(opts, &dest, &info, report),
    );
    let (mut src_root, tops, counts) = scanned?;
    let scan_done = start.elapsed();
    // --usermap/--groupmap (the only mapping a local copy has: names are this machine's).
    // The destination's digests never match under them (`summary::prepare`), so every
    // entry is compared with its mapped ids.
    if opts.usermap.is_some() || opts.groupmap.is_some() {
        let names = if opts.numeric_ids {
            crate::ids::Names::default()
        } else {
            crate::ids::Names::of_tree(&src_root)
        };
        let maps = crate::ids::Maps::resolve(opts, Some(report));
        crate::ids::IdMap::new(&names, &maps).apply_tree(&mut src_root);
    }
    let placed = receive_tree(
        &Receiving {
            opts,
            report,
            info: &info,
            dest: &dest,
            dst_root: dst_root.as_ref(),
            dst_scanner: &dst_scanner,
            alt: alt.as_ref(),
            pulled: false,
        },
        &mut src_root,
        Source::Local(&tops),
    );
    report
        .stats
        .add_counts(super::sender::listed_counts(counts, &src_scanner));
    if !placed.is_empty() {
        let files = placed
            .iter()
            .filter_map(|rel| crate::plan::lookup(&src_root, rel).map(|e| (rel.as_slice(), e)));
        super::sender::remove_sources(&tops, files, opts, report);
    }
    crate::tree::drop_in_background((src_root, dst_root));
    report.note_totals(scan_done.as_secs_f64(), None);
    // (The summary, or the log's closing line where there is none.)
    print_summary(opts, report, start.elapsed().as_secs_f64(), None);
    Ok(())
}

/// `--list-only` of local sources (all the paths, or all but a destination, which is left
/// alone): the sender's scan, printed as rsync lists it.
pub fn list(opts: &Options, report: &Report<'_>, start: Instant) -> Result<(), Error> {
    let srcs = match opts.paths.len() {
        1 => &opts.paths[..],
        n => &opts.paths[..n - 1],
    };
    let sources = Sources::open(opts, srcs, report)?;
    let info = sources.info();
    let scanner = Scanner::new(Side::Sender, &opts.filters, opts, report);
    let (root, tops, counts) = scan_sources(&sources, &scanner, opts, report, None, false)?;
    super::apply::print_listing(&root, opts, info.root_is_transfer_dir, report);
    report.stats.add_counts(counts);
    crate::tree::drop_in_background((root, tops));
    print_summary(opts, report, start.elapsed().as_secs_f64(), None);
    Ok(())
}
