//! Deterministic races: a scripted peer stops at a chosen point of the exchange while the
//! test swaps a directory or a file for a symlink to somewhere outside the tree. What is
//! outside must be neither sent nor changed.

use crate::peer::{HostileServer, Peer, wire};
use crate::util::{code, diff_snapshots, snapshot, stderr, xsync};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use xsync::protocol::{Msg, Request, Role};
use xsync::tree::Kind;

#[test]
fn a_source_directory_swapped_for_a_symlink_after_the_scan_is_not_followed() {
    // The test is the receiving client of `xsync --server` (the sender): it lets the server
    // scan src, swaps src/dir for a link to `outside`, and only then asks for dir/f.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/f"), b"public").unwrap();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("f"), b"SECRET").unwrap();

    let (mut p, mut child) = Peer::spawn_server();
    let arg = format!("{}/", src.display());
    p.open(Role::Sender, &["-a"], &[arg.as_bytes()])
        .expect("open");
    assert!(matches!(p.recv().expect("sources"), Msg::Sources { .. }));
    assert!(matches!(p.recv().expect("root"), Msg::SourceRoot { .. }));
    for path in [&b""[..], b"dir"] {
        p.send(Msg::List {
            dirs: vec![xsync::protocol::ListDir::new(path.to_vec(), &[])],
        })
        .expect("list");
        assert!(matches!(p.recv().expect("listing"), Msg::Listing { .. }));
    }
    // The swap, between the scan and the read.
    fs::rename(src.join("dir"), t.path().join("dir.moved")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("dir")).unwrap();
    p.send(Msg::Get {
        files: vec![Request::Whole {
            id: 0,
            path: serde_bytes::ByteBuf::from(b"dir/f".to_vec()),
        }],
    })
    .expect("get");
    p.send(Msg::GetEnd).expect("get end");
    let mut sent = Vec::new();
    loop {
        match p.recv() {
            Ok(Msg::Data { data, end, .. }) => {
                sent.extend_from_slice(&data);
                if end.is_some() {
                    break;
                }
            }
            Ok(Msg::Skip { .. }) | Err(_) => break,
            Ok(Msg::Log { .. }) => {}
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    drop(p);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !sent.windows(6).any(|w| w == b"SECRET"),
        "the sender read through the swapped-in symlink"
    );
}

#[test]
fn a_destination_file_swapped_for_a_symlink_before_a_mode_update_is_not_followed() {
    // A pull whose only change is f's mode (an attribute-only update). The server stops
    // before its listing; meanwhile dst/f (already scanned as a file) becomes a link to a
    // file outside. The chmod must not reach through it.
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    fs::write(dst.join("f"), b"abc").unwrap();
    let when = filetime(&dst.join("f"));
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("target"), b"not yours").unwrap();
    fs::set_permissions(outside.join("target"), fs::Permissions::from_mode(0o600)).unwrap();

    let swap_dst = dst.clone();
    let swap_to = outside.join("target");
    let server = HostileServer::start(t.path(), move |p: &mut Peer| {
        p.accept().expect("handshake");
        p.send_dir_sources().expect("sources");
        let mut swapped = false;
        p.before_send(move |m| {
            if matches!(m, Msg::Listing { .. }) && !swapped {
                swapped = true;
                fs::remove_file(swap_dst.join("f")).unwrap();
                std::os::unix::fs::symlink(&swap_to, swap_dst.join("f")).unwrap();
            }
        });
        let mut f = wire(b"f", Kind::File, 3);
        f.meta.mode = 0o777;
        f.meta.mtime = when.0;
        f.meta.mtime_nsec = when.1 as u32;
        let _ = p.serve(vec![vec![f]], |_| b"abc".to_vec());
    });
    let before = snapshot(&outside);
    let out = xsync()
        .args(["-a"])
        .args(server.via())
        .arg("host:src/")
        .arg(&dst)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xsync");
    server.finish();
    let diffs = diff_snapshots(&before, &snapshot(&outside));
    assert!(
        diffs.is_empty(),
        "outside changed: {diffs:?}; {}",
        stderr(&out)
    );
    let mode = fs::metadata(outside.join("target"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "exit {}: {}", code(&out), stderr(&out));
}

fn filetime(p: &std::path::Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}
