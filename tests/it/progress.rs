//! `-P`, `--progress` and `--info=progress2`: the trees match rsync's, and the progress lines
//! have rsync's shape and totals (compared with rsync's output on the same tree).

use std::path::Path;
use std::process::Command;

use crate::remote::{rsync_over, xsync_over};
use crate::sshd::Sshd;
use crate::util::{
    Fixture, TestTree, code, differential, have_rsync, rsync, run, stderr, test_dir, xsync,
};

/// A tree with several transferred files (one of 3 MB), a subdirectory and no symlink, so
/// that the file data is the whole total size.
fn files_tree(root: &Path) {
    TestTree::at(root)
        .file("a", b"hello\n")
        .random_file("big", 7, 3_000_000)
        .dir("sub")
        .file("sub/b", b"there\n")
        .random_file("sub/c", 8, 70_000)
        .file("sub/z", b"");
}

/// One progress segment (the text after a `\r`), split into rsync's fields: bytes, percent,
/// rate, time and the `(xfr#N, to-chk=R/T)` trailer, or None if it has another shape.
#[derive(Debug)]
struct Line {
    bytes: u64,
    pct: u32,
    xfr: u64,
    left: u64,
    total: u64,
}

fn parse_segment(seg: &str) -> Option<Line> {
    let w: Vec<&str> = seg.split_whitespace().collect();
    let [bytes, pct, rate, time, xfr, chk] = w[..] else {
        return None;
    };
    if !bytes.chars().all(|c| c.is_ascii_digit() || c == ',') || bytes.starts_with(',') {
        return None;
    }
    let groups: Vec<&str> = bytes.split(',').collect();
    let grouped = (1..=3).contains(&groups[0].len()) && groups[1..].iter().all(|g| g.len() == 3);
    let units = ["kB/s", "MB/s", "GB/s"];
    let rate_ok = units.iter().any(|u| {
        rate.strip_suffix(u)
            .is_some_and(|n| n.parse::<f64>().is_ok())
    });
    let t: Vec<&str> = time.split(':').collect();
    let time_ok = t.len() == 3
        && t.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))
        && t[1].len() == 2
        && t[2].len() == 2;
    let xfr = xfr.strip_prefix("(xfr#")?.strip_suffix(',')?.parse().ok()?;
    let (left, total) = chk
        .strip_prefix("to-chk=")?
        .strip_suffix(')')?
        .split_once('/')?;
    if !(grouped && rate_ok && time_ok) {
        return None;
    }
    Some(Line {
        bytes: bytes.replace(',', "").parse().ok()?,
        pct: pct.strip_suffix('%')?.parse().ok()?,
        xfr,
        left: left.parse().ok()?,
        total: total.parse().ok()?,
    })
}

/// The completed-file lines of `--progress` output: segments with the trailer that end a
/// line.
fn completed_lines(stdout: &str) -> Vec<Line> {
    stdout
        .lines()
        .filter_map(|l| l.rsplit('\r').next())
        .filter(|seg| seg.contains("(xfr#"))
        .map(|seg| parse_segment(seg).unwrap_or_else(|| panic!("not rsync's shape: {seg:?}")))
        .collect()
}

fn run_into(
    mut cmd: Command,
    flags: &[&str],
    src: &Path,
    dst: impl AsRef<std::ffi::OsStr>,
) -> String {
    cmd.args(flags).arg(crate::util::slash(src)).arg(dst);
    let out = run(&mut cmd);
    assert_eq!(code(&out), 0, "{flags:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The checks shared by local and remote runs: one completed line per transferred file, in
/// rsync's shape, at 100%, numbered 1..N, the last `to-chk=0/T` with rsync's T, and each
/// file's name on the line before its progress line.
fn check_against_rsync(ours: &str, theirs: &str) {
    let (mine, rs) = (completed_lines(ours), completed_lines(theirs));
    assert_eq!(mine.len(), rs.len(), "xsync:\n{ours}\nrsync:\n{theirs}");
    assert_eq!(mine.len(), 5, "{ours}");
    for (i, l) in mine.iter().enumerate() {
        assert_eq!(l.pct, 100, "{l:?}");
        assert_eq!(l.xfr, i as u64 + 1, "{ours}");
    }
    let (last, rlast) = (mine.last().expect("lines"), rs.last().expect("lines"));
    assert_eq!(
        (last.left, last.total),
        (0, rlast.total),
        "{ours}\nrsync:\n{theirs}"
    );
    let mut sizes: Vec<u64> = mine.iter().map(|l| l.bytes).collect();
    let mut rsizes: Vec<u64> = rs.iter().map(|l| l.bytes).collect();
    sizes.sort_unstable();
    rsizes.sort_unstable();
    assert_eq!(sizes, rsizes);
    let lines: Vec<&str> = ours.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("(xfr#") {
            let name = lines[i - 1];
            assert!(
                ["a", "big", "sub/b", "sub/c", "sub/z"].contains(&name),
                "name before a progress line: {name:?} in\n{ours}"
            );
        }
    }
}

#[test]
fn dash_avp_gives_rsyncs_tree_and_exit_code() {
    differential("dash_avp_local", &["-avP"], true, Fixture::awkward());
    differential(
        "dash_avp_local",
        &["-avP"],
        false,
        Fixture::over_older_copy(),
    );
}

#[test]
fn progress_prints_one_rsync_line_per_transferred_file() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    files_tree(&src);
    let theirs = run_into(
        rsync().expect("checked"),
        &["-av", "--progress"],
        &src,
        dir.path().join("r"),
    );
    let ours = run_into(xsync(), &["-av", "--progress"], &src, dir.path().join("x"));
    check_against_rsync(&ours, &theirs);
    // Nothing to do: no progress lines, as rsync.
    let again = run_into(xsync(), &["-a", "--progress"], &src, dir.path().join("x"));
    assert!(completed_lines(&again).is_empty(), "{again}");
}

#[test]
fn progress_over_ssh_matches_rsyncs_push_and_pull() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    files_tree(&src);
    let push = |cmd, to: &str| run_into(cmd, &["-avP"], &src, sshd.remote(dir.path().join(to)));
    let theirs = push(rsync_over(&sshd), "r");
    let ours = push(xsync_over(&sshd), "x");
    check_against_rsync(&ours, &theirs);

    let pull = |mut cmd: Command, to: &str| {
        cmd.args(["-avP"])
            .arg(sshd.remote(crate::util::slash(&src)))
            .arg(dir.path().join(to));
        let out = run(&mut cmd);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let theirs = pull(rsync_over(&sshd), "rp");
    let ours = pull(xsync_over(&sshd), "xp");
    check_against_rsync(&ours, &theirs);
}

#[test]
fn progress2_ends_at_100_percent_of_the_total() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    files_tree(&src);
    let flags = ["-a", "--info=progress2"];
    let theirs = run_into(
        rsync().expect("checked"),
        &flags,
        &src,
        dir.path().join("r"),
    );
    let ours = run_into(xsync(), &flags, &src, dir.path().join("x"));
    let last = |text: &str| {
        let seg = text
            .trim_end()
            .rsplit('\r')
            .next()
            .unwrap_or_default()
            .to_string();
        parse_segment(&seg).unwrap_or_else(|| panic!("not rsync's shape: {seg:?} in {text:?}"))
    };
    let (mine, rs) = (last(&ours), last(&theirs));
    assert_eq!(mine.bytes, 3_000_000 + 6 + 6 + 70_000, "{ours:?}");
    assert_eq!(mine.pct, 100, "{ours:?}");
    assert_eq!(
        (mine.bytes, mine.pct, mine.xfr, mine.left, mine.total),
        (rs.bytes, rs.pct, rs.xfr, rs.left, rs.total),
        "xsync {ours:?}\nrsync {theirs:?}"
    );
    // No per-file names without -v, and the line is ended before the run ends.
    assert!(!ours.contains("big"), "{ours:?}");
    assert!(ours.ends_with('\n'), "{ours:?}");
}

#[test]
fn info_name0_silences_the_names() {
    let dir = test_dir();
    let src = dir.path().join("src");
    files_tree(&src);
    let ours = run_into(
        xsync(),
        &["-av", "--progress", "--info=name0"],
        &src,
        dir.path().join("x"),
    );
    assert_eq!(completed_lines(&ours).len(), 5, "{ours}");
    assert!(!ours.lines().any(|l| l == "big" || l == "sub/b"), "{ours}");
}

#[test]
fn unsupported_info_flags_are_refused_by_name() {
    let dir = test_dir();
    let src = dir.path().join("src");
    files_tree(&src);
    for (flag, named) in [
        ("--info=stats2", "stats2"),
        ("--info=progress2,flist", "flist"),
        ("--info=name2", "name2"),
    ] {
        let mut cmd = xsync();
        cmd.arg("-a")
            .arg(flag)
            .arg(crate::util::slash(&src))
            .arg(dir.path().join("x"));
        let out = run(&mut cmd);
        assert_eq!(code(&out), 1, "{flag}");
        assert!(stderr(&out).contains(named), "{flag}: {}", stderr(&out));
        assert!(!dir.path().join("x").exists(), "{flag} ran anyway");
    }
}

// ---------------------------------------------------------------------------------------------
// Live progress, seen through a pseudo-terminal as a person sees it: `script` (util-linux)
// runs xsync on a pty and copies what it writes to a pipe, read here chunk by chunk.
// ---------------------------------------------------------------------------------------------

/// The size of the file whose progress must move while it is sent.
const LIVE_SIZE: usize = 3_000_000;

/// Runs xsync with `args` on a pty; returns what it wrote, as the reads that got it (so a
/// test can tell what was on the screen before what), with the pty's `\r\n` turned back
/// into `\n`. None (a loud skip) without `script`.
fn on_pty(test: &str, args: &[std::ffi::OsString]) -> Option<Vec<String>> {
    if crate::sshd::which("script").is_none() {
        crate::util::skip(test, "`script` (util-linux) is not installed");
        return None;
    }
    let mut words = vec![env!("CARGO_BIN_EXE_xsync").to_string()];
    words.extend(
        args.iter()
            .map(|a| a.to_str().expect("UTF-8 test paths").to_string()),
    );
    let line = shlex::try_join(words.iter().map(String::as_str)).expect("quotable");
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &line, "/dev/null"]);
    Some(reads_of(cmd))
}

/// xsync with `args`, its stdout a pipe, read as it comes.
fn piped(args: &[std::ffi::OsString]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xsync"));
    cmd.args(args);
    reads_of(cmd)
}

fn reads_of(mut cmd: Command) -> Vec<String> {
    use std::io::Read;
    let mut child = cmd
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("piped");
    let mut reads = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reads.push(String::from_utf8_lossy(&buf[..n]).replace("\r\n", "\n")),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read: {e}"),
        }
    }
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "xsync exited {status}: {}",
        reads.concat()
    );
    reads
}

/// Every `\r`- or `\n`-separated segment, with the index of the read it ended in.
fn segments(reads: &[String]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, r) in reads.iter().enumerate() {
        for c in r.chars() {
            if c == '\r' || c == '\n' {
                if !cur.trim().is_empty() {
                    out.push((i, std::mem::take(&mut cur)));
                }
                cur.clear();
            } else {
                cur.push(c);
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push((reads.len(), cur));
    }
    out
}

/// A live (in-flight) per-file segment: bytes, percent, rate, time left.
fn live_segment(seg: &str) -> Option<(u64, u32)> {
    let w: Vec<&str> = seg.split_whitespace().collect();
    let [bytes, pct, rate, time] = w[..] else {
        return None;
    };
    let ok = ["kB/s", "MB/s", "GB/s"].iter().any(|u| rate.ends_with(u)) && time.contains(':');
    ok.then_some(())?;
    Some((
        bytes.replace(',', "").parse().ok()?,
        pct.strip_suffix('%')?.parse().ok()?,
    ))
}

fn live_tree(root: &Path) {
    TestTree::at(root)
        .file("a", b"hello\n")
        .random_file("big", 21, LIVE_SIZE)
        .dir("sub")
        .file("sub/b", b"there\n");
}

/// `-P` on a push and on a pull at 1 MiB/s: the big file's line is shown live — its name,
/// then at least three growing positions below its size, read before the line that ends
/// it — and every file still gets rsync's closing line, numbered in order.
#[test]
fn progress_moves_while_one_big_file_is_in_flight() {
    let test = this_test!();
    let dir = test_dir();
    let src = dir.path().join("src");
    live_tree(&src);
    let rsh = crate::util::local_rsh(dir.path(), crate::util::RUN_HERE);
    let common = |v: &[&str]| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = ["-a", "-P", "--bwlimit=1024", "-e", &rsh]
            .iter()
            .map(Into::into)
            .collect();
        a.extend(["--xsync-path".into(), env!("CARGO_BIN_EXE_xsync").into()]);
        a.extend(v.iter().map(Into::into));
        a
    };
    let src_arg = format!("{}/", src.display());
    let pull_src = format!("h:{}/", src.display());
    let push_dst = format!("h:{}/", dir.path().join("pushed").display());
    let pull_dst = format!("{}/", dir.path().join("pulled").display());
    for (way, args) in [
        ("push", common(&[&src_arg, &push_dst])),
        ("pull", common(&[&pull_src, &pull_dst])),
    ] {
        let Some(reads) = on_pty(test, &args) else {
            return;
        };
        let mut segs = segments(&reads);
        // (On a push the server's `created directory` notice and its directory lines
        // (`./`) are relayed whenever they arrive, which may be after the first file's live
        // line began: not this test's subject.)
        segs.retain(|(_, s)| !s.starts_with("created directory") && !s.ends_with('/'));
        let name = segs
            .iter()
            .position(|(_, s)| s == "big")
            .unwrap_or_else(|| panic!("{way}: no `big` line in {:?}", reads.concat()));
        let end = segs[name..]
            .iter()
            .position(|(_, s)| s.contains("(xfr#"))
            .map(|i| i + name)
            .unwrap_or_else(|| panic!("{way}: no closing line for big: {:?}", reads.concat()));
        let live: Vec<(usize, (u64, u32))> = segs[name + 1..end]
            .iter()
            .map(|(i, s)| {
                (
                    *i,
                    live_segment(s).unwrap_or_else(|| panic!("{way}: not a live line: {s:?}")),
                )
            })
            .collect();
        let positions: Vec<u64> = live.iter().map(|(_, (b, _))| *b).collect();
        assert!(
            positions.windows(2).all(|w| w[0] <= w[1]),
            "{way}: positions go back: {positions:?}"
        );
        let mut distinct = positions.clone();
        distinct.dedup();
        distinct.retain(|&b| b > 0 && b < LIVE_SIZE as u64);
        assert!(
            distinct.len() >= 3,
            "{way}: the line did not move during the file: {positions:?} in {:?}",
            reads.concat()
        );
        assert!(
            live.iter().all(|(_, (_, pct))| *pct < 100),
            "{way}: {live:?}"
        );
        assert!(
            live[0].0 < segs[end].0,
            "{way}: the live lines arrived with the closing one, not before it"
        );
        let closing = completed_lines(&reads.concat());
        assert_eq!(
            closing.iter().map(|l| l.xfr).collect::<Vec<_>>(),
            [1, 2, 3],
            "{way}: {:?}",
            reads.concat()
        );
        assert_eq!(closing.last().map(|l| l.left), Some(0));
    }
}

/// `--info=progress2` over many files and one big one, pushed at 2 MiB/s, piped (rsync's
/// line) and on a terminal (the bar): the bytes move during the big file, and no figure
/// ever goes back — bytes, percent, files — up to the whole.
#[test]
fn progress2_counts_bytes_as_they_move_and_never_goes_back() {
    let test = this_test!();
    let dir = test_dir();
    let src = dir.path().join("src");
    let tree = TestTree::at(&src);
    tree.random_file("big", 5, LIVE_SIZE).dir("many");
    for i in 0..300 {
        tree.random_file(format!("many/f{i:03}"), 100 + i, 2_000);
    }
    let rsh = crate::util::local_rsh(dir.path(), crate::util::RUN_HERE);
    let args: Vec<std::ffi::OsString> = [
        "-a",
        "--info=progress2",
        "--bwlimit=2048",
        "-e",
        &rsh,
        "--xsync-path",
        env!("CARGO_BIN_EXE_xsync"),
        &format!("{}/", src.display()),
        &format!("h:{}/", dir.path().join("dst").display()),
    ]
    .iter()
    .map(Into::into)
    .collect();
    let reads = piped(&args);
    let lines: Vec<Line> = segments(&reads)
        .iter()
        .filter(|(_, s)| s.contains("(xfr#"))
        .map(|(_, s)| parse_segment(s).unwrap_or_else(|| panic!("not rsync's shape: {s:?}")))
        .collect();
    let total = LIVE_SIZE as u64 + 300 * 2_000;
    for w in lines.windows(2) {
        assert!(
            w[0].bytes <= w[1].bytes && w[0].pct <= w[1].pct && w[0].xfr <= w[1].xfr,
            "went back: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    let last = lines.last().expect("lines");
    assert_eq!(
        (last.bytes, last.pct, last.xfr),
        (total, 100, 301),
        "{last:?}"
    );
    // Bytes that moved while no file finished: the big file's, counted as they went.
    let most_moves_between_two_files = lines
        .chunk_by(|a, b| a.xfr == b.xfr)
        .map(|run| {
            let mut b: Vec<u64> = run.iter().map(|l| l.bytes).collect();
            b.dedup();
            b.len()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most_moves_between_two_files >= 3,
        "progress2 did not move during the big file: {:?}",
        reads.concat()
    );

    // On a terminal: the bar's bytes and its `N/M files` never go back either.
    let _ = std::fs::remove_dir_all(dir.path().join("dst"));
    let Some(reads) = on_pty(test, &args) else {
        return;
    };
    let text = reads.concat();
    let frames: Vec<(f64, u64)> = text
        .split(['\r', '\n'])
        .filter(|f| f.contains("] "))
        .filter_map(|f| {
            // `… 2.86 MiB/2.86 MiB 72/301 files 1.16 MiB/s …`
            let (before, _) = f.split_once(" files ")?;
            let files = before.rsplit(' ').next()?.split('/').next()?;
            Some((bar_done(f)?, files.parse().ok()?))
        })
        .collect();
    assert!(frames.len() >= 3, "bar frames: {text:?}");
    for w in frames.windows(2) {
        assert!(
            w[0].0 <= w[1].0 && w[0].1 <= w[1].1,
            "the bar went back: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    assert_eq!(frames.last().map(|f| f.1), Some(301), "{text:?}");
}

/// The bytes a bar frame shows done (`1.25 MiB/2.86 MiB …` → 1.25 MiB), in bytes.
fn bar_done(frame: &str) -> Option<f64> {
    let after = frame.split_once("] ")?.1;
    let (done, _) = after.split_once('/')?;
    let (n, unit) = done.trim().split_once(' ')?;
    let mult = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n.parse::<f64>().ok()? * mult)
}

/// `--info=progress2` on a terminal draws a bar (indicatif) instead of rsync's line: its
/// frames show the bytes done growing during one big file, never going back, ending at the
/// whole size; `--progress=bar` is the same. Piped, progress2 stays rsync's line (the tests
/// above).
#[test]
fn progress2_on_a_terminal_is_a_bar_that_moves_during_one_big_file() {
    let test = this_test!();
    let dir = test_dir();
    let src = dir.path().join("src");
    live_tree(&src);
    let rsh = crate::util::local_rsh(dir.path(), crate::util::RUN_HERE);
    for (i, flag) in ["--info=progress2", "--progress=bar"].iter().enumerate() {
        let args: Vec<std::ffi::OsString> = [
            "-a",
            flag,
            "--bwlimit=1024",
            "-e",
            &rsh,
            "--xsync-path",
            env!("CARGO_BIN_EXE_xsync"),
            &format!("{}/", src.display()),
            &format!("h:{}/", dir.path().join(format!("dst{i}")).display()),
        ]
        .iter()
        .map(Into::into)
        .collect();
        let Some(reads) = on_pty(test, &args) else {
            return;
        };
        let text = reads.concat();
        assert!(
            !text.contains("(xfr#"),
            "{flag}: rsync's line on a terminal: {text:?}"
        );
        let done: Vec<f64> = text
            .split(['\r', '\n'])
            .filter(|f| f.contains("] "))
            .filter_map(bar_done)
            .collect();
        assert!(
            done.windows(2).all(|w| w[0] <= w[1]),
            "{flag}: the bar went back: {done:?}"
        );
        let total = (LIVE_SIZE + 12) as f64;
        let mut during: Vec<f64> = done
            .iter()
            .copied()
            .filter(|&d| d > 0.0 && d < total * 0.99)
            .collect();
        during.dedup();
        assert!(
            during.len() >= 3,
            "{flag}: the bar did not move during the file: {done:?} in {text:?}"
        );
        let last = *done.last().expect("frames");
        assert!(
            (last - total).abs() < total * 0.01,
            "{flag}: ends at the whole size: {last} of {total}"
        );
    }
}
