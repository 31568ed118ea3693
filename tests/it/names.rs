//! Owner and group names come from NSS, as rsync's do: a user and a group that only
//! libnss-extrausers knows (`nss`: not in `/etc/passwd` or `/etc/group`) are mapped like any
//! other, against rsync doing the same.
//!
//! What each test proves:
//! * locally, `-a` keeps the numbers (one machine: nothing to map) and `--chown=NAME:NAME`
//!   resolves names only NSS knows;
//! * over ssh, the server runs in [`OtherView`], where the same names have other numbers.
//!   A push of files owned by [`UID`]:[`GID`] lands as [`OTHER_UID`]:[`OTHER_GID`] only if the
//!   sender found the names of those ids through NSS *and* the receiver found the ids of
//!   those names through NSS (another database): reading the files would find neither. A
//!   pull proves the same the other way round; `--numeric-ids` keeps the numbers, so the
//!   change is the names' doing; `--chown` is resolved by the receiving end, in its view;
//! * `host:~xsnss-user/` is that user's NSS home on the server.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::nss::{GID, GROUP, HOME, OTHER_GID, OTHER_UID, OtherView, UID, USER, accounts};
use crate::remote::{Direction, remote_case_via, rsync_over, xsync_over};
use crate::sshd::Sshd;
use crate::util::{
    Compare, Fixture, Outcome, TestTree, code, diff_trees, differential, have_rsync, run,
    simple_case, slash, stderr, test_dir,
};

/// A small tree of every common kind, each entry owned by `uid`:`gid`.
fn owned_by(root: &Path, uid: u32, gid: u32) {
    let t = TestTree::at(root);
    t.file("a.txt", b"a\n")
        .file("sub/b.txt", b"b\n")
        .dir("sub/empty")
        .symlink("sub/link", "../a.txt");
    for rel in ["", "a.txt", "sub", "sub/b.txt", "sub/empty", "sub/link"] {
        t.chown(rel, uid, gid)
            .unwrap_or_else(|e| panic!("chown {rel:?} to {uid}:{gid}: {e}"));
    }
    t.stamp(false);
}

/// Owned by the extrausers accounts as this machine (the client) numbers them.
fn owned_here(root: &Path) {
    owned_by(root, UID, GID);
}

/// Owned by the same accounts as the server's [`OtherView`] numbers them.
fn owned_there(root: &Path) {
    owned_by(root, OTHER_UID, OTHER_GID);
}

/// Every entry of `dst` has the owner `expect` gives its source entry's owner (an entry the
/// source lacks is compared as root's); and at least one was not root's, so the check is not
/// vacuous.
fn assert_owners(test: &str, src: &Path, dst: &Path, expect: impl Fn(u32, u32) -> (u32, u32)) {
    let mut mapped = 0;
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let d = fs::symlink_metadata(dst.join(&rel)).unwrap_or_else(|e| panic!("{test}: {e}"));
        let from = fs::symlink_metadata(src.join(&rel)).map_or((0, 0), |m| (m.uid(), m.gid()));
        let want = expect(from.0, from.1);
        assert_eq!(
            (d.uid(), d.gid()),
            want,
            "{test}: owner of {rel:?} in {dst:?} (source's {from:?})"
        );
        if want != (0, 0) {
            mapped += 1;
        }
        if d.is_dir() {
            for e in fs::read_dir(dst.join(&rel)).unwrap_or_else(|e| panic!("{test}: {e}")) {
                stack.push(rel.join(e.unwrap_or_else(|e| panic!("{test}: {e}")).file_name()));
            }
        }
    }
    assert!(
        mapped >= 5,
        "{test}: only {mapped} entries not root's in {dst:?}"
    );
}

/// Both tools' destinations (rsync's `a`, xsync's `b`) checked with [`assert_owners`].
fn assert_both(test: &str, out: &Outcome, expect: impl Fn(u32, u32) -> (u32, u32)) {
    for side in [out.side_a(), out.side_b()] {
        assert_owners(test, &out.src(), &side.join("dst"), &expect);
    }
}

/// `from` → `to`, root → root (rsync never maps id 0), anything else as it is.
fn maps(from: (u32, u32), to: (u32, u32)) -> impl Fn(u32, u32) -> (u32, u32) {
    move |u, g| {
        (
            if u == from.0 { to.0 } else { u },
            if g == from.1 { to.1 } else { g },
        )
    }
}

#[test]
fn local_archive_keeps_owners_only_nss_knows() {
    let test = this_test!();
    if accounts(test).is_none() {
        return;
    }
    if let Some(out) = differential(test, &["-a"], true, Fixture::with_src(owned_here)) {
        assert_both(test, &out, maps((UID, GID), (UID, GID)));
    }
}

#[test]
fn local_chown_resolves_names_only_nss_knows() {
    let test = this_test!();
    if accounts(test).is_none() {
        return;
    }
    let chown = format!("--chown={USER}:{GROUP}");
    let flags = ["-a", chown.as_str()];
    if let Some(out) = differential(test, &flags, true, Fixture::with_src(owned_there)) {
        assert_both(test, &out, |_, _| (UID, GID));
        assert!(
            !stderr(&out.b).contains("unknown"),
            "{test}: xsync warned: {}",
            stderr(&out.b)
        );
    }
}

/// One transfer with the server in the other view, against rsync's with the same view.
fn over_the_wire(
    test: &str,
    flags: &[&str],
    direction: Direction,
    src: fn(&Path),
    expect: impl Fn(u32, u32) -> (u32, u32),
) {
    let Some(accounts) = accounts(test) else {
        return;
    };
    let Some(view) = OtherView::new(test, accounts) else {
        return;
    };
    let case = simple_case(flags, true, Fixture::with_src(src));
    if let Some(out) = remote_case_via(test, &case, direction, &view.prefix()) {
        assert_both(test, &out, expect);
    }
}

#[test]
fn push_maps_owners_by_their_nss_names() {
    over_the_wire(
        this_test!(),
        &["-a"],
        Direction::Push,
        owned_here,
        maps((UID, GID), (OTHER_UID, OTHER_GID)),
    );
}

#[test]
fn pull_maps_owners_by_their_nss_names() {
    over_the_wire(
        this_test!(),
        &["-a"],
        Direction::Pull,
        owned_there,
        maps((OTHER_UID, OTHER_GID), (UID, GID)),
    );
}

#[test]
fn numeric_ids_push_keeps_the_numbers() {
    over_the_wire(
        this_test!(),
        &["-a", "--numeric-ids"],
        Direction::Push,
        owned_here,
        maps((UID, GID), (UID, GID)),
    );
}

#[test]
fn push_chown_is_resolved_in_the_receivers_nss() {
    let chown = format!("--chown={USER}:{GROUP}");
    over_the_wire(
        this_test!(),
        &["-a", &chown],
        Direction::Push,
        owned_here,
        |_, _| (OTHER_UID, OTHER_GID),
    );
}

#[test]
fn pull_chown_is_resolved_in_the_receivers_nss() {
    let chown = format!("--chown={USER}:{GROUP}");
    over_the_wire(
        this_test!(),
        &["-a", &chown],
        Direction::Pull,
        owned_there,
        |_, _| (UID, GID),
    );
}

/// `host:~xsnss-user/dir/`: the server finds the home of a user only NSS knows, where the
/// remote shell finds it for rsync. Pulled and pushed, by both tools.
#[test]
fn tilde_user_is_a_home_only_nss_knows() {
    let test = this_test!();
    if accounts(test).is_none() || !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let there = tempfile::Builder::new()
        .prefix("xsync-it-tilde-")
        .tempdir_in(HOME)
        .unwrap_or_else(|e| panic!("{test}: tempdir in {HOME}: {e}"));
    let name = there
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 temporary name");
    owned_here(&there.path().join("src"));
    let dir = test_dir();
    for tool in ["rsync", "xsync"] {
        let over = if tool == "rsync" {
            rsync_over
        } else {
            xsync_over
        };
        let back = dir.path().join(format!("back-{tool}"));
        let out = run(over(&sshd)
            .arg("-a")
            .arg(format!("127.0.0.1:~{USER}/{name}/src/"))
            .arg(slash(&back)));
        assert_eq!(code(&out), 0, "{test}: {tool} pull: {}", stderr(&out));
        let diffs = diff_trees(&there.path().join("src"), &back, &Compare::default());
        assert!(
            diffs.is_empty(),
            "{test}: {tool} pull:\n{}",
            diffs.join("\n")
        );

        let out = run(over(&sshd)
            .arg("-a")
            .arg(slash(&back))
            .arg(format!("127.0.0.1:~{USER}/{name}/{tool}/")));
        assert_eq!(code(&out), 0, "{test}: {tool} push: {}", stderr(&out));
        let diffs = diff_trees(&back, &there.path().join(tool), &Compare::default());
        assert!(
            diffs.is_empty(),
            "{test}: {tool} push:\n{}",
            diffs.join("\n")
        );
    }
}
