//! The sender's half of the file-data phase: reading what the receiver asks for, small
//! files ahead in parallel, big ones streamed, deltas against the receiver's signatures, and
//! the coarse level's answer.

use super::*;

/// Opens a source file by its root-relative path for reading (see [`Tops::open`]).
pub(super) fn open_source(tops: &Tops, rel: &[u8]) -> std::io::Result<OwnedFd> {
    tops.open(rel)
}

/// A small file's content, or None when it has grown past `size` (its size at the scan)
/// since: then it is streamed like a big one. Reading to the end would hold a file of any
/// size in memory and send it as one frame, which the receiver refuses past the frame
/// limit, failing the whole run (a 1 KB file grown to 200 MB did). A file that shrank is
/// simply shorter.
///
/// One read per file where it can be (a tree of small files costs a few calls per file): a
/// read of one byte more than the scanned size that comes to exactly that size has the
/// whole file as the scan saw it, so the read that would return 0 is skipped (and no
/// handle is duplicated); any other count reads on, to the end or past the size.
pub(super) fn read_small(fd: &OwnedFd, size: u64) -> std::io::Result<Option<Vec<u8>>> {
    let size = size as usize;
    let mut v = vec![0u8; size + 1];
    let mut n = 0;
    loop {
        match rustix::io::read(fd, &mut v[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n > size {
                    return Ok(None);
                }
                if n == size {
                    break;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    v.truncate(n);
    Ok(Some(v))
}

/// Under `-z`, data that should bypass the compressor: a `--skip-compress` suffix, or a
/// sample that does not shrink.
pub(super) fn incompressible(path: &[u8], sample: &[u8]) -> bool {
    crate::compress::skip_compress(path) || !crate::compress::worth_compressing(sample)
}

/// Sends one `Data` frame of a file's bytes: outside the zstd stream when the file's first
/// chunk (`raw`, decided once per file) showed it would not compress.
pub(super) fn send_chunk<W: Write>(
    wr: &mut Writer<W>,
    id: u32,
    path: &[u8],
    data: &[u8],
    end: Option<Digest>,
    raw: &mut Option<bool>,
) -> Result<(), Error> {
    let raw = *raw.get_or_insert_with(|| wr.compressing() && incompressible(path, data));
    let msg = Msg::Data {
        id,
        data: data.to_vec(),
        end,
    };
    if raw {
        wr.send_raw(&msg)
    } else {
        wr.send(&msg)
    }
}

pub(super) fn skip<W: Write>(
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

/// The sender serves only what it listed: a regular file of its own tree. A request for
/// anything else — a path through a symlink, a directory, something never sent — is a
/// protocol error, so a hostile receiver cannot read outside the source.
pub(super) fn check_served(root: &Entry, path: &[u8]) -> Result<(), Error> {
    check_rel_path(path)?;
    match crate::plan::lookup(root, path) {
        Some(e) if e.meta.kind == Kind::File => Ok(()),
        _ => Err(stream_error(format!(
            "peer asked for `{}`, which is not a file this side listed",
            show(path)
        ))),
    }
}

/// The sender's coarse matches of big files, by request id, kept from the coarse answer
/// until the file's delta request arrives: the source is read once for both (its coarse
/// hashes give the file digest too).
#[derive(Default)]
pub struct CoarseCache(std::sync::Mutex<std::collections::HashMap<u32, (Vec<u8>, CoarseMatch)>>);

impl CoarseCache {
    fn take(&self, id: u32, path: &[u8]) -> Option<CoarseMatch> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.remove(&id) {
            Some((p, m)) if p == path => Some(m),
            _ => None,
        }
    }
}

/// Sender: matches each big source against its basis's coarse hashes and anchors, keeps
/// the match for the delta request, and answers with the parts to sign.
pub fn answer_coarse<W: Write>(
    wr: &mut Writer<W>,
    root: &Entry,
    tops: &Tops,
    items: Vec<CoarseItem>,
    cache: &CoarseCache,
) -> Result<(), Error> {
    // One file at a time: each match hashes on all cores already.
    let mut answers = Vec::with_capacity(items.len());
    for it in items {
        check_served(root, &it.path)?;
        check_coarse_item(&it)?;
        let matched = open_source(tops, &it.path).and_then(|fd| {
            let f = std::fs::File::from(fd);
            let len = f.metadata()?.len();
            delta::coarse_match(&f, len, it.block, it.basis_len, &it.hashes, &it.anchors)
        });
        // Unreadable now: the receiver falls back to a plain delta request, which will
        // report the error.
        let parts = matched.ok().map(|m| {
            let parts = m.parts();
            cache
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(it.id, (it.path.into_vec(), m));
            parts
        });
        answers.push((it.id, parts));
    }
    wr.send(&Msg::CoarseRanges { items: answers })?;
    wr.flush()
}

/// A coarse request is the peer's word on sizes this end then allocates by: its block must
/// be one [`delta::coarse_block`] can give (a power of two from 256 KiB to 1 GiB; 1-byte
/// blocks made the sender hold about 76 bytes per source byte), with exactly one hash per
/// block of the basis and an anchor per block or none.
pub(super) fn check_coarse_item(it: &CoarseItem) -> Result<(), Error> {
    let (lo, hi) = (delta::coarse_block(0), delta::coarse_block(u64::MAX));
    if !(lo..=hi).contains(&it.block) || !it.block.is_power_of_two() {
        return Err(stream_error(format!(
            "coarse block size {} out of range",
            it.block
        )));
    }
    let blocks = it.basis_len.div_ceil(it.block);
    if it.hashes.len() as u64 != blocks
        || !(it.anchors.is_empty() || it.anchors.len() == it.hashes.len())
    {
        return Err(stream_error(format!(
            "coarse request has {} hashes and {} anchors for {} blocks",
            it.hashes.len(),
            it.anchors.len(),
            blocks
        )));
    }
    Ok(())
}

/// A small file read ahead, with its [`crate::protocol::data_digest`], or why it could not
/// be read; None for a file streamed when its turn comes (not a small whole file, or grown
/// past its scanned size).
pub(super) type Preloaded = Option<std::io::Result<(Vec<u8>, crate::protocol::Digest)>>;

/// A batch of requests with its small whole files already read and hashed.
pub struct Loaded {
    files: Vec<Request>,
    small: Vec<Preloaded>,
}

/// Whether a batch holds only small whole files (read into memory by [`load`]).
pub fn all_small(root: &Entry, files: &[Request]) -> bool {
    files.iter().all(|r| match r {
        Request::Whole { path, .. } => {
            crate::plan::lookup(root, path).is_some_and(|e| e.meta.size <= SMALL)
        }
        Request::Delta { .. } | Request::Append { .. } => false,
    })
}

/// An append's offset is the receiver's word on where to start reading this end's file:
/// never past the size this end listed for it (a receiver appends only to a shorter
/// file), so a hostile one cannot make the sender seek about outside what it sent.
pub(super) fn check_append(root: &Entry, path: &[u8], offset: u64) -> Result<(), Error> {
    check_served(root, path)?;
    let size = crate::plan::lookup(root, path).map_or(0, |e| e.meta.size);
    if offset > size {
        return Err(stream_error(format!(
            "peer asked to append `{}` from byte {offset}, past its {size} bytes",
            show(path)
        )));
    }
    Ok(())
}

/// Checks a batch of requests and reads (and hashes) its small whole files in parallel.
/// Runs on its own thread while the previous batch is being sent.
pub fn load(root: &Entry, tops: &Tops, files: Vec<Request>) -> Result<Loaded, Error> {
    for r in &files {
        match r {
            Request::Whole { path, .. } | Request::Delta { path, .. } => check_served(root, path)?,
            Request::Append { path, offset, .. } => check_append(root, path, *offset)?,
        }
    }
    let size_of = |p: &[u8]| {
        crate::plan::lookup(root, p)
            .map(|e| e.meta.size)
            .unwrap_or(0)
    };
    // Whole small files are read ahead into memory up to PRELOAD bytes per batch (a
    // receiver's batches are smaller, but a batch from the peer is not trusted to be); the
    // rest are streamed from the file when their turn comes.
    let mut budget = PRELOAD;
    let preload: Vec<bool> = files
        .iter()
        .map(|r| match r {
            Request::Whole { path, .. } => {
                let size = size_of(path);
                let fits = size <= SMALL && size <= budget;
                if fits {
                    budget -= size;
                }
                fits
            }
            Request::Delta { .. } | Request::Append { .. } => false,
        })
        .collect();
    let small = files
        .par_iter()
        .zip(preload)
        .map(|(r, preload)| match r {
            Request::Whole { path, .. } => {
                let size = size_of(path);
                let read =
                    preload.then(|| open_source(tops, path).and_then(|fd| read_small(&fd, size)));
                match read? {
                    Ok(Some(d)) => {
                        let h = crate::protocol::data_digest(&d);
                        Some(Ok((d, h)))
                    }
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                }
            }
            Request::Delta { .. } | Request::Append { .. } => None,
        })
        .collect();
    Ok(Loaded { files, small })
}

/// Sends a loaded batch in request order: small files from memory, big files streamed,
/// deltas computed as they go.
pub fn send_loaded<W: Write>(
    wr: &mut Writer<W>,
    tops: &Tops,
    loaded: Loaded,
    report: &Report<'_>,
    inplace: bool,
    cache: &CoarseCache,
    names: bool,
) -> Result<(), Error> {
    for (req, data) in loaded.files.into_iter().zip(loaded.small) {
        // A pushing client shows the files it sends (bytes sent per file, as rsync).
        let ticket = report.progress.as_ref().map(|p| {
            let path = req.path();
            // The size from the sender's tree is not at hand here: the file's own, once
            // open, is what the live line measures against.
            p.begin(names.then(|| show(path)), || show(path), 0)
        });
        let sent = match (req, data) {
            (Request::Whole { id, path }, Some(Ok((data, hash)))) => {
                let raw = wr.compressing() && incompressible(&path, &data);
                let len = data.len() as u64;
                let msg = Msg::Data {
                    id,
                    data,
                    end: Some(hash),
                };
                if raw {
                    wr.send_raw(&msg)?;
                } else {
                    wr.send(&msg)?;
                }
                Some(len)
            }
            (Request::Whole { id, path }, Some(Err(e))) => {
                skip(wr, id, &path, &e, report)?;
                tops.note_unsent(&path);
                None
            }
            (Request::Whole { id, path }, None) => {
                let sent = match open_source(tops, &path) {
                    Ok(fd) => stream_file(wr, id, &path, &fd, report, ticket.as_ref())?,
                    Err(e) => {
                        skip(wr, id, &path, &e, report)?;
                        None
                    }
                };
                if sent.is_none() {
                    tops.note_unsent(&path);
                }
                sent
            }
            (
                Request::Append {
                    id,
                    path,
                    offset,
                    verify,
                },
                _,
            ) => match open_source(tops, &path) {
                Ok(fd) => send_tail(
                    wr,
                    id,
                    &path,
                    &fd,
                    (offset, verify),
                    report,
                    ticket.as_ref(),
                )?,
                Err(e) => {
                    skip(wr, id, &path, &e, report)?;
                    None
                }
            },
            (
                Request::Delta {
                    id,
                    path,
                    basis_len: _,
                    sig,
                    parts,
                },
                _,
            ) => {
                let how = match sig {
                    Some(sig) => How::Whole(sig),
                    None => How::Coarse(cache.take(id, &path).ok_or_else(|| {
                        stream_error(format!(
                            "delta request for `{}` without a coarse answer",
                            show(&path)
                        ))
                    })?),
                };
                let sent = match open_source(tops, &path) {
                    Ok(fd) => send_delta(
                        wr,
                        id,
                        &path,
                        fd,
                        (how, parts),
                        report,
                        inplace,
                        ticket.as_ref(),
                    )?,
                    Err(e) => {
                        skip(wr, id, &path, &e, report)?;
                        None
                    }
                };
                if sent.is_none() {
                    tops.note_unsent(&path);
                }
                sent
            }
        };
        if let (Some(p), Some(size), Some(t)) = (&report.progress, sent, ticket) {
            p.done(t, size);
        }
    }
    wr.flush()
}

pub(super) fn stream_file<W: Write>(
    wr: &mut Writer<W>,
    id: u32,
    p: &[u8],
    fd: &OwnedFd,
    report: &Report<'_>,
    ticket: Option<&Ticket>,
) -> Result<Option<u64>, Error> {
    if let (Some(t), Ok(st)) = (ticket, rustix::fs::fstat(fd)) {
        t.sized(st.st_size as u64);
    }
    let mut h = crate::protocol::DataHasher::default();
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut raw: Option<bool> = None;
    loop {
        let n = match rustix::io::read(fd, &mut buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                // The receiver drops the part it has.
                report.error(ExitCode::Partial, io_message("read", p, &e.into()));
                return wr.send(&Msg::Skip { id }).map(|()| None);
            }
        };
        total += n as u64;
        if let Some(t) = ticket {
            t.at(total);
        }
        h.update(&buf[..n]);
        let end = (n == 0).then(|| h.digest());
        send_chunk(wr, id, p, &buf[..n], end, &mut raw)?;
        if n == 0 {
            return Ok(Some(total));
        }
    }
}

/// `--append`: the file's bytes from `offset` on, ending with the digest of those bytes, or
/// under `verify` of the whole file (the bytes before `offset` are read for it, not sent).
/// Returns the bytes sent.
pub(super) fn send_tail<W: Write>(
    wr: &mut Writer<W>,
    id: u32,
    p: &[u8],
    fd: &OwnedFd,
    (offset, verify): (u64, bool),
    report: &Report<'_>,
    ticket: Option<&Ticket>,
) -> Result<Option<u64>, Error> {
    if let (Some(t), Ok(st)) = (ticket, rustix::fs::fstat(fd)) {
        t.sized((st.st_size as u64).saturating_sub(offset));
    }
    let mut h = blake3::Hasher::new();
    if verify && let Err(e) = crate::write::hash_into(&mut h, fd.as_fd(), 0, offset) {
        return skip(wr, id, p, &e, report).map(|()| None);
    }
    let mut buf = vec![0u8; CHUNK];
    let mut at = offset;
    let mut raw: Option<bool> = None;
    loop {
        let n = match rustix::io::pread(fd, &mut buf, at) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                // (What the receiver appended so far stays: it writes in place.)
                report.error(ExitCode::Partial, io_message("read", p, &e.into()));
                return wr.send(&Msg::Skip { id }).map(|()| None);
            }
        };
        at += n as u64;
        if let Some(t) = ticket {
            t.at(at - offset);
        }
        h.update(&buf[..n]);
        let end = (n == 0).then(|| wire_digest(h.finalize().as_bytes()));
        send_chunk(wr, id, p, &buf[..n], end, &mut raw)?;
        if n == 0 {
            return Ok(Some(at - offset));
        }
    }
}

/// blake3 of a whole file, hashing each 8 MiB window on all cores.
pub(super) fn digest_file(f: &std::fs::File, len: u64) -> std::io::Result<[u8; 32]> {
    use std::os::unix::fs::FileExt;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; (8 << 20).min(len as usize).max(1)];
    let mut at = 0;
    while at < len {
        let take = ((len - at) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..take], at)?;
        h.update_rayon(&buf[..take]);
        at += take as u64;
    }
    Ok(*h.finalize().as_bytes())
}

/// What a delta is computed against.
pub(super) enum How {
    /// The signature of the whole basis.
    Whole(Signature),
    /// The coarse match: copies, and parts diffed against the request's part signatures.
    Coarse(CoarseMatch),
}

/// Ops are batched into frames of about [`CHUNK`] literal bytes.
pub(super) struct OpBatch {
    ops: Vec<WireOp>,
    bytes: usize,
}

/// One delta out: the source's digest (from the coarse answer, or read), then the fine
/// search against the signature (over each coarse segment that differs, for a big file),
/// with the ops going out in frames of about [`CHUNK`] as they are found. Long because the
/// segment walk, the frame batching and the skip path for a source that cannot be read
/// share the one batch and the file's id.
#[allow(clippy::too_many_arguments)]
pub(super) fn send_delta<W: Write>(
    wr: &mut Writer<W>,
    id: u32,
    p: &[u8],
    fd: OwnedFd,
    (how, parts): (How, Vec<Part>),
    report: &Report<'_>,
    inplace: bool,
    ticket: Option<&Ticket>,
) -> Result<Option<u64>, Error> {
    let f = std::fs::File::from(fd);
    // A coarse file's digest came with its coarse hashes: the source is not read again.
    let prepared = f.metadata().and_then(|m| {
        let len = m.len();
        match &how {
            How::Coarse(m) => Ok((len, m.digest)),
            How::Whole(_) => digest_file(&f, len).map(|h| (len, h)),
        }
    });
    let (len, hash) = match prepared {
        Ok(x) => x,
        Err(e) => return skip(wr, id, p, &e, report).map(|()| None),
    };
    if let Some(t) = ticket {
        t.sized(len);
    }
    let mut batch = OpBatch {
        ops: Vec::new(),
        bytes: 0,
    };
    let mut failed: Option<Error> = None;
    // The output position (equal to the source position: the output is the source).
    let mut pos = 0u64;
    let mut emit = |op: Op<'_>| -> std::io::Result<()> {
        let mut push = |op: WireOp, weight: usize| -> std::io::Result<()> {
            batch.ops.push(op);
            batch.bytes += weight;
            if batch.bytes >= CHUNK || batch.ops.len() >= 8192 {
                let ops = std::mem::take(&mut batch.ops);
                batch.bytes = 0;
                if let Err(e) = wr.send(&Msg::Delta { id, ops, end: None }) {
                    failed = Some(e);
                    return Err(std::io::Error::other("connection lost"));
                }
            }
            Ok(())
        };
        match op {
            // --inplace: the receiver rewrites its basis as it goes, so a copy from below
            // the write position would read bytes already replaced. Those are sent as
            // literal data instead (rsync restricts its matches the same way).
            Op::Copy { offset, len } if inplace && offset < pos => {
                use std::os::unix::fs::FileExt;
                let end = pos + len;
                while pos < end {
                    let take = ((end - pos) as usize).min(CHUNK);
                    let mut buf = vec![0u8; take];
                    f.read_exact_at(&mut buf, pos)?;
                    push(WireOp::Literal(serde_bytes::ByteBuf::from(buf)), take)?;
                    pos += take as u64;
                }
            }
            Op::Copy { offset, len } => {
                push(WireOp::Copy { offset, len }, 16)?;
                pos += len;
            }
            Op::Literal(d) => {
                push(
                    WireOp::Literal(serde_bytes::ByteBuf::from(d.to_vec())),
                    d.len(),
                )?;
                pos += d.len() as u64;
            }
        }
        if let Some(t) = ticket {
            t.at(pos);
        }
        Ok(())
    };
    let res: std::io::Result<()> = (|| {
        let mismatch = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "delta parts do not match the coarse answer",
            )
        };
        match how {
            How::Whole(sig) => {
                if !parts.is_empty() {
                    return Err(mismatch());
                }
                delta::diff(&sig, &f, 0, len, &mut emit)?;
            }
            How::Coarse(m) => {
                let mut parts = parts.iter();
                for seg in &m.segments {
                    match *seg {
                        Segment::Copy { offset, len } => emit(Op::Copy { offset, len })?,
                        Segment::Part(cp) => {
                            let part = parts
                                .next()
                                .filter(|p| p.start == cp.start && p.len == cp.len)
                                .ok_or_else(mismatch)?;
                            delta::diff(&part.sig, &f, cp.start, cp.len, &mut emit)?;
                        }
                    }
                }
                if parts.next().is_some() {
                    return Err(mismatch());
                }
            }
        }
        Ok(())
    })();
    if let Some(e) = failed {
        return Err(e);
    }
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::InvalidData {
            return Err(stream_error(format!(
                "bad delta request for `{}`: {e}",
                show(p)
            )));
        }
        report.error(ExitCode::Partial, io_message("read", p, &e));
        // The receiver drops what it built from the pieces already sent.
        return wr.send(&Msg::Skip { id }).map(|()| None);
    }
    wr.send(&Msg::Delta {
        id,
        ops: batch.ops,
        end: Some(wire_digest(&hash)),
    })
    .map(|()| Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(block: u64, basis_len: u64, hashes: usize, anchors: usize) -> CoarseItem {
        CoarseItem {
            id: 0,
            path: serde_bytes::ByteBuf::from(b"big".to_vec()),
            block,
            basis_len,
            hashes: vec![[0; 16]; hashes],
            anchors: vec![0; anchors],
        }
    }

    #[test]
    fn a_coarse_request_takes_only_the_block_sizes_both_ends_can_compute() {
        // The smallest block coarse_block gives, and the largest.
        assert!(check_coarse_item(&item(256 << 10, 1 << 20, 4, 4)).is_ok());
        assert!(check_coarse_item(&item(1 << 30, 3 << 30, 3, 0)).is_ok());
        // Below and above them, and not a power of two.
        assert!(check_coarse_item(&item(128 << 10, 1 << 20, 8, 8)).is_err());
        assert!(check_coarse_item(&item(2 << 30, 4 << 30, 2, 0)).is_err());
        assert!(check_coarse_item(&item(384 << 10, 384 << 10, 1, 1)).is_err());
        // One hash per basis block, and an anchor per block or none.
        assert!(check_coarse_item(&item(256 << 10, 1 << 20, 3, 0)).is_err());
        assert!(check_coarse_item(&item(256 << 10, 1 << 20, 4, 2)).is_err());
    }
}
