//! A scripted, test-only peer that speaks the xsync protocol with the library's own types,
//! wrongly on purpose when a test says so.
//!
//! * As a server: [`HostileServer::start`] listens on a Unix socket in the test directory and
//!   writes a remote-shell script (`rsh()`, for `-e`) that ignores its arguments and bridges
//!   the client's stdin/stdout to that socket (python3). The test's script runs on a thread
//!   with a [`Peer`]; [`HostileServer::finish`] returns what it returned.
//! * As a client: [`Peer::spawn_server`] starts `xsync --server` with piped stdin/stdout.
//!
//! Every message the peer sends first passes [`Peer::before_send`]'s hook, so a test can
//! pause (or act on the file system) at a chosen point of the exchange.
#![allow(dead_code)] // (a harness: not every test uses every step)

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use xsync::error::Error;
use xsync::protocol::{Msg, Reader, Role, SourceInfo, WireEntry, WireMeta, Writer};
use xsync::tree::Kind;

pub type Hook = Box<dyn FnMut(&Msg) + Send>;

/// One end of a connection, driven by a test.
pub struct Peer {
    pub rd: Reader<Box<dyn Read + Send>>,
    pub wr: Writer<Box<dyn Write + Send>>,
    hook: Option<Hook>,
}

impl Peer {
    pub fn new(rd: Box<dyn Read + Send>, wr: Box<dyn Write + Send>) -> Peer {
        Peer {
            rd: Reader::new(rd),
            wr: Writer::new(wr),
            hook: None,
        }
    }

    /// Runs `hook` before each message this peer sends (e.g. to stall before `Listing`).
    pub fn before_send(&mut self, hook: impl FnMut(&Msg) + Send + 'static) {
        self.hook = Some(Box::new(hook));
    }

    /// Sends and flushes one message.
    pub fn send(&mut self, msg: Msg) -> Result<(), Error> {
        if let Some(h) = self.hook.as_mut() {
            h(&msg);
        }
        self.wr.send(&msg)?;
        self.wr.flush()
    }

    pub fn recv(&mut self) -> Result<Msg, Error> {
        self.rd.recv()
    }

    /// Server side of the opening: the client's magic, `Hello` and `Start` in, this end's
    /// greeting out. Returns the `Start` message.
    pub fn accept(&mut self) -> Result<Msg, Error> {
        xsync::protocol::handshake(&mut self.rd, &mut self.wr)?;
        let start = self.recv()?;
        if let Msg::Start { args, .. } = &start {
            let words: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            self.settle(&words)?;
        }
        Ok(start)
    }

    /// The stream's form after `Start`, as both real ends fix it from the option words
    /// (segments, unless `--no-compress`); an extra stream takes it after its `Join`.
    pub fn settle(&mut self, args: &[&[u8]]) -> Result<(), Error> {
        use std::os::unix::ffi::OsStrExt;
        let mut argv = vec![std::ffi::OsString::from("xsync")];
        argv.extend(
            args.iter()
                .map(|a| std::ffi::OsStr::from_bytes(a).to_owned()),
        );
        // Words the server would refuse: left to the test (the real server says so).
        let Ok(opts) = xsync::cli::server_options(argv) else {
            return Ok(());
        };
        let plan = xsync::compress::Plan::of(&opts);
        if plan.segmented() {
            self.wr.enable_compression(plan)?;
            self.rd.enable_compression()?;
        }
        Ok(())
    }

    /// Client side of the opening: greeting and `Start` out, the server's greeting checked.
    pub fn open(&mut self, role: Role, args: &[&str], paths: &[&[u8]]) -> Result<(), Error> {
        xsync::protocol::greet(&mut self.wr)?;
        self.rd.expect_greeting();
        self.send(Msg::Start {
            role,
            args: args
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.as_bytes().to_vec()))
                .collect(),
            paths: paths
                .iter()
                .map(|p| serde_bytes::ByteBuf::from(p.to_vec()))
                .collect(),
            filters: Vec::new(),
            files: Vec::new(),
        })?;
        let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.settle(&words)
    }

    /// Sender's opening: `Sources { info }` then `SourceRoot` with `root`, announcing 1,000
    /// entries (more than any listing here holds: the receiver holds listings to it).
    pub fn send_sources(&mut self, info: SourceInfo, root: WireEntry) -> Result<(), Error> {
        self.send_sources_announcing(info, root, 1000)
    }

    /// Sender's opening for `host:src/`: the root is a transfer directory.
    pub fn send_dir_sources(&mut self) -> Result<(), Error> {
        self.send_dir_sources_announcing(1000)
    }

    /// As [`Peer::send_dir_sources`], announcing `entries` entries in the tree.
    pub fn send_dir_sources_announcing(&mut self, entries: u64) -> Result<(), Error> {
        let info = SourceInfo {
            root_is_transfer_dir: true,
            ..Default::default()
        };
        self.send_sources_announcing(info, wire(b".", Kind::Dir, 0), entries)
    }

    /// As [`Peer::send_sources`], announcing `entries` entries in the tree.
    pub fn send_sources_announcing(
        &mut self,
        info: SourceInfo,
        root: WireEntry,
        entries: u64,
    ) -> Result<(), Error> {
        self.send(Msg::Sources { info })?;
        let mut counts = [0; 7];
        counts[0] = entries;
        self.send(Msg::SourceRoot {
            io_error: false,
            names: Default::default(),
            root,
            counts: Box::new(counts),
        })
    }

    /// Answers each `List` with the next of `listings` (one `Vec<WireEntry>` per listed
    /// directory, `same` empty: the receiver's children are all "changed"), each `Get` with
    /// whole content from `content(path)`, and `Finish` with `Done`. Returns the receiver's
    /// exit code, or the first message it did not expect as an error string.
    pub fn serve(
        &mut self,
        listings: Vec<Vec<WireEntry>>,
        content: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Result<i32, String> {
        self.serve_by(listings, |p, req| {
            let (id, path) = match req {
                xsync::protocol::Request::Whole { id, path } => (*id, path),
                xsync::protocol::Request::Delta { id, path, .. } => (*id, path),
                xsync::protocol::Request::Append { id, path, .. } => (*id, path),
            };
            let data = content(path);
            let end = Some(xsync::protocol::data_digest(&data));
            p.send(Msg::Data { id, data, end })
        })
    }

    /// As [`Peer::serve`], but each requested file is answered by `answer` (which may say
    /// anything, or close the connection by returning an error).
    pub fn serve_by(
        &mut self,
        mut listings: Vec<Vec<WireEntry>>,
        mut answer: impl FnMut(&mut Peer, &xsync::protocol::Request) -> Result<(), Error>,
    ) -> Result<i32, String> {
        listings.reverse();
        loop {
            match self.recv().map_err(|e| e.message().to_string())? {
                Msg::List { dirs } => {
                    let dirs = dirs
                        .iter()
                        .map(|d| xsync::protocol::DirListing {
                            same: serde_bytes::ByteBuf::from(vec![
                                0u8;
                                (d.have.len() / 8).div_ceil(8)
                            ]),
                            new: listings.pop().unwrap_or_default(),
                        })
                        .collect();
                    self.send(Msg::Listing { dirs })
                        .map_err(|e| e.message().to_string())?;
                }
                Msg::Get { files } => {
                    for f in &files {
                        answer(self, f).map_err(|e| e.message().to_string())?;
                    }
                }
                Msg::GetEnd | Msg::Planned { .. } | Msg::Log { .. } => {}
                Msg::Finish { code, .. } => {
                    self.send(Msg::Done {
                        code: 0,
                        counts: [0; 7],
                        scan_ms: 0,
                    })
                    .map_err(|e| e.message().to_string())?;
                    return Ok(code);
                }
                other => return Err(format!("unexpected {other:?}")),
            }
        }
    }

    /// Starts `xsync --server` with piped stdin/stdout; the test is its client.
    pub fn spawn_server() -> (Peer, Child) {
        Peer::spawn_server_under(&[])
    }

    /// As [`Peer::spawn_server`], with `XDG_RUNTIME_DIR` set to `runtime`, where the
    /// server makes the rendezvous of its extra streams (`--streams`).
    pub fn spawn_server_in(runtime: &Path) -> (Peer, Child) {
        Peer::spawn(&[], &["--server"], Some(runtime))
    }

    /// `xsync --server --join ID` under `XDG_RUNTIME_DIR=runtime`: an extra stream's
    /// process, whose stdin and stdout this peer drives once it has joined.
    pub fn spawn_joiner(runtime: &Path, id: &str) -> (Peer, Child) {
        Peer::spawn(&[], &["--server", "--join", id], Some(runtime))
    }

    /// As [`Peer::spawn_server`], run by `wrapper` (e.g. `/usr/bin/time -o F -f %M`).
    pub fn spawn_server_under(wrapper: &[&std::ffi::OsStr]) -> (Peer, Child) {
        Peer::spawn(wrapper, &["--server"], None)
    }

    fn spawn(
        wrapper: &[&std::ffi::OsStr],
        words: &[&str],
        runtime: Option<&Path>,
    ) -> (Peer, Child) {
        let xsync = std::ffi::OsStr::new(env!("CARGO_BIN_EXE_xsync"));
        let (program, args) = match wrapper.split_first() {
            Some((w, rest)) => (*w, [rest, &[xsync]].concat()),
            None => (xsync, Vec::new()),
        };
        let mut cmd = Command::new(program);
        if let Some(r) = runtime {
            cmd.env("XDG_RUNTIME_DIR", r);
        }
        let mut child = cmd
            .args(args)
            .args(words)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xsync --server");
        let out = child.stdout.take().expect("stdout");
        let inp = child.stdin.take().expect("stdin");
        (
            Peer::new(Box::new(BufReader::new(out)), Box::new(inp)),
            child,
        )
    }
}

/// A wire entry with plain metadata (mode 0644/0755, mtime 1,000,000,000): directories get
/// `digest` (anything not equal to the receiver's makes it list them).
pub fn wire(name: &[u8], kind: Kind, size: u64) -> WireEntry {
    WireEntry {
        name: name.to_vec(),
        meta: WireMeta {
            kind,
            mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
            size,
            mtime: 1_000_000_000,
            mtime_nsec: 0,
            atime: 0,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            rdev: 0,
        },
        target: (kind == Kind::Symlink)
            .then(|| serde_bytes::ByteBuf::from(b"/etc/passwd".to_vec())),
        hash: None,
        complete: true,
        link_leader: None,
        digest: (kind == Kind::Dir).then_some(0x1234_5678),
        xattrs: None,
        acls: None,
        implied: false,
    }
}

/// A hostile server reached through `-e <rsh>`; the script runs on its own thread.
pub struct HostileServer<T> {
    dir: PathBuf,
    thread: JoinHandle<T>,
}

impl<T: Send + 'static> HostileServer<T> {
    /// Listens in `dir` and runs `script` on the first connection.
    pub fn start(dir: &Path, script: impl FnOnce(&mut Peer) -> T + Send + 'static) -> Self {
        let sock = dir.join("peer.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).expect("bind peer socket");
        let rsh = dir.join("peer-rsh");
        crate::util::write_script(
            &rsh,
            &format!("#!/bin/sh\nexec python3 -c '{BRIDGE}' {}\n", sock.display()),
        );
        let thread = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            let r = s.try_clone().expect("clone socket");
            let mut peer = Peer::new(Box::new(BufReader::new(r)), Box::new(s));
            script(&mut peer)
        });
        HostileServer {
            dir: dir.to_path_buf(),
            thread,
        }
    }

    /// The `-e` value.
    pub fn rsh(&self) -> String {
        self.dir.join("peer-rsh").display().to_string()
    }

    /// The client's words that reach this server: `-e RSH --xsync-path ignored` (the
    /// remote shell ignores the command it is given).
    pub fn via(&self) -> [String; 4] {
        [
            "-e".into(),
            self.rsh(),
            "--xsync-path".into(),
            "ignored".into(),
        ]
    }

    /// What the script returned (after the client has exited).
    pub fn finish(self) -> T {
        self.thread.join().expect("peer script panicked")
    }
}

/// stdin → socket on a thread, socket → stdout here; ends when the socket closes.
const BRIDGE: &str = "import os,socket,sys,threading
s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1])
def up():
  while True:
    b=os.read(0,65536)
    if not b:
      s.shutdown(socket.SHUT_WR);return
    s.sendall(b)
threading.Thread(target=up,daemon=True).start()
o=sys.stdout.buffer
while True:
  b=s.recv(65536)
  if not b: break
  o.write(b);o.flush()
";
