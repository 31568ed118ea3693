//! One run: resolve the command line's sources and destination with rsync's rules, scan
//! both sides at once, compare, plan, execute, report.
//!
//! rsync's path rules live here: `src/` copies the contents, `src` the directory itself;
//! one missing destination level is created (all of them with `--mkpath`); a single file
//! whose destination is not an existing directory is copied to that name.

use crate::altdest::AltDirs;
use crate::config::Options;
use crate::dest::Dest;
use crate::error::Error;
use crate::exit::ExitCode;
use crate::filter::Side;
use crate::receive;
use crate::report::{Report, print_summary};
use crate::scan::Scanner;
use crate::source::Sources;
use crate::summary::prepare;
use std::time::Instant;

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
    let remote = crate::remote::RemoteJob::from_options(opts)?;
    // rsync's -v (or --progress) listing opens with the file list's direction, as seen from
    // the client.
    if opts.verbose > 0 || opts.progress == 1 {
        report.info(match &remote {
            Some(r) if !r.is_push() => "receiving incremental file list",
            _ => "sending incremental file list",
        });
    }
    if let Some(remote) = remote {
        return remote.run(opts, report, start);
    }
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
    opts.owner &= rustix::process::geteuid().is_root();
    let opts = &*opts;
    let (dst_arg, src_args) = opts.paths.split_last().expect("checked above");
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
                    let mut s = sources.scan(&src_scanner, dest.rename_to.as_deref());
                    if let Ok((root, _)) = s.as_mut() {
                        prepare(root, opts, Side::Sender);
                    }
                    s
                },
                || {
                    let mut d = dest.scan(&info, &dst_scanner);
                    if let Some(d) = d.as_mut() {
                        prepare(d, opts, Side::Receiver);
                    }
                    d
                },
            )
        },
        || AltDirs::open(opts, &dest, &info, report),
    );
    let (mut src_root, tops) =
        scanned.map_err(|e| Error::io(ExitCode::FileIo, "open directory", b".", &e))?;
    // --chown: every entry the forced ids (its digests already leave the ids out).
    let chown = crate::ids::Chown::resolve(opts, Some(report));
    if !chown.is_empty() {
        chown.apply_tree(&mut src_root);
    }
    let scan_done = start.elapsed();
    let counts = crate::report::tree_counts(&src_root, info.root_is_transfer_dir);
    if let Some(p) = &report.progress {
        p.totals(&counts);
    }
    receive::apply(
        opts,
        report,
        &info,
        &src_root,
        &dest,
        dst_root.as_ref(),
        &dst_scanner,
        alt.as_ref(),
        receive::Source::Local(&tops),
    );
    report.stats.add_counts(counts);
    crate::tree::drop_in_background((src_root, dst_root));
    if opts.stats || opts.verbose > 0 {
        print_summary(
            opts,
            report,
            scan_done.as_secs_f64(),
            start.elapsed().as_secs_f64(),
            None,
        );
    }
    Ok(())
}
