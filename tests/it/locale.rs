//! Names in `-v`/`-i` lines are escaped for the terminal that shows them: the client's. On a
//! push the lines are made by the receiving server, whose locale may differ (a C locale on
//! the remote, UTF-8 here): rsync escapes a name by the client's locale wherever the line
//! was made, and so must xsync. Compared with rsync over the same remote shell, which runs
//! the server in the other locale.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

use crate::remote::XSYNC_BIN;
use crate::util::{code, have_rsync, local_rsh, rsync, run, stderr, stdout, test_dir, xsync};

/// The lines of `out`, sorted (the two tools' order is another test's subject).
fn lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = stdout(out).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// One transfer of a tree with a UTF-8 name, a newline in a name and a name that is not
/// UTF-8, by `tool` through a remote shell that runs the server under `remote_locale`,
/// the client itself under `client_locale`.
fn transfer(tool: &str, push: bool, client_locale: &str, remote_locale: &str) -> Output {
    let dir = test_dir();
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir src");
    fs::create_dir(dir.path().join("dst")).expect("mkdir dst");
    fs::write(src.join("caf\u{e9}.txt"), b"x").expect("write");
    fs::write(src.join("line\nbreak"), b"y").expect("write");
    fs::write(src.join(std::ffi::OsStr::from_bytes(b"raw\xff")), b"z").expect("write");
    let rsh = local_rsh(
        dir.path(),
        &format!("LC_ALL={remote_locale} LANG={remote_locale} exec sh -c \"$*\""),
    );
    let (from, to) = if push {
        (
            format!("{}/", src.display()),
            format!("h:{}/dst/", dir.path().display()),
        )
    } else {
        (
            format!("h:{}/", src.display()),
            format!("{}/dst/", dir.path().display()),
        )
    };
    let mut cmd: Command = if tool == "rsync" {
        rsync().expect("checked by caller")
    } else {
        let mut c = xsync();
        c.args(["--xsync-path", XSYNC_BIN]);
        c
    };
    cmd.env("LC_ALL", client_locale)
        .env("LANG", client_locale)
        .args(["-ri", "-e", &rsh])
        .arg(from)
        .arg(to);
    run(&mut cmd)
}

#[test]
fn names_are_escaped_for_the_clients_locale_pushed_and_pulled() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    for push in [true, false] {
        for (client, remote) in [("C.UTF-8", "C"), ("C", "C.UTF-8")] {
            let a = transfer("rsync", push, client, remote);
            let b = transfer("xsync", push, client, remote);
            let what = format!(
                "{test}: {} with the client in {client}, the server in {remote}",
                if push { "push" } else { "pull" }
            );
            assert_eq!(code(&a), 0, "{what}: rsync itself: {}", stderr(&a));
            assert_eq!(code(&b), 0, "{what}: {}", stderr(&b));
            assert_eq!(lines(&b), lines(&a), "{what}: the -i lines differ");
            let shown = stdout(&b);
            assert!(
                shown.contains("line\\#012break") && shown.contains("raw\\#377"),
                "{what}: control and invalid bytes are always escaped: {shown}"
            );
            let utf8 = client.contains("UTF");
            assert_eq!(
                shown.contains("caf\u{e9}.txt"),
                utf8,
                "{what}: the UTF-8 name is shown as the client's locale allows: {shown}"
            );
        }
    }
}
