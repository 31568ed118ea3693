//! `--fake-super`: what only the super-user may set, kept where any user may write it, in
//! rsync's own format, so that trees written by either tool read back alike.
//!
//! A receiver with the option sets no owner and makes no device, fifo, socket or symlink:
//! each entry is a plain file or directory whose own permission bits are the wanted ones
//! with the owner's read and write (and, for a directory, search) added, and the rest goes
//! into one attribute, `user.rsync.%stat`, as `MODE MAJOR,MINOR UID:GID` (the full mode in
//! octal with its type bits). A symlink is a file holding its target; a node is an empty
//! file. Where the plain entry already says everything, the attribute is removed. A scan
//! with the option (the sender's, and the receiver's of its own tree) reads the attribute
//! back in place of what the file system says.
//!
//! As in rsync, the option is each end's own: a local copy has it at both ends, a push at
//! the sending client, a pull at the receiving client (`--xsync-path='xsync --fake-super'`
//! gives it to the server).

use crate::tree::{Kind, Meta};
use crate::xattr::At;
use rustix::io::Errno;
use std::ffi::CStr;
use std::os::fd::BorrowedFd;

/// The attribute's name (rsync's `XSTAT_ATTR` on Linux).
pub const NAME: &CStr = c"user.rsync.%stat";

/// What the attribute holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The whole mode: type bits and the twelve permission bits.
    pub mode: u32,
    pub major: u32,
    pub minor: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Stat {
    /// Reads rsync's `%o %d,%d %d:%d` as its `sscanf` does: blanks allowed before each
    /// number and wherever the format has one, anything after the last number ignored.
    pub fn parse(v: &[u8]) -> Option<Stat> {
        let mut at = 0;
        let blanks = |at: &mut usize| {
            while v.get(*at).is_some_and(u8::is_ascii_whitespace) {
                *at += 1;
            }
        };
        let number = |at: &mut usize, radix: u32| -> Option<u32> {
            blanks(at);
            let neg = v.get(*at) == Some(&b'-');
            if neg || v.get(*at) == Some(&b'+') {
                *at += 1;
            }
            let digits = v[*at..]
                .iter()
                .take_while(|b| char::from(**b).is_digit(radix))
                .count();
            if digits == 0 {
                return None;
            }
            let text = std::str::from_utf8(&v[*at..*at + digits]).ok()?;
            let n = i64::from_str_radix(text, radix).ok()?;
            *at += digits;
            // (%d into an int: -1 is uid 4294967295, as rsync stores it.)
            let n = if neg { -n } else { n };
            i32::try_from(n)
                .map(|n| n as u32)
                .or_else(|_| u32::try_from(n))
                .ok()
        };
        let literal =
            |at: &mut usize, c: u8| -> Option<()> { (v.get(*at) == Some(&c)).then(|| *at += 1) };
        let mode = number(&mut at, 8)?;
        let major = number(&mut at, 10)?;
        literal(&mut at, b',')?;
        let minor = number(&mut at, 10)?;
        let uid = number(&mut at, 10)?;
        literal(&mut at, b':')?;
        let gid = number(&mut at, 10)?;
        Some(Stat {
            mode,
            major,
            minor,
            uid,
            gid,
        })
    }

    /// rsync's `%o %u,%u %u:%u`.
    pub fn format(&self) -> String {
        format!(
            "{:o} {},{} {}:{}",
            self.mode, self.major, self.minor, self.uid, self.gid
        )
    }

    /// What the entry is, as a scan presents it: the kind the attribute names (a stored
    /// kind a plain entry cannot stand for, as a directory for a file, is ignored), its
    /// permission bits, device number and owner.
    pub fn present(&self, on_disk: &Meta) -> Meta {
        let stored = Kind::from_mode(self.mode);
        let kind = match (on_disk.kind, stored) {
            (Kind::Dir, _) | (_, Kind::Dir) => on_disk.kind,
            (_, k) => k,
        };
        Meta {
            kind,
            mode: self.mode & 0o7777,
            rdev: if kind.is_device() {
                rustix::fs::makedev(self.major, self.minor)
            } else {
                0
            },
            size: if matches!(kind, Kind::File | Kind::Symlink) {
                on_disk.size
            } else {
                0
            },
            uid: self.uid,
            gid: self.gid,
            ..*on_disk
        }
    }
}

/// Why an entry's attribute could not be used.
#[derive(Debug)]
pub enum ReadError {
    /// The file system refused the read (the OS error).
    Os(Errno),
    /// Not rsync's format: the value, for rsync's "Corrupt … xattr" message.
    Corrupt(String),
}

/// The attribute at `at`, if it has one. A file system without user attributes has none.
pub fn read(at: At<'_>) -> Result<Option<Stat>, ReadError> {
    match crate::xattr::get_value(at, NAME, false) {
        Ok(None) | Err(Errno::NOTSUP) => Ok(None),
        Ok(Some(v)) => match Stat::parse(&v) {
            Some(s) => Ok(Some(s)),
            None => Err(ReadError::Corrupt(String::from_utf8_lossy(&v).into_owned())),
        },
        Err(e) => Err(ReadError::Os(e)),
    }
}

/// A symlink's target, as a fake one holds it: the file's content (at most `PATH_MAX`).
pub fn read_target(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// What rsync's receiver leaves on an open plain file or directory that stands for an
/// entry of `kind` with permission bits `perms`, device `rdev` and owner `uid`:`gid` (None:
/// the plain entry's own, as when `-o`/`-g` do not apply): its own bits set to `perms`
/// with the owner's access added, and the attribute written where they, the type, the
/// device or the owner say less than that, removed where they say it all.
pub fn store(
    fd: BorrowedFd<'_>,
    kind: Kind,
    perms: u32,
    rdev: u64,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), (&'static str, Errno)> {
    const IFMT: u32 = 0o170000;
    let st = rustix::fs::fstat(fd).map_err(|e| ("stat", e))?;
    let on_disk_dir = Kind::from_mode(st.st_mode) == Kind::Dir;
    let plain = (st.st_mode & IFMT) | (perms & 0o777) | if on_disk_dir { 0o700 } else { 0o600 };
    if st.st_mode & (IFMT | 0o7777) != plain {
        rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(plain & 0o7777))
            .map_err(|e| ("change mode of", e))?;
    }
    let want = Stat {
        mode: kind.type_bits() | (perms & 0o7777),
        major: if kind.is_device() {
            rustix::fs::major(rdev)
        } else {
            0
        },
        minor: if kind.is_device() {
            rustix::fs::minor(rdev)
        } else {
            0
        },
        uid: uid.unwrap_or(st.st_uid),
        gid: gid.unwrap_or(st.st_gid),
    };
    // (A corrupt value is simply not the wanted one.)
    let have = read(At::Fd(fd)).ok().flatten();
    let says_it_all = plain == want.mode
        && want.major == 0
        && want.minor == 0
        && st.st_uid == want.uid
        && st.st_gid == want.gid;
    if says_it_all {
        if have.is_some() {
            crate::xattr::remove_value(At::Fd(fd), NAME)
                .map_err(|e| ("remove user.rsync.%stat from", e))?;
        }
        return Ok(());
    }
    if have != Some(want) {
        crate::xattr::set_value(At::Fd(fd), NAME, want.format().as_bytes())
            .map_err(|e| ("store user.rsync.%stat on", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_values_read_and_write_as_rsyncs() {
        let s = Stat::parse(b"104755 0,0 1:2").unwrap();
        assert_eq!(
            s,
            Stat {
                mode: 0o104755,
                major: 0,
                minor: 0,
                uid: 1,
                gid: 2
            }
        );
        assert_eq!(s.format(), "104755 0,0 1:2");
        let dev = Stat::parse(b"20644 1,3 0:0").unwrap();
        assert_eq!((dev.major, dev.minor), (1, 3));
        // sscanf's leniency: blanks before numbers, trailing text.
        assert_eq!(
            Stat::parse(b" 40755  0, 0  3:  3\n"),
            Some(Stat {
                mode: 0o40755,
                major: 0,
                minor: 0,
                uid: 3,
                gid: 3
            })
        );
        assert_eq!(
            Stat::parse(b"100644 0,0 -1:5").map(|s| s.uid),
            Some(u32::MAX)
        );
        for bad in [
            &b""[..],
            b"100644",
            b"100644 0 0 1:2",
            b"9 0,0 1:2",
            b"100644 0,0 1 2",
            b"x",
        ] {
            assert_eq!(Stat::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_stored_kind_a_plain_entry_cannot_be_is_ignored() {
        let file = Meta {
            kind: Kind::File,
            size: 9,
            ..crate::tree::virtual_dir_meta()
        };
        let link = Stat::parse(b"120777 0,0 0:0").unwrap().present(&file);
        assert_eq!((link.kind, link.mode, link.size), (Kind::Symlink, 0o777, 9));
        let dev = Stat::parse(b"60640 8,1 0:6").unwrap().present(&file);
        assert_eq!(
            (dev.kind, dev.rdev, dev.size, dev.gid),
            (Kind::BlockDev, rustix::fs::makedev(8, 1), 0, 6)
        );
        assert_eq!(
            Stat::parse(b"40755 0,0 0:0").unwrap().present(&file).kind,
            Kind::File
        );
        let dir = crate::tree::virtual_dir_meta();
        assert_eq!(
            Stat::parse(b"100600 0,0 7:7").unwrap().present(&dir).kind,
            Kind::Dir
        );
    }
}
