//! `-A`: POSIX ACLs against rsync: a fresh copy, an update that changes, adds and removes
//! access and default ACLs (attribute-only and with new content), the `a` of `-i`, the
//! no-op re-run and the run after one change (every differential case has them), push and
//! pull, a receiving file system without ACLs, and a sender whose ACLs are malformed.
//!
//! The fixtures are made with `setfacl` (Debian's `acl`), so they do not depend on how
//! xsync writes an ACL; trees compare the kernel's own form of each ACL.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::peer::{HostileServer, Peer, wire};
use crate::remote::{Direction, remote_case};
use crate::util::*;

/// `setfacl ARGS PATH`; the fixtures run only after [`acls_work`] said they can.
fn setfacl(path: &Path, args: &[&str]) {
    let out = run(Command::new("setfacl").args(args).arg(path));
    assert_eq!(code(&out), 0, "setfacl {args:?} {path:?}: {}", stderr(&out));
}

/// Whether this machine can run the ACL tests: `setfacl` installed and the test
/// directory's file system keeping ACLs. Says SKIPPED otherwise.
fn acls_work(test: &str) -> bool {
    if !have_rsync(test) {
        return false;
    }
    let dir = test_dir();
    let probe = dir.path().join("probe");
    fs::write(&probe, b"").expect("write probe");
    match Command::new("setfacl")
        .args(["-m", "u:65534:r"])
        .arg(&probe)
        .output()
    {
        Err(_) => {
            skip(
                test,
                "setfacl is not installed (Debian: apt-get install acl)",
            );
            false
        }
        Ok(o) if !o.status.success() => {
            skip(test, "the test directory's file system has no ACLs");
            false
        }
        Ok(_) => true,
    }
}

/// Files and directories with ACLs: the root itself, named users and groups (one id
/// without a name), a mask-only ACL, a directory with an access and a default ACL, one
/// without, and a symlink (which has none).
fn acl_tree(root: &Path) {
    let t = TestTree::at(root);
    t.file("plain.txt", b"no ACL\n")
        .file("named.txt", b"named entries\n")
        .file("mask.txt", b"a mask only\n")
        .file("gone.txt", b"its ACL goes\n")
        .file("sub/deep.txt", b"deep\n")
        .file("sub/changed.txt", b"new content\n")
        .file("bare/f", b"in a directory without ACLs\n")
        .symlink("link", "named.txt");
    setfacl(root, &["-m", "u:4242:rx"]);
    setfacl(&t.path("named.txt"), &["-m", "u:65534:rwx,g:1:r,u:4242:r"]);
    setfacl(&t.path("mask.txt"), &["-m", "m::r"]);
    setfacl(&t.path("sub"), &["-m", "u:65534:rx"]);
    setfacl(&t.path("sub"), &["-d", "-m", "u:65534:rwx,g:4242:rx"]);
    setfacl(&t.path("sub/deep.txt"), &["-m", "u:2:r"]);
    setfacl(&t.path("sub/changed.txt"), &["-m", "g:4242:rw"]);
    t.stamp(false);
}

/// An older copy of [`acl_tree`]: the same content and times, but ACLs changed, missing
/// or extra, a default ACL where the source has none, and one file whose content changed.
fn acl_tree_older(root: &Path) {
    let t = TestTree::at(root);
    t.file("plain.txt", b"no ACL\n")
        .file("named.txt", b"named entries\n")
        .file("mask.txt", b"a mask only\n")
        .file("gone.txt", b"its ACL goes\n")
        .file("sub/deep.txt", b"deep\n")
        .file("sub/changed.txt", b"old\n")
        .file("bare/f", b"in a directory without ACLs\n")
        .symlink("link", "named.txt");
    setfacl(root, &["-d", "-m", "u:4242:rwx"]);
    setfacl(&t.path("plain.txt"), &["-m", "u:4242:r"]);
    setfacl(&t.path("named.txt"), &["-m", "u:65534:r,u:4243:rw"]);
    setfacl(&t.path("gone.txt"), &["-m", "g:4242:rwx"]);
    setfacl(&t.path("sub"), &["-d", "-m", "u:65534:r"]);
    setfacl(&t.path("sub/deep.txt"), &["-m", "u:2:r"]);
    setfacl(&t.path("bare"), &["-d", "-m", "g:4242:rwx"]);
    t.stamp(false);
}

fn fresh() -> Fixture {
    Fixture::with_src(acl_tree)
}

fn over_older() -> Fixture {
    Fixture {
        src: acl_tree,
        older: Some(acl_tree_older),
        ..Fixture::awkward()
    }
}

/// The `-i` lines, without the `created directory` notice, sorted (the two tools list a
/// directory's entries in their own order).
fn items(o: &std::process::Output) -> Vec<String> {
    let mut v: Vec<String> = stdout(o)
        .lines()
        .filter(|l| !l.starts_with("created directory"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn acls_fresh_copy_matches_rsync() {
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    for slash in [true, false] {
        differential(test, &["-aA"], slash, fresh());
    }
}

#[test]
fn acls_update_changes_adds_and_removes_as_rsync_and_itemizes_a() {
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    for slash in [true, false] {
        let Some(out) = differential(test, &["-aAi"], slash, over_older()) else {
            return;
        };
        let (a, b) = (items(&out.a), items(&out.b));
        assert_eq!(a, b, "{test}: -i lines, rsync vs xsync");
        for line in [".f.......a. ", ">f.s.p...a. ", ".d.......a. "] {
            assert!(
                b.iter().any(|l| l.starts_with(line)),
                "{test}: a line `{line}…` in {b:?}"
            );
        }
    }
}

/// rsync sets an attribute-only file's ACL before it lists it, and the ACL brings the
/// permission bits: such a file shows `a` without `p`, while a mode change alone is `p`.
#[test]
fn acls_and_modes_itemize_as_rsync_where_the_mask_is_the_group_bits() {
    fn src(root: &Path) {
        let t = TestTree::at(root);
        t.file("acl-and-mode.txt", b"1\n")
            .file("mode-only.txt", b"2\n")
            .file("setuid.txt", b"3\n");
        setfacl(&t.path("acl-and-mode.txt"), &["-m", "u:65534:rwx"]);
        setfacl(&t.path("mode-only.txt"), &["-m", "u:65534:r"]);
        setfacl(&t.path("setuid.txt"), &["-m", "u:65534:rw"]);
        t.chmod("setuid.txt", 0o4660);
        t.stamp(false);
    }
    fn older(root: &Path) {
        let t = TestTree::at(root);
        t.file("acl-and-mode.txt", b"1\n")
            .file("mode-only.txt", b"2\n")
            .file("setuid.txt", b"3\n");
        setfacl(&t.path("acl-and-mode.txt"), &["-m", "u:65534:r"]);
        setfacl(&t.path("mode-only.txt"), &["-m", "u:65534:r"]);
        t.chmod("mode-only.txt", 0o600);
        t.stamp(false);
    }
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let fixture = Fixture {
        src,
        older: Some(older),
        ..Fixture::awkward()
    };
    let Some(out) = differential(test, &["-aAi"], true, fixture) else {
        return;
    };
    assert_eq!(items(&out.a), items(&out.b), "{test}: -i lines");
    assert!(
        items(&out.b).contains(&".f.......a. acl-and-mode.txt".to_string()),
        "{test}: {:?}",
        items(&out.b)
    );
}

#[test]
fn acls_noop_rerun_prints_nothing_and_changes_nothing() {
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let Some(out) = differential(test, &["-aA"], true, over_older()) else {
        return;
    };
    assert_noop_rerun_is_silent(test, &out, &["-aAi"]);
}

#[test]
fn without_a_acls_are_neither_copied_nor_removed() {
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let Some(out) = differential(test, &["-a"], true, over_older()) else {
        return;
    };
    let b = acls_of(&out.side_b().join("dst/plain.txt"));
    assert!(b[0].is_some(), "{test}: the older copy's ACL stays");
    assert_eq!(b, acls_of(&out.side_a().join("dst/plain.txt")));
    assert_eq!(acls_of(&out.side_b().join("dst/mask.txt")), [None, None]);
}

#[test]
fn acls_push_over_ssh_match_rsync() {
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let mut case = Case::new(&["-aAi"], &["src/"], "dst");
    case.fixture = over_older();
    remote_case(test, &case, Direction::Push);
}

#[test]
fn acls_pull_over_ssh_match_rsync() {
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let mut case = Case::new(&["-aAi"], &["src"], "dst");
    case.fixture = over_older();
    case.older_at = "dst/src";
    // (dst itself only gets the new entry src.)
    case.time_exempt = &["dst"];
    remote_case(test, &case, Direction::Pull);
}

/// A file system without ACLs (ramfs): rsync still puts every file in place, reports each
/// ACL it cannot set, and exits 23; xsync names the file it could not give its ACL.
#[test]
fn acls_on_a_receiver_without_them_still_copy_files_and_exit_23() {
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let dir = test_dir();
    let src = dir.path().join("src");
    acl_tree(&src);
    let mnt = dir.path().join("ram");
    let Some(_ramfs) = Ramfs::mount(test, &mnt) else {
        return;
    };
    let a = run(rsync()
        .expect("checked")
        .arg("-aA")
        .arg(slash(&src))
        .arg(mnt.join("a")));
    let b = run(xsync().arg("-aA").arg(slash(&src)).arg(mnt.join("b")));
    assert_eq!(code(&a), 23, "rsync: {}", stderr(&a));
    assert_eq!(code(&b), 23, "{test}: xsync: {}", stderr(&b));
    for name in ["named.txt", "sub/changed.txt", "sub"] {
        assert!(
            stderr(&b).contains(&format!(
                "cannot set the ACLs of `{name}`: Operation not supported"
            )),
            "{test}: {name}: {}",
            stderr(&b)
        );
    }
    assert!(
        !stderr(&b).contains("plain.txt"),
        "{test}: a file without an ACL needs none set: {}",
        stderr(&b)
    );
    let diffs = diff_trees(&mnt.join("a"), &mnt.join("b"), &Compare::for_flags(&["-a"]));
    assert!(diffs.is_empty(), "{test}: {diffs:?}");
    assert!(mnt.join("b/sub/changed.txt").exists());
}

/// A sender whose listing holds a malformed ACL: the pull ends with a protocol error (12),
/// the destination's file keeps its content and ACL, and nothing outside it changes.
#[test]
fn a_malformed_acl_from_the_peer_is_refused_and_nothing_is_written() {
    use xsync::acl::{Access, Acls, DefaultAcl, Named, Who};
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let named = |v: &[(Who, u8)]| -> Vec<Named> {
        v.iter().map(|&(who, perm)| Named { who, perm }).collect()
    };
    let access = |n: Vec<Named>| Acls {
        access: Some(Access { group: 4, named: n }),
        default: None,
    };
    let bad: Vec<(&str, xsync::tree::Kind, Acls)> = vec![
        (
            "unsorted",
            xsync::tree::Kind::File,
            access(named(&[(Who::Group(1), 4), (Who::User(3), 7)])),
        ),
        (
            "duplicate",
            xsync::tree::Kind::File,
            access(named(&[(Who::User(3), 7), (Who::User(3), 5)])),
        ),
        (
            "bits",
            xsync::tree::Kind::File,
            access(named(&[(Who::User(3), 9)])),
        ),
        (
            "no id",
            xsync::tree::Kind::File,
            access(named(&[(Who::User(u32::MAX), 4)])),
        ),
        ("empty", xsync::tree::Kind::File, Acls::default()),
        (
            "default on a file",
            xsync::tree::Kind::File,
            Acls {
                access: None,
                default: Some(DefaultAcl {
                    user: 7,
                    group: 5,
                    mask: None,
                    other: 5,
                    named: Vec::new(),
                }),
            },
        ),
        (
            "on a symlink",
            xsync::tree::Kind::Symlink,
            access(Vec::new()),
        ),
    ];
    for (why, kind, acls) in bad {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("parent");
        let dst = outside.join("dst");
        fs::create_dir_all(&dst).unwrap();
        fs::write(outside.join("sibling"), b"keep me").unwrap();
        fs::write(dst.join("f"), b"old content").unwrap();
        setfacl(&dst.join("f"), &["-m", "u:65534:r"]);
        let acl_before = acls_of(&dst.join("f"));
        let mut e = wire(b"f", kind, 11);
        e.acls = Some(Box::new(acls));
        let server = HostileServer::start(t.path(), move |p: &mut Peer| {
            p.accept().expect("handshake");
            p.send_dir_sources().expect("sources");
            let _ = p.serve(vec![vec![e]], |_| b"new content".to_vec());
        });
        let before = snapshot(&outside);
        let out = xsync()
            .args(["-aA"])
            .args(server.via())
            .arg("host:src/")
            .arg(&dst)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run xsync");
        server.finish();
        assert_eq!(code(&out), 12, "{test}: {why}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("ACL"),
            "{test}: {why}: {}",
            stderr(&out)
        );
        assert_eq!(
            diff_snapshots(&before, &snapshot(&outside)),
            Vec::<String>::new(),
            "{test}: {why}"
        );
        assert_eq!(fs::read(dst.join("f")).unwrap(), b"old content", "{why}");
        assert_eq!(acls_of(&dst.join("f")), acl_before, "{test}: {why}");
    }
}

/// Entries for the accounts only NSS knows (`nss.rs`), as this machine numbers them.
fn acls_for_nss_accounts(root: &Path) {
    use crate::nss::{GID, UID};
    let t = TestTree::at(root);
    t.file("f", b"f\n").dir("d");
    setfacl(&t.path("f"), &["-m", &format!("u:{UID}:rwx,g:{GID}:r")]);
    setfacl(
        &t.path("d"),
        &["-d", "-m", &format!("u:{UID}:rx,g:{GID}:rwx")],
    );
    t.stamp(false);
}

/// Over ssh to a server that numbers the same names otherwise (`nss::OtherView`): the
/// named entries arrive with the server's numbers for those names, as rsync's do; with
/// `--numeric-ids`, with the numbers sent.
#[test]
fn acl_entries_map_by_their_nss_names_over_ssh() {
    use crate::nss::{GID, OTHER_GID, OTHER_UID, OtherView, UID, accounts};
    let test = this_test!();
    if !acls_work(test) {
        return;
    }
    let Some(accounts) = accounts(test) else {
        return;
    };
    let Some(view) = OtherView::new(test, accounts) else {
        return;
    };
    for (flags, (u, g)) in [
        (&["-aA"][..], (OTHER_UID, OTHER_GID)),
        (&["-aA", "--numeric-ids"][..], (UID, GID)),
    ] {
        let case = simple_case(flags, true, Fixture::with_src(acls_for_nss_accounts));
        let Some(out) =
            crate::remote::remote_case_via(test, &case, Direction::Push, &view.prefix())
        else {
            return;
        };
        for side in [out.side_a(), out.side_b()] {
            let facl = |rel: &str| {
                let o = run(Command::new("getfacl")
                    .args(["-n", "-c"])
                    .arg(side.join(rel)));
                stdout(&o)
            };
            let (f, d) = (facl("dst/f"), facl("dst/d"));
            for want in [format!("user:{u}:rwx"), format!("group:{g}:r--")] {
                assert!(
                    f.contains(&want),
                    "{test} {flags:?}: {want} in {side:?}/dst/f: {f}"
                );
            }
            for want in [
                format!("default:user:{u}:r-x"),
                format!("default:group:{g}:rwx"),
            ] {
                assert!(
                    d.contains(&want),
                    "{test} {flags:?}: {want} in {side:?}/dst/d: {d}"
                );
            }
        }
    }
}
