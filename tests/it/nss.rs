//! Accounts that exist only in a non-files NSS source, for the name-mapping tests (`names`).
//!
//! rsync asks NSS for names (`getpwuid`, `getgrnam`, …), so a user from LDAP or SSSD is
//! mapped like one in `/etc/passwd`. Debian's libnss-extrausers is such a source without a
//! server: it reads `/var/lib/extrausers/{passwd,group}` when `extrausers` is on the
//! `passwd:` and `group:` lines of `/etc/nsswitch.conf`. [`accounts`] installs it (as root,
//! through apt-get), puts it on those lines, and adds [`USER`] and [`GROUP`] there, never to
//! the files, then checks with `getent` that NSS sees them and the files do not.
//!
//! One machine gives one answer for a name, so "the same name, another number at the other
//! end" needs a second view: [`OtherView`] runs a command in a private mount namespace where
//! `/var/lib/extrausers` is a directory of its own, in which the same names have the
//! numbers [`OTHER_UID`] and [`OTHER_GID`]. The server of a transfer started through it
//! sees those; the client, outside, sees [`UID`] and [`GID`].
//!
//! Not root, no apt-get, or no mount namespace: a loud `SKIPPED`, never a silent pass.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::util::{code, is_root, run, skip, stderr, stdout};

/// A user only extrausers knows.
pub const USER: &str = "xsnss-user";
/// A group only extrausers knows (its number is not the user's, so a mix-up shows).
pub const GROUP: &str = "xsnss-group";
pub const UID: u32 = 41234;
pub const GID: u32 = 41235;
/// [`USER`]'s and [`GROUP`]'s numbers inside an [`OtherView`].
pub const OTHER_UID: u32 = 41240;
pub const OTHER_GID: u32 = 41241;
/// [`USER`]'s home, for `~xsnss-user` in remote paths.
pub const HOME: &str = "/home/xsync-nss-user";

const DB: &str = "/var/lib/extrausers";
const NSSWITCH: &str = "/etc/nsswitch.conf";
/// Serialises the set-up across test processes (another checkout's tests, say).
const LOCK: &str = "/run/lock/xsync-it-nss.lock";

/// Proof that the accounts are in place.
pub struct Accounts(());

/// Makes [`USER`] and [`GROUP`] exist in extrausers alone, once per test process; or says
/// why it cannot (`SKIPPED: <test>: …`) and returns `None`. Panics when the set-up ran but
/// NSS does not answer as it should: that is a broken machine, not a skip.
pub fn accounts(test: &str) -> Option<&'static Accounts> {
    static SETUP: OnceLock<Result<Accounts, String>> = OnceLock::new();
    match SETUP.get_or_init(set_up) {
        Ok(a) => Some(a),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

fn set_up() -> Result<Accounts, String> {
    if !is_root() {
        return Err("not running as root (extrausers needs /etc and /var/lib)".into());
    }
    let _lock = lock()?;
    install()?;
    // Present in the files, the accounts would prove nothing about NSS.
    for (file, name, id) in [("/etc/passwd", USER, UID), ("/etc/group", GROUP, GID)] {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
        assert!(
            !text.lines().any(|l| {
                let f: Vec<&str> = l.split(':').collect();
                f.first() == Some(&name) || f.get(2) == Some(&id.to_string().as_str())
            }),
            "{file} has `{name}` or id {id}: the NSS tests need both unknown to the files"
        );
    }
    let nsswitch = fs::read_to_string(NSSWITCH).unwrap_or_default();
    if let Some(edited) = with_extrausers(&nsswitch) {
        replace(Path::new(NSSWITCH), &edited);
    }
    fs::create_dir_all(DB).unwrap_or_else(|e| panic!("mkdir {DB}: {e}"));
    upsert(&Path::new(DB).join("passwd"), USER, &passwd_line(UID, GID));
    upsert(&Path::new(DB).join("group"), GROUP, &group_line(GID));
    fs::create_dir_all(HOME).unwrap_or_else(|e| panic!("mkdir {HOME}: {e}"));
    std::os::unix::fs::chown(HOME, Some(UID), Some(GID))
        .unwrap_or_else(|e| panic!("chown {HOME}: {e}"));

    // What NSS now says, asked through glibc's own tool rather than the code under test.
    expect_getent(&[], "passwd", USER, &passwd_line(UID, GID));
    expect_getent(&[], "passwd", &UID.to_string(), &passwd_line(UID, GID));
    expect_getent(&[], "group", GROUP, &group_line(GID));
    expect_getent(&[], "group", &GID.to_string(), &group_line(GID));
    for (db, key) in [("passwd", USER), ("group", GROUP)] {
        let out = run(Command::new("getent").args(["-s", "files", db, key]));
        assert_eq!(
            code(&out),
            2,
            "`getent -s files {db} {key}` should not find it: {}",
            stdout(&out)
        );
    }
    Ok(Accounts(()))
}

fn passwd_line(uid: u32, gid: u32) -> String {
    format!("{USER}:x:{uid}:{gid}:xsync NSS test:{HOME}:/bin/sh")
}

fn group_line(gid: u32) -> String {
    format!("{GROUP}:x:{gid}:")
}

/// `getent [words] DB KEY` (in `wrap`, if any) must print `line`.
fn expect_getent(wrap: &[&str], db: &str, key: &str, line: &str) {
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg("getent");
            c
        }
        None => Command::new("getent"),
    };
    let out = run(cmd.args([db, key]).stdin(Stdio::null()));
    assert_eq!(
        stdout(&out).trim_end(),
        line,
        "{wrap:?} getent {db} {key} exited {}: {}",
        code(&out),
        stderr(&out)
    );
}

/// An exclusive lock on [`LOCK`], released when the file is dropped.
fn lock() -> Result<fs::File, String> {
    if let Some(dir) = Path::new(LOCK).parent() {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir:?}: {e}"))?;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(|e| format!("open {LOCK}: {e}"))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| format!("flock {LOCK}: {e}"))?;
    Ok(f)
}

/// libnss-extrausers from Debian's packages, unless it is there.
fn install() -> Result<(), String> {
    let installed = || {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", "libnss-extrausers"])
            .output()
            .is_ok_and(|o| o.stdout.ends_with(b" installed"))
    };
    if installed() {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=120", "-qq"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))
    };
    let mut out = apt(&["install", "-y", "libnss-extrausers"])?;
    if !out.status.success() {
        // A machine that never ran `apt-get update` has no package lists.
        apt(&["update"])?;
        out = apt(&["install", "-y", "libnss-extrausers"])?;
    }
    if out.status.success() && installed() {
        Ok(())
    } else {
        Err(format!(
            "apt-get install libnss-extrausers failed (exit {}): {}",
            code(&out),
            stderr(&out).trim()
        ))
    }
}

/// `text` (an nsswitch.conf) with `extrausers` last on its `passwd:` and `group:` lines, or
/// `None` when both already name it. A missing line gets glibc's default (`files`) first.
/// Every other line, comments and actions (`[NOTFOUND=return]`) included, stays as it is.
pub fn with_extrausers(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut changed = false;
    let mut seen = [false; 2];
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let (config, comment) = body.split_once('#').unwrap_or((body, ""));
        let db = ["passwd", "group"].iter().position(|db| {
            config
                .trim_start()
                .strip_prefix(db)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        });
        match db {
            Some(i) if !config.split_whitespace().any(|w| w == "extrausers") => {
                seen[i] = true;
                changed = true;
                out.push_str(config.trim_end());
                out.push_str(" extrausers");
                if !comment.is_empty() {
                    out.push_str(" #");
                    out.push_str(comment);
                }
                out.push('\n');
            }
            found => {
                if let Some(i) = found {
                    seen[i] = true;
                }
                out.push_str(line);
            }
        }
    }
    for (i, db) in ["passwd", "group"].iter().enumerate() {
        if !seen[i] {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{db}: files extrausers\n"));
            changed = true;
        }
    }
    changed.then_some(out)
}

/// Puts `line` in the `name:…` line's place in a `passwd`/`group` file (or at its end).
fn upsert(path: &Path, name: &str, line: &str) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let prefix = format!("{name}:");
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(&prefix)).collect();
    lines.push(line);
    let new = lines.join("\n") + "\n";
    if new != text {
        replace(path, &new);
    }
}

/// Writes `path` whole through a temporary and a rename, so that a process reading it at
/// that moment (NSS in a parallel test) sees the old file or the new one, 0644.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.xsync-it.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = fs::File::create(&tmp).unwrap_or_else(|e| panic!("create {tmp:?}: {e}"));
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod {tmp:?}: {e}"));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {tmp:?} to {path:?}: {e}"));
}

/// The other end's view of the accounts: a private mount namespace in which
/// `/var/lib/extrausers` holds [`USER`] as [`OTHER_UID`] and [`GROUP`] as [`OTHER_GID`].
pub struct OtherView {
    dir: TempDir,
}

impl OtherView {
    /// Builds the view and checks it (a command run through it sees the other numbers);
    /// `None`, with a loud skip, where no mount namespace can be made.
    pub fn new(test: &str, _accounts: &Accounts) -> Option<OtherView> {
        let dir = tempfile::Builder::new()
            .prefix("xsync-it-nss-")
            .tempdir()
            .unwrap_or_else(|e| panic!("tempdir: {e}"));
        let d = dir.path();
        assert!(
            !d.to_string_lossy().contains(char::is_whitespace),
            "{d:?} would be split by the remote shell"
        );
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {d:?}: {e}"));
        let db = d.join("db");
        fs::create_dir(&db).unwrap_or_else(|e| panic!("mkdir {db:?}: {e}"));
        replace(
            &db.join("passwd"),
            &(passwd_line(OTHER_UID, OTHER_GID) + "\n"),
        );
        replace(&db.join("group"), &(group_line(OTHER_GID) + "\n"));
        let script = d.join("in-view");
        // unshare's namespace is private (no mount propagates back); `$0` is the db.
        crate::util::write_script(
            &script,
            &format!(
                "#!/bin/sh\n\
                 # Runs the command where NSS's extrausers database is {db}.\n\
                 exec unshare --mount --propagation private -- sh -c \
                 'mount --bind \"$0\" {DB} && exec \"$@\"' {db} \"$@\"\n",
                db = db.display()
            ),
        );
        let view = OtherView { dir };
        let probe = run(Command::new(view.prefix()).arg("true").stdin(Stdio::null()));
        if !probe.status.success() {
            skip(
                test,
                &format!(
                    "cannot give a command its own mount namespace (exit {}): {}",
                    code(&probe),
                    stderr(&probe).trim()
                ),
            );
            return None;
        }
        let prefix = view.prefix();
        expect_getent(
            &[&prefix],
            "passwd",
            USER,
            &passwd_line(OTHER_UID, OTHER_GID),
        );
        expect_getent(&[&prefix], "group", GROUP, &group_line(OTHER_GID));
        // And outside, nothing changed.
        expect_getent(&[], "passwd", USER, &passwd_line(UID, GID));
        Some(view)
    }

    /// The command to put in front of another (`--xsync-path`, `--rsync-path`).
    pub fn prefix(&self) -> String {
        self.dir.path().join("in-view").display().to_string()
    }
}

#[test]
fn nsswitch_gets_extrausers_once_and_keeps_the_rest() {
    let conf = "# comment: passwd: files\npasswd:         files systemd\n\
                group: files [NOTFOUND=return] db # local\nshadow: files\nhosts: files dns";
    let edited = with_extrausers(conf).expect("both lines lack it");
    assert_eq!(
        edited,
        "# comment: passwd: files\npasswd:         files systemd extrausers\n\
         group: files [NOTFOUND=return] db extrausers # local\nshadow: files\nhosts: files dns"
    );
    assert_eq!(with_extrausers(&edited), None, "idempotent");
    assert_eq!(
        with_extrausers("hosts: files\n").as_deref(),
        Some("hosts: files\npasswd: files extrausers\ngroup: files extrausers\n")
    );
    assert_eq!(
        with_extrausers("passwd: extrausers files\ngroup: files extrausers\n"),
        None
    );
}

/// The harness itself: the accounts are NSS's alone, and the other view sees other numbers.
#[test]
fn extrausers_accounts_exist_only_in_nss() {
    let test = this_test!();
    let Some(accounts) = accounts(test) else {
        return;
    };
    // set_up checked the accounts with getent; the other view checks itself too.
    let _ = OtherView::new(test, accounts);
}
