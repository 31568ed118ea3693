//! A real OpenSSH server on loopback, for testing transfers over ssh end to end.
//!
//! Each [`Sshd`] is a throwaway `/usr/sbin/sshd -D` on a free 127.0.0.1 port, with its own host
//! key, user key, `authorized_keys` and config in a temporary directory. [`Sshd::rsh`] is the
//! `-e` value that reaches it as the current user (root in CI) without touching
//! `~/.ssh/known_hosts`. One server per test: starting one costs two `ssh-keygen` runs and a
//! few milliseconds, and separate servers keep parallel tests (and the refused-login test) from
//! disturbing each other.
//!
//! A machine without sshd, ssh-keygen or root is a loud skip; a server that fails to start
//! where those exist is a failure (with sshd's log), never a silent pass.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{code, is_root, run, skip, stderr};

pub const SSHD: &str = "/usr/sbin/sshd";
/// The host every remote argument names.
pub const HOST: &str = "127.0.0.1";

/// A running sshd; dropping it kills the server (sessions in progress are not waited for).
pub struct Sshd {
    child: Child,
    port: u16,
    key: PathBuf,
    log: PathBuf,
    /// Keys, config, pid file and log; removed on drop.
    _dir: TempDir,
}

impl Sshd {
    /// Starts a server for `test`, or prints `SKIPPED: <test>: sshd not available: <why>` and
    /// returns `None` when this machine cannot run one (no sshd, no ssh client, not root).
    /// Panics when the prerequisites are there but the server does not come up.
    pub fn start(test: &str) -> Option<Sshd> {
        Sshd::start_with(test, "")
    }

    /// [`start`](Self::start) with more `sshd_config` lines (e.g. `PermitUserEnvironment
    /// yes`, so that a test account's `~/.ssh/environment` sets its PATH).
    pub fn start_with(test: &str, extra_config: &str) -> Option<Sshd> {
        match Sshd::prerequisites() {
            Ok(()) => Some(Sshd::try_start(extra_config).unwrap_or_else(|e| panic!("{test}: {e}"))),
            Err(why) => {
                skip(test, &format!("sshd not available: {why}"));
                None
            }
        }
    }

    /// Why this machine cannot run the harness, if it cannot.
    pub fn prerequisites() -> Result<(), String> {
        if !is_root() {
            return Err("not running as root".into());
        }
        if !Path::new(SSHD).is_file() {
            return Err(format!("{SSHD} is not installed"));
        }
        for tool in ["ssh", "ssh-keygen"] {
            if which(tool).is_none() {
                return Err(format!("`{tool}` is not on PATH"));
            }
        }
        Ok(())
    }

    /// Generates keys and a config and starts sshd, retrying on another port if the chosen one
    /// was taken between picking and binding.
    pub fn try_start(extra_config: &str) -> Result<Sshd, String> {
        // sshd refuses to start without its privilege-separation directory.
        fs::create_dir_all("/run/sshd").map_err(|e| format!("mkdir /run/sshd: {e}"))?;
        let dir = tempfile::Builder::new()
            .prefix("xsync-sshd-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let d = dir.path().to_path_buf();
        // `rsh` is split on whitespace by rsync and xsync alike.
        if d.to_string_lossy().contains(char::is_whitespace) {
            return Err(format!("temporary directory {d:?} contains whitespace"));
        }
        keygen(&d.join("host_key"))?;
        keygen(&d.join("user_key"))?;
        fs::copy(d.join("user_key.pub"), d.join("authorized_keys"))
            .map_err(|e| format!("authorized_keys: {e}"))?;
        // sshd reads authorized_keys as the account logging in: other accounts than root
        // (the install tests' fresh ones) must be able to reach it. Keys stay private.
        use std::os::unix::fs::PermissionsExt;
        for (path, mode) in [(d.clone(), 0o711), (d.join("authorized_keys"), 0o644)] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("chmod {path:?}: {e}"))?;
        }

        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let config = d.join("sshd_config");
            write_config(&config, &d, port, true, extra_config)?;
            if !config_accepted(&config) {
                // An older sshd without PerSourcePenalties.
                write_config(&config, &d, port, false, extra_config)?;
            }
            let log = d.join(format!("sshd-{port}.log"));
            let mut child = spawn_sshd(&config, &log)?;
            match wait_for_port(&mut child, port) {
                Ok(()) => {
                    return Ok(Sshd {
                        child,
                        port,
                        key: d.join("user_key"),
                        log,
                        _dir: dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!(
                        "sshd on port {port}: {e}; its log:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        Err(format!("sshd did not start: {last}"))
    }

    /// The listening sshd's process id (sessions are its descendants while they last).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user's private key.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// The ssh command line that reaches this server, as one `-e`/`--rsh` value.
    pub fn rsh(&self) -> String {
        let key = self.key().to_str().expect("temp paths are UTF-8");
        assert!(
            !key.contains(char::is_whitespace),
            "key path {key:?} would be split"
        );
        format!(
            "ssh -p {} -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
            self.port
        )
    }

    /// The `-e` value as separate words, for running ssh directly.
    pub fn rsh_words(&self) -> Vec<String> {
        self.rsh().split_whitespace().map(String::from).collect()
    }

    /// `127.0.0.1:PATH` (build `path` with `arg_path` or `slash` to keep a trailing slash).
    pub fn remote(&self, path: impl AsRef<OsStr>) -> OsString {
        remote(path)
    }

    /// `ssh … 127.0.0.1 COMMAND`, ready to run.
    pub fn ssh(&self, remote_command: &str) -> Command {
        let words = self.rsh_words();
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]).arg(HOST).arg(remote_command);
        cmd.env("LC_ALL", "C").stdin(Stdio::null());
        cmd
    }

    /// What sshd has logged so far (errors only), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `127.0.0.1:PATH`, for tests that need no server.
pub fn remote(path: impl AsRef<OsStr>) -> OsString {
    let mut s = OsString::from(format!("{HOST}:"));
    s.push(path.as_ref());
    s
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn keygen(path: &Path) -> Result<(), String> {
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "xsync-test", "-f"])
        .arg(path)
        .stdin(Stdio::null()));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen {path:?} exited {}: {}",
            code(&out),
            stderr(&out)
        ))
    }
}

/// A port nobody listened on a moment ago.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

fn write_config(
    config: &Path,
    d: &Path,
    port: u16,
    penalties_option: bool,
    extra: &str,
) -> Result<(), String> {
    let p = |name: &str| d.join(name).display().to_string();
    let mut text = format!(
        "Port {port}\n\
         ListenAddress 127.0.0.1\n\
         HostKey {}\n\
         PidFile {}\n\
         AuthorizedKeysFile {}\n\
         PermitRootLogin yes\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         UseDNS no\n\
         MaxStartups 100\n\
         MaxSessions 100\n\
         LogLevel ERROR\n",
        p("host_key"),
        p("sshd.pid"),
        p("authorized_keys"),
    );
    if penalties_option {
        // OpenSSH 9.8+ would otherwise lock 127.0.0.1 out after the refused-login tests.
        text.push_str("PerSourcePenalties no\n");
    }
    text.push_str(extra);
    fs::write(config, text).map_err(|e| format!("write {config:?}: {e}"))
}

/// Whether `sshd -t` accepts the config (it rejects options it does not know).
fn config_accepted(config: &Path) -> bool {
    Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn spawn_sshd(config: &Path, log: &Path) -> Result<Child, String> {
    let log_file = File::create(log).map_err(|e| format!("create {log:?}: {e}"))?;
    let mut cmd = Command::new(SSHD);
    cmd.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    // SAFETY: between fork and exec the closure only makes the prctl system call, which is
    // async-signal-safe and touches no memory shared with other threads. It makes the kernel
    // kill sshd when the test thread that started it dies without dropping it (a test binary
    // killed by a timeout), so no listener outlives the tests.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().map_err(|e| format!("spawn {SSHD}: {e}"))
}

/// Waits (at most 10 s) until sshd accepts connections on `port`, or has exited.
fn wait_for_port(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited early ({status})"));
        }
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            && greets(stream)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("not accepting connections after 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the server behind `stream` sends an SSH banner. Answering with an identification
/// of our own before hanging up keeps sshd from logging the probe as an error.
fn greets(mut stream: TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0u8; 4];
    let ok = stream.read_exact(&mut banner).is_ok() && banner == *b"SSH-";
    let _ = stream.write_all(b"SSH-2.0-xsync_probe\r\n");
    ok
}

// ---------------------------------------------------------------------------------------------
// The harness proves itself with ssh and rsync.
// ---------------------------------------------------------------------------------------------

mod harness {
    use super::*;
    use crate::util::{
        Compare, awkward, diff_trees, have_rsync, rsync, rsync_path, slash, test_dir,
    };

    #[test]
    fn sshd_harness_runs_a_command() {
        let Some(sshd) = Sshd::start(this_test!()) else {
            return;
        };
        let out = run(&mut sshd.ssh("echo ok"));
        assert!(
            out.status.success(),
            "ssh exited {}: {}\nsshd log:\n{}",
            code(&out),
            stderr(&out),
            sshd.log()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }

    #[test]
    fn sshd_harness_refuses_a_wrong_key() {
        let Some(sshd) = Sshd::start(this_test!()) else {
            return;
        };
        let out = run(Command::new("ssh")
            .args(["-p", &sshd.port().to_string()])
            .args(["-i", "/nonexistent/key", "-o", "IdentitiesOnly=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", HOST, "echo ok"])
            .stdin(Stdio::null()));
        assert_eq!(code(&out), 255, "stderr: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }

    /// rsync over the harness's ssh gives the same tree as a local rsync, so the harness is
    /// fit to be the oracle's transport.
    #[test]
    fn rsync_over_sshd_harness_matches_local_rsync() {
        let test = this_test!();
        if !have_rsync(test) {
            return;
        }
        let Some(sshd) = Sshd::start(test) else {
            return;
        };
        let dir = test_dir();
        let root = dir.path();
        awkward(&root.join("src"));
        fs::create_dir(root.join("local")).expect("mkdir local");
        fs::create_dir(root.join("remote")).expect("mkdir remote");

        let local = run(rsync()
            .expect("checked")
            .arg("-aH")
            .arg(slash(&root.join("src")))
            .arg(slash(&root.join("local"))));
        assert!(local.status.success(), "local rsync: {}", stderr(&local));

        let remote = run(rsync()
            .expect("checked")
            .args(["-aH", "-e", &sshd.rsh()])
            .arg(slash(&root.join("src")))
            .arg(sshd.remote(slash(&root.join("remote")))));
        assert!(
            remote.status.success(),
            "rsync over ssh ({:?}) exited {}: {}\nsshd log:\n{}",
            rsync_path(),
            code(&remote),
            stderr(&remote),
            sshd.log()
        );

        let diffs = diff_trees(
            &root.join("local"),
            &root.join("remote"),
            &Compare::default(),
        );
        assert!(diffs.is_empty(), "local vs over ssh:\n{}", diffs.join("\n"));
        // And not vacuously: the copy is the source.
        let diffs = diff_trees(&root.join("src"), &root.join("remote"), &Compare::default());
        assert!(
            diffs.is_empty(),
            "source vs over ssh:\n{}",
            diffs.join("\n")
        );
    }
}
