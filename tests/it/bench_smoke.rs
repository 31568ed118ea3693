//! Smoke test of the benchmark comparison runner, `benches/compare/run.sh --quick`: it must
//! finish, give every quick workload a row with a measured rsync time, and never print a number
//! where a tool did not do the job (every cell is a checked timing or says why it is not).
//! `--quick` runs the local table and, where an sshd can be started, the push (`ssh`) and
//! `pull` tables too (a private sshd on loopback), whose rows must also carry the bytes on the
//! wire.

use std::path::Path;
use std::process::Command;

use crate::sshd::Sshd;
use crate::util;

/// The workloads `--quick` runs (without `--delta` / `--disk`), in table order.
const QUICK_WORKLOADS: &[&str] = &[
    "a-kernel",
    "a-small",
    "b-kernel",
    "b-small",
    "c-kernel",
    "d-bigfile",
];
/// Initial copies, where the copy floor (`cp -a`) runs too.
const COPY_WORKLOADS: &[&str] = &["a-kernel", "a-small", "d-bigfile"];
/// The workloads `--quick` runs over ssh: the local ones plus the delta and compression rows.
const QUICK_SSH_WORKLOADS: &[&str] = &[
    "a-kernel",
    "a-small",
    "b-kernel",
    "b-small",
    "c-kernel",
    "d-bigfile",
    "e-delta-edit",
    "f-delta-insert",
    "g-text-z",
    "g-text",
    "g-text-noz",
];
const TOOL_COLUMNS: &[&str] = &[
    "xsync -a",
    "rsync -a",
    "cp -a",
    "tar \\| tar",
    "fcp",
    "xcp -r",
];

#[test]
fn bench_runner_quick_mode_gives_every_workload_an_honest_row() {
    if !util::have_rsync("bench smoke") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("benches/compare/run.sh"))
        .arg("--quick")
        .env("XSYNC_BIN", env!("CARGO_BIN_EXE_xsync"))
        .env("LC_ALL", "C");
    // A developer's benchmark settings must not change what the smoke test runs.
    for var in [
        "RUNS",
        "SCALE",
        "WORK",
        "TOOLS",
        "DELTA",
        "DISK",
        "TRANSPORT",
        "OUT",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run benches/compare/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "run.sh --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    let table = Table::parse(&stdout, "local");
    for workload in QUICK_WORKLOADS {
        let row = table
            .row(workload)
            .unwrap_or_else(|| panic!("no row for `{workload}` in:\n{stdout}"));
        let rsync = table.cell(row, "rsync -a");
        assert!(
            timing_cell(rsync),
            "`{workload}`: rsync cell is not a measured time: {rsync:?}\n{stdout}"
        );
        if COPY_WORKLOADS.contains(workload) {
            let cp = table.cell(row, "cp -a");
            assert!(
                timing_cell(cp),
                "`{workload}`: cp -a cell is not a measured time: {cp:?}"
            );
        }
        for column in TOOL_COLUMNS {
            let cell = table.cell(row, column);
            assert!(
                honest_cell(cell),
                "`{workload}`/{column}: cell is neither a checked timing nor a stated reason: \
                 {cell:?}\n{stdout}\n{stderr}"
            );
        }
        // A ratio exists exactly when both of its times do.
        let xsync_timed = timing_cell(table.cell(row, "xsync -a"));
        let ratio = table.cell(row, "xsync/rsync");
        assert_eq!(
            xsync_timed,
            ratio
                .strip_suffix('×')
                .is_some_and(|r| r.parse::<f64>().is_ok()),
            "`{workload}`: ratio {ratio:?} does not match the xsync cell"
        );
    }

    // The remote tables, pushing and pulling through the same kind of private sshd.
    for transport in ["ssh", "pull"] {
        check_remote_table(&stdout, &stderr, transport);
    }
}

/// A remote table (`ssh`: push, `pull`): skipped only where this machine cannot run an sshd,
/// and then loudly; otherwise every quick workload has a row with checked timings, the
/// server's RSS and the bytes on the wire.
fn check_remote_table(stdout: &str, stderr: &str, transport: &str) {
    let ssh_line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("**transport: {transport}**")))
        .unwrap_or_else(|| panic!("no {transport} table in:\n{stdout}"));
    match Sshd::prerequisites() {
        Err(why) => {
            util::skip(
                &format!("bench_runner_quick_mode ({transport} rows)"),
                &format!("sshd not available: {why}"),
            );
            assert!(
                ssh_line.contains("skipped"),
                "no sshd here ({why}), yet the {transport} rows ran: {ssh_line}"
            );
            return;
        }
        Ok(()) => assert!(
            !ssh_line.contains("skipped"),
            "sshd is available but the runner skipped {transport}: {ssh_line}\n{stderr}"
        ),
    }
    let table = Table::parse(stdout, transport);
    for workload in QUICK_SSH_WORKLOADS {
        let row = table
            .row(workload)
            .unwrap_or_else(|| panic!("no {transport} row for `{workload}` in:\n{stdout}"));
        for column in ["xsync -a", "rsync -a"] {
            let cell = table.cell(row, column);
            assert!(
                honest_cell(cell),
                "{transport} `{workload}`/{column}: not a checked timing or a stated reason: {cell:?}\n{stdout}\n{stderr}"
            );
        }
        let rsync = table.cell(row, "rsync -a");
        assert!(
            timing_cell(rsync),
            "{transport} `{workload}`: rsync cell is not a measured time: {rsync:?}\n{stdout}"
        );
        assert!(
            rsync.contains("(server ") && !rsync.contains("(server ?)"),
            "{transport} `{workload}`: no server RSS in {rsync:?}"
        );
        let rsync_bytes = table.cell(row, "rsync bytes");
        assert!(
            size_cell(rsync_bytes),
            "{transport} `{workload}`: rsync bytes {rsync_bytes:?} is not a size"
        );
        // Bytes and their ratio exist exactly when xsync's run does.
        let xsync_timed = timing_cell(table.cell(row, "xsync -a"));
        let xsync_bytes = table.cell(row, "xsync bytes");
        assert_eq!(
            xsync_timed,
            size_cell(xsync_bytes),
            "{transport} `{workload}`: xsync bytes {xsync_bytes:?} does not match the xsync cell"
        );
        let ratio = table.cell(row, "bytes xsync/rsync");
        assert_eq!(
            xsync_timed,
            ratio
                .strip_suffix('×')
                .is_some_and(|r| r.parse::<f64>().is_ok()),
            "{transport} `{workload}`: bytes ratio {ratio:?} does not match the xsync cell"
        );
    }
}

/// `1.34 MB`, `259 B`: a byte count as the runner prints it.
fn size_cell(cell: &str) -> bool {
    let mut words = cell.split_whitespace();
    words.next().is_some_and(|n| n.parse::<f64>().is_ok())
        && words
            .next()
            .is_some_and(|u| ["B", "kB", "MB", "GB"].contains(&u))
        && words.next().is_none()
}

/// One of the runner's markdown tables (one per transport): the header's column names and the
/// rows by workload id.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// The table that follows the `**transport: NAME**` line, up to the next blank line.
    fn parse(text: &str, transport: &str) -> Table {
        let split = |line: &str| -> Vec<String> {
            // Cells are separated by " | "; an escaped pipe (`\|`) stays inside its cell.
            let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
            let mut cells = vec![String::new()];
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '|' {
                    cells.push(String::new());
                    continue;
                }
                let Some(current) = cells.last_mut() else {
                    continue;
                };
                current.push(c);
                if c == '\\' && chars.peek() == Some(&'|') {
                    current.push('|');
                    chars.next();
                }
            }
            cells.into_iter().map(|s| s.trim().to_string()).collect()
        };
        let title = format!("**transport: {transport}**");
        let mut lines = text
            .lines()
            .skip_while(|l| !l.starts_with(&title))
            .skip(1)
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| l.starts_with('|'));
        let header = lines
            .next()
            .filter(|l| l.starts_with("| workload |"))
            .map(split)
            .unwrap_or_else(|| panic!("no `{transport}` table in:\n{text}"));
        let rows = lines.filter(|l| l.starts_with("| `")).map(split).collect();
        Table { header, rows }
    }

    fn row(&self, workload: &str) -> Option<&Vec<String>> {
        let id = format!("`{workload}`");
        self.rows.iter().find(|r| r.first() == Some(&id))
    }

    fn cell<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        let i = self
            .header
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column:?} in header {:?}", self.header));
        row.get(i).map(String::as_str).unwrap_or("")
    }
}

/// Drops trailing footnote references like ` [3] [4]`.
fn without_footnotes(cell: &str) -> &str {
    let mut s = cell.trim_end();
    while let Some(open) = s.rfind(" [") {
        let tail = &s[open + 2..];
        match tail.strip_suffix(']') {
            Some(n) if n.parse::<u32>().is_ok() => s = s[..open].trim_end(),
            _ => break,
        }
    }
    s
}

/// `0.123 s · 4.5 MiB` or `0.123 s (0.120–0.130) · 4.5 MiB`.
fn timing_cell(cell: &str) -> bool {
    let cell = without_footnotes(cell);
    let Some((time, rss)) = cell.split_once(" · ") else {
        return false;
    };
    let number_then = |s: &str, unit: &str| {
        let mut words = s.split_whitespace();
        words.next().is_some_and(|n| n.parse::<f64>().is_ok()) && words.next() == Some(unit)
    };
    number_then(time, "s") && number_then(rss, "MiB")
}

/// A timing, or one of the runner's stated reasons for not having one. `WRONG RESULT` and
/// `FAILED` are stated too, but a smoke run on tiny trees must produce neither.
fn honest_cell(cell: &str) -> bool {
    let bare = without_footnotes(cell);
    timing_cell(cell) || ["—", "n/a (xsync: not implemented)", "skipped", "pending"].contains(&bare)
}

#[test]
fn bench_table_cell_grammar() {
    assert!(timing_cell("0.011 s · 3.1 MiB"));
    assert!(timing_cell("1.23 s (1.20–1.30) · 45 MiB [2] [3]"));
    assert!(!timing_cell("n/a (xsync: not implemented)"));
    assert!(!timing_cell("WRONG RESULT"));
    assert!(!timing_cell("pending [1]"));
    assert!(honest_cell("skipped [4]"));
    assert!(!honest_cell("WRONG RESULT [1]"));
    assert!(!honest_cell("FAILED (exit 23)"));
    assert!(!honest_cell("0.5"));
    assert!(timing_cell("0.504 s · 7.0 MiB (server 4.9 MiB)"));
    assert!(size_cell("1.34 MB"));
    assert!(size_cell("259 B"));
    assert!(!size_cell("—"));
    assert!(!size_cell("1.34"));
}

/// `count-bytes` passes rsync's protocol through in both directions (push and pull) and
/// records the bytes on the wire. The "remote shell" is a script that drops the host argument
/// and runs the command locally, which is all rsync needs from `-e`.
#[test]
fn count_bytes_counts_an_rsync_push_and_pull() {
    if !util::have_rsync("count-bytes smoke") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir src");
    let payload: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("a.bin"), &payload).expect("write a.bin");
    std::fs::write(src.join("sub/b.txt"), "hello\n".repeat(1000)).expect("write b.txt");
    let shell = tmp.path().join("fakeshell");
    std::fs::write(&shell, "#!/bin/sh\nshift; exec sh -c \"$*\"\n").expect("write fakeshell");
    let counts = tmp.path().join("bytes");
    let rsh = format!(
        "{} sh {}",
        root.join("benches/compare/count-bytes").display(),
        shell.display()
    );
    let run = |from: String, to: String| {
        let out = Command::new("rsync")
            .args(["-a", "-e", &rsh, &from, &to])
            .env("COUNT_BYTES_OUT", &counts)
            .output()
            .expect("run rsync");
        assert!(
            out.status.success(),
            "rsync -e count-bytes {from} {to}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let push_dst = tmp.path().join("pushed");
    let pull_dst = tmp.path().join("pulled");
    run(
        format!("{}/", src.display()),
        format!("fakehost:{}/", push_dst.display()),
    );
    run(
        format!("fakehost:{}/", src.display()),
        format!("{}/", pull_dst.display()),
    );
    for dst in [&push_dst, &pull_dst] {
        let got = std::fs::read(dst.join("a.bin")).expect("read copied a.bin");
        assert!(got == payload, "{} differs from the source", dst.display());
    }
    let text = std::fs::read_to_string(&counts).expect("read COUNT_BYTES_OUT");
    let lines: Vec<(u64, u64, u64)> = text
        .lines()
        .map(|l| {
            let mut n = l
                .split_whitespace()
                .map(|w| w.parse::<u64>().expect("a count"));
            let sent = n.next().expect("sent");
            let received = n.next().expect("received");
            (sent, received, n.next().expect("the client's peak RSS"))
        })
        .collect();
    assert_eq!(lines.len(), 2, "one line per connection: {text:?}");
    // The peak RSS is rsync's own (count-bytes' parent): a few MiB, never zero.
    for (_, _, peak_kib) in &lines {
        assert!(
            (512..1 << 20).contains(peak_kib),
            "client peak {peak_kib} KiB in {lines:?}"
        );
    }
    let size = payload.len() as u64;
    let (push_sent, push_received, _) = lines[0];
    let (pull_sent, pull_received, _) = lines[1];
    assert!(
        push_sent > size && push_received < size / 10,
        "push counted {lines:?}"
    );
    assert!(
        pull_received > size && pull_sent < size / 10,
        "pull counted {lines:?}"
    );
}
