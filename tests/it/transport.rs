//! rsync's transport options: `--timeout` (exit 30 when the connection stands still, at
//! either end), `--bwlimit` (a lower bound on the run's time), `-s`/`--old-args`,
//! `--contimeout`, `-4`/`-6`, `--blocking-io`. Timeouts are compared with rsync in the
//! same situation: a remote shell that never answers, a remote end that stops mid-run.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::remote::{TEMP_PREFIX, alive, descendants, small_tree, wait_bounded, xsync_over};
use crate::sshd::Sshd;
use crate::util::{
    Compare, code, diff_trees, find_named, have_rsync, pseudo_random, rsync, run, set_mtime, slash,
    stderr, test_dir, xsync,
};

/// rsync's line, `[sender] io timeout after 2 seconds -- exiting`, with the end's name and
/// the count left open.
fn has_timeout_line(text: &str, seconds: u64) -> bool {
    text.lines().any(|l| {
        let Some(rest) = l.strip_prefix('[') else {
            return false;
        };
        let Some((who, tail)) = rest.split_once("] io timeout after ") else {
            return false;
        };
        let Some(n) = tail.strip_suffix(" seconds -- exiting") else {
            return false;
        };
        !who.is_empty()
            && who.chars().all(|c| c.is_ascii_alphabetic())
            && n.parse::<u64>()
                .is_ok_and(|n| n >= seconds && n <= seconds + 1)
    })
}

/// A remote shell that starts nothing that answers: rsync and xsync each give up after
/// `--timeout=2` with exit 30 and rsync's message, pushing and pulling.
#[test]
fn timeout_on_a_remote_that_never_answers_exits_30_as_rsync() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    // `exec`, so ending the shell ends the sleep (and the test's stderr pipe closes).
    let rsh = "sh -c 'exec sleep 8'";
    for push in [true, false] {
        let (from, to) = if push {
            (slash(&src), "h:dst/".into())
        } else {
            ("h:src/".into(), dir.path().join("pulled").into_os_string())
        };
        let mut outs: Vec<(&str, Output, Duration)> = Vec::new();
        for (name, mut cmd) in [("rsync", rsync().expect("checked")), ("xsync", xsync())] {
            cmd.env_remove("XSYNC_RSH")
                .args(["-a", "--timeout=2", "-e", rsh])
                .arg(&from)
                .arg(&to)
                .stdin(Stdio::null());
            let start = Instant::now();
            let out = run(&mut cmd);
            outs.push((name, out, start.elapsed()));
        }
        for (name, out, took) in &outs {
            assert_eq!(
                code(out),
                30,
                "{test}: {name} (push: {push}) exited {} after {took:?}; stderr:\n{}",
                code(out),
                stderr(out)
            );
            assert!(
                has_timeout_line(&stderr(out), 2),
                "{test}: {name} (push: {push}) has no `[who] io timeout after 2 seconds -- \
                 exiting` line; stderr:\n{}",
                stderr(out)
            );
            assert!(
                *took >= Duration::from_secs(2),
                "{test}: {name} gave up after {took:?}"
            );
        }
        assert!(
            stderr(&outs[1].1).contains("timeout in data send/receive (code 30)"),
            "{test}: {}",
            stderr(&outs[1].1)
        );
    }
}

/// `--timeout=0` is no timeout: a remote that answers only after 3 s is waited for (and,
/// not being xsync, is a protocol error, not a timeout).
#[test]
fn timeout_zero_waits_as_long_as_it_takes() {
    let test = this_test!();
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    let start = Instant::now();
    let out = run(xsync()
        .args(["-a", "--timeout=0", "-e", "sh -c 'exec sleep 3'"])
        .arg(slash(&src))
        .arg("h:dst/")
        .stdin(Stdio::null()));
    assert_ne!(code(&out), 30, "{test}: {}", stderr(&out));
    assert!(start.elapsed() >= Duration::from_secs(3), "{test}");
}

/// A local copy has no connection to time out: `--timeout` is accepted, as rsync accepts
/// it. `--bwlimit` is refused (exit 1, saying why): rsync's slows its internal pipe and so
/// the copy, and xsync's local copy has no pipe and does not pace its disk I/O.
#[test]
fn local_copy_accepts_timeout_and_refuses_bwlimit() {
    let test = this_test!();
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    small_tree(&src);
    let out = run(xsync()
        .args(["-a", "--bwlimit=1m"])
        .arg(slash(&src))
        .arg(slash(&dst)));
    assert_eq!(code(&out), 1, "{test}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("--bwlimit"),
        "{test}: {}",
        stderr(&out)
    );
    assert!(!dst.exists(), "{test}: refused, but copied");
    let out = run(xsync()
        .args(["-a", "--timeout=1", "--bwlimit=0"])
        .arg(slash(&src))
        .arg(slash(&dst)));
    assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
    let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
    assert!(diffs.is_empty(), "{test}: {}", diffs.join("\n"));
}

/// Files big enough that a transfer at `RATE` KiB/s lasts a few seconds, each streamed
/// into its temporary (bigger than the receiver's small-file size). `seed` sets the content
/// and the mtime, so two trees differ in both.
const FILES: usize = 2;
const FILE_LEN: usize = 3 << 20;
const RATE: &str = "1000";

fn big_tree(root: &Path, seed: u64) {
    fs::create_dir_all(root).expect("mkdir");
    for i in 0..FILES {
        fs::write(
            root.join(format!("f{i}")),
            pseudo_random(seed + i as u64, FILE_LEN),
        )
        .expect("write");
        set_mtime(
            &root.join(format!("f{i}")),
            1_600_000_000 + seed as i64 * 1000,
            0,
        );
    }
}

/// Every file in `dst` is its version from `old` or from `new`, and none is missing.
fn old_or_new(test: &str, dst: &Path, old: &Path, new: &Path) {
    for i in 0..FILES {
        let name = format!("f{i}");
        let got = fs::read(dst.join(&name)).unwrap_or_else(|e| panic!("{test}: {name}: {e}"));
        let is = |p: &Path| fs::read(p.join(&name)).is_ok_and(|b| b == got);
        assert!(
            is(old) || is(new),
            "{test}: dst/{name} is neither old nor new"
        );
    }
}

/// The remote xsync processes (below sshd).
fn remote_xsyncs(sshd: &Sshd) -> Vec<u32> {
    descendants(sshd.pid())
        .into_iter()
        .filter(|(_, comm)| comm == "xsync")
        .map(|(pid, _)| pid)
        .collect()
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Waits for a temporary in `dir`: file data is on its way.
fn wait_for_temp(test: &str, dir: &Path, child: &mut std::process::Child, err: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while find_named(dir, TEMP_PREFIX).is_empty() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{test}: exited ({st}) before any temporary appeared; stderr:\n{}",
                fs::read_to_string(err).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{test}: no temporary after 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// New big files in `src`, and `dst` a copy of their old versions, which stay in `old` to
/// check "old or new" against.
fn old_and_new(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (src, old, dst) = (dir.join("src"), dir.join("old"), dir.join("dst"));
    big_tree(&src, 1);
    big_tree(&old, 100);
    let st = Command::new("cp")
        .arg("-a")
        .arg(&old)
        .arg(&dst)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {old:?} {dst:?}");
    (src, old, dst)
}

/// A pull whose remote xsync stops answering mid-file (SIGSTOP): the client gives up after
/// the timeout with exit 30 and rsync's message, removes the file it was writing, and every
/// destination file is old or new. (rsync 3.5.0 is not compared here: in this situation it
/// keeps waiting, because the keepalives it writes into the stopped peer's buffers count
/// as its own I/O. xsync does not count its keepalives, so it notices.)
#[test]
fn timeout_when_the_remote_end_stops_mid_pull_exits_30_and_leaves_old_or_new() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let (src, old, dst) = old_and_new(dir.path());
    let err = dir.path().join("stderr");
    let mut child = xsync_over(&sshd)
        .args(["-a", "--whole-file", "--timeout=2", "--bwlimit", RATE])
        .arg(sshd.remote(slash(&src)))
        .arg(slash(&dst))
        .stdout(Stdio::null())
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn");
    wait_for_temp(test, &dst, &mut child, &err);
    let remote = remote_xsyncs(&sshd);
    assert!(!remote.is_empty(), "{test}: no remote xsync below sshd");
    for &p in &remote {
        signal(p, rustix::process::Signal::STOP);
    }
    let stopped = Instant::now();
    let status = wait_bounded(&mut child, Duration::from_secs(15));
    for &p in &remote {
        signal(p, rustix::process::Signal::KILL);
    }
    let text = fs::read_to_string(&err).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("{test}: still running 15 s after the remote stopped; stderr:\n{text}")
    });
    assert_eq!(status.code(), Some(30), "{test}: stderr:\n{text}");
    assert!(
        has_timeout_line(&text, 2),
        "{test}: no timeout line; stderr:\n{text}"
    );
    assert!(stopped.elapsed() >= Duration::from_secs(2), "{test}");
    old_or_new(test, &dst, &old, &src);
    let left = find_named(&dst, TEMP_PREFIX);
    assert!(left.is_empty(), "{test}: temporaries left: {left:?}");
}

/// A push whose client stops (SIGSTOP) mid-file: the server was given the timeout, gives
/// up on its own, and removes the temporary it was writing; the destination keeps every
/// file old or new.
#[test]
fn timeout_reaches_the_server_when_the_client_stops() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let (src, old, dst) = old_and_new(dir.path());
    let err = dir.path().join("stderr");
    let mut child = xsync_over(&sshd)
        .args(["-a", "--whole-file", "--timeout=2", "--bwlimit", RATE])
        .arg(slash(&src))
        .arg(sshd.remote(slash(&dst)))
        .stdout(Stdio::null())
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn");
    wait_for_temp(test, &dst, &mut child, &err);
    let server = remote_xsyncs(&sshd);
    assert!(!server.is_empty(), "{test}: no remote xsync");
    signal(child.id(), rustix::process::Signal::STOP);
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.iter().any(|&p| alive(p)) {
        if Instant::now() > deadline {
            signal(child.id(), rustix::process::Signal::KILL);
            let _ = child.wait();
            panic!("{test}: the server still runs 15 s after its client stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(child.id(), rustix::process::Signal::KILL);
    let _ = child.wait();
    let text = fs::read_to_string(&err).unwrap_or_default();
    // The server's stderr reaches the client's through ssh.
    assert!(
        has_timeout_line(&text, 2),
        "{test}: no timeout line from the server; stderr:\n{text}"
    );
    old_or_new(test, &dst, &old, &src);
    let left = find_named(&dst, TEMP_PREFIX);
    assert!(left.is_empty(), "{test}: temporaries left: {left:?}");
}

/// With `--timeout`, a transfer that keeps moving is not cut, and the keepalives an idle
/// end sends meanwhile (the receiver of a push writes nothing while files stream in) do not
/// disturb the stream, plain or compressed.
#[test]
fn timeout_does_not_cut_a_transfer_that_keeps_moving() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    big_tree(&src, 7);
    for (i, extra) in [&[][..], &["-z"][..]].into_iter().enumerate() {
        for push in [true, false] {
            let dst = dir.path().join(format!("dst{i}{push}"));
            let mut cmd = xsync_over(&sshd);
            cmd.args(["-a", "--timeout=1", "--bwlimit=2000"])
                .args(extra);
            if push {
                cmd.arg(slash(&src)).arg(sshd.remote(slash(&dst)));
            } else {
                cmd.arg(sshd.remote(slash(&src))).arg(slash(&dst));
            }
            let out = run(&mut cmd);
            assert_eq!(
                code(&out),
                0,
                "{test} {extra:?} push {push}: {}",
                stderr(&out)
            );
            let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
            assert!(diffs.is_empty(), "{test}: {}", diffs.join("\n"));
        }
    }
}

/// `--bwlimit` holds a push and a pull to the rate: 6 MiB at 2000 KiB/s cannot take less
/// than about 3 s (a lower bound only; the rate is what this end writes, paced as rsync
/// paces it, so the last tenth of a second may be early).
#[test]
fn bwlimit_holds_a_push_and_a_pull_to_the_rate() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    big_tree(&src, 3);
    let bytes = (FILES * FILE_LEN) as f64;
    let rate = 2000.0 * 1024.0;
    for push in [true, false] {
        let dst = dir.path().join(format!("dst{push}"));
        let mut cmd = xsync_over(&sshd);
        cmd.args(["-a", "--bwlimit=2000"]);
        if push {
            cmd.arg(slash(&src)).arg(sshd.remote(slash(&dst)));
        } else {
            cmd.arg(sshd.remote(slash(&src))).arg(slash(&dst));
        }
        let start = Instant::now();
        let out = run(&mut cmd);
        let took = start.elapsed().as_secs_f64();
        assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
        assert!(
            took >= bytes / rate - 0.2,
            "{test}: {} bytes (push: {push}) in {took:.2} s is faster than 2000 KiB/s",
            bytes
        );
        let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
        assert!(diffs.is_empty(), "{test}: {}", diffs.join("\n"));
    }
}

/// What rsync refuses in a rate, xsync refuses with rsync's words and exit 1 (the values
/// it accepts are pinned by a unit test in `cli.rs`).
#[test]
fn bad_bwlimit_values_are_refused_as_rsync_refuses_them() {
    let test = this_test!();
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    let dst = dir.path().join("dst");
    for value in ["511b", "1b", "abc", "2x", "1.5q", "-1"] {
        let mut outs = vec![("xsync", xsync())];
        if let Some(r) = rsync() {
            outs.push(("rsync", r));
        }
        for (name, mut cmd) in outs {
            let out = run(cmd
                .arg(format!("--bwlimit={value}"))
                .arg("-a")
                .arg(slash(&src))
                .arg(slash(&dst)));
            assert_eq!(
                code(&out),
                1,
                "{test}: {name} --bwlimit={value}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(&format!("--bwlimit={value} is")),
                "{test}: {name}: {}",
                stderr(&out)
            );
        }
    }
}

/// `--old-args`: rsync hands the remote paths to the remote shell unquoted, so
/// `host:'DIR/a DIR/b'` names two sources; xsync's server splits them the same way. The
/// trees and exit codes match rsync's.
#[test]
fn old_args_splits_remote_paths_as_rsyncs_remote_shell_does() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    crate::util::TestTree::at(&src)
        .file("a", b"a\n")
        .file("b", b"b\n")
        .file("c", b"c\n")
        .stamp(false);
    let spec = format!("{} {}", src.join("a").display(), src.join("b").display());
    let mut results = Vec::new();
    for (name, mut cmd) in [
        ("rsync", rsync().expect("checked")),
        ("xsync", xsync_over(&sshd)),
    ] {
        if name == "rsync" {
            cmd.args(["-e", &sshd.rsh()]).stdin(Stdio::null());
        }
        let dst = dir.path().join(format!("dst-{name}"));
        let out = run(cmd
            .args(["-a", "--old-args"])
            .arg(sshd.remote(&spec))
            .arg(slash(&dst)));
        assert_eq!(code(&out), 0, "{test}: {name}: {}", stderr(&out));
        results.push(dst);
    }
    // The destination directory is made, not copied: its time is the clock's.
    let cmp = Compare::for_flags(&["-a"]).ignoring_times_of([""]);
    let diffs = diff_trees(&results[0], &results[1], &cmp);
    assert!(
        diffs.is_empty(),
        "{test}: rsync vs xsync:\n{}",
        diffs.join("\n")
    );
    assert!(results[1].join("a").is_file() && results[1].join("b").is_file());
    assert!(!results[1].join("c").exists());
}

/// `-s`/`--secluded-args`/`--protect-args` is what xsync always does (names travel inside
/// the protocol): accepted, and a name with blanks and shell characters arrives intact.
/// With `--old-args` it is refused, in rsync's words.
#[test]
fn secluded_args_is_accepted_and_conflicts_with_old_args() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    crate::util::TestTree::at(&src)
        .file("it's a $file; `x`", b"x\n")
        .stamp(false);
    for flag in ["-s", "--protect-args", "--secluded-args"] {
        let dst = dir.path().join(format!("dst {flag} $x"));
        let out = run(xsync_over(&sshd)
            .args(["-a", flag])
            .arg(slash(&src))
            .arg(sshd.remote(slash(&dst))));
        assert_eq!(code(&out), 0, "{test}: {flag}: {}", stderr(&out));
        let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
        assert!(diffs.is_empty(), "{test}: {flag}: {}", diffs.join("\n"));
    }
    let mut cmds = vec![xsync()];
    cmds.extend(rsync());
    for mut cmd in cmds {
        let out = run(cmd
            .args(["-a", "-s", "--old-args"])
            .arg(slash(&src))
            .arg("h:dst/"));
        assert_eq!(code(&out), 1, "{test}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--secluded-args conflicts with --old-args."),
            "{test}: {}",
            stderr(&out)
        );
    }
}

/// `-4`/`-6` reach the remote shell as rsync passes them: to a program named `ssh` only,
/// after the `-e` words and `-l user`, before the host. A stand-in `ssh` records its
/// arguments for rsync and for xsync.
#[test]
fn ip_family_is_passed_to_ssh_where_rsync_passes_it() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir");
    let log = dir.path().join("args");
    let fake = bin.join("ssh");
    fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", log.display()),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
    for flag in ["-4", "-6", "--ipv4", "--ipv6"] {
        let mut logged = Vec::new();
        for mut cmd in [rsync().expect("checked"), xsync()] {
            let _ = fs::remove_file(&log);
            let out = run(cmd
                .env_remove("XSYNC_RSH")
                .args(["-a", flag, "-e"])
                .arg(format!("{} -p 22", fake.display()))
                .arg(slash(&src))
                .arg("u@h:dst/")
                .stdin(Stdio::null()));
            assert_ne!(code(&out), 0, "{test}");
            // xsync may first ask this ssh for its configuration (`-G`, for the cipher
            // order and the connection: endpoint::sshopts); the connecting command line is
            // the other one.
            let all = fs::read_to_string(&log).unwrap_or_default();
            let line = all
                .lines()
                .find(|l| !l.split_whitespace().any(|w| w == "-G"))
                .unwrap_or_default();
            // Up to the host: the rest is each program's own server command. xsync's own
            // `-o Control*` words (its master connection for --streams) are left out.
            let mut words: Vec<String> = Vec::new();
            let mut it = line.split_whitespace().take_while(|w| *w != "h").peekable();
            while let Some(w) = it.next() {
                if w == "-o" && it.peek().is_some_and(|o| o.starts_with("Control")) {
                    it.next();
                    continue;
                }
                words.push(w.to_string());
            }
            logged.push(words);
        }
        assert_eq!(logged[0], logged[1], "{test}: {flag}: rsync vs xsync");
        let want = if flag.contains('4') { "-4" } else { "-6" };
        assert!(
            logged[1].iter().any(|w| w == want),
            "{test}: {:?}",
            logged[1]
        );
    }
}

/// `--contimeout` is for daemon connections, which xsync does not make: refused with
/// rsync's message and exit 1, over a remote shell and locally alike.
#[test]
fn contimeout_is_refused_as_rsync_refuses_it_without_a_daemon() {
    let test = this_test!();
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    for rsync_too in [false, true] {
        for dst in ["h:dst/".into(), slash(&dir.path().join("dst"))] {
            let Some(mut cmd) = (if rsync_too { rsync() } else { Some(xsync()) }) else {
                continue;
            };
            let out = run(cmd
                .args(["-a", "--contimeout=5", "-e", "sh -c 'exit 1'"])
                .arg(slash(&src))
                .arg(&dst));
            assert_eq!(code(&out), 1, "{test}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(
                    "The --contimeout option may only be used when connecting to an rsync daemon."
                ),
                "{test}: {}",
                stderr(&out)
            );
        }
    }
}

/// `-4` and `--blocking-io` over a real ssh: the transfer works (the test's sshd listens
/// on 127.0.0.1; xsync's pipes to the remote shell are blocking anyway).
#[test]
fn ipv4_and_blocking_io_work_over_ssh() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    for (i, flags) in [&["-4", "--blocking-io"][..], &["--no-blocking-io"][..]]
        .into_iter()
        .enumerate()
    {
        let dst = dir.path().join(format!("dst{i}"));
        let out = run(xsync_over(&sshd)
            .arg("-a")
            .args(flags)
            .arg(slash(&src))
            .arg(sshd.remote(slash(&dst))));
        assert_eq!(code(&out), 0, "{test}: {flags:?}: {}", stderr(&out));
        let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
        assert!(diffs.is_empty(), "{test}: {}", diffs.join("\n"));
    }
}

/// The cipher the ssh client reports choosing, from its `-v` lines on xsync's stderr.
fn chosen_cipher(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let rest = l.split_once("kex: client->server cipher: ")?.1;
        rest.split_whitespace().next().map(String::from)
    })
}

/// ssh is asked for AES-GCM first where the CPU has AES instructions and nobody chose the
/// ciphers: not the user's `-c`, not a `Ciphers` line of their ssh_config, which keep
/// chacha20-poly1305 first. Every push and pull copies the tree.
#[test]
fn ssh_prefers_aes_gcm_only_where_the_user_left_the_ciphers_alone() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    let config = dir.path().join("ssh_config");
    fs::write(
        &config,
        "Ciphers chacha20-poly1305@openssh.com,aes128-gcm@openssh.com\n",
    )
    .expect("write ssh_config");
    #[cfg(target_arch = "x86_64")]
    let aes = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let aes = std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let aes = false;
    let chacha = "chacha20-poly1305@openssh.com";
    let default = if aes {
        "aes128-gcm@openssh.com"
    } else {
        chacha
    };
    let cases = [
        ("default", String::new(), default),
        ("-c", format!(" -c {chacha}"), chacha),
        ("ssh_config", format!(" -F {}", config.display()), chacha),
    ];
    // Each case pushed, then pulled back: the remote shell is spawned the same way both ways.
    for (i, (what, extra, want)) in cases.iter().enumerate() {
        // -v after the harness's LogLevel=ERROR: ssh's debug lines name the cipher.
        let rsh = format!("{}{extra} -v", sshd.rsh());
        let pushed = dir.path().join(format!("pushed{i}"));
        let pulled = dir.path().join(format!("pulled{i}"));
        for (how, from, to, tree) in [
            ("push", slash(&src), sshd.remote(slash(&pushed)), &pushed),
            ("pull", sshd.remote(slash(&src)), slash(&pulled), &pulled),
        ] {
            let out = run(xsync()
                .env_remove("XSYNC_RSH")
                .args([
                    "-a",
                    "--streams=1",
                    "-e",
                    &rsh,
                    "--xsync-path",
                    crate::remote::XSYNC_BIN,
                ])
                .arg(from)
                .arg(to)
                .stdin(Stdio::null()));
            let err = stderr(&out);
            assert_eq!(code(&out), 0, "{test}: {what} {how}: {err}");
            assert_eq!(
                chosen_cipher(&err).as_deref(),
                Some(*want),
                "{test}: {what} {how}: {err}"
            );
            let diffs = diff_trees(&src, tree, &Compare::for_flags(&["-a"]));
            assert!(
                diffs.is_empty(),
                "{test}: {what} {how}: {}",
                diffs.join("\n")
            );
        }
    }
}

/// The `xsync --xsync-connect` processes still running for `port`, after allowing those
/// whose ssh has just exited a moment to notice (they poll it every millisecond).
fn connect_helpers_of(port: u16) -> Vec<String> {
    let find = || -> Vec<String> {
        let Ok(procs) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|p| fs::read(p.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| {
                c.contains("--xsync-connect") && c.trim_end().ends_with(&format!(" {port}"))
            })
            .collect()
    };
    for _ in 0..500 {
        if find().is_empty() {
            return Vec::new();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    find()
}

/// Where ssh's configuration connects directly, xsync has ssh take a socket it connected
/// with Nagle's algorithm off (endpoint::sshopts: `ProxyUseFdpass` with `xsync
/// --xsync-connect` as the `ProxyCommand`); a `ProxyCommand` of the user's own is used as
/// it is. Every push and pull copies the tree; a port nobody listens on fails in ssh's
/// words with ssh's exit code.
#[test]
fn ssh_is_handed_a_socket_with_nagle_off_only_where_it_would_connect_directly() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    // The user's own proxy: a relay through bash's /dev/tcp, which ends with ssh's side of
    // it (the reading half would otherwise hold the connection, and the test's pipes).
    let config = dir.path().join("ssh_config");
    fs::write(
        &config,
        "ProxyCommand bash -c \"exec 3<>/dev/tcp/%h/%p; cat <&3 & cat >&3; kill $!\"\n",
    )
    .expect("write ssh_config");
    let ours = "--xsync-connect any none 1 yes 127.0.0.1";
    let cases = [
        ("direct", String::new(), ours),
        (
            "ProxyCommand",
            format!(" -F {}", config.display()),
            "Executing proxy command: exec bash -c",
        ),
    ];
    for (i, (what, extra, want)) in cases.iter().enumerate() {
        // -v after the harness's LogLevel=ERROR: ssh says what it executes to connect.
        let rsh = format!("{}{extra} -v", sshd.rsh());
        let pushed = dir.path().join(format!("pushed{i}"));
        let pulled = dir.path().join(format!("pulled{i}"));
        for (how, from, to, tree) in [
            ("push", slash(&src), sshd.remote(slash(&pushed)), &pushed),
            ("pull", sshd.remote(slash(&src)), slash(&pulled), &pulled),
        ] {
            let out = run(xsync()
                .env_remove("XSYNC_RSH")
                .args(["-a", "-e", &rsh, "--xsync-path", crate::remote::XSYNC_BIN])
                .arg(from)
                .arg(to)
                .stdin(Stdio::null()));
            let err = stderr(&out);
            assert_eq!(code(&out), 0, "{test}: {what} {how}: {err}");
            assert!(err.contains(want), "{test}: {what} {how}: {err}");
            // The helper's child that kept the login's ACKs prompt went with ssh.
            let left = connect_helpers_of(sshd.port());
            assert!(
                left.is_empty(),
                "{test}: {what} {how}: left running: {left:?}"
            );
            if *what != "direct" {
                assert!(
                    !err.contains("--xsync-connect"),
                    "{test}: {what} {how}: {err}"
                );
            }
            let diffs = diff_trees(&src, tree, &Compare::for_flags(&["-a"]));
            assert!(
                diffs.is_empty(),
                "{test}: {what} {how}: {}",
                diffs.join("\n")
            );
        }
    }
    // A port nothing listens on (bound, then closed): ssh's message and its 255.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let rsh = sshd
        .rsh()
        .replacen(&format!("-p {}", sshd.port()), &format!("-p {port}"), 1);
    let out = run(xsync()
        .env_remove("XSYNC_RSH")
        .args(["-a", "-e", &rsh, "--xsync-path", crate::remote::XSYNC_BIN])
        .arg(slash(&src))
        .arg(sshd.remote(slash(&dir.path().join("refused"))))
        .stdin(Stdio::null()));
    let err = stderr(&out);
    assert_eq!(code(&out), 255, "{test}: {err}");
    assert!(
        err.contains(&format!(
            "connect to host 127.0.0.1 port {port}: Connection refused"
        )),
        "{test}: {err}"
    );
    assert!(!dir.path().join("refused").exists(), "{test}");
}
