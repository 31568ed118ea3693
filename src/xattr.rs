//! `-X`: extended attributes, with rsync's rules for which names take part.
//!
//! rsync copies every name but `system.*` (ACLs, which are `-A`'s: acl.rs reads and writes
//! them through [`get_value`] and kin), and a receiver that is not the super-user touches
//! only `user.*` (the kernel refuses it the others). Which names count is a [`Scope`]; the
//! digests, the planner and the writer all ask it, so what is compared is exactly what can
//! be set and removed.
//!
//! Names are read and set relative to a directory handle without following a symlink: the
//! `l*` calls on `/proc/self/fd/N/NAME` (Linux has no `*xattrat` before 6.13), or the `f*`
//! calls where the file is already open. Only a run with `-X` pays for any of it.

use rustix::fs::XattrFlags;
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Attributes a peer may send per entry, and their sizes. Linux allows one value of 64 KiB
/// and names of 255 bytes; ext4 keeps all of a file's attributes in one 4 KiB block, so
/// these bounds are far above what a real file carries.
pub const MAX_COUNT: usize = 1024;
pub const MAX_NAME: usize = 255;
pub const MAX_VALUE: usize = 64 * 1024;

/// One attribute: its full name (`user.foo`) and value.
pub type Xattr = (Box<[u8]>, Box<[u8]>);

/// One entry's attributes, sorted by name (so two sides' lists compare and hash alike).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Xattrs(pub Vec<Xattr>);

/// Which names a side reads, compares and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `trusted.*` and `security.*` too (the super-user's rsync); else `user.*` only.
    pub all: bool,
}

impl Scope {
    pub fn covers(self, name: &[u8]) -> bool {
        // rsync keeps its own `--fake-super` names (`user.rsync.%stat`, …) to `-XX`.
        (name.starts_with(b"user.") && !name.starts_with(b"user.rsync.%"))
            || (self.all && (name.starts_with(b"trusted.") || name.starts_with(b"security.")))
    }
}

/// Whether a name from the peer is one any side could copy (never `system.*`, never an
/// unknown namespace, a sane length, no NUL).
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.contains(&0)
        && [&b"user."[..], b"trusted.", b"security."]
            .iter()
            .any(|p| name.starts_with(p) && name.len() > p.len())
}

impl Xattrs {
    fn covered(&self, scope: Scope) -> impl Iterator<Item = &Xattr> {
        self.0.iter().filter(move |(n, _)| scope.covers(n))
    }
}

/// Equal within `scope` (no attributes and an empty list are the same).
pub fn same(a: Option<&Xattrs>, b: Option<&Xattrs>, scope: Scope) -> bool {
    let empty = Xattrs::default();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.covered(scope).eq(b.covered(scope))
}

/// Feeds the attributes within `scope` to a digest.
pub fn hash(h: &mut xxhash_rust::xxh3::Xxh3, x: Option<&Xattrs>, scope: Scope) {
    let Some(x) = x else {
        h.update(&0u64.to_le_bytes());
        return;
    };
    h.update(&(x.covered(scope).count() as u64).to_le_bytes());
    for (n, v) in x.covered(scope) {
        h.update(&(n.len() as u64).to_le_bytes());
        h.update(n);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
}

/// `/proc/self/fd/N/NAME`: a path to `name` in `dir` for the `l*` calls, which then do not
/// follow `name` itself if it is a symlink (and `dir` is already open, so no other
/// component is resolved again).
fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    // Neither part can hold a NUL.
    CString::new(p).unwrap_or_default()
}

/// Where attributes are read and written: an open file, or a name in a directory.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Fd(BorrowedFd<'a>),
    Name(BorrowedFd<'a>, &'a CStr),
}

/// Runs `call` with a 4 KiB buffer (one system call for the usual entry), then with the
/// size `query` reports if that was too small.
fn sized(
    call: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
    query: impl Fn() -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut small = [0u8; 4096];
    match call(&mut small) {
        Ok(n) => return Ok(small[..n].to_vec()),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e),
    }
    loop {
        let mut buf = vec![0u8; query()?.max(1)];
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Grew between the calls.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn list(at: At<'_>, path: &CStr) -> rustix::io::Result<Vec<u8>> {
    match at {
        At::Fd(fd) => sized(
            |b| rustix::fs::flistxattr(fd, b),
            || rustix::fs::flistxattr_query(fd),
        ),
        At::Name(..) => sized(
            |b| rustix::fs::llistxattr(path, b),
            || rustix::fs::llistxattr_query(path),
        ),
    }
}

fn get(at: At<'_>, path: &CStr, name: &CStr) -> rustix::io::Result<Vec<u8>> {
    match at {
        At::Fd(fd) => sized(
            |b| rustix::fs::fgetxattr(fd, name, b),
            || rustix::fs::fgetxattr_query(fd, name),
        ),
        At::Name(..) => sized(
            |b| rustix::fs::lgetxattr(path, name, b),
            || rustix::fs::lgetxattr_query(path, name),
        ),
    }
}

fn path_of(at: At<'_>) -> CString {
    match at {
        At::Fd(_) => CString::default(),
        At::Name(dir, name) => proc_path(dir, name),
    }
}

/// One attribute's value, `None` where `at` has no such name. `follow`: through a final
/// symlink (a sender's `-L` entry; the `l*` calls otherwise). For `-A`'s `system.*` names.
pub fn get_value(at: At<'_>, name: &CStr, follow: bool) -> Result<Option<Vec<u8>>, Errno> {
    let path = path_of(at);
    let r = match at {
        At::Name(..) if follow => sized(
            |b| rustix::fs::getxattr(&path, name, b),
            || rustix::fs::getxattr_query(&path, name),
        ),
        _ => get(at, &path, name),
    };
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Errno::NODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets one attribute (never following a final symlink).
pub fn set_value(at: At<'_>, name: &CStr, value: &[u8]) -> Result<(), Errno> {
    match at {
        At::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
        At::Name(..) => rustix::fs::lsetxattr(path_of(at), name, value, XattrFlags::empty()),
    }
}

/// Removes one attribute; one already gone is no error.
pub fn remove_value(at: At<'_>, name: &CStr) -> Result<(), Errno> {
    let r = match at {
        At::Fd(fd) => rustix::fs::fremovexattr(fd, name),
        At::Name(..) => rustix::fs::lremovexattr(path_of(at), name),
    };
    match r {
        Err(Errno::NODATA) => Ok(()),
        r => r,
    }
}

/// The attributes of `at` within `scope`; `None` when it has none. A file system without
/// attributes has none (EOPNOTSUPP), as rsync reads it.
pub fn read(at: At<'_>, scope: Scope) -> io::Result<Option<Box<Xattrs>>> {
    let path = path_of(at);
    let names = match list(at, &path) {
        Ok(n) => n,
        Err(Errno::OPNOTSUPP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for n in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !scope.covers(n) {
            continue;
        }
        let c = CString::new(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        match get(at, &path, &c) {
            Ok(v) => out.push((Box::<[u8]>::from(n), v.into_boxed_slice())),
            // Removed since the listing.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(Box::new(Xattrs(out))))
}

/// Makes the attributes of `at` within `scope` equal to `want`: sets what differs, removes
/// what `want` lacks, leaves names outside the scope alone. The first failure is returned
/// after trying the rest, so one refused name does not keep the others from being copied.
pub fn apply(at: At<'_>, want: Option<&Xattrs>, scope: Scope) -> Result<(), Errno> {
    let have = match read(at, scope) {
        Ok(h) => h,
        Err(e) => return Err(Errno::from_io_error(&e).unwrap_or(Errno::IO)),
    };
    let empty = Xattrs::default();
    let (want, have) = (want.unwrap_or(&empty), have.as_deref().unwrap_or(&empty));
    let path = path_of(at);
    let mut first: Option<Errno> = None;
    for (n, v) in want.covered(scope) {
        if have.0.iter().any(|(hn, hv)| hn == n && hv == v) {
            continue;
        }
        let Ok(c) = CString::new(&n[..]) else {
            continue;
        };
        let r = match at {
            At::Fd(fd) => rustix::fs::fsetxattr(fd.as_fd(), &c, v, XattrFlags::empty()),
            At::Name(..) => rustix::fs::lsetxattr(&path, &c, v, XattrFlags::empty()),
        };
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    for (n, _) in have.covered(scope) {
        if want.0.iter().any(|(wn, _)| wn == n) {
            continue;
        }
        let Ok(c) = CString::new(&n[..]) else {
            continue;
        };
        let r = match at {
            At::Fd(fd) => rustix::fs::fremovexattr(fd.as_fd(), &c),
            At::Name(..) => rustix::fs::lremovexattr(&path, &c),
        };
        match r {
            Ok(()) | Err(Errno::NODATA) => {}
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_peer_names_follow_rsyncs_namespaces() {
        let (user, root) = (Scope { all: false }, Scope { all: true });
        assert!(user.covers(b"user.a") && !user.covers(b"trusted.a"));
        assert!(!root.covers(b"user.rsync.%stat") && root.covers(b"user.rsync.other"));
        assert!(!user.covers(b"security.selinux") && root.covers(b"security.selinux"));
        assert!(root.covers(b"trusted.a") && !root.covers(b"system.posix_acl_access"));
        for bad in [
            &b"system.posix_acl_access"[..],
            b"user.",
            b"",
            b"other.x",
            b"user.a\0b",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(!valid_name(&[b'u'; 256]));
        assert!(valid_name(b"user.a") && valid_name(b"security.capability"));
    }

    #[test]
    fn equality_and_digests_see_only_the_scope() {
        let x = |v: &[(&[u8], &[u8])]| {
            Xattrs(v.iter().map(|(n, v)| ((*n).into(), (*v).into())).collect())
        };
        let a = x(&[(b"trusted.t", b"1"), (b"user.a", b"1")]);
        let b = x(&[(b"user.a", b"1")]);
        let user = Scope { all: false };
        assert!(same(Some(&a), Some(&b), user));
        assert!(!same(Some(&a), Some(&b), Scope { all: true }));
        assert!(same(None, Some(&x(&[(b"trusted.t", b"1")])), user));
        let d = |v: Option<&Xattrs>| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            hash(&mut h, v, user);
            h.digest128()
        };
        assert_eq!(d(Some(&a)), d(Some(&b)));
        assert_ne!(d(Some(&b)), d(None));
    }
}
