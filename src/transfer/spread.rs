//! New files spread across several streams (`--streams`; the streams themselves are
//! `endpoint::streams`'s). One ssh channel carries at most its window per round trip, so on
//! a long link the receiver asks for the data of files it has no basis for over extra
//! streams as well: a small file as one range, a big one as ranges of [`RANGE`] bytes,
//! each range on whichever stream is free next. Every stream is a plain request/answer
//! pipe (`GetRange` → `Data`… with the range's blake3, or `Skip`), and the receiver, which
//! holds every stream in one process, writes each range at its offset into the file's one
//! temporary (`write.rs`'s rule: beside the target, renamed when complete). A file is
//! renamed into place only when every one of its ranges arrived whole and matched its
//! digest; a range that failed (a stream that died, a short read, a `Skip`) sends the file
//! back to the first stream, to be fetched whole there after the spread, where the usual
//! errors are reported. Deltas, and anything `--inplace`, `--partial` or `-S` would
//! write, stay on the first stream.

use super::*;
use std::sync::Mutex;

/// An extra stream: its framed halves, already proved to the server.
pub struct Lane {
    pub rd: Reader<Box<dyn Read + Send>>,
    pub wr: Writer<Box<dyn Write + Send>>,
}

/// How the receiver gets more streams: the endpoint's stream layer behind a trait, so
/// the data phase does not reach up into the endpoint.
pub trait Lanes: Sync {
    /// How many extra streams `bytes` of new files in `files` files call for (0: none).
    fn wanted(&self, bytes: u64, files: usize) -> u32;
    /// A fresh secret for the streams of one `Lanes` message.
    fn token(&self) -> std::io::Result<[u8; 32]>;
    /// Opens `count` extra streams that prove themselves with `token` (the receiver's end
    /// of the `Lanes` message), handing each to `each` as it is ready. Returns once all are
    /// handed, or when `stop` is set (no work is left), or when it gives up.
    fn open(&self, count: u32, token: [u8; 32], each: &mut dyn FnMut(Lane), stop: &AtomicBool);
    /// A round trip the receiver measured (a listing asked for and answered).
    fn note_rtt(&self, d: std::time::Duration);
    /// An extra stream is done with: the bytes it carried count in the run's totals.
    fn lane_done(&self, sent: u64, received: u64);
    /// The spread is over: `streams` carried its files (the first one included).
    fn spread_over(&self, streams: usize);
    /// The session is over, or its first stream failed: every extra stream stops reading
    /// (a peer that keeps one open and silent would otherwise hold this end forever).
    fn end(&self);
}

/// A big file travels in ranges of this many bytes: 1 GiB is 128 pieces, enough to keep
/// 16 streams busy to the end.
const RANGE: u64 = 8 << 20;
/// Bytes one stream may have asked for and not yet received: above one channel's window
/// (about 2 MB), so the channel never waits for a request. (The sender reads a range in
/// chunks as it writes it: this costs no memory on either end.)
const IN_FLIGHT: u64 = 3 * RANGE;

/// One range to fetch.
struct Unit {
    file: usize,
    offset: u64,
    len: u64,
    /// The file's last range: the sender sends to the end of the file as it reads it.
    last: bool,
}

/// A file being assembled from its ranges.
struct Slot<'d> {
    p: &'d Pending<'d>,
    /// Ranges not yet accounted for (arrived, or failed).
    left: AtomicUsize,
    state: Mutex<SlotState<'d>>,
}

#[derive(Default)]
struct SlotState<'d> {
    temp: Option<TempFile<'d>>,
    ticket: Option<Ticket>,
    /// The end of the last range: the file's length.
    len: u64,
    /// A range failed: the file is fetched whole on the first stream afterwards.
    retry: bool,
    /// Writing failed (already reported): the file is given up.
    dead: bool,
}

/// What the receiver's streams share.
struct Work<'d, 'e, 'a, 'r> {
    exec: &'e Exec<'a, 'r>,
    slots: Vec<Slot<'d>>,
    units: Vec<Unit>,
    next: AtomicUsize,
    /// Every unit has been taken: an opener still waiting for streams may stop.
    drained: AtomicBool,
    retry: Mutex<Vec<usize>>,
    wire_path: &'e (dyn Fn(&Pending<'_>) -> Vec<u8> + Sync),
}

/// Whether `p`, planned as `plan`, may be spread: a new file's data, written only through
/// a temporary.
pub(super) fn spreadable(exec: &Exec<'_, '_>, p: &Pending<'_>, plan: &Plan, partial: bool) -> bool {
    let r = &exec.rules;
    matches!(plan, Plan::Whole)
        && p.item.src.meta.size > 0
        && !partial
        && exec.partial_dir.is_none()
        && !r.inplace
        && !r.sparse
}

/// The receiver's data phase with extra streams: the files `spread` picked out go over
/// every stream (the first one joins once its own files are in), the rest over the first
/// as before. Returns the files to fetch whole on the first stream afterwards.
#[allow(clippy::too_many_arguments)]
pub(super) fn fetch_spread<'d, R: Read + Send, W: Write + Send>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    exec: &Exec<'_, '_>,
    spread: &'d [Pending<'d>],
    rest: Vec<Pending<'_>>,
    wire_path: &(dyn Fn(&Pending<'_>) -> Vec<u8> + Sync),
    (use_delta, partial): (bool, bool),
    (lanes, count, token): (&dyn Lanes, u32, [u8; 32]),
) -> Result<Vec<usize>, Error> {
    wr.send(&Msg::Planned {
        files: spread.len() as u64,
    })?;
    wr.send(&Msg::Lanes { count, token })?;
    wr.flush()?;
    let mut units = Vec::new();
    let slots = spread
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let size = p.item.src.meta.size;
            let n = size.div_ceil(RANGE).max(1);
            for k in 0..n {
                let offset = k * RANGE;
                units.push(Unit {
                    file: i,
                    offset,
                    len: (size - offset).min(RANGE),
                    last: k + 1 == n,
                });
            }
            Slot {
                p,
                left: AtomicUsize::new(n as usize),
                state: Mutex::new(SlotState::default()),
            }
        })
        .collect();
    let work = Work {
        exec,
        slots,
        units,
        next: AtomicUsize::new(0),
        drained: AtomicBool::new(false),
        retry: Mutex::new(Vec::new()),
        wire_path,
    };
    let joined = AtomicUsize::new(1);
    let first = std::thread::scope(|scope| {
        let (work, joined) = (&work, &joined);
        scope.spawn(move || {
            lanes.open(
                count,
                token,
                &mut |mut lane: Lane| {
                    joined.fetch_add(1, Ordering::Relaxed);
                    scope.spawn(move || {
                        // An extra stream that fails only sends its files back.
                        let _ = run_lane(work, &mut lane.rd, &mut lane.wr);
                        lanes.lane_done(lane.wr.sent, lane.rd.received);
                    });
                },
                &work.drained,
            )
        });
        let own = super::fetch_one(rd, wr, exec, rest, wire_path, use_delta, partial);
        let lane = own.and_then(|()| run_lane(work, rd, wr));
        // Nothing more will be taken by this stream: no opener should wait for others.
        work.drained.store(true, Ordering::Release);
        if lane.is_err() {
            // The run fails with the first stream: the others are not waited for.
            lanes.end();
        }
        lane
    });
    let Work { retry, .. } = work;
    lanes.spread_over(joined.into_inner());
    first?;
    let mut retry = retry.into_inner().unwrap_or_else(|p| p.into_inner());
    retry.sort_unstable();
    Ok(retry)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The credit of one stream: bytes asked for and not yet received.
struct Credit {
    used: Mutex<u64>,
    freed: std::sync::Condvar,
}

impl Credit {
    fn try_take(&self, n: u64) -> bool {
        let mut u = lock(&self.used);
        if *u == 0 || *u + n <= IN_FLIGHT {
            *u += n;
            true
        } else {
            false
        }
    }

    fn take(&self, n: u64, dead: &AtomicBool) {
        let mut u = lock(&self.used);
        while !(*u == 0 || *u + n <= IN_FLIGHT || dead.load(Ordering::Acquire)) {
            u = self
                .freed
                .wait_timeout(u, std::time::Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        *u += n;
    }

    fn give(&self, n: u64) {
        let mut u = lock(&self.used);
        *u = u.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// One stream's share of the work: a thread asks for ranges while this one reads them.
fn run_lane<R: Read + Send, W: Write + Send>(
    work: &Work<'_, '_, '_, '_>,
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
) -> Result<(), Error> {
    let credit = Credit {
        used: Mutex::new(0),
        freed: std::sync::Condvar::new(),
    };
    let dead = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<usize>();
    std::thread::scope(|scope| {
        let (credit, dead) = (&credit, &dead);
        let asker = scope.spawn(move || -> Result<(), Error> {
            let res = ask(work, wr, credit, dead, &tx);
            if res.is_err() {
                dead.store(true, Ordering::Release);
            }
            res
        });
        let got = read_lane(work, rd, &rx, credit);
        if got.is_err() {
            dead.store(true, Ordering::Release);
        }
        // Whatever was asked for and will not arrive goes back to the first stream.
        for u in rx.iter() {
            work.account(u, false);
        }
        let asked = asker
            .join()
            .unwrap_or_else(|_| Err(Error::new(ExitCode::Ipc, "request thread panicked")));
        got.and(asked)
    })
}

/// Takes units until none is left, asking for each on `wr`; `tx` tells the reader.
fn ask<W: Write>(
    work: &Work<'_, '_, '_, '_>,
    wr: &mut Writer<W>,
    credit: &Credit,
    dead: &AtomicBool,
    tx: &mpsc::Sender<usize>,
) -> Result<(), Error> {
    let mut queued = false;
    loop {
        if dead.load(Ordering::Acquire) || work.exec.stopped() {
            break;
        }
        let i = work.next.fetch_add(1, Ordering::AcqRel);
        let Some(u) = work.units.get(i) else {
            work.drained.store(true, Ordering::Release);
            break;
        };
        // The reader learns of the unit first: whatever happens to this stream from here
        // on, the unit is accounted for (arrived, or sent back).
        let _ = tx.send(i);
        if !credit.try_take(u.len) {
            if queued {
                wr.send(&Msg::GetEnd)?;
                wr.flush()?;
            }
            credit.take(u.len, dead);
        }
        wr.send(&Msg::GetRange {
            id: i as u32,
            path: serde_bytes::ByteBuf::from((work.wire_path)(work.slots[u.file].p)),
            offset: u.offset,
            len: u.len,
            to_end: u.last,
        })?;
        queued = true;
    }
    if queued {
        wr.send(&Msg::GetEnd)?;
        wr.flush()?;
    }
    Ok(())
}

/// Reads the answers to the units `rx` names, in order.
fn read_lane<R: Read>(
    work: &Work<'_, '_, '_, '_>,
    rd: &mut Reader<R>,
    rx: &mpsc::Receiver<usize>,
    credit: &Credit,
) -> Result<(), Error> {
    for i in rx.iter() {
        let u = &work.units[i];
        let mut h = crate::protocol::DataHasher::default();
        let mut pos = 0u64;
        let whole = loop {
            let msg = match rd.recv() {
                Ok(m) => m,
                Err(e) => {
                    work.account(i, false);
                    return Err(e);
                }
            };
            match msg {
                Msg::Data { id, data, end } if id as usize == i => {
                    let n = data.len() as u64;
                    if !u.last && pos + n > u.len {
                        work.account(i, false);
                        return Err(stream_error("more data than the range asked for"));
                    }
                    h.update(&data);
                    work.write(u, pos, &data);
                    pos += n;
                    if let Some(d) = end {
                        let ok = h.digest() == d && (pos == u.len || (u.last && pos >= u.len));
                        if ok && u.last {
                            lock(&work.slots[u.file].state).len = u.offset + pos;
                        }
                        break ok;
                    }
                }
                Msg::Skip { id } if id as usize == i => break false,
                Msg::Log { text } => work.exec.report.raw(&text),
                Msg::Abort { code, msg } => {
                    work.account(i, false);
                    return Err(crate::protocol::aborted(code, msg));
                }
                other => {
                    work.account(i, false);
                    return Err(unexpected(&other, "range data"));
                }
            }
        };
        credit.give(u.len);
        work.account(i, whole);
    }
    Ok(())
}

impl Work<'_, '_, '_, '_> {
    /// Writes a piece of unit `u` at `pos` within it, into the file's temporary (made
    /// by the first piece to arrive).
    fn write(&self, u: &Unit, pos: u64, data: &[u8]) {
        let slot = &self.slots[u.file];
        let p = slot.p;
        let mut st = lock(&slot.state);
        if st.dead || st.retry || self.exec.stopped() {
            return;
        }
        if st.temp.is_none() {
            let rules = &self.exec.rules;
            match TempFile::start(
                p.dir.as_fd(),
                p.item.name,
                rules,
                rules.file_mode(&p.item.src.meta, p.item.dst.as_ref()),
                false,
                self.exec.keep_for(p.item),
            ) {
                Ok(t) => {
                    st.temp = Some(t);
                    st.ticket = self.exec.begin(p.item);
                }
                Err(e) => {
                    st.dead = true;
                    self.exec.fail(&p.item.rel, e);
                    return;
                }
            }
        }
        let t = st.temp.as_ref().expect("made above");
        let res = pwrite_all(t.fd(), data, u.offset + pos);
        if let Some(tk) = &st.ticket {
            tk.at(u.offset + pos + data.len() as u64);
        }
        if let Err(e) = res {
            st.dead = true;
            st.temp = None;
            self.exec.fail(&p.item.rel, StepError::new("write", e));
        }
    }

    /// Unit `i` is over (`whole`: it arrived complete and checked). The file's last unit
    /// to be over renames it into place, or sends it back for a whole fetch.
    fn account(&self, i: usize, whole: bool) {
        let u = &self.units[i];
        let slot = &self.slots[u.file];
        let mut st = lock(&slot.state);
        if !whole {
            st.retry = true;
        }
        if slot.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let p = slot.p;
        if st.dead || self.exec.stopped() {
            st.temp = None;
            return;
        }
        if st.retry {
            st.temp = None;
            lock(&self.retry).push(u.file);
            return;
        }
        let (Some(mut t), len) = (st.temp.take(), st.len) else {
            // (Every unit arrived and was written: the temporary exists.)
            lock(&self.retry).push(u.file);
            return;
        };
        t.advance(len);
        let ticket = st.ticket.take();
        drop(st);
        let done = rustix::fs::ftruncate(t.fd(), len)
            .map_err(|e| StepError::new("set length of", e))
            .and_then(|()| {
                t.commit(
                    &p.item.src.meta,
                    p.item.src.attrs(),
                    p.item.dst.as_ref(),
                    &self.exec.rules,
                )
            });
        match done {
            Ok(_) => self.exec.transferred(p.item, len, 0, ticket),
            Err(e) => self.exec.fail(&p.item.rel, e),
        }
    }
}

fn pwrite_all(
    fd: std::os::fd::BorrowedFd<'_>,
    mut data: &[u8],
    mut at: u64,
) -> std::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, at) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                at += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sender: answers one `GetRange` with the range's bytes as read, in `Data` frames of at
/// most [`CHUNK`], the last with their blake3. A file that cannot be read is a `Skip`
/// and nothing more: the receiver asks for it whole on the first stream, where the error
/// is reported once.
#[allow(clippy::too_many_arguments)]
pub fn send_range<W: Write>(
    wr: &mut Writer<W>,
    root: &Entry,
    tops: &Tops,
    id: u32,
    path: &[u8],
    offset: u64,
    len: u64,
    to_end: bool,
) -> Result<(), Error> {
    check_served(root, path)?;
    let fd = match open_source(tops, path) {
        Ok(fd) => fd,
        Err(_) => return wr.send(&Msg::Skip { id }),
    };
    let end = if to_end {
        u64::MAX
    } else {
        offset.saturating_add(len)
    };
    let mut h = crate::protocol::DataHasher::default();
    let mut buf = vec![0u8; CHUNK];
    let mut at = offset;
    let mut raw: Option<bool> = None;
    loop {
        let want = (end - at).min(CHUNK as u64) as usize;
        let n = if want == 0 {
            0
        } else {
            match rustix::io::pread(&fd, &mut buf[..want], at) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return wr.send(&Msg::Skip { id }),
            }
        };
        at += n as u64;
        h.update(&buf[..n]);
        let fin = n == 0 || at == end;
        let end = fin.then(|| h.digest());
        super::send::send_chunk(wr, id, path, &buf[..n], end, &mut raw)?;
        if fin {
            return Ok(());
        }
    }
}

/// Sender: serves one extra stream until the receiver closes it. Its errors end only
/// that stream: the receiver fetches what it lost over the first one.
pub fn serve_lane(lane: &mut Lane, root: &Entry, tops: &Tops) {
    loop {
        let res = match lane.rd.recv() {
            Ok(Msg::GetRange {
                id,
                path,
                offset,
                len,
                to_end,
            }) => send_range(&mut lane.wr, root, tops, id, &path, offset, len, to_end),
            Ok(Msg::GetEnd) => lane.wr.flush(),
            _ => return,
        };
        if res.is_err() {
            return;
        }
    }
}
