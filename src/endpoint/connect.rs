//! `xsync --xsync-connect FAMILY TIMEOUT ATTEMPTS KEEPALIVE HOST PORT`: the `ProxyCommand`
//! [`super::sshopts`] gives ssh. It connects to HOST PORT as ssh itself would (each address
//! of the name in turn, of FAMILY `any`, `inet` or `inet6`, within TIMEOUT seconds or
//! none, ATTEMPTS times a second apart), turns Nagle's algorithm off and SO_KEEPALIVE on
//! as `TCPKeepAlive` says, and hands the socket to ssh over its stdout (`ProxyUseFdpass`),
//! then exits: ssh speaks over the socket itself. A failure is reported in ssh's words,
//! with ssh's exit code 255.

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
use std::ffi::OsString;
use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

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
        Ok(()) => 0,
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
