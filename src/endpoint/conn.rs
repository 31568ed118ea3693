//! The connection's byte level, below the framing: rsync's `--timeout` and `--bwlimit`.
//!
//! Both ends wrap the two byte streams of the remote shell in [`In`] and [`Out`], which
//! note each successful read or write system call (one atomic store; none per frame or
//! per byte) and, with a rate, pace what this end writes.
//!
//! `--timeout` is rsync's: the run ends with exit 30 when this end is waiting on the
//! connection (some thread is inside a read or a write of it) and no byte has moved for
//! that many seconds. An end that is busy (scanning, hashing a big basis) is not waiting
//! and does not time out, and so that its peer, which is waiting, does not either, a
//! keepalive goes out whenever this end has written nothing for half the timeout. The
//! keepalives this end sends do not count as its own progress: a peer that stopped
//! answering swallows them into buffers, and they must not hide it.
//!
//! A keepalive is written by a thread of its own, so it has to land between two of the
//! writer's frames: the writer hands [`Out`] only whole frames (or, under `-z`, whole
//! segments) and holds the stream's lock for each, and the keepalive takes the same lock.

use crate::config::Options;
use crate::error::Error;
use crate::exit::ExitCode;
use crate::protocol::{Reader, Role, Writer};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One connection as both ends set it up over the remote shell's two pipes (the client
/// over its child's, the server over its stdin and stdout): wide pipes, the byte-level
/// wrappers, the framing on top.
pub struct Conn<R: Read> {
    pub rd: Reader<io::BufReader<In<R>>>,
    pub wr: Writer<Out>,
    /// Lives as long as the run: dropping it stops the watchdog.
    pub wire: Wire,
}

impl<R: Read + AsFd> Conn<R> {
    pub fn over(input: R, output: impl Write + AsFd + Send + 'static) -> Conn<R> {
        // 1 MiB pipes (the unprivileged maximum by default). With the kernel's 64 KiB the
        // writer of a bulk stream waits for the reader 16 times per MiB, and on two cores
        // every wait is a context switch through ssh: a 1 GiB push spent a quarter of its
        // time there. Not a pipe, or a lower limit: nothing changes.
        let widen = |fd: std::os::fd::BorrowedFd<'_>| {
            let _ = rustix::pipe::fcntl_setpipe_size(fd, 1 << 20);
        };
        widen(input.as_fd());
        widen(output.as_fd());
        let wire = Wire::new();
        let wr = Writer::new(wire.writer(output));
        let rd = Reader::new(io::BufReader::with_capacity(256 * 1024, wire.reader(input)));
        Conn { rd, wr, wire }
    }
}

/// After `Start`, both ends fix the stream's form at the same point: unless `--no-compress`,
/// frames travel in segments both ways (compressed as [`crate::compress::Plan`] says: by
/// `-z`, by `--compress-level`, or where the run finds it pays), `--bwlimit` paces this
/// end's writes, and `--timeout` starts the watchdog (keepalives may flow from here on).
/// `role` is this end's. Both ends derive the plan from the same option words.
pub fn settle_stream<R: Read, W: Write>(
    rd: &mut Reader<R>,
    wr: &mut Writer<W>,
    wire: &Wire,
    opts: &Options,
    role: Role,
) -> Result<(), Error> {
    let plan = crate::compress::Plan::of(opts);
    if plan.segmented() {
        wr.enable_compression(plan)?;
        rd.enable_compression()?;
    }
    wire.set_bwlimit(opts.bwlimit);
    if let Some(t) = opts.timeout {
        let who = match role {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        };
        wire.watch(t, who, crate::protocol::keepalive(plan.segmented()));
    }
    Ok(())
}

/// One connection's shared state: what [`In`], [`Out`] and the watchdog threads see.
#[derive(Default)]
struct Shared {
    /// Successful read calls so far.
    reads: AtomicU64,
    /// Successful write calls so far (the writer's, not the keepalives).
    writes: AtomicU64,
    /// Threads inside a read or write of the connection, or queued for its lock.
    waiting: AtomicUsize,
    /// The stream to the peer; `None` once the writer is dropped (closing it tells the
    /// peer the run is over, so the keepalive thread must not keep it open).
    out: Mutex<Option<Box<dyn Write + Send>>>,
    /// `--bwlimit` in bytes per second (0: none).
    rate: AtomicU64,
    /// The remote shell the client started: ended on a timeout, so that a hung
    /// connection leaves no ssh behind.
    child: AtomicU64,
    /// The run is over: the watchdog threads stop.
    done: AtomicBool,
}

/// Counts a thread as waiting on the connection while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A connection's handle: makes the stream wrappers and starts the watchdog. Dropping it
/// stops the watchdog threads.
pub struct Wire(Arc<Shared>);

impl Default for Wire {
    fn default() -> Self {
        Wire::new()
    }
}

impl Wire {
    pub fn new() -> Wire {
        Wire(Arc::new(Shared::default()))
    }

    pub fn reader<R: Read>(&self, inner: R) -> In<R> {
        In {
            inner,
            shared: self.0.clone(),
            count: 0,
        }
    }

    pub fn writer(&self, inner: impl Write + Send + 'static) -> Out {
        *lock(&self.0.out) = Some(Box::new(inner));
        Out {
            shared: self.0.clone(),
            count: 0,
            pace: Pace::default(),
        }
    }

    /// `--bwlimit` in rsync's KiB per second; `None`: no limit. (The server learns it from
    /// the options, after the stream is set up.)
    pub fn set_bwlimit(&self, kib: Option<u64>) {
        self.0.rate.store(kib.unwrap_or(0) * 1024, Relaxed);
    }

    /// The remote shell's process, to end when the connection times out.
    pub fn set_child(&self, pid: u32) {
        self.0.child.store(u64::from(pid), Relaxed);
    }

    /// Starts rsync's `--timeout` for this connection: `who` names this end in the
    /// message (`sender`, `receiver`), `keepalive` is the protocol's no-op in the form the
    /// peer now reads (a frame, or under `-z` a segment). Called once the stream's form
    /// is settled, so a keepalive cannot arrive before the peer can tell it apart.
    pub fn watch(&self, seconds: u32, who: &'static str, keepalive: Vec<u8>) {
        let limit = Duration::from_secs(u64::from(seconds));
        // Ticks well below a second, so the message's count is the timeout itself.
        let tick = (limit / 8).clamp(Duration::from_millis(20), Duration::from_millis(250));
        let shared = self.0.clone();
        std::thread::spawn(move || keep_alive(&shared, limit / 2, tick, &keepalive));
        let shared = self.0.clone();
        std::thread::spawn(move || watchdog(&shared, limit, tick, who));
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.0.done.store(true, Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes a keepalive whenever the writer has been silent for `lull`.
fn keep_alive(shared: &Shared, lull: Duration, tick: Duration, keepalive: &[u8]) {
    let mut last = (shared.writes.load(Relaxed), Instant::now());
    while !shared.done.load(Relaxed) {
        std::thread::sleep(tick);
        let writes = shared.writes.load(Relaxed);
        if writes != last.0 {
            last = (writes, Instant::now());
        } else if last.1.elapsed() >= lull {
            match lock(&shared.out).as_mut() {
                Some(out) => {
                    if out.write_all(keepalive).and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
                None => return,
            }
            last.1 = Instant::now();
        }
    }
}

/// Ends the run when this end has waited `limit` on a connection that did not move.
fn watchdog(shared: &Shared, limit: Duration, tick: Duration, who: &str) {
    let moved = || (shared.reads.load(Relaxed), shared.writes.load(Relaxed));
    let mut last = (moved(), Instant::now());
    while !shared.done.load(Relaxed) {
        std::thread::sleep(tick);
        let now = moved();
        if now != last.0 || shared.waiting.load(Relaxed) == 0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= limit {
            timed_out(shared, last.1.elapsed(), who);
        }
    }
}

/// rsync's ending on a timeout: the message, the files being written removed (as on a
/// signal; the destination keeps each file old or new), exit 30.
fn timed_out(shared: &Shared, idle: Duration, who: &str) -> ! {
    if !crate::exit::begin_ending() {
        // (A signal got there first and is ending the run.)
        crate::exit::wait_if_ending();
    }
    let code = ExitCode::Timeout;
    eprintln!(
        "[{who}] io timeout after {} seconds -- exiting",
        idle.as_secs()
    );
    let pid = shared.child.load(Relaxed);
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _held = crate::write::remove_live_temps();
    eprintln!("xsync error: {} (code {})", code.describe(), code.code());
    std::process::exit(code.code());
}

/// The reading half of a connection.
pub struct In<R> {
    inner: R,
    shared: Arc<Shared>,
    count: u64,
}

impl<R: Read> Read for In<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let _w = Waiting::new(&self.shared.waiting);
            self.inner.read(buf)?
        };
        self.count += 1;
        self.shared.reads.store(self.count, Relaxed);
        Ok(n)
    }
}

/// The writing half of a connection. Only whole frames or segments are written through
/// it ([`Write::write_all`] holds the stream for the whole buffer), so a keepalive never
/// lands inside one.
pub struct Out {
    shared: Arc<Shared>,
    count: u64,
    pace: Pace,
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let Out {
            shared,
            count,
            pace,
        } = self;
        let _w = Waiting::new(&shared.waiting);
        let mut out = lock(&shared.out);
        let out = out
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        let rate = shared.rate.load(Relaxed);
        while !buf.is_empty() {
            // rsync writes at most an eighth of a second's worth at a time when limited,
            // so the rate holds over short spans too.
            let most = if rate > 0 {
                (rate / 8).max(512) as usize
            } else {
                buf.len()
            };
            let n = match out.write(&buf[..buf.len().min(most)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *count += 1;
            shared.writes.store(*count, Relaxed);
            if rate > 0 {
                pace.wrote(n as u64, rate);
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match lock(&self.shared.out).as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _w = Waiting::new(&self.shared.waiting);
        lock(&self.shared.out).take();
    }
}

/// rsync's `sleep_for_bwlimit`: bytes written and not yet paid for in time are a debt;
/// once it is worth a tenth of a second, the writer sleeps it off. Time spent not writing
/// pays the debt down but builds no credit, so an idle spell is not followed by a burst.
#[derive(Default)]
struct Pace {
    /// Bytes not yet covered by elapsed time (negative: a sleep overshot).
    debt: f64,
    prior: Option<Instant>,
}

impl Pace {
    fn wrote(&mut self, n: u64, rate: u64) {
        let rate = rate as f64;
        let start = Instant::now();
        self.debt += n as f64;
        if let Some(prior) = self.prior {
            self.debt = (self.debt - start.duration_since(prior).as_secs_f64() * rate).max(0.0);
        }
        let sleep = self.debt / rate;
        if sleep < 0.1 {
            self.prior = Some(start);
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(sleep));
        let end = Instant::now();
        self.debt = (sleep - end.duration_since(start).as_secs_f64()) * rate;
        self.prior = Some(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_writer_takes_at_least_size_over_rate() {
        let link = Wire::new();
        link.set_bwlimit(Some(1024));
        let mut out = link.writer(io::sink());
        let start = Instant::now();
        for _ in 0..8 {
            out.write_all(&[0; 64 * 1024]).unwrap();
        }
        // 512 KiB at 1 MiB/s: half a second, less the last tenth rsync's pacing leaves.
        assert!(
            start.elapsed() >= Duration::from_millis(380),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn dropping_the_writer_closes_the_stream_for_the_keepalives_too() {
        let link = Wire::new();
        let out = link.writer(io::sink());
        assert!(lock(&link.0.out).is_some());
        drop(out);
        assert!(lock(&link.0.out).is_none());
    }
}
