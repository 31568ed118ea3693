//! The receiver's half of the file-data phase: requests streamed from one thread while
//! data is read on another, bases signed (or hashed for the coarse level), files rebuilt in
//! temporaries, checked against their digest and renamed, or fetched whole again.

use super::*;

/// What the receiver decided for one pending file before requesting it.
#[derive(Clone)]
pub(super) enum Plan {
    Whole,
    /// `--append`: the source's bytes from `at` (the destination file's length), and under
    /// `--append-verify` the whole file's digest, to check the result against.
    Append {
        at: u64,
        verify: bool,
    },
    /// For big files the coarse level's answer (None: diff the whole file).
    Delta(Option<CoarsePlan>),
}

/// A big file after the coarse exchange: its coarse block (which also shapes its digest)
/// and the parts to sign.
#[derive(Clone)]
pub(super) struct CoarsePlan {
    block: u64,
    parts: Vec<CoarsePart>,
}

/// The basis for a file's delta: a partial file kept by an earlier run (`--partial-dir`)
/// if there is one, else the current target, or for a new file the alternate DIR's copy.
pub(super) fn open_basis(
    p: &Pending<'_>,
    partial_dir: Option<&crate::write::PartialDir>,
) -> std::io::Result<std::fs::File> {
    let open = |dir: std::os::fd::BorrowedFd<'_>| -> std::io::Result<std::fs::File> {
        let c = cstr(p.item.name)?;
        Ok(std::fs::File::from(crate::fs::open_file_at(
            dir, &c, false,
        )?))
    };
    if let Some(pd) = partial_dir
        && let Ok(d) = pd.open(p.dir.as_fd(), false)
        && let Ok(f) = open(d.as_fd())
        && f.metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
    {
        return Ok(f);
    }
    match &p.basis_dir {
        Some(alt) => open(alt.as_fd()),
        None => open(p.dir.as_fd()),
    }
}

/// Length of a kept partial file for `p`, if any.
pub(super) fn partial_len(
    p: &Pending<'_>,
    partial_dir: Option<&crate::write::PartialDir>,
) -> Option<u64> {
    let d = partial_dir?.open(p.dir.as_fd(), false).ok()?;
    let c = cstr(p.item.name).ok()?;
    let st = rustix::fs::statat(&d, &c, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
    (crate::tree::Kind::from_mode(st.st_mode) == Kind::File && st.st_size > 0)
        .then_some(st.st_size as u64)
}

/// The order files are requested in, which is the order their data goes through the
/// sender's compressor. The plan collects them from parallel walks, in no fixed order; sorted
/// by path, the bytes on the wire are the same from run to run, and files of one directory
/// (which resemble each other) sit together in the stream. (Grouping by suffix first
/// measured 0.1% worse than by path on 40 MB of crate sources.)
pub(super) fn sort_for_the_wire(pending: &mut [Pending<'_>]) {
    pending.sort_unstable_by(|a, b| a.item.rel.cmp(&b.item.rel));
}

/// Receiver: fetches every pending file. `delta` says whether bases are used. Long because
/// it is the data phase's set-up and join: the bases signed (coarse first), the request
/// thread and the read loop started side by side, the redos and the write-behind joined,
/// each needing the others' channels.
#[allow(clippy::too_many_arguments)]
pub fn fetch<R: Read + Send, W: Write + Send>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    exec: &Exec<'_, '_>,
    pending: Vec<Pending<'_>>,
    wire_path: &(dyn Fn(&Pending<'_>) -> Vec<u8> + Sync),
    use_delta: bool,
    partial: bool,
    lanes: Option<&dyn Lanes>,
) -> Result<(), Error> {
    let (mut spread, rest): (Vec<_>, Vec<_>) = match lanes {
        Some(_) if !exec.stopped() => pending
            .into_iter()
            .partition(|p| spreadable(exec, p, &plan_for(exec, p, use_delta), partial)),
        _ => (Vec::new(), pending),
    };
    let bytes: u64 = spread.iter().map(|p| p.item.src.meta.size).sum();
    let count = match lanes {
        Some(l) if !spread.is_empty() => l.wanted(bytes, spread.len()),
        _ => 0,
    };
    let token = match (lanes, count) {
        (Some(l), 1..) => l.token().ok(),
        _ => None,
    };
    let (Some(lanes), Some(token)) = (lanes, token) else {
        let mut all = rest;
        all.append(&mut spread);
        return fetch_one(rd, wr, exec, all, wire_path, use_delta, partial);
    };
    sort_for_the_wire(&mut spread);
    let retry = fetch_spread(
        rd,
        wr,
        exec,
        &spread,
        rest,
        wire_path,
        (use_delta, partial),
        (lanes, count, token),
    )?;
    if retry.is_empty() || exec.stopped() {
        return Ok(());
    }
    let again: Vec<Pending<'_>> = spread
        .into_iter()
        .enumerate()
        .filter(|(i, _)| retry.binary_search(i).is_ok())
        .map(|(_, p)| p)
        .collect();
    fetch_one(rd, wr, exec, again, wire_path, false, partial)
}

/// How a file is fetched: whole, as a delta against a basis it has, or (`--append`) the
/// tail its destination file lacks.
pub(super) fn plan_for(exec: &Exec<'_, '_>, p: &Pending<'_>, use_delta: bool) -> Plan {
    let partial_dir = exec.partial_dir.as_ref();
    if let (Some(at), Some(a)) = (exec.append_at(p.item), exec.append) {
        return Plan::Append {
            at,
            verify: a.verify,
        };
    }
    if !use_delta || p.item.src.meta.size == 0 {
        return Plan::Whole;
    }
    if partial_len(p, partial_dir).is_some() {
        return Plan::Delta(None);
    }
    match p.basis_meta() {
        Some(d) if d.kind == Kind::File && d.size > 0 => Plan::Delta(None),
        _ => Plan::Whole,
    }
}

/// [`fetch`] over the first stream alone.
pub(super) fn fetch_one<R: Read + Send, W: Write + Send>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    exec: &Exec<'_, '_>,
    mut pending: Vec<Pending<'_>>,
    wire_path: &(dyn Fn(&Pending<'_>) -> Vec<u8> + Sync),
    use_delta: bool,
    partial: bool,
) -> Result<(), Error> {
    if exec.stopped() {
        // Nothing more is written (a directory could not be made on a full disk).
        pending.clear();
    }
    sort_for_the_wire(&mut pending);
    // Goes out with the first flush; a pushing client shows `to-chk` from it.
    wr.send(&Msg::Planned {
        files: pending.len() as u64,
    })?;
    let partial_dir = exec.partial_dir.as_ref();
    let mut plans: Vec<Plan> = pending
        .iter()
        .map(|p| plan_for(exec, p, use_delta))
        .collect();
    let prefilled = coarse_phase(rd, wr, exec, &pending, &mut plans, wire_path, partial)?;
    let coarse_blocks: Vec<Option<u64>> = plans
        .iter()
        .map(|pl| match pl {
            Plan::Delta(Some(c)) => Some(c.block),
            _ => None,
        })
        .collect();
    let appends: Vec<Option<(u64, bool)>> = plans
        .iter()
        .map(|pl| match pl {
            Plan::Append { at, verify } => Some((*at, *verify)),
            _ => None,
        })
        .collect();
    let (redo_tx, redo_rx) = mpsc::channel::<(u32, Vec<u8>)>();
    let cut = Cut::default();
    std::thread::scope(|scope| {
        let plans = &plans;
        let pending_ref = &pending;
        let cut = &cut;
        let requester = scope.spawn(move || -> Result<(), Error> {
            let mut batch: Vec<Request> = Vec::new();
            let mut bytes = 0u64;
            for (i, p) in pending_ref.iter().enumerate() {
                let stop = exec.stopped();
                batch.push(if stop {
                    // Not written anyway: no basis to sign.
                    Request::Whole {
                        id: i as u32,
                        path: serde_bytes::ByteBuf::from(wire_path(p)),
                    }
                } else {
                    request_for(
                        i as u32,
                        p,
                        &plans[i],
                        wire_path,
                        partial_dir,
                        exec.block_size,
                    )
                });
                bytes += p.item.src.meta.size;
                if stop {
                    // This request is the last. Its data is still to come, so the reader,
                    // even if it is already waiting for it, sees the cut before it next
                    // waits.
                    cut.asked.store(i + 1, Ordering::Release);
                    cut.closed.store(true, Ordering::Release);
                    wr.send(&Msg::Get { files: batch })?;
                    wr.send(&Msg::GetEnd)?;
                    return wr.flush();
                }
                if batch.len() >= BATCH / 4
                    || bytes >= GET_BYTES
                    || matches!(batch.last(), Some(Request::Delta { .. }))
                {
                    bytes = 0;
                    wr.send(&Msg::Get {
                        files: std::mem::take(&mut batch),
                    })?;
                    wr.flush()?;
                }
            }
            if !batch.is_empty() {
                wr.send(&Msg::Get { files: batch })?;
            }
            // GetEnd: "that is all for now" — the sender sends what it holds.
            wr.send(&Msg::GetEnd)?;
            wr.flush()?;
            // Files whose rebuilt content failed its check, fetched whole once.
            for (id, path) in redo_rx {
                wr.send(&Msg::Get {
                    files: vec![Request::Whole {
                        id,
                        path: serde_bytes::ByteBuf::from(path),
                    }],
                })?;
                wr.send(&Msg::GetEnd)?;
                wr.flush()?;
            }
            Ok(())
        });
        let got = receive_files(
            rd,
            exec,
            &pending,
            &coarse_blocks,
            &appends,
            prefilled,
            wire_path,
            redo_tx,
            cut,
            partial,
        );
        let sent = requester
            .join()
            .unwrap_or_else(|_| Err(Error::new(ExitCode::Ipc, "request thread panicked")));
        got.and(sent)
    })
}

/// Where the requests ended when the transfer was stopped (see [`Exec::stop`]): a full
/// destination would fail every later file, so the request thread stops asking, and the
/// reader stops once the data of the last request has arrived, instead of taking (and
/// dropping) the data of every file left.
#[derive(Default)]
pub(super) struct Cut {
    /// How many files were requested in all (ids `0..asked`).
    asked: AtomicUsize,
    /// Set after `asked`, once it is final.
    closed: AtomicBool,
}

impl Cut {
    /// Whether everything requested before the cut has arrived.
    fn reached(&self, next: usize) -> bool {
        self.closed.load(Ordering::Acquire) && next >= self.asked.load(Ordering::Acquire)
    }
}

/// Most bytes a run holds in prefilled temporaries at once (see [`Prefilled`]): each is a
/// full copy of its basis made before the file is requested, so many big files at once
/// would hold that much extra space for the whole transfer.
pub(super) const PREFILL_MAX: u64 = 8 << 30;

/// A big file's temporary that already holds its basis at the same offsets, written by
/// [`delta::prefill_scan`] while the basis was read for its coarse hashes.
pub(super) struct Prefilled<'d> {
    temp: TempFile<'d>,
    basis_len: u64,
    block: u64,
    /// blake3 of each block as written.
    written: Vec<[u8; 32]>,
}

/// One round trip for all big files: their bases' coarse hashes and anchors out, the
/// parts the sender could not place back. Unless the temporary is the target itself
/// (`--inplace`), may be kept whole (`--partial`) or sparse (`-S`), each basis is copied
/// into the file's temporary in the same pass that hashes it; those temporaries are
/// returned by index.
pub(super) fn coarse_phase<'d, R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    exec: &Exec<'_, '_>,
    pending: &'d [Pending<'d>],
    plans: &mut [Plan],
    wire_path: &(dyn Fn(&Pending<'_>) -> Vec<u8> + Sync),
    partial: bool,
) -> Result<Vec<Option<Prefilled<'d>>>, Error> {
    let partial_dir = exec.partial_dir.as_ref();
    let big: Vec<usize> = plans
        .iter()
        .enumerate()
        .filter(|(i, pl)| {
            matches!(pl, Plan::Delta(..)) && pending[*i].item.src.meta.size >= delta::COARSE_MIN_LEN
        })
        .map(|(i, _)| i)
        .collect();
    let mut prefilled: Vec<Option<Prefilled<'d>>> = pending.iter().map(|_| None).collect();
    if big.is_empty() {
        return Ok(prefilled);
    }
    let rules = &exec.rules;
    let may_prefill = !partial && partial_dir.is_none() && !rules.inplace && !rules.sparse;
    let mut budget = PREFILL_MAX;
    let prefill: Vec<bool> = big
        .iter()
        .map(|&i| {
            let size = pending[i].basis_meta().map_or(u64::MAX, |d| d.size);
            let ok = may_prefill && size <= budget;
            if ok {
                budget -= size;
            }
            ok
        })
        .collect();
    let scanned: Vec<(CoarseItem, Option<Prefilled<'d>>)> = big
        .par_iter()
        .zip(prefill)
        .filter_map(|(&i, prefill)| {
            let p = &pending[i];
            let block = delta::coarse_block(p.item.src.meta.size);
            let f = open_basis(p, partial_dir).ok()?;
            let basis_len = f.metadata().ok()?.len();
            let item = |hashes: Vec<[u8; 16]>, anchors: Vec<u64>| CoarseItem {
                id: i as u32,
                path: serde_bytes::ByteBuf::from(wire_path(p)),
                block,
                basis_len,
                hashes,
                anchors,
            };
            if prefill
                && let Ok(t) = TempFile::start(
                    p.dir.as_fd(),
                    p.item.name,
                    rules,
                    rules.file_mode(&p.item.src.meta, p.item.dst.as_ref()),
                    false,
                    exec.keep_for(p.item),
                )
                && !t.in_place()
                && let Ok(out) = t.fd().try_clone_to_owned().map(std::fs::File::from)
                && let Ok(pre) =
                    delta::prefill_scan(&f, basis_len, block, &out, fault_offset(basis_len))
            {
                return Some((
                    item(pre.wire, pre.anchors),
                    Some(Prefilled {
                        temp: t,
                        basis_len,
                        block,
                        written: pre.written,
                    }),
                ));
            }
            // (A temporary that could not be filled was dropped, and removed, above.)
            let scan = delta::coarse_scan(&f, basis_len, block, true).ok()?;
            let hashes = scan
                .hashes
                .iter()
                .map(|h| h[..16].try_into().expect("16 of 32"))
                .collect();
            Some((item(hashes, scan.anchors), None))
        })
        .collect();
    let mut items = Vec::with_capacity(scanned.len());
    for (item, pre) in scanned {
        prefilled[item.id as usize] = pre;
        items.push(item);
    }
    let mut asked: std::collections::HashMap<u32, u64> =
        items.iter().map(|it| (it.id, it.block)).collect();
    wr.send(&Msg::Coarse { items })?;
    wr.flush()?;
    let answers = match rd.recv()? {
        Msg::CoarseRanges { items } => items,
        other => return Err(unexpected(&other, "coarse ranges")),
    };
    if answers.len() != asked.len() {
        return Err(stream_error(
            "coarse answer count does not match the request",
        ));
    }
    for (id, parts) in answers {
        let (Some(block), Some(Plan::Delta(r))) = (asked.remove(&id), plans.get_mut(id as usize))
        else {
            return Err(stream_error("coarse answer for a file not asked about"));
        };
        // None: the sender could not read the file; a plain delta request will tell.
        if parts.is_none() {
            prefilled[id as usize] = None;
        }
        *r = parts.map(|parts| CoarsePlan { block, parts });
    }
    Ok(prefilled)
}

/// The request for one file, signing its basis if it has one. A basis that cannot be
/// read (or signed) just means the file comes whole.
pub(super) fn request_for(
    id: u32,
    p: &Pending<'_>,
    plan: &Plan,
    wire_path: &(dyn Fn(&Pending<'_>) -> Vec<u8> + Sync),
    partial_dir: Option<&crate::write::PartialDir>,
    block_size: Option<u32>,
) -> Request {
    let path = serde_bytes::ByteBuf::from(wire_path(p));
    if let Plan::Append { at, verify } = *plan {
        return Request::Append {
            id,
            path,
            offset: at,
            verify,
        };
    }
    let Plan::Delta(ranges) = plan else {
        return Request::Whole { id, path };
    };
    let signed = open_basis(p, partial_dir).and_then(|f| {
        let basis_len = f.metadata()?.len();
        let req = match ranges {
            None => {
                let block = block_size.unwrap_or_else(|| delta::block_size(basis_len));
                let sig = delta::sign(&f, 0, basis_len, block)?;
                (Some(sig), Vec::new())
            }
            Some(coarse) => {
                let mut parts = Vec::with_capacity(coarse.parts.len());
                for cp in &coarse.parts {
                    // The basis range the sender chose, clipped to the basis as it is now.
                    let s = cp.basis_start.min(basis_len);
                    let l = cp.basis_len.min(basis_len - s);
                    let block = delta::block_size(l).max(RANGE_MIN_BLOCK);
                    let sig = delta::sign(&f, s, l, block)?;
                    parts.push(Part {
                        start: cp.start,
                        len: cp.len,
                        sig,
                    });
                }
                (None, parts)
            }
        };
        fault_corrupt_basis(&f, basis_len);
        Ok((basis_len, req))
    });
    match signed {
        Ok((basis_len, (sig, parts))) => Request::Delta {
            id,
            path,
            basis_len,
            sig,
            parts,
        },
        Err(_) => Request::Whole { id, path },
    }
}

/// Test hook: with `XSYNC_FAULT_CORRUPT_BASIS=1`, one byte of every basis changes after it
/// was signed — a corruption the block hashes cannot see, which the whole-file digest
/// must catch.
pub(super) fn fault_corrupt_basis(f: &std::fs::File, len: u64) {
    if let Some(at) = fault_offset(len) {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 1];
        if f.read_exact_at(&mut b, at).is_ok()
            && let Ok(w) = std::fs::OpenOptions::new().write(true).open(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(f)
            ))
        {
            let _ = w.write_all_at(&[b[0] ^ 0xff], at);
        }
    }
}

/// Where the `XSYNC_FAULT_CORRUPT_BASIS=1` test hook strikes in a basis of `len` bytes
/// (only in a build with the test-only `fault-injection` feature).
#[cfg(feature = "fault-injection")]
pub(super) fn fault_offset(len: u64) -> Option<u64> {
    (len > 0 && std::env::var_os("XSYNC_FAULT_CORRUPT_BASIS").is_some_and(|v| v == "1"))
        .then_some(len / 2)
}

/// A build without the test hooks: a basis is never touched.
#[cfg(not(feature = "fault-injection"))]
pub(super) fn fault_offset(_len: u64) -> Option<u64> {
    None
}

/// The file being received piece by piece.
/// What is known of a prefilled temporary while the delta is applied.
pub(super) struct PrefillState {
    /// Basis bytes in the temporary (at the same offsets).
    len: u64,
    block: u64,
    /// blake3 of each block as prefilled.
    written: Vec<[u8; 32]>,
    /// Blocks written again since (their prefill hash no longer holds).
    touched: Vec<bool>,
    /// Blocks written again whole by [`copy_hashed`], with the hash of what was written.
    fresh: Vec<Option<[u8; 32]>>,
}

impl PrefillState {
    fn touch(&mut self, pos: u64, n: u64) {
        if n == 0 {
            return;
        }
        let (first, last) = (
            (pos / self.block) as usize,
            ((pos + n - 1) / self.block) as usize,
        );
        if self.touched.len() <= last {
            self.touched.resize(last + 1, false);
        }
        self.touched[first..=last].fill(true);
        for f in self.fresh.iter_mut().take(last + 1).skip(first) {
            *f = None;
        }
    }
}

/// A long copy into a prefilled temporary (a run that moved, after an insertion), done
/// block by block of the output on all cores: each piece is read from the basis, written,
/// and when it is a whole block hashed from the buffer written, so the check does not read
/// it back. Pieces that are not whole blocks are marked for reading back.
pub(super) fn copy_hashed(
    basis: &std::fs::File,
    basis_len: u64,
    out: std::os::fd::BorrowedFd<'_>,
    pos: u64,
    offset: u64,
    len: u64,
    pre: &mut PrefillState,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    match offset.checked_add(len) {
        Some(e) if e <= basis_len => {}
        _ => return Err(bad("delta: copy past the basis")),
    }
    let end = pos
        .checked_add(len)
        .ok_or_else(|| bad("delta: output offset overflows"))?;
    let out = std::fs::File::from(out.try_clone_to_owned()?);
    let b = pre.block;
    let mut pieces = Vec::new();
    let mut at = pos;
    while at < end {
        let next = (at / b + 1) * b;
        let e = next.min(end);
        pieces.push((at, e - at));
        at = e;
    }
    // One write at a time, as in delta::prefill_scan: a waiting writer sleeps here rather
    // than spin on the file's lock in the kernel.
    let writing = std::sync::Mutex::new(());
    let hashes = pieces
        .par_iter()
        .map_init(Vec::new, |buf, &(at, n)| {
            buf.resize(n as usize, 0);
            basis.read_exact_at(buf, offset + (at - pos))?;
            {
                let _one = writing.lock().unwrap_or_else(|p| p.into_inner());
                out.write_all_at(buf, at)?;
            }
            Ok((n == b && at.is_multiple_of(b)).then(|| *blake3::hash(buf).as_bytes()))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for (&(at, n), h) in pieces.iter().zip(hashes) {
        pre.touch(at, n);
        if let Some(h) = h {
            let i = (at / b) as usize;
            if pre.fresh.len() <= i {
                pre.fresh.resize(i + 1, None);
            }
            pre.fresh[i] = Some(h);
        }
    }
    Ok(())
}

/// The coarse digest of a prefilled temporary of `t.len()` bytes (cut to that length
/// first: the basis may have been longer). A block keeps its prefill hash when nothing was
/// written to it since and it spans the same bytes as then; every other block is read back
/// and hashed, in parallel. Every byte is thus hashed as it was last written.
pub(super) fn prefilled_digest(t: &TempFile<'_>, pre: PrefillState) -> Result<[u8; 32], StepError> {
    let len = t.len();
    if pre.len > len {
        t.truncate_to_len()?;
    }
    let block = pre.block;
    let n = len.div_ceil(block) as usize;
    let f = std::fs::File::from(
        t.fd()
            .try_clone_to_owned()
            .map_err(|e| StepError::new("read back", e))?,
    );
    let hashes = (0..n)
        .into_par_iter()
        .map_init(Vec::new, |buf, i| {
            let at = i as u64 * block;
            let end = (at + block).min(len);
            if let Some(Some(h)) = pre.fresh.get(i)
                && end - at == block
            {
                return Ok(*h);
            }
            let kept = !pre.touched.get(i).copied().unwrap_or(false)
                && i < pre.written.len()
                && end == (at + block).min(pre.len);
            if kept {
                return Ok(pre.written[i]);
            }
            use std::os::unix::fs::FileExt;
            buf.resize((end - at) as usize, 0);
            f.read_exact_at(buf, at)?;
            Ok(*blake3::hash(buf).as_bytes())
        })
        .collect::<std::io::Result<Vec<[u8; 32]>>>()
        .map_err(|e| StepError::new("read back", e))?;
    Ok(delta::coarse_digest(len, block, &hashes))
}

/// What the verify thread hands back: the hashes of the blocks it did, and its file.
pub(super) type VerifyResult = std::io::Result<(Vec<[u8; 32]>, std::fs::File)>;

/// The digest of a file's `Data` as it arrives: a whole file's bytes ([`DataHasher`]), or
/// `--append`'s tail (blake3, as the sender hashes it). The whole file's is the common
/// case, held inline: no allocation per file.
#[allow(clippy::large_enum_variant)]
pub(super) enum Running {
    Whole(crate::protocol::DataHasher),
    Append(Box<blake3::Hasher>),
}

impl Running {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Running::Whole(h) => h.update(bytes),
            Running::Append(h) => {
                h.update(bytes);
            }
        }
    }

    fn digest(&self) -> Digest {
        match self {
            Running::Whole(h) => h.digest(),
            Running::Append(h) => wire_digest(h.finalize().as_bytes()),
        }
    }
}

pub(super) struct Current<'d> {
    index: usize,
    temp: Option<TempFile<'d>>,
    hasher: Option<Running>,
    /// The basis and its length when the file started (it may be the file being rewritten).
    basis: Option<(std::fs::File, u64)>,
    /// A coarse file's digest, computed behind the writer.
    verify: Option<Verifier>,
    /// A coarse file whose temporary was prefilled with its basis.
    prefill: Option<PrefillState>,
    literal: u64,
    matched: u64,
    /// Under progress, the file's ticket: its position moves as data is written.
    started: Option<crate::progress::Ticket>,
}

/// Hashes a big rebuilt file's coarse blocks on its own thread while the applier is still
/// writing it, reading back (from the page cache) only blocks entirely below the write
/// position; at the end the blocks left are hashed on all cores. Every byte of the
/// temporary is read back and checked against the sender's [`delta::coarse_digest`],
/// without a second pass over the file after it is built.
pub(super) struct Verifier {
    block: u64,
    tx: Option<mpsc::Sender<u64>>,
    thread: Option<std::thread::JoinHandle<VerifyResult>>,
    /// Set when the thread could not start: the blocks are all hashed at the end.
    file: Option<std::io::Result<std::fs::File>>,
}

impl Verifier {
    fn start(fd: std::os::fd::BorrowedFd<'_>, block: u64) -> Verifier {
        let file = fd.try_clone_to_owned().map(std::fs::File::from);
        let (tx, rx) = mpsc::channel::<u64>();
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                return Verifier {
                    block,
                    tx: None,
                    thread: None,
                    file: Some(Err(e)),
                };
            }
        };
        let thread = std::thread::Builder::new()
            .name("xsync-verify".into())
            .spawn(move || {
                use std::os::unix::fs::FileExt;
                let mut hashes = Vec::new();
                let mut buf = vec![0u8; block.min(1 << 20) as usize];
                let mut done = 0u64;
                // The writer's position; the channel closes when it is done.
                while let Ok(mut avail) = rx.recv() {
                    while let Ok(n) = rx.try_recv() {
                        avail = n;
                    }
                    while done + block <= avail {
                        let mut h = blake3::Hasher::new();
                        let mut at = done;
                        while at < done + block {
                            let take = ((done + block - at) as usize).min(buf.len());
                            file.read_exact_at(&mut buf[..take], at)?;
                            h.update(&buf[..take]);
                            at += take as u64;
                        }
                        hashes.push(*h.finalize().as_bytes());
                        done += block;
                    }
                }
                Ok((hashes, file))
            });
        match thread {
            Ok(t) => Verifier {
                block,
                tx: Some(tx),
                thread: Some(t),
                file: None,
            },
            Err(e) => Verifier {
                block,
                tx: None,
                thread: None,
                file: Some(Err(e)),
            },
        }
    }

    /// The writer has written `pos` bytes.
    fn progress(&self, pos: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(pos);
        }
    }

    /// The digest of the file's first `len` bytes (all of it).
    fn finish(mut self, len: u64) -> Result<[u8; 32], StepError> {
        let read_back = |e| StepError::new("read back", e);
        drop(self.tx.take());
        let (mut hashes, file) = match (self.thread.take(), self.file.take()) {
            (Some(t), _) => t
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("verify thread panicked")))
                .map_err(read_back)?,
            (None, Some(f)) => (Vec::new(), f.map_err(read_back)?),
            (None, None) => return Err(read_back(std::io::Error::other("no file"))),
        };
        let done = hashes.len() as u64 * self.block;
        if done < len {
            let rest =
                delta::coarse_hashes_from(&file, len, self.block, done).map_err(read_back)?;
            hashes.extend(rest);
        }
        Ok(delta::coarse_digest(len, self.block, &hashes))
    }
}

/// The receiver's read loop: every frame of the data phase (whole files, delta ops, coarse
/// answers, skips, redos) is taken here, on one thread, and handed to the writers in the
/// pool. Long because it is one `match` over the data frames with the write-behind bound,
/// the redo queue and `--partial` kept beside it: split apart, each arm would need the
/// same dozen pieces of loop state passed in and out.
#[allow(clippy::too_many_arguments)]
pub(super) fn receive_files<'d, R: Read + Send>(
    rd: &mut Reader<R>,
    exec: &Exec<'_, '_>,
    pending: &'d [Pending<'d>],
    coarse_blocks: &[Option<u64>],
    appends: &[Option<(u64, bool)>],
    prefilled: Vec<Option<Prefilled<'d>>>,
    wire_path: &(dyn Fn(&Pending<'_>) -> Vec<u8> + Sync),
    redo_tx: mpsc::Sender<(u32, Vec<u8>)>,
    cut: &Cut,
    partial: bool,
) -> Result<(), Error> {
    let rules = exec.rules;
    let mut redo_tx = Some(redo_tx);
    let mut prefilled = prefilled;
    // ids past pending.len() are whole-file redos: index into `redo`.
    let mut redo: Vec<usize> = Vec::new();
    let behind = AtomicUsize::new(0);
    // In place, on this thread, not injected into the pool: the loop blocks on the
    // connection, and a worker that picked it up while waiting for its own half of a
    // parallel job (the request thread's signing, say) would never get back to that job,
    // while the sender waits for the request that job finishes — a deadlock seen in the
    // ssh tests.
    rayon::in_place_scope(|scope| -> Result<(), Error> {
        let mut next = 0usize;
        let mut current: Option<Current<'_>> = None;
        loop {
            if next == pending.len() + redo.len() {
                // Everything asked for has arrived; no more redos can be queued.
                redo_tx = None;
                if next >= pending.len() {
                    break;
                }
            }
            if cut.reached(next) {
                break;
            }
            let msg = match rd.recv() {
                Ok(m) => m,
                Err(e) => {
                    if partial {
                        keep_partial(exec, pending, current.take());
                    }
                    return Err(e);
                }
            };
            let index_of = |id: usize| -> usize {
                if id < pending.len() {
                    id
                } else {
                    redo[id - pending.len()]
                }
            };
            match msg {
                Msg::Skip { id } if id as usize == next => {
                    // (Not in place: --remove-source-files keeps its source.)
                    exec.note_failed(&pending[index_of(next)].item.rel);
                    current = None;
                    next += 1;
                }
                Msg::Log { text } => exec.report.raw(&text),
                Msg::Abort { code, msg } => return Err(crate::protocol::aborted(code, msg)),
                Msg::Data { id, data, end } => {
                    let id = id as usize;
                    if id != next {
                        return Err(stream_error(format!(
                            "data for file {id} while expecting {next}"
                        )));
                    }
                    let p = &pending[index_of(id)];
                    // (A redo, past the pending ids, comes whole.)
                    let append = appends.get(id).copied().flatten();
                    if current.is_none() {
                        if let Some(hash) = end
                            && append.is_none()
                        {
                            // A whole file in one piece: written on another thread, as
                            // long as the writers are less than WRITE_BEHIND behind.
                            next += 1;
                            if exec.stopped() {
                                continue;
                            }
                            let len = data.len();
                            let started = exec.begin(p.item);
                            wait_for_writers(&behind, len);
                            let behind = &behind;
                            scope.spawn(move |_| {
                                let _done = Behind(behind, len);
                                // Queued before the transfer stopped.
                                if exec.stopped() {
                                    return;
                                }
                                let res = (|| {
                                    if crate::protocol::data_digest(&data) != hash {
                                        return Err(StepError {
                                            op: "verify",
                                            err: std::io::Error::other("checksum mismatch"),
                                        });
                                    }
                                    let mut t = TempFile::start(
                                        p.dir.as_fd(),
                                        p.item.name,
                                        &rules,
                                        rules.file_mode(&p.item.src.meta, p.item.dst.as_ref()),
                                        rules.sparse,
                                        exec.keep_for(p.item),
                                    )?;
                                    t.write(&data)?;
                                    t.commit(
                                        &p.item.src.meta,
                                        p.item.src.attrs(),
                                        p.item.dst.as_ref(),
                                        &rules,
                                    )
                                })();
                                match res {
                                    Ok(n) => exec.transferred(p.item, n, 0, started),
                                    Err(e) => exec.fail(&p.item.rel, e),
                                }
                            });
                            continue;
                        }
                        current = Some(match append {
                            Some((at, _)) => start_append(exec, p, id, at),
                            None => start_file(exec, p, id, false, None),
                        });
                    }
                    let cur = current.as_mut().expect("set above");
                    if cur.index != id {
                        return Err(stream_error("mixed file data"));
                    }
                    if let Some(h) = cur.hasher.as_mut() {
                        h.update(&data);
                    }
                    if let Some(t) = cur.temp.as_mut()
                        && let Err(e) = t.write(&data)
                    {
                        exec.fail(&p.item.rel, e);
                        cur.temp = None;
                    }
                    cur.literal += data.len() as u64;
                    if let Some(t) = &cur.started {
                        t.at(cur.literal);
                    }
                    if let Some(hash) = end {
                        let cur = current.take().expect("set above");
                        next += 1;
                        if let Some((at, true)) = append {
                            // --append-verify: the digest is the whole file's.
                            let Some(t) = cur.temp else { continue };
                            match t.digest() {
                                Ok(got) if wire_digest(&got) == hash => finish_file(
                                    exec,
                                    p,
                                    Some(t),
                                    Some(wire_digest(&got)),
                                    hash,
                                    (cur.literal, 0),
                                    cur.started,
                                ),
                                Ok(_) if exec.stopped() => drop(t),
                                Ok(_) => {
                                    // Retained as appended, then sent again whole.
                                    drop(t);
                                    exec.append_failed(p.item, at);
                                    match &redo_tx {
                                        Some(tx) => {
                                            let new_id = (pending.len() + redo.len()) as u32;
                                            redo.push(id);
                                            let _ = tx.send((new_id, wire_path(p)));
                                        }
                                        None => exec.fail(
                                            &p.item.rel,
                                            StepError::new(
                                                "verify",
                                                std::io::Error::other("checksum mismatch"),
                                            ),
                                        ),
                                    }
                                }
                                Err(e) => exec.fail(&p.item.rel, e),
                            }
                            continue;
                        }
                        let got = cur.hasher.map(|h| h.digest());
                        finish_file(exec, p, cur.temp, got, hash, (cur.literal, 0), cur.started);
                    }
                }
                Msg::Delta { id, ops, end } => {
                    let id = id as usize;
                    if id != next || id >= pending.len() {
                        return Err(stream_error(format!(
                            "delta for file {id} while expecting {next}"
                        )));
                    }
                    let p = &pending[id];
                    if current.is_none() {
                        let mut c = start_file(exec, p, id, true, prefilled[id].take());
                        if let (Some(block), Some(t), None) =
                            (coarse_blocks[id], c.temp.as_ref(), c.prefill.as_ref())
                        {
                            c.verify = Some(Verifier::start(t.fd(), block));
                        }
                        current = Some(c);
                    }
                    let cur = current.as_mut().expect("set above");
                    if cur.index != id {
                        return Err(stream_error("mixed file data"));
                    }
                    apply_ops(exec, p, cur, ops)?;
                    if let Some(t) = &cur.started {
                        t.at(cur.literal + cur.matched);
                    }
                    if let Some(hash) = end {
                        let mut cur = current.take().expect("set above");
                        next += 1;
                        // A big basis, replaced by the rename below, is freed after the run.
                        let basis = cur.basis.take().filter(|_| coarse_blocks[id].is_some());
                        let Some(t) = cur.temp.take() else { continue };
                        let digest = match (cur.verify.take(), coarse_blocks[id]) {
                            _ if cur.prefill.is_some() => {
                                prefilled_digest(&t, cur.prefill.take().expect("checked"))
                            }
                            (Some(v), _) => v.finish(t.len()),
                            (None, Some(block)) => Verifier::start(t.fd(), block).finish(t.len()),
                            (None, None) => t.digest(),
                        };
                        match digest {
                            Ok(got) if wire_digest(&got) == hash => finish_file(
                                exec,
                                p,
                                Some(t),
                                Some(wire_digest(&got)),
                                hash,
                                (cur.literal, cur.matched),
                                cur.started,
                            ),
                            // Stopped: the whole file would not be written either.
                            Ok(_) if exec.stopped() => drop(t),
                            Ok(_) => {
                                drop(t);
                                exec.report.warn(format!(
                                    "WARNING: `{}` failed verification -- update retransmitted whole",
                                    show(&p.item.rel)
                                ));
                                match &redo_tx {
                                    Some(tx) => {
                                        let new_id = (pending.len() + redo.len()) as u32;
                                        redo.push(id);
                                        let _ = tx.send((new_id, wire_path(p)));
                                    }
                                    None => exec.fail(
                                        &p.item.rel,
                                        StepError {
                                            op: "verify",
                                            err: std::io::Error::other("checksum mismatch"),
                                        },
                                    ),
                                }
                            }
                            Err(e) => exec.fail(&p.item.rel, e),
                        }
                        if let Some((f, len)) = basis {
                            crate::write::close_later(f.into(), len);
                        }
                    }
                }
                other => return Err(unexpected(&other, "file data")),
            }
        }
        Ok(())
    })
}

/// How far (in bytes of file data held in memory) the receiver's writers may fall behind
/// the wire before it stops reading: without a bound a fast sender and a slow disk fill
/// memory with whole small files (a kernel push held 170 MiB on the server).
pub(super) const WRITE_BEHIND: usize = 16 << 20;

/// Counts a spawned write's bytes out of [`WRITE_BEHIND`] when the write is done (or
/// panics).
pub(super) struct Behind<'a>(&'a AtomicUsize, usize);

impl Drop for Behind<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::AcqRel);
    }
}

/// Waits until `len` more bytes fit in [`WRITE_BEHIND`], then counts them in. Should the
/// reading loop run on a rayon worker, it helps with the queued writes while it waits
/// instead of blocking (a blocked worker could be the one its writes were queued on);
/// otherwise the pool's workers drain them. One file always fits when nothing else is in
/// flight.
pub(super) fn wait_for_writers(behind: &AtomicUsize, len: usize) {
    loop {
        let now = behind.load(Ordering::Acquire);
        if now == 0 || now + len <= WRITE_BEHIND {
            behind.fetch_add(len, Ordering::AcqRel);
            return;
        }
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => {}
            _ => std::thread::sleep(std::time::Duration::from_micros(200)),
        }
    }
}

/// `--partial`: what arrived of an interrupted file replaces its target.
pub(super) fn keep_partial(exec: &Exec<'_, '_>, pending: &[Pending<'_>], cur: Option<Current<'_>>) {
    let Some(cur) = cur else { return };
    let Some(t) = cur.temp else { return };
    let Some(p) = pending.get(cur.index) else {
        return;
    };
    if t.is_empty() {
        return;
    }
    let kept = match &exec.partial_dir {
        Some(pd) if !t.in_place() => t.keep_partial_in(pd),
        _ => t.keep_partial(&p.item.src.meta, p.item.dst.as_ref(), &exec.rules),
    };
    if let Err(e) = kept {
        exec.fail(&p.item.rel, e);
    }
}

pub(super) fn start_file<'d>(
    exec: &Exec<'_, '_>,
    p: &'d Pending<'d>,
    index: usize,
    delta: bool,
    prefilled: Option<Prefilled<'d>>,
) -> Current<'d> {
    let rules = &exec.rules;
    // A stopped transfer writes nothing: the data that still arrives is dropped.
    let stopped = exec.stopped();
    // The basis is opened (and measured) before anything is written: with --inplace it
    // is the very file being rewritten.
    let basis = if delta && !stopped {
        match open_basis(p, exec.partial_dir.as_ref())
            .and_then(|f| f.metadata().map(|m| (f, m.len())))
        {
            Ok(b) => Some(b),
            Err(e) => {
                exec.fail(
                    &p.item.rel,
                    StepError {
                        op: "open basis",
                        err: e,
                    },
                );
                None
            }
        }
    } else {
        None
    };
    let mut prefill = None;
    let temp = if stopped || (delta && basis.is_none()) {
        None
    } else if let Some(pre) = prefilled {
        prefill = Some(PrefillState {
            len: pre.basis_len,
            block: pre.block,
            written: pre.written,
            touched: Vec::new(),
            fresh: Vec::new(),
        });
        Some(pre.temp)
    } else {
        match TempFile::start(
            p.dir.as_fd(),
            p.item.name,
            rules,
            rules.file_mode(&p.item.src.meta, p.item.dst.as_ref()),
            rules.sparse && !delta,
            exec.keep_for(p.item),
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                exec.fail(&p.item.rel, e);
                None
            }
        }
    };
    Current {
        index,
        temp,
        hasher: (!delta).then(|| Running::Whole(Default::default())),
        basis,
        verify: None,
        prefill,
        literal: 0,
        matched: 0,
        started: exec.begin(p.item),
    }
}

/// `--append`: the destination file itself, written from `at` on; the hasher checks the
/// tail as it arrives (under `--append-verify` the whole file is read back at the end).
pub(super) fn start_append<'d>(
    exec: &Exec<'_, '_>,
    p: &'d Pending<'d>,
    index: usize,
    at: u64,
) -> Current<'d> {
    let temp = if exec.stopped() {
        None
    } else {
        match TempFile::append(
            p.dir.as_fd(),
            p.item.name,
            at,
            exec.rules.sparse,
            exec.keep_for(p.item),
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                exec.fail(&p.item.rel, e);
                None
            }
        }
    };
    Current {
        index,
        temp,
        hasher: Some(Running::Append(Box::default())),
        basis: None,
        verify: None,
        prefill: None,
        literal: 0,
        matched: 0,
        started: exec.begin(p.item),
    }
}

pub(super) fn apply_ops(
    exec: &Exec<'_, '_>,
    p: &Pending<'_>,
    cur: &mut Current<'_>,
    ops: Vec<WireOp>,
) -> Result<(), Error> {
    let (Some(t), Some((basis, basis_len))) = (cur.temp.as_mut(), cur.basis.as_ref()) else {
        return Ok(());
    };
    let mut res = Ok(());
    for op in &ops {
        let pos = t.len();
        let (r, n) = match op {
            WireOp::Copy { offset, len } => {
                cur.matched += len;
                let prefilled = cur.prefill.as_ref().is_some_and(|pre| {
                    *offset == pos && pos.checked_add(*len).is_some_and(|e| e <= pre.len)
                });
                if (t.in_place() && *offset == pos) || prefilled {
                    // In place or prefilled, these bytes are already where they belong.
                    (Ok(()), *len)
                } else if let Some(pre) = cur.prefill.as_mut().filter(|pre| *len >= 2 * pre.block) {
                    (
                        copy_hashed(basis, *basis_len, t.fd(), pos, *offset, *len, pre),
                        *len,
                    )
                } else {
                    if let Some(pre) = cur.prefill.as_mut() {
                        pre.touch(pos, *len);
                    }
                    // In pieces when a verifier follows the writer, so it can hash while a
                    // long run is still being copied.
                    let piece = if cur.verify.is_some() {
                        VERIFY_STEP
                    } else {
                        u64::MAX
                    };
                    let (mut r, mut done) = (Ok(()), 0u64);
                    while done < *len {
                        let n = (*len - done).min(piece);
                        r = Applier::new(basis.as_fd(), *basis_len, t.fd(), pos + done).apply(
                            Op::Copy {
                                offset: *offset + done,
                                len: n,
                            },
                        );
                        if r.is_err() {
                            break;
                        }
                        done += n;
                        if let Some(v) = &cur.verify {
                            v.progress(pos + done);
                        }
                    }
                    (r, done)
                }
            }
            WireOp::Literal(d) => {
                cur.literal += d.len() as u64;
                if let Some(pre) = cur.prefill.as_mut() {
                    pre.touch(pos, d.len() as u64);
                }
                let r = Applier::new(basis.as_fd(), *basis_len, t.fd(), pos).apply(Op::Literal(d));
                (r, d.len() as u64)
            }
        };
        if let Err(e) = r {
            res = Err(e);
            break;
        }
        t.advance(n);
        if let Some(v) = &cur.verify {
            v.progress(t.len());
        }
    }
    if let Err(e) = res {
        if e.kind() == std::io::ErrorKind::InvalidData {
            return Err(stream_error(format!(
                "bad delta for `{}`: {e}",
                show(&p.item.rel)
            )));
        }
        exec.fail(
            &p.item.rel,
            StepError {
                op: "write",
                err: e,
            },
        );
        cur.temp = None;
    }
    Ok(())
}

pub(super) fn finish_file(
    exec: &Exec<'_, '_>,
    p: &Pending<'_>,
    temp: Option<TempFile<'_>>,
    got: Option<Digest>,
    want: Digest,
    (literal, matched): (u64, u64),
    started: Option<crate::progress::Ticket>,
) {
    let Some(t) = temp else { return };
    if got != Some(want) {
        exec.fail(
            &p.item.rel,
            StepError {
                op: "verify",
                err: std::io::Error::other("checksum mismatch"),
            },
        );
        return;
    }
    let done = t.commit(
        &p.item.src.meta,
        p.item.src.attrs(),
        p.item.dst.as_ref(),
        &exec.rules,
    );
    if done.is_ok()
        && let Some(pd) = &exec.partial_dir
    {
        pd.drop_partial(p.dir.as_fd(), p.item.name);
    }
    match done {
        Ok(_) => {
            exec.transferred(p.item, literal, matched, started);
        }
        Err(e) => exec.fail(&p.item.rel, e),
    }
}
