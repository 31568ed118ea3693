//! Hostile peers: a server (reached through `-e`) or a client (talking to `xsync --server`)
//! that says what a real xsync never would. Each test asserts the exit code and that nothing
//! outside the destination changed.

use crate::peer::{HostileServer, Peer, wire};
use crate::util::{code, diff_snapshots, snapshot, stderr, xsync};
use std::path::Path;
use xsync::protocol::{Msg, SourceInfo};
use xsync::tree::Kind;

/// `xsync FLAGS host:src DST` against `server`, checking that `outside` (the directory
/// holding the destination) is unchanged apart from `dst` itself. Returns the output.
fn pull(
    server: &HostileServer<impl Send + 'static>,
    flags: &[&str],
    dst: &Path,
    outside: &Path,
) -> (std::process::Output, Vec<String>) {
    pull_source(server, flags, "host:src", dst, outside)
}

/// As [`pull`], from `source` (`host:src`, `host:src/`).
fn pull_source(
    server: &HostileServer<impl Send + 'static>,
    flags: &[&str],
    source: &str,
    dst: &Path,
    outside: &Path,
) -> (std::process::Output, Vec<String>) {
    let before = snapshot(outside);
    let out = xsync()
        .args(flags)
        .args(server.via())
        .arg(source)
        .arg(dst)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xsync");
    let after = snapshot(outside);
    let dst_rel = dst
        .strip_prefix(outside)
        .expect("dst inside outside")
        .to_path_buf();
    let diffs = diff_snapshots(&before, &after)
        .into_iter()
        // (diff_snapshots quotes each path.)
        .filter(|d| !d.starts_with(&format!("\"{}", dst_rel.display())))
        .collect();
    (out, diffs)
}

/// A server that aborts with `code`, after the sources' description when `after_sources`:
/// the pull's exit code, with nothing outside the destination changed.
fn pull_from_aborting_server(code_sent: i32, after_sources: bool) -> i32 {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("parent");
    std::fs::create_dir_all(outside.join("dst")).unwrap();
    let server = HostileServer::start(t.path(), move |p: &mut Peer| {
        p.accept().expect("handshake");
        if after_sources {
            p.send(Msg::Sources {
                info: SourceInfo::default(),
            })
            .expect("send");
        }
        p.send(Msg::Abort {
            code: code_sent,
            msg: "all is well".into(),
        })
        .expect("send");
    });
    let (out, diffs) = pull(&server, &["-a"], &outside.join("dst"), &outside);
    server.finish();
    assert!(diffs.is_empty(), "{diffs:?}");
    let c = code(&out);
    assert_eq!(c, 12, "abort with {code_sent}: {}", stderr(&out));
    c
}

#[test]
fn an_abort_with_code_zero_is_a_failure() {
    assert_eq!(pull_from_aborting_server(0, false), 12);
}

#[test]
fn an_abort_with_an_unknown_code_is_a_protocol_error() {
    assert_eq!(pull_from_aborting_server(4242, true), 12);
}

#[test]
fn a_hostile_single_file_flag_cannot_touch_the_destinations_parent() {
    // The server says "one file" but lists a directory's worth of entries under --delete:
    // the receiver would use dst's parent as the root and delete dst's siblings.
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("parent");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sibling"), b"keep me").unwrap();
    let server = HostileServer::start(t.path(), |p: &mut Peer| {
        p.accept().expect("handshake");
        let info = SourceInfo {
            single_file: true,
            named_tops: vec![serde_bytes::ByteBuf::from(b"f".to_vec())],
            ..Default::default()
        };
        let mut root = wire(b".", Kind::Dir, 0);
        root.meta.mode = 0o777;
        p.send_sources(info, root).expect("sources");
        p.serve(
            vec![vec![
                wire(b"f", Kind::File, 3),
                wire(b"planted", Kind::File, 3),
            ]],
            |_| b"bad".to_vec(),
        )
    });
    let (out, diffs) = pull(&server, &["-a", "--delete"], &outside.join("new"), &outside);
    let _ = server.finish();
    assert_eq!(code(&out), 12, "{}", stderr(&out));
    assert!(diffs.is_empty(), "{diffs:?}");
}

/// A pull whose server announces `info` with `root` and lists `top` for the root, into
/// `outside/dst_name` (`sources` the remote paths asked for): the exit code and what
/// changed outside the destination (with `dst_name` existing as a directory, inside it too:
/// an attack that is refused must not leave half a transfer there either).
fn pull_attack(
    info: SourceInfo,
    root: xsync::protocol::WireEntry,
    top: Vec<xsync::protocol::WireEntry>,
    sources: &[&str],
    dst_exists: bool,
) -> (i32, String, Vec<String>) {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("parent");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sibling"), b"keep me").unwrap();
    let dst = outside.join("dst");
    if dst_exists {
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(dst.join("old"), b"old").unwrap();
    }
    let server = HostileServer::start(t.path(), move |p: &mut Peer| {
        p.accept().expect("handshake");
        p.send_sources(info, root).expect("sources");
        let _ = p.serve(vec![top], |_| b"bad".to_vec());
    });
    let before = snapshot(&outside);
    let out = xsync()
        .args(["-a", "--delete"])
        .args(server.via())
        .args(sources.iter().map(|s| format!("host:{s}")))
        .arg(&dst)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xsync");
    server.finish();
    let after = snapshot(&outside);
    (code(&out), stderr(&out), diff_snapshots(&before, &after))
}

fn one(name: &[u8]) -> Vec<serde_bytes::ByteBuf> {
    vec![serde_bytes::ByteBuf::from(name.to_vec())]
}

#[test]
fn a_single_file_beside_a_transfer_dir_root_is_refused() {
    // "One file" and "the root is a transfer dir" together would apply the root's mode to
    // the destination's parent.
    let info = SourceInfo {
        single_file: true,
        root_is_transfer_dir: true,
        named_tops: one(b"f"),
        ..Default::default()
    };
    let mut root = wire(b".", Kind::Dir, 0);
    root.meta.mode = 0o777;
    let (c, err, diffs) = pull_attack(info, root, vec![wire(b"f", Kind::File, 3)], &["f"], false);
    assert_eq!(c, 12, "{err}");
    assert!(err.contains("single file"), "{err}");
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn a_single_file_that_is_a_directory_is_refused() {
    let info = SourceInfo {
        single_file: true,
        named_tops: one(b"f"),
        ..Default::default()
    };
    let (c, err, diffs) = pull_attack(
        info,
        wire(b".", Kind::Dir, 0),
        vec![wire(b"f", Kind::Dir, 0)],
        &["f"],
        false,
    );
    assert_eq!(c, 12, "{err}");
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn a_single_file_when_two_sources_were_asked_for_is_refused() {
    let info = SourceInfo {
        single_file: true,
        named_tops: one(b"a"),
        ..Default::default()
    };
    let (c, err, diffs) = pull_attack(
        info,
        wire(b".", Kind::Dir, 0),
        vec![wire(b"a", Kind::File, 3)],
        &["a", "b"],
        false,
    );
    assert_eq!(c, 12, "{err}");
    assert!(err.contains("not what was asked for"), "{err}");
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn a_root_listing_with_a_name_no_source_named_is_refused() {
    // `host:src dst/` brings dst/src; an entry beside it in the root's listing is a name
    // nobody asked for (rsync's CVE-2024-12087 is the same trust in a merged list).
    let info = SourceInfo {
        named_tops: one(b"src"),
        ..Default::default()
    };
    let (c, err, diffs) = pull_attack(
        info,
        wire(b".", Kind::Dir, 0),
        vec![wire(b"planted", Kind::File, 3), wire(b"src", Kind::Dir, 0)],
        &["src"],
        true,
    );
    assert_eq!(c, 12, "{err}");
    assert!(err.contains("planted"), "{err}");
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn a_hostile_client_cannot_make_a_pushs_server_touch_the_destinations_parent() {
    // The same single-file attack from the other side: a client pushing to `xsync --server`.
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("parent");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sibling"), b"keep me").unwrap();
    let dst = outside.join("new");
    let before = snapshot(&outside);
    let (mut p, mut child) = Peer::spawn_server();
    p.open(
        xsync::protocol::Role::Receiver,
        &["-a", "--delete"],
        &[dst.as_os_str().as_encoded_bytes()],
    )
    .expect("open");
    let info = SourceInfo {
        single_file: true,
        named_tops: one(b"f"),
        ..Default::default()
    };
    let mut root = wire(b".", Kind::Dir, 0);
    root.meta.mode = 0o777;
    p.send_sources(info, root).expect("sources");
    let _ = p.serve(
        vec![vec![
            wire(b"f", Kind::File, 3),
            wire(b"planted", Kind::File, 3),
        ]],
        |_| b"bad".to_vec(),
    );
    drop(p);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(12));
    let diffs = diff_snapshots(&before, &snapshot(&outside));
    assert!(diffs.is_empty(), "{diffs:?}");
}

/// A `host:src/ dst` pull with `flags` from a server that lists a file, a symlink, a block
/// device and a fifo at the root whatever the options: what landed in dst, by name.
fn pull_kinds(flags: &[&str]) -> (i32, String, Vec<(String, Kind)>) {
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    let server = HostileServer::start(t.path(), move |p: &mut Peer| {
        p.accept().expect("handshake");
        p.send_dir_sources().expect("sources");
        let mut dev = wire(b"dev", Kind::BlockDev, 0);
        dev.meta.mode = 0o666;
        dev.meta.rdev = rustix::fs::makedev(7, 0);
        let _ = p.serve(
            vec![vec![
                dev,
                wire(b"f", Kind::File, 3),
                wire(b"l", Kind::Symlink, 11),
                wire(b"p", Kind::Fifo, 0),
            ]],
            |_| b"abc".to_vec(),
        );
    });
    let out = xsync()
        .args(flags)
        .args(server.via())
        .arg("host:src/")
        .arg(&dst)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xsync");
    server.finish();
    let mut got = Vec::new();
    for e in std::fs::read_dir(&dst).into_iter().flatten().flatten() {
        let ft = e.file_type().unwrap();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        got.push((e.file_name().to_string_lossy().into_owned(), kind));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    (code(&out), stderr(&out), got)
}

#[test]
fn a_pull_without_l_or_d_skips_the_servers_symlinks_and_devices() {
    let (c, err, got) = pull_kinds(&["-r"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(got, vec![("f".to_string(), Kind::File)], "{err}");
}

#[test]
fn a_pull_with_l_but_not_d_keeps_symlinks_and_skips_devices() {
    let (c, err, got) = pull_kinds(&["-rlpt"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        got,
        vec![
            ("f".to_string(), Kind::File),
            ("l".to_string(), Kind::Symlink)
        ],
        "{err}"
    );
}

/// `xsync -a host:src/ dst` against `server` under `/usr/bin/time`: exit code, stderr and
/// the client's peak resident memory in KiB.
fn pull_measured(server: &HostileServer<impl Send + 'static>, dst: &Path) -> (i32, String, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is needed (scripts/test installs it)"
    );
    let report = dst.with_extension("rss");
    let out = std::process::Command::new(time)
        .arg("-o")
        .arg(&report)
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .args(["-a"])
        .args(server.via())
        .arg("host:src/")
        .arg(dst)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xsync");
    let rss = std::fs::read_to_string(&report)
        .expect("time's report")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("a number of KiB");
    (code(&out), stderr(&out), rss)
}

#[test]
fn listings_beyond_what_the_source_announced_are_refused_before_memory_grows() {
    // A server that announces 1,000 entries, then answers every directory with 100,000
    // files and one more directory, 30 levels deep: 3 million entries across frames,
    // about a gigabyte if the receiver took them all.
    let t = tempfile::tempdir().unwrap();
    let server = HostileServer::start(t.path(), |p: &mut Peer| {
        p.accept().expect("handshake");
        p.send_dir_sources().expect("sources");
        for _level in 0..30 {
            let Ok(Msg::List { dirs }) = p.recv() else {
                return;
            };
            let mut new: Vec<_> = (0..100_000)
                .map(|i| wire(format!("f{i:06}").as_bytes(), Kind::File, 1))
                .collect();
            new.push(wire(b"d", Kind::Dir, 0));
            let dirs = dirs
                .iter()
                .map(|d| xsync::protocol::DirListing {
                    same: serde_bytes::ByteBuf::from(vec![0u8; (d.have.len() / 8).div_ceil(8)]),
                    new: new.clone(),
                })
                .collect();
            if p.send(Msg::Listing { dirs }).is_err() {
                return;
            }
        }
    });
    let (c, err, rss_kib) = pull_measured(&server, &t.path().join("dst"));
    server.finish();
    assert_eq!(c, 12, "{err}");
    assert!(err.contains("announced"), "{err}");
    // One frame of 100,000 entries decoded, nothing accumulated.
    crate::util::note(&format!(
        "listings_beyond_what_the_source_announced: peak RSS {rss_kib} KiB"
    ));
    assert!(rss_kib < 200 * 1024, "peak RSS {rss_kib} KiB");
}

#[test]
fn a_source_tree_beyond_the_memory_budget_is_refused_at_once() {
    let t = tempfile::tempdir().unwrap();
    let server = HostileServer::start(t.path(), |p: &mut Peer| {
        p.accept().expect("handshake");
        p.send_dir_sources_announcing(u64::MAX / 2)
            .expect("sources");
        let _ = p.recv();
    });
    let (c, err, _) = pull_measured(&server, &t.path().join("dst"));
    server.finish();
    assert_eq!(c, 22, "{err}");
    assert!(err.contains("more than this host can hold"), "{err}");
}

/// What a server says in an attack that the receiver already refuses (kept so by these
/// tests): the root's listing, and the answer to each requested file.
type Answer = fn(&mut Peer, &xsync::protocol::Request) -> Result<(), xsync::error::Error>;

/// A `-a --delete host:src/ parent/dst` pull from a server that lists `top` and answers
/// with `answer`, over a dst holding `f` ("old content"): the exit code, stderr, what
/// changed outside dst, and dst/f afterwards.
fn attack(
    top: Vec<xsync::protocol::WireEntry>,
    answer: Answer,
) -> (i32, String, Vec<String>, Option<Vec<u8>>) {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("parent");
    let dst = outside.join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(outside.join("sibling"), b"keep me").unwrap();
    std::fs::write(dst.join("f"), b"old content").unwrap();
    let server = HostileServer::start(t.path(), move |p: &mut Peer| {
        p.accept().expect("handshake");
        p.send_dir_sources().expect("sources");
        let _ = p.serve_by(vec![top], answer);
    });
    let (out, diffs) = pull_source(&server, &["-a", "--delete"], "host:src/", &dst, &outside);
    server.finish();
    let temps: Vec<_> = crate::util::find_named(&dst, ".xsync-tmp.");
    assert!(temps.is_empty(), "temporaries left: {temps:?}");
    (
        code(&out),
        stderr(&out),
        diffs,
        std::fs::read(dst.join("f")).ok(),
    )
}

fn whole_answer(p: &mut Peer, r: &xsync::protocol::Request) -> Result<(), xsync::error::Error> {
    let data = b"new content".to_vec();
    let end = Some(xsync::protocol::data_digest(&data));
    p.send(Msg::Data {
        id: r.id(),
        data,
        end,
    })
}

#[test]
fn unsafe_names_in_a_listing_are_refused_and_nothing_is_touched() {
    for bad in [
        &b".."[..],
        b".",
        b"",
        b"../sibling",
        b"/etc/passwd",
        b"a\0b",
        &[b'x'; 256],
    ] {
        let (c, err, diffs, f) = attack(vec![wire(bad, Kind::File, 3)], whole_answer);
        let shown = String::from_utf8_lossy(bad);
        assert_eq!(c, 12, "{shown}: {err}");
        assert!(diffs.is_empty(), "{shown}: {diffs:?}");
        assert_eq!(f.as_deref(), Some(&b"old content"[..]), "{shown}");
    }
}

#[test]
fn a_duplicate_name_in_a_listing_is_refused() {
    let (c, err, diffs, f) = attack(
        vec![wire(b"f", Kind::File, 3), wire(b"f", Kind::Dir, 0)],
        whole_answer,
    );
    assert_eq!(c, 12, "{err}");
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(f.as_deref(), Some(&b"old content"[..]));
}

#[test]
fn a_hard_link_leader_outside_the_tree_is_refused() {
    let mut e = wire(b"g", Kind::File, 3);
    e.link_leader = Some(serde_bytes::ByteBuf::from(b"../sibling".to_vec()));
    let (c, err, diffs, _) = attack(vec![wire(b"f", Kind::File, 11), e], whole_answer);
    assert_eq!(c, 12, "{err}");
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn data_with_a_wrong_digest_never_replaces_the_file() {
    fn bad_digest(p: &mut Peer, r: &xsync::protocol::Request) -> Result<(), xsync::error::Error> {
        p.send(Msg::Data {
            id: r.id(),
            data: b"new content".to_vec(),
            end: Some([7; 16]),
        })
    }
    let (c, err, diffs, f) = attack(vec![wire(b"f", Kind::File, 11)], bad_digest);
    assert!(c == 23 || c == 12, "exit {c}: {err}");
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(f.as_deref(), Some(&b"old content"[..]), "{err}");
}

#[test]
fn a_stream_cut_inside_a_file_leaves_the_old_file_and_no_temporary() {
    fn cut(p: &mut Peer, r: &xsync::protocol::Request) -> Result<(), xsync::error::Error> {
        p.send(Msg::Data {
            id: r.id(),
            data: b"new co".to_vec(),
            end: None,
        })?;
        Err(xsync::error::Error::new(
            xsync::exit::ExitCode::StreamIo,
            "the server hangs up",
        ))
    }
    let (c, err, diffs, f) = attack(vec![wire(b"f", Kind::File, 11)], cut);
    assert_eq!(c, 12, "{err}");
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(f.as_deref(), Some(&b"old content"[..]));
}

#[test]
fn a_delta_copying_beyond_the_basis_is_refused() {
    fn beyond(p: &mut Peer, r: &xsync::protocol::Request) -> Result<(), xsync::error::Error> {
        let ops = vec![
            xsync::protocol::WireOp::Copy { offset: 0, len: 3 },
            xsync::protocol::WireOp::Copy {
                offset: 1 << 40,
                len: 8,
            },
        ];
        p.send(Msg::Delta {
            id: r.id(),
            ops,
            end: Some([0; 16]),
        })
    }
    // Same size, other time: the receiver asks for a delta against its "old content".
    let mut f = wire(b"f", Kind::File, 11);
    f.meta.mtime += 1;
    let (c, err, diffs, got) = attack(vec![f], beyond);
    assert!(c == 12 || c == 23, "exit {c}: {err}");
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(got.as_deref(), Some(&b"old content"[..]), "{err}");
}

#[test]
fn a_frame_longer_than_the_limit_is_refused() {
    frame_over_the_limit(&["-a"]);
}

#[test]
fn a_bare_frame_longer_than_the_limit_is_refused() {
    frame_over_the_limit(&["-a", "--no-compress"]);
}

fn frame_over_the_limit(flags: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("parent");
    let dst = outside.join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let server = HostileServer::start(t.path(), |p: &mut Peer| {
        p.accept().expect("handshake");
        use std::io::Write;
        // A length prefix of 4 GiB - 1, then nothing of it: in a raw segment on a
        // segmented connection (the default), bare under --no-compress.
        let mut bytes = Vec::new();
        if p.wr.segmented() {
            bytes.extend_from_slice(&[0, 4, 0, 0, 0]);
        }
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let _ = p.wr.get_mut().write_all(&bytes);
        let _ = p.wr.get_mut().flush();
        let _ = p.recv();
    });
    let (out, diffs) = pull_source(&server, flags, "host:src/", &dst, &outside);
    server.finish();
    assert_eq!(code(&out), 12, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exceeds the limit"),
        "{}",
        stderr(&out)
    );
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[test]
fn a_coarse_request_for_tiny_blocks_is_refused_before_the_sender_hashes_anything() {
    // A hostile client asks the sender of a 32 MB file for a coarse exchange at 1-byte
    // blocks: each source byte would cost the sender a block hash and an index entry.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big"), crate::util::pseudo_random(7, 32 << 20)).unwrap();
    let report = t.path().join("rss");
    let time = std::ffi::OsStr::new("/usr/bin/time");
    assert!(
        Path::new(time).exists(),
        "/usr/bin/time is needed (scripts/test installs it)"
    );
    let (mut p, mut child) = Peer::spawn_server_under(&[
        time,
        std::ffi::OsStr::new("-o"),
        report.as_os_str(),
        std::ffi::OsStr::new("-f"),
        std::ffi::OsStr::new("%M"),
    ]);
    let arg = format!("{}/", src.display());
    p.open(xsync::protocol::Role::Sender, &["-a"], &[arg.as_bytes()])
        .expect("open");
    assert!(matches!(p.recv().expect("sources"), Msg::Sources { .. }));
    assert!(matches!(p.recv().expect("root"), Msg::SourceRoot { .. }));
    p.send(Msg::List {
        dirs: vec![xsync::protocol::ListDir::new(Vec::new(), &[])],
    })
    .expect("list");
    assert!(matches!(p.recv().expect("listing"), Msg::Listing { .. }));
    p.send(Msg::Coarse {
        items: vec![xsync::protocol::CoarseItem {
            id: 0,
            path: serde_bytes::ByteBuf::from(b"big".to_vec()),
            block: 1,
            basis_len: 4096,
            hashes: vec![[0; 16]; 4096],
            anchors: Vec::new(),
        }],
    })
    .expect("coarse");
    let answer = p.recv();
    drop(p);
    let status = child.wait().expect("wait");
    assert!(
        !matches!(answer, Ok(Msg::CoarseRanges { .. })),
        "the sender answered a 1-byte coarse request"
    );
    assert_eq!(status.code(), Some(12));
    let rss_kib: u64 = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("KiB");
    crate::util::note(&format!(
        "coarse 1-byte blocks: sender's peak RSS {rss_kib} KiB"
    ));
    assert!(rss_kib < 200 * 1024, "peak RSS {rss_kib} KiB");
}
