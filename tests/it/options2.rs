//! rsync options beyond the core set, each against the real rsync.

use crate::remote::{Direction, remote_case};
use crate::util::*;

/// Linux cannot set a file's creation time: rsync there refuses `-N` with exit 1 and
/// names the option; so does xsync, before touching anything.
#[test]
fn crtimes_is_refused_as_rsync_refuses_it_on_linux() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    TestTree::at(&src).file("f", b"f\n");
    for flag in ["-N", "--crtimes"] {
        let mut outs = Vec::new();
        for (tool, mut cmd) in [("rsync", rsync().expect("rsync")), ("xsync", xsync())] {
            let dst = dir.path().join(format!("dst-{tool}"));
            let out = run(cmd.args(["-a", flag]).arg(slash(&src)).arg(&dst));
            assert!(!dst.exists(), "{tool} {flag}: created the destination");
            outs.push(out);
        }
        assert_eq!(code(&outs[0]), code(&outs[1]), "{flag}");
        for out in &outs {
            assert!(
                stderr(out).contains("does not support --crtimes (-N)"),
                "{flag}: {}",
                stderr(out)
            );
        }
    }
}

/// The rsync options not built yet are refused before anything is touched (exit 1, as
/// rsync's own refusals), each with what it would have done in rsync.
#[test]
fn options_not_built_are_refused_with_what_rsync_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    TestTree::at(&src).file("f", b"f\n");
    for (flag, says) in [
        ("--append", "appended"),
        ("--append-verify", "checking the whole file"),
        ("--temp-dir=tmp", "temporary files"),
        ("-T", "temporary files"),
        ("-aU", "access times"),
        ("--munge-links", "/rsyncd-munged/"),
        ("--fake-super", "user.rsync.%stat"),
        ("--remove-source-files", "removes"),
        ("--out-format=%n", "% escapes"),
    ] {
        let dst = dir.path().join("dst");
        let out = run(xsync().arg(flag).arg(slash(&src)).arg(&dst));
        assert_eq!(code(&out), 1, "{flag}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{flag}: {}", stderr(&out));
        assert!(!dst.exists(), "{flag}");
    }
}

/// `--delay-updates` ends with rsync's tree (new files, updated ones, hard links and
/// directory times set after the renames), locally, pushed and pulled, and on the re-runs.
#[test]
fn delay_updates_ends_with_rsyncs_tree() {
    let test = this_test!();
    for slash in [true, false] {
        differential(
            test,
            &["-aH", "--delay-updates"],
            slash,
            Fixture::over_older_copy(),
        );
        differential(
            test,
            &["-aH", "--delay-updates", "--delete"],
            slash,
            Fixture::awkward(),
        );
    }
    for direction in [Direction::Push, Direction::Pull] {
        let case = simple_case(
            &["-aH", "--delay-updates"],
            true,
            Fixture::over_older_copy(),
        );
        remote_case(&format!("{test} ({direction:?})"), &case, direction);
    }
}

/// The same `-i` lines as rsync's (the order aside, which is not this option's).
#[test]
fn delay_updates_itemizes_as_rsync() {
    let test = this_test!();
    let Some(out) = differential(
        test,
        &["-ai", "--delay-updates"],
        true,
        Fixture::over_older_copy(),
    ) else {
        return;
    };
    let sorted = |o: &std::process::Output| {
        let mut l: Vec<String> = stdout(o).lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(sorted(&out.a), sorted(&out.b));
}

/// Like rsync, `--delay-updates` with `--inplace` is a usage error (exit 1).
#[test]
fn delay_updates_with_inplace_is_refused_as_rsync() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    TestTree::at(&src).file("f", b"f\n");
    let flags = ["-a", "--inplace", "--delay-updates"];
    let r = run(rsync()
        .expect("rsync")
        .args(flags)
        .arg(slash(&src))
        .arg(dir.path().join("r")));
    let x = run(xsync()
        .args(flags)
        .arg(slash(&src))
        .arg(dir.path().join("x")));
    assert_eq!(code(&r), code(&x));
    assert!(
        stderr(&x).contains("--inplace cannot be used with --delay-updates"),
        "{}",
        stderr(&x)
    );
}
