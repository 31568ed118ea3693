//! `-b`/`--backup`, `--backup-dir`, `--suffix`: where the receiver keeps a destination
//! entry it is about to replace or delete, named as rsync names it — NAME plus the suffix
//! beside the entry, or, with `--backup-dir`, DIR/PATH plus the suffix. This module names the
//! backup and opens its directory; the moves themselves are `write.rs`'s, where the
//! atomic-write rule fixes their order (the old file is linked to its backup name before the
//! new one is renamed over it).
//!
//! DIR is the user's choice and may lie anywhere, outside the destination too: it is resolved
//! once (relative to the destination directory unless absolute, on the receiving side, as
//! rsync resolves it from the receiver's working directory), made with its parents by the
//! first backup that needs it, and opened by path once (following symlinks on the way to it,
//! as the destination's own path is followed). Below it every directory is reached from that
//! handle one component at a time with `O_NOFOLLOW`, the components being those of the
//! destination path of the entry (names that passed `pathsafe`), so a name from the wire
//! cannot climb out of DIR; a non-directory in the way (a planted symlink, say) is removed
//! and replaced by a directory, as rsync does, so nothing is ever written through it.

use crate::config::BackupRule;
use crate::error::{Error, show};
use crate::exit::ExitCode;
use crate::fs::{cstr, open_dir_at};
use crate::pathsafe::{check_name, join};
use rustix::fs::{AtFlags, Mode, OFlags, fchmod, fchown, fstat, mkdirat, unlinkat};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The run's backup rule, with the handles it needs.
pub struct Backup {
    suffix: Vec<u8>,
    dir: Option<BackupDir>,
    /// The destination root: a directory made below DIR takes the mode (and, as the
    /// super-user, the owner) of the destination directory it stands for, as in rsync.
    dest_root: OwnedFd,
}

struct BackupDir {
    /// DIR resolved against the destination directory.
    path: PathBuf,
    /// DIR as rsync's messages show it: as given, with one trailing slash.
    shown: String,
    /// Opened (and made) by the first backup that goes there; the OS error if that failed,
    /// for every backup after it.
    fd: OnceLock<Result<OwnedFd, i32>>,
}

impl Backup {
    /// The run's rule for the destination at `dest_path` (open as `dest_root`; `None` under
    /// `-n` before it exists): `None` without `-b`, or when nothing will be written. A DIR
    /// that exists but is not a directory is rsync's usage error, found before anything
    /// changes.
    pub fn open(
        rule: Option<&BackupRule>,
        dest_path: &Path,
        dest_root: Option<BorrowedFd<'_>>,
    ) -> Result<Option<Arc<Backup>>, Error> {
        let Some(rule) = rule else { return Ok(None) };
        let dir = match &rule.dir {
            None => None,
            Some(d) => {
                let path = if Path::new(d).is_absolute() {
                    PathBuf::from(d)
                } else {
                    dest_path.join(d)
                };
                let given = d.trim_end_matches('/');
                let given = if given.is_empty() { "/" } else { given };
                match std::fs::metadata(&path) {
                    Ok(m) if !m.is_dir() => {
                        return Err(Error::usage(format!(
                            "The backup-dir is not a directory: {given}"
                        )));
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::new(
                            ExitCode::FileIo,
                            format!("Failed to stat {given}: {e}"),
                        ));
                    }
                }
                let shown = if given == "/" {
                    given.to_string()
                } else {
                    format!("{given}/")
                };
                Some(BackupDir {
                    path,
                    shown,
                    fd: OnceLock::new(),
                })
            }
        };
        let Some(root) = dest_root else {
            return Ok(None);
        };
        let dest_root = rustix::io::dup(root).map_err(|e| {
            Error::io(
                ExitCode::FileIo,
                "open directory",
                dest_path.as_os_str().as_bytes(),
                &e.into(),
            )
        })?;
        Ok(Some(Arc::new(Backup {
            suffix: rule.suffix.as_bytes().to_vec(),
            dir,
            dest_root,
        })))
    }

    /// DIR's handle, made and opened the first time a backup goes there.
    fn dir_fd<'a>(&self, d: &'a BackupDir) -> io::Result<BorrowedFd<'a>> {
        let opened = d.fd.get_or_init(|| {
            let open = || -> io::Result<OwnedFd> {
                std::fs::create_dir_all(&d.path)?;
                Ok(rustix::fs::open(
                    &d.path,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?)
            };
            open().map_err(|e| e.raw_os_error().unwrap_or(Errno::IO.raw_os_error()))
        });
        match opened {
            Ok(fd) => Ok(fd.as_fd()),
            Err(n) => Err(io::Error::from_raw_os_error(*n)),
        }
    }

    /// The directory below DIR that stands for the destination directory `rel`, made as
    /// needed, each component opened without following a symlink.
    fn mirror(&self, root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
        let mut cur = rustix::io::dup(root)?;
        let mut like = rustix::io::dup(&self.dest_root).ok();
        for comp in crate::fs::components(rel) {
            check_name(comp)?;
            let c = cstr(comp)?;
            like = like.and_then(|d| open_dir_at(d.as_fd(), &c).ok());
            cur = sub_dir(cur.as_fd(), &c, like.as_ref())?;
        }
        Ok(cur)
    }
}

/// `name` in `parent` as a directory: opened if it is one; made (with the mode and, as the
/// super-user, the owner of `like`) if it is missing; made in place of anything else, which
/// is removed and never followed.
fn sub_dir(parent: BorrowedFd<'_>, name: &CStr, like: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let mut last = Errno::LOOP;
    // (Other writers may make or remove the same name meanwhile: a few rounds settle it.)
    for _ in 0..8 {
        match open_dir_at(parent, name) {
            Ok(fd) => return Ok(fd),
            Err(e) => match Errno::from_io_error(&e) {
                Some(Errno::NOENT) => match mkdirat(parent, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) => {
                        let fd = open_dir_at(parent, name)?;
                        if let Some(st) = like.and_then(|l| fstat(l).ok()) {
                            if rustix::process::geteuid().is_root() {
                                let _ = fchown(
                                    &fd,
                                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                                );
                            }
                            fchmod(&fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
                        }
                        return Ok(fd);
                    }
                    Err(Errno::EXIST) => last = Errno::EXIST,
                    Err(e) => return Err(e.into()),
                },
                // A symlink (ELOOP under O_NOFOLLOW) or another non-directory.
                Some(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                    last = e;
                    match unlinkat(parent, name, AtFlags::empty()) {
                        Ok(()) | Err(Errno::NOENT) | Err(Errno::ISDIR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => return Err(e),
            },
        }
    }
    Err(last.into())
}

/// One entry's backup: the entry's path below the destination root, and the run's rule.
#[derive(Clone)]
pub struct Keep {
    backup: Arc<Backup>,
    rel: Vec<u8>,
}

impl Keep {
    pub fn new(backup: &Arc<Backup>, rel: &[u8]) -> Keep {
        Keep {
            backup: backup.clone(),
            rel: rel.to_vec(),
        }
    }

    /// The backup of `name` inside this entry (a directory being deleted).
    pub fn child(&self, name: &[u8]) -> Keep {
        Keep {
            backup: self.backup.clone(),
            rel: join(&self.rel, name),
        }
    }

    /// Backups land beside their entries (no DIR), so a directory they are made in stays.
    pub fn beside(&self) -> bool {
        self.backup.dir.is_none()
    }

    /// Whether the entry is itself a backup, which a deletion removes without backing it
    /// up (rsync's rule: without a DIR, a path that ends in the suffix).
    pub fn is_backup(&self) -> bool {
        let s = &self.backup.suffix;
        self.beside() && self.rel.len() > s.len() && self.rel.ends_with(s)
    }

    fn split(&self) -> (&[u8], &[u8]) {
        match self.rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self.rel[..i], &self.rel[i + 1..]),
            None => (&b""[..], &self.rel[..]),
        }
    }

    /// Where the backup goes: the directory (None: the entry's own) and the name in it,
    /// the directories below DIR made as needed.
    pub fn place(&self) -> io::Result<(Option<OwnedFd>, CString)> {
        let (parent, leaf) = self.split();
        let mut name = leaf.to_vec();
        name.extend_from_slice(&self.backup.suffix);
        check_name(&name).map_err(|_| io::Error::from(Errno::NAMETOOLONG))?;
        let c = cstr(&name)?;
        match &self.backup.dir {
            None => Ok((None, c)),
            Some(d) => {
                let root = self.backup.dir_fd(d)?;
                Ok((Some(self.backup.mirror(root, parent)?), c))
            }
        }
    }

    /// rsync's `-vv` line for a backup made.
    pub fn message(&self) -> String {
        let mut to = self.rel.clone();
        to.extend_from_slice(&self.backup.suffix);
        let dir = self.backup.dir.as_ref().map_or("", |d| d.shown.as_str());
        format!("backed up {} to {dir}{}", show(&self.rel), show(&to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(dir: Option<&str>, suffix: &str, dest: &Path) -> Arc<Backup> {
        let root = std::fs::File::open(dest).expect("open dest");
        let rule = BackupRule {
            dir: dir.map(str::to_string),
            suffix: suffix.to_string(),
        };
        Backup::open(Some(&rule), dest, Some(root.as_fd()))
            .expect("open")
            .expect("a rule")
    }

    #[test]
    fn names_follow_rsync() {
        let top = tempfile::tempdir().expect("tempdir");
        let b = backup(None, "~", top.path());
        let k = Keep::new(&b, b"d/f");
        assert!(k.beside() && !k.is_backup());
        assert!(Keep::new(&b, b"d/f~").is_backup());
        assert!(!Keep::new(&b, b"~").is_backup());
        let (dir, name) = k.place().expect("place");
        assert!(dir.is_none());
        assert_eq!(name.as_bytes(), b"f~");
        assert_eq!(k.message(), "backed up d/f to d/f~");
        let b = backup(Some("bak"), "", top.path());
        let k = Keep::new(&b, b"d/f");
        assert!(!k.beside() && !Keep::new(&b, b"x~").is_backup());
        assert_eq!(k.message(), "backed up d/f to bak/d/f");
    }

    /// A symlink planted below DIR, where a backup's directory belongs, is replaced by a
    /// directory: the backup never lands where the link points.
    #[test]
    fn a_symlink_in_the_backup_dir_is_replaced_not_followed() {
        let top = tempfile::tempdir().expect("tempdir");
        let (dest, outside) = (top.path().join("dest"), top.path().join("outside"));
        std::fs::create_dir_all(dest.join("d")).expect("mkdir dest/d");
        std::fs::create_dir_all(dest.join("bak")).expect("mkdir bak");
        std::fs::create_dir(&outside).expect("mkdir outside");
        std::os::unix::fs::symlink(&outside, dest.join("bak/d")).expect("symlink");
        let b = backup(Some("bak"), "", &dest);
        let (dir, name) = Keep::new(&b, b"d/f").place().expect("place");
        let dir = dir.expect("a directory below DIR");
        std::fs::write(
            format!(
                "/proc/self/fd/{}/{}",
                std::os::fd::AsRawFd::as_raw_fd(&dir),
                name.to_str().expect("utf8")
            ),
            b"kept",
        )
        .expect("write through the handle");
        assert!(
            std::fs::symlink_metadata(dest.join("bak/d"))
                .expect("bak/d")
                .is_dir()
        );
        assert_eq!(std::fs::read(dest.join("bak/d/f")).expect("read"), b"kept");
        assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    }

    #[test]
    fn a_dir_that_is_a_file_is_refused_before_anything_changes() {
        let top = tempfile::tempdir().expect("tempdir");
        std::fs::write(top.path().join("f"), b"").expect("write");
        let root = std::fs::File::open(top.path()).expect("open");
        let rule = BackupRule {
            dir: Some("f".into()),
            suffix: String::new(),
        };
        let e = Backup::open(Some(&rule), top.path(), Some(root.as_fd()))
            .err()
            .expect("refused");
        assert_eq!(e.code, ExitCode::Usage);
        assert_eq!(e.message(), "The backup-dir is not a directory: f");
    }
}
