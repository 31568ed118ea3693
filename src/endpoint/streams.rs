//! Several streams through one login (`--streams`): the channels the data of new files
//! spreads over on a long link (`transfer::spread`).
//!
//! One ssh channel carries at most its window (about 2 MB) per round trip, so at 100 ms a
//! stream tops out near 20 MB/s whatever the link. When the remote shell is ssh, the
//! client starts it as an OpenSSH master (`ControlMaster=auto`, its socket in a private
//! directory the client removes at the end, `ControlPersist=no`), and each extra stream is
//! one more channel of that connection: `ssh -S DIR/cm -o ControlMaster=no HOST 'xsync
//! --server --join ID'`, no second login. Any other remote shell, or an ssh whose master
//! did not come up, keeps one stream (another login per stream would cost what it saves).
//!
//! The extra channels start processes of their own on the server, and the session lives
//! in the first one. A joining process ([`join`]) only hands its stdin and stdout to the
//! first server over a unix socket (SCM_RIGHTS) and waits for it to finish; the socket is
//! in a directory of its own under `$XDG_RUNTIME_DIR` (else `/tmp`), made 0700 by the
//! first server and removed once the streams are in; the joiner connects only to a
//! directory of its own user with no access for others. Its name comes from the secret
//! token of the receiver's `Lanes` message (a hash of it), and every stream must then
//! prove itself with the token itself (`Join`) before it is used; the server also checks
//! the socket peer's user. So every stream lives in the two processes that hold the
//! session, and everything read on it is validated as on the first stream.

use crate::exit::ExitCode;
use crate::protocol::{MAX_LANES, Msg, Reader, Writer};
use crate::transfer::{Lane, Lanes};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One ssh channel's window, about what a stream carries per round trip.
const WINDOW: f64 = 2.0 * 1024.0 * 1024.0;
/// Below this round trip one stream is as fast as the machine (loopback, a LAN).
const SHORT_RTT: Duration = Duration::from_millis(5);
/// How long the streams of one `Lanes` may take to arrive.
const JOIN_WAIT: Duration = Duration::from_secs(20);

/// This end's means of opening more streams.
pub struct Streams {
    kind: Kind,
    /// `--streams` (None: decided by the link).
    asked: Option<u32>,
    /// `-z`'s level, for the extra streams as for the first.
    compress: Option<crate::compress::Plan>,
    /// The shortest round trip the receiver saw (a listing request and its answer).
    rtt: Mutex<Option<Duration>>,
    /// `-vv` tells how many streams carried the files.
    verbose: u8,
    /// Bytes the extra streams sent and received, for the summary line.
    bytes: Mutex<(u64, u64)>,
    /// Streams are opened once a session: a peer that asks again gets none.
    opened: AtomicBool,
}

enum Kind {
    /// One stream only.
    Off,
    Client(Client),
    /// The server: streams join through a rendezvous socket.
    Server {
        /// The joiners' sockets: each joiner waits on its own until this process ends.
        held: Mutex<Vec<UnixStream>>,
        /// The rendezvous directories made, removed when the session ends (a late joiner
        /// finds one without its socket, and leaves).
        dirs: Mutex<Vec<PathBuf>>,
    },
}

/// The client's ssh master and the channels it opened.
struct Client {
    /// The private directory of the master's socket.
    dir: PathBuf,
    /// The remote shell's program and its words before the host.
    program: OsString,
    words: Vec<OsString>,
    host: OsString,
    /// The remote command of the session, which the joiners' is made from.
    remote: String,
    children: Mutex<Vec<Child>>,
}

impl Streams {
    /// One stream only.
    pub fn off() -> Streams {
        Streams {
            kind: Kind::Off,
            asked: Some(1),
            compress: None,
            rtt: Mutex::new(None),
            verbose: 0,
            bytes: Mutex::new((0, 0)),
            opened: AtomicBool::new(false),
        }
    }

    /// The main stream's compression plan, for each extra stream too (both ends derive it
    /// from the same option words).
    fn compress_of(opts: &crate::config::Options) -> Option<crate::compress::Plan> {
        Some(crate::compress::Plan::of(opts)).filter(|p| p.segmented())
    }

    /// The server's: streams join through the rendezvous, unless the client said it
    /// cannot open any (`--streams=1`).
    pub fn server(opts: &crate::config::Options) -> Streams {
        if !may_spread(opts) {
            return Streams::off();
        }
        Streams {
            kind: Kind::Server {
                held: Mutex::new(Vec::new()),
                dirs: Mutex::new(Vec::new()),
            },
            asked: opts.streams,
            compress: Self::compress_of(opts),
            rtt: Mutex::new(None),
            verbose: opts.verbose,
            bytes: Mutex::new((0, 0)),
            opened: AtomicBool::new(false),
        }
    }

    /// The client's: when `cmd` runs ssh and more than one stream may be used, makes it
    /// the master of a connection whose socket is in a private directory, and returns the
    /// command to spawn with the streams that will open channels through it. Otherwise
    /// the command as it was, and one stream.
    pub fn client(cmd: Command, opts: &crate::config::Options, remote: &str) -> (Command, Streams) {
        let program = cmd.get_program().to_os_string();
        let is_ssh = Path::new(&program).file_name() == Some("ssh".as_ref());
        let args: Vec<OsString> = cmd.get_args().map(|a| a.to_os_string()).collect();
        if !is_ssh || !may_spread(opts) || args.len() < 2 {
            return (cmd, Streams::off());
        }
        let Ok(dir) = private_dir() else {
            return (cmd, Streams::off());
        };
        let (words, tail) = args.split_at(args.len() - 2);
        let mut master = Command::new(&program);
        master
            .args(words)
            .arg("-o")
            .arg("ControlMaster=auto")
            .arg("-o")
            .arg(format!("ControlPath={}", dir.join("cm").display()))
            .arg("-o")
            .arg("ControlPersist=no")
            .args(tail)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let streams = Streams {
            kind: Kind::Client(Client {
                dir,
                program,
                words: words.to_vec(),
                host: tail[0].clone(),
                remote: remote.to_string(),
                children: Mutex::new(Vec::new()),
            }),
            asked: opts.streams,
            compress: Self::compress_of(opts),
            rtt: Mutex::new(None),
            verbose: opts.verbose,
            bytes: Mutex::new((0, 0)),
            opened: AtomicBool::new(false),
        };
        (master, streams)
    }

    /// Whether this end can open more streams at all.
    pub fn enabled(&self) -> bool {
        !matches!(self.kind, Kind::Off)
    }

    /// What the extra streams sent and received.
    pub fn bytes(&self) -> (u64, u64) {
        *self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client, after the session: waits for the channels it opened (they end with
    /// the server, which has finished) and ends any that does not.
    pub fn finish(&self) {
        if let Kind::Client(c) = &self.kind {
            let children =
                std::mem::take(&mut *c.children.lock().unwrap_or_else(|p| p.into_inner()));
            let deadline = Instant::now() + Duration::from_secs(5);
            for mut child in children {
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                    }
                }
            }
        }
    }

    fn settle(&self, mut lane: Lane) -> Option<Lane> {
        if let Some(plan) = self.compress {
            lane.wr.enable_compression(plan.lane()).ok()?;
            lane.rd.enable_compression().ok()?;
        }
        Some(lane)
    }

    /// Client: one more channel through the master, proved with `token`.
    fn spawn_lane(&self, c: &Client, token: &[u8; 32]) -> Option<Lane> {
        let mut cmd = Command::new(&c.program);
        cmd.args(&c.words)
            .arg("-S")
            .arg(c.dir.join("cm"))
            .arg("-o")
            .arg("ControlMaster=no")
            .arg("-o")
            .arg("BatchMode=yes")
            .arg(&c.host)
            .arg(join_command(&c.remote, &lane_id(token)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().ok()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        c.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        let mut lane = lane_over(OwnedFd::from(stdout), OwnedFd::from(stdin));
        lane.wr.send(&Msg::Join { token: *token }).ok()?;
        lane.wr.flush().ok()?;
        self.settle(lane)
    }

    /// Server: takes the streams that join for `token` until `count` have, `stop` is
    /// set, or [`JOIN_WAIT`] has passed.
    fn accept(
        &self,
        (held, dirs): (&Mutex<Vec<UnixStream>>, &Mutex<Vec<PathBuf>>),
        count: u32,
        token: &[u8; 32],
        each: &mut dyn FnMut(Lane),
        stop: &AtomicBool,
    ) {
        let Ok(rdv) = Rendezvous::make(&lane_id(token)) else {
            return;
        };
        dirs.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rdv.dir.clone());
        let deadline = Instant::now() + JOIN_WAIT;
        let mut joined = 0;
        while joined < count && Instant::now() < deadline && !stop.load(Ordering::Acquire) {
            match rdv.listener.accept() {
                Ok((sock, _)) => {
                    if let Some(lane) = take_lane(&sock, token).and_then(|l| self.settle(l)) {
                        held.lock().unwrap_or_else(|p| p.into_inner()).push(sock);
                        each(lane);
                        joined += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return,
            }
        }
    }
}

impl Lanes for Streams {
    fn wanted(&self, bytes: u64, files: usize) -> u32 {
        if !self.enabled() || files == 0 {
            return 0;
        }
        if let Some(n) = self.asked {
            return n.saturating_sub(1).min(MAX_LANES);
        }
        let Some(rtt) = *self.rtt.lock().unwrap_or_else(|p| p.into_inner()) else {
            return 0;
        };
        if rtt < SHORT_RTT {
            return 0;
        }
        // Seconds one stream would take at its window per round trip; a stream more for
        // each, up to eight in all (opening them costs about two round trips). A stream
        // per half second measured worse on the 30,000 small files (BENCHMARKS.md): each
        // costs CPU on a machine that has none to spare.
        let one = bytes as f64 / WINDOW * rtt.as_secs_f64();
        if one < 1.0 {
            return 0;
        }
        (one as u32).clamp(1, 7)
    }

    fn note_rtt(&self, d: Duration) {
        let mut r = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none_or(|old| d < old) {
            *r = Some(d);
        }
    }

    fn lane_done(&self, sent: u64, received: u64) {
        let mut b = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        b.0 += sent;
        b.1 += received;
    }

    fn spread_over(&self, streams: usize) {
        if self.verbose > 1 {
            eprintln!("xsync: new files spread over {streams} streams");
        }
    }

    fn token(&self) -> std::io::Result<[u8; 32]> {
        use std::io::Read;
        let mut t = [0u8; 32];
        File::open("/dev/urandom")?.read_exact(&mut t)?;
        Ok(t)
    }

    fn open(&self, count: u32, token: [u8; 32], each: &mut dyn FnMut(Lane), stop: &AtomicBool) {
        let count = count.min(MAX_LANES);
        if self.opened.swap(true, Ordering::AcqRel) {
            return;
        }
        match &self.kind {
            Kind::Off => {}
            Kind::Client(c) => {
                // Only through a master that is up: never a second login.
                let up = std::fs::symlink_metadata(c.dir.join("cm"))
                    .is_ok_and(|m| m.file_type().is_socket());
                if !up {
                    return;
                }
                for _ in 0..count {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    match self.spawn_lane(c, &token) {
                        Some(lane) => each(lane),
                        None => return,
                    }
                }
            }
            Kind::Server { held, dirs } => self.accept((held, dirs), count, &token, each, stop),
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Client(c) => {
                self.finish();
                let _ = std::fs::remove_dir_all(&c.dir);
            }
            Kind::Server { dirs, .. } => {
                for d in dirs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    let _ = std::fs::remove_dir(d);
                }
            }
            Kind::Off => {}
        }
    }
}

/// What rules out more than one stream: `--streams=1`, and the options whose meaning is
/// one stream's (a rate, a timeout on the connection, rewriting the file in place).
fn may_spread(opts: &crate::config::Options) -> bool {
    opts.streams != Some(1) && opts.bwlimit.is_none() && opts.timeout.is_none() && !opts.inplace
}

/// A private directory for the master's socket (its path must fit a socket's 108 bytes).
fn private_dir() -> std::io::Result<PathBuf> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > 60 {
        base = PathBuf::from("/tmp");
    }
    let mut t = [0u8; 8];
    use std::io::Read;
    File::open("/dev/urandom")?.read_exact(&mut t)?;
    let dir = base.join(format!(
        "xsync-cm-{}-{}",
        std::process::id(),
        u64::from_le_bytes(t)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// The rendezvous name for `token`: a hash of it, so the name (which may show in a
/// process list) does not give the token away.
fn lane_id(token: &[u8; 32]) -> String {
    let h = blake3::hash(token);
    h.as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The joiner's remote command, made from the session's: the same program, found the
/// same way (a plain `xsync --server`, or the install-aware one-liner's `--server;`).
fn join_command(remote: &str, id: &str) -> String {
    if remote.ends_with("--server") {
        format!("{remote} --join {id}")
    } else {
        remote.replace("--server;", &format!("--server --join {id};"))
    }
}

fn rendezvous_dir(id: &str) -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join(format!("xsync-lanes-{id}"))
}

/// The first server's listening socket, in a 0700 directory of its own; both go when
/// the streams are in.
struct Rendezvous {
    dir: PathBuf,
    listener: UnixListener,
}

impl Rendezvous {
    /// The directory is made under a temporary name with its socket in it, then renamed:
    /// a joiner that finds the directory without a socket knows the session has taken
    /// all the streams it wanted.
    fn make(id: &str) -> std::io::Result<Rendezvous> {
        let dir = rendezvous_dir(id);
        let mut tmp = dir.clone().into_os_string();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        // Fails if anything has the name already: never a directory someone else made.
        std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
        let made = UnixListener::bind(tmp.join("s")).and_then(|l| {
            l.set_nonblocking(true)?;
            if std::fs::symlink_metadata(&dir).is_ok() {
                return Err(std::io::ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(&tmp, &dir)?;
            Ok(l)
        });
        match made {
            Ok(listener) => Ok(Rendezvous { dir, listener }),
            Err(e) => {
                let _ = std::fs::remove_file(tmp.join("s"));
                let _ = std::fs::remove_dir(&tmp);
                Err(e)
            }
        }
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("s"));
    }
}

fn widen(fd: &OwnedFd) {
    let _ = rustix::pipe::fcntl_setpipe_size(fd, 1 << 20);
}

fn lane_over(input: OwnedFd, output: OwnedFd) -> Lane {
    widen(&input);
    widen(&output);
    Lane {
        rd: Reader::new(Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            File::from(input),
        ))),
        wr: Writer::new(Box::new(File::from(output))),
    }
}

/// Server: the stdin and stdout a joiner passed over `sock`, once the peer is this
/// user and the stream's first frame carries `token`.
fn take_lane(sock: &UnixStream, token: &[u8; 32]) -> Option<Lane> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let cred = rustix::net::sockopt::socket_peercred(sock).ok()?;
    if cred.uid != rustix::process::getuid() {
        return None;
    }
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .ok()?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(got) = m {
            fds.extend(got);
        }
    }
    if fds.len() != 2 {
        return None;
    }
    let output = fds.pop()?;
    let input = fds.pop()?;
    let mut lane = lane_over(input, output);
    match lane.rd.recv() {
        Ok(Msg::Join { token: t }) if t == *token => Some(lane),
        _ => None,
    }
}

/// `xsync --server --join ID`: hands this process's stdin and stdout to the first server
/// of the session through its rendezvous, then waits for that server to end.
pub fn join(id: &str) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("xsync: --join: {msg}");
        ExitCode::Ipc
    };
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return fail("bad stream id".into());
    }
    let dir = rendezvous_dir(id);
    let me = rustix::process::getuid().as_raw();
    let deadline = Instant::now() + JOIN_WAIT;
    let sock = loop {
        // Only a directory of this user that nobody else may enter.
        let ours = std::fs::symlink_metadata(&dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o077 == 0);
        if ours {
            match UnixStream::connect(dir.join("s")) {
                Ok(s) => break s,
                // The session has all the streams it wanted, or is over: nothing to do.
                Err(_) => return ExitCode::Ok,
            }
        }
        if Instant::now() >= deadline {
            return fail(format!("no session to join at `{}`", dir.display()));
        }
        if client_gone() {
            return ExitCode::Ok;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    let fds = [stdin.as_fd(), stdout.as_fd()];
    let sent = {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        use std::mem::MaybeUninit;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &sock,
            &[std::io::IoSlice::new(b"j")],
            &mut control,
            SendFlags::empty(),
        )
    };
    if let Err(e) = sent {
        return fail(format!("cannot hand over the stream: {e}"));
    }
    // The session's server holds the stream now; this process keeps the channel open
    // (ssh stops feeding a channel whose process has exited) until that server ends.
    let mut b = [0u8; 1];
    let _ = std::io::Read::read(&mut &sock, &mut b);
    ExitCode::Ok
}

/// Whether the client closed this channel (stdin hung up) while the joiner waited.
fn client_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).is_ok_and(|n| {
        n > 0
            && fds[0]
                .revents()
                .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_joiner_runs_the_sessions_program() {
        assert_eq!(
            join_command("xsync --server", "ab"),
            "xsync --server --join ab"
        );
        assert_eq!(
            join_command(
                "sh -c 'exec \"$f\" --server; exec xsync --server; exit 127'",
                "ab"
            ),
            "sh -c 'exec \"$f\" --server --join ab; exec xsync --server --join ab; exit 127'"
        );
    }

    #[test]
    fn the_rendezvous_name_does_not_show_the_token() {
        let t = [7u8; 32];
        let id = lane_id(&t);
        assert_eq!(id.len(), 32);
        assert!(!id.contains("0707"));
    }
}
