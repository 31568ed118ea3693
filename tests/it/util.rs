//! The integration-test harness: how to run the two tools, how to build awkward source trees,
//! how to compare two trees, and the differential runner that puts rsync and xsync side by side.
//!
//! rsync is the oracle. Most tests build a tree, run `rsync FLAGS` into one destination and
//! `xsync FLAGS` into an identical one, and demand the same exit code and the same resulting
//! tree (paths, kinds, bytes, modes, owners, times with nanoseconds, link targets, devices and
//! hard-link groups). The comparer is itself tested (see `harness_*` tests in local.rs) so that
//! it cannot pass silently.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Running the tools
// ---------------------------------------------------------------------------------------------

/// The xsync binary under test.
pub fn xsync() -> Command {
    command(Path::new(env!("CARGO_BIN_EXE_xsync")), &[])
}

/// Where rsync is installed, if it is.
pub fn rsync_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join("rsync"))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// rsync, or `None` when it is not installed: the caller then reports the test as skipped with
/// [`skip`] and returns (never a silent pass).
pub fn rsync() -> Option<Command> {
    rsync_path().map(|p| command(&p, &[]))
}

/// Returns true when rsync is available; otherwise prints the skip notice for `test`.
pub fn have_rsync(test: &str) -> bool {
    if rsync_path().is_some() {
        true
    } else {
        skip(test, "rsync not installed");
        false
    }
}

/// Says loudly that (part of) a test did not run.
pub fn skip(test: &str, why: &str) {
    note(&format!("SKIPPED: {test}: {why}"));
}

/// Writes a line to the real stderr: libtest captures `eprintln!` of passing tests, and a skip
/// that nobody sees is a silent pass.
pub fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// True when running as root (CI does; developers may not).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A command with a predictable environment; `wrap` (e.g. `setpriv …`) goes in front.
fn command(program: &Path, wrap: &[&str]) -> Command {
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    };
    // Messages in English and no rsync settings leaking in from the developer's shell.
    cmd.env("LC_ALL", "C")
        .env("LANG", "C")
        .env_remove("RSYNC_RSH")
        .env_remove("RSYNC_PROTECT_ARGS")
        .env_remove("RSYNC_OLD_ARGS");
    cmd
}

/// Runs a command to completion, panicking only if it could not be started at all.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// The exit code, or 128+signal when killed, for messages and comparisons.
pub fn code(out: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    out.status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Joins `base` and a relative argument while keeping a trailing slash, which carries meaning
/// on an rsync command line.
pub fn arg_path(base: &Path, rel: &str) -> OsString {
    let mut s = base.as_os_str().to_owned();
    if !rel.is_empty() {
        s.push("/");
        s.push(rel);
    }
    s
}

/// `path/`: a directory argument whose contents, not itself, are meant.
pub fn slash(path: &Path) -> OsString {
    let mut s = path.as_os_str().to_owned();
    s.push("/");
    s
}

// ---------------------------------------------------------------------------------------------
// Deterministic content
// ---------------------------------------------------------------------------------------------

/// A tiny xorshift64 generator: reproducible pseudo-random bytes without a `rand` dependency.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero forever.
        XorShift(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    XorShift::new(seed).fill(&mut v);
    v
}

/// FNV-1a: a stable hash of a path, used to derive per-path timestamps.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Building trees
// ---------------------------------------------------------------------------------------------

/// Builds a tree under `root`. Paths are relative to the root; parents are created as needed.
/// Methods panic on failure (a broken fixture is a broken test), except those that may
/// legitimately be refused to a non-root user, which return `io::Result`.
pub struct TestTree {
    root: PathBuf,
}

impl TestTree {
    /// A builder for `root`, which is created if missing.
    pub fn at(root: &Path) -> TestTree {
        fs::create_dir_all(root).unwrap_or_else(|e| panic!("mkdir {root:?}: {e}"));
        TestTree {
            root: root.to_path_buf(),
        }
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    fn parent_of(&self, rel: &Path) {
        if let Some(parent) = self.path(rel).parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {parent:?}: {e}"));
        }
    }

    pub fn dir(&self, rel: impl AsRef<Path>) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {p:?}: {e}"));
        self
    }

    pub fn file(&self, rel: impl AsRef<Path>, content: &[u8]) -> &Self {
        let rel = rel.as_ref();
        self.parent_of(rel);
        let p = self.path(rel);
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        self
    }

    pub fn random_file(&self, rel: impl AsRef<Path>, seed: u64, len: usize) -> &Self {
        self.file(rel, &pseudo_random(seed, len))
    }

    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<OsStr>) -> &Self {
        let rel = rel.as_ref();
        self.parent_of(rel);
        let p = self.path(rel);
        std::os::unix::fs::symlink(target.as_ref(), &p)
            .unwrap_or_else(|e| panic!("symlink {p:?}: {e}"));
        self
    }

    pub fn hardlink(&self, existing: impl AsRef<Path>, new: impl AsRef<Path>) -> &Self {
        let new = new.as_ref();
        self.parent_of(new);
        let (a, b) = (self.path(existing), self.path(new));
        fs::hard_link(&a, &b).unwrap_or_else(|e| panic!("link {a:?} {b:?}: {e}"));
        self
    }

    pub fn fifo(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let rel = rel.as_ref();
        self.parent_of(rel);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            self.path(rel),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )?;
        Ok(())
    }

    /// A character device (root only; containers may refuse it even to root).
    pub fn chardev(&self, rel: impl AsRef<Path>, major: u32, minor: u32) -> io::Result<()> {
        let rel = rel.as_ref();
        self.parent_of(rel);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            self.path(rel),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o644),
            rustix::fs::makedev(major, minor),
        )?;
        Ok(())
    }

    /// Sets the permission bits (including setuid/setgid/sticky). Call after `chown`, which
    /// clears setgid.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) -> &Self {
        let p = self.path(rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {p:?}: {e}"));
        self
    }

    /// Changes the owner without following symlinks (root only).
    pub fn chown(&self, rel: impl AsRef<Path>, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(self.path(rel), Some(uid), Some(gid))
    }

    /// Sets atime and mtime (with nanoseconds) without following symlinks.
    pub fn set_mtime(&self, rel: impl AsRef<Path>, secs: i64, nsec: i64) -> &Self {
        set_mtime(&self.path(rel), secs, nsec);
        self
    }

    /// Removes a file, symlink or whole directory.
    pub fn remove(&self, rel: impl AsRef<Path>) -> &Self {
        let p = self.path(rel);
        let meta = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {p:?}: {e}"));
        let r = if meta.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.unwrap_or_else(|e| panic!("remove {p:?}: {e}"));
        self
    }

    /// Gives every entry (or only every directory) a deterministic mtime with nanoseconds
    /// derived from its relative path, children before parents so that directory times stick.
    pub fn stamp(&self, dirs_only: bool) -> &Self {
        stamp_tree(&self.root, &self.root, dirs_only);
        self
    }
}

pub fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {path:?}: {e}"));
}

/// The deterministic time `stamp` gives to `rel`: somewhere in 2017–2023, never a whole second.
pub fn stamp_time(rel: &Path) -> (i64, i64) {
    let h = fnv1a(rel.as_os_str().as_bytes());
    (
        1_500_000_000 + (h % 200_000_000) as i64,
        1 + ((h >> 32) % 999_999_998) as i64,
    )
}

fn sorted_children(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {dir:?}: {e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("readdir {dir:?}: {e}")).path())
        .collect();
    v.sort();
    v
}

fn stamp_tree(root: &Path, path: &Path, dirs_only: bool) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {path:?}: {e}"));
    if meta.is_dir() {
        for child in sorted_children(path) {
            stamp_tree(root, &child, dirs_only);
        }
    } else if dirs_only {
        return;
    }
    let rel = path.strip_prefix(root).unwrap_or(path);
    let (s, ns) = stamp_time(rel);
    set_mtime(path, s, ns);
}

/// What the fixture builders could not create here (printed once per test binary).
static FIXTURE_NOTE: Once = Once::new();

fn note_fixture_limits(missing: &[&str]) {
    if missing.is_empty() {
        return;
    }
    FIXTURE_NOTE.call_once(|| {
        note(&format!(
            "NOTE: awkward fixture built without: {} (they need root); those cases are not tested",
            missing.join(", ")
        ));
    });
}

/// The 60-deep directory chain used by `awkward`.
pub fn deep_path() -> PathBuf {
    let mut p = PathBuf::from("deep");
    for i in 1..=60 {
        p.push(format!("d{i:02}"));
    }
    p
}

/// The non-UTF-8 file name in `awkward`.
pub fn non_utf8_name() -> &'static OsStr {
    OsStr::from_bytes(b"latin1-\xe9t\xe9-\xff.bin")
}

/// The awkward source tree every differential test starts from.
///
/// Empty files and directories; sizes around block and buffer boundaries; names with spaces, a
/// newline, a leading dash, UTF-8, a non-UTF-8 byte and 245 bytes; 60 levels of nesting;
/// relative, absolute, dangling and directory symlinks; a 3-name hard-link group across two
/// directories; a fifo and (root only) a character device; modes 0444, 0600, 0755, 2755 and a
/// 0700 directory and a setgid directory; (root only) foreign owners; explicit nanosecond
/// mtimes everywhere, directories last.
pub fn awkward(root: &Path) {
    let t = TestTree::at(root);
    let mut missing = Vec::new();

    t.file("empty", b"").dir("empty_dir").dir("a/b/empty_leaf");
    for (i, size) in [0usize, 1, 4095, 4096, 4097, 65536, 65537]
        .into_iter()
        .enumerate()
    {
        t.random_file(format!("sizes/s{size}"), 100 + i as u64, size);
    }
    t.random_file("sizes/three_mib", 7, 3 * 1024 * 1024 + 123);

    t.file("names/with space.txt", b"space\n")
        .file("names/new\nline", b"newline\n")
        .file("names/-leading-dash", b"dash\n")
        .file("names/ünïcødé-日本語.txt", b"utf8\n")
        .file(Path::new("names").join(non_utf8_name()), b"latin1\n")
        .file(format!("names/{}.txt", "L".repeat(241)), b"long\n");

    t.file(deep_path().join("leaf.txt"), b"deep leaf\n");

    t.file("txt/a.txt", b"alpha\n")
        .file("txt/b.txt", b"beta\n")
        .file("txt/sub/c.txt", b"gamma\n")
        .file("txt/sub/notes.md", b"not txt\n")
        .file("top.txt", b"top\n")
        .file("app.log", b"log at top\n")
        .file("txt/sub/deeper.log", b"log below\n")
        .file("newer.txt", b"source version of newer\n")
        .file("samesize.bin", b"AAAAAAAAAAAAAAAA");

    t.symlink("links/rel", "../sizes/s1")
        .symlink("links/abs", "/nonexistent/absolute/target")
        .symlink("links/dangling", "does-not-exist")
        .symlink("links/to_dir", "../txt")
        .symlink("links/self_dir_dot", ".");

    t.random_file("hard/h1", 42, 5000)
        .hardlink("hard/h1", "hard/h2")
        .hardlink("hard/h1", "other/h3");

    if let Err(e) = t.fifo("special/fifo") {
        panic!("mkfifo: {e}");
    }
    if is_root() {
        if t.chardev("special/null", 1, 3).is_err() {
            missing.push("character device (mknod refused even to root)");
        }
    } else {
        missing.push("character device");
    }

    t.file("modes/r0444", b"read only\n")
        .file("modes/r0600", b"private\n")
        .file("modes/x0755", b"#!/bin/sh\n")
        .file("modes/sgid2755", b"setgid\n")
        .file("modes/dir0700/inside", b"inside\n")
        .file("modes/sgid_dir/inside", b"inside sgid dir\n");

    if is_root() {
        for (rel, uid, gid) in [
            ("owners/u1234_g5678", 1234, 5678),
            ("owners/u0_g5678", 0, 5678),
            ("owners/u4321_g0", 4321, 0),
        ] {
            t.file(rel, rel.as_bytes());
            t.chown(rel, uid, gid)
                .unwrap_or_else(|e| panic!("chown {rel}: {e}"));
        }
        t.dir("owners/dir_u1234");
        t.chown("owners/dir_u1234", 1234, 1234)
            .unwrap_or_else(|e| panic!("chown dir: {e}"));
        t.chown("links/rel", 1234, 5678)
            .unwrap_or_else(|e| panic!("lchown symlink: {e}"));
    } else {
        missing.push("foreign owners");
    }

    // Modes last among the metadata: chown clears setgid.
    t.chmod("modes/r0444", 0o444)
        .chmod("modes/r0600", 0o600)
        .chmod("modes/x0755", 0o755)
        .chmod("modes/sgid2755", 0o2755)
        .chmod("modes/dir0700", 0o700)
        .chmod("modes/sgid_dir", 0o2755);

    t.stamp(false);
    note_fixture_limits(&missing);
}

/// An older copy of `awkward` as it might sit in a destination: some files changed (by size,
/// by content and mtime, by kind), some missing, some extra (including excluded ones), the
/// hard-link group broken, one file newer than the source, one with equal size and mtime but
/// different bytes.
pub fn awkward_older_copy(root: &Path) {
    awkward(root);
    let t = TestTree::at(root);
    t.remove("sizes/s4097")
        .remove("names/with space.txt")
        .remove("a/b")
        .remove("hard/h2");
    t.random_file("sizes/s1", 999, 2)
        .random_file("sizes/s65536", 998, 65536);
    t.file("samesize.bin", b"BBBBBBBBBBBBBBBB");
    t.file("newer.txt", b"receiver's newer version, longer\n");
    // The hard link is broken: h2 is a separate file with the same bytes.
    t.random_file("hard/h2", 42, 5000);
    // A kind change: the source has a symlink here, and a directory at `empty_dir`.
    t.remove("links/rel").file("links/rel", b"was a file\n");
    t.remove("empty_dir").file("empty_dir", b"was a file\n");
    // Extraneous entries, for --delete.
    for i in 0..5 {
        t.file(format!("extra{i}.dat"), format!("extra {i}\n").as_bytes());
    }
    t.file("extra_dir/sub/file", b"extra nested\n")
        .file("txt/extra.txt", b"extra txt\n")
        .file("extra.log", b"excluded and extraneous\n")
        .file("txt/sub/old.log", b"excluded and extraneous below\n");
    // Every entry gets its deterministic time (as in the source), then the exceptions:
    t.stamp(false);
    // same size, other bytes, older time: the quick check notices;
    t.set_mtime("sizes/s65536", 1_400_000_000, 5);
    // same size, same time (from `stamp`), other bytes in `samesize.bin`: only -c notices;
    // newer on the receiver (what -u protects).
    let (s, ns) = stamp_time(Path::new("newer.txt"));
    t.set_mtime("newer.txt", s + 86_400 * 365, ns);
}

/// A small tree of directories and symlinks, for the options that leave their times alone.
pub fn dirs_and_links(root: &Path) {
    TestTree::at(root)
        .file("d1/f", b"f\n")
        .file("d2/sub/g", b"g\n")
        .symlink("d2/link", "sub/g")
        .symlink("top_link", "d1")
        .stamp(false);
}

/// Every kind of symlink rsync's -L, -k, --copy-unsafe-links and --safe-links tell apart:
/// to a file, to a directory, absolute, climbing out of the tree (to a file and to a
/// directory), climbing out only when the top is `src` itself, `..` embedded or trailing,
/// and a safe climb from a subdirectory. What lies outside is built beside `src`.
pub fn symlink_zoo(root: &Path) {
    let outside = root
        .parent()
        .expect("fixture root has a parent")
        .join("outside");
    TestTree::at(&outside)
        .file("o", b"outside file\n")
        .file("od/x", b"outside dir\n")
        .stamp(false);
    TestTree::at(root)
        .file("file", b"hello\n")
        .file("dir/sub/f", b"inner\n")
        .symlink("flink", "file")
        .symlink("dlink", "dir")
        .symlink("abs", outside.join("o"))
        .symlink("climb", "../outside/o")
        .symlink("climbdir", "../outside/od")
        .symlink("selfclimb", "../src/file")
        .symlink("trail", "dir/sub/..")
        .symlink("dir/up", "../file")
        .symlink("dir/embedded", "sub/../../file")
        .stamp(false);
}

/// `symlink_zoo` with a link to nothing, and one out of the tree to nothing.
pub fn symlink_zoo_dangling(root: &Path) {
    symlink_zoo(root);
    TestTree::at(root)
        .symlink("dangling", "nothing")
        .symlink("dir/dangling_out", "../../nothing")
        .stamp(false);
}

/// A directory link back to its own parent: `a/loop -> ..`.
pub fn symlink_loop(root: &Path) {
    TestTree::at(root)
        .file("a/f", b"f\n")
        .symlink("a/loop", "..")
        .stamp(false);
}

/// `dirs_and_links` whose directories and symlinks carry other times; the contents are
/// equal, so no directory is touched by a run that leaves those times alone.
pub fn dirs_and_links_retimed(root: &Path) {
    dirs_and_links(root);
    TestTree::at(root)
        .set_mtime("d2/link", 1_000_000_000, 7)
        .set_mtime("top_link", 1_000_000_001, 0)
        .set_mtime("d2/sub", 1_000_000_002, 3)
        .set_mtime("d1", 1_000_000_003, 0);
}

/// An unsafe link (`abs`, `sub/up`) beside a safe one, for `--safe-links`.
pub fn unsafe_link_names(root: &Path) {
    TestTree::at(root)
        .file("f", b"f\n")
        .symlink("abs", "/etc/passwd")
        .symlink("sub/up", "../../outside")
        .symlink("ok", "f")
        .stamp(false);
}

/// The older copy for [`unsafe_link_names`]: files where the source has its unsafe links
/// (rsync's receiver skips those links and keeps these), and an extraneous one.
pub fn unsafe_link_names_older(root: &Path) {
    TestTree::at(root)
        .file("f", b"f\n")
        .file("abs", b"a file, not the link\n")
        .file("sub/up", b"kept\n")
        .file("extra", b"deleted under --delete\n")
        .stamp(false);
}

/// Files of equal size whose copies' times are close to the source's, for rsync's
/// `--modify-window` rule (default: whole seconds count). Content differs, so a file that is
/// sent shows. Directories keep stamped times on both sides.
pub fn close_times(root: &Path) {
    close_times_with(
        root,
        "source",
        &[(0, 100), (0, 0), (0, 0), (0, 0), (0, 500)],
    );
}

/// The older copy for [`close_times`]: the same second with other nanoseconds, one second
/// later, five earlier, one later (for `-u`), and the same second deeper down.
pub fn close_times_older(root: &Path) {
    close_times_with(
        root,
        "older ",
        &[(0, 900), (1, 0), (-5, 0), (1, 0), (0, 999)],
    );
}

fn close_times_with(root: &Path, word: &str, times: &[(i64, i64); 5]) {
    const T: i64 = 1_700_000_000;
    let t = TestTree::at(root);
    for (name, (ds, ns)) in ["ns.txt", "one.txt", "five.txt", "newer.txt", "sub/deep.txt"]
        .iter()
        .zip(times)
    {
        t.file(name, format!("{word} {name}\n").as_bytes())
            .set_mtime(name, T + ds, *ns);
    }
    t.stamp(true);
}

/// `-X`: files, a directory and a symlink with extended attributes (an empty value, a
/// 3000-byte one, several per file); as root also `trusted.*` and `security.*` names,
/// which rsync copies then.
pub fn xattr_tree(root: &Path) {
    let t = TestTree::at(root);
    t.file("plain.txt", b"no attributes\n")
        .file("one.txt", b"one attribute\n")
        .file("many.txt", b"several\n")
        .file("sub/deep.txt", b"deep\n")
        .file("sub/changed.txt", b"new content\n")
        .symlink("link", "one.txt");
    set_xattr(&t.path("one.txt"), "user.comment", b"hello");
    set_xattr(&t.path("many.txt"), "user.a", b"1");
    set_xattr(&t.path("many.txt"), "user.empty", b"");
    set_xattr(&t.path("many.txt"), "user.big", &pseudo_random(7, 3000));
    set_xattr(&t.path("many.txt"), "user.kept", b"same");
    set_xattr(&t.path("sub"), "user.dir", b"on a directory");
    set_xattr(&t.path("sub/deep.txt"), "user.new", b"added");
    set_xattr(&t.path("sub/changed.txt"), "user.v", b"2");
    if is_root() {
        set_xattr(&t.path("many.txt"), "trusted.t", b"root only");
        set_xattr(&t.path("one.txt"), "security.s", b"root only");
        set_xattr(&t.path("link"), "trusted.l", b"on the link itself");
    }
    t.stamp(false);
}

/// An older copy of [`xattr_tree`]: the same content and times, but attributes changed,
/// missing or extra (an attribute-only update), and one file whose content changed too.
pub fn xattr_tree_older(root: &Path) {
    let t = TestTree::at(root);
    t.file("plain.txt", b"no attributes\n")
        .file("one.txt", b"one attribute\n")
        .file("many.txt", b"several\n")
        .file("sub/deep.txt", b"deep\n")
        .file("sub/changed.txt", b"old\n")
        .symlink("link", "one.txt");
    set_xattr(&t.path("plain.txt"), "user.extra", b"to be removed");
    set_xattr(&t.path("one.txt"), "user.comment", b"an older value");
    set_xattr(&t.path("many.txt"), "user.a", b"0");
    set_xattr(&t.path("many.txt"), "user.kept", b"same");
    set_xattr(&t.path("many.txt"), "user.gone", b"x");
    set_xattr(&t.path("sub"), "user.dir", b"older");
    set_xattr(&t.path("sub"), "user.stale", b"x");
    set_xattr(&t.path("sub/changed.txt"), "user.v", b"1");
    set_xattr(&t.path("sub/changed.txt"), "user.stale", b"x");
    if is_root() {
        set_xattr(&t.path("plain.txt"), "trusted.extra", b"to be removed");
    }
    t.stamp(false);
}

impl Fixture {
    /// [`xattr_tree`] into an empty destination.
    pub fn xattrs() -> Fixture {
        Fixture {
            src: xattr_tree,
            ..Fixture::awkward()
        }
    }

    /// [`xattr_tree`] over [`xattr_tree_older`].
    pub fn xattrs_over_older() -> Fixture {
        Fixture {
            src: xattr_tree,
            older: Some(xattr_tree_older),
            ..Fixture::awkward()
        }
    }

    /// [`unsafe_link_names`] over [`unsafe_link_names_older`].
    pub fn unsafe_link_names() -> Fixture {
        Fixture {
            src: unsafe_link_names,
            older: Some(unsafe_link_names_older),
            ..Fixture::awkward()
        }
    }

    /// [`close_times`] over [`close_times_older`].
    pub fn close_times() -> Fixture {
        Fixture {
            src: close_times,
            older: Some(close_times_older),
            ..Fixture::awkward()
        }
    }

    /// `dirs_and_links` over `dirs_and_links_retimed`.
    pub fn retimed_dirs_and_links() -> Fixture {
        Fixture {
            src: dirs_and_links,
            older: Some(dirs_and_links_retimed),
            ..Fixture::awkward()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading and comparing trees
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

/// What the comparer knows about one entry (from lstat, never following symlinks).
#[derive(Clone, Debug)]
pub struct Meta {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
    pub rdev: u64,
    pub target: Option<OsString>,
    /// blake3 of a regular file's bytes, or the error reading them.
    pub content: Option<Result<[u8; 32], String>>,
    /// Extended attributes but `system.*` (ACLs), sorted by name, read without following
    /// a symlink.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The access and default ACLs as the kernel keeps them (`system.posix_acl_*`), `None`
    /// where there is none (a symlink never has one).
    pub acls: [Option<Vec<u8>>; 2],
}

/// `path`'s access and default ACLs in the kernel's binary form (see [`Meta::acls`]).
pub fn acls_of(path: &Path) -> [Option<Vec<u8>>; 2] {
    let get = |name: &str| {
        let mut value = vec![0u8; 64 * 1024];
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(k) => {
                value.truncate(k);
                Some(value)
            }
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => None,
            // (Symlinks have no ACLs; some file systems say so with another error.)
            Err(_) if fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) => None,
            Err(e) => panic!("lgetxattr {path:?} {name}: {e}"),
        }
    };
    [
        get("system.posix_acl_access"),
        get("system.posix_acl_default"),
    ]
}

/// The extended attributes of `path` (not following a symlink) but `system.*`, sorted.
pub fn xattrs_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => 0,
        Err(e) => panic!("llistxattr {path:?}: {e}"),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"system.") {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        let c = std::ffi::CString::new(name).expect("no NUL in a listed name");
        let k = rustix::fs::lgetxattr(path, &c, &mut value[..])
            .unwrap_or_else(|e| panic!("lgetxattr {path:?} {c:?}: {e}"));
        value.truncate(k);
        out.push((name.to_vec(), value));
    }
    out.sort();
    out
}

/// Sets an extended attribute on `path` itself (a symlink is not followed).
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("lsetxattr {path:?} {name}: {e}"));
}

fn kind_of(mode: u32) -> Kind {
    match mode & libc_s_ifmt() {
        0o100000 => Kind::File,
        0o040000 => Kind::Dir,
        0o120000 => Kind::Symlink,
        0o010000 => Kind::Fifo,
        0o020000 => Kind::Char,
        0o060000 => Kind::Block,
        _ => Kind::Socket,
    }
}

const fn libc_s_ifmt() -> u32 {
    0o170000
}

fn hash_file(path: &Path) -> Result<[u8; 32], String> {
    let mut f = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

fn meta_of(path: &Path, with_content: bool) -> io::Result<Meta> {
    let m = fs::symlink_metadata(path)?;
    let kind = kind_of(m.mode());
    Ok(Meta {
        kind,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        rdev: m.rdev(),
        target: if kind == Kind::Symlink {
            Some(fs::read_link(path)?.into_os_string())
        } else {
            None
        },
        content: (with_content && kind == Kind::File).then(|| hash_file(path)),
        xattrs: xattrs_of(path),
        acls: acls_of(path),
    })
}

/// Every entry under `root` (the root itself as ""), keyed by relative path. A missing root
/// gives an empty map.
pub fn scan(root: &Path, with_content: bool) -> BTreeMap<PathBuf, Meta> {
    let mut out = BTreeMap::new();
    if fs::symlink_metadata(root).is_err() {
        return out;
    }
    scan_into(root, root, with_content, &mut out);
    out
}

fn scan_into(root: &Path, path: &Path, with_content: bool, out: &mut BTreeMap<PathBuf, Meta>) {
    let meta = meta_of(path, with_content).unwrap_or_else(|e| panic!("lstat {path:?}: {e}"));
    let is_dir = meta.kind == Kind::Dir;
    let rel = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    out.insert(rel, meta);
    if is_dir {
        for child in sorted_children(path) {
            scan_into(root, &child, with_content, out);
        }
    }
}

/// Which attributes the comparer checks. Paths, kinds, content, link targets, devices, modes,
/// owners and hard-link groups are always checked.
#[derive(Clone, Debug)]
pub struct Compare {
    /// Compare mtimes of files and directories (rsync -t).
    pub times: bool,
    /// Compare mtimes of symlinks too (rsync -t does on Linux).
    pub symlink_times: bool,
    /// Compare uid/gid.
    pub owners: bool,
    /// Paths whose mtime is not compared (e.g. directories that received new entries).
    pub ignore_times: BTreeSet<PathBuf>,
    /// Compare extended attributes (rsync -X).
    pub xattrs: bool,
    /// Compare ACLs (rsync -A).
    pub acls: bool,
    /// Compare directories' mtimes (with `times`).
    pub dir_times: bool,
}

impl Default for Compare {
    fn default() -> Self {
        Compare {
            times: true,
            symlink_times: true,
            owners: true,
            ignore_times: BTreeSet::new(),
            xattrs: false,
            acls: false,
            dir_times: true,
        }
    }
}

impl Compare {
    /// What to compare after a run with `flags`: times only with -t (or -a).
    pub fn for_flags(flags: &[&str]) -> Compare {
        let short = |c: char| {
            flags
                .iter()
                .any(|f| f.starts_with('-') && !f.starts_with("--") && f.contains(c))
        };
        let times = (short('a') || short('t') || flags.contains(&"--times"))
            && !flags.contains(&"--no-times")
            && !flags.contains(&"--no-t");
        let xattrs = (short('X') || flags.contains(&"--xattrs"))
            && !flags.contains(&"--no-xattrs")
            && !flags.contains(&"--no-X");
        // Backups move directories' times: -b without a DIR implies -O (so a new directory
        // has the time of its run), and a DIR's directories are made by the run.
        let backups = short('b') || flags.iter().any(|f| f.starts_with("--backup"));
        let acls = (short('A') || flags.contains(&"--acls"))
            && !flags.contains(&"--no-acls")
            && !flags.contains(&"--no-A");
        Compare {
            times,
            symlink_times: times,
            xattrs,
            dir_times: !backups,
            acls,
            ..Compare::default()
        }
    }

    pub fn ignoring_times_of<I: IntoIterator<Item = P>, P: Into<PathBuf>>(
        mut self,
        paths: I,
    ) -> Self {
        self.ignore_times.extend(paths.into_iter().map(Into::into));
        self
    }
}

fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".to_string()
    } else {
        format!("{:?}", rel)
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "directory",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::Char => "char device",
        Kind::Block => "block device",
        Kind::Socket => "socket",
    }
}

/// The partition of non-directories into groups sharing an inode (groups of two or more).
pub fn hard_link_groups(tree: &BTreeMap<PathBuf, Meta>) -> BTreeSet<Vec<PathBuf>> {
    let mut by_ino: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    for (rel, m) in tree {
        if m.kind != Kind::Dir {
            by_ino.entry(m.ino).or_default().push(rel.clone());
        }
    }
    by_ino.into_values().filter(|g| g.len() > 1).collect()
}

/// Every difference between the trees at `a` and `b`, as readable lines ("A" is `a`).
pub fn diff_trees(a: &Path, b: &Path, opts: &Compare) -> Vec<String> {
    let ta = scan(a, true);
    let tb = scan(b, true);
    diff_scans(&ta, &tb, opts)
}

pub fn diff_scans(
    ta: &BTreeMap<PathBuf, Meta>,
    tb: &BTreeMap<PathBuf, Meta>,
    opts: &Compare,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for rel in ta.keys().filter(|k| !tb.contains_key(*k)) {
        diffs.push(format!(
            "{}: only in A ({})",
            show(rel),
            kind_name(ta[rel].kind)
        ));
    }
    for rel in tb.keys().filter(|k| !ta.contains_key(*k)) {
        diffs.push(format!(
            "{}: only in B ({})",
            show(rel),
            kind_name(tb[rel].kind)
        ));
    }
    for (rel, ma) in ta {
        let Some(mb) = tb.get(rel) else { continue };
        let p = show(rel);
        if ma.kind != mb.kind {
            diffs.push(format!(
                "{p}: kind {} vs {}",
                kind_name(ma.kind),
                kind_name(mb.kind)
            ));
            continue;
        }
        if ma.mode != mb.mode {
            diffs.push(format!("{p}: mode {:o} vs {:o}", ma.mode, mb.mode));
        }
        if opts.xattrs && ma.xattrs != mb.xattrs {
            let names = |x: &[(Vec<u8>, Vec<u8>)]| {
                x.iter()
                    .map(|(n, v)| {
                        format!(
                            "{}={:?}",
                            String::from_utf8_lossy(n),
                            String::from_utf8_lossy(v)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            diffs.push(format!(
                "{p}: xattrs [{}] vs [{}]",
                names(&ma.xattrs),
                names(&mb.xattrs)
            ));
        }
        if opts.acls && ma.acls != mb.acls {
            diffs.push(format!("{p}: ACLs {:?} vs {:?}", ma.acls, mb.acls));
        }
        if opts.owners && (ma.uid, ma.gid) != (mb.uid, mb.gid) {
            diffs.push(format!(
                "{p}: owner {}:{} vs {}:{}",
                ma.uid, ma.gid, mb.uid, mb.gid
            ));
        }
        let check_time = opts.times
            && !opts.ignore_times.contains(rel)
            && (ma.kind != Kind::Dir || opts.dir_times)
            && (ma.kind != Kind::Symlink || opts.symlink_times);
        if check_time && ma.mtime != mb.mtime {
            diffs.push(format!(
                "{p}: mtime {}.{:09} vs {}.{:09}",
                ma.mtime.0, ma.mtime.1, mb.mtime.0, mb.mtime.1
            ));
        }
        match ma.kind {
            Kind::File => {
                if ma.size != mb.size {
                    diffs.push(format!("{p}: size {} vs {}", ma.size, mb.size));
                } else if ma.content != mb.content {
                    let describe = |c: &Option<Result<[u8; 32], String>>| match c {
                        Some(Err(e)) => format!("unreadable ({e})"),
                        Some(Ok(h)) => blake3::Hash::from(*h).to_hex()[..12].to_string(),
                        None => "not read".into(),
                    };
                    diffs.push(format!(
                        "{p}: content differs (same size {}): {} vs {}",
                        ma.size,
                        describe(&ma.content),
                        describe(&mb.content)
                    ));
                }
            }
            Kind::Symlink if ma.target != mb.target => {
                diffs.push(format!(
                    "{p}: symlink target {:?} vs {:?}",
                    ma.target.as_deref().unwrap_or_default(),
                    mb.target.as_deref().unwrap_or_default()
                ));
            }
            Kind::Char | Kind::Block if ma.rdev != mb.rdev => {
                diffs.push(format!("{p}: device {:#x} vs {:#x}", ma.rdev, mb.rdev));
            }
            _ => {}
        }
    }
    let (ga, gb) = (hard_link_groups(ta), hard_link_groups(tb));
    for g in ga.difference(&gb) {
        diffs.push(format!("hard-link group only in A: {g:?}"));
    }
    for g in gb.difference(&ga) {
        diffs.push(format!("hard-link group only in B: {g:?}"));
    }
    diffs
}

/// (inode, mtime, ctime, mode, size) of every entry: equal snapshots mean nothing was
/// rewritten, renamed over, touched or chmod-ed.
pub type Snapshot = BTreeMap<PathBuf, (u64, (i64, i64), (i64, i64), u32, u64)>;

pub fn snapshot(root: &Path) -> Snapshot {
    scan(root, false)
        .into_iter()
        .map(|(k, m)| (k, (m.ino, m.mtime, m.ctime, m.mode, m.size)))
        .collect()
}

pub fn diff_snapshots(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut diffs = Vec::new();
    for rel in before.keys().filter(|k| !after.contains_key(*k)) {
        diffs.push(format!("{}: disappeared", show(rel)));
    }
    for (rel, a) in after {
        match before.get(rel) {
            None => diffs.push(format!("{}: appeared", show(rel))),
            Some(b) if b != a => diffs.push(format!(
                "{}: changed (ino, mtime, ctime, mode, size) {:?} -> {:?}",
                show(rel),
                b,
                a
            )),
            Some(_) => {}
        }
    }
    diffs
}

/// Relative paths of all entries whose name starts with `prefix`.
pub fn find_named(root: &Path, prefix: &str) -> Vec<PathBuf> {
    scan(root, false)
        .into_keys()
        .filter(|rel| {
            rel.file_name()
                .is_some_and(|n| n.as_bytes().starts_with(prefix.as_bytes()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The differential runner
// ---------------------------------------------------------------------------------------------

/// How to set up one differential case.
#[derive(Clone, Copy)]
pub struct Fixture {
    /// Builds the source tree in the given directory (named `src`).
    pub src: fn(&Path),
    /// Builds an older copy in the directory the transfer will fill, on each side.
    pub older: Option<fn(&Path)>,
    /// Runs on each side's root last, before the transfer (e.g. to hand it to another user).
    pub side: Option<fn(&Path)>,
    /// Whether `dst` exists in each side before the transfer.
    pub dst_exists: bool,
}

impl Fixture {
    /// The awkward tree into an existing, empty `dst`.
    pub fn awkward() -> Fixture {
        Fixture {
            src: awkward,
            older: None,
            side: None,
            dst_exists: true,
        }
    }

    /// The awkward tree over an older copy of it.
    pub fn over_older_copy() -> Fixture {
        Fixture {
            older: Some(awkward_older_copy),
            ..Fixture::awkward()
        }
    }

    pub fn with_src(src: fn(&Path)) -> Fixture {
        Fixture {
            src,
            ..Fixture::awkward()
        }
    }
}

/// One run of both tools. Sources are relative to the test directory (the fixture is built in
/// `src`), `dest` is relative to each side's root; trailing slashes are kept.
pub struct Case<'a> {
    pub flags: &'a [&'a str],
    pub sources: &'a [&'a str],
    pub dest: &'a str,
    pub fixture: Fixture,
    /// Where (relative to a side) the fixture's older copy goes.
    pub older_at: &'a str,
    /// Side paths whose mtime legitimately differs between runs (directories that merely
    /// received new entries). A side's root is always exempt.
    pub time_exempt: &'a [&'a str],
    /// A command put in front of both tools (e.g. `setpriv …`).
    pub wrap: &'a [&'a str],
}

impl<'a> Case<'a> {
    pub fn new(flags: &'a [&'a str], sources: &'a [&'a str], dest: &'a str) -> Case<'a> {
        Case {
            flags,
            sources,
            dest,
            fixture: Fixture::awkward(),
            older_at: "dst",
            time_exempt: &[],
            wrap: &[],
        }
    }
}

/// The result of a differential run, kept for further assertions.
pub struct Outcome {
    pub dir: TempDir,
    pub a: Output,
    pub b: Output,
    pub a_name: &'static str,
    pub b_name: &'static str,
}

impl Outcome {
    pub fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    /// The side rsync (tool A) wrote into.
    pub fn side_a(&self) -> PathBuf {
        self.dir.path().join("a")
    }
    /// The side xsync (tool B) wrote into.
    pub fn side_b(&self) -> PathBuf {
        self.dir.path().join("b")
    }
}

#[derive(Clone, Copy)]
pub enum Tool {
    Rsync,
    Xsync,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Rsync => "rsync",
            Tool::Xsync => "xsync",
        }
    }
    /// The tool's command. Under a `wrap` that drops privileges the xsync binary is first
    /// copied into `scratch` (world-readable), since the build directory may not be reachable
    /// for another user (a checkout under /root).
    fn command(self, wrap: &[&str], scratch: &Path) -> Command {
        match self {
            Tool::Rsync => command(&rsync_path().expect("rsync checked by caller"), wrap),
            Tool::Xsync if wrap.is_empty() => command(Path::new(env!("CARGO_BIN_EXE_xsync")), wrap),
            Tool::Xsync => {
                let copy = scratch.join("xsync-bin");
                if !copy.exists() {
                    fs::copy(env!("CARGO_BIN_EXE_xsync"), &copy)
                        .unwrap_or_else(|e| panic!("copy xsync to {copy:?}: {e}"));
                    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
                        .unwrap_or_else(|e| panic!("chmod {copy:?}: {e}"));
                }
                command(&copy, wrap)
            }
        }
    }
}

/// A fresh test directory that other users can traverse (for tests that drop privileges).
pub fn test_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("xsync-it-")
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod tempdir: {e}"));
    dir
}

pub fn prepare_side(side: &Path, case: &Case) {
    fs::create_dir(side).unwrap_or_else(|e| panic!("mkdir {side:?}: {e}"));
    if case.fixture.dst_exists {
        fs::create_dir(side.join("dst")).unwrap_or_else(|e| panic!("mkdir dst: {e}"));
        // The same time on both sides: a run that fails before it touches `dst` must leave
        // two equal trees, and two mkdirs a clock tick apart would not.
        set_mtime(&side.join("dst"), 1_400_000_000, 0);
    }
    if let Some(older) = case.fixture.older {
        older(&side.join(case.older_at));
    }
    if let Some(hook) = case.fixture.side {
        hook(side);
    }
}

/// The runs of every differential case (see [`rounds`]).
pub const RUNS: [&str; 4] = [
    "run 1 (into the prepared destination)",
    "run 2 (again, nothing changed)",
    "run 3 (again, after one change)",
    "run 4 (again, nothing changed)",
];

/// The change the third run sees: the first regular file of the source tree (in sorted
/// order) gets a line appended, and a new file appears in its directory. A re-run is the
/// common case in production; a no-change re-run is where a digest shortcut can go wrong,
/// and a small change is where the delta and the Merkle walk earn their keep.
pub fn one_change(src: &Path) {
    fn first_file(dir: &Path) -> Option<PathBuf> {
        for c in sorted_children(dir) {
            let m = fs::symlink_metadata(&c).ok()?;
            if m.is_file() {
                return Some(c);
            }
            if m.is_dir()
                && let Some(f) = first_file(&c)
            {
                return Some(f);
            }
        }
        None
    }
    if !fs::symlink_metadata(src).is_ok_and(|m| m.is_dir()) {
        return;
    }
    let (dir, file) = match first_file(src) {
        Some(f) => (
            f.parent().expect("a file has a parent").to_path_buf(),
            Some(f),
        ),
        None => (src.to_path_buf(), None),
    };
    if let Some(f) = file
        && let Ok(mut h) = fs::OpenOptions::new().append(true).open(&f)
    {
        use std::io::Write;
        h.write_all(b"one more line for the third run\n")
            .unwrap_or_else(|e| panic!("append to {f:?}: {e}"));
    }
    fs::write(dir.join("rerun-added"), b"new before the third run\n")
        .unwrap_or_else(|e| panic!("add a file in {dir:?}: {e}"));
}

/// The source directories a side's directory `rel` (relative to the side) may be the copy
/// of: by the trailing-slash rule (`src/` fills `dest`, `src` fills `dest/src`), and by
/// `-R`'s and `--files-from`'s kept paths.
fn source_of(root: &Path, case: &Case, rel: &Path) -> Vec<PathBuf> {
    let dest = Path::new(case.dest.trim_end_matches('/'));
    let mut out = Vec::new();
    for s in case.sources {
        let src = root.join(s.trim_end_matches('/'));
        let base = if s.ends_with('/') || s.ends_with("/.") {
            dest.to_path_buf()
        } else {
            match Path::new(s.trim_end_matches('/')).file_name() {
                Some(n) => dest.join(n),
                None => continue,
            }
        };
        if let Ok(below) = rel.strip_prefix(&base) {
            out.push(src.join(below));
        }
        // -R keeps the path after `/./` (or all of it); --files-from names are below the
        // source argument.
        if let Ok(below) = rel.strip_prefix(dest) {
            let kept_from = match s.find("/./") {
                Some(i) => root.join(&s[..i]),
                None => root.to_path_buf(),
            };
            out.push(kept_from.join(below));
            out.push(root.join(s.trim_end_matches('/')).join(below));
        }
    }
    out
}

/// The re-run rule for both differential harnesses: `run_side(i, side)` runs tool `i` into
/// side `i` (`a`, `b` under `root`): into the prepared destination, again with nothing
/// changed, again after [`one_change`], and once more with nothing changed ([`RUNS`]).
/// After every run the exit codes and the trees must agree (with `a_must_succeed`, tool A
/// must also exit 0: the comparison means nothing otherwise).
///
/// One rsync 3.5 behaviour is allowed for: a directory that gets new entries on a re-run
/// has its time set before they are made, so it ends with the time of the run, and later
/// runs do not see the sub-second difference (rsync leaves it so for good). So on re-runs,
/// where a directory's mtime differs, B's must equal its source directory's (unless it has
/// none, or `-O` leaves directory times alone).
/// Returns the first run's outputs and every difference, each prefixed with its run.
pub fn rounds(
    root: &Path,
    case: &Case,
    names: [&str; 2],
    a_must_succeed: bool,
    mut run_side: impl FnMut(usize, &Path) -> Output,
) -> (Output, Output, Vec<String>) {
    let opts = Compare::for_flags(case.flags)
        .ignoring_times_of([PathBuf::new()])
        .ignoring_times_of(case.time_exempt.iter().map(PathBuf::from));
    let (side_a, side_b) = (root.join("a"), root.join("b"));
    let omit_dir_times = case.flags.iter().any(|f| {
        *f == "--omit-dir-times" || (f.starts_with('-') && !f.starts_with("--") && f.contains('O'))
    });
    let mut first = None;
    let mut diffs = Vec::new();
    for (round, what) in RUNS.iter().enumerate() {
        if round == 2 {
            one_change(&root.join("src"));
        }
        let oa = run_side(0, &side_a);
        let ob = run_side(1, &side_b);
        let mut here = Vec::new();
        if a_must_succeed && code(&oa) != 0 {
            here.push(format!(
                "{} itself failed (exit {}): {}",
                names[0],
                code(&oa),
                stderr(&oa)
            ));
        }
        if code(&oa) != code(&ob) {
            here.push(format!(
                "exit code: {} {} vs {} {}{}",
                names[0],
                code(&oa),
                names[1],
                code(&ob),
                if round > 0 {
                    format!(" ({} said: {})", names[1], stderr(&ob).trim())
                } else {
                    String::new()
                }
            ));
        }
        let (ta, tb) = (scan(&side_a, true), scan(&side_b, true));
        let lax = round >= 1 && opts.times && opts.dir_times;
        here.extend(diff_scans(
            &ta,
            &tb,
            &Compare {
                dir_times: opts.dir_times && !lax,
                ..opts.clone()
            },
        ));
        if lax {
            for (rel, ma) in &ta {
                let Some(mb) = tb.get(rel) else { continue };
                if ma.kind != Kind::Dir
                    || mb.kind != Kind::Dir
                    || ma.mtime == mb.mtime
                    || opts.ignore_times.contains(rel)
                {
                    continue;
                }
                // Without a source (an extraneous directory something was deleted from) the
                // time is each run's own; with -O neither tool sets it; rsync against
                // itself keeps its own behaviour on both sides.
                let sources = source_of(root, case, rel);
                let extraneous =
                    !sources.is_empty() && sources.iter().all(|p| fs::symlink_metadata(p).is_err());
                let from_source = sources.iter().any(|p| {
                    fs::symlink_metadata(p).is_ok_and(|m| (m.mtime(), m.mtime_nsec()) == mb.mtime)
                });
                if !(from_source || extraneous || omit_dir_times || names[0] == names[1]) {
                    here.push(format!(
                        "{}: mtime {}.{:09} vs {}.{:09} (and B's is not its source's)",
                        show(rel),
                        ma.mtime.0,
                        ma.mtime.1,
                        mb.mtime.0,
                        mb.mtime.1
                    ));
                }
            }
        }
        diffs.extend(here.into_iter().map(|d| format!("{what}: {d}")));
        if first.is_none() {
            first = Some((oa, ob));
        }
        // (A case that already differs is not run on: later runs would only repeat it.)
        if !diffs.is_empty() {
            break;
        }
    }
    let (oa, ob) = first.expect("four runs");
    (oa, ob, diffs)
}

/// Runs tool `a` and tool `b` on identical setups, four times ([`rounds`]); returns the
/// outcome (with the first run's outputs) and every difference.
pub fn run_pair(case: &Case, a: Tool, b: Tool) -> (Outcome, Vec<String>) {
    let dir = test_dir();
    let root = dir.path().to_path_buf();
    (case.fixture.src)(&root.join("src"));
    for side_name in ["a", "b"] {
        prepare_side(&root.join(side_name), case);
    }
    let tools = [a, b];
    let (oa, ob, diffs) = rounds(&root, case, [a.name(), b.name()], false, |i, side| {
        let mut cmd = tools[i].command(case.wrap, &root);
        cmd.args(case.flags);
        for s in case.sources {
            cmd.arg(arg_path(&root, s));
        }
        cmd.arg(arg_path(side, case.dest));
        cmd.current_dir(&root);
        run(&mut cmd)
    });
    let outcome = Outcome {
        dir,
        a: oa,
        b: ob,
        a_name: a.name(),
        b_name: b.name(),
    };
    (outcome, diffs)
}

/// Describes a failed differential run in full.
pub fn report(case: &Case, out: &Outcome, diffs: &[String]) -> String {
    let mut s = format!(
        "{} differences for flags {:?}, sources {:?}, dest {:?} (A = {}, B = {}):\n",
        diffs.len(),
        case.flags,
        case.sources,
        case.dest,
        out.a_name,
        out.b_name
    );
    for d in diffs {
        s.push_str("  ");
        s.push_str(d);
        s.push('\n');
    }
    for (name, o) in [(out.a_name, &out.a), (out.b_name, &out.b)] {
        s.push_str(&format!(
            "--- {name} exit {} stderr:\n{}",
            code(o),
            stderr(o)
        ));
    }
    s
}

/// rsync vs xsync on `case`: equal exit codes and equal trees, or a panic listing every
/// difference. `None` (after a loud skip notice) when rsync is missing.
pub fn run_case(test: &str, case: &Case) -> Option<Outcome> {
    if !have_rsync(test) {
        return None;
    }
    let (out, diffs) = run_pair(case, Tool::Rsync, Tool::Xsync);
    assert!(diffs.is_empty(), "{test}: {}", report(case, &out, &diffs));
    Some(out)
}

/// The common shape: `TOOL FLAGS src[/] dst/`, the older copy (if any) placed where the
/// transfer lands.
pub fn differential(
    test: &str,
    flags: &[&str],
    trailing_slash: bool,
    fixture: Fixture,
) -> Option<Outcome> {
    let case = simple_case(flags, trailing_slash, fixture);
    run_case(test, &case)
}

/// After a differential case whose first run filled `dst`: the same run again (`flags`,
/// which include `-i`) with nothing changed lists nothing and changes nothing on xsync's
/// side, and rsync lists nothing on its own either.
pub fn assert_noop_rerun_is_silent(test: &str, out: &Outcome, flags: &[&str]) {
    let dst = out.side_b().join("dst");
    let before = snapshot(&dst);
    let src = slash(&out.src());
    let again = run(xsync().args(flags).arg(&src).arg(slash(&dst)));
    assert_eq!(code(&again), 0, "{test}: {}", stderr(&again));
    assert_eq!(stdout(&again), "", "{test}: a no-op -i lists nothing");
    assert_eq!(
        diff_snapshots(&before, &snapshot(&dst)),
        Vec::<String>::new()
    );
    let rs = run(rsync()
        .expect("checked")
        .args(flags)
        .arg(&src)
        .arg(slash(&out.side_a().join("dst"))));
    assert_eq!(stdout(&rs), "", "{test}: rsync lists nothing either");
}

/// A ramfs (a file system without extended attributes or ACLs) mounted at `at` for a
/// test, unmounted when dropped; `None`, with the test's SKIPPED note, where one cannot be
/// mounted (not root, or no ramfs).
pub struct Ramfs(PathBuf);

impl Ramfs {
    pub fn mount(test: &str, at: &Path) -> Option<Ramfs> {
        if !is_root() {
            skip(test, "mounting a ramfs needs root");
            return None;
        }
        fs::create_dir_all(at).expect("mkdir the mount point");
        let m = run(std::process::Command::new("mount")
            .args(["-t", "ramfs", "ramfs"])
            .arg(at));
        if code(&m) != 0 {
            skip(test, "cannot mount a ramfs here");
            return None;
        }
        Some(Ramfs(at.to_path_buf()))
    }
}

impl Drop for Ramfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

pub fn simple_case<'a>(flags: &'a [&'a str], trailing_slash: bool, fixture: Fixture) -> Case<'a> {
    Case {
        fixture,
        older_at: if trailing_slash { "dst" } else { "dst/src" },
        // Without the slash `dst` only receives `src`, so its time is the time of the run.
        time_exempt: if trailing_slash { &[] } else { &["dst"] },
        ..Case::new(
            flags,
            if trailing_slash { &["src/"] } else { &["src"] },
            "dst/",
        )
    }
}

/// The body of a remote shell that runs the command here (see [`local_rsh`]).
pub const RUN_HERE: &str = "exec sh -c \"$*\"";

/// A remote shell (`-e`) that ignores the host and runs the command through `body` (a sh
/// script line; `$*` is the command): [`RUN_HERE`], or a wrapper such as `timeout`. For
/// tests that need no sshd.
pub fn local_rsh(dir: &Path, body: &str) -> String {
    let rsh = dir.join("rsh");
    write_script(&rsh, &format!("#!/bin/sh\nshift\n{body}\n"));
    rsh.display().to_string()
}

/// Writes an executable script (mode 0755) that may be run at once. Written by a child
/// process, not here: a file this multi-threaded test process has open for writing is
/// inherited by whatever another test thread forks in that moment, and running the script
/// then fails with "Text file busy" until that child has exec'd (seen: rsync's `-e`).
pub fn write_script(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("cat > \"$0\" && chmod 755 \"$0\"")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start sh to write a script");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write the script");
    let status = child.wait().expect("wait for sh");
    assert!(status.success(), "writing {path:?} failed: {status}");
}
