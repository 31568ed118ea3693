//! Temporaries belong to their run (src/temps.rs): a later run removes only those whose run
//! is gone, never another live run's, and a user's file that merely starts with the prefix
//! is an ordinary file.

use crate::peer::{HostileServer, Peer, wire};
use crate::util::{code, find_named, have_rsync, rsync, run, stderr, xsync};
use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use xsync::protocol::Msg;
use xsync::temps::{name_for, process_start, this_machine};
use xsync::tree::Kind;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_users_files_that_look_like_temporaries_are_copied_kept_and_not_resent() {
    if !have_rsync(this_test!()) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join(".xsync-tmp.notes"), b"mine").unwrap();
    fs::write(src.join("d/.xsync-tmp.x"), b"also mine").unwrap();
    for side in ["x", "r"] {
        let dst = t.path().join(side);
        fs::create_dir(&dst).unwrap();
        fs::write(dst.join(".xsync-tmp.local"), b"the user's, in dst").unwrap();
        fs::write(dst.join(".xsync-tmp.kept"), b"excluded").unwrap();
    }
    let flags = ["-ai", "--delete", "--exclude=.xsync-tmp.kept"];
    let mut outs = Vec::new();
    for round in 0..2 {
        let x = run(xsync()
            .args(flags)
            .arg(format!("{}/", src.display()))
            .arg(t.path().join("x")));
        let r = run(rsync()
            .unwrap()
            .args(flags)
            .arg(format!("{}/", src.display()))
            .arg(t.path().join("r")));
        assert_eq!(code(&x), 0, "{}", stderr(&x));
        assert_eq!(code(&r), 0);
        assert_eq!(
            names(&t.path().join("x")),
            names(&t.path().join("r")),
            "round {round}"
        );
        outs.push(String::from_utf8_lossy(&x.stdout).into_owned());
    }
    assert!(outs[0].contains(".xsync-tmp.notes"), "{}", outs[0]);
    assert!(
        outs[0].contains("*deleting   .xsync-tmp.local"),
        "{}",
        outs[0]
    );
    // The second run finds them equal: nothing to say.
    assert_eq!(outs[1], "", "second run itemized");
    let x = t.path().join("x");
    assert_eq!(fs::read(x.join("d/.xsync-tmp.x")).unwrap(), b"also mine");
    assert_eq!(fs::read(x.join(".xsync-tmp.kept")).unwrap(), b"excluded");
}

#[test]
fn without_delete_a_users_look_alike_file_in_the_destination_stays() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    fs::write(dst.join(".xsync-tmp.mine"), b"mine").unwrap();
    let out = run(xsync()
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(&dst));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dst.join(".xsync-tmp.mine")).unwrap(), b"mine");
}

#[test]
fn a_gone_runs_temporary_is_removed_and_a_live_runs_is_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"f").unwrap();
    let dst = t.path().join("dst");
    fs::create_dir_all(dst.join("d")).unwrap();
    let (host, boot) = this_machine();
    // A live run: a process that is still there, with its real start time.
    let mut live = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let live_start = process_start(live.id()).expect("/proc");
    let live_name = String::from_utf8(name_for(host, boot, live.id(), live_start, 7)).unwrap();
    // A gone run: a process that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let gone_name = String::from_utf8(name_for(host, boot, gone_pid, 1, 8)).unwrap();
    for dir in [dst.clone(), dst.join("d")] {
        fs::write(dir.join(&live_name), b"in flight").unwrap();
        fs::write(dir.join(&gone_name), b"left by kill -9").unwrap();
    }
    let out = run(xsync()
        .args(["-a", "--delete"])
        .arg(format!("{}/", src.display()))
        .arg(&dst));
    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for dir in [dst.clone(), dst.join("d")] {
        assert!(
            dir.join(&live_name).exists(),
            "{dir:?}: the live run's temporary went"
        );
        assert!(
            !dir.join(&gone_name).exists(),
            "{dir:?}: the gone run's temporary stayed"
        );
    }
}

#[test]
fn a_second_run_into_the_same_destination_does_not_break_the_first() {
    // The first run pulls `big` from a server that stalls halfway through its data; a
    // second, local run with --delete goes through the same destination meanwhile. The
    // first run then finishes: its temporary must still be there to rename.
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let other = t.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("big"), b"older").unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server = HostileServer::start(t.path(), move |p: &mut Peer| {
        p.accept().expect("handshake");
        p.send_dir_sources().expect("sources");
        let whole = b"first half, second half".to_vec();
        let listing = vec![wire(b"big", Kind::File, whole.len() as u64)];
        let _ = p.serve_by(vec![listing], |p, req| {
            p.send(Msg::Data {
                id: req.id(),
                data: whole[..11].to_vec(),
                end: None,
            })?;
            go_rx.recv().expect("go");
            p.send(Msg::Data {
                id: req.id(),
                data: whole[11..].to_vec(),
                end: Some(xsync::protocol::data_digest(&whole)),
            })
        });
    });
    let first = xsync()
        .args(["-a"])
        .args(server.via())
        .arg("host:src/")
        .arg(&dst)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while find_named(&dst, ".xsync-tmp.").is_empty() {
        assert!(Instant::now() < deadline, "no temporary appeared in dst");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(xsync()
        .args(["-a", "--delete"])
        .arg(format!("{}/", other.display()))
        .arg(&dst));
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    go_tx.send(()).unwrap();
    let first = first.wait_with_output().unwrap();
    server.finish();
    assert_eq!(code(&first), 0, "first run: {}", stderr(&first));
    assert_eq!(
        fs::read(dst.join("big")).unwrap(),
        b"first half, second half"
    );
    assert!(find_named(&dst, ".xsync-tmp.").is_empty());
}
