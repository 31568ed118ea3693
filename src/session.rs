//! The two roles of a connection, used by the client and by `xsync --server` alike: the
//! sender serves its tree (summaries, listings, file data) and the receiver drives — it
//! compares digests level by level, plans with the same code as a local copy, streams its
//! file requests from one thread while it reads the data on another, and writes files in
//! parallel.

use crate::cli::Options;
use crate::dest::Dest;
use crate::error::{Error, io_message, show};
use crate::exec::{Exec, Pending};
use crate::exit::ExitCode;
use crate::filter::Side;
use crate::job::prepare;
use crate::pathsafe::join;
use crate::plan::lookup;
use crate::protocol::{
    BATCH, CHUNK, Msg, Reader, SourceInfo, WireEntry, WireStats, Writer, check_entry,
    check_rel_path, check_sorted, unexpected,
};
use crate::receive;
use crate::report::{Report, Stats};
use crate::scan::Scanner;
use crate::source::{Sources, Tops};
use crate::tree::{Entry, Kind};
use crate::write::TempFile;
use rayon::prelude::*;
use rustix::fs::{Mode, OFlags};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Files up to this size are read whole (in parallel) by the sender and written whole (in
/// parallel) by the receiver; larger ones stream in chunks.
const SMALL: u64 = 1 << 20;

/// What the sender learns at the end.
pub struct SenderOutcome {
    pub peer_code: ExitCode,
    pub peer_stats: WireStats,
    pub counts: [u64; 7],
}

/// Drains the server's buffered stdout (its listing) for relaying as `Log` frames; the
/// client passes one that returns nothing.
pub type Relay<'a> = &'a dyn Fn() -> Option<String>;

fn relay<W: Write>(wr: &mut Writer<W>, relay: Relay<'_>) -> Result<(), Error> {
    if let Some(text) = relay() {
        wr.send(&Msg::Log { text })?;
    }
    Ok(())
}

/// What the receiver learns at the end.
pub struct ReceiverOutcome {
    pub peer_code: ExitCode,
    pub counts: [u64; 7],
}

pub fn code_from(n: i32) -> ExitCode {
    use ExitCode::*;
    [
        Ok,
        Usage,
        Protocol,
        FileSelect,
        Unsupported,
        StartClient,
        SocketIo,
        FileIo,
        StreamIo,
        Ipc,
        Signal,
        Partial,
        Vanished,
        MaxDelete,
        Timeout,
        CmdFailed,
        CmdKilled,
        CmdRun,
        CmdNotFound,
        RemoteShell,
    ]
    .into_iter()
    .find(|c| c.code() == n)
    .unwrap_or(StreamIo)
}

/// Totals of the source tree for `--stats` (files, reg, dir, link, dev, special, size).
pub fn counts(root: &Entry, with_root: bool) -> [u64; 7] {
    let mut c = [0u64; 7];
    let mut add = |e: &Entry| {
        c[0] += 1;
        match e.meta.kind {
            Kind::File => {
                c[1] += 1;
                c[6] += e.meta.size;
            }
            Kind::Dir => c[2] += 1,
            Kind::Symlink => {
                c[3] += 1;
                c[6] += e.target.as_ref().map(|t| t.len() as u64).unwrap_or(0);
            }
            Kind::CharDev | Kind::BlockDev => c[4] += 1,
            _ => c[5] += 1,
        }
    };
    if with_root {
        add(root);
    }
    root.walk(b"", &mut |_, e| add(e));
    c
}

/// Sender: resolves and scans `paths`, then serves the receiver until it finishes.
pub fn send<R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    opts: &Options,
    paths: &[OsString],
    report: &Report<'_>,
    relay_out: Relay<'_>,
) -> Result<SenderOutcome, Error> {
    let sources = Sources::open(opts, paths, report);
    let scanner = Scanner::new(Side::Sender, &opts.filters, opts, report);
    let (mut root, tops) = sources
        .scan(&scanner, None)
        .map_err(|e| Error::io(ExitCode::FileIo, "open directory", b".", &e))?;
    prepare(&mut root, opts);
    let mut info = sources.info();
    info.io_error = report.code() != ExitCode::Ok;
    wr.send(&Msg::SourceRoot {
        info: info.clone(),
        root: WireEntry::from_entry(&root),
    })?;
    wr.flush()?;
    let counts = counts(&root, info.root_is_transfer_dir);
    loop {
        match rd.recv()? {
            Msg::List { dirs } => {
                let mut out = Vec::with_capacity(dirs.len());
                for d in &dirs {
                    check_rel_path(d)?;
                    let e = if d.is_empty() {
                        Some(&root)
                    } else {
                        lookup(&root, d)
                    };
                    match e {
                        Some(e) if e.is_dir() => {
                            out.push(e.children.iter().map(WireEntry::from_entry).collect())
                        }
                        _ => {
                            return Err(Error::new(
                                ExitCode::StreamIo,
                                format!(
                                    "protocol error: peer asked to list `{}`, which is not a directory here",
                                    show(d)
                                ),
                            ));
                        }
                    }
                }
                wr.send(&Msg::Listing { dirs: out })?;
                wr.flush()?;
            }
            Msg::Get { files } => send_files(wr, &root, &tops, &files, report)?,
            Msg::GetEnd => wr.flush()?,
            Msg::Log { text } => report.raw(&text),
            Msg::Finish { code, stats } => {
                report.flush();
                relay(wr, relay_out)?;
                wr.send(&Msg::Done {
                    code: report.code().code(),
                    counts,
                })?;
                wr.flush()?;
                return Ok(SenderOutcome {
                    peer_code: code_from(code),
                    peer_stats: stats,
                    counts,
                });
            }
            Msg::Abort { code, msg } => return Err(Error::new(code_from(code), msg)),
            other => return Err(unexpected(&other, "a request from the receiver")),
        }
    }
}

/// Opens a source file by its root-relative path for reading.
fn open_source(tops: &Tops, rel: &[u8]) -> std::io::Result<OwnedFd> {
    let (dir, path) = tops
        .locate(rel)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let c = crate::scan::cstr(&path)?;
    Ok(rustix::fs::openat(
        dir,
        &c,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn read_all(fd: &OwnedFd, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::from(fd.try_clone()?);
    let mut v = Vec::with_capacity(cap as usize);
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Serves one batch of requests: small files read in parallel, then everything sent in
/// request order; big files streamed.
fn send_files<W: Write>(
    wr: &mut Writer<W>,
    root: &Entry,
    tops: &Tops,
    files: &[(u32, serde_bytes::ByteBuf)],
    report: &Report<'_>,
) -> Result<(), Error> {
    for (_, p) in files {
        check_rel_path(p)?;
    }
    let size_of = |p: &[u8]| lookup(root, p).map(|e| e.meta.size).unwrap_or(0);
    // Read the small ones in parallel; `None` marks a big file to stream.
    let small: Vec<Option<std::io::Result<Vec<u8>>>> = files
        .par_iter()
        .map(|(_, p)| {
            let size = size_of(p);
            (size <= SMALL).then(|| open_source(tops, p).and_then(|fd| read_all(&fd, size)))
        })
        .collect();
    for ((id, p), data) in files.iter().zip(small) {
        match data {
            Some(Ok(data)) => {
                let hash = *blake3::hash(&data).as_bytes();
                let raw = incompressible(p, &data);
                let msg = Msg::Data {
                    id: *id,
                    data,
                    end: Some(hash),
                };
                if raw {
                    wr.send_raw(&msg)?;
                } else {
                    wr.send(&msg)?;
                }
            }
            Some(Err(e)) => skip(wr, *id, p, &e, report)?,
            None => match open_source(tops, p) {
                Ok(fd) => stream_file(wr, *id, p, &fd, report)?,
                Err(e) => skip(wr, *id, p, &e, report)?,
            },
        }
    }
    wr.flush()
}

/// Under `-z`, data that should bypass the compressor: a `--skip-compress` suffix, or a
/// sample that does not shrink.
fn incompressible(path: &[u8], sample: &[u8]) -> bool {
    crate::compress::skip_compress(path) || !crate::compress::worth_compressing(sample)
}

fn skip<W: Write>(
    wr: &mut Writer<W>,
    id: u32,
    p: &[u8],
    e: &std::io::Error,
    report: &Report<'_>,
) -> Result<(), Error> {
    if e.kind() == std::io::ErrorKind::NotFound {
        report.error(
            ExitCode::Vanished,
            format!("file has vanished: `{}`", show(p)),
        );
    } else {
        report.error(ExitCode::Partial, io_message("read", p, e));
    }
    wr.send(&Msg::Skip { id })
}

fn stream_file<W: Write>(
    wr: &mut Writer<W>,
    id: u32,
    p: &[u8],
    fd: &OwnedFd,
    report: &Report<'_>,
) -> Result<(), Error> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut raw: Option<bool> = None;
    loop {
        let n = match rustix::io::read(fd, &mut buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                // The receiver has part of the file: an empty final piece with no digest
                // tells it to drop what it has.
                report.error(ExitCode::Partial, io_message("read", p, &e.into()));
                return wr.send(&Msg::Skip { id });
            }
        };
        h.update(&buf[..n]);
        let end = (n == 0).then(|| *h.finalize().as_bytes());
        let raw = *raw.get_or_insert_with(|| incompressible(p, &buf[..n]));
        let msg = Msg::Data {
            id,
            data: buf[..n].to_vec(),
            end,
        };
        if raw {
            wr.send_raw(&msg)?;
        } else {
            wr.send(&msg)?;
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Receiver: learns the source tree where it differs, then plans and applies it with the
/// same code as a local copy, fetching file data over the connection.
pub fn receive<R: Read + Send, W: Write + Send>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    opts: &Options,
    dst_arg: &OsString,
    report: &Report<'_>,
    relay_out: Relay<'_>,
) -> Result<ReceiverOutcome, Error> {
    let (info, root) = match rd.recv()? {
        Msg::SourceRoot { info, root } => (info, root),
        Msg::Abort { code, msg } => return Err(Error::new(code_from(code), msg)),
        other => return Err(unexpected(&other, "the source summary")),
    };
    for n in &info.named_tops {
        crate::pathsafe::check_name(n).map_err(|e| {
            Error::new(
                ExitCode::StreamIo,
                format!("protocol error: unsafe top-level name: {e}"),
            )
        })?;
    }
    let dest = Dest::open(opts, dst_arg, &info, report)?;
    let scanner = Scanner::new(Side::Receiver, &opts.filters, opts, report);
    let mut dst_root = dest.scan(&info, &scanner);
    if let Some(d) = dst_root.as_mut() {
        prepare(d, opts);
    }
    let src_root = fetch_tree(rd, wr, root, dst_root.as_ref(), &dest, &info)?;

    let mut result: Result<(), Error> = Ok(());
    {
        let mut fetch = |exec: &Exec<'_, '_>, pending: Vec<Pending<'_>>| {
            result = fetch_files(rd, wr, exec, pending, &dest, &info);
        };
        let mut nothing = |_: &Exec<'_, '_>, _: Vec<Pending<'_>>| {};
        receive::apply(
            opts,
            report,
            &info,
            &src_root,
            &dest,
            dst_root.as_ref(),
            &scanner,
            if opts.dry_run {
                receive::Source::Remote(&mut nothing)
            } else {
                receive::Source::Remote(&mut fetch)
            },
        );
    }
    result?;
    report.flush();
    relay(wr, relay_out)?;
    let s = &report.stats;
    let g = Stats::get;
    wr.send(&Msg::Finish {
        code: report.code().code(),
        stats: WireStats {
            created: [
                g(&s.created),
                g(&s.created_reg),
                g(&s.created_dir),
                g(&s.created_link),
                g(&s.created_dev),
                g(&s.created_special),
            ],
            deleted: g(&s.deleted),
            transferred: g(&s.transferred),
            transferred_size: g(&s.transferred_size),
            literal: g(&s.literal),
        },
    })?;
    wr.flush()?;
    loop {
        match rd.recv()? {
            Msg::Done { code, counts } => {
                return Ok(ReceiverOutcome {
                    peer_code: code_from(code),
                    counts,
                });
            }
            Msg::Log { text } => report.raw(&text),
            Msg::Abort { code, msg } => return Err(Error::new(code_from(code), msg)),
            other => return Err(unexpected(&other, "the sender's Done")),
        }
    }
}

/// The level-by-level Merkle exchange: starting from the root summary, asks for the
/// listings of exactly the directories whose digests differ from (or are missing in) the
/// destination, one batched request per tree level.
fn fetch_tree<R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    root: WireEntry,
    dst_root: Option<&Entry>,
    dest: &Dest,
    info: &SourceInfo,
) -> Result<Entry, Error> {
    let mut src = root.into_entry();
    src.name = Box::from(&b"."[..]);
    if src.meta.kind != Kind::Dir {
        return Err(Error::new(
            ExitCode::StreamIo,
            "protocol error: source root is not a directory",
        ));
    }
    if dst_root.is_some_and(|d| d.digest == src.digest) && dest.rename_to.is_none() {
        return Ok(src);
    }
    let mut level: Vec<Vec<u8>> = vec![Vec::new()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for batch in level.chunks(BATCH) {
            wr.send(&Msg::List {
                dirs: batch
                    .iter()
                    .map(|p| serde_bytes::ByteBuf::from(p.clone()))
                    .collect(),
            })?;
            wr.flush()?;
            let listing = match rd.recv()? {
                Msg::Listing { dirs } => dirs,
                Msg::Abort { code, msg } => return Err(Error::new(code_from(code), msg)),
                other => return Err(unexpected(&other, "a directory listing")),
            };
            if listing.len() != batch.len() {
                return Err(Error::new(
                    ExitCode::StreamIo,
                    "protocol error: listing count does not match the request",
                ));
            }
            for (path, children) in batch.iter().zip(listing) {
                let mut entries = Vec::with_capacity(children.len());
                for c in children {
                    check_entry(&c)?;
                    entries.push(c.into_entry());
                }
                check_sorted(&entries)?;
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
                let dst_dir = dst_root.and_then(|d| {
                    if path.is_empty() {
                        Some(d)
                    } else {
                        lookup(d, path)
                    }
                });
                for e in &entries {
                    if e.is_dir() {
                        let same = dst_dir
                            .and_then(|d| d.child(&e.name))
                            .is_some_and(|d| d.digest == e.digest);
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

/// Requests every pending file (from a second thread, so requests and data flow at once)
/// and writes what arrives: whole small files in parallel, big ones as they stream.
fn fetch_files<R: Read + Send, W: Write + Send>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    exec: &Exec<'_, '_>,
    pending: Vec<Pending<'_>>,
    dest: &Dest,
    info: &SourceInfo,
) -> Result<(), Error> {
    // The path the sender knows a file by (the renamed single file keeps its old name).
    let wire_path = |p: &Pending<'_>| -> Vec<u8> {
        match (&dest.rename_to, info.named_tops.first()) {
            (Some(to), Some(from)) if p.item.rel == *to => from.to_vec(),
            _ => p.item.rel.clone(),
        }
    };
    let requests: Vec<(u32, serde_bytes::ByteBuf)> = pending
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32, serde_bytes::ByteBuf::from(wire_path(p))))
        .collect();
    std::thread::scope(|scope| {
        let sender = scope.spawn(move || -> Result<(), Error> {
            for batch in requests.chunks(BATCH) {
                wr.send(&Msg::Get {
                    files: batch.to_vec(),
                })?;
                wr.flush()?;
            }
            wr.send(&Msg::GetEnd)?;
            wr.flush()
        });
        let got = receive_data(rd, exec, &pending);
        let sent = sender
            .join()
            .unwrap_or_else(|_| Err(Error::new(ExitCode::Ipc, "request thread panicked")));
        got.and(sent)
    })
}

fn receive_data<R: Read + Send>(
    rd: &mut Reader<R>,
    exec: &Exec<'_, '_>,
    pending: &[Pending<'_>],
) -> Result<(), Error> {
    let rules = exec.rules;
    rayon::scope(|scope| -> Result<(), Error> {
        let mut next = 0usize;
        // The big file being streamed: (its index, the temp file, running digest).
        let mut current: Option<(usize, Option<TempFile<'_>>, blake3::Hasher)> = None;
        while next < pending.len() {
            let msg = rd.recv()?;
            let (id, data, end) = match msg {
                Msg::Data { id, data, end } => (id as usize, data, end),
                Msg::Skip { id } if id as usize == next => {
                    current = None;
                    next += 1;
                    continue;
                }
                Msg::Log { text } => {
                    exec.report.raw(&text);
                    continue;
                }
                Msg::Abort { code, msg } => return Err(Error::new(code_from(code), msg)),
                other => return Err(unexpected(&other, "file data")),
            };
            if id != next {
                return Err(Error::new(
                    ExitCode::StreamIo,
                    format!("protocol error: data for file {id} while expecting {next}"),
                ));
            }
            let p = &pending[id];
            if current.is_none() {
                if let Some(hash) = end {
                    // A whole file in one piece: written on another thread.
                    next += 1;
                    scope.spawn(move |_| {
                        let res = (|| {
                            if *blake3::hash(&data).as_bytes() != hash {
                                return Err(crate::write::StepError {
                                    op: "verify",
                                    err: std::io::Error::other("checksum mismatch"),
                                });
                            }
                            let mut t = TempFile::create(p.dir.as_fd(), p.item.name, rules.sparse)?;
                            t.write(&data)?;
                            t.commit(&p.item.src.meta, p.item.dst.as_ref(), &rules)
                        })();
                        match res {
                            Ok(n) => exec.transferred(p.item, n),
                            Err(e) => exec.fail(&p.item.rel, e),
                        }
                    });
                    continue;
                }
                let t = match TempFile::create(p.dir.as_fd(), p.item.name, rules.sparse) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        exec.fail(&p.item.rel, e);
                        None
                    }
                };
                current = Some((id, t, blake3::Hasher::new()));
            }
            let (_, t, h) = current.as_mut().expect("set above");
            h.update(&data);
            if let Some(tf) = t.as_mut()
                && let Err(e) = tf.write(&data)
            {
                exec.fail(&p.item.rel, e);
                *t = None;
            }
            if let Some(hash) = end {
                let (_, t, h) = current.take().expect("set above");
                next += 1;
                if let Some(t) = t {
                    if *h.finalize().as_bytes() != hash {
                        exec.fail(
                            &p.item.rel,
                            crate::write::StepError {
                                op: "verify",
                                err: std::io::Error::other("checksum mismatch"),
                            },
                        );
                        continue;
                    }
                    match t.commit(&p.item.src.meta, p.item.dst.as_ref(), &rules) {
                        Ok(n) => exec.transferred(p.item, n),
                        Err(e) => exec.fail(&p.item.rel, e),
                    }
                }
            }
        }
        Ok(())
    })
}
