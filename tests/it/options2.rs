//! rsync options beyond the core set, each against the real rsync.

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
        ("--delay-updates", "put into place at the end"),
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
