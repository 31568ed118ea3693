//! The extra streams of `--streams` against a hostile peer: `Lanes`, `Join` and `GetRange`
//! said wrongly on purpose, to `xsync --server` as a sender (a pull: the test is the
//! receiving client) and as a receiver (a push: the test is the sending client), with the
//! test's own joiners (`xsync --server --join ID`) carrying the streams. Each attack ends
//! in a clear error with rsync's exit code, or costs only the stream it came on; nothing
//! outside the tree changes, no temporary is left, and no end waits for ever (every wait
//! here has a deadline, and a server that outlives one is killed and the test fails).

use crate::peer::{Peer, wire};
use crate::util::{diff_snapshots, find_named, pseudo_random, snapshot, test_dir};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};
use xsync::protocol::{MAX_LANES, Msg, Request, Role, data_digest};
use xsync::tree::Kind;

/// The size of the sender's file `f`: a few chunks.
const F_LEN: usize = 700_000;

/// Waits for `child` at most `secs` seconds; one that is still running is killed and the
/// test fails (`what` says which wait it was).
fn wait_within(child: &mut Child, secs: u64, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills `pid` after `secs` seconds unless dropped first: a read from a server that hangs
/// then ends (and the test's assertions fail) instead of blocking the test run.
struct Watchdog {
    _stop: std::sync::mpsc::Sender<()>,
}

fn watchdog(pid: u32, secs: u64) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_secs(secs))
            && let Some(p) = rustix::process::Pid::from_raw(pid as i32)
        {
            eprintln!("watchdog: killing {pid} after {secs} s");
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    });
    Watchdog { _stop: tx }
}

/// A private runtime directory for the server's rendezvous (`XDG_RUNTIME_DIR`).
fn runtime_in(dir: &Path) -> PathBuf {
    let r = dir.join("run");
    std::fs::create_dir(&r).expect("mkdir run");
    std::fs::set_permissions(&r, std::fs::Permissions::from_mode(0o700)).expect("chmod run");
    r
}

/// The stream ids of the rendezvous the server has open in `runtime` now.
fn rendezvous_ids(runtime: &Path) -> Vec<String> {
    std::fs::read_dir(runtime)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("xsync-lanes-")?.to_string();
            (!id.ends_with(".new")).then_some(id)
        })
        .collect()
}

/// The id of the rendezvous the server makes in `runtime` for a `Lanes`, within 10 s.
fn rendezvous_id(runtime: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(id) = rendezvous_ids(runtime).pop() {
            return id;
        }
        assert!(Instant::now() < deadline, "no rendezvous in {runtime:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A joiner for `id` that proves itself with `token` (None: sends nothing), its stream
/// then in the form `args` give it.
fn join(runtime: &Path, id: &str, token: Option<[u8; 32]>, args: &[&str]) -> (Peer, Child) {
    let (mut lane, child) = Peer::spawn_joiner(runtime, id);
    if let Some(token) = token {
        lane.send(Msg::Join { token }).expect("send Join");
        let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        lane.settle(&words).expect("settle");
    }
    (lane, child)
}

/// What a stream answers to one `GetRange` of `f` (Data frames gathered, with the end's
/// digest checked), or None when the stream ends or says anything else.
fn range(lane: &mut Peer, id: u32, path: &[u8], offset: u64, len: u64) -> Option<Vec<u8>> {
    lane.wr
        .send(&Msg::GetRange {
            id,
            path: serde_bytes::ByteBuf::from(path.to_vec()),
            offset,
            len,
            to_end: false,
        })
        .ok()?;
    lane.wr.send(&Msg::GetEnd).ok()?;
    lane.wr.flush().ok()?;
    let mut got = Vec::new();
    loop {
        match lane.recv().ok()? {
            Msg::Data { id: i, data, end } if i == id => {
                got.extend_from_slice(&data);
                if let Some(d) = end {
                    assert_eq!(d, data_digest(&got), "digest");
                    return Some(got);
                }
            }
            _ => return None,
        }
    }
}

/// A pull's server: `xsync --server` sending `src/` (a file `f`, `sub/g`, and `link`, a
/// symlink to `secret` beside `src`), opened by the test as the receiving client with
/// `args`, its Sources and SourceRoot read.
struct Pull {
    _dir: tempfile::TempDir,
    runtime: PathBuf,
    f: Vec<u8>,
    main: Peer,
    server: Child,
    _dog: Watchdog,
}

const ARGS: &[&str] = &["-a", "--streams=4"];

fn pull_server() -> Pull {
    let dir = test_dir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    let f = pseudo_random(5, F_LEN);
    std::fs::write(src.join("f"), &f).expect("write f");
    std::fs::write(src.join("sub/g"), b"g").expect("write g");
    std::fs::write(dir.path().join("secret"), b"the secret").expect("write secret");
    std::os::unix::fs::symlink("../secret", src.join("link")).expect("symlink");
    let runtime = runtime_in(dir.path());
    let (mut main, server) = Peer::spawn_server_in(&runtime);
    let dog = watchdog(server.id(), 60);
    let arg = format!("{}/", src.display());
    main.open(Role::Sender, ARGS, &[arg.as_bytes()])
        .expect("open");
    assert!(matches!(main.recv().expect("sources"), Msg::Sources { .. }));
    assert!(matches!(main.recv().expect("root"), Msg::SourceRoot { .. }));
    Pull {
        _dir: dir,
        runtime,
        f,
        main,
        server,
        _dog: dog,
    }
}

impl Pull {
    fn lanes(&mut self, count: u32, token: [u8; 32]) {
        self.main.send(Msg::Lanes { count, token }).expect("Lanes");
    }

    fn join(&self, token: Option<[u8; 32]>) -> (Peer, Child) {
        join(&self.runtime, &rendezvous_id(&self.runtime), token, ARGS)
    }

    /// A stream that joined is served: it answers a range of `f` with its bytes.
    fn served(&self, lane: &mut Peer) -> bool {
        range(lane, 1, b"f", 100, 1000).is_some_and(|d| d == self.f[100..1100])
    }

    /// The receiver's `Finish`: the server answers `Done` and exits 0 within 10 s.
    fn finish(mut self) {
        self.main
            .send(Msg::Finish {
                code: 0,
                stats: Default::default(),
            })
            .expect("Finish");
        loop {
            match self.main.recv() {
                Ok(Msg::Done { .. }) => break,
                Ok(Msg::Log { .. }) => {}
                other => panic!("the server did not answer Finish: {other:?}"),
            }
        }
        drop(self.main);
        let status = wait_within(&mut self.server, 10, "the server after Done");
        assert_eq!(status.code(), Some(0));
    }
}

const TOKEN: [u8; 32] = [0x5a; 32];

#[test]
fn a_join_with_a_wrong_token_gets_no_stream() {
    let mut s = pull_server();
    s.lanes(1, TOKEN);
    let (mut wrong, mut wrong_child) = s.join(Some([0xa5; 32]));
    assert!(
        !s.served(&mut wrong),
        "a stream with the wrong token was served"
    );
    wait_within(&mut wrong_child, 10, "the refused joiner");
    // The rendezvous is still open for the stream the receiver asked for.
    let (mut right, mut right_child) = s.join(Some(TOKEN));
    assert!(
        s.served(&mut right),
        "the stream with the token was refused"
    );
    drop(right);
    s.finish();
    wait_within(&mut right_child, 10, "the joiner after the session");
}

#[test]
fn a_stream_that_never_proves_itself_does_not_hold_up_the_others() {
    let mut s = pull_server();
    s.lanes(2, TOKEN);
    // Hands its stdin and stdout over, then says nothing.
    let (_silent, mut silent_child) = s.join(None);
    std::thread::sleep(Duration::from_millis(200));
    let (mut right, _right_child) = s.join(Some(TOKEN));
    let asked = Instant::now();
    assert!(s.served(&mut right), "the proved stream was not served");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "the silent stream held the rendezvous for {:?}",
        asked.elapsed()
    );
    wait_within(&mut silent_child, 15, "the silent joiner");
    drop(right);
    s.finish();
}

#[test]
fn more_streams_than_the_limit_are_not_taken() {
    let mut s = pull_server();
    s.lanes(10_000, TOKEN);
    let id = rendezvous_id(&s.runtime);
    let mut lanes: Vec<(Peer, Child)> = (0..=MAX_LANES)
        .map(|_| join(&s.runtime, &id, Some(TOKEN), ARGS))
        .collect();
    let mut served = 0;
    for (l, _) in lanes.iter_mut() {
        served += usize::from(s.served(l));
    }
    assert_eq!(served, MAX_LANES as usize, "streams served");
    for (_, mut c) in lanes.drain(..) {
        // (A joiner exits with the session, or when it finds no rendezvous.)
        let _ = c.kill();
        let _ = c.wait();
    }
    s.finish();
}

#[test]
fn a_second_lanes_and_a_replayed_join_get_no_stream() {
    let mut s = pull_server();
    s.lanes(1, TOKEN);
    let id = rendezvous_id(&s.runtime);
    let (mut first, _first_child) = join(&s.runtime, &id, Some(TOKEN), ARGS);
    assert!(s.served(&mut first));
    // Streams are opened once a session: a second `Lanes` makes no rendezvous.
    s.lanes(3, [0x33; 32]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rendezvous_ids(&s.runtime).iter().all(|i| *i == id),
        "a second rendezvous: {:?}",
        rendezvous_ids(&s.runtime)
    );
    // The one stream asked for is in: the same id and token again find no session.
    let (mut again, mut again_child) = join(&s.runtime, &id, Some(TOKEN), ARGS);
    assert!(!s.served(&mut again), "a replayed Join was served");
    assert_eq!(
        wait_within(&mut again_child, 10, "the replayed joiner").code(),
        Some(0)
    );
    // A second Join on a stream that is in ends that stream only.
    first.send(Msg::Join { token: TOKEN }).expect("Join again");
    assert!(
        !s.served(&mut first),
        "a stream went on after a second Join"
    );
    s.finish();
}

#[test]
fn ranges_in_any_order_and_beyond_the_end_are_answered_with_exactly_the_files_bytes() {
    let mut s = pull_server();
    s.lanes(1, TOKEN);
    let (mut lane, _c) = s.join(Some(TOKEN));
    let n = F_LEN as u64;
    // Out of order, overlapping, past the end, and at offsets that overflow.
    for (id, offset, len) in [
        (7, 400_000, 300_000),
        (3, 0, 500_000),
        (9, 450_000, 10),
        (2, n - 5, 100),
        (4, n + 10, 100),
        (5, u64::MAX - 5, 100),
        (6, 1 << 62, u64::MAX),
    ] {
        let got = range(&mut lane, id, b"f", offset, len);
        let from = (offset.min(n)) as usize;
        let to = (offset.saturating_add(len).min(n)) as usize;
        // (A range the kernel cannot even seek to may be refused with Skip, never more.)
        if offset <= n {
            assert_eq!(got.as_deref(), Some(&s.f[from..to]), "range {offset}+{len}");
        } else {
            assert!(
                got.as_ref().is_none_or(|d| d.is_empty()),
                "range {offset}+{len}"
            );
        }
        if got.is_none() {
            // A Skip ended `range`'s read: the stream goes on.
            assert!(s.served(&mut lane), "the stream ended after {offset}+{len}");
        }
    }
    drop(lane);
    s.finish();
}

#[test]
fn a_range_of_a_file_the_sender_never_listed_is_refused() {
    // On an extra stream: that stream ends, and nothing of the file is sent.
    let mut s = pull_server();
    s.lanes(3, TOKEN);
    for path in [
        &b"../secret"[..],
        b"link",
        b"sub",
        b"missing",
        b"/etc/passwd",
    ] {
        let (mut lane, mut c) = s.join(Some(TOKEN));
        assert_eq!(
            range(&mut lane, 1, path, 0, 100),
            None,
            "{}",
            String::from_utf8_lossy(path)
        );
        drop(lane);
        let _ = c.kill();
        let _ = c.wait();
        if path == b"sub" {
            break; // (three streams asked for)
        }
    }
    s.finish();

    // On the first stream: a protocol error, exit 12.
    let mut s = pull_server();
    assert_eq!(range(&mut s.main, 1, b"link", 0, 100), None);
    drop(s.main);
    let status = wait_within(&mut s.server, 10, "the server after a bad GetRange");
    assert_eq!(status.code(), Some(12));
}

#[test]
fn a_receiver_that_leaves_with_a_stream_open_does_not_hold_the_sender() {
    for finish in [false, true] {
        let mut s = pull_server();
        s.lanes(3, TOKEN);
        let (mut lane, _c) = s.join(Some(TOKEN));
        assert!(s.served(&mut lane));
        // The stream stays open and silent, two more never come.
        let left = Instant::now();
        if finish {
            s.finish();
        } else {
            drop(s.main);
            let status = wait_within(&mut s.server, 10, "the server after its client left");
            assert_ne!(status.code(), Some(0));
        }
        assert!(left.elapsed() < Duration::from_secs(10));
        drop(lane);
    }
}

#[test]
fn a_join_with_an_id_that_is_a_path_is_refused() {
    let t = test_dir();
    let runtime = runtime_in(t.path());
    for id in [
        "../../etc",
        "/tmp/x",
        "0123456789abcdef0123456789abcdeg",
        "",
    ] {
        let (_p, mut c) = Peer::spawn_joiner(&runtime, id);
        let status = wait_within(&mut c, 5, "a joiner with a bad id");
        assert_eq!(status.code(), Some(14), "{id}");
    }
}

#[test]
fn a_joiner_never_connects_to_a_rendezvous_others_may_enter() {
    let t = test_dir();
    let runtime = runtime_in(t.path());
    let id = "0123456789abcdef0123456789abcdef";
    let rdv = runtime.join(format!("xsync-lanes-{id}"));
    std::fs::create_dir(&rdv).expect("mkdir");
    std::fs::set_permissions(&rdv, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let listener = std::os::unix::net::UnixListener::bind(rdv.join("s")).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let (p, mut c) = Peer::spawn_joiner(&runtime, id);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        listener.accept().is_err(),
        "the joiner connected to a rendezvous others may enter"
    );
    // A symlink to a private directory is not one either.
    drop(p);
    wait_within(&mut c, 10, "the joiner whose client left");
    std::fs::remove_file(rdv.join("s")).expect("rm s");
    let private = runtime.join("private");
    std::fs::create_dir(&private).expect("mkdir");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let listener = std::os::unix::net::UnixListener::bind(private.join("s")).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    std::fs::remove_dir(&rdv).expect("rmdir");
    std::os::unix::fs::symlink(&private, &rdv).expect("symlink");
    let (p, mut c) = Peer::spawn_joiner(&runtime, id);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        listener.accept().is_err(),
        "the joiner followed a symlink to the rendezvous"
    );
    drop(p);
    wait_within(&mut c, 10, "the joiner whose client left");
}

/// How a hostile sender answers the ranges an extra stream asks for.
#[derive(Clone, Copy, Debug)]
enum Wrong {
    /// Data for another range than the one asked.
    OtherId,
    /// More bytes than the range holds (a file's last range may grow: as read, so only
    /// the others).
    TooLong,
    /// Half the range, then the stream closes.
    CutShort,
    /// The range's bytes with a wrong digest.
    BadDigest,
    /// `Skip`, as if the file could not be read.
    Skip,
    /// A frame that is no answer (`Lanes`).
    Nonsense,
}

/// Answers one range as `how` says; false when the stream is to close.
fn answer_wrongly(lane: &mut Peer, how: Wrong, content: &[u8], req: &Msg) -> bool {
    let Msg::GetRange {
        id,
        offset,
        len,
        to_end,
        ..
    } = req
    else {
        return false;
    };
    let from = (*offset as usize).min(content.len());
    let to = (*offset + *len).min(content.len() as u64) as usize;
    let bytes = &content[from..to];
    let digest = data_digest(bytes);
    let msgs: Vec<Msg> = match how {
        Wrong::OtherId => vec![Msg::Data {
            id: id + 1,
            data: bytes.to_vec(),
            end: Some(digest),
        }],
        Wrong::TooLong if *to_end => vec![Msg::Data {
            id: *id,
            data: bytes.to_vec(),
            end: Some(digest),
        }],
        Wrong::TooLong => {
            let mut more = bytes.to_vec();
            more.extend_from_slice(&[0; 4096]);
            let end = Some(data_digest(&more));
            vec![Msg::Data {
                id: *id,
                data: more,
                end,
            }]
        }
        Wrong::CutShort => {
            let _ = lane.send(Msg::Data {
                id: *id,
                data: bytes[..bytes.len() / 2].to_vec(),
                end: None,
            });
            return false;
        }
        Wrong::BadDigest => vec![Msg::Data {
            id: *id,
            data: bytes.to_vec(),
            end: Some([9; 16]),
        }],
        Wrong::Skip => vec![Msg::Skip { id: *id }],
        Wrong::Nonsense => vec![Msg::Lanes {
            count: 1,
            token: [0; 32],
        }],
    };
    msgs.into_iter().all(|m| lane.send(m).is_ok())
}

/// The honest answer to a range or a whole file, in chunks.
fn answer(peer: &mut Peer, id: u32, bytes: &[u8]) -> Result<(), xsync::error::Error> {
    let digest = data_digest(bytes);
    let mut chunks = bytes.chunks(xsync::protocol::CHUNK).peekable();
    if chunks.peek().is_none() {
        return peer.send(Msg::Data {
            id,
            data: Vec::new(),
            end: Some(digest),
        });
    }
    while let Some(c) = chunks.next() {
        peer.wr.send(&Msg::Data {
            id,
            data: c.to_vec(),
            end: chunks.peek().is_none().then_some(digest),
        })?;
    }
    peer.wr.flush()
}

/// A push to `xsync --server --streams=3` of `big` (several ranges) and 40 small files,
/// from the test as the sending client: the extra streams answer every range as `how`
/// says, the first stream honestly (or, with `main_wrong`, its ranges wrongly too).
/// Returns the server's exit code, what changed outside `dst`, and the number of ranges
/// the extra streams were asked for; checks that no temporary is left and that every
/// file that arrived is the source's.
fn push_with_wrong_streams(how: Wrong, main_wrong: bool) -> (i32, Vec<String>, usize) {
    let t = test_dir();
    let outside = t.path().join("parent");
    let dst = outside.join("dst");
    std::fs::create_dir_all(&dst).expect("mkdir dst");
    std::fs::write(outside.join("sibling"), b"keep me").expect("write sibling");
    let runtime = runtime_in(t.path());
    let mut files: Vec<(Vec<u8>, Vec<u8>)> = vec![(b"big".to_vec(), pseudo_random(1, 40 << 20))];
    for i in 0..40u64 {
        files.push((
            format!("s{i:02}").into_bytes(),
            pseudo_random(i + 2, 1000 + i as usize * 300),
        ));
    }
    let files = std::sync::Arc::new(files);
    let content = {
        let files = files.clone();
        move |path: &[u8]| {
            files
                .iter()
                .find(|(n, _)| n == path)
                .map(|(_, c)| c.clone())
                .unwrap_or_default()
        }
    };
    let before = snapshot(&outside);
    let (mut main, mut server) = Peer::spawn_server_in(&runtime);
    let dog = watchdog(server.id(), 90);
    let args = ["-a", "--streams=3"];
    main.open(Role::Receiver, &args, &[dst.as_os_str().as_encoded_bytes()])
        .expect("open");
    main.send_dir_sources().expect("sources");
    let listing: Vec<_> = files
        .iter()
        .map(|(n, c)| wire(n, Kind::File, c.len() as u64))
        .collect();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut lane_threads = Vec::new();
    let mut first_range = true;
    while let Ok(msg) = main.recv() {
        let sent = match msg {
            Msg::List { dirs } => main.send(Msg::Listing {
                dirs: dirs
                    .iter()
                    .map(|d| xsync::protocol::DirListing {
                        same: serde_bytes::ByteBuf::from(vec![0u8; (d.have.len() / 8).div_ceil(8)]),
                        new: listing.clone(),
                    })
                    .collect(),
            }),
            Msg::Lanes { count, token } => {
                assert!(count >= 1, "no streams asked for");
                let id = rendezvous_id(&runtime);
                for _ in 0..count {
                    let (mut lane, child) = join(&runtime, &id, Some(token), &args);
                    let (asked, content) = (asked.clone(), content.clone());
                    lane_threads.push((
                        std::thread::spawn(move || {
                            while let Ok(req) = lane.recv() {
                                if let Msg::GetRange { path, .. } = &req {
                                    asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    if !answer_wrongly(&mut lane, how, &content(path), &req) {
                                        return;
                                    }
                                }
                            }
                        }),
                        child,
                    ));
                }
                Ok(())
            }
            Msg::GetRange {
                id,
                path,
                offset,
                len,
                to_end,
            } => {
                if first_range {
                    // The extra streams take ranges while the first waits.
                    first_range = false;
                    std::thread::sleep(Duration::from_millis(300));
                }
                let c = content(&path);
                if main_wrong {
                    let req = Msg::GetRange {
                        id,
                        path,
                        offset,
                        len,
                        to_end,
                    };
                    if !answer_wrongly(&mut main, how, &c, &req) {
                        break;
                    }
                    Ok(())
                } else {
                    let from = (offset as usize).min(c.len());
                    let to = if to_end {
                        c.len()
                    } else {
                        (offset + len).min(c.len() as u64) as usize
                    };
                    answer(&mut main, id, &c[from..to])
                }
            }
            Msg::Get { files } => files.iter().try_for_each(|r| match r {
                Request::Whole { id, path } => answer(&mut main, *id, &content(path)),
                Request::Delta { .. } => panic!("a delta of a new file"),
                Request::Append { .. } => panic!("an append of a new file"),
            }),
            Msg::GetEnd | Msg::Planned { .. } | Msg::Log { .. } => Ok(()),
            Msg::Finish { .. } => {
                let _ = main.send(Msg::Done {
                    code: 0,
                    counts: [0; 7],
                    scan_ms: 0,
                });
                break;
            }
            Msg::Abort { .. } => break,
            other => panic!("unexpected from the receiver: {other:?}"),
        };
        if sent.is_err() {
            break;
        }
    }
    drop(main);
    let status = wait_within(&mut server, 20, "the receiving server");
    drop(dog);
    for (t, mut c) in lane_threads {
        let _ = t.join();
        wait_within(&mut c, 10, "a joiner after the session");
    }
    let temps = find_named(&dst, ".xsync-tmp.");
    assert!(temps.is_empty(), "{how:?}: temporaries left: {temps:?}");
    for (n, c) in files.iter() {
        let path = dst.join(String::from_utf8_lossy(n).as_ref());
        if let Ok(got) = std::fs::read(&path) {
            assert!(got == *c, "{how:?}: {path:?} is not the source's");
        }
    }
    let diffs: Vec<String> = diff_snapshots(&before, &snapshot(&outside))
        .into_iter()
        .filter(|d| !d.starts_with("\"dst"))
        .collect();
    (
        status.code().unwrap_or(-1),
        diffs,
        asked.load(std::sync::atomic::Ordering::Relaxed),
    )
}

#[test]
fn wrong_answers_on_an_extra_stream_send_its_files_back_to_the_first() {
    for how in [
        Wrong::OtherId,
        Wrong::TooLong,
        Wrong::CutShort,
        Wrong::BadDigest,
        Wrong::Skip,
        Wrong::Nonsense,
    ] {
        let (code, diffs, asked) = push_with_wrong_streams(how, false);
        assert_eq!(code, 0, "{how:?}: the server failed");
        assert!(diffs.is_empty(), "{how:?}: {diffs:?}");
        if asked == 0 {
            crate::util::note(&format!(
                "{how:?}: the first stream took every range before the others joined"
            ));
        }
    }
}

#[test]
fn wrong_answers_on_the_first_stream_are_a_protocol_error() {
    for how in [Wrong::OtherId, Wrong::CutShort, Wrong::Nonsense] {
        let (code, diffs, _) = push_with_wrong_streams(how, true);
        assert_eq!(code, 12, "{how:?}");
        assert!(diffs.is_empty(), "{how:?}: {diffs:?}");
    }
}
