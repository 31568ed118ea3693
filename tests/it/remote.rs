//! Transfers over ssh, against a real sshd on loopback (see `sshd`): push (`src/ host:dst/`)
//! and pull (`host:src/ dst/`) must give the trees and exit codes rsync gives over the same
//! ssh, a connection killed mid-transfer must leave every file old or new, and the failure
//! modes of a remote shell (missing path, missing program, refused login) must be reported
//! like rsync reports them.
//!
//! The remote xsync is the binary under test itself (`--xsync-path`), since the "remote" host
//! is this machine.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::{Sshd, free_port, remote};
use crate::util::{
    Case, Compare, Fixture, Outcome, XorShift, arg_path, awkward, code, diff_snapshots, diff_trees,
    find_named, have_rsync, prepare_side, report, rounds, rsync, run, set_mtime, simple_case, skip,
    slash, snapshot, stderr, test_dir, xsync,
};

/// The program the remote shell runs: this very build of xsync.
pub const XSYNC_BIN: &str = env!("CARGO_BIN_EXE_xsync");

/// The prefix of xsync's temporary files (`src/pathsafe.rs`).
pub const TEMP_PREFIX: &str = ".xsync-tmp.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `src[/] 127.0.0.1:/abs/dst/`
    Push,
    /// `127.0.0.1:/abs/src[/] dst/`
    Pull,
}

/// xsync with a clean environment, reaching `sshd` and running itself on the other end.
pub fn xsync_over(sshd: &Sshd) -> Command {
    xsync_over_path(sshd, XSYNC_BIN)
}

/// [`xsync_over`] with another `--xsync-path` (the remote command before `--server`).
pub fn xsync_over_path(sshd: &Sshd, xsync_path: &str) -> Command {
    let mut cmd = xsync();
    cmd.env_remove("XSYNC_RSH")
        .args(["-e", &sshd.rsh(), "--xsync-path", xsync_path])
        .stdin(Stdio::null());
    cmd
}

/// rsync over the same ssh (the remote rsync is the installed one).
pub fn rsync_over(sshd: &Sshd) -> Command {
    let mut cmd = rsync().expect("rsync checked by caller");
    cmd.args(["-e", &sshd.rsh()]).stdin(Stdio::null());
    cmd
}

fn context(sshd: &Sshd) -> String {
    let log = sshd.log();
    if log.is_empty() {
        String::new()
    } else {
        format!("\nsshd log:\n{log}")
    }
}

// ---------------------------------------------------------------------------------------------
// The local differential suite, over ssh in both directions
// ---------------------------------------------------------------------------------------------

/// rsync and xsync, each with `-e <rsh>` and `flags`, push or pull, on identical setups built as
/// `util::simple_case` builds them; demands equal exit codes (success, so that two identical
/// failures cannot pass) and equal trees.
fn remote_differential(
    test: &str,
    flags: &[&str],
    trailing_slash: bool,
    fixture: Fixture,
    direction: Direction,
) {
    remote_case(
        test,
        &simple_case(flags, trailing_slash, fixture),
        direction,
    );
}

/// [`remote_differential`] for any [`Case`]: its sources are pulled from the ssh host or
/// pushed to it, its destination the other way.
pub fn remote_case(test: &str, case: &Case, direction: Direction) {
    remote_case_via(test, case, direction, "");
}

/// [`remote_case`] with `server_prefix` (a command and its words, e.g. a wrapper that gives
/// the server another view of the machine) in front of the remote xsync and rsync alike.
/// Returns the outcome for further checks, or `None` when the case was skipped.
pub fn remote_case_via(
    test: &str,
    case: &Case,
    direction: Direction,
    server_prefix: &str,
) -> Option<Outcome> {
    if !have_rsync(test) {
        return None;
    }
    let sshd = Sshd::start(test)?;
    let dir = test_dir();
    let root = dir.path().to_path_buf();
    (case.fixture.src)(&root.join("src"));
    for side_name in ["a", "b"] {
        prepare_side(&root.join(side_name), case);
    }
    let (a, b, diffs) = rounds(&root, case, ["rsync", "xsync"], true, |i, side| {
        let mut cmd = match (i, server_prefix) {
            (0, "") => rsync_over(&sshd),
            (0, prefix) => {
                let mut c = rsync_over(&sshd);
                c.arg(format!("--rsync-path={prefix} rsync"));
                c
            }
            (_, "") => xsync_over(&sshd),
            (_, prefix) => xsync_over_path(&sshd, &format!("{prefix} {XSYNC_BIN}")),
        };
        cmd.args(case.flags);
        for s in case.sources {
            cmd.arg(match direction {
                Direction::Push => arg_path(&root, s),
                Direction::Pull => sshd.remote(arg_path(&root, s)),
            });
        }
        cmd.arg(match direction {
            Direction::Push => sshd.remote(arg_path(side, case.dest)),
            Direction::Pull => arg_path(side, case.dest),
        });
        cmd.current_dir(&root);
        run(&mut cmd)
    });
    let outcome = Outcome {
        dir,
        a,
        b,
        a_name: "rsync",
        b_name: "xsync",
    };
    assert!(
        diffs.is_empty(),
        "{test} ({direction:?} over ssh): {}{}",
        report(case, &outcome, &diffs),
        context(&sshd)
    );
    Some(outcome)
}

macro_rules! remote_differential_tests {
    ($( $(#[doc = $doc:literal])* $name:ident: $flags:expr, $fixture:expr; )*) => {$(
        $(#[doc = $doc])*
        mod $name {
            use super::*;

            #[test]
            fn push_src_with_trailing_slash() {
                remote_differential(
                    concat!(stringify!($name), " (push src/)"),
                    $flags, true, $fixture, Direction::Push,
                );
            }

            #[test]
            fn push_src_without_trailing_slash() {
                remote_differential(
                    concat!(stringify!($name), " (push src)"),
                    $flags, false, $fixture, Direction::Push,
                );
            }

            #[test]
            fn pull_src_with_trailing_slash() {
                remote_differential(
                    concat!(stringify!($name), " (pull src/)"),
                    $flags, true, $fixture, Direction::Pull,
                );
            }

            #[test]
            fn pull_src_without_trailing_slash() {
                remote_differential(
                    concat!(stringify!($name), " (pull src)"),
                    $flags, false, $fixture, Direction::Pull,
                );
            }
        }
    )*};
}

remote_differential_tests! {
    /// -L: every link becomes its referent; pulled, the server's scan follows them.
    copy_links_replaces_every_link_by_its_referent: &["-rtL"], Fixture::with_src(crate::util::symlink_zoo);
    /// --copy-unsafe-links with -l: only links out of the tree become their referents.
    copy_unsafe_links_follows_only_links_out_of_the_tree:
        &["-rtl", "--copy-unsafe-links"], Fixture::with_src(crate::util::symlink_zoo);
    /// -l --safe-links: links out of the tree are left out.
    safe_links_skips_links_out_of_the_tree: &["-rtl", "--safe-links"], Fixture::with_src(crate::util::symlink_zoo);
    /// -lk: directory links walked, file links kept.
    links_with_copy_dirlinks_keeps_file_links: &["-rtlk"], Fixture::with_src(crate::util::symlink_zoo);
    /// -a: everything but hard links, with all metadata, into an empty destination.
    archive_copies_everything: &["-a"], Fixture::awkward();
    /// -a over an older copy: changed files updated (deltas on the wire), kinds replaced.
    archive_updates_an_older_copy: &["-a"], Fixture::over_older_copy();
    /// -avP (--partial --progress -v): the same tree as rsync's, the progress lines aside.
    archive_with_progress: &["-avP"], Fixture::awkward();
    /// -aH: hard-link groups are reproduced.
    archive_with_hard_links_keeps_link_groups: &["-aH"], Fixture::awkward();
    /// --delete removes what the source lacks.
    delete_removes_extraneous_files: &["-a", "--delete"], Fixture::over_older_copy();
    /// --delete-before: the receiver deletes in a pass of its own before any file arrives.
    delete_before_removes_extraneous_files: &["-a", "--delete-before"], Fixture::over_older_copy();
    /// --delete-after: the receiver deletes once the file data has arrived.
    delete_after_removes_extraneous_files: &["-a", "--delete-after"], Fixture::over_older_copy();
    /// -O -J: directory and symlink times are neither compared nor set on the receiver.
    omit_dir_and_link_times_keep_their_times: &["-aOJ"], Fixture::retimed_dirs_and_links();
    /// -I: every file is sent (by delta), even in directories whose digests would match.
    ignore_times_sends_every_file: &["-aI"], Fixture::over_older_copy();
    /// --min-size/--max-size: files out of range are neither sent, updated nor deleted.
    min_max_size_select_files_around_the_limits:
        &["-a", "--delete", "--min-size=4k", "--max-size=64k"], Fixture::over_older_copy();
    /// rsync's default quick check counts whole seconds, on the sending end's digests too.
    whole_seconds_decide_by_default: &["-a"], Fixture::close_times();
    /// --modify-window travels to the server: a second apart is the same there too.
    modify_window_allows_seconds_apart: &["-a", "--modify-window=1"], Fixture::close_times();
    /// --chown: the receiving end (the server, in a push) resolves the names.
    chown_by_name_over_an_older_copy: &["-a", "--chown=nobody:nogroup"], Fixture::over_older_copy();
    /// --chmod: the sending end (the server, in a pull) tweaks the modes it sends.
    chmod_symbolic_over_an_older_copy:
        &["-a", "--chmod=u=rwX,go=rX"], Fixture::over_older_copy();
    /// --safe-links --delete over ssh: the receiving end (the server, in a push) skips them.
    safe_links_with_delete_keeps_what_is_at_a_skipped_name:
        &["-a", "--delete", "--safe-links"], Fixture::unsafe_link_names();
    /// -m: the sending end (the server, in a pull) prunes the directories.
    prune_empty_dirs_with_include_patterns:
        &["-am", "--delete-excluded", "--include=*/", "--include=*.txt", "--exclude=*"],
        Fixture::over_older_copy();
    /// -X: extended attributes (user.*, and trusted.*/security.* as root) into an empty tree.
    xattrs_copy_to_an_empty_tree: &["-aX"], Fixture::xattrs();
    /// -X over an older copy: attributes changed, added and removed on the remote end too.
    xattrs_update_an_older_copy: &["-aX"], Fixture::xattrs_over_older();
    /// Excluded files are neither copied nor deleted (the rules travel to the other end).
    delete_keeps_excluded_files: &["-a", "--delete", "--exclude", "*.log"], Fixture::over_older_copy();
    /// First matching rule wins: all directories, *.txt, nothing else.
    ordered_include_exclude_selects_txt_files:
        &["-a", "--include", "*/", "--include", "*.txt", "--exclude", "*"], Fixture::awkward();
    /// The same rules over an older copy with --delete.
    ordered_include_exclude_with_delete:
        &["-a", "--delete", "--include", "*/", "--include", "*.txt", "--exclude", "*"],
        Fixture::over_older_copy();
}

// ---------------------------------------------------------------------------------------------
// A connection killed mid-transfer
// ---------------------------------------------------------------------------------------------

const BIG_FILES: usize = 4;
const BIG_LEN: usize = 256 << 20;

/// The tag that starts and ends version `old`/new of big file `i`; the bytes between are a
/// shared pseudo-random pattern, so two 256 MiB versions cost one pattern in memory.
fn big_tag(i: usize, old: bool) -> Vec<u8> {
    format!("[{} version of big{i}]", if old { "old" } else { "new" }).into_bytes()
}

fn write_big(path: &Path, pattern: &[u8], tag: &[u8], mtime: i64) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
    for part in [tag, &pattern[tag.len()..BIG_LEN - tag.len()], tag] {
        f.write_all(part)
            .unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    }
    drop(f);
    set_mtime(path, mtime, 0);
}

fn is_big_version(bytes: &[u8], pattern: &[u8], tag: &[u8]) -> bool {
    let t = tag.len();
    bytes.len() == BIG_LEN
        && &bytes[..t] == tag
        && bytes[BIG_LEN - t..] == *tag
        && bytes[t..BIG_LEN - t] == pattern[t..BIG_LEN - t]
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut v = Vec::with_capacity(BIG_LEN);
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    v
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    rustix::fs::statvfs(path).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// A directory for the big files: /dev/shm when it has room (fast), else the usual temp dir.
fn big_dir(need: u64) -> Option<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && free_bytes(shm) > need
        && let Ok(d) = tempfile::Builder::new().prefix("xsync-it-").tempdir_in(shm)
    {
        return Some(d);
    }
    let d = test_dir();
    (free_bytes(d.path()) > need).then_some(d)
}

/// (pid, comm, state, ppid) of every process, from /proc.
fn processes() -> Vec<(u32, String, char, u32)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may contain spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, comm, state, ppid));
    }
    out
}

/// Live (not zombie) descendants of `pid`, as (pid, comm).
pub fn descendants(pid: u32) -> Vec<(u32, String)> {
    let procs = processes();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (p, comm, state, ppid) in &procs {
            if *ppid == parent && *state != 'Z' {
                found.push((*p, comm.clone()));
                frontier.push(*p);
            }
        }
    }
    found
}

pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Waits for `child` at most `limit`; kills it and returns `None` if it did not exit.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// DESIGN promise 2 over ssh: with the connection gone mid-file, xsync fails loudly, every
/// destination file is its old or its new version, and the next run completes and leaves no
/// temporaries.
#[test]
fn killing_ssh_mid_transfer_leaves_old_or_new_files() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    // Source, older copy and one temporary per file, with room to spare.
    let need = 3 * (BIG_FILES * BIG_LEN) as u64 + (512 << 20);
    let Some(dir) = big_dir(need) else {
        skip(test, &format!("no file system with {need} free bytes"));
        return;
    };
    let root = dir.path();
    let (src, dst) = (root.join("src"), root.join("dst"));
    fs::create_dir(&src).expect("mkdir src");
    fs::create_dir(&dst).expect("mkdir dst");
    let mut pattern = vec![0u8; BIG_LEN];
    XorShift::new(2024).fill(&mut pattern);
    for i in 0..BIG_FILES {
        let name = format!("big{i}");
        write_big(
            &src.join(&name),
            &pattern,
            &big_tag(i, false),
            1_600_000_000,
        );
        write_big(&dst.join(&name), &pattern, &big_tag(i, true), 1_500_000_000);
    }
    set_mtime(&src, 1_600_000_000, 0);

    let args = |cmd: &mut Command| {
        cmd.args(["-a", "--whole-file"])
            .arg(slash(&src))
            .arg(sshd.remote(slash(&dst)));
    };
    let err_path = root.join("xsync.stderr");
    let mut cmd = xsync_over(&sshd);
    args(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).expect("create stderr file"))
        .spawn()
        .expect("spawn xsync");
    let xsync_pid = child.id();
    let stderr_text = || fs::read_to_string(&err_path).unwrap_or_default();

    // Wait for the first temporary: the transfer of file data is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !find_named(&dst, TEMP_PREFIX).is_empty() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{test}: xsync exited ({status}) before any {TEMP_PREFIX}* appeared in dst; \
                 stderr:\n{}{}",
                stderr_text(),
                context(&sshd)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{test}: no {TEMP_PREFIX}* in dst after 60 s; stderr:\n{}",
                stderr_text()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    // The remote end (everything below our sshd but sshd itself), to see it go away.
    let remote_end: Vec<(u32, String)> = descendants(sshd.pid())
        .into_iter()
        .filter(|(_, comm)| comm != "sshd")
        .collect();
    assert!(
        !remote_end.is_empty(),
        "{test}: nothing runs below sshd (pid {}) while the transfer is under way",
        sshd.pid()
    );
    let ssh: Vec<u32> = descendants(xsync_pid)
        .into_iter()
        .filter(|(_, comm)| comm == "ssh")
        .map(|(pid, _)| pid)
        .collect();
    assert!(
        !ssh.is_empty(),
        "{test}: xsync (pid {xsync_pid}) has no `ssh` descendant; its children: {:?}",
        descendants(xsync_pid)
    );
    for pid in &ssh {
        let pid = rustix::process::Pid::from_raw(*pid as i32).expect("non-zero pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }

    let Some(status) = wait_bounded(&mut child, Duration::from_secs(60)) else {
        panic!(
            "{test}: xsync did not exit within 60 s of its ssh being killed; stderr:\n{}",
            stderr_text()
        );
    };
    let killed_stderr = stderr_text();
    assert!(
        !status.success(),
        "{test}: xsync exited 0 although its ssh was killed mid-transfer (did the transfer \
         finish first? then the files are too small); stderr:\n{killed_stderr}"
    );
    assert!(
        !killed_stderr.trim().is_empty(),
        "{test}: xsync failed ({status}) without a word on stderr"
    );

    // The remote xsync must notice the lost connection and stop writing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while remote_end.iter().any(|(pid, _)| alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "{test}: the remote end {remote_end:?} is still running 30 s after the \
             connection was lost"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    for entry in fs::read_dir(&dst).expect("readdir dst").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let i = (0..BIG_FILES)
            .find(|i| name == format!("big{i}"))
            .unwrap_or_else(|| panic!("{test}: unexpected entry {name:?} in dst"));
        let bytes = read_all(&entry.path());
        let old = is_big_version(&bytes, &pattern, &big_tag(i, true));
        let new = is_big_version(&bytes, &pattern, &big_tag(i, false));
        assert!(
            old || new,
            "{test}: dst/{name} is neither its old nor its new version ({} bytes) after the \
             connection was killed; xsync stderr:\n{killed_stderr}",
            bytes.len()
        );
    }
    for i in 0..BIG_FILES {
        assert!(
            dst.join(format!("big{i}")).is_file(),
            "{test}: dst/big{i} vanished after the connection was killed"
        );
    }

    let mut again = xsync_over(&sshd);
    args(&mut again);
    let out = run(&mut again);
    assert_eq!(
        code(&out),
        0,
        "{test}: the rerun failed; stderr:\n{}{}",
        stderr(&out),
        context(&sshd)
    );
    let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
    assert!(
        diffs.is_empty(),
        "{test}: after the rerun, src vs dst:\n{}",
        diffs.join("\n")
    );
    let left = find_named(&dst, TEMP_PREFIX);
    assert!(
        left.is_empty(),
        "{test}: temporaries left after the rerun: {left:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Failures of the remote side
// ---------------------------------------------------------------------------------------------

/// rsync and xsync over `sshd` with the same arguments, each told to run `program` on the far
/// end (the installed rsync and this xsync when `None`), for error cases.
fn both(sshd: &Sshd, program: Option<&str>, args: &[OsString]) -> (Output, Output) {
    let mut a = rsync_over(sshd);
    if let Some(p) = program {
        a.args(["--rsync-path", p]);
    }
    let mut b = xsync();
    b.env_remove("XSYNC_RSH")
        .args(["-e", &sshd.rsh()])
        .args(["--xsync-path", program.unwrap_or(XSYNC_BIN)])
        .stdin(Stdio::null());
    (run(a.args(args)), run(b.args(args)))
}

fn describe(a: &Output, b: &Output) -> String {
    format!(
        "rsync exit {}, stderr:\n{}xsync exit {}, stderr:\n{}",
        code(a),
        stderr(a),
        code(b),
        stderr(b)
    )
}

/// rsync: "change_dir … failed: No such file or directory", exit 23.
#[test]
fn missing_remote_source_fails_with_23_naming_it() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let missing = dir.path().join("nonexistent");
    fs::create_dir(dir.path().join("dst")).expect("mkdir dst");
    let args = [
        OsString::from("-a"),
        sshd.remote(slash(&missing)),
        arg_path(dir.path(), "dst/"),
    ];
    let (a, b) = both(&sshd, None, &args);
    let all = describe(&a, &b);
    assert_eq!(code(&a), 23, "{test}: rsync itself: {all}");
    assert_eq!(code(&b), code(&a), "{test}: {all}");
    assert!(
        stderr(&b).contains(&*missing.to_string_lossy()),
        "{test}: xsync's stderr does not name {missing:?}: {all}"
    );
}

/// `--xsync-path /nonexistent`: the failure names the program.
#[test]
fn missing_remote_program_fails_naming_it() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    awkward(&dir.path().join("src"));
    fs::create_dir(dir.path().join("dst")).expect("mkdir dst");
    let mut cmd = xsync();
    cmd.env_remove("XSYNC_RSH")
        .args(["-a", "-e", &sshd.rsh(), "--xsync-path", "/nonexistent"])
        .arg(arg_path(dir.path(), "src/"))
        .arg(sshd.remote(arg_path(dir.path(), "dst/")))
        .stdin(Stdio::null());
    let out = run(&mut cmd);
    assert_ne!(code(&out), 0, "{test}: stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent"),
        "{test}: exit {}, stderr does not name /nonexistent:\n{}",
        code(&out),
        stderr(&out)
    );
    let entries = fs::read_dir(dir.path().join("dst"))
        .expect("readdir")
        .count();
    assert_eq!(entries, 0, "{test}: something was written to dst");
}

/// rsync with `--rsync-path /nonexistent` exits 127 ("remote command not found", or 12, see
/// [`rsync_code_is_one_of`]); xsync with `--xsync-path /nonexistent` exits 127, in both
/// directions.
#[test]
fn missing_remote_program_exits_127() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    awkward(&dir.path().join("src"));
    fs::create_dir(dir.path().join("dst")).expect("mkdir dst");
    for direction in [Direction::Push, Direction::Pull] {
        let args = match direction {
            Direction::Push => [
                OsString::from("-a"),
                arg_path(dir.path(), "src/"),
                sshd.remote(arg_path(dir.path(), "dst/")),
            ],
            Direction::Pull => [
                OsString::from("-a"),
                sshd.remote(arg_path(dir.path(), "src/")),
                arg_path(dir.path(), "dst/"),
            ],
        };
        let (a, b) = both(&sshd, Some("/nonexistent"), &args);
        let all = describe(&a, &b);
        assert!(
            rsync_code_is_one_of(&a, 127),
            "{test} ({direction:?}): rsync itself: {all}"
        );
        assert_eq!(code(&b), 127, "{test} ({direction:?}): {all}");
    }
}

/// rsync's exit code when its remote shell dies before the protocol starts is a race: 12 (the
/// pipe closed) if it notices the end of the stream before reaping ssh, ssh's 255 (or 127 for a
/// command the remote shell cannot find) if it reaps ssh first. Both are seen with rsync 3.x on
/// the same machine from one run to the next; xsync gives the informative one every time.
fn rsync_code_is_one_of(out: &Output, intended: i32) -> bool {
    [12, intended].contains(&code(out))
}

/// A login the server refuses (wrong key), push and pull: exit 255 as from ssh, with ssh's own
/// message passed on.
#[test]
fn refused_login_exits_255() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    awkward(&dir.path().join("src"));
    fs::create_dir(dir.path().join("dst")).expect("mkdir dst");
    let wrong_key = format!(
        "ssh -p {} -i /nonexistent/key -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
        sshd.port()
    );
    for direction in [Direction::Push, Direction::Pull] {
        let (src, dst) = match direction {
            Direction::Push => (
                arg_path(dir.path(), "src/"),
                sshd.remote(arg_path(dir.path(), "dst/")),
            ),
            Direction::Pull => (
                sshd.remote(arg_path(dir.path(), "src/")),
                arg_path(dir.path(), "dst/"),
            ),
        };
        let (a, b) = with_rsh(&wrong_key, &[src, dst]);
        let all = describe(&a, &b);
        assert!(
            rsync_code_is_one_of(&a, 255),
            "{test} ({direction:?}): rsync itself: {all}"
        );
        assert_eq!(code(&b), 255, "{test} ({direction:?}): {all}");
        assert!(
            stderr(&b).contains("Permission denied"),
            "{test} ({direction:?}): ssh's message is not passed on: {all}"
        );
    }
    let entries = fs::read_dir(dir.path().join("dst"))
        .expect("readdir")
        .count();
    assert_eq!(entries, 0, "{test}: something was written to dst");
}

/// rsync and xsync (`-a`, this xsync on the far end) with the remote shell `rsh`.
fn with_rsh(rsh: &str, args: &[OsString]) -> (Output, Output) {
    let a = run(rsync()
        .expect("checked")
        .args(["-a", "-e", rsh])
        .args(args)
        .stdin(Stdio::null()));
    let b = run(xsync()
        .env_remove("XSYNC_RSH")
        .args(["-a", "-e", rsh, "--xsync-path", XSYNC_BIN])
        .args(args)
        .stdin(Stdio::null()));
    (a, b)
}

/// Nobody listening on the port: exit 255 as from ssh, with ssh's message passed on.
#[test]
fn unreachable_host_exits_255() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    if let Err(why) = Sshd::prerequisites() {
        skip(test, &format!("sshd not available: {why}"));
        return;
    }
    let port = free_port().expect("free port");
    let rsh = format!(
        "ssh -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o BatchMode=yes -o ConnectTimeout=5"
    );
    let dir = test_dir();
    awkward(&dir.path().join("src"));
    let (a, b) = with_rsh(
        &rsh,
        &[
            remote(arg_path(dir.path(), "src/")),
            arg_path(dir.path(), "dst/"),
        ],
    );
    let all = describe(&a, &b);
    assert!(rsync_code_is_one_of(&a, 255), "{test}: rsync itself: {all}");
    assert_eq!(code(&b), 255, "{test}: {all}");
    assert!(
        stderr(&b).contains("Connection refused"),
        "{test}: ssh's message is not passed on: {all}"
    );
    assert!(
        !dir.path().join("dst").exists(),
        "{test}: the destination was created"
    );
}

// ---------------------------------------------------------------------------------------------
// Dry run, XSYNC_RSH, argument parsing
// ---------------------------------------------------------------------------------------------

fn dry_run_changes_nothing(test: &str, direction: Direction) {
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    awkward(&src);
    crate::util::awkward_older_copy(&dst);
    let (before_src, before_dst) = (snapshot(&src), snapshot(&dst));
    let mut cmd = xsync_over(&sshd);
    cmd.args(["-n", "-a", "--delete"]);
    match direction {
        Direction::Push => cmd.arg(slash(&src)).arg(sshd.remote(slash(&dst))),
        Direction::Pull => cmd.arg(sshd.remote(slash(&src))).arg(slash(&dst)),
    };
    let out = run(&mut cmd);
    assert_eq!(
        code(&out),
        0,
        "{test}: stderr:\n{}{}",
        stderr(&out),
        context(&sshd)
    );
    let mut diffs = diff_snapshots(&before_src, &snapshot(&src));
    diffs.extend(
        diff_snapshots(&before_dst, &snapshot(&dst))
            .into_iter()
            .map(|d| format!("dst: {d}")),
    );
    assert!(
        diffs.is_empty(),
        "{test}: -n changed something:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn dry_run_push_changes_nothing() {
    dry_run_changes_nothing(this_test!(), Direction::Push);
}

#[test]
fn dry_run_pull_changes_nothing() {
    dry_run_changes_nothing(this_test!(), Direction::Pull);
}

pub fn small_tree(root: &Path) {
    crate::util::TestTree::at(root)
        .file("a.txt", b"alpha\n")
        .random_file("sub/b.bin", 5, 70_000)
        .symlink("sub/link", "../a.txt")
        .stamp(false);
}

/// Without `-e`, `XSYNC_RSH` names the remote shell (as `RSYNC_RSH` does for rsync): the
/// server is on a port plain `ssh` would not try.
#[test]
fn xsync_rsh_env_is_used_without_e() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    small_tree(&src);
    let out = run(xsync()
        .env("XSYNC_RSH", sshd.rsh())
        .args(["-a", "--xsync-path", XSYNC_BIN])
        .arg(slash(&src))
        .arg(sshd.remote(slash(&dst)))
        .stdin(Stdio::null()));
    assert_synced(test, &out, &src, &dst, &sshd);
}

/// The run succeeded and `dst` is an `-a` copy of `src`.
fn assert_synced(test: &str, out: &Output, src: &Path, dst: &Path, sshd: &Sshd) {
    assert_eq!(
        code(out),
        0,
        "{test}: stderr:\n{}{}",
        stderr(out),
        context(sshd)
    );
    let diffs = diff_trees(src, dst, &Compare::for_flags(&["-a"]));
    assert!(
        diffs.is_empty(),
        "{test}: src vs dst:\n{}",
        diffs.join("\n")
    );
}

/// A script written for rsync sets `RSYNC_RSH`; xsync takes it when `XSYNC_RSH` is not set,
/// and `XSYNC_RSH` wins when both are.
#[test]
fn rsync_rsh_env_is_used_when_xsync_rsh_is_not() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    for (i, xsync_rsh) in [None, Some(sshd.rsh())].into_iter().enumerate() {
        let dst = dir.path().join(format!("dst{i}"));
        let mut cmd = xsync();
        cmd.env_remove("XSYNC_RSH");
        match &xsync_rsh {
            // Only rsync's variable, and it is the one that reaches the server.
            None => cmd.env("RSYNC_RSH", sshd.rsh()),
            // Both: a remote shell that cannot work in rsync's would fail the run.
            Some(rsh) => cmd
                .env("XSYNC_RSH", rsh)
                .env("RSYNC_RSH", "/nonexistent/ssh"),
        };
        let out = run(cmd
            .args(["-a", "--xsync-path", XSYNC_BIN])
            .arg(slash(&src))
            .arg(sshd.remote(slash(&dst)))
            .stdin(Stdio::null()));
        assert_synced(&format!("{test} ({i})"), &out, &src, &dst, &sshd);
    }
}

/// `-e` wins over `XSYNC_RSH`.
#[test]
fn e_overrides_xsync_rsh() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    small_tree(&src);
    let out = run(xsync()
        .env("XSYNC_RSH", "/nonexistent/ssh")
        .args(["-a", "-e", &sshd.rsh(), "--xsync-path", XSYNC_BIN])
        .arg(sshd.remote(slash(&src)))
        .arg(slash(&dst))
        .stdin(Stdio::null()));
    assert_synced(test, &out, &src, &dst, &sshd);
}

/// Both ends remote: refused with exit 1 and a message, as rsync refuses it ("The source and
/// destination cannot both be remote."), without contacting anyone.
#[test]
fn remote_to_remote_is_refused() {
    let test = this_test!();
    let dir = test_dir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    small_tree(&a);
    let (remote_a, remote_b) = (remote(slash(&a)), remote(slash(&b)));
    // A remote shell that would leave a trace if it were ever run.
    let trace = dir.path().join("rsh-was-run");
    let rsh = format!("touch {}", trace.display());
    let out = run(xsync()
        .env_remove("XSYNC_RSH")
        .args(["-a", "-e", &rsh])
        .arg(&remote_a)
        .arg(&remote_b)
        .stdin(Stdio::null()));
    assert_eq!(code(&out), 1, "{test}: stderr:\n{}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("remote"),
        "{test}: the message does not say what is wrong:\n{}",
        stderr(&out)
    );
    assert!(!trace.exists(), "{test}: the remote shell was run");
    assert!(!b.exists(), "{test}: the destination was created");
    if have_rsync(test) {
        let r = run(rsync()
            .expect("checked")
            .args(["-a", "-e", &rsh])
            .arg(&remote_a)
            .arg(&remote_b)
            .stdin(Stdio::null()));
        assert_eq!(code(&r), 1, "{test}: rsync itself: {}", stderr(&r));
    }
}

/// `./a:b` has a slash before its first colon: a local path, for source and destination alike
/// (rsync's rule), so no remote shell is run.
#[test]
fn path_with_slash_before_colon_stays_local() {
    let test = this_test!();
    let dir = test_dir();
    let src = dir.path().join("a:b");
    small_tree(&src);
    let trace = dir.path().join("rsh-was-run");
    let rsh = format!("touch {}", trace.display());
    let out = run(xsync()
        .env_remove("XSYNC_RSH")
        .args(["-a", "-e", &rsh, "./a:b/", "./c:d/"])
        .current_dir(dir.path())
        .stdin(Stdio::null()));
    assert_eq!(code(&out), 0, "{test}: stderr:\n{}", stderr(&out));
    assert!(!trace.exists(), "{test}: the remote shell was run");
    let diffs = diff_trees(&src, &dir.path().join("c:d"), &Compare::for_flags(&["-a"]));
    assert!(
        diffs.is_empty(),
        "{test}: a:b vs c:d:\n{}",
        diffs.join("\n")
    );
    if have_rsync(test) {
        let r = run(rsync()
            .expect("checked")
            .args(["-a", "-e", &rsh, "./a:b/", "./r:d/"])
            .current_dir(dir.path())
            .stdin(Stdio::null()));
        assert_eq!(code(&r), 0, "{test}: rsync itself: {}", stderr(&r));
        assert!(!trace.exists(), "{test}: rsync ran the remote shell");
    }
}

/// xsync with `flags`, pushing `src` to the remote `dst` or pulling it back, through
/// count-bytes: (exit code, stderr, bytes on the wire both ways).
fn counted_sync(
    sshd: &Sshd,
    push: bool,
    flags: &[&str],
    src: &Path,
    dst: &Path,
    dir: &Path,
    tag: &str,
) -> (i32, String, u64) {
    let mut cmd = xsync();
    cmd.args(flags).args(["--xsync-path", XSYNC_BIN]);
    if push {
        cmd.arg(slash(src)).arg(sshd.remote(slash(dst)));
    } else {
        cmd.arg(sshd.remote(slash(src))).arg(slash(dst));
    }
    crate::delta::counted(cmd, sshd, dir, tag)
}

/// A listing carries keys of what the receiver has and answers with a bitmap plus the
/// changed entries: one changed file in a directory of 3,000 costs a few bytes per
/// sibling, not a full entry each (about 40 bytes, as before protocol 2, or rsync's file
/// list). Push and pull.
#[test]
fn a_change_in_a_big_directory_costs_bytes_per_sibling_not_entries() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    const N: usize = 3000;
    for push in [true, false] {
        let dir = test_dir();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        fs::create_dir_all(src.join("big")).unwrap();
        for i in 0..N {
            fs::write(src.join(format!("big/file-{i:05}.c")), format!("{i}\n")).unwrap();
        }
        let sync = |tag: &str| counted_sync(&sshd, push, &["-a"], &src, &dst, dir.path(), tag);
        let (rc, err, _) = sync("first");
        assert_eq!(rc, 0, "{err}");
        fs::write(src.join("big/file-01234.c"), "changed\n").unwrap();
        set_mtime(&src.join("big/file-01234.c"), 1_500_000_000, 0);
        let (rc, err, bytes) = sync("second");
        assert_eq!(rc, 0, "{err}");
        let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
        assert!(diffs.is_empty(), "{}", diffs.join("\n"));
        // 8-byte keys and a bit per sibling, plus the changed entry, its data and the
        // fixed cost of a run (handshake, options, root summaries, totals).
        let limit = (N as u64) * 10 + 2_000;
        assert!(
            bytes <= limit,
            "push={push}: {bytes} bytes on the wire for one changed file among {N} (limit {limit})"
        );
        crate::util::note(&format!(
            "{test}: push={push}: {bytes} bytes for one change among {N} siblings"
        ));
    }
}

/// A re-run with `--chown` over an unchanged tree costs one exchange: the digests leave out
/// the sender's ids (the receiver forces its own), instead of listing every directory
/// because every owner looks different.
#[test]
fn chown_no_op_rerun_costs_one_exchange() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    for push in [true, false] {
        let dir = test_dir();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        for d in 0..20 {
            fs::create_dir_all(src.join(format!("d{d:02}"))).unwrap();
            for f in 0..25 {
                fs::write(src.join(format!("d{d:02}/f{f:02}")), format!("{d} {f}\n")).unwrap();
            }
        }
        let sync = |tag: &str| {
            counted_sync(
                &sshd,
                push,
                &["-a", "--chown=nobody:nogroup"],
                &src,
                &dst,
                dir.path(),
                tag,
            )
        };
        let (rc, err, _) = sync("first");
        assert_eq!(rc, 0, "{test}: {err}");
        let meta = fs::metadata(dst.join("d07/f03")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{test}: push={push}: not chowned"
        );
        let (rc, err, bytes) = sync("second");
        assert_eq!(rc, 0, "{test}: {err}");
        // 520 entries listed in full would be over 10 kB; the root summary exchange is ~300 B.
        assert!(
            bytes <= 1_000,
            "{test}: push={push}: {bytes} bytes for a no-op re-run"
        );
    }
}

/// Removes a directory in the remote home when the test ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `host:~/dir/`, the way rsync users name a place in their remote home: the remote shell
/// expands rsync's `~`, and xsync's server must do the same (its paths do not pass through
/// that shell). Pushed and pulled, against rsync doing the same into its own directory.
#[test]
fn a_leading_tilde_names_the_remote_home() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    if !have_rsync(test) {
        return;
    }
    let home = run(&mut sshd.ssh("echo ~"));
    assert_eq!(code(&home), 0, "{test}: ssh echo ~: {}", stderr(&home));
    let home = PathBuf::from(String::from_utf8_lossy(&home.stdout).trim());
    assert!(home.is_dir(), "{test}: remote home {home:?}");
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    let id = std::process::id();
    for (tool, name) in [
        ("xsync", format!("xsync-it-tilde-{id}")),
        ("rsync", format!("rsync-it-tilde-{id}")),
    ] {
        let remote_dir = home.join(&name);
        let _cleanup = RemoveOnDrop(remote_dir.clone());
        let mut push = if tool == "xsync" {
            xsync_over(&sshd)
        } else {
            rsync_over(&sshd)
        };
        let out = run(push
            .arg("-a")
            .arg(slash(&src))
            .arg(format!("127.0.0.1:~/{name}/")));
        assert_synced(
            &format!("{test} ({tool} push)"),
            &out,
            &src,
            &remote_dir,
            &sshd,
        );
        let back = dir.path().join(format!("back-{tool}"));
        let mut pull = if tool == "xsync" {
            xsync_over(&sshd)
        } else {
            rsync_over(&sshd)
        };
        let out = run(pull
            .arg("-a")
            .arg(format!("127.0.0.1:~/{name}/"))
            .arg(slash(&back)));
        assert_synced(&format!("{test} ({tool} pull)"), &out, &src, &back, &sshd);
        // `~root` is the same place for the root user the tests log in as.
        if tool == "xsync" && crate::util::is_root() {
            let again = dir.path().join("again");
            let out = run(xsync_over(&sshd)
                .arg("-a")
                .arg(format!("127.0.0.1:~root/{name}/"))
                .arg(slash(&again)));
            assert_synced(
                &format!("{test} (xsync pull from ~root)"),
                &out,
                &src,
                &again,
                &sshd,
            );
        }
    }
}

/// Wildcards in a remote source (`host:'dir/*.txt'`) are the remote shell's for rsync, and
/// xsync's server expands them the same way: the same files land, directories through `*/`,
/// and a pattern that matches nothing fails as a missing source (exit 23) in both.
#[test]
fn remote_source_wildcards_select_what_rsyncs_remote_shell_selects() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    crate::util::TestTree::at(&src)
        .file("a.txt", b"a\n")
        .file("b.txt", b"b\n")
        .file(".hidden.txt", b"h\n")
        .file("c.log", b"c\n")
        .file("sub/d.txt", b"d\n")
        .file("sub2/e.log", b"e\n")
        .stamp(false);
    let src_s = src.to_str().expect("utf-8 temp path");
    for (i, pattern) in ["*.txt", "*/", "s[u]b?", "*/*.log", "*.none"]
        .iter()
        .enumerate()
    {
        let arg = format!("127.0.0.1:{src_s}/{pattern}");
        let (a, b) = (
            dir.path().join(format!("r{i}")),
            dir.path().join(format!("x{i}")),
        );
        let ra = run(rsync_over(&sshd).arg("-a").arg(&arg).arg(slash(&a)));
        let xb = run(xsync_over(&sshd).arg("-a").arg(&arg).arg(slash(&b)));
        assert_eq!(
            code(&xb),
            code(&ra),
            "{test}: {pattern}: rsync: {}\nxsync: {}{}",
            stderr(&ra),
            stderr(&xb),
            context(&sshd)
        );
        if code(&ra) == 0 {
            let diffs = diff_trees(
                &a,
                &b,
                &Compare::for_flags(&["-a"]).ignoring_times_of([PathBuf::new()]),
            );
            assert!(
                diffs.is_empty(),
                "{test}: {pattern}: rsync vs xsync:\n{}",
                diffs.join("\n")
            );
        } else {
            assert!(
                stderr(&xb).contains("*.none"),
                "{test}: the error names the pattern: {}",
                stderr(&xb)
            );
        }
    }
}

/// Pulls `args` (flags and remote sources) into fresh directories with rsync and with xsync,
/// demands that both succeed and that the trees are equal; returns xsync's destination.
fn pull_beside_rsync(test: &str, sshd: &Sshd, dir: &Path, args: &[OsString]) -> PathBuf {
    let (a, b) = (dir.join("r"), dir.join("x"));
    let ra = run(rsync_over(sshd).args(args).arg(slash(&a)));
    let xb = run(xsync_over(sshd).args(args).arg(slash(&b)));
    assert_eq!(code(&ra), 0, "{test}: rsync: {}", stderr(&ra));
    assert_eq!(
        code(&xb),
        0,
        "{test}: xsync: {}{}",
        stderr(&xb),
        context(sshd)
    );
    let diffs = diff_trees(
        &a,
        &b,
        &Compare::for_flags(&["-a"]).ignoring_times_of([PathBuf::new()]),
    );
    assert!(
        diffs.is_empty(),
        "{test}: rsync vs xsync:\n{}",
        diffs.join("\n")
    );
    b
}

/// --ignore-missing-args in a pull: the server, which resolves the sources, leaves out the
/// one that is not there, as rsync's does (exit 0).
#[test]
fn ignore_missing_args_in_a_pull_skips_the_missing_source() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    let args = [
        "-a".into(),
        "--ignore-missing-args".into(),
        sshd.remote(src.join("a.txt")),
        sshd.remote(src.join("no-such-file")),
    ];
    let b = pull_beside_rsync(test, &sshd, dir.path(), &args);
    assert!(b.join("a.txt").is_file(), "{test}: a.txt not copied");
}

/// `host:a :b dst/`: rsync's shorthand for a second source on the same host.
#[test]
fn a_second_remote_source_may_leave_out_the_host() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    let mut second = OsString::from(":");
    second.push(src.join("sub"));
    let args = ["-a".into(), sshd.remote(src.join("a.txt")), second];
    let b = pull_beside_rsync(test, &sshd, dir.path(), &args);
    assert!(
        b.join("a.txt").is_file() && b.join("sub/b.bin").is_file(),
        "{test}: both sources landed"
    );
}

/// `--rsync-path="sudo rsync"`, rsync's idiom for running the far end under another command:
/// xsync runs that command with `xsync` where it says `rsync` (found on the remote PATH, here
/// one the command sets to a directory holding the binary under test).
#[test]
fn rsync_path_runs_the_remote_xsync_in_its_wrapper() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir bin");
    std::os::unix::fs::symlink(XSYNC_BIN, bin.join("xsync")).expect("symlink xsync");
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    small_tree(&src);
    let wrapper = format!("env PATH={}:/usr/bin:/bin /usr/bin/rsync", bin.display());
    let out = run(xsync()
        .env_remove("XSYNC_RSH")
        .args(["-a", "-e", &sshd.rsh()])
        .arg(format!("--rsync-path={wrapper}"))
        .arg(slash(&src))
        .arg(sshd.remote(slash(&dst)))
        .stdin(Stdio::null()));
    assert_synced(test, &out, &src, &dst, &sshd);
}

/// `-av` over ssh prints rsync's shape too: `sending incremental file list` for a push,
/// `receiving …` for a pull, the names the server's end listed, rsync's summary lines.
#[test]
fn verbose_listing_over_ssh_has_rsyncs_shape() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    small_tree(&src);
    for push in [true, false] {
        let outs: Vec<Output> = [rsync_over(&sshd), xsync_over(&sshd)]
            .into_iter()
            .enumerate()
            .map(|(i, mut cmd)| {
                let dst = dir.path().join(format!("dst-{push}-{i}"));
                fs::create_dir(&dst).expect("mkdir dst");
                cmd.arg("-av");
                if push {
                    cmd.arg(slash(&src)).arg(sshd.remote(slash(&dst)));
                } else {
                    cmd.arg(sshd.remote(slash(&src))).arg(slash(&dst));
                }
                run(&mut cmd)
            })
            .collect();
        let name = format!("{test} ({})", if push { "push" } else { "pull" });
        assert_eq!(
            code(&outs[1]),
            0,
            "{name}: {}{}",
            stderr(&outs[1]),
            context(&sshd)
        );
        crate::local::verbose_shape(&name, &outs[0], &outs[1]);
    }
}

/// The run a cron job makes every day: `-a --delete` over ssh, again with nothing changed,
/// then again after one change. A second run once deleted the whole destination (the root
/// arrived without its listing when the digests matched). After each run the tree and the
/// exit code must be rsync's, pushed and pulled.
#[test]
fn delete_rerun_over_ssh_keeps_the_destination() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    for dir in [Direction::Push, Direction::Pull] {
        let t = test_dir();
        let src = t.path().join("src");
        awkward(&src);
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let mut changed = false;
        for round in 1..=3 {
            if round == 3 {
                fs::write(src.join("rerun-new.txt"), b"new on the third run")
                    .unwrap_or_else(|e| panic!("write: {e}"));
                changed = true;
            }
            let mut outs = Vec::new();
            for (side, mut cmd) in [(&a, rsync_over(&sshd)), (&b, xsync_over(&sshd))] {
                cmd.args(["-a", "--delete"]);
                match dir {
                    Direction::Push => cmd.arg(slash(&src)).arg(remote(slash(side))),
                    Direction::Pull => cmd.arg(remote(slash(&src))).arg(slash(side)),
                };
                outs.push(run(&mut cmd));
            }
            assert_eq!(
                code(&outs[0]),
                code(&outs[1]),
                "{dir:?} run {round}: rsync {}, xsync {}{}",
                stderr(&outs[0]),
                stderr(&outs[1]),
                context(&sshd)
            );
            assert_eq!(
                code(&outs[1]),
                0,
                "{dir:?} run {round}: {}",
                stderr(&outs[1])
            );
            let opts = Compare::for_flags(&["-a"]).ignoring_times_of([PathBuf::new()]);
            let diffs = diff_trees(&a, &b, &opts);
            assert!(diffs.is_empty(), "{dir:?} run {round}: {diffs:#?}");
            // (The comparison above is empty for two empty trees too.)
            let kept = fs::read_dir(&b).map(|d| d.count()).unwrap_or(0);
            assert!(
                kept > 3,
                "{dir:?} run {round}: the destination holds {kept} entries"
            );
        }
        assert!(changed && b.join("rerun-new.txt").exists());
    }
}
