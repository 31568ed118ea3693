//! The receiving role: learn the source tree where it differs from the destination — the
//! level-by-level Merkle exchange — then plan and apply it with the same step as a local
//! copy ([`super::apply`]), fetching file data over the connection: requests streamed
//! from one thread while the data is read on another, files written in parallel.

use super::apply::{Fetch, Receiving, Source, receive_tree, scan_dest};
use super::sender::{Relay, relay};
use crate::config::Options;
use crate::dest::Dest;
use crate::error::{Error, show};
use crate::exec::{Exec, Pending};
use crate::exit::ExitCode;
use crate::filter::Side;
use crate::pathsafe::join;
use crate::plan::lookup;
use crate::protocol::{
    BATCH, ListDir, Msg, Reader, SourceInfo, WireEntry, WireStats, Writer, unexpected,
};
use crate::report::{Report, Stats};
use crate::scan::Scanner;
use crate::summary::Compared;
use crate::transfer;
use crate::tree::{Entry, Kind};
use std::ffi::OsString;
use std::io::{Read, Write};

/// What the receiver learns at the end.
pub struct ReceiverOutcome {
    pub peer_code: ExitCode,
    pub counts: [u64; 7],
}

/// Drops what this end's own options do not carry (`-l`, `-D`, `--specials`), whatever the
/// peer sent, with the message the sender's scan gives.
fn drop_uncarried(dir: &mut Entry, rel: &[u8], opts: &Options, report: &Report<'_>) {
    dir.children.retain(|c| {
        let keep = crate::scan::carried(opts, c.meta.kind);
        if !keep {
            report.info(format!(
                "skipping non-regular file \"{}\"",
                show(&join(rel, &c.name))
            ));
        }
        keep
    });
    for c in dir.children.iter_mut().filter(|c| c.is_dir()) {
        let sub = join(rel, &c.name);
        drop_uncarried(c, &sub, opts, report);
    }
}

/// What a pulling client asked the server for (a server receiving a push knows nothing).
pub struct Pull<'a> {
    /// The remote paths, to check the server's description against.
    pub sources: &'a [OsString],
    /// What `Sources` will say when it can be known beforehand (see [`open_dest`]).
    pub predicted: Option<SourceInfo>,
}

/// Receiver: learns the source tree where it differs, then plans and applies it with the
/// same code as a local copy, fetching file data over the connection (new files over
/// several streams when `lanes` can open them).
#[allow(clippy::too_many_arguments)]
pub fn receive<R: Read + Send, W: Write + Send>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    opts: &Options,
    dst_arg: &OsString,
    report: &Report<'_>,
    relay_out: Relay<'_>,
    pull: Option<Pull<'_>>,
    lanes: Option<&dyn transfer::Lanes>,
) -> Result<ReceiverOutcome, Error> {
    if opts.list_only {
        return list(rd, wr, opts, report, relay_out, pull);
    }
    let scanner = Scanner::new(Side::Receiver, &opts.filters, opts, report);
    let pulled = pull.is_some();
    let (mut info, dest, dst_root) = open_dest(rd, opts, dst_arg, report, &scanner, pull)?;
    // A pushed-to server's `created directory` goes out now, ahead of every file (rsync's
    // receiver says it before the transfer starts).
    relay(wr, relay_out)?;
    wr.flush()?;
    let list_start = (rd.received, std::time::Instant::now());
    let (root, announced) = match rd.recv()? {
        Msg::SourceRoot {
            io_error,
            names,
            root,
            counts,
        } => {
            if let Some(p) = &report.progress {
                p.totals(&counts);
            }
            info.io_error = io_error;
            info.names = names;
            (root, counts[0])
        }
        Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
        other => return Err(unexpected(&other, "the source summary")),
    };
    // (Scanned before the listings arrive, while the sender serves them.)
    let alt = crate::altdest::AltDirs::open(opts, &dest, &info, report);
    // The sender's files are digested here, over the attribute names this end may set, so
    // one that differs only in names it cannot set still matches its own.
    let cmp = Compared {
        xattrs: opts.receiver_xattrs(),
        ..Compared::from_options(opts)
    };
    // --remove-source-files confirms every file in place, unchanged ones too, so the whole
    // tree is fetched (nothing pruned by equal digests) and numbered as the sender numbers
    // it, before this end drops anything from it.
    let confirm = opts.remove_source_files && !opts.dry_run;
    let mut src_root = fetch_tree(
        rd,
        wr,
        root,
        announced,
        dst_root.as_ref().filter(|_| !confirm),
        &dest,
        &info,
        &cmp,
        &|d| {
            if let Some(l) = lanes {
                l.note_rtt(d)
            }
        },
    )?;
    // (rsync's "File list size" and "File list transfer time", as this end saw them.)
    Stats::add(&report.stats.flist_size, rd.received - list_start.0);
    Stats::set_ms(&report.stats.flist_xfer_ms, list_start.1);
    let numbering: std::collections::HashMap<Vec<u8>, u32> = if confirm {
        crate::source::sent_files(&src_root)
            .into_iter()
            .enumerate()
            .map(|(i, (rel, _))| (rel, i as u32))
            .collect()
    } else {
        Default::default()
    };
    drop_uncarried(&mut src_root, b"", opts, report);
    let maps = crate::ids::Maps::resolve(opts, Some(report));
    crate::ids::IdMap::new(&info.names, &maps).apply_tree(&mut src_root);
    if opts.munge_links {
        crate::tree::munge_targets(&mut src_root);
    }

    let mut result: Result<(), Error> = Ok(());
    let placed;
    {
        // Over a wire, an existing file is updated by delta unless -W (rsync's default).
        let use_delta = opts.whole_file != Some(true);
        let mut fetch = |exec: &Exec<'_, '_>, pending: Vec<Pending<'_>>| {
            // The path the sender knows a file by (the renamed single file keeps its name
            // there).
            let wire_path = |p: &Pending<'_>| -> Vec<u8> {
                match (&dest.rename_to, info.named_tops.first()) {
                    (Some(to), Some(from)) if p.item.rel == *to => from.to_vec(),
                    _ => p.item.rel.clone(),
                }
            };
            // A server's listing so far (the plan's lines) goes out before the data, as
            // rsync's generator itemizes before its receiver gets the files, whatever the
            // pushing client's progress prints meanwhile.
            result = relay(wr, relay_out)
                .and_then(|()| wr.flush())
                .and_then(|()| {
                    transfer::fetch(
                        rd,
                        wr,
                        exec,
                        pending,
                        &wire_path,
                        use_delta,
                        opts.partial,
                        lanes,
                    )
                });
            if result.is_err() {
                // The data stopped coming: nothing is done after the transfer.
                exec.stop.store(true, std::sync::atomic::Ordering::Release);
            }
        };
        let fetch: Fetch<'_> = &mut fetch;
        // (Under -n, this plans and lists but never fetches.)
        placed = receive_tree(
            &Receiving {
                opts,
                report,
                info: &info,
                dest: &dest,
                dst_root: dst_root.as_ref(),
                dst_scanner: &scanner,
                alt: alt.as_ref(),
                pulled,
            },
            &mut src_root,
            Source::Remote(fetch),
        );
    }
    result?;
    if !placed.is_empty() {
        let mut ids: Vec<u32> = placed
            .iter()
            .filter_map(|rel| numbering.get(rel).copied())
            .collect();
        ids.sort_unstable();
        // (In frames of at most 256 Ki indices, well under the frame limit.)
        for chunk in ids.chunks(1 << 18) {
            wr.send(&Msg::InPlace {
                ids: chunk.to_vec(),
            })?;
        }
    }
    crate::tree::drop_in_background((src_root, dst_root));
    finish(rd, wr, report, relay_out)
}

/// `--list-only` of a remote source: the whole tree fetched (there is no destination to
/// compare with, so every directory is listed), printed, and the session finished.
fn list<R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    opts: &Options,
    report: &Report<'_>,
    relay_out: Relay<'_>,
    pull: Option<Pull<'_>>,
) -> Result<ReceiverOutcome, Error> {
    let info = match rd.recv()? {
        Msg::Sources { info } => info,
        Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
        other => return Err(unexpected(&other, "the sources' description")),
    };
    info.check()?;
    if let Some(p) = &pull {
        check_asked(&info, p.sources)?;
    }
    let (root, announced) = match rd.recv()? {
        Msg::SourceRoot { root, counts, .. } => (root, counts[0]),
        Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
        other => return Err(unexpected(&other, "the source summary")),
    };
    let dest = Dest {
        root: None,
        rename_to: None,
        path: Default::default(),
        created: false,
    };
    let cmp = Compared::from_options(opts);
    let src_root = fetch_tree(rd, wr, root, announced, None, &dest, &info, &cmp, &|_| {})?;
    super::apply::print_listing(&src_root, opts, info.root_is_transfer_dir, report);
    crate::tree::drop_in_background(src_root);
    finish(rd, wr, report, relay_out)
}

/// Reads the sources' description and opens the destination by its rules, scanning it
/// while the sender scans. A pulling client whose sources are all `dir/` knows what the
/// description will say, so it scans an existing destination while the remote shell logs
/// in (at low priority, as a pushing client's scan), and keeps that scan if the
/// description agrees.
fn open_dest<R: Read>(
    rd: &mut Reader<R>,
    opts: &Options,
    dst_arg: &OsString,
    report: &Report<'_>,
    scanner: &Scanner<'_, '_>,
    pull: Option<Pull<'_>>,
) -> Result<(SourceInfo, Dest, Option<Entry>), Error> {
    let (predicted, asked) = match pull {
        Some(p) => (p.predicted, Some(p.sources)),
        None => (None, None),
    };
    let dst_is_dir = std::fs::metadata(dst_arg).is_ok_and(|m| m.is_dir());
    let (info, early) = std::thread::scope(|scope| {
        let early = predicted.filter(|_| dst_is_dir).map(|p| {
            scope.spawn(move || {
                let dest = Dest::open(opts, dst_arg, &p, report).ok()?;
                let root = scan_dest(&dest, &p, scanner, opts, true);
                Some((p, dest, root))
            })
        });
        let info = rd.recv();
        (info, early.and_then(|h| h.join().ok().flatten()))
    });
    let info = match info? {
        Msg::Sources { info } => info,
        Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
        other => return Err(unexpected(&other, "the sources' description")),
    };
    info.check()?;
    check_missing(&info, opts, asked)?;
    if let Some(asked) = asked {
        check_asked(&info, asked)?;
    }
    match early {
        Some((p, dest, root)) if same_rules(&p, &info) => Ok((info, dest, root)),
        _ => {
            // The destination is scanned while the sender scans its sources.
            scanner
                .stale_temps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            let dest = Dest::open(opts, dst_arg, &info, report)?;
            let root = scan_dest(&dest, &info, scanner, opts, false);
            Ok((info, dest, root))
        }
    }
}

/// Tells the sender this end is done (its code, its stats) and waits for the sender's.
fn finish<R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    report: &Report<'_>,
    relay_out: Relay<'_>,
) -> Result<ReceiverOutcome, Error> {
    report.flush();
    relay(wr, relay_out)?;
    wr.send(&Msg::Finish {
        code: report.code().code(),
        stats: WireStats::of(&report.stats),
    })?;
    wr.flush()?;
    loop {
        match rd.recv()? {
            Msg::Done {
                code,
                counts,
                scan_ms,
            } => {
                report
                    .stats
                    .flist_build_ms
                    .store(scan_ms, std::sync::atomic::Ordering::Relaxed);
                return Ok(ReceiverOutcome {
                    peer_code: ExitCode::from_code(code),
                    counts,
                });
            }
            Msg::Log { text } => report.raw(&text),
            Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
            other => return Err(unexpected(&other, "the sender's Done")),
        }
    }
}

/// A pulling client knows what it asked for: "one file" needs one source that names no
/// directory's contents.
fn check_asked(info: &SourceInfo, asked: &[OsString]) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = |a: &OsString| a.as_bytes().to_vec();
    if info.single_file && (asked.len() != 1 || crate::source::names_contents(&bytes(&asked[0]))) {
        return Err(Error::new(
            ExitCode::StreamIo,
            "protocol error: the server announced a single file, which is not what was asked for",
        ));
    }
    Ok(())
}

/// `--delete-missing-args`' deletions are this end's to ask for: a sender may name
/// missing sources only when this end was given the option, and a pulling client only
/// those it asked for (the name a source argument brings, or its kept path under `-R`).
fn check_missing(
    info: &SourceInfo,
    opts: &Options,
    asked: Option<&[OsString]>,
) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    let refuse = |m: &[u8]| {
        Err(Error::new(
            ExitCode::StreamIo,
            format!(
                "protocol error: the sender named `{}` as a missing source, which was not asked for",
                show(m)
            ),
        ))
    };
    for m in &info.missing {
        if !opts.delete_missing_args {
            return refuse(m.as_slice());
        }
        if let Some(asked) = asked {
            let brings = |a: &OsString| {
                let mut a = a.as_bytes();
                while a.len() > 1 && a.ends_with(b"/") {
                    a = &a[..a.len() - 1];
                }
                a == m.as_slice() || (a.ends_with(m) && a[..a.len() - m.len()].ends_with(b"/"))
            };
            if !asked.iter().any(brings) {
                return refuse(m.as_slice());
            }
        }
    }
    Ok(())
}

/// Whether two descriptions of the sources give the destination the same shape.
fn same_rules(a: &SourceInfo, b: &SourceInfo) -> bool {
    a.root_is_transfer_dir == b.root_is_transfer_dir
        && a.single_file == b.single_file
        && a.named_tops == b.named_tops
        && a.missing == b.missing
}

/// The level-by-level Merkle exchange: starting from the root summary, asks for the
/// listings of exactly the directories whose digests differ from (or are missing in) the
/// destination, one batched request per tree level. Each request carries the keys of the
/// children this end already has there, so the sender answers only with what changed.
/// Long because each listing is checked as it is merged (the entry budget, the root's
/// named tops, the renamed single file) before it can decide the next level's requests.
#[allow(clippy::too_many_arguments)]
fn fetch_tree<R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    root: WireEntry,
    announced: u64,
    dst_root: Option<&Entry>,
    dest: &Dest,
    info: &SourceInfo,
    cmp: &Compared,
    round_trip: &dyn Fn(std::time::Duration),
) -> Result<Entry, Error> {
    if root.meta.kind != Kind::Dir {
        return Err(Error::new(
            ExitCode::StreamIo,
            "protocol error: source root is not a directory",
        ));
    }
    // What the peer's listings may add up to: the entries its summary announced, which
    // must fit in what this host can hold ([`crate::protocol::entry_budget`]).
    let budget = crate::protocol::entry_budget();
    if announced > budget {
        return Err(Error::new(
            ExitCode::Memory,
            format!(
                "the source tree has {announced} entries, more than this host can hold in memory (about {budget})"
            ),
        ));
    }
    let mut received: u64 = 0;
    let mut src = root.into_entry(cmp)?;
    src.name = Box::from(&b"."[..]);
    if dst_root.is_some_and(|d| d.digest == src.digest) && dest.rename_to.is_none() {
        // Nothing below differs, so nothing is listed: the root arrives without its
        // children. It is marked incomplete so that no step can read the empty list as
        // "the source has nothing here" (and delete the destination against it).
        src.complete = false;
        return Ok(src);
    }
    // The destination's children of a listed directory: what this end offers as "have".
    // (Under the copy-to-a-new-name rule the root's names differ between the sides, so
    // nothing is offered there.)
    let no_children: &[Entry] = &[];
    let have_of = |path: &[u8]| -> &[Entry] {
        if path.is_empty() && dest.rename_to.is_some() {
            return no_children;
        }
        let d = match dst_root {
            Some(d) if path.is_empty() => Some(d),
            Some(d) => lookup(d, path),
            None => None,
        };
        match d {
            Some(d) if d.is_dir() => &d.children,
            _ => no_children,
        }
    };
    let mut level: Vec<Vec<u8>> = vec![Vec::new()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for batch in list_batches(&level, |p| have_of(p).len()) {
            wr.send(&Msg::List {
                dirs: batch
                    .iter()
                    .map(|p| ListDir::new(p.clone(), have_of(p)))
                    .collect(),
            })?;
            wr.flush()?;
            let asked = std::time::Instant::now();
            let listing = match rd.recv()? {
                Msg::Listing { dirs } => {
                    round_trip(asked.elapsed());
                    dirs
                }
                Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
                other => return Err(unexpected(&other, "a directory listing")),
            };
            if listing.len() != batch.len() {
                return Err(Error::new(
                    ExitCode::StreamIo,
                    "protocol error: listing count does not match the request",
                ));
            }
            for (path, answer) in batch.iter().zip(listing) {
                let have = have_of(path);
                let mut entries = answer.merge(have, cmp)?;
                received += entries.len() as u64;
                if received > announced {
                    return Err(Error::new(
                        ExitCode::StreamIo,
                        format!(
                            "protocol error: the listings hold more entries than the {announced} the source summary announced"
                        ),
                    ));
                }
                if path.is_empty() {
                    info.check_root_listing(entries.iter().map(|e| (&*e.name, e.is_dir())))?;
                }
                // The single file copied to a new name takes that name here.
                if path.is_empty()
                    && let (Some(to), Some(from)) = (&dest.rename_to, info.named_tops.first())
                {
                    for e in entries.iter_mut() {
                        if *e.name == **from {
                            e.name = to.clone().into_boxed_slice();
                        }
                    }
                    entries.sort_by(|a, b| a.name.cmp(&b.name));
                }
                for e in &entries {
                    if e.is_dir() {
                        let same = have
                            .binary_search_by(|c| c.name.cmp(&e.name))
                            .is_ok_and(|i| have[i].is_dir() && have[i].digest == e.digest);
                        if !same {
                            next.push(join(path, &e.name));
                        }
                    }
                }
                let node = if path.is_empty() {
                    Some(&mut src)
                } else {
                    lookup_mut(&mut src, path)
                };
                match node {
                    Some(n) if n.is_dir() => n.children = entries,
                    _ => {
                        return Err(Error::new(
                            ExitCode::StreamIo,
                            "protocol error: listing for a path that is not a directory",
                        ));
                    }
                }
            }
        }
        level = next;
    }
    Ok(src)
}

/// Splits one level's directories into `List` frames: at most [`BATCH`] directories and
/// about 1 M keys (8 MiB) each, well under the frame limit.
fn list_batches(level: &[Vec<u8>], keys: impl Fn(&[u8]) -> usize) -> Vec<&[Vec<u8>]> {
    const MAX_KEYS: usize = 1 << 20;
    let mut out = Vec::new();
    let (mut start, mut n) = (0, 0);
    for (i, p) in level.iter().enumerate() {
        let k = keys(p);
        if i > start && (i - start == BATCH || n + k > MAX_KEYS) {
            out.push(&level[start..i]);
            (start, n) = (i, 0);
        }
        n += k;
    }
    if start < level.len() {
        out.push(&level[start..]);
    }
    out
}

fn lookup_mut<'a>(root: &'a mut Entry, rel: &[u8]) -> Option<&'a mut Entry> {
    let mut cur = root;
    for comp in rel.split(|&b| b == b'/') {
        let i = cur
            .children
            .binary_search_by(|c| (*c.name).cmp(comp))
            .ok()?;
        cur = &mut cur.children[i];
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Meta;
    use crate::tree::virtual_dir_meta;

    fn entry(name: &[u8], kind: Kind) -> WireEntry {
        let meta = Meta {
            kind,
            ..virtual_dir_meta()
        };
        let mut e = Entry::new(name.into(), meta);
        e.digest = 42;
        if kind == Kind::Symlink {
            e.target = Some(Box::from(&b"/etc/passwd"[..]));
        }
        WireEntry::from_entry(&e)
    }

    /// Feeds a hostile sender's listing to the receiver's tree exchange.
    fn fetch_with(listing: Vec<WireEntry>) -> Result<Entry, Error> {
        let mut frames = Vec::new();
        let mut w = Writer::new(&mut frames);
        w.send(&Msg::Listing {
            dirs: vec![crate::protocol::DirListing {
                same: Default::default(),
                new: listing,
            }],
        })
        .unwrap();
        w.flush().unwrap();
        let mut rd = Reader::new(&frames[..]);
        let mut sink = Vec::new();
        let mut wr = Writer::new(&mut sink);
        let dest = Dest {
            root: None,
            rename_to: None,
            path: "/nonexistent".into(),
            created: false,
        };
        let root = entry(b".", Kind::Dir);
        let cmp = Compared::from_options(&Options::default());
        fetch_tree(
            &mut rd,
            &mut wr,
            root,
            1000,
            None,
            &dest,
            &SourceInfo {
                root_is_transfer_dir: true,
                ..Default::default()
            },
            &cmp,
            &|_| {},
        )
    }

    #[test]
    fn a_peer_listing_that_would_escape_the_destination_is_a_protocol_error() {
        for bad in [&b".."[..], b".", b"a/b", b"/etc", b"", b"x\0y"] {
            let e = fetch_with(vec![entry(bad, Kind::File)]).expect_err("accepted");
            assert_eq!(e.code, ExitCode::StreamIo, "{bad:?}: {}", e.message());
        }
    }

    #[test]
    fn duplicate_names_in_a_listing_are_refused() {
        // The receiver merges what it kept with what was sent and sorts the result itself,
        // so the peer's order does not matter; a name twice does.
        let t = fetch_with(vec![entry(b"b", Kind::File), entry(b"a", Kind::File)]).unwrap();
        let names: Vec<&[u8]> = t.children.iter().map(|c| &*c.name).collect();
        assert_eq!(names, [&b"a"[..], b"b"]);
        let e = fetch_with(vec![entry(b"a", Kind::File), entry(b"a", Kind::File)]).unwrap_err();
        assert_eq!(e.code, ExitCode::StreamIo);
    }

    #[test]
    fn a_hard_link_leader_outside_the_tree_is_refused() {
        let mut e = entry(b"f", Kind::File);
        e.link_leader = Some(serde_bytes::ByteBuf::from(b"../../etc/shadow".to_vec()));
        assert_eq!(fetch_with(vec![e]).unwrap_err().code, ExitCode::StreamIo);
    }

    #[test]
    fn symlinks_pointing_anywhere_are_data_not_paths() {
        // A link's target is copied, never followed: it is allowed to point outside.
        let t = fetch_with(vec![entry(b"l", Kind::Symlink)]).expect("accepted");
        assert_eq!(t.children.len(), 1);
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        let mut x = 0x2545f4914f6cdd1du64;
        for round in 0..2000 {
            let len = (round % 97) + 4;
            let mut bytes = Vec::with_capacity(len + 4);
            bytes.extend_from_slice(&(len as u32).to_le_bytes());
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            // Either a message or a clean stream error; never a panic or a huge allocation.
            let _ = Reader::new(&bytes[..]).recv();
        }
    }
}
