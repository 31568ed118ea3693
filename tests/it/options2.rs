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

/// A source whose dangling symlink is an I/O error under `-L` (exit 23).
fn dangling_under_l(src: &std::path::Path) {
    let t = TestTree::at(src);
    t.file("a", b"a\n").dir("d").file("d/b", b"b\n");
    t.symlink("dangle", "nowhere");
    t.stamp(false);
}

/// Extraneous entries for --delete to remove (or, after an I/O error, to keep).
fn with_extraneous(dst: &std::path::Path) {
    let t = TestTree::at(dst);
    t.file("extra", b"x\n").file("d/extra", b"x\n");
    t.stamp(false);
}

/// After an I/O error rsync skips the deletions; `--ignore-errors` deletes anyway. Both
/// as rsync, locally, pushed and pulled, and on the re-runs.
#[test]
fn ignore_errors_deletes_after_io_errors_as_rsync() {
    let test = this_test!();
    let fixture = || Fixture {
        src: dangling_under_l,
        older: Some(with_extraneous),
        ..Fixture::awkward()
    };
    for flags in [
        &["-aL", "--delete"][..],
        &["-aL", "--delete", "--ignore-errors"],
    ] {
        for slash in [true, false] {
            differential(&format!("{test} {flags:?}"), flags, slash, fixture());
        }
    }
    // Over ssh (rsync's exit 23 rules out `remote_case`): the pushed and pulled trees are
    // the local rsync's.
    let Some(out) = differential(
        test,
        &["-aL", "--delete", "--ignore-errors"],
        true,
        fixture(),
    ) else {
        return;
    };
    let Some(sshd) = crate::sshd::Sshd::start(test) else {
        return;
    };
    for direction in [Direction::Push, Direction::Pull] {
        let dst = out.dir.path().join(format!("{direction:?}"));
        with_extraneous(&dst);
        let mut cmd = crate::remote::xsync_over(&sshd);
        cmd.args(["-aL", "--delete", "--ignore-errors"]);
        match direction {
            Direction::Push => cmd.arg(slash(&out.src())).arg(sshd.remote(slash(&dst))),
            Direction::Pull => cmd.arg(sshd.remote(slash(&out.src()))).arg(slash(&dst)),
        };
        let o = run(&mut cmd);
        assert_eq!(code(&o), 23, "{direction:?}: {}", stderr(&o));
        let diffs = diff_trees(
            &out.side_a().join("dst"),
            &dst,
            &Compare::default().ignoring_times_of(["", "d"]),
        );
        assert!(diffs.is_empty(), "{direction:?}: {diffs:#?}");
    }
}
