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
