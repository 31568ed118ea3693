//! The file-system layer's opening rule: a path below a root is opened so that no symlink
//! on the way is followed and nothing above the root is reached, whatever a concurrent
//! process does to the tree between our scan and our open.
//!
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` makes the kernel enforce it in
//! one call; where the kernel lacks `openat2` (before 5.6, or a seccomp filter that
//! refuses it) the same rule is a walk of `O_NOFOLLOW` opens, one component at a time.
//! Only a component the caller names as followed (the sender's `-L`/`-k`/
//! `--copy-unsafe-links` entries, which the scan resolved on purpose) is opened through a
//! link, and then only that component.

use rustix::fs::{Mode, OFlags, ResolveFlags, openat, openat2};
use rustix::io::Errno;
use std::ffi::CStr;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// `--open-noatime`, set once for the process (which is one run, on either end).
static NOATIME: AtomicBool = AtomicBool::new(false);

/// `--open-noatime`: files opened for reading from here on leave their access times alone.
pub fn set_open_noatime(on: bool) {
    NOATIME.store(on, Ordering::Relaxed);
}

/// Opens a file for reading with `open(flags)`, with `O_NOATIME` under `--open-noatime`;
/// where the kernel refuses it (EPERM: a file the user does not own, without CAP_FOWNER)
/// it opens the file without it, as the file's atime is then the kernel's to keep.
pub fn open_for_reading(
    open: impl Fn(OFlags) -> io::Result<OwnedFd>,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    if !NOATIME.load(Ordering::Relaxed) {
        return open(flags);
    }
    match open(flags | OFlags::NOATIME) {
        Err(e) if e.raw_os_error() == Some(Errno::PERM.raw_os_error()) => open(flags),
        r => r,
    }
}

/// Opens `path` (relative, `/`-separated, already checked) below `root` with `flags`,
/// following no symlink anywhere on the way. A symlink met is ELOOP (or ENOTDIR), never
/// followed.
pub fn open_beneath(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match openat2(
        root,
        c.as_c_str(),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    ) {
        // No openat2 here, or a rename elsewhere made the kernel unsure (it then asks to
        // retry): the per-component walk gives the same guarantee.
        Err(Errno::NOSYS | Errno::PERM | Errno::AGAIN | Errno::INVAL) => {
            let comps: Vec<(&[u8], bool)> = components(path).map(|c| (c, false)).collect();
            open_walk(root, &comps, flags)
        }
        r => Ok(r?),
    }
}

/// The walk: each component opened from its parent's handle with `O_NOFOLLOW`, except
/// those marked `true` (followed on purpose). Directories on the way are opened
/// `O_DIRECTORY`; the last component takes `flags`.
pub fn open_walk(
    root: BorrowedFd<'_>,
    comps: &[(&[u8], bool)],
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let mut cur = rustix::io::dup(root)?;
    for (i, (name, follow)) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let c = CString::new(*name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut f = if last {
            flags
        } else {
            OFlags::RDONLY | OFlags::DIRECTORY
        } | OFlags::CLOEXEC;
        if !follow {
            f |= OFlags::NOFOLLOW;
        }
        cur = openat(cur.as_fd(), c.as_c_str(), f, Mode::empty())?;
    }
    Ok(cur)
}

/// A relative path's components, without empty ones and `.`.
pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// Opens a directory for reading entries and for `*at()` calls below it, never through a
/// symlink.
pub fn open_dir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a followed directory link: the only directory open on purpose through a symlink.
pub fn open_dir_following(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `-K`: a destination symlink that the scan found (so it was there before the run) opened
/// as the directory it points to, resolved from the destination's root: links on the way
/// are followed, but the kernel refuses every step out of the root (`..` past it, an
/// absolute target: EXDEV) and /proc's magic links. The one place a destination link is
/// followed. Without openat2 the link is not followed at all (EXDEV), since a walk by hand
/// could not keep the same promise against a concurrent rename.
pub fn open_dirlink_beneath(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    let c = cstr(rel)?;
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    for _ in 0..8 {
        match openat2(root, c.as_c_str(), flags, Mode::empty(), how) {
            // A rename elsewhere made the kernel unsure: ask again.
            Err(Errno::AGAIN) => continue,
            Err(Errno::NOSYS | Errno::PERM) => break,
            r => return Ok(r?),
        }
    }
    Err(io::Error::from_raw_os_error(Errno::XDEV.raw_os_error()))
}

/// A name as the `*at()` calls take it (a NUL in it is refused).
pub fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

/// Opens a file for reading (a source file, or a receiver's delta basis): through the link
/// only when the scan followed it, so a symlink swapped in since the scan is not followed.
pub fn open_file_at(dirfd: BorrowedFd<'_>, c: &CStr, followed: bool) -> io::Result<OwnedFd> {
    let nofollow = if followed {
        OFlags::empty()
    } else {
        OFlags::NOFOLLOW
    };
    open_for_reading(
        |flags| Ok(openat(dirfd, c, flags, Mode::empty())?),
        OFlags::RDONLY | nofollow | OFlags::CLOEXEC,
    )
}

/// Which side of a copy failed: reading the source, or writing (an in-kernel copy's error
/// counts as a write, as the destination is where it usually comes from).
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// The one copy with fallback, shared by the writer and the delta applier: up to `len`
/// bytes of `src` at `from` go to `dst` at `to`, in the kernel with `copy_file_range`
/// (which reflinks where the file system can) while `in_kernel` holds, else through `buf`
/// with pread/pwrite. A refusal (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP) clears `in_kernel`, so
/// the caller does not probe again; offsets are explicit, so the fallback takes over
/// mid-range. Returns the bytes copied: fewer than `len` only where `src` ends.
pub fn copy_range(
    src: BorrowedFd<'_>,
    mut from: u64,
    dst: BorrowedFd<'_>,
    mut to: u64,
    len: u64,
    in_kernel: &mut bool,
    buf: &mut Vec<u8>,
) -> Result<u64, CopyError> {
    let mut done = 0u64;
    while done < len && *in_kernel {
        let chunk = (len - done).min(1 << 30) as usize;
        let (mut f, mut t) = (from, to);
        match rustix::fs::copy_file_range(src, Some(&mut f), dst, Some(&mut t), chunk) {
            Ok(0) => return Ok(done),
            Ok(n) => {
                (from, to, done) = (from + n as u64, to + n as u64, done + n as u64);
            }
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => *in_kernel = false,
            Err(e) => return Err(CopyError::Write(e.into())),
        }
    }
    if done < len && buf.is_empty() {
        buf.resize(256 * 1024, 0);
    }
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = match rustix::io::pread(src, &mut buf[..want], from) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(CopyError::Read(e.into())),
        };
        let mut data = &buf[..n];
        let mut at = to;
        while !data.is_empty() {
            match rustix::io::pwrite(dst, data, at) {
                Ok(0) => return Err(CopyError::Write(io::ErrorKind::WriteZero.into())),
                Ok(k) => {
                    data = &data[k..];
                    at += k as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(CopyError::Write(e.into())),
            }
        }
        (from, to, done) = (from + n as u64, to + n as u64, done + n as u64);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory on the way swapped for a symlink to a directory outside the root is not
    /// followed, by openat2 nor by the walk; a followed component named by the caller is.
    #[test]
    fn no_symlink_on_the_way_is_followed_unless_named() {
        let top = tempfile::tempdir().expect("tempdir");
        let (root, outside) = (top.path().join("root"), top.path().join("outside"));
        std::fs::create_dir_all(root.join("d")).expect("mkdir");
        std::fs::create_dir(&outside).expect("mkdir outside");
        std::fs::write(root.join("d/f"), b"inside").expect("write");
        std::fs::write(outside.join("f"), b"secret").expect("write");
        let rootfd = std::fs::File::open(&root).expect("open root");
        let read = |fd: OwnedFd| {
            std::fs::read_to_string(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ))
            .expect("read")
        };

        let fd = open_beneath(rootfd.as_fd(), b"d/f", OFlags::RDONLY).expect("open d/f");
        assert_eq!(read(fd), "inside");

        std::fs::rename(root.join("d"), root.join("d.old")).expect("rename");
        std::os::unix::fs::symlink(&outside, root.join("d")).expect("symlink");
        let e = open_beneath(rootfd.as_fd(), b"d/f", OFlags::RDONLY).expect_err("followed d");
        assert_eq!(e.raw_os_error(), Some(Errno::LOOP.raw_os_error()), "{e}");
        let e = open_walk(
            rootfd.as_fd(),
            &[(b"d", false), (b"f", false)],
            OFlags::RDONLY,
        )
        .expect_err("walk followed d");
        assert!(
            [Errno::LOOP.raw_os_error(), Errno::NOTDIR.raw_os_error()]
                .contains(&e.raw_os_error().unwrap_or(0)),
            "{e}"
        );
        let e = open_beneath(rootfd.as_fd(), b"../outside/f", OFlags::RDONLY).expect_err("..");
        assert_eq!(e.raw_os_error(), Some(Errno::XDEV.raw_os_error()), "{e}");
        // -L/-k: the caller names the followed component.
        let fd = open_walk(
            rootfd.as_fd(),
            &[(b"d", true), (b"f", false)],
            OFlags::RDONLY,
        )
        .expect("named follow");
        assert_eq!(read(fd), "secret");
    }
}
