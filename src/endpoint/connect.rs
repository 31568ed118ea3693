//! `xsync --xsync-connect FAMILY TIMEOUT ATTEMPTS KEEPALIVE HOST PORT`: the `ProxyCommand`
//! [`super::sshopts`] gives ssh. It connects to HOST PORT as ssh itself would (each address
//! of the name in turn, of FAMILY `any`, `inet` or `inet6`, within TIMEOUT seconds or
//! none, ATTEMPTS times a second apart), turns Nagle's algorithm off and SO_KEEPALIVE on
//! as `TCPKeepAlive` says, and hands the socket to ssh over its stdout (`ProxyUseFdpass`),
//! then exits: ssh speaks over the socket itself. A failure is reported in ssh's words,
//! with ssh's exit code 255. A child of it stays while ssh lives (at most
//! [`PROMPT_LIMIT`]) to keep this end's acknowledgements prompt: see [`ack_promptly`].

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
use std::ffi::OsString;
use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// The first argument that selects this mode.
pub const FLAG: &str = "--xsync-connect";

/// Runs the mode on the arguments after [`FLAG`]; returns the process's exit status.
pub fn run(args: &[OsString]) -> i32 {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let [family, timeout, attempts, keepalive, host, port] = &args[..] else {
        let _ = writeln!(
            std::io::stderr(),
            "xsync: {FLAG} FAMILY TIMEOUT ATTEMPTS KEEPALIVE HOST PORT"
        );
        return 255;
    };
    let how = Dial {
        family: match family.as_str() {
            "inet" => Some(false),
            "inet6" => Some(true),
            _ => None,
        },
        timeout: timeout.parse().ok().map(Duration::from_secs),
        attempts: attempts.parse().unwrap_or(1u32).max(1),
        keepalive: keepalive == "yes",
    };
    let Ok(port) = port.parse::<u16>() else {
        let _ = writeln!(std::io::stderr(), "ssh: bad port `{port}`");
        return 255;
    };
    let stream = match how.connect(host, port) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "ssh: connect to host {host} port {port}: {}",
                bare(&e)
            );
            return 255;
        }
    };
    match pass(std::io::stdout().as_fd(), stream.as_fd()) {
        Ok(()) => {
            ack_promptly(&stream);
            0
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "xsync: cannot hand the connection to ssh: {}",
                bare(&e)
            );
            255
        }
    }
}

/// The OS error's own words, as ssh prints them ("Connection refused").
fn bare(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// How ssh would have connected.
struct Dial {
    /// Only IPv6 (true) or only IPv4 (false) addresses; None: any.
    family: Option<bool>,
    timeout: Option<Duration>,
    attempts: u32,
    keepalive: bool,
}

impl Dial {
    /// The first address of `host` that accepts, tried in the resolver's order, with
    /// Nagle off.
    fn connect(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let mut last =
            std::io::Error::new(std::io::ErrorKind::NotFound, "Name or service not known");
        for attempt in 0..self.attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
                Ok(a) => a
                    .filter(|a| self.family.is_none_or(|v6| a.is_ipv6() == v6))
                    .collect(),
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            for addr in addrs {
                let res = match self.timeout {
                    Some(t) => TcpStream::connect_timeout(&addr, t),
                    None => TcpStream::connect(addr),
                };
                match res {
                    Ok(s) => {
                        s.set_nodelay(true)?;
                        rustix::net::sockopt::set_socket_keepalive(&s, self.keepalive)?;
                        return Ok(s);
                    }
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }
}

/// How long at most [`ack_promptly`]'s child stays: longer than any login.
const PROMPT_LIMIT: Duration = Duration::from_secs(10);

/// Keeps this end's acknowledgements prompt while ssh lives, from a forked child (ssh
/// waits for its `ProxyCommand` to exit before it speaks, so this process cannot stay).
///
/// sshd leaves Nagle's algorithm on during the login, so a small write it makes while an
/// earlier one is unacknowledged waits for this end's ACK; and Linux delays that ACK (40
/// ms) once the exchange looks interactive, which a login's questions and answers do.
/// tcpdump of a push on loopback showed such a stall in every login, and the no-op push of
/// a tiny tree went from 272 to 229 ms (median of 6) without it. `TCP_QUICKACK` leaves the
/// delaying mode, and sends an ACK that is waiting, but does not stay set; so the child
/// sets it again every millisecond on its copy of the socket (one socket, whichever
/// descriptor), until ssh exits or [`PROMPT_LIMIT`] passes. Where no pidfd or fork is to
/// be had, only the speed-up is lost.
fn ack_promptly(stream: &TcpStream) {
    // ssh ran this helper (its shell's `exec`): the parent is ssh.
    let Some(ssh) = rustix::process::getppid() else {
        return;
    };
    let Ok(ssh) = rustix::process::pidfd_open(ssh, rustix::process::PidfdFlags::empty()) else {
        return;
    };
    // SAFETY: the child only makes system calls (no allocation, no lock another thread
    // of this process could hold) and leaves with _exit.
    if unsafe { libc::fork() } == 0 {
        // Nothing of ssh's held open (its stderr would keep a reader of it waiting), and
        // the signals' defaults back (this binary's handler thread is not in the child).
        if let Ok(null) = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        ) {
            for fd in 0..3 {
                // SAFETY: replacing the standard descriptors, which nothing here uses.
                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) };
            }
        }
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: restoring a default disposition.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        let _ = keep_acks_prompt(stream.as_fd(), ssh.as_fd(), PROMPT_LIMIT);
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }
}

/// Why [`keep_acks_prompt`] stopped.
#[derive(Debug, PartialEq)]
enum Stopped {
    /// The watched process exited.
    Exited,
    /// Its limit passed.
    Limit,
    /// The socket or the pidfd failed (a closed connection, say).
    Failed,
}

/// Sets `TCP_QUICKACK` on `sock` every millisecond until `watched` (a pidfd) is readable,
/// i.e. its process has exited, or `limit` has passed.
fn keep_acks_prompt(sock: BorrowedFd<'_>, watched: BorrowedFd<'_>, limit: Duration) -> Stopped {
    let end = Instant::now() + limit;
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    while Instant::now() < end {
        if rustix::net::sockopt::set_tcp_quickack(sock, true).is_err() {
            return Stopped::Failed;
        }
        let mut fds = [PollFd::new(&watched, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) if fds[0].revents().contains(PollFlags::IN) => return Stopped::Exited,
            _ => return Stopped::Failed,
        }
    }
    Stopped::Limit
}

/// Sends `fd` over the unix socket `to` (SCM_RIGHTS, with the one byte ssh reads).
fn pass(to: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("no room for the descriptor"));
    }
    sendmsg(to, &[IoSlice::new(&[0])], &mut control, SendFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_socket_handed_over_is_connected_with_nagle_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let how = Dial {
            family: Some(false),
            timeout: Some(Duration::from_secs(5)),
            attempts: 1,
            keepalive: true,
        };
        let stream = how.connect("localhost", port).unwrap();
        assert!(stream.nodelay().unwrap());
        assert!(rustix::net::sockopt::socket_keepalive(&stream).unwrap());
        let (ours, theirs) = UnixStream::pair().unwrap();
        pass(ours.as_fd(), stream.as_fd()).unwrap();
        drop(stream);
        // What ssh gets is the same connection: the listener's peer is at its other end.
        let mut buf = [0u8; 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &theirs,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            rustix::net::RecvFlags::empty(),
        )
        .unwrap();
        let got = control
            .drain()
            .find_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .expect("a descriptor");
        let mut received = TcpStream::from(got);
        let (mut accepted, _) = listener.accept().unwrap();
        received.write_all(b"SSH-2.0-test\r\n").unwrap();
        let mut line = [0u8; 14];
        std::io::Read::read_exact(&mut accepted, &mut line).unwrap();
        assert_eq!(&line, b"SSH-2.0-test\r\n");
        assert!(received.nodelay().unwrap());
    }

    #[test]
    fn acknowledgements_are_kept_prompt_until_the_watched_process_exits() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _peer = listener.accept().unwrap();
        // Delaying, as a login leaves it; the loop turns that off again.
        rustix::net::sockopt::set_tcp_quickack(&stream, false).unwrap();
        assert!(!rustix::net::sockopt::tcp_quickack(&stream).unwrap());
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        let stopped = std::thread::scope(|s| {
            let prompt = s.spawn(|| {
                keep_acks_prompt(stream.as_fd(), pidfd.as_fd(), Duration::from_secs(600))
            });
            // (The child sleeps on until the socket has been seen prompt again.)
            while !rustix::net::sockopt::tcp_quickack(&stream).unwrap() {
                std::thread::yield_now();
            }
            child.wait().unwrap();
            prompt.join().unwrap()
        });
        assert_eq!(stopped, Stopped::Exited);
        // With nothing that exits (a pipe's writing end is never readable): its limit.
        let (_r, w) = rustix::pipe::pipe().unwrap();
        let stopped = keep_acks_prompt(stream.as_fd(), w.as_fd(), Duration::from_millis(20));
        assert_eq!(stopped, Stopped::Limit);
    }

    #[test]
    fn a_refused_connection_is_an_error_after_every_attempt() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let how = Dial {
            family: None,
            timeout: None,
            attempts: 1,
            keepalive: false,
        };
        let e = how.connect("127.0.0.1", port).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        // An IPv4 address asked for as IPv6 only has no address to try.
        let v6 = Dial {
            family: Some(true),
            ..how
        };
        assert!(v6.connect("127.0.0.1", port).is_err());
    }
}
