//! A remote with no xsync: the client installs its own build in the remote user's
//! `~/.cache/xsync` through the same ssh, once, and later runs find it in one step.
//!
//! Each test makes a fresh account (root only: `useradd`) whose PATH has no xsync, and
//! starts its own sshd (the harness's key logs in as any account). The remote is reached
//! without `--xsync-path`, through `benches/compare/count-bytes` so that the bytes each
//! session sends are counted: an install sends the whole executable, a later run a few
//! kilobytes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

use crate::sshd::{HOST, Sshd};
use crate::util::{Compare, TestTree, code, diff_trees, is_root, run, skip, stderr, xsync};

/// The binary under test: what a deploy must put on the remote, byte for byte.
const XSYNC_BIN: &str = env!("CARGO_BIN_EXE_xsync");

/// A throwaway local account for a remote login: its home in a fresh directory under
/// /tmp, its shell /bin/sh, and sshd's default PATH (no xsync). Removed on drop.
struct Account {
    name: String,
    home: PathBuf,
    uid: u32,
    gid: u32,
    _dir: TempDir,
}

static ACCOUNTS: AtomicU32 = AtomicU32::new(0);

impl Account {
    /// None (a loud skip) where accounts cannot be made.
    fn create(test: &str) -> Option<Account> {
        if !is_root()
            || crate::sshd::which("useradd").is_none() && !Path::new("/usr/sbin/useradd").is_file()
        {
            skip(test, "making a test account needs root and useradd");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("xsync-account-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let name = format!(
            "xsd{}x{}",
            std::process::id() % 100_000,
            ACCOUNTS.fetch_add(1, Ordering::Relaxed)
        );
        let home = dir.path().join("home");
        // Parallel tests race for /etc/passwd's lock: useradd then fails, and is retried.
        retry(&format!("useradd {name}"), || {
            run(Command::new("useradd")
                // `-p *`: no password, but not locked (sshd refuses a locked account's key).
                .args(["-M", "-U", "-p", "*", "-s", "/bin/sh", "-d"])
                .arg(&home)
                .arg(&name))
        });
        let id = |flag: &str| -> u32 {
            let out = run(Command::new("id").arg(flag).arg(&name));
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("id {flag} {name}: {}", stderr(&out)))
        };
        let account = Account {
            uid: id("-u"),
            gid: id("-g"),
            name,
            home,
            _dir: dir,
        };
        account.mkdir(&account.home);
        Some(account)
    }

    /// A directory owned by the account, mode 0755.
    fn mkdir(&self, path: &Path) {
        fs::create_dir_all(path).expect("mkdir");
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }

    /// A file owned by the account.
    fn file(&self, path: &Path, content: &[u8], mode: u32) {
        fs::write(path, content).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }

    /// `name@127.0.0.1:path`
    fn remote(&self, path: &Path) -> String {
        format!("{}@{HOST}:{}", self.name, path.display())
    }

    fn cache(&self) -> PathBuf {
        self.home.join(".cache/xsync")
    }

    /// The files in the account's cache directory (none if it does not exist).
    fn cached(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.cache())
            .map(|d| d.map(|e| e.expect("entry").path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Makes `PATH` of the account's ssh sessions `dir` first, through
    /// `~/.ssh/environment` (the test's sshd has `PermitUserEnvironment yes`).
    fn path_first(&self, dir: &Path) {
        let ssh = self.home.join(".ssh");
        self.mkdir(&ssh);
        self.file(
            &ssh.join("environment"),
            format!("PATH={}:/usr/local/bin:/usr/bin:/bin\n", dir.display()).as_bytes(),
            0o600,
        );
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let name = self.name.clone();
        retry(&format!("userdel {name}"), || {
            run(Command::new("userdel").arg(&name))
        });
    }
}

fn retry(what: &str, mut f: impl FnMut() -> Output) {
    let mut last = String::new();
    for i in 0..60 {
        let out = f();
        if out.status.success() {
            return;
        }
        last = stderr(&out);
        std::thread::sleep(std::time::Duration::from_millis(50 + 10 * i));
    }
    panic!("{what} kept failing: {last}");
}

/// A push or pull through `count-bytes`: returns the output and the bytes the client sent
/// in each remote-shell session.
fn transfer(sshd: &Sshd, count: &Path, args: &[&std::ffi::OsStr]) -> (Output, Vec<u64>) {
    let _ = fs::remove_file(count);
    let counter = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/count-bytes");
    let out = run(xsync()
        .env_remove(NO_DEPLOY)
        .env("COUNT_BYTES_OUT", count)
        .arg("-rlpt")
        .arg("-e")
        .arg(format!("{} {}", counter.display(), sshd.rsh()))
        .args(args));
    let sessions = fs::read_to_string(count)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("count-bytes line {l:?}"))
        })
        .collect();
    (out, sessions)
}

const NO_DEPLOY: &str = "XSYNC_NO_DEPLOY";

fn setup(test: &str, extra_config: &str) -> Option<(Sshd, Account, TempDir)> {
    let sshd = Sshd::start_with(test, extra_config)?;
    if crate::sshd::which("python3").is_none() {
        skip(test, "python3 (for count-bytes) is not installed");
        return None;
    }
    let account = Account::create(test)?;
    // The premise: the account's remote shell finds no xsync.
    let words = sshd.rsh_words();
    let out = run(Command::new(&words[0])
        .args(&words[1..])
        .args(["-l", &account.name, HOST, "command -v xsync || echo none"])
        .stdin(std::process::Stdio::null()));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "none",
        "the test account's PATH must have no xsync (ssh exited {}: {})",
        code(&out),
        stderr(&out)
    );
    let dir = crate::util::test_dir();
    TestTree::at(&dir.path().join("src"))
        .file("a.txt", b"alpha\n")
        .dir("sub")
        .file("sub/b.bin", &crate::util::pseudo_random(7, 300_000))
        .symlink("sub/link", "../a.txt");
    Some((sshd, account, dir))
}

fn ok(out: &Output, what: &str) {
    assert_eq!(code(out), 0, "{what}: {}", stderr(out));
}

fn installed_note(out: &Output) -> bool {
    stderr(out).contains("installing xsync")
}

/// The cached binary is this build, private to the account, named by version and digest.
fn assert_installed(account: &Account) {
    let cached = account.cached();
    assert_eq!(cached.len(), 1, "one cached binary: {cached:?}");
    let name = cached[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let digest = blake3_hex(&fs::read(XSYNC_BIN).expect("read binary"));
    assert_eq!(
        name,
        format!("xsync-{}-{digest}", env!("CARGO_PKG_VERSION")),
        "the cache name is the version and the build's blake3"
    );
    assert!(
        fs::read(&cached[0]).expect("read cached") == fs::read(XSYNC_BIN).expect("read binary"),
        "the cached binary is this build"
    );
    let meta = fs::metadata(&cached[0]).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert_eq!(meta.uid(), account.uid);
    let dir = fs::metadata(account.cache()).expect("stat cache");
    assert_eq!(dir.mode() & 0o7777, 0o700, "the cache directory is private");
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn a_push_installs_xsync_once_and_the_next_runs_reuse_it() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "") else {
        return;
    };
    let src = crate::util::slash(&dir.path().join("src"));
    let dst = account.home.join("dst");
    let count = dir.path().join("bytes");
    let size = fs::metadata(XSYNC_BIN).expect("stat").len();
    let dest = std::ffi::OsString::from(account.remote(&dst) + "/");

    // First contact: one session finds no xsync, a second installs it and runs.
    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "first push");
    assert!(installed_note(&out), "says it installs: {}", stderr(&out));
    assert_eq!(sent.len(), 2, "two sessions: {sent:?}");
    assert!(
        sent[1] > size / 10,
        "the second carried the binary: {sent:?} vs {size}"
    );
    // This remote has zstd (scripts/test installs it), so the binary went compressed.
    if crate::sshd::which("zstd").is_some() {
        assert!(sent[1] < size, "compressed: {sent:?} vs {size}");
    } else {
        crate::util::skip(
            test,
            "zstd is not installed: the compressed upload is not checked",
        );
    }
    assert_installed(&account);
    let same = diff_trees(
        &dir.path().join("src"),
        &dst,
        &Compare {
            owners: false,
            ..Compare::for_flags(&["-rlpt"])
        },
    );
    assert!(same.is_empty(), "{}", same.join("\n"));

    // Nothing changed: one session, nothing uploaded.
    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "second push");
    assert!(!installed_note(&out), "{}", stderr(&out));
    assert_eq!(sent.len(), 1, "one session: {sent:?}");
    assert!(sent[0] < 64 * 1024, "no upload: {sent:?}");

    // One change, and still no upload.
    fs::write(dir.path().join("src/a.txt"), b"alpha, changed\n").expect("write");
    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "third push");
    assert!(
        sent.len() == 1 && sent[0] < 64 * 1024,
        "no upload: {sent:?}"
    );
    assert_eq!(
        fs::read(dst.join("a.txt")).expect("read"),
        b"alpha, changed\n"
    );
    assert_installed(&account);
}

#[test]
fn a_pull_installs_xsync_and_the_next_pull_reuses_it() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "") else {
        return;
    };
    // The remote tree belongs to the account.
    let remote_src = account.home.join("data");
    account.mkdir(&remote_src);
    account.file(&remote_src.join("one"), b"1\n", 0o644);
    account.mkdir(&remote_src.join("d"));
    account.file(
        &remote_src.join("d/two"),
        &crate::util::pseudo_random(9, 100_000),
        0o640,
    );
    let from = std::ffi::OsString::from(account.remote(&remote_src) + "/");
    let local = dir.path().join("pulled");
    let count = dir.path().join("bytes");
    let size = fs::metadata(XSYNC_BIN).expect("stat").len();

    let (out, sent) = transfer(&sshd, &count, &[&from, local.as_os_str()]);
    ok(&out, "first pull");
    assert!(installed_note(&out), "{}", stderr(&out));
    assert!(sent.len() == 2 && sent[1] > size / 10, "{sent:?}");
    assert_installed(&account);
    let same = diff_trees(
        &remote_src,
        &local,
        &Compare {
            owners: false,
            ..Compare::for_flags(&["-rlpt"])
        },
    );
    assert!(same.is_empty(), "{}", same.join("\n"));

    let (out, sent) = transfer(&sshd, &count, &[&from, local.as_os_str()]);
    ok(&out, "second pull");
    assert!(!installed_note(&out));
    assert!(
        sent.len() == 1 && sent[0] < 64 * 1024,
        "no upload: {sent:?}"
    );

    account.file(&remote_src.join("one"), b"1, changed\n", 0o644);
    let (out, sent) = transfer(&sshd, &count, &[&from, local.as_os_str()]);
    ok(&out, "third pull");
    assert!(
        sent.len() == 1 && sent[0] < 64 * 1024,
        "no upload: {sent:?}"
    );
    assert_eq!(fs::read(local.join("one")).expect("read"), b"1, changed\n");
}

/// `--no-deploy` and `XSYNC_NO_DEPLOY=1` keep the missing-program error and exit 127, and
/// put nothing on the remote.
#[test]
fn no_deploy_keeps_the_missing_program_error() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "") else {
        return;
    };
    let src = crate::util::slash(&dir.path().join("src"));
    let dest = std::ffi::OsString::from(account.remote(&account.home.join("dst")) + "/");
    let count = dir.path().join("bytes");
    let (out, sent) = transfer(&sshd, &count, &["--no-deploy".as_ref(), &src, &dest]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("remote command not found: `xsync`"),
        "{}",
        stderr(&out)
    );
    assert!(!installed_note(&out));
    assert_eq!(sent.len(), 1, "{sent:?}");

    let out = run(xsync()
        .env(NO_DEPLOY, "1")
        .args(["-rlpt", "-e", &sshd.rsh()])
        .arg(&src)
        .arg(&dest));
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("remote command not found: `xsync`"),
        "{}",
        stderr(&out)
    );
    assert!(
        !account.home.join(".cache").exists(),
        "nothing was put on the remote"
    );
}

/// A cached binary that no longer matches its build (one byte changed, the size the same)
/// is not run: the client installs a good copy over it.
#[test]
fn a_damaged_cached_binary_is_replaced() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "") else {
        return;
    };
    let src = crate::util::slash(&dir.path().join("src"));
    let dest = std::ffi::OsString::from(account.remote(&account.home.join("dst")) + "/");
    let count = dir.path().join("bytes");
    let (out, _) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "first push");
    let cached = account.cached().pop().expect("installed");
    let mut bytes = fs::read(&cached).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&cached, &bytes).expect("damage");

    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "push over the damaged cache");
    assert!(installed_note(&out), "installs again: {}", stderr(&out));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_installed(&account);
}

/// A remote of another architecture (a fake `uname` first on its PATH) gets a message
/// that names it and what to install, exit 127, and nothing uploaded.
#[test]
fn a_remote_of_another_architecture_gets_the_message() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "PermitUserEnvironment yes\n") else {
        return;
    };
    let fake = account.home.join("fakebin");
    account.mkdir(&fake);
    account.file(
        &fake.join("uname"),
        b"#!/bin/sh\ncase \"$1\" in -m) echo sparc64;; *) exec /bin/uname \"$@\";; esac\n",
        0o755,
    );
    account.path_first(&fake);
    let src = crate::util::slash(&dir.path().join("src"));
    let dest = std::ffi::OsString::from(account.remote(&account.home.join("dst")) + "/");
    let count = dir.path().join("bytes");
    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sparc64"),
        "names the remote's architecture: {err}"
    );
    assert!(
        err.contains(std::env::consts::ARCH),
        "and this build's: {err}"
    );
    assert!(err.contains("install xsync"), "says what to do: {err}");
    assert!(!installed_note(&out));
    assert!(
        sent.iter().all(|&n| n < 64 * 1024),
        "nothing uploaded: {sent:?}"
    );
    assert!(account.cached().is_empty(), "{:?}", account.cached());
}

/// A cache directory that others can write is neither run from nor installed into.
#[test]
fn a_cache_others_can_write_is_refused() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "") else {
        return;
    };
    let src = crate::util::slash(&dir.path().join("src"));
    let dest = std::ffi::OsString::from(account.remote(&account.home.join("dst")) + "/");
    let count = dir.path().join("bytes");
    let (out, _) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "first push");
    fs::set_permissions(account.cache(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let before = account.cached();

    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("writable by others"), "{err}");
    assert!(err.contains(".cache/xsync"), "names the directory: {err}");
    assert!(
        sent.iter().all(|&n| n < 64 * 1024),
        "nothing uploaded: {sent:?}"
    );
    assert_eq!(account.cached(), before);
}

/// A remote xsync that speaks another protocol version is passed over: this build is
/// installed beside it and used from then on.
#[test]
fn a_remote_xsync_of_another_protocol_is_replaced_by_this_build() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "PermitUserEnvironment yes\n") else {
        return;
    };
    let fake = account.home.join("oldbin");
    account.mkdir(&fake);
    let mut hello = Vec::new();
    {
        let mut w = xsync::protocol::Writer::new(&mut hello);
        w.magic().expect("magic");
        w.send(&xsync::protocol::Msg::Hello {
            version: xsync::PROTOCOL_VERSION + 1,
        })
        .expect("hello");
        w.flush().expect("flush");
    }
    account.file(&fake.join("hello"), &hello, 0o644);
    account.file(
        &fake.join("xsync"),
        format!(
            "#!/bin/sh\ncat {}\nexec cat >/dev/null\n",
            fake.join("hello").display()
        )
        .as_bytes(),
        0o755,
    );
    account.path_first(&fake);
    let src = crate::util::slash(&dir.path().join("src"));
    let dst = account.home.join("dst");
    let dest = std::ffi::OsString::from(account.remote(&dst) + "/");
    let count = dir.path().join("bytes");

    let (out, sent) = transfer(&sshd, &count, &["--no-deploy".as_ref(), &src, &dest]);
    assert_eq!(
        code(&out),
        2,
        "without installing, the mismatch ends the run: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("protocol version mismatch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sent.len(), 1);

    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "push past the old xsync");
    assert!(installed_note(&out), "{}", stderr(&out));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_installed(&account);
    assert_eq!(fs::read(dst.join("a.txt")).expect("read"), b"alpha\n");

    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "second push");
    assert!(
        sent.len() == 1 && sent[0] < 64 * 1024,
        "the cached build runs first: {sent:?}"
    );
}

/// A remote without a working zstd is sent the executable as it is.
#[test]
fn without_zstd_on_the_remote_the_binary_travels_uncompressed() {
    let test = this_test!();
    let Some((sshd, account, dir)) = setup(test, "PermitUserEnvironment yes\n") else {
        return;
    };
    let fake = account.home.join("nozstd");
    account.mkdir(&fake);
    account.file(&fake.join("zstd"), b"#!/bin/sh\nexit 1\n", 0o755);
    account.path_first(&fake);
    let src = crate::util::slash(&dir.path().join("src"));
    let dst = account.home.join("dst");
    let dest = std::ffi::OsString::from(account.remote(&dst) + "/");
    let count = dir.path().join("bytes");
    let size = fs::metadata(XSYNC_BIN).expect("stat").len();
    let (out, sent) = transfer(&sshd, &count, &[&src, &dest]);
    ok(&out, "push");
    assert!(
        sent.len() == 2 && sent[1] > size,
        "the whole binary: {sent:?} vs {size}"
    );
    assert_installed(&account);
    assert_eq!(fs::read(dst.join("a.txt")).expect("read"), b"alpha\n");
}
