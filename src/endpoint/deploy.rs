//! Putting this xsync on a remote host that has none, or one that speaks another protocol,
//! through the same remote shell (as mutagen and syq install their agents).
//!
//! Every remote run that may install (no `--xsync-path`, no `--no-deploy`) asks the remote
//! shell to run [`Binary::run_command`]: a POSIX sh one-liner that runs this exact build from
//! the per-user cache, `~/.cache/xsync/xsync-<version>-<blake3>`, when it is there and
//! checks out, else the `xsync` on the remote's PATH, else exits 127 as the shell does for
//! a missing program. So a later run finds the cached binary in one step, with no extra
//! round trip.
//!
//! When that run ends in 127, or the remote xsync answers with another protocol version, a
//! second remote-shell session runs [`Binary::install_command`]: the remote reports its OS,
//! architecture, C library and whether its cache directory is safe, and waits. Where this
//! binary fits ([`fits`]), the client sends `go` and the executable; the remote writes it
//! to a temporary beside its final name, checks its size and POSIX `cksum` (the one digest
//! every Linux has), and runs it with `--install`: the binary checks its own blake3 digest
//! ([`settle_install`]), renames itself into place and serves the run over that same
//! session. Where it does not fit, nothing is sent and the error names the remote's
//! platform and what to install.
//!
//! The rules that keep a cached binary safe to run, stated once:
//! * it is run only under its exact name: this version and this build's digest, so a
//!   binary of another version or build is never run;
//! * it is run only after its size and cksum match this build's, checked by the shell
//!   before a byte of it executes (a damaged file is never run, not even as a script: sh
//!   runs a file that execve refuses as shell commands), and it was verified by its blake3
//!   digest before it first got that name;
//! * every directory from `$HOME` down to it, and the file itself, must be owned by the
//!   user (or root) and writable by no one else (OpenSSH's StrictModes rule for `~/.ssh`):
//!   a cache others could write is neither used nor installed into.
//!
//! The scripts contain no single quote, backslash or `!` and stay on one line, so every
//! login shell (sh, bash, zsh, fish, tcsh) passes them to `sh -c` unchanged; the only values
//! spliced in are this build's version, hex digest, size and cksum.

use crate::error::Error;
use crate::exit::ExitCode;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where the running executable is read from: the file the kernel is running, even if the
/// path it was started from has since been replaced (a rebuild, a package upgrade).
const SELF_EXE: &str = "/proc/self/exe";

/// The environment variable that turns installing off, for CI jobs that must not write
/// to the hosts they reach (`--no-deploy` on the command line).
pub const NO_DEPLOY_ENV: &str = "XSYNC_NO_DEPLOY";

/// This build's executable, as the remote must find it.
#[derive(Debug, Clone)]
pub struct Binary {
    path: PathBuf,
    size: u64,
    /// blake3 of the file, lower-case hex.
    digest: String,
    /// POSIX `cksum`'s CRC of the file (what `cksum < FILE` prints before the size).
    cksum: u32,
}

/// The shell function both scripts use: whether a path that exists is owned by the user or
/// root and writable by no one else (a missing path passes: the caller checks existence).
/// `ls -ldnL` follows a symlinked `~/.cache` to the directory that matters.
const SAFE_FN: &str = "safe() { [ -e \"$1\" ] || return 0; case \"$(ls -ldnL \"$1\")\" in ?????w*|????????w*) return 1;; esac; set -- $(ls -ldnL \"$1\"); [ \"$3\" = \"$(id -u)\" ] || [ \"$3\" = 0 ]; }";

impl Binary {
    /// The running executable.
    pub fn own() -> Result<Binary, Error> {
        Binary::from_file(Path::new(SELF_EXE))
    }

    pub fn from_file(path: &Path) -> Result<Binary, Error> {
        let err = |e: std::io::Error| {
            Error::new(
                ExitCode::FileIo,
                format!(
                    "cannot read this program's executable {}: {e}",
                    path.display()
                ),
            )
        };
        let mut f = std::fs::File::open(path).map_err(err)?;
        let mut hasher = blake3::Hasher::new();
        let crc = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_CKSUM);
        let mut sum = crc.digest();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            sum.update(&buf[..n]);
            size += n as u64;
        }
        // POSIX cksum runs the length, least significant byte first, through the CRC.
        let mut len = size;
        while len > 0 {
            sum.update(&[len as u8]);
            len >>= 8;
        }
        Ok(Binary {
            path: path.to_path_buf(),
            size,
            digest: hasher.finalize().to_hex().to_string(),
            cksum: sum.finalize(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The cached file's name: `xsync-<version>-<blake3>`.
    pub fn cache_name(&self) -> String {
        format!("xsync-{}-{}", env!("CARGO_PKG_VERSION"), self.digest)
    }

    /// The line `cksum < FILE` prints for this binary.
    fn cksum_line(&self) -> String {
        format!("{} {}", self.cksum, self.size)
    }

    /// The remote command of every run that may install: the cached build if it checks
    /// out, else `xsync` from PATH, else status 127.
    pub fn run_command(&self) -> String {
        // One `ls` for the four paths (each run pays for every process it starts): any
        // line with group or other write, or another owner than the user or root, fails.
        let script = format!(
            "d=\"$HOME/.cache/xsync\"; f=\"$d/{name}\"; \
             if [ -n \"$HOME\" ] && [ -f \"$f\" ] && u=$(id -u) && ls -ldnL \"$HOME\" \"$HOME/.cache\" \"$d\" \"$f\" | {{ s=0; n=0; while read -r m k o r; do n=$((n+1)); case \"$m\" in ?????w*|????????w*) s=1;; esac; [ \"$o\" = \"$u\" ] || [ \"$o\" = 0 ] || s=1; done; [ $n = 4 ] && exit $s; exit 1; }} \
             && [ \"$(cksum < \"$f\")\" = \"{sum}\" ]; then exec \"$f\" --server; fi; \
             if command -v xsync >/dev/null 2>&1; then exec xsync --server; fi; exit 127",
            name = self.cache_name(),
            sum = self.cksum_line(),
        );
        format!("sh -c '{script}'")
    }

    /// The remote command that installs this binary: report the platform, wait for `go`,
    /// take the executable, check it, run it with `--install`.
    pub fn install_command(&self) -> String {
        let script = format!(
            "{SAFE_FN}; umask 077; d=\"$HOME/.cache/xsync\"; f=\"$d/{name}\"; c=ok; \
             if [ -z \"$HOME\" ]; then c=nohome; else for p in \"$HOME\" \"$HOME/.cache\" \"$d\"; do safe \"$p\" || {{ c=\"unsafe $p\"; break; }}; done; fi; \
             echo \"XSYNC-OS $(uname -s)\"; echo \"XSYNC-ARCH $(uname -m)\"; \
             echo \"XSYNC-LIBC $(getconf GNU_LIBC_VERSION 2>/dev/null || echo unknown)\"; \
             echo \"XSYNC-CACHE $c\"; \
             if zstd -q -V >/dev/null 2>&1; then echo XSYNC-ZSTD yes; fi; echo XSYNC-END; \
             read -r a m n || exit 127; [ \"$a\" = go ] || exit 127; \
             if mkdir -p \"$d\" && safe \"$HOME/.cache\" && safe \"$d\"; then :; else echo \"xsync: cannot make a private directory $d\" >&2; exit 126; fi; \
             t=\"$d/.upload.$$\"; \
             if [ \"$m\" = zstd ]; then head -c \"$n\" | zstd -dcq > \"$t\"; else head -c {size} > \"$t\"; fi; \
             if [ \"$(cksum < \"$t\")\" = \"{sum}\" ] && chmod 700 \"$t\"; then exec \"$t\" --server --install \"$t\" \"$f\" {digest}; fi; \
             rm -f \"$t\"; echo \"xsync: the upload to $t arrived damaged\" >&2; exit 12",
            name = self.cache_name(),
            size = self.size,
            sum = self.cksum_line(),
            digest = self.digest,
        );
        format!("sh -c '{script}'")
    }

    /// Sends `go` and the executable, after [`read_platform`] and [`fits`] said yes:
    /// zstd-compressed where the remote can decompress it (a release build with line
    /// tables shrinks from 34 MB to 8 MB in 0.2 s), else as it is. Returns the bytes sent.
    pub fn upload(&self, to: &mut impl Write, zstd: bool) -> Result<u64, Error> {
        let lost = |e: std::io::Error| {
            Error::new(
                ExitCode::StreamIo,
                format!("connection lost while installing xsync: {e}"),
            )
        };
        let mut f = std::fs::File::open(&self.path).map_err(|e| {
            Error::new(
                ExitCode::FileIo,
                format!(
                    "cannot read this program's executable {}: {e}",
                    self.path.display()
                ),
            )
        })?;
        let changed = || {
            Error::new(
                ExitCode::FileIo,
                format!(
                    "this program's executable {} changed size while it was being installed",
                    self.path.display()
                ),
            )
        };
        // Exactly the announced bytes: the remote's `head -c` takes that many, and the
        // protocol starts right after them.
        if zstd {
            let mut raw = Vec::new();
            (&mut f)
                .take(self.size)
                .read_to_end(&mut raw)
                .map_err(|e| {
                    Error::new(
                        ExitCode::FileIo,
                        format!("cannot read {}: {e}", self.path.display()),
                    )
                })?;
            if raw.len() as u64 != self.size {
                return Err(changed());
            }
            let packed = zstd::bulk::compress(&raw, 3).map_err(|e| {
                Error::new(
                    ExitCode::FileIo,
                    format!("cannot compress {}: {e}", self.path.display()),
                )
            })?;
            to.write_all(format!("go zstd {}\n", packed.len()).as_bytes())
                .map_err(lost)?;
            to.write_all(&packed).map_err(lost)?;
            to.flush().map_err(lost)?;
            return Ok(packed.len() as u64);
        }
        to.write_all(b"go raw 0\n").map_err(lost)?;
        let sent = std::io::copy(&mut (&mut f).take(self.size), to).map_err(lost)?;
        if sent != self.size {
            return Err(changed());
        }
        to.flush().map_err(lost)?;
        Ok(sent)
    }
}

/// What the install script reports about the remote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    /// `uname -s`
    pub os: String,
    /// `uname -m`
    pub arch: String,
    /// `getconf GNU_LIBC_VERSION` (`glibc 2.36`), or `unknown` (musl, or no getconf).
    pub libc: String,
    /// `ok`, `nohome`, or `unsafe <dir>`.
    pub cache: String,
    /// The remote has a working `zstd` to unpack the upload with.
    pub zstd: bool,
}

/// Reads the install script's report, byte by byte so that nothing after it is taken from
/// the stream. Lines a login script prints before it are skipped; 64 KiB without the end
/// marker is an error.
pub fn read_platform(from: &mut impl Read) -> Result<Platform, Error> {
    let mut p = Platform::default();
    let mut line = Vec::new();
    let mut total = 0usize;
    loop {
        let mut b = [0u8; 1];
        let n = from.read(&mut b).map_err(|e| {
            Error::new(
                ExitCode::StreamIo,
                format!("connection lost while asking the remote about its platform: {e}"),
            )
        })?;
        if n == 0 {
            return Err(Error::new(
                ExitCode::StreamIo,
                "connection closed while asking the remote about its platform",
            ));
        }
        total += 1;
        if total > 64 * 1024 {
            return Err(Error::new(
                ExitCode::Protocol,
                "the remote's platform report did not end",
            ));
        }
        if b[0] != b'\n' {
            line.push(b[0]);
            continue;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        line.clear();
        let (key, value) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        match key {
            "XSYNC-OS" => p.os = value.to_string(),
            "XSYNC-ARCH" => p.arch = value.to_string(),
            "XSYNC-LIBC" => p.libc = value.to_string(),
            "XSYNC-CACHE" => p.cache = value.to_string(),
            "XSYNC-ZSTD" => p.zstd = value == "yes",
            "XSYNC-END" => return Ok(p),
            _ => {}
        }
    }
}

/// Whether `uname -m` names the architecture this binary was built for.
fn arch_matches(uname: &str) -> bool {
    let names: &[&str] = match std::env::consts::ARCH {
        "x86_64" => &["x86_64", "amd64"],
        "aarch64" => &["aarch64", "arm64"],
        "x86" => &["i386", "i486", "i586", "i686"],
        "arm" => &["armv6l", "armv7l", "armv8l"],
        "powerpc64" => &["ppc64", "ppc64le"],
        other => return uname == other,
    };
    names.contains(&uname)
}

/// The newest `GLIBC_2.N` symbol version an executable needs (its dynamic section names
/// each version it links against), or None when it names none (a static build).
pub fn required_glibc(exe: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_2.";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(off) = exe[i..].windows(TAG.len()).position(|w| w == TAG) {
        let start = i + off + TAG.len();
        let digits = exe[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0
            && let Ok(minor) = std::str::from_utf8(&exe[start..start + digits])
                .unwrap_or("")
                .parse::<u32>()
        {
            best = best.max(Some((2, minor)));
        }
        i = start;
    }
    best
}

/// Whether this binary can run on `p`: the same OS and architecture, and a C library it
/// links with. `Err` says why not, for the message.
pub fn fits(p: &Platform, exe: &Binary) -> Result<(), String> {
    // `uname -s` spells it so.
    let here = format!("Linux {}", std::env::consts::ARCH);
    if !p.os.eq_ignore_ascii_case(std::env::consts::OS) || !arch_matches(&p.arch) {
        return Err(format!(
            "the remote is {} {}, and this xsync is built for {here}",
            p.os, p.arch
        ));
    }
    if cfg!(target_env = "gnu") {
        let bytes = std::fs::read(&exe.path).map_err(|e| {
            format!(
                "cannot read this program's executable {}: {e}",
                exe.path.display()
            )
        })?;
        if let Some((maj, min)) = required_glibc(&bytes) {
            let have = p.libc.strip_prefix("glibc ").and_then(|v| {
                let mut it = v.split('.').map(|n| n.trim().parse::<u32>().ok());
                Some((it.next()??, it.next().flatten().unwrap_or(0)))
            });
            match have {
                Some(v) if v >= (maj, min) => {}
                Some((a, b)) => {
                    return Err(format!(
                        "the remote has glibc {a}.{b}, and this xsync needs glibc {maj}.{min} or newer"
                    ));
                }
                None => {
                    return Err(format!(
                        "the remote's C library is not glibc ({}), and this xsync links with glibc {maj}.{min}",
                        p.libc
                    ));
                }
            }
        }
    }
    match p.cache.as_str() {
        "ok" => Ok(()),
        "nohome" => Err("the remote login has no $HOME for the cache".to_string()),
        other => Err(format!(
            "`{}` on the remote is writable by others than you, so xsync neither runs from it nor installs into it (it must be owned by you, or root, and writable by no one else)",
            other.strip_prefix("unsafe ").unwrap_or(other)
        )),
    }
}

/// The server's half of an install: `--server --install TMP FINAL DIGEST`. Checks that the
/// running executable is the one the client sent (its blake3 digest), then gives it its
/// cache name. A mismatch removes the temporary and ends the run (exit 12) before a byte of
/// the protocol is read.
pub fn settle_install(args: &[OsString]) -> Result<(), Error> {
    let [flag, tmp, fin, digest] = args else {
        return Err(Error::usage("--server: unexpected arguments"));
    };
    if flag != "--install" {
        return Err(Error::usage(format!(
            "--server: unexpected argument `{}`",
            flag.to_string_lossy()
        )));
    }
    let (tmp, fin) = (Path::new(tmp), Path::new(fin));
    // Only an upload's temporary may be renamed, and only to this build's cache name
    // beside it: whoever may pass these words cannot make them move any other file.
    let named = |p: &Path, ok: &dyn Fn(&str) -> bool| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(ok)
    };
    let cache_name = format!(
        "xsync-{}-{}",
        env!("CARGO_PKG_VERSION"),
        digest.to_string_lossy()
    );
    if tmp.parent() != fin.parent()
        || tmp.parent().and_then(Path::file_name) != Some("xsync".as_ref())
        || !named(tmp, &|n| n.starts_with(".upload."))
        || !named(fin, &|n| n == cache_name)
    {
        return Err(Error::usage(
            "--server --install: only `~/.cache/xsync/.upload.*` becomes this build's cache name beside it",
        ));
    }
    let me = Binary::own()?;
    if me.digest != digest.to_string_lossy() {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::new(
            ExitCode::StreamIo,
            format!(
                "the xsync uploaded to {} does not match its blake3 digest: removed",
                tmp.display()
            ),
        ));
    }
    std::fs::rename(tmp, fin).map_err(|e| {
        Error::new(
            ExitCode::FileIo,
            format!("cannot rename {} to {}: {e}", tmp.display(), fin.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cksum_matches_posix_cksum() {
        // POSIX's own example values, checked against coreutils' cksum.
        let dir = tempfile::tempdir().unwrap();
        for (content, want) in [
            (&b""[..], "4294967295 0"),
            (&b"a"[..], "1220704766 1"),
            (&b"hello world\n"[..], "3733384285 12"),
        ] {
            let p = dir.path().join("f");
            std::fs::write(&p, content).unwrap();
            assert_eq!(Binary::from_file(&p).unwrap().cksum_line(), want);
        }
    }

    #[test]
    fn the_newest_glibc_version_named_is_the_requirement() {
        let exe = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_PRIVATE\0GLIBC_2.17\0GLIBC_2.";
        assert_eq!(required_glibc(exe), Some((2, 34)));
        assert_eq!(required_glibc(b"static"), None);
    }

    #[test]
    fn the_platform_report_skips_a_login_banner_and_stops_at_its_end() {
        let text = b"Welcome to host\nXSYNC-OS Linux\nXSYNC-ARCH x86_64\nXSYNC-LIBC glibc 2.36\nXSYNC-CACHE unsafe /home/u/.cache\nXSYNC-END\nREST";
        let mut r = &text[..];
        let p = read_platform(&mut r).unwrap();
        assert_eq!(
            p,
            Platform {
                os: "Linux".into(),
                arch: "x86_64".into(),
                libc: "glibc 2.36".into(),
                cache: "unsafe /home/u/.cache".into(),
                zstd: false,
            }
        );
        assert_eq!(r, b"REST");
        let mut cut = &b"XSYNC-OS Linux\n"[..];
        assert!(read_platform(&mut cut).is_err());
    }

    #[test]
    fn another_architecture_or_an_unsafe_cache_does_not_fit() {
        let me = Binary::own().unwrap();
        let here = Platform {
            os: "Linux".into(),
            arch: std::env::consts::ARCH.into(),
            libc: "glibc 9.99".into(),
            cache: "ok".into(),
            zstd: true,
        };
        assert_eq!(fits(&here, &me), Ok(()));
        let other = Platform {
            arch: "sparc64".into(),
            ..here.clone()
        };
        assert!(fits(&other, &me).unwrap_err().contains("sparc64"));
        let unsafe_cache = Platform {
            cache: "unsafe /home/u/.cache".into(),
            ..here.clone()
        };
        assert!(
            fits(&unsafe_cache, &me)
                .unwrap_err()
                .contains("/home/u/.cache")
        );
        if cfg!(target_env = "gnu") {
            let musl = Platform {
                libc: "unknown".into(),
                ..here.clone()
            };
            assert!(fits(&musl, &me).unwrap_err().contains("not glibc"));
            let old = Platform {
                libc: "glibc 2.1".into(),
                ..here
            };
            assert!(fits(&old, &me).unwrap_err().contains("glibc 2.1"));
        }
    }

    #[test]
    fn install_renames_only_an_upload_to_this_builds_cache_name() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("xsync");
        std::fs::create_dir(&cache).unwrap();
        let victim = cache.join("notes");
        std::fs::write(&victim, b"keep").unwrap();
        let me = Binary::own().unwrap();
        let good_name = cache.join(me.cache_name());
        let args = |tmp: &Path, fin: &Path, digest: &str| -> Vec<OsString> {
            vec!["--install".into(), tmp.into(), fin.into(), digest.into()]
        };
        for (tmp, fin) in [
            (victim.clone(), good_name.clone()),
            (cache.join(".upload.1"), cache.join("other")),
            (cache.join(".upload.1"), dir.path().join(me.cache_name())),
        ] {
            let e = settle_install(&args(&tmp, &fin, &me.digest)).unwrap_err();
            assert_eq!(e.code, ExitCode::Usage, "{tmp:?} -> {fin:?}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // The right shape, but not this binary's digest: the temporary is removed.
        let upload = cache.join(".upload.2");
        std::fs::write(&upload, b"not xsync").unwrap();
        let wrong = "0".repeat(64);
        let fin = cache.join(format!("xsync-{}-{wrong}", env!("CARGO_PKG_VERSION")));
        assert!(settle_install(&args(&upload, &fin, &wrong)).is_err());
        assert!(!upload.exists() && !fin.exists());
    }

    #[test]
    fn the_scripts_survive_any_login_shells_quoting() {
        let me = Binary::own().unwrap();
        for cmd in [me.run_command(), me.install_command()] {
            let body = cmd
                .strip_prefix("sh -c '")
                .and_then(|s| s.strip_suffix('\''))
                .expect("one single-quoted word");
            for bad in ['\'', '\\', '!', '\n'] {
                assert!(!body.contains(bad), "{bad:?} in {body}");
            }
        }
    }
}
