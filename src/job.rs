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
use crate::report::{Report, Stats, num};
use crate::scan::{Scanner, assign_link_leaders};
use crate::source::Sources;
use crate::summary::{Compared, digest_tree};
use crate::tree::Entry;
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

/// What both sides do to a scanned tree before comparing: hard-link leaders (`-H`) and
/// the Merkle digests.
pub fn prepare(root: &mut Entry, opts: &Options, side: Side) {
    if opts.hard_links {
        assign_link_leaders(root);
    }
    let cmp = match side {
        Side::Sender => Compared::from_options(opts),
        Side::Receiver => Compared::for_receiver(opts),
    };
    digest_tree(root, &cmp);
    // rsync looks in the alternate DIRs even for a destination file that is already right
    // (`--compare-dest` removes it, `--link-dest` links DIR's copy in its place), so no
    // part of the destination may be pruned as equal: digests the sender's can never match
    // make every directory listed and compared.
    if side == Side::Receiver && opts.alt_dest.is_some() {
        fn never_equal(e: &mut Entry) {
            e.digest = !e.digest;
            e.children.iter_mut().for_each(never_equal);
        }
        never_equal(root);
    }
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

pub fn print_summary(
    opts: &Options,
    report: &Report<'_>,
    scan_secs: f64,
    total_secs: f64,
    wire: Option<(u64, u64)>,
) {
    report.progress_end();
    // rsync's -q silences the summary and --stats too.
    if opts.quiet {
        return;
    }
    let s = &report.stats;
    let g = Stats::get;
    let h = opts.human_readable;
    let literal = g(&s.literal);
    let total = g(&s.total_size);
    // Locally nothing crosses a wire; rsync reports the literal data as sent then.
    let (sent, received) = wire.unwrap_or((literal, 0));
    let speedup = if sent + received > 0 {
        total as f64 / (sent + received) as f64
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
            format!("Total bytes received: {}", num(received, h)),
            String::new(),
        ];
        for l in lines {
            report.line(l);
        }
    }
    let rate = if total_secs > 0.0 {
        (sent + received) as f64 / total_secs
    } else {
        0.0
    };
    // rsync's rate has two decimals (unless -h gives it a unit).
    let rate = if h > 0 && rate >= 1024.0 {
        num(rate as u64, h)
    } else {
        let cents = (rate * 100.0).round() as u64;
        format!("{}.{:02}", num(cents / 100, 0), cents % 100)
    };
    if !opts.stats {
        // (--stats ends its block with the blank line.)
        report.line("");
    }
    report.line(format!(
        "sent {} bytes  received {} bytes  {rate} bytes/sec",
        num(sent, h),
        num(received, h),
    ));
    report.line(format!(
        "total size is {}  speedup is {speedup:.2}{}",
        num(total, h),
        if opts.dry_run { " (DRY RUN)" } else { "" }
    ));
}
