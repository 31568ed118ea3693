//! Bad input from the file system, as rsync defines it: a destination that fills up mid-run
//! (exit 11, the run stops, every file old or new, no temporaries) and a source file that
//! vanishes, shrinks or grows between the scan and its read (exit 24 for a vanished one; a
//! changed one is sent as it reads then, exit 0). rsync runs in the same test as the oracle.
//!
//! The full disk is a 1 MiB tmpfs, so those tests need root; without it they print
//! `SKIPPED`, and the mount is undone by a guard even when an assertion fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::remote::{TEMP_PREFIX, rsync_over, xsync_over};
use crate::sshd::{Sshd, remote};
use crate::util::{
    code, find_named, have_rsync, is_root, pseudo_random, rsync, run, set_mtime, skip, slash,
    stderr, test_dir, xsync,
};

/// A tmpfs mounted for one test; unmounted on drop (lazily, so a process still inside it
/// cannot keep it mounted past the test).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a `size` tmpfs at `dir` (created), or prints why not and returns None.
    fn mount(test: &str, dir: &Path, size: &str) -> Option<Tmpfs> {
        if !is_root() {
            skip(test, "mounting a small tmpfs needs root");
            return None;
        }
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        if !out.status.success() {
            skip(
                test,
                &format!("cannot mount a tmpfs: {}", stderr(&out).trim()),
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Local,
    Push,
    Pull,
}

const FILES: [&str; 4] = ["f1", "f2", "f3", "f4"];

/// Four 400 kB files to copy over four old 5-byte ones on a 1 MiB file system: two fit.
/// For each of rsync and xsync: the exit code, stderr, and what each destination file
/// holds afterwards ("new", "old", or what went wrong). `flags` go after `-a`; with
/// `--delete-after` an extraneous file must outlive the failed transfer in both tools.
fn full_destination(test: &str, mode: Mode, flags: &[&str]) {
    if !have_rsync(test) {
        return;
    }
    let sshd = match mode {
        Mode::Local => None,
        _ => match Sshd::start(test) {
            Some(s) => Some(s),
            None => return,
        },
    };
    let dir = test_dir();
    let root = dir.path();
    let src = root.join("src");
    fs::create_dir(&src).expect("mkdir src");
    for (i, f) in FILES.iter().enumerate() {
        fs::write(src.join(f), pseudo_random(i as u64 + 1, 400_000)).expect("write source");
    }
    let mut results = Vec::new();
    let mut mounts = Vec::new();
    for tool in ["rsync", "xsync"] {
        let Some(mnt) = Tmpfs::mount(test, &root.join(tool), "1m") else {
            return;
        };
        let dst = mnt.0.join("dst");
        fs::create_dir(&dst).expect("mkdir dst");
        for f in FILES {
            fs::write(dst.join(f), format!("old {f}")).expect("write old file");
            set_mtime(&dst.join(f), 946_684_800, 0);
        }
        fs::write(dst.join("extraneous"), b"x").expect("write extraneous file");
        let mut cmd = match (tool, &sshd) {
            ("rsync", None) => rsync().expect("checked"),
            ("rsync", Some(s)) => rsync_over(s),
            (_, None) => xsync(),
            (_, Some(s)) => xsync_over(s),
        };
        cmd.arg("-a").args(flags);
        match mode {
            Mode::Local => cmd.arg(slash(&src)).arg(slash(&dst)),
            Mode::Push => cmd.arg(slash(&src)).arg(remote(slash(&dst))),
            Mode::Pull => cmd.arg(remote(slash(&src))).arg(slash(&dst)),
        };
        let out = run(&mut cmd);
        let states: Vec<String> = FILES
            .iter()
            .map(|f| match fs::read(dst.join(f)) {
                Ok(d) if d == fs::read(src.join(f)).expect("read source") => "new".into(),
                Ok(d) if d == format!("old {f}").into_bytes() => "old".into(),
                Ok(d) => format!("neither old nor new ({} bytes)", d.len()),
                Err(e) => format!("unreadable: {e}"),
            })
            .collect();
        let mut temps = find_named(&dst, TEMP_PREFIX);
        if !dst.join("extraneous").exists() {
            temps.push(PathBuf::from("(the extraneous file was deleted)"));
        }
        results.push((out, states, temps));
        mounts.push(mnt);
    }
    let (x, x_states, x_temps) = results.pop().expect("xsync ran");
    let (r, r_states, r_temps) = results.pop().expect("rsync ran");
    let context = format!(
        "{mode:?}: rsync exit {} {r_states:?}, stderr:\n{}\nxsync exit {} {x_states:?}, stderr:\n{}",
        code(&r),
        stderr(&r),
        code(&x),
        stderr(&x)
    );
    assert_eq!(code(&r), 11, "rsync, the oracle: {context}");
    assert!(
        r_temps.is_empty(),
        "rsync, the oracle: {r_temps:?}; {context}"
    );
    assert_eq!(code(&x), code(&r), "exit code: {context}");
    for s in &x_states {
        assert!(s == "new" || s == "old", "a file is {s}: {context}");
    }
    assert!(x_states.iter().any(|s| s == "old"), "all fitted? {context}");
    assert!(
        x_temps.is_empty(),
        "temporaries left: {x_temps:?}; {context}"
    );
    // One line for the full disk, naming the file, however many writers hit it.
    let x_err = stderr(&x);
    let full: Vec<&str> = x_err
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .collect();
    assert_eq!(full.len(), 1, "{context}");
    assert!(
        FILES.iter().any(|f| full[0].contains(&format!("`{f}`"))),
        "names no file: {context}"
    );
}

#[test]
fn full_destination_exits_11_and_keeps_old_files() {
    full_destination(this_test!(), Mode::Local, &[]);
}

/// A transfer that stopped on a full disk deletes nothing after it, as rsync.
#[test]
fn full_destination_with_delete_after_deletes_nothing() {
    for mode in [Mode::Local, Mode::Push] {
        full_destination(this_test!(), mode, &["--delete-after"]);
    }
}

#[test]
fn full_destination_exits_11_and_keeps_old_files_in_a_push() {
    full_destination(this_test!(), Mode::Push, &[]);
}

#[test]
fn full_destination_exits_11_and_keeps_old_files_in_a_pull() {
    full_destination(this_test!(), Mode::Pull, &[]);
}

// ---------------------------------------------------------------------------------------------
// A source that changes between the scan and the read, in a push
// ---------------------------------------------------------------------------------------------

/// Writes an executable `-e` wrapper that runs `sh_line`, then becomes `rsh`.
fn wrapper(path: &Path, sh_line: &str, rsh: &str) {
    crate::util::write_script(path, &format!("#!/bin/sh\n{sh_line}\nexec {rsh} \"$@\"\n"));
}

/// An action (a shell command on `$SRC/f2`, one per tool) strikes after the tool has scanned its sources
/// and before it reads f2, in a push of `a-big` (1 MB), `f1`, `f2`, `f3` (200 kB each).
/// xsync scans while the remote shell logs in, so its wrapper acts before starting ssh;
/// rsync scans after the login, so its wrapper acts in the background once rsync's
/// receiver has started writing `a-big` (slowed by --bwlimit), before its sender gets to
/// f2. Returns (rsync, xsync): output, source dir, destination dir.
fn push_changing_source(
    sshd: &Sshd,
    root: &Path,
    rsync_action: &str,
    xsync_action: &str,
) -> [(Output, PathBuf, PathBuf); 2] {
    let mut outs = Vec::new();
    for (tool, action) in [("rsync", rsync_action), ("xsync", xsync_action)] {
        let src = root.join(format!("{tool}-src"));
        let dst = root.join(format!("{tool}-dst"));
        fs::create_dir(&src).expect("mkdir src");
        fs::create_dir(&dst).expect("mkdir dst");
        fs::write(src.join("a-big"), pseudo_random(9, 1_000_000)).expect("write");
        for (i, f) in ["f1", "f2", "f3"].iter().enumerate() {
            fs::write(src.join(f), pseudo_random(i as u64 + 10, 200_000)).expect("write");
        }
        let act = format!("SRC={}; {action}", src.display());
        let wrap = root.join(format!("{tool}-rsh"));
        let mut cmd = if tool == "rsync" {
            // Bounded, so a run that never starts writing cannot leave the loop behind.
            let line = format!(
                "( i=0; while ! ls {}/.a-big.* >/dev/null 2>&1 && [ $i -lt 3000 ]; do \
                 sleep 0.01; i=$((i+1)); done; {act} ) &",
                dst.display()
            );
            wrapper(&wrap, &line, &sshd.rsh());
            let mut c = rsync().expect("checked");
            c.arg("--bwlimit=500").stdin(std::process::Stdio::null());
            c
        } else {
            wrapper(&wrap, &format!("sleep 0.5; {act}"), &sshd.rsh());
            let mut c = xsync();
            c.env_remove("XSYNC_RSH")
                .args(["--xsync-path", env!("CARGO_BIN_EXE_xsync")])
                .stdin(std::process::Stdio::null());
            c
        };
        cmd.arg("-a").arg("-e").arg(&wrap);
        cmd.arg(slash(&src)).arg(remote(slash(&dst)));
        outs.push((run(&mut cmd), src, dst));
    }
    let x = outs.pop().expect("xsync ran");
    let r = outs.pop().expect("rsync ran");
    [r, x]
}

fn describe(outs: &[(Output, PathBuf, PathBuf); 2]) -> String {
    let [(r, ..), (x, ..)] = outs;
    format!(
        "rsync exit {}, stderr:\n{}\nxsync exit {}, stderr:\n{}",
        code(r),
        stderr(r),
        code(x),
        stderr(x)
    )
}

/// Every file of `dst` equals the source's as it is now; `f2` only where the source has it.
fn assert_mirrors_source(src: &Path, dst: &Path, context: &str) {
    for f in ["a-big", "f1", "f2", "f3"] {
        match fs::read(src.join(f)) {
            Ok(want) => {
                let got = fs::read(dst.join(f)).unwrap_or_else(|e| panic!("{f}: {e}; {context}"));
                assert!(
                    got == want,
                    "{f}: {} bytes, source {}; {context}",
                    got.len(),
                    want.len()
                );
            }
            Err(_) => assert!(!dst.join(f).exists(), "{f} appeared; {context}"),
        }
    }
    let temps = find_named(dst, TEMP_PREFIX);
    assert!(temps.is_empty(), "temporaries left: {temps:?}; {context}");
}

#[test]
fn source_file_vanishing_before_its_read_exits_24_in_a_push() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let rm = "rm -f $SRC/f2";
    let outs = push_changing_source(&sshd, dir.path(), rm, rm);
    let context = describe(&outs);
    let [(r, ..), (x, src, dst)] = &outs;
    assert_eq!(code(r), 24, "rsync, the oracle: {context}");
    assert_eq!(code(x), code(r), "{context}");
    assert!(stderr(r).contains("file has vanished: "), "{context}");
    assert!(stderr(x).contains("file has vanished: `f2`"), "{context}");
    // rsync closes with a warning, not an error, for vanished files.
    assert!(
        stderr(r).contains("rsync warning: some files vanished"),
        "{context}"
    );
    assert!(
        stderr(x).contains("xsync warning: some files vanished"),
        "{context}"
    );
    assert_mirrors_source(src, dst, &context);
}

/// rsync sends a file whose size changed since the scan as it reads it, silently (exit 0),
/// and so must xsync. The sizes may differ: rsync's run is slowed by --bwlimit, where a
/// file grown past xsync's 64 MiB frame limit (the case that once ended xsync's run with
/// exit 12) would take minutes.
fn source_file_changing_size(test: &str, rsync_size: &str, xsync_size: &str) {
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let cut = |size: &str| format!("truncate -s {size} $SRC/f2");
    let outs = push_changing_source(&sshd, dir.path(), &cut(rsync_size), &cut(xsync_size));
    let context = describe(&outs);
    let [(r, r_src, r_dst), (x, x_src, x_dst)] = &outs;
    assert_eq!(code(r), 0, "rsync, the oracle: {context}");
    assert_mirrors_source(r_src, r_dst, &context);
    assert_eq!(code(x), code(r), "{context}");
    assert_mirrors_source(x_src, x_dst, &context);
    assert!(
        !stderr(x).contains("xsync"),
        "a changed size is no error: {context}"
    );
}

#[test]
fn source_file_shrinking_before_its_read_is_sent_as_read_in_a_push() {
    source_file_changing_size(this_test!(), "1000", "1000");
}

#[test]
fn source_file_growing_before_its_read_is_sent_as_read_in_a_push() {
    // For xsync past the 64 MiB frame limit: a small file is read ahead whole.
    source_file_changing_size(this_test!(), "400000", "70M");
}
