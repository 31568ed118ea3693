//! `--json`: every record of a clean run, a run with errors and a cut-short run is valid
//! against docs/json-schema.json (checked by Python's `jsonschema`, Debian's
//! python3-jsonschema), the last line is always the summary, and the counts are the run's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::util::{TestTree, code, is_root, run, skip, stderr, test_dir, xsync};

const XSYNC_BIN: &str = env!("CARGO_BIN_EXE_xsync");

/// A Python that has `jsonschema`, or None (a loud skip).
fn validator(test: &str) -> Option<PathBuf> {
    for py in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(py)
            .args(["-c", "import jsonschema"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(PathBuf::from(py));
        }
    }
    skip(
        test,
        "no python3 with the jsonschema module (Debian: python3-jsonschema)",
    );
    None
}

/// The records of `stdout`, each checked against the schema; the last must be the summary.
fn records(py: &Path, stdout: &[u8]) -> Vec<serde_json::Value> {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json");
    let check = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        v = jsonschema.Draft202012Validator(schema)\n\
        bad = 0\n\
        for n, line in enumerate(sys.stdin, 1):\n\
        \x20   for e in v.iter_errors(json.loads(line)):\n\
        \x20       bad += 1\n\
        \x20       print(f'line {n}: {e.message} at {list(e.absolute_path)}: {line.strip()}')\n\
        sys.exit(1 if bad else 0)\n";
    let mut child = Command::new(py)
        .args(["-c", check])
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdout)
        .expect("feed the validator");
    let out = child.wait_with_output().expect("validator");
    assert!(
        out.status.success(),
        "records not valid against docs/json-schema.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<serde_json::Value> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert_eq!(
        recs.last().and_then(|r| r["type"].as_str()),
        Some("summary"),
        "the last line is the summary: {recs:?}"
    );
    assert_eq!(
        recs.iter().filter(|r| r["type"] == "summary").count(),
        1,
        "one summary: {recs:?}"
    );
    recs
}

fn files<'a>(recs: &'a [serde_json::Value], action: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = recs
        .iter()
        .filter(|r| r["type"] == "file" && r["action"] == action)
        .map(|r| r["path"].as_str().expect("path"))
        .collect();
    v.sort_unstable();
    v
}

fn summary(recs: &[serde_json::Value]) -> &serde_json::Value {
    recs.last().expect("records")
}

fn tree(root: &Path) {
    TestTree::at(root)
        .file("a", b"alpha\n")
        .random_file("big", 3, 200_000)
        .dir("sub")
        .file("sub/b", b"beta\n")
        .symlink("sub/link", "../a");
}

/// A remote shell that runs the command here.
fn local_rsh(dir: &Path, body: &str) -> String {
    let rsh = dir.join("rsh");
    std::fs::write(&rsh, format!("#!/bin/sh\nshift\n{body}\n")).expect("write rsh");
    std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod rsh");
    rsh.display().to_string()
}

/// Local, push and pull, each three times (into an empty destination, again unchanged,
/// again after one change and one deletion under --delete): the records say what happened.
#[test]
fn a_clean_run_is_valid_json_and_counts_what_it_did() {
    let test = this_test!();
    let Some(py) = validator(test) else {
        return;
    };
    let dir = test_dir();
    let rsh = local_rsh(dir.path(), "exec sh -c \"$*\"");
    for way in ["local", "push", "pull"] {
        let src = dir.path().join(format!("src-{way}"));
        tree(&src);
        let dst = dir.path().join(format!("dst-{way}"));
        let (from, to) = match way {
            "local" => (format!("{}/", src.display()), format!("{}/", dst.display())),
            "push" => (
                format!("{}/", src.display()),
                format!("h:{}/", dst.display()),
            ),
            _ => (
                format!("h:{}/", src.display()),
                format!("{}/", dst.display()),
            ),
        };
        let go = || -> Output {
            run(xsync()
                .args([
                    "-a",
                    "--delete",
                    "--json",
                    "-e",
                    &rsh,
                    "--xsync-path",
                    XSYNC_BIN,
                ])
                .arg(&from)
                .arg(&to))
        };
        let out = go();
        assert_eq!(code(&out), 0, "{way}: {}", stderr(&out));
        let recs = records(&py, &out.stdout);
        assert_eq!(
            files(&recs, "created"),
            ["a", "big", "sub/b"],
            "{way}: {recs:?}"
        );
        let s = summary(&recs);
        assert_eq!(s["exit_code"], 0);
        assert_eq!(s["interrupted"], false);
        assert_eq!(s["counts"]["created"], 3, "{way}: {s}");
        assert_eq!(
            s["counts"]["scanned"], 6,
            "{way}: src/, a, big, sub/, sub/b, sub/link: {s}"
        );
        assert_eq!(s["bytes"]["total"], 200_000 + 6 + 5 + 4, "{way}: {s}");
        assert_eq!(s["bytes"]["literal"], 200_000 + 6 + 5, "{way}: {s}");
        if way != "local" {
            assert!(s["bytes"]["sent"].as_u64() > Some(0), "{way}: {s}");
        }

        let out = go();
        assert_eq!(code(&out), 0, "{way}: {}", stderr(&out));
        let recs = records(&py, &out.stdout);
        assert_eq!(
            recs.len(),
            1,
            "{way}: nothing changed, only the summary: {recs:?}"
        );
        assert_eq!(summary(&recs)["counts"]["unchanged"], 3, "{recs:?}");

        std::fs::write(src.join("a"), b"alpha, changed\n").expect("change");
        std::fs::remove_file(src.join("sub/b")).expect("remove");
        let out = go();
        assert_eq!(code(&out), 0, "{way}: {}", stderr(&out));
        let recs = records(&py, &out.stdout);
        assert_eq!(files(&recs, "updated"), ["a"], "{way}: {recs:?}");
        assert_eq!(files(&recs, "deleted"), ["sub/b"], "{way}: {recs:?}");
        let s = summary(&recs);
        assert_eq!(
            (
                &s["counts"]["updated"],
                &s["counts"]["deleted"],
                &s["counts"]["unchanged"]
            ),
            (&1.into(), &1.into(), &1.into()),
            "{way}: {s}"
        );
        // No listing text on stdout besides the records.
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .all(|l| l.starts_with('{'))
        );
    }
}

/// An unreadable file (as nobody, when root): its `failed` record, the others created,
/// exit 23 in the summary with the error listed by path.
#[test]
fn a_run_with_errors_lists_them_by_path() {
    let test = this_test!();
    let Some(py) = validator(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    TestTree::at(&src)
        .file("one", b"1\n")
        .file("secret", b"s\n")
        .chmod("secret", 0o000);
    let mut cmd = if is_root() {
        if crate::sshd::which("setpriv").is_none() {
            skip(test, "running as root and setpriv is not installed");
            return;
        }
        for p in [
            dir.path().to_path_buf(),
            src.clone(),
            src.join("one"),
            src.join("secret"),
        ] {
            std::os::unix::fs::lchown(&p, Some(65534), Some(65534)).expect("chown");
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            XSYNC_BIN,
        ]);
        c
    } else {
        Command::new(XSYNC_BIN)
    };
    let out = run(cmd
        .env("LC_ALL", "C")
        .args(["-a", "--json"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dir.path().join("dst").display())));
    assert_eq!(code(&out), 23, "{}", stderr(&out));
    let recs = records(&py, &out.stdout);
    assert_eq!(files(&recs, "created"), ["one"], "{recs:?}");
    assert_eq!(files(&recs, "failed"), ["secret"], "{recs:?}");
    let s = summary(&recs);
    assert_eq!(s["exit_code"], 23);
    assert_eq!(s["counts"]["errors"], 1, "{s}");
    assert_eq!(s["errors"][0]["path"], "secret", "{s}");
    assert!(
        s["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Permission denied")),
        "{s}"
    );
    // A destination under a plain file cannot be made: an error that is no file's.
    std::fs::write(dir.path().join("plain"), b"").expect("write");
    let out = run(xsync()
        .args(["-a", "--json"])
        .arg(format!("{}/", src.display()))
        .arg(dir.path().join("plain/x/y/")));
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&py, &out.stdout);
    let s = summary(&recs);
    assert_eq!(s["exit_code"].as_i64(), Some(code(&out) as i64), "{s}");
    assert_eq!(s["errors"][0]["path"], serde_json::Value::Null, "{s}");
}

/// Cut short: by SIGTERM during a slow push (exit 20, `interrupted`), and by a connection
/// that dies (the remote shell killed: exit 12, the error in the summary). Both end with a
/// valid summary.
#[test]
fn a_run_cut_short_still_ends_with_its_summary() {
    let test = this_test!();
    let Some(py) = validator(test) else {
        return;
    };
    let dir = test_dir();
    let src = dir.path().join("src");
    TestTree::at(&src)
        .file("a", b"first\n")
        .random_file("slow", 9, 4_000_000);
    let rsh = local_rsh(dir.path(), "exec sh -c \"$*\"");
    let child = xsync()
        .args([
            "-a",
            "--json",
            "--bwlimit=256",
            "-e",
            &rsh,
            "--xsync-path",
            XSYNC_BIN,
        ])
        .arg(format!("{}/", src.display()))
        .arg(format!("h:{}/", dir.path().join("dst").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The transfer takes 16 s at 256 KiB/s; it is surely under way after one.
    std::thread::sleep(std::time::Duration::from_secs(1));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), 20, "{}", stderr(&out));
    let recs = records(&py, &out.stdout);
    let s = summary(&recs);
    assert_eq!(
        (&s["exit_code"], &s["interrupted"]),
        (&20.into(), &true.into()),
        "{s}"
    );

    // The remote shell dies after a second: the connection is lost.
    let dying = local_rsh(dir.path(), "exec timeout -s KILL 1 sh -c \"$*\"");
    let out = run(xsync()
        .args([
            "-a",
            "--json",
            "--bwlimit=256",
            "-e",
            &dying,
            "--xsync-path",
            XSYNC_BIN,
        ])
        .arg(format!("{}/", src.display()))
        .arg(format!("h:{}/", dir.path().join("dst2").display())));
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&py, &out.stdout);
    let s = summary(&recs);
    assert_eq!(s["exit_code"].as_i64(), Some(code(&out) as i64), "{s}");
    assert_eq!(s["interrupted"], false);
    assert!(
        s["counts"]["errors"].as_u64() >= Some(1),
        "the lost connection is listed: {s}"
    );
}
