//! Exit codes and error messages: the same meaning as rsync's (same exit code, the offending
//! option or path named on stderr), and what could be copied is copied.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::*;

/// Usage errors exit 1 and name the option.
#[test]
fn unknown_option_is_a_usage_error() {
    let out = run(xsync().args(["--no-such-option", "a", "b"]));
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("--no-such-option"),
        "stderr does not name the option: {}",
        stderr(&out)
    );
    match rsync() {
        Some(mut r) => {
            let rout = run(r.args(["--no-such-option", "a", "b"]));
            assert_eq!(code(&rout), code(&out), "rsync: {}", stderr(&rout));
        }
        None => skip(this_test!(), "rsync not installed (not compared)"),
    }
}

/// A long option one typo away from a real one is named back to the user: `--delet` is
/// most likely `--delete`. (Still exit 1, as rsync's refusal of an unknown option.)
#[test]
fn a_mistyped_long_option_is_answered_with_the_nearest_one() {
    let out = run(xsync().args(["--delet", "a", "b"]));
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("--delet: unknown option; did you mean `--delete`?"),
        "no suggestion: {}",
        stderr(&out)
    );
    // Nothing near: no guess.
    let out = run(xsync().args(["--zzzzqqq", "a", "b"]));
    assert_eq!(code(&out), 1);
    assert!(!stderr(&out).contains("did you mean"), "{}", stderr(&out));
    match rsync() {
        Some(mut r) => assert_eq!(code(&run(r.args(["--delet", "a", "b"]))), 1),
        None => skip(this_test!(), "rsync not installed (not compared)"),
    }
}

/// rsync's `-h` is `--human-readable`, but alone it prints the help (exit 0).
#[test]
fn dash_h_alone_prints_help_and_with_other_arguments_is_human_readable() {
    let out = run(xsync().arg("-h"));
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(
        stdout(&out).contains("Usage:"),
        "not help: {}",
        stdout(&out)
    );
    // The paths are explained, not shown as clap's `[SRC... DEST]...  SRC... DEST`.
    assert!(
        stdout(&out).contains("[PATH]...  the sources, then the destination"),
        "{}",
        stdout(&out)
    );
    match rsync() {
        Some(mut r) => assert_eq!(code(&run(r.arg("-h"))), 0),
        None => skip(this_test!(), "rsync not installed (not compared)"),
    }
    let dir = test_dir();
    TestTree::at(&dir.path().join("src")).file("f", &[7u8; 3000]);
    let out = run(xsync()
        .args(["-h", "-a", "--stats"])
        .arg(slash(&dir.path().join("src")))
        .arg(slash(&dir.path().join("dst"))));
    assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    assert!(!stdout(&out).contains("Usage:"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Total file size: 3.00K bytes"),
        "-h did not make the sizes human-readable: {}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(dir.path().join("dst/f")).unwrap(),
        [7u8; 3000]
    );
}

/// rsync refuses `--delete` without `-r`: deleting needs a walk of the destination's
/// directories, and a script that forgot `-r` must hear about it, not copy nothing quietly.
#[test]
fn delete_without_recursion_is_a_usage_error() {
    let test = this_test!();
    let dir = test_dir();
    TestTree::at(&dir.path().join("src")).file("f", b"f\n");
    let args = |cmd: &mut std::process::Command| {
        cmd.arg("--delete")
            .arg(slash(&dir.path().join("src")))
            .arg(slash(&dir.path().join("dst")));
    };
    let mut x = xsync();
    args(&mut x);
    let out = run(&mut x);
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("--recursive"), "{}", stderr(&out));
    assert!(
        !dir.path().join("dst").exists(),
        "a refused run created dst"
    );
    match rsync() {
        Some(mut r) => {
            args(&mut r);
            let rout = run(&mut r);
            assert_eq!(code(&rout), code(&out), "rsync: {}", stderr(&rout));
        }
        None => skip(test, "rsync not installed (not compared)"),
    }
}

/// A `--chmod` rsync cannot parse: exit 1 and rsync's message, nothing copied.
#[test]
fn unparsable_chmod_is_a_usage_error() {
    let out = run(xsync().args(["-a", "--chmod=u+rw-x", "a/", "b/"]));
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("Invalid argument passed to --chmod (u+rw-x)"),
        "{}",
        stderr(&out)
    );
    match rsync() {
        Some(mut r) => {
            let rout = run(r.args(["-a", "--chmod=u+rw-x", "a/", "b/"]));
            assert_eq!(code(&rout), code(&out), "rsync: {}", stderr(&rout));
        }
        None => skip(this_test!(), "rsync not installed (not compared)"),
    }
}

/// --ignore-missing-args: a source argument that is not there is left out without an error,
/// as rsync (exit 0); the others are copied.
#[test]
fn ignore_missing_args_skips_a_missing_source() {
    let case = Case {
        flags: &["-a", "--ignore-missing-args"],
        ..missing_source_case()
    };
    let Some(out) = run_case(this_test!(), &case) else {
        return;
    };
    assert_eq!(code(&out.b), 0, "xsync stderr: {}", stderr(&out.b));
    assert!(stderr(&out.b).is_empty(), "xsync said: {}", stderr(&out.b));
    assert!(
        out.side_b().join("dst/top.txt").is_file(),
        "the good source was not copied"
    );
}

fn missing_source_case() -> Case<'static> {
    Case::new(&["-a"], &["no-such-source", "src/"], "dst/")
}

/// A missing source among good ones: exit 23, the path named, the rest copied.
#[test]
fn missing_source_is_a_partial_transfer() {
    let case = missing_source_case();
    let Some(out) = run_case(this_test!(), &case) else {
        return;
    };
    assert_eq!(code(&out.b), 23, "xsync stderr: {}", stderr(&out.b));
    assert!(
        stderr(&out.b).contains("no-such-source"),
        "stderr does not name the missing source: {}",
        stderr(&out.b)
    );
    assert!(
        out.side_b().join("dst/top.txt").is_file(),
        "the good source was not copied"
    );
}

fn readable_except_one(root: &Path) {
    let t = TestTree::at(root);
    t.file("one.txt", b"one\n")
        .file("secret.txt", b"secret\n")
        .file("sub/two.txt", b"two\n")
        .file("sub/three.txt", b"three\n");
    for dir in ["", "sub"] {
        t.chmod(dir, 0o755);
    }
    for f in ["one.txt", "sub/two.txt", "sub/three.txt"] {
        t.chmod(f, 0o644);
    }
    t.chmod("secret.txt", 0o000);
    t.stamp(false);
}

fn give_side_to_nobody(side: &Path) {
    for entry in scan(side, false).into_keys() {
        std::os::unix::fs::lchown(side.join(entry), Some(65534), Some(65534))
            .unwrap_or_else(|e| panic!("chown side to nobody: {e}"));
    }
}

const SETPRIV: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// The unreadable-file case, run as nobody when we are root (root reads everything); `None`
/// (after a skip notice) when that needs setpriv and it is missing.
fn unreadable_case(test: &str) -> Option<Case<'static>> {
    let wrap: &[&str] = if is_root() {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join("setpriv").is_file());
        if !found {
            skip(test, "running as root and setpriv is not installed");
            return None;
        }
        SETPRIV
    } else {
        &[]
    };
    Some(Case {
        fixture: Fixture {
            side: if is_root() {
                Some(give_side_to_nobody)
            } else {
                None
            },
            ..Fixture::with_src(readable_except_one)
        },
        wrap,
        ..Case::new(&["-a"], &["src/"], "dst/")
    })
}

/// An unreadable file among readable ones: exit 23, the file named, the others copied.
#[test]
fn unreadable_file_is_reported_and_others_copied() {
    let test = this_test!();
    let Some(case) = unreadable_case(test) else {
        return;
    };
    let Some(out) = run_case(test, &case) else {
        return;
    };
    let err = stderr(&out.b);
    assert_eq!(code(&out.b), 23, "xsync stderr: {err}");
    assert!(
        err.contains("secret.txt"),
        "stderr does not name the file: {err}"
    );
    for f in ["one.txt", "sub/two.txt", "sub/three.txt"] {
        assert!(out.side_b().join("dst").join(f).is_file(), "{f} not copied");
    }
    // Leave the test directory removable by a non-root owner.
    let _ = fs::set_permissions(
        out.src().join("secret.txt"),
        fs::Permissions::from_mode(0o600),
    );
}

fn missing_parent_case() -> Case<'static> {
    Case {
        fixture: Fixture {
            dst_exists: false,
            ..Fixture::awkward()
        },
        ..Case::new(&["-a"], &["src/"], "nonexistent/a/b")
    }
}

/// A destination whose parent is missing: exit 11 and the path named.
#[test]
fn missing_destination_parent_is_a_file_io_error() {
    let case = missing_parent_case();
    let Some(out) = run_case(this_test!(), &case) else {
        return;
    };
    assert_eq!(code(&out.b), 11, "xsync stderr: {}", stderr(&out.b));
    assert!(
        stderr(&out.b).contains("nonexistent/a/b"),
        "stderr does not name the destination: {}",
        stderr(&out.b)
    );
}

/// --help and --version succeed and print something.
#[test]
fn help_and_version_exit_zero() {
    for flag in ["--help", "--version"] {
        let out = run(xsync().arg(flag));
        assert_eq!(code(&out), 0, "xsync {flag}: {}", stderr(&out));
        assert!(
            !out.stdout.is_empty(),
            "xsync {flag} printed nothing on stdout"
        );
    }
    let out = run(xsync().arg("--version"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("xsync"),
        "--version does not say xsync"
    );
}

/// The error fixtures provoke in rsync the errors they are meant to (so that an equal exit
/// code from xsync means something): 23 for a missing source and for an unreadable file
/// (really unreadable: privileges dropped), 11 for a missing destination parent.
#[test]
fn harness_error_cases_make_rsync_fail_as_expected() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let mut cases = vec![(missing_source_case(), 23), (missing_parent_case(), 11)];
    if let Some(case) = unreadable_case(test) {
        cases.push((case, 23));
    }
    for (case, want) in &cases {
        let (out, diffs) = run_pair(case, Tool::Rsync, Tool::Rsync);
        assert!(diffs.is_empty(), "{}", report(case, &out, &diffs));
        assert_eq!(code(&out.a), *want, "{}", report(case, &out, &diffs));
    }
}

/// rsync's contract on SIGINT: exit 20; and ours: the file being written is removed, the
/// target keeps its old content.
#[test]
fn sigint_exits_20_and_removes_the_temporary() {
    use std::time::{Duration, Instant};
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let src = base.path().join("src");
    let dst = base.path().join("dst");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dst.join("big"), b"old").unwrap();
    let f = std::fs::File::create(src.join("big")).unwrap();
    // Sparse source, dense copy: big enough to catch mid-write, cheap to make.
    f.set_len(3 << 30).unwrap();
    drop(f);
    let mut child = xsync()
        .arg("-a")
        .arg(crate::util::slash(&src))
        .arg(crate::util::slash(&dst))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        seen = std::fs::read_dir(&dst)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".xsync-tmp."));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if !seen {
        let _ = child.kill();
        let _ = child.wait();
        crate::util::skip(
            this_test!(),
            "the copy finished before a temporary was seen",
        );
        return;
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(20),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("code 20"));
    let left: Vec<_> = std::fs::read_dir(&dst)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("big")],
        "temporaries left: {left:?}"
    );
    assert_eq!(std::fs::read(dst.join("big")).unwrap(), b"old");
}

/// rsync drops `-o` for a normal user: files it cannot give away are not "changed" on the
/// next run, so a second `-a` run as a normal user lists and rewrites nothing.
#[test]
fn a_normal_users_second_archive_run_is_quiet() {
    let test = this_test!();
    if !is_root() {
        // Without root there is no file owned by someone else to copy.
        skip(test, "needs root to make files owned by another user");
        return;
    }
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("setpriv").is_file());
    if !found {
        skip(test, "setpriv is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let bin = tmp.path().join("xsync");
    fs::copy(env!("CARGO_BIN_EXE_xsync"), &bin).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("root-owned"), b"data").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    let dst = tmp.path().join("dst");
    let run_as_nobody = |extra: &[&str]| {
        let mut c = std::process::Command::new(SETPRIV[0]);
        c.args(&SETPRIV[1..])
            .arg(&bin)
            .arg("-a")
            .args(extra)
            .arg(crate::util::slash(&src))
            .arg(crate::util::slash(&dst));
        run(&mut c)
    };
    let first = run_as_nobody(&[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let second = run_as_nobody(&["-i"]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        "",
        "a no-op run listed changes"
    );
}
