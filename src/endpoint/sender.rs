//! The sending role: resolve and scan the sources, then serve the receiver — summaries,
//! the listings it asks for, file data — until it finishes. A local copy runs the same
//! scan step ([`scan_sources`]) and hands the tree to its receiving half directly.

use crate::config::Options;
use crate::error::{Error, show};
use crate::exit::ExitCode;
use crate::filter::Side;
use crate::plan::lookup;
use crate::protocol::{ListDir, Msg, Reader, WireEntry, WireStats, Writer, check_rel_path};
use crate::report::{Report, Stats};
use crate::scan::Scanner;
use crate::source::{Sources, Tops};
use crate::summary::prepare;
use crate::transfer;
use crate::tree::Entry;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::thread::{Scope, ScopedJoinHandle};

/// What the sender learns at the end.
pub struct SenderOutcome {
    pub peer_code: ExitCode,
    pub peer_stats: WireStats,
    pub counts: [u64; 7],
}

/// Drains the server's buffered stdout (its listing) for relaying as `Log` frames; the
/// client passes one that returns nothing.
pub type Relay<'a> = &'a dyn Fn() -> Option<String>;

pub fn relay<W: Write>(wr: &mut Writer<W>, relay: Relay<'_>) -> Result<(), Error> {
    if let Some(text) = relay() {
        wr.send(&Msg::Log { text })?;
    }
    Ok(())
}

/// The source tree as both a local copy and a sender start from it: scanned (under
/// `quiet`, at low priority: see [`send`]), its digests prepared, its totals counted and
/// given to the progress display.
pub fn scan_sources(
    sources: &Sources,
    scanner: &Scanner<'_, '_>,
    opts: &Options,
    report: &Report<'_>,
    rename_to: Option<&[u8]>,
    quiet: bool,
) -> Result<(Entry, Tops, [u64; 7]), Error> {
    let started = std::time::Instant::now();
    let scan = || sources.scan(scanner, rename_to);
    let scanned = match quiet.then(crate::scan::background_pool).flatten() {
        Some(pool) => pool.install(scan),
        None => scan(),
    };
    let (mut root, tops) =
        scanned.map_err(|e| Error::io(ExitCode::FileIo, "open directory", b".", &e))?;
    if let Some(message) = scanner.rule_error.lock().unwrap().take() {
        return Err(Error::new(ExitCode::Usage, message));
    }
    if opts.munge_links {
        crate::tree::unmunge_targets(&mut root);
    }
    prepare(&mut root, opts, Side::Sender);
    // (rsync's "File list generation time": the sender's walk, digests included here.)
    Stats::set_ms(&report.stats.flist_build_ms, started);
    let counts = crate::report::tree_counts(&root, sources.info().root_is_transfer_dir);
    if let Some(p) = &report.progress {
        p.totals(&counts);
    }
    Ok((root, tops, counts))
}

/// The totals `--stats` reports for a scan's `counts`: rsync's file list, which also has
/// what this tree leaves out ([`Scanner::left_out`]). (Progress and the receiver's entry
/// budget go by the tree itself.)
pub fn listed_counts(counts: [u64; 7], scanner: &Scanner<'_, '_>) -> [u64; 7] {
    let mut out = counts;
    for (c, n) in out.iter_mut().zip(scanner.left_out.get().0) {
        *c += n;
    }
    out
}

/// `--remove-source-files`: removes each file the receiver has in place, if the sender
/// sent it (a file whose read failed stays) and it is still the file scanned, with
/// rsync's messages: a changed file stays with an error (23), one already gone is a note.
pub fn remove_sources<'e>(
    tops: &Tops,
    files: impl IntoIterator<Item = (&'e [u8], &'e Entry)>,
    opts: &Options,
    report: &Report<'_>,
) {
    for (rel, e) in files {
        if e.is_dir() || tops.was_unsent(rel) {
            continue;
        }
        match tops.remove_sent(rel, &e.meta) {
            Ok(true) => {
                if opts.verbose > 1 {
                    report.info(format!("sender removed {}", show(rel)));
                }
            }
            Ok(false) => {
                report.record(ExitCode::Partial);
                report.warn_bare(format!(
                    "ERROR: Skipping sender remove for changed file: {}",
                    show(rel)
                ));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                report.info(format!("sender file already removed: {}", show(rel)));
            }
            Err(err) => report.error(
                ExitCode::Partial,
                crate::error::io_message("remove source file", rel, &err),
            ),
        }
    }
}

/// Sender: resolves and scans `paths`, then serves the receiver until it finishes.
/// `quiet_scan`: the scan overlaps the remote shell's login (a pushing client), so it runs
/// at low priority — at full priority on two cores it slowed ssh's key exchange by more
/// than the scan took. `lanes` opens the extra streams a receiver asks for.
#[allow(clippy::too_many_arguments)]
pub fn send<R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    opts: &Options,
    paths: &[OsString],
    report: &Report<'_>,
    relay_out: Relay<'_>,
    quiet_scan: bool,
    lanes: &dyn transfer::Lanes,
) -> Result<SenderOutcome, Error> {
    let sources = Sources::open(opts, paths, report)?;
    let info = sources.info();
    // The receiver opens and scans its destination while this end scans.
    wr.send(&Msg::Sources { info: info.clone() })?;
    wr.flush()?;
    let scanner = Scanner::new(Side::Sender, &opts.filters, opts, report);
    let (root, tops, counts) = scan_sources(&sources, &scanner, opts, report, None, quiet_scan)?;
    let names = if !opts.numeric_ids && (opts.owner || opts.group || opts.acls) {
        crate::ids::Names::of_tree(&root)
    } else {
        Default::default()
    };
    let before = wr.sent;
    wr.send(&Msg::SourceRoot {
        io_error: report.code() != ExitCode::Ok,
        names,
        root: WireEntry::from_entry(&root),
        counts: Box::new(counts),
    })?;
    wr.flush()?;
    Stats::add(&report.stats.flist_size, wr.sent - before);
    let server = Server {
        root: &root,
        tops: &tops,
        opts,
        report,
        coarse: transfer::CoarseCache::default(),
        lanes,
        over: std::sync::atomic::AtomicBool::new(false),
        sent: Default::default(),
    };
    let listed = listed_counts(counts, &scanner);
    let out = std::thread::scope(|scope| {
        let out = server.serve(scope, rd, wr, relay_out, listed);
        // However the session ended, streams still to come are not waited for, and the
        // extra streams stop (a receiver that keeps one open would hold this end).
        server
            .over
            .store(true, std::sync::atomic::Ordering::Release);
        lanes.end();
        out
    });
    crate::tree::drop_in_background((root, tops));
    out
}

/// The sender's side of the exchange once its tree is known.
struct Server<'a, 'r> {
    root: &'a Entry,
    tops: &'a Tops,
    opts: &'a Options,
    report: &'a Report<'r>,
    /// Big files' coarse matches, kept from the coarse answer for their delta requests.
    coarse: transfer::CoarseCache,
    /// Opens the extra streams the receiver asks for (`Lanes`).
    lanes: &'a dyn transfer::Lanes,
    /// The receiver has finished: streams still to come are not waited for.
    over: std::sync::atomic::AtomicBool,
    /// `--remove-source-files`: the numbering the receiver's confirmations index.
    sent: std::sync::OnceLock<Vec<(Vec<u8>, &'a Entry)>>,
}

type Ahead<'s> = Option<ScopedJoinHandle<'s, Result<transfer::Loaded, Error>>>;

impl<'a> Server<'a, '_> {
    /// Answers requests until the receiver's `Finish`. One batch of file requests is read
    /// (on its own thread in `scope`) while the one before it is sent, so the disk and the
    /// wire work at the same time.
    fn serve<'s, R: Read, W: Write>(
        &'s self,
        scope: &'s Scope<'s, '_>,
        rd: &mut Reader<R>,
        wr: &mut Writer<W>,
        relay_out: Relay<'_>,
        counts: [u64; 7],
    ) -> Result<SenderOutcome, Error>
    where
        'a: 's,
    {
        let mut ahead: Ahead<'s> = None;
        loop {
            match rd.recv()? {
                Msg::List { dirs } => {
                    let before = wr.sent;
                    wr.send(&Msg::Listing {
                        dirs: self.listings(&dirs)?,
                    })?;
                    wr.flush()?;
                    Stats::add(&self.report.stats.flist_size, wr.sent - before);
                }
                Msg::Get { files } => {
                    // Only batches of small whole files are held back to overlap with the
                    // next one; a delta or a streamed file goes out at once (the receiver
                    // may take a while to ask for more while it signs a big basis).
                    let hold = transfer::all_small(self.root, &files);
                    let (root, tops) = (self.root, self.tops);
                    let next = scope.spawn(move || transfer::load(root, tops, files));
                    self.flush_ahead(wr, &mut ahead)?;
                    ahead = Some(next);
                    if !hold {
                        self.flush_ahead(wr, &mut ahead)?;
                    }
                }
                Msg::Coarse { items } => {
                    transfer::answer_coarse(wr, self.root, self.tops, items, &self.coarse)?
                }
                Msg::GetEnd => {
                    self.flush_ahead(wr, &mut ahead)?;
                    wr.flush()?
                }
                Msg::Log { text } => self.report.raw(&text),
                Msg::GetRange {
                    id,
                    path,
                    offset,
                    len,
                    to_end,
                } => {
                    self.flush_ahead(wr, &mut ahead)?;
                    transfer::send_range(wr, self.root, self.tops, id, &path, offset, len, to_end)?
                }
                Msg::Lanes { count, token } => {
                    let (root, tops, over) = (self.root, self.tops, &self.over);
                    let lanes = self.lanes;
                    scope.spawn(move || {
                        lanes.open(
                            count,
                            token,
                            &mut |mut lane| {
                                scope.spawn(move || {
                                    transfer::serve_lane(&mut lane, root, tops);
                                    lanes.lane_done(lane.wr.sent, lane.rd.received);
                                });
                            },
                            over,
                        )
                    });
                }
                Msg::InPlace { ids } => self.remove_in_place(&ids),
                Msg::Planned { files } => {
                    if let Some(p) = &self.report.progress {
                        p.planned(files);
                    }
                }
                Msg::Finish { code, stats } => {
                    self.over.store(true, std::sync::atomic::Ordering::Release);
                    self.flush_ahead(wr, &mut ahead)?;
                    self.report.flush();
                    relay(wr, relay_out)?;
                    wr.send(&Msg::Done {
                        code: self.report.code().code(),
                        counts,
                        scan_ms: Stats::get(&self.report.stats.flist_build_ms),
                    })?;
                    wr.flush()?;
                    return Ok(SenderOutcome {
                        peer_code: ExitCode::from_code(code),
                        peer_stats: stats,
                        counts,
                    });
                }
                Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
                other => {
                    return Err(crate::protocol::unexpected(
                        &other,
                        "a request from the receiver",
                    ));
                }
            }
        }
    }

    /// `--remove-source-files`: the receiver's confirmations, each an index into this
    /// end's own numbering of what it listed; an index out of range, or a repeat, is
    /// ignored, and nothing is removed unless this end was asked to (a receiver cannot
    /// turn the option on), nor under `-n`.
    fn remove_in_place(&self, ids: &[u32]) {
        if !self.opts.remove_source_files || self.opts.dry_run {
            return;
        }
        let files = self
            .sent
            .get_or_init(|| crate::source::sent_files(self.root));
        let mut seen = std::collections::HashSet::new();
        let chosen = ids
            .iter()
            .filter(|&&i| seen.insert(i))
            .filter_map(|&i| files.get(i as usize))
            .map(|(rel, e)| (rel.as_slice(), *e));
        remove_sources(self.tops, chosen, self.opts, self.report);
    }

    /// The answers to one `List`: each asked-for path must be a directory of this tree.
    fn listings(&self, dirs: &[ListDir]) -> Result<Vec<crate::protocol::DirListing>, Error> {
        let mut out = Vec::with_capacity(dirs.len());
        for d in dirs {
            check_rel_path(&d.path)?;
            let e = if d.path.is_empty() {
                Some(self.root)
            } else {
                lookup(self.root, &d.path)
            };
            match e {
                Some(e) if e.is_dir() => out.push(d.answer(&e.children)?),
                _ => {
                    return Err(Error::new(
                        ExitCode::StreamIo,
                        format!(
                            "protocol error: peer asked to list `{}`, which is not a directory here",
                            show(&d.path)
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Sends the batch read ahead, if any.
    fn flush_ahead<W: Write>(
        &self,
        wr: &mut Writer<W>,
        ahead: &mut Ahead<'_>,
    ) -> Result<(), Error> {
        if let Some(h) = ahead.take() {
            let loaded = h
                .join()
                .unwrap_or_else(|_| Err(Error::new(ExitCode::Ipc, "reader thread panicked")))?;
            transfer::send_loaded(
                wr,
                self.tops,
                loaded,
                self.report,
                self.opts.inplace,
                &self.coarse,
                self.opts.names,
            )?;
        }
        Ok(())
    }
}
