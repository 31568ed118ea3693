//! `--out-format`, `--log-file` and `--log-file-format` against rsync: the same lines on
//! stdout, and the same log (each line's `YYYY/MM/DD HH:MM:SS [PID] ` prefix and the byte
//! counts left out), locally, pushed and pulled, on every re-run ([`rounds`]: into the
//! prepared destination, nothing changed, after one change).

use std::path::Path;
use std::process::Output;

use crate::remote::{Direction, rsync_over, xsync_over};
use crate::sshd::{Sshd, remote};
use crate::util::{
    Case, Fixture, RUNS, arg_path, code, have_rsync, prepare_side, report, rounds, rsync, run,
    simple_case, stderr, stdout, test_dir, xsync,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Over {
    Local,
    Ssh(Direction),
}

const EVERYWHERE: [Over; 3] = [
    Over::Local,
    Over::Ssh(Direction::Push),
    Over::Ssh(Direction::Pull),
];

/// A stdout as compared: without the lines that name a side's own path or count bytes,
/// which differ by design.
fn listing(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            !l.starts_with("created ")
                && !l.starts_with("sent ")
                && !l.starts_with("total size ")
                && !l.starts_with("Total bytes ")
                && !l.starts_with("File list ")
        })
        .map(str::to_owned)
        .collect()
}

/// A log as compared: each line without rsync's prefix (which must be there), the closing
/// line's byte counts as N, and the lines [`listing`] leaves out of stdout left out.
fn log_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in text.lines() {
        let (stamp, rest) = l.split_at(l.len().min(20));
        let shaped = stamp.len() == 20
            && stamp.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'/',
                10 | 19 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            });
        let body = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once("] "))
            .filter(|(pid, _)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, body)| body);
        match (shaped, body) {
            (true, Some(body)) => {
                if let Some(total) = body
                    .strip_prefix("sent ")
                    .and_then(|b| b.split_once("total size "))
                    .map(|(_, t)| t)
                {
                    out.push(format!(
                        "sent N bytes  received N bytes  total size {total}"
                    ));
                } else {
                    out.extend(listing(body));
                }
            }
            _ => out.push(format!("(no prefix) {l}")),
        }
    }
    out
}

/// The deletions of a pull come out as rsync's receiver meets them, between any two other
/// lines: those are compared in order on their own.
fn ordered(lines: &[String], pull: bool) -> (Vec<String>, Vec<String>) {
    if !pull {
        return (lines.to_vec(), Vec::new());
    }
    lines
        .iter()
        .cloned()
        .partition(|l| !(l.contains("deleting ") || l.starts_with("del.")))
}

/// What one run printed and logged.
#[derive(Default)]
struct Seen {
    out: Vec<String>,
    log: Vec<String>,
}

/// rsync and xsync on identical setups, four runs each: equal trees and exit codes (rsync
/// exiting 0), and in every run the same stdout and (with `log`) the same new log lines.
/// `log` is `--log-file`'s place below each side's root, given to each tool for its side.
fn same_output(test: &str, case: &Case, over: Over, log: bool) {
    if !have_rsync(test) {
        return;
    }
    let sshd = match over {
        Over::Local => None,
        Over::Ssh(_) => match Sshd::start(test) {
            Some(s) => Some(s),
            None => return,
        },
    };
    let dir = test_dir();
    let root = dir.path().to_path_buf();
    (case.fixture.src)(&root.join("src"));
    for side in ["a", "b"] {
        prepare_side(&root.join(side), case);
    }
    let (pull, push) = (
        over == Over::Ssh(Direction::Pull),
        over == Over::Ssh(Direction::Push),
    );
    let mut seen: [Vec<Seen>; 2] = Default::default();
    let (a, b, diffs) = rounds(&root, case, ["rsync", "xsync"], true, |i, side| {
        let mut cmd = match (&sshd, i) {
            (None, 0) => rsync().expect("rsync checked above"),
            (None, _) => xsync(),
            (Some(s), 0) => rsync_over(s),
            (Some(s), _) => xsync_over(s),
        };
        cmd.args(case.flags);
        // (Beside the side, not in it: the trees are compared.)
        let log_path = root.join(format!("log-{i}"));
        if log {
            cmd.arg(format!("--log-file={}", log_path.display()));
        }
        for s in case.sources {
            let p = arg_path(&root, s);
            cmd.arg(if pull { remote(p) } else { p });
        }
        let d = arg_path(side, case.dest);
        cmd.arg(if push { remote(d) } else { d });
        cmd.current_dir(&root);
        let before = std::fs::read(&log_path).map(|t| t.len()).unwrap_or(0);
        let out = run(&mut cmd);
        let text = std::fs::read(&log_path).unwrap_or_default();
        seen[i].push(Seen {
            out: listing(&stdout(&out)),
            log: log_lines(&String::from_utf8_lossy(&text[before.min(text.len())..])),
        });
        out
    });
    let outcome = crate::util::Outcome {
        dir,
        a,
        b,
        a_name: "rsync",
        b_name: "xsync",
    };
    assert!(
        diffs.is_empty(),
        "{test} ({over:?}): {}",
        report(case, &outcome, &diffs)
    );
    for (round, (r, x)) in seen[0].iter().zip(&seen[1]).enumerate() {
        for (what, r, x) in [("prints", &r.out, &x.out), ("logs", &r.log, &x.log)] {
            let same = if pull {
                ordered(r, pull) == ordered(x, pull)
            } else {
                crate::listing::same_order(r, x)
            };
            assert!(
                same,
                "{test} ({over:?}, flags {:?}): {} {what} otherwise than rsync\n--- rsync:\n{}\n--- xsync:\n{}",
                case.flags,
                RUNS[round],
                r.join("\n"),
                x.join("\n")
            );
        }
    }
}

fn everywhere(test: &str, flags: &[&str], fixture: fn() -> Fixture, log: bool) {
    for over in EVERYWHERE {
        same_output(test, &simple_case(flags, true, fixture()), over, log);
    }
}

/// The escapes that mean the same on both ends of any run (not %f, which rsync's sending
/// client prefixes with the source argument; not %t and %p, the time and the process).
const ESCAPES: &str = "--out-format=%i|%n|%L|%l|%o|%B|%U|%G|%M|%%|%h|%-6o|%12l|%'l|[%m]";

#[test]
fn out_format_escapes_are_rsyncs() {
    everywhere(
        this_test!(),
        &["-a", "--delete", ESCAPES],
        Fixture::over_older_copy,
        false,
    );
}

/// Without %i the items are -v's (no attribute-only changes), and a deletion is
/// `deleting NAME`; with %o it is in the format.
#[test]
fn out_format_without_i_lists_as_v() {
    let test = this_test!();
    everywhere(
        test,
        &["-a", "--delete", "--out-format=%n%L"],
        Fixture::over_older_copy,
        false,
    );
    everywhere(
        test,
        &["-a", "--delete", "--out-format=%o: %n"],
        Fixture::over_older_copy,
        false,
    );
}

/// With -v and -i it still replaces their lines; -v keeps its header and summary.
#[test]
fn out_format_replaces_the_lines_of_v_and_i() {
    let test = this_test!();
    for flags in [
        &["-av", "--delete", "--out-format=<%n>"][..],
        &["-ai", "--delete", "--out-format=<%n>"],
        &["-q", "-a", "--delete", "--out-format=<%n>"],
    ] {
        same_output(
            test,
            &simple_case(flags, true, Fixture::over_older_copy()),
            Over::Local,
            false,
        );
    }
}

/// %f is the path rsync's receiver has (a pull's): the name without a directory's `/`.
#[test]
fn a_pull_shows_paths_as_rsync() {
    same_output(
        this_test!(),
        &simple_case(
            &["-a", "--delete", "--out-format=%i %f"],
            true,
            Fixture::over_older_copy(),
        ),
        Over::Ssh(Direction::Pull),
        false,
    );
}

#[test]
fn the_log_file_is_rsyncs() {
    everywhere(
        this_test!(),
        &["-a", "--delete"],
        Fixture::over_older_copy,
        true,
    );
}

/// The log's own format, and -v's summary (logged in place of the closing line), and
/// --stats under -q (logged though not printed).
#[test]
fn the_log_file_format_is_rsyncs() {
    let test = this_test!();
    everywhere(
        test,
        &["-a", "--delete", "--log-file-format=%o %n%L %l"],
        Fixture::over_older_copy,
        true,
    );
    for flags in [
        &["-av", "--delete", "--log-file-format=%i %n"][..],
        &["-a", "-q", "--stats", "--log-file-format=%n"],
        &["-a", "-n", "--delete"],
    ] {
        same_output(
            test,
            &simple_case(flags, true, Fixture::over_older_copy()),
            Over::Local,
            true,
        );
    }
}

/// %b is a file's bytes, so its line comes when the file is done: the same lines as rsync's
/// (in the order the files finish), each transferred file's count at least its data;
/// locally, pushed and pulled (through a remote shell that runs the command here, so the
/// server's lines, made when its files are done, are relayed too).
#[test]
fn bytes_are_shown_when_a_file_is_done() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    crate::util::awkward(&src);
    let rsh = crate::util::local_rsh(dir.path(), crate::util::RUN_HERE);
    let lines = |tool: &mut std::process::Command, over: Over, dst: &Path| -> Vec<(String, bool)> {
        tool.args(["-a", "--out-format=%i|%n|%b|%l", "-e", &rsh]);
        let (s, d) = (crate::util::slash(&src), crate::util::slash(dst));
        match over {
            Over::Local => tool.arg(s).arg(d),
            Over::Ssh(Direction::Push) => tool.arg(s).arg(remote(d)),
            Over::Ssh(Direction::Pull) => tool.arg(remote(s)).arg(d),
        };
        let out = run(tool);
        assert_eq!(code(&out), 0, "{test} ({over:?}): {}", stderr(&out));
        let mut v: Vec<(String, bool)> = stdout(&out)
            .lines()
            .filter(|l| !l.starts_with("created "))
            .map(|l| {
                let f: Vec<&str> = l.rsplitn(3, '|').collect();
                let [len, b, item] = f[..] else {
                    return (format!("(not a line) {l}"), false);
                };
                // A transferred file sends at least its data; nothing else sends any.
                let sent: u64 = b.parse().unwrap_or(u64::MAX);
                let size: u64 = len.parse().unwrap_or(0);
                let ok = if item.starts_with(['>', '<']) {
                    sent >= size
                } else {
                    sent == 0
                };
                (item.to_string(), ok)
            })
            .collect();
        v.sort();
        v
    };
    for (n, over) in EVERYWHERE.into_iter().enumerate() {
        let r = lines(
            rsync().expect("checked").arg("--rsync-path=rsync"),
            over,
            &dir.path().join(format!("a{n}")),
        );
        let x = lines(
            xsync().args(["--xsync-path", env!("CARGO_BIN_EXE_xsync")]),
            over,
            &dir.path().join(format!("b{n}")),
        );
        assert_eq!(r, x, "{test} ({over:?})");
        assert!(r.iter().all(|(_, ok)| *ok), "{test} ({over:?}): {r:?}");
    }
}

/// A log that cannot be opened is said, and the run goes on without it, exit 0 (rsync's).
#[test]
fn a_log_file_that_cannot_be_opened_is_reported() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    crate::util::awkward(&src);
    let bad = dir.path().join("no-such-dir").join("log");
    let mut outs: Vec<Output> = Vec::new();
    for (tool, side) in [(rsync().expect("checked"), "a"), (xsync(), "b")] {
        let mut tool = tool;
        outs.push(run(tool
            .arg("-a")
            .arg(format!("--log-file={}", bad.display()))
            .arg(crate::util::slash(&src))
            .arg(dir.path().join(side))));
    }
    for o in &outs {
        assert_eq!(code(o), 0, "{test}: {}", stderr(o));
        assert_eq!(stdout(o), "Ignoring \"log file\" setting.\n", "{test}");
        assert!(stderr(o).contains("log-file"), "{test}: {}", stderr(o));
    }
    assert!(
        stderr(&outs[1]).contains(&bad.display().to_string()),
        "{test}: {}",
        stderr(&outs[1])
    );
}
