//! Delta transfer over a real sshd: bytes on the wire counted on the ssh pipes by
//! benches/compare/count-bytes, for xsync and rsync alike, on the same update.

use crate::sshd::{HOST, Sshd};
use crate::util::{code, have_rsync, note, pseudo_random, rsync, run, stderr, xsync};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn count_bytes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/count-bytes")
}

/// Runs `cmd` with `-e "count-bytes <rsh>"` and returns (exit code, stderr, bytes both ways).
pub fn counted(cmd: Command, sshd: &Sshd, dir: &Path, tag: &str) -> (i32, String, u64) {
    let (out, bytes) = counted_output(cmd, sshd, dir, tag);
    (code(&out), stderr(&out), bytes)
}

/// [`counted`], keeping the whole output (for `--stats` on stdout).
fn counted_output(mut cmd: Command, sshd: &Sshd, dir: &Path, tag: &str) -> (Output, u64) {
    let out_file = dir.join(format!("bytes-{tag}"));
    let rsh = format!("{} {}", count_bytes().display(), sshd.rsh());
    cmd.arg("-e").arg(rsh).env("COUNT_BYTES_OUT", &out_file);
    let out = run(&mut cmd);
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    (out, wire_total(&text))
}

/// `rsync -a src/ host:dst/` through count-bytes: the bytes rsync needs for the same update.
fn rsync_push_bytes(sshd: &Sshd, src: &Path, dst: &Path, dir: &Path) -> u64 {
    let mut r = rsync().expect("checked by the caller");
    r.arg("-a")
        .arg(crate::util::slash(src))
        .arg(remote_dir(dst));
    let (rc, rerr, rbytes) = counted(r, sshd, dir, "r");
    assert_eq!(rc, 0, "rsync failed: {rerr}");
    rbytes
}

/// Bytes both ways from count-bytes' last line (`<sent> <received> [more fields]`).
fn wire_total(text: &str) -> u64 {
    text.lines()
        .last()
        .map(|l| {
            l.split_whitespace()
                .take(2)
                .filter_map(|w| w.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

pub fn remote_dir(p: &Path) -> String {
    format!("{HOST}:{}/", p.display())
}

/// 20 scattered 50-byte edits and a 100-byte insertion near the start.
fn edited(base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    let step = v.len() / 21;
    for i in 1..=20 {
        let at = i * step;
        for (k, b) in v[at..at + 50].iter_mut().enumerate() {
            *b = b.wrapping_add(1 + k as u8);
        }
    }
    let ins = pseudo_random(99, 100);
    v.splice(1000..1000, ins);
    v
}

/// Sets up src/f (new) and two destinations holding the old version with an older mtime.
fn setup(dir: &Path, old: &[u8], new: &[u8]) -> (PathBuf, PathBuf, PathBuf) {
    let src = dir.join("src");
    let (dx, dr) = (dir.join("dst-x"), dir.join("dst-r"));
    for d in [&src, &dx, &dr] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(src.join("f"), new).unwrap();
    for d in [&dx, &dr] {
        std::fs::write(d.join("f"), old).unwrap();
        crate::util::set_mtime(&d.join("f"), 1_000_000_000, 0);
    }
    (src, dx, dr)
}

fn literal_bytes(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Literal data: "))
        .and_then(|v| v.split_whitespace().next())
        .map(|v| v.replace(',', "").parse().unwrap_or(u64::MAX))
        .unwrap_or(u64::MAX)
}

#[test]
fn delta_update_sends_no_more_than_rsync() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let old = pseudo_random(7, 32 << 20);
    let new = edited(&old);
    let (src, dx, dr) = setup(tmp.path(), &old, &new);

    let rbytes = rsync_push_bytes(&sshd, &src, &dr, tmp.path());

    let mut x = xsync();
    x.arg("-a")
        .arg("--xsync-path")
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(crate::util::slash(&src))
        .arg(remote_dir(&dx));
    let (xc, xerr, xbytes) = counted(x, &sshd, tmp.path(), "x");
    assert_eq!(xc, 0, "xsync failed: {xerr}");

    assert!(
        std::fs::read(dx.join("f")).unwrap() == new,
        "xsync result differs from the source"
    );
    assert!(
        std::fs::read(dr.join("f")).unwrap() == new,
        "rsync result differs from the source"
    );
    note(&format!(
        "NOTE: {test}: 32 MiB, 20 edits + 1 insertion: xsync {xbytes} bytes, rsync {rbytes} bytes on the wire ({:.2}x)",
        xbytes as f64 / rbytes as f64
    ));
    assert!(xbytes > 0 && rbytes > 0, "byte counter saw nothing");
    assert!(
        xbytes <= rbytes,
        "xsync sent {xbytes} bytes, rsync {rbytes}: more than rsync"
    );
    // And far less than the file: the delta worked.
    assert!(xbytes < (32 << 20) / 20, "{xbytes} bytes is not a delta");
}

#[test]
fn insertion_at_the_start_costs_about_the_inserted_bytes() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let old = pseudo_random(11, 16 << 20);
    let mut new = pseudo_random(12, 1000);
    new.extend_from_slice(&old);
    let (src, dx, _) = setup(tmp.path(), &old, &new);
    let mut x = xsync();
    x.arg("-a")
        .arg("--stats")
        .arg("--xsync-path")
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(crate::util::slash(&src))
        .arg(remote_dir(&dx));
    let (out, wire) = counted_output(x, &sshd, tmp.path(), "x");
    assert_eq!(code(&out), 0, "xsync failed: {}", stderr(&out));
    assert!(std::fs::read(dx.join("f")).unwrap() == new);
    let literal = literal_bytes(&String::from_utf8_lossy(&out.stdout));
    let block = 4096; // sqrt(16 MiB)
    assert!(
        literal <= 1000 + 2 * block,
        "an insertion of 1000 bytes cost {literal} literal bytes"
    );
    note(&format!(
        "NOTE: {test}: 16 MiB + 1000 bytes at the start: {literal} literal bytes, {wire} bytes on the wire"
    ));
    // Signature (4096 blocks of 4+3 bytes) plus the literal data and framing: well under
    // 1% of the file.
    assert!(wire > 0 && wire < 160_000, "{wire} bytes on the wire");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the test-only hook: cargo test --features fault-injection (scripts/test does)"
)]
fn corrupted_basis_is_caught_by_the_digest_and_fetched_whole() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let old = pseudo_random(21, 4 << 20);
    let new = edited(&old);
    let (src, dx, _) = setup(tmp.path(), &old, &new);
    pull_over_corrupted_basis(&sshd, &src, &dx, &new);
}

/// Pulls `src` into `dx` with the corrupt-basis hook on (pulling, so the receiver, which
/// hashes and signs the basis, is this process and sees the hook), and checks that the
/// digest caught it and the whole-file redo produced `new`. Returns the command, for a
/// rerun without the hook.
fn pull_over_corrupted_basis(sshd: &Sshd, src: &Path, dx: &Path, new: &[u8]) -> Command {
    let mut x = xsync();
    x.args(["-a", "--stats", "-e"])
        .arg(sshd.rsh())
        .arg("--xsync-path")
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(remote_dir(src))
        .arg(crate::util::slash(dx))
        .env("XSYNC_FAULT_CORRUPT_BASIS", "1");
    let out = run(&mut x);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "xsync failed: {err}");
    assert!(
        err.contains("failed verification"),
        "the corruption went unnoticed: {err}"
    );
    assert!(
        std::fs::read(dx.join("f")).unwrap() == new,
        "the redo did not produce the source content"
    );
    x
}

/// A temporary directory in RAM when there is one: the big-file tests write ~0.5 GiB.
fn big_tempdir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// A file past the coarse threshold (64 MiB) with 1000 bytes inserted mid-block in the
/// middle: the coarse level finds the shifted blocks by their anchors, so the update costs
/// about the inserted bytes (plus the coarse hashes and one block's signature), far below
/// rsync's, and the result is the same as rsync's.
#[test]
fn insertion_in_a_big_file_costs_about_the_inserted_bytes() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = big_tempdir();
    let size = 80usize << 20;
    let old = pseudo_random(71, size);
    let mut new = old.clone();
    let at = size / 2 + 123_457;
    new.splice(at..at, pseudo_random(72, 1000));
    let (src, dx, dr) = setup(tmp.path(), &old, &new);

    let rbytes = rsync_push_bytes(&sshd, &src, &dr, tmp.path());

    let mut x = xsync();
    x.args(["-a", "--stats", "--xsync-path"])
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(crate::util::slash(&src))
        .arg(remote_dir(&dx));
    let (out, xbytes) = counted_output(x, &sshd, tmp.path(), "x");
    assert_eq!(code(&out), 0, "xsync failed: {}", stderr(&out));
    let literal = literal_bytes(&String::from_utf8_lossy(&out.stdout));

    assert!(std::fs::read(dx.join("f")).unwrap() == new, "xsync result");
    assert!(std::fs::read(dr.join("f")).unwrap() == new, "rsync result");
    note(&format!(
        "NOTE: {test}: 80 MiB + 1000 bytes in the middle: xsync {literal} literal bytes, \
         {xbytes} bytes on the wire; rsync {rbytes} bytes ({:.3}x)",
        xbytes as f64 / rbytes as f64
    ));
    // The insertion, and at most a fine block (4 KiB) on either side of it.
    assert!(
        (1000..=1000 + 2 * 4096).contains(&literal),
        "an insertion of 1000 bytes cost {literal} literal bytes"
    );
    // Coarse hashes and anchors (80 × 24 bytes), one 1 MiB range's signature (256 × 12
    // bytes at most), the literal, framing and the handshake.
    assert!(xbytes < 20_000, "{xbytes} bytes on the wire");
    assert!(xbytes <= rbytes, "xsync {xbytes} bytes, rsync {rbytes}");
}

/// On the coarse path the file digest is built from block hashes: a byte that differs
/// from what the coarse hashes said (the test hook flips one in the prefilled temporary
/// after its wire hash was taken, and one in the basis after it was signed) is still caught
/// in the rebuilt file, which is then fetched whole.
#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the test-only hook: cargo test --features fault-injection (scripts/test does)"
)]
fn corrupted_basis_on_the_coarse_path_is_caught_and_fetched_whole() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = big_tempdir();
    let old = pseudo_random(81, 72 << 20);
    // Edits in place only: the block the hook strikes (the middle) is one the receiver
    // keeps from its prefilled temporary, never written again.
    let mut new = old.clone();
    for i in 1..=8 {
        new[i * (8 << 20) + 1000] ^= 0x55;
    }
    let (src, dx, _) = setup(tmp.path(), &old, &new);
    let mut x = pull_over_corrupted_basis(&sshd, &src, &dx, &new);
    // And without the fault the same update is a delta that verifies.
    std::fs::write(dx.join("f"), &old).unwrap();
    crate::util::set_mtime(&dx.join("f"), 1_000_000_000, 0);
    x.env_remove("XSYNC_FAULT_CORRUPT_BASIS");
    let out = run(&mut x);
    assert_eq!(code(&out), 0, "xsync failed: {}", stderr(&out));
    assert!(!stderr(&out).contains("failed verification"));
    assert!(std::fs::read(dx.join("f")).unwrap() == new);
    let literal = literal_bytes(&String::from_utf8_lossy(&out.stdout));
    assert!(literal < 1 << 20, "{literal} literal bytes: not a delta");
}

/// Children of `pid` named `comm`, from /proc.
fn children_named(pid: u32, comm: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid: u32 = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if ppid == pid
            && &stat[open + 1..close] == comm
            && let Some(p) = e.file_name().to_str().and_then(|s| s.parse().ok())
        {
            out.push(p);
        }
    }
    out
}

#[test]
fn partial_keeps_what_arrived_and_the_rerun_sends_the_rest() {
    interrupted_then_rerun(this_test!(), None);
}

#[test]
fn partial_dir_keeps_what_arrived_beside_the_target() {
    interrupted_then_rerun(this_test!(), Some(".xsync-partial"));
}

/// An absolute `--partial-dir` (here beside the destination) keeps the file by its name.
#[test]
fn absolute_partial_dir_keeps_what_arrived_there() {
    interrupted_then_rerun(this_test!(), Some("/partial-abs"));
}

/// A pull cut at ~40% with `--partial` (or `--partial-dir=DIR`), then a rerun: what
/// arrived is kept (in place of the target, or as DIR/big), and the rerun moves about the
/// missing bytes only. A DIR that starts with `/` is that name in the test's directory.
fn interrupted_then_rerun(test: &str, partial_dir: Option<&str>) {
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let size: usize = 192 << 20;
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let src = base.path().join("src");
    let dst = base.path().join("dst");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    let content = pseudo_random(31, size);
    std::fs::write(src.join("big"), &content).unwrap();
    let partial_dir: Option<std::path::PathBuf> = partial_dir.map(|d| match d.strip_prefix('/') {
        Some(name) => base.path().join(name),
        None => d.into(),
    });
    let partial_dir = partial_dir.as_deref();

    let partial_arg = match partial_dir {
        Some(d) => format!("--partial-dir={}", d.display()),
        None => "--partial".to_string(),
    };
    let kept_at = match partial_dir {
        Some(d) => dst.join(d).join("big"),
        None => dst.join("big"),
    };
    // Pull, so this process is the receiver that keeps the partial file.
    let mut x = xsync();
    x.args(["-a", &partial_arg, "-e"])
        .arg(sshd.rsh())
        .arg("--xsync-path")
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(remote_dir(&src))
        .arg(crate::util::slash(&dst))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = x.spawn().expect("spawn xsync");
    // Kill the connection once roughly half the file has arrived.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut killed = false;
    while std::time::Instant::now() < deadline {
        let written: u64 = std::fs::read_dir(&dst)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".xsync-tmp."))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if written >= (size as u64) * 2 / 5 {
            for pid in children_named(child.id(), "ssh") {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    killed = true;
                }
            }
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    if !killed {
        crate::util::skip(test, "the transfer finished before it could be interrupted");
        return;
    }
    assert_ne!(out.status.code(), Some(0), "an interrupted run must fail");
    let kept = std::fs::metadata(&kept_at).map(|m| m.len()).unwrap_or(0);
    assert!(
        kept > 0 && kept < size as u64,
        "{partial_arg} kept {kept} of {size} bytes"
    );
    assert!(
        std::fs::read(&kept_at).unwrap()[..] == content[..kept as usize],
        "the partial file is not a prefix of the source"
    );
    if partial_dir.is_some() {
        assert!(
            !dst.join("big").exists(),
            "--partial-dir must leave the target alone"
        );
    }

    let mut again = xsync();
    again
        .args(["-a", &partial_arg, "--xsync-path"])
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(remote_dir(&src))
        .arg(crate::util::slash(&dst));
    let (c, err, wire) = counted(again, &sshd, base.path(), "rerun");
    assert_eq!(c, 0, "rerun failed: {err}");
    assert!(std::fs::read(dst.join("big")).unwrap() == content);
    if let Some(d) = partial_dir {
        // (rsync leaves an absolute partial dir, only its file goes.)
        let gone = if d.is_absolute() {
            d.join("big")
        } else {
            dst.join(d)
        };
        assert!(
            !gone.exists(),
            "the partial dir must go once the file is complete"
        );
    }
    let missing = size as u64 - kept;
    note(&format!(
        "NOTE: {test}: kept {kept} of {size} bytes; the rerun moved {wire} bytes for the {missing} missing"
    ));
    assert!(
        wire < missing + missing / 10 + (1 << 20),
        "the rerun sent {wire} bytes for {missing} missing bytes"
    );
}

#[test]
fn local_no_whole_file_rebuilds_from_the_basis() {
    let tmp = tempfile::tempdir().unwrap();
    // 5 MiB + a tail that is not a whole block, two edited blocks, and growth.
    let old = pseudo_random(41, (5 << 20) + 12345);
    let mut new = old.clone();
    new[100..150].fill(7);
    new[(3 << 20) + 5..(3 << 20) + 55].fill(9);
    new.extend_from_slice(&pseudo_random(42, 3000));
    let (src, dx, _) = setup(tmp.path(), &old, &new);
    let out = run(xsync()
        .args(["-a", "--no-whole-file", "--stats"])
        .arg(crate::util::slash(&src))
        .arg(crate::util::slash(&dx)));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(std::fs::read(dx.join("f")).unwrap() == new);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let matched = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Matched data: "))
        .and_then(|v| v.split_whitespace().next())
        .map(|v| v.replace(',', "").parse::<u64>().unwrap_or(0))
        .unwrap_or(0);
    let literal = literal_bytes(&stdout);
    assert_eq!(literal + matched, new.len() as u64, "{stdout}");
    // Blocks 0 and 3 and the grown tail differ; blocks 1, 2 and 4 come from the basis.
    assert_eq!(matched, 3 << 20, "{stdout}");
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn inplace_rewrites_the_target_itself_locally() {
    for extra in [&[][..], &["--no-whole-file"][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let old = pseudo_random(51, (3 << 20) + 777);
        let mut new = old.clone();
        new[2_000_000..2_000_100].fill(1);
        new.truncate(3 << 20); // shorter: the old tail must go
        let (src, dx, _) = setup(tmp.path(), &old, &new);
        let before = inode(&dx.join("f"));
        let out = run(xsync()
            .args(["-a", "--inplace"])
            .args(extra)
            .arg(crate::util::slash(&src))
            .arg(crate::util::slash(&dx)));
        assert_eq!(code(&out), 0, "{extra:?}: {}", stderr(&out));
        assert!(
            std::fs::read(dx.join("f")).unwrap() == new,
            "{extra:?}: content"
        );
        assert_eq!(
            inode(&dx.join("f")),
            before,
            "{extra:?}: not rewritten in place"
        );
        let m = std::fs::metadata(src.join("f"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(
            std::fs::metadata(dx.join("f")).unwrap().modified().unwrap(),
            m
        );
    }
}

#[test]
fn inplace_delta_over_ssh_survives_shifted_content() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // An insertion near the start moves everything after it forward: copies from below
    // the write position must not read bytes already rewritten.
    let old = pseudo_random(61, 6 << 20);
    let new = edited(&old);
    let (src, dx, _) = setup(tmp.path(), &old, &new);
    let before = inode(&dx.join("f"));
    for pull in [false, true] {
        std::fs::write(dx.join("f"), &old).unwrap();
        crate::util::set_mtime(&dx.join("f"), 1_000_000_000, 0);
        let mut x = xsync();
        x.args(["-a", "--inplace", "-e"])
            .arg(sshd.rsh())
            .arg("--xsync-path")
            .arg(env!("CARGO_BIN_EXE_xsync"));
        if pull {
            x.arg(remote_dir(&src)).arg(crate::util::slash(&dx));
        } else {
            x.arg(crate::util::slash(&src)).arg(remote_dir(&dx));
        }
        let out = run(&mut x);
        assert_eq!(code(&out), 0, "pull={pull}: {}", stderr(&out));
        assert!(
            std::fs::read(dx.join("f")).unwrap() == new,
            "pull={pull}: in-place result differs from the source"
        );
        assert_eq!(inode(&dx.join("f")), before, "pull={pull}: not in place");
    }
}
