//! `--append`, `--append-verify` and `-T`/`--temp-dir` against rsync: locally, pushed and
//! pulled, on the re-runs; what rsync lists and counts for them; a temporary directory inside
//! the destination, outside it and on another file system; and a receiver that asks the
//! sender for an append offset past the file.

use crate::peer::Peer;
use crate::remote::{Direction, remote_case_via};
use crate::util::*;
use std::fs;
use std::path::Path;
use std::process::Output;
use xsync::protocol::{Msg, Request, Role};

/// The source: files that grew (one small with another mode, one past the wire's chunk, one
/// of megabytes), one the destination has at the same size with other bytes, one it has
/// longer, one new, one whose destination copy starts with other bytes, one whose
/// destination copy is empty.
fn grown(root: &Path) {
    let t = TestTree::at(root);
    t.file("log/app.log", &pseudo_random(1, 300_000))
        .file("small", &pseudo_random(2, 200))
        .chmod("small", 0o640)
        .file("same-size", &[b'a'; 100])
        .file("longer", &[b'b'; 50])
        .file("new", &[b'n'; 30])
        .file("other-prefix", &[b'x'; 100])
        .file("was-empty", &[b'e'; 40])
        .file("big.bin", &pseudo_random(3, 2_500_000));
    for f in [
        "log/app.log",
        "small",
        "same-size",
        "longer",
        "new",
        "other-prefix",
        "was-empty",
        "big.bin",
    ] {
        t.set_mtime(f, 1_700_000_000, 5);
    }
    t.set_mtime("log", 1_700_000_100, 0);
    set_mtime(root, 1_700_000_200, 0);
}

/// The destination as an earlier, interrupted copy of [`grown`] left it (and a few that are
/// not prefixes at all), older.
fn shorter(root: &Path) {
    let t = TestTree::at(root);
    t.file("log/app.log", &pseudo_random(1, 300_000)[..123_457])
        .file("small", &pseudo_random(2, 200)[..80])
        .chmod("small", 0o644)
        .file("same-size", &[b'z'; 100])
        .file("longer", &[b'c'; 90])
        .file("other-prefix", &[b'Y'; 40])
        .file("was-empty", b"")
        .file("big.bin", &pseudo_random(3, 2_500_000)[..1_000_000]);
    for f in [
        "log/app.log",
        "small",
        "same-size",
        "longer",
        "other-prefix",
        "was-empty",
        "big.bin",
    ] {
        t.set_mtime(f, 1_600_000_000, 0);
    }
    // (Directory times a whole second away from the source's: within one, rsync leaves
    // them alone, and the times of the two sides' runs would decide.)
    t.set_mtime("log", 1_600_000_000, 0);
    set_mtime(root, 1_600_000_000, 0);
}

fn appending() -> Fixture {
    Fixture {
        src: grown,
        older: Some(shorter),
        side: None,
        dst_exists: true,
    }
}

/// What rsync prints that the two must agree on: the itemized lines (sorted: the order of
/// a redo's second line is the receiver's), the counts of `--stats` that say what moved, and
/// rsync's verification warnings.
fn listing(o: &Output) -> Vec<String> {
    let item = |l: &str| {
        let b = l.as_bytes();
        b.len() > 12 && b"<>ch.*".contains(&b[0]) && b"fdLDS".contains(&b[1]) && !l.ends_with(" ./")
    };
    let counted = [
        "Number of regular files transferred:",
        "Total transferred file size:",
        "Literal data:",
        "Matched data:",
    ];
    let mut v: Vec<String> = stdout(o)
        .lines()
        .filter(|l| item(l) || counted.iter().any(|c| l.starts_with(c)))
        .map(str::to_string)
        .chain(
            stderr(o)
                .lines()
                .filter(|l| l.contains("failed verification"))
                .map(str::to_string),
        )
        .collect();
    v.sort();
    v
}

fn same_listing(test: &str, out: &Outcome) -> Vec<String> {
    let (a, b) = (listing(&out.a), listing(&out.b));
    assert_eq!(a, b, "{test}: rsync's listing, then xsync's");
    b
}

#[test]
fn append_adds_only_the_missing_tail_and_leaves_longer_files_as_rsync() {
    let test = this_test!();
    for slash in [true, false] {
        let Some(out) = differential(test, &["-ai", "--stats", "--append"], slash, appending())
        else {
            return;
        };
        let l = same_listing(test, &out);
        // Only the tails crossed: 176,543 + 120 + 1,500,000 + 60 bytes appended, the 40 of
        // the empty one and the 30 of the new one.
        assert!(
            l.contains(&"Literal data: 1,676,793 bytes".to_string()),
            "{test}: {l:?}"
        );
        let dst = out.side_b().join(if slash { "dst" } else { "dst/src" });
        // The existing bytes are trusted, as rsync trusts them.
        let mixed = [&[b'Y'; 40][..], &[b'x'; 60][..]].concat();
        assert_eq!(fs::read(dst.join("other-prefix")).unwrap(), mixed);
        assert_eq!(fs::read(dst.join("longer")).unwrap(), [b'c'; 90]);
        assert_eq!(fs::read(dst.join("same-size")).unwrap(), [b'z'; 100]);
    }
}

#[test]
fn append_verify_sends_a_file_whose_old_data_differs_again_as_rsync() {
    let test = this_test!();
    for slash in [true, false] {
        let Some(out) = differential(
            test,
            &["-ai", "--stats", "--append-verify"],
            slash,
            appending(),
        ) else {
            return;
        };
        let l = same_listing(test, &out);
        let name = if slash {
            "other-prefix"
        } else {
            "src/other-prefix"
        };
        assert!(
            l.contains(&format!(
                "WARNING: {name} failed verification -- update retained (will try again)."
            )),
            "{test}: {l:?}"
        );
        let dst = out.side_b().join(if slash { "dst" } else { "dst/src" });
        assert_eq!(fs::read(dst.join("other-prefix")).unwrap(), [b'x'; 100]);
    }
    // Without -v or -i the warning is not shown, as rsync's is not.
    differential(test, &["-a", "--append-verify"], true, appending());
}

/// Pushed and pulled, each over the re-runs, with rsync's listing.
fn over_ssh(test: &str, flags: &[&str]) {
    for slash in [true, false] {
        for direction in [Direction::Push, Direction::Pull] {
            let case = simple_case(flags, slash, appending());
            if let Some(out) = remote_case_via(test, &case, direction, "") {
                same_listing(test, &out);
            }
        }
    }
}

#[test]
fn append_over_ssh_matches_rsync() {
    over_ssh(this_test!(), &["-ai", "--stats", "--append"]);
}

#[test]
fn append_verify_over_ssh_matches_rsync() {
    over_ssh(this_test!(), &["-ai", "--stats", "--append-verify"]);
}

fn make_tmpd(side: &Path) {
    fs::create_dir_all(side.join("dst/tmpd")).expect("mkdir tmpd");
    set_mtime(&side.join("dst/tmpd"), 1_400_000_000, 0);
    set_mtime(&side.join("dst"), 1_400_000_000, 0);
}

/// `fixture` into a destination that has an empty `tmpd`, whose time each tool's
/// temporaries move as they come and go.
fn tmpd_case<'a>(flags: &'a [&'a str], slash: bool, fixture: Fixture) -> Case<'a> {
    let fixture = Fixture {
        side: Some(make_tmpd),
        ..fixture
    };
    Case {
        time_exempt: if slash {
            &["dst/tmpd"]
        } else {
            &["dst", "dst/tmpd"]
        },
        ..simple_case(flags, slash, fixture)
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir:?}: {e}"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn temp_dir_inside_the_destination_ends_as_rsync_and_empty() {
    let test = this_test!();
    for slash in [true, false] {
        for fixture in [Fixture::awkward(), Fixture::over_older_copy()] {
            let Some(out) = run_case(test, &tmpd_case(&["-a", "-T", "tmpd"], slash, fixture))
            else {
                return;
            };
            let tmpd = out.side_b().join("dst/tmpd");
            assert_eq!(
                names_in(&tmpd),
                Vec::<String>::new(),
                "{test}: left in tmpd"
            );
        }
    }
    // --delete leaves a relative DIR in the destination alone, with what is in it (rsync
    // deletes it and then fails every file), and still deletes what the source lacks.
    let t = test_dir();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    TestTree::at(&src).file("f", b"new");
    TestTree::at(&dst)
        .file("stale", b"old")
        .file("tmpd/mine", b"the user's");
    // What a killed run left in DIR is its temporary, not a file of the destination: not
    // listed, not deleted as one, removed once its run is gone.
    let (host, boot) = xsync::temps::this_machine();
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    let gone_pid = gone.id();
    gone.wait().expect("wait");
    let left = String::from_utf8(xsync::temps::name_for(host, boot, gone_pid, 1, 3)).unwrap();
    fs::write(dst.join("tmpd").join(&left), b"half a file").unwrap();
    let out = run(xsync()
        .args(["-ai", "--delete", "--temp-dir=tmpd"])
        .arg(slash(&src))
        .arg(&dst));
    assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
    assert!(
        !stdout(&out).contains(".xsync-tmp"),
        "{test}: {}",
        stdout(&out)
    );
    assert_eq!(names_in(&dst), ["f", "tmpd"]);
    assert_eq!(names_in(&dst.join("tmpd")), ["mine"]);
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"new");
}

#[test]
fn temp_dir_outside_the_destination_ends_as_rsync_and_its_dead_temporaries_go() {
    let test = this_test!();
    let outside = tempfile::tempdir().expect("tempdir");
    let dir = outside.path().display().to_string();
    for slash in [true, false] {
        let flags = ["-a", "--temp-dir", dir.as_str()];
        if differential(test, &flags, slash, Fixture::over_older_copy()).is_none() {
            return;
        }
        assert_eq!(names_in(outside.path()), Vec::<String>::new(), "{test}");
    }
    // A temporary of a run that is gone is removed; a live run's and a user's file stay.
    let (host, boot) = xsync::temps::this_machine();
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    let gone_pid = gone.id();
    gone.wait().expect("wait");
    let dead = String::from_utf8(xsync::temps::name_for(host, boot, gone_pid, 1, 7)).unwrap();
    let me = std::process::id();
    let start = xsync::temps::process_start(me).expect("/proc");
    let live = String::from_utf8(xsync::temps::name_for(host, boot, me, start, 9)).unwrap();
    for n in [dead.as_str(), live.as_str(), "users-file"] {
        fs::write(outside.path().join(n), b"x").unwrap();
    }
    let t = test_dir();
    TestTree::at(&t.path().join("src")).file("f", b"f");
    let out = run(xsync()
        .args(["-a", "-T", dir.as_str()])
        .arg(slash(&t.path().join("src")))
        .arg(t.path().join("dst")));
    assert_eq!(code(&out), 0, "{test}: {}", stderr(&out));
    let mut want = vec![live, "users-file".to_string()];
    want.sort();
    assert_eq!(names_in(outside.path()), want, "{test}");
}

#[test]
fn temp_dir_on_another_file_system_ends_as_rsync() {
    let test = this_test!();
    let t = test_dir();
    let mnt = t.path().join("ramfs");
    let Some(_ramfs) = Ramfs::mount(test, &mnt) else {
        return;
    };
    let dir = mnt.display().to_string();
    for slash in [true, false] {
        let flags = ["-a", "-T", dir.as_str()];
        if differential(test, &flags, slash, Fixture::over_older_copy()).is_none() {
            return;
        }
        assert_eq!(names_in(&mnt), Vec::<String>::new(), "{test}");
        // -S's holes survive the copy back.
        differential(
            test,
            &["-aS", "-T", dir.as_str()],
            slash,
            Fixture::awkward(),
        );
    }
}

#[test]
fn a_missing_temp_dir_is_rsyncs_usage_error_before_anything_changes() {
    let test = this_test!();
    let Some(out) = differential(
        test,
        &["-a", "-T", "nope"],
        true,
        Fixture::over_older_copy(),
    ) else {
        return;
    };
    assert_eq!(code(&out.b), 1, "{test}: {}", stderr(&out.b));
    assert!(
        stderr(&out.b).contains("The temp-dir does not exist: nope"),
        "{test}: {}",
        stderr(&out.b)
    );
    let t = test_dir();
    TestTree::at(&t.path().join("src")).file("f", b"f");
    TestTree::at(&t.path().join("dst")).file("file", b"not a dir");
    let out = run(xsync()
        .args(["-a", "-T", "file"])
        .arg(slash(&t.path().join("src")))
        .arg(t.path().join("dst")));
    assert_eq!(code(&out), 1, "{test}: {}", stderr(&out));
    assert!(
        stderr(&out).contains("The temp-dir is not a directory: file"),
        "{test}: {}",
        stderr(&out)
    );
}

#[test]
fn temp_dir_over_ssh_matches_rsync() {
    let test = this_test!();
    for slash in [true, false] {
        for direction in [Direction::Push, Direction::Pull] {
            let case = tmpd_case(
                &["-a", "--temp-dir=tmpd"],
                slash,
                Fixture::over_older_copy(),
            );
            if remote_case_via(test, &case, direction, "").is_none() {
                return;
            }
        }
    }
}

/// What a sender answered an append request with: the bytes and the digest, or (when it
/// refused) its exit code.
type Tail = Result<(Vec<u8>, [u8; 16]), i32>;

/// The test is the receiving client of `xsync --server` (the sender) and asks for `f` to be
/// appended from `offset`: what comes back, or the server's exit code when it refuses.
fn ask_for_tail(offset: u64, verify: bool) -> (Tail, String) {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    TestTree::at(&src).file("f", b"0123456789");
    let (mut p, mut child) = Peer::spawn_server();
    let arg = format!("{}/", src.display());
    p.open(Role::Sender, &["-a"], &[arg.as_bytes()])
        .expect("open");
    assert!(matches!(p.recv().expect("sources"), Msg::Sources { .. }));
    assert!(matches!(p.recv().expect("root"), Msg::SourceRoot { .. }));
    p.send(Msg::List {
        dirs: vec![xsync::protocol::ListDir::new(Vec::new(), &[])],
    })
    .expect("list");
    assert!(matches!(p.recv().expect("listing"), Msg::Listing { .. }));
    p.send(Msg::Get {
        files: vec![Request::Append {
            id: 0,
            path: serde_bytes::ByteBuf::from(b"f".to_vec()),
            offset,
            verify,
        }],
    })
    .expect("get");
    // (A server that refused the request may be gone already.)
    let _ = p.send(Msg::GetEnd);
    let mut sent = Vec::new();
    let mut said = String::new();
    let got = loop {
        match p.recv() {
            Ok(Msg::Data { data, end, .. }) => {
                sent.extend_from_slice(&data);
                if let Some(d) = end {
                    break Some(d);
                }
            }
            Ok(Msg::Abort { msg, .. }) => {
                said = msg;
                break None;
            }
            Ok(Msg::Log { .. }) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break None,
        }
    };
    drop(p);
    let status = child.wait().expect("wait");
    match got {
        Some(d) => (Ok((sent, d)), said),
        None => (Err(status.code().unwrap_or(-1)), said),
    }
}

#[test]
fn a_receiver_asking_to_append_from_past_the_file_is_refused_by_the_sender() {
    for offset in [11, 1 << 40, u64::MAX] {
        let (got, said) = ask_for_tail(offset, false);
        assert_eq!(got, Err(12), "offset {offset}: {said}");
    }
    // An offset inside the file: only the bytes from it, with their digest (or the whole
    // file's, under --append-verify).
    let digest = |b: &[u8]| xsync::protocol::wire_digest(blake3::hash(b).as_bytes());
    let (got, _) = ask_for_tail(7, false);
    assert_eq!(got, Ok((b"789".to_vec(), digest(b"789"))));
    let (got, _) = ask_for_tail(7, true);
    assert_eq!(got, Ok((b"789".to_vec(), digest(b"0123456789"))));
    let (got, _) = ask_for_tail(10, false);
    assert_eq!(got, Ok((Vec::new(), digest(b""))));
}
