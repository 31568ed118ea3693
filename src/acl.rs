//! `-A`: POSIX ACLs (the access ACL of every file and directory, the default ACL of
//! directories), with rsync's rules for what is compared and carried.
//!
//! An access ACL repeats the mode: its owner, mask (or group) and other entries *are* the
//! permission bits, which `-p` (implied by `-A`) already carries. So, as rsync, only what
//! the mode cannot say is kept: whether the ACL is extended at all, the owning group's own
//! entry (the mode's group bits are the mask then), and the named user and group entries.
//! Two files whose ACLs differ only as their modes do are equal here and the mode shows
//! the difference (`p`); anything else is an ACL difference (`a`). A default ACL says
//! nothing the mode says, so it is kept whole.
//!
//! ACLs are read and written as the kernel keeps them, the `system.posix_acl_access` and
//! `system.posix_acl_default` attributes in their stable binary form, through the same
//! handles as `-X` ([`crate::xattr::At`]: the open temporary, or a name in an open
//! directory, never following it). That needs no libacl (at build or run time), and no
//! call of it can be handed a path that someone swaps: libacl's `acl_set_fd` is the same
//! `fsetxattr`, and its path calls would resolve the whole path again. rsync 3.5 does the
//! same on Linux. A file system without ACLs reads as mode-only ACLs everywhere, as rsync
//! reads it; setting an ACL there fails, and the file is still put in place (exit 23).

use crate::xattr::At;

/// What an ACL is on, as far as a peer's ACLs are checked ([`Acls::check`]): named here
/// rather than as the tree's kinds, since the tree holds an entry's ACLs and so sits above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Dir,
    Symlink,
    /// A regular file, device or special file: an access ACL only.
    Other,
}
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::ffi::CStr;
use std::io;

const ACCESS: &CStr = c"system.posix_acl_access";
const DEFAULT: &CStr = c"system.posix_acl_default";

/// Named entries a peer may send per ACL: what fits in one 64 KiB attribute value (Linux's
/// limit), far above what a file system keeps (ext4: about 500).
pub const MAX_NAMED: usize = (crate::xattr::MAX_VALUE - 4) / 8 - 4;

/// Whom a named entry is for. Users sort before groups, each by id: the kernel's order,
/// so two sides' lists compare and hash alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Who {
    User(u32),
    Group(u32),
}

/// A named user or group entry: its `rwx` bits (0..=7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    pub who: Who,
    pub perm: u8,
}

/// An extended access ACL, less what the mode says: the owning group's entry, and the
/// named entries. (Its mask is the mode's group bits.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub group: u8,
    pub named: Vec<Named>,
}

/// A directory's default ACL, whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultAcl {
    pub user: u8,
    pub group: u8,
    pub mask: Option<u8>,
    pub other: u8,
    pub named: Vec<Named>,
}

/// One entry's ACLs beyond its mode. An entry whose ACLs the mode says entirely has none
/// (`Entry::acls` is `None`), so a run over ordinary files pays one word per entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acls {
    /// `None`: the access ACL is the mode.
    pub access: Option<Access>,
    /// Directories only; `None`: no default ACL.
    pub default: Option<DefaultAcl>,
}

/// An ACL as the kernel keeps it, in entries.
#[derive(Debug, PartialEq, Eq)]
struct Full {
    user: u8,
    group: u8,
    mask: Option<u8>,
    other: u8,
    named: Vec<Named>,
}

const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;
const VERSION: u32 = 2;
const NO_ID: u32 = u32::MAX;

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed ACL: {why}"))
}

/// The kernel's binary form (`posix_acl_xattr_header` then `posix_acl_xattr_entry`s, all
/// little-endian) into entries, sorted.
fn parse(raw: &[u8]) -> io::Result<Full> {
    if raw.len() < 4 || !(raw.len() - 4).is_multiple_of(8) {
        return Err(bad("bad length"));
    }
    if u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) != VERSION {
        return Err(bad("unknown version"));
    }
    let (mut user, mut group, mut mask, mut other) = (None, None, None, None);
    let mut named = Vec::new();
    for e in raw[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let perm = u8::try_from(perm)
            .ok()
            .filter(|p| *p <= 7)
            .ok_or_else(|| bad("permission bits"))?;
        let slot = match tag {
            TAG_USER_OBJ => &mut user,
            TAG_GROUP_OBJ => &mut group,
            TAG_MASK => &mut mask,
            TAG_OTHER => &mut other,
            TAG_USER | TAG_GROUP => {
                let who = if tag == TAG_USER {
                    Who::User(id)
                } else {
                    Who::Group(id)
                };
                named.push(Named { who, perm });
                continue;
            }
            _ => return Err(bad("unknown tag")),
        };
        if slot.replace(perm).is_some() {
            return Err(bad("duplicate entry"));
        }
    }
    let (Some(user), Some(group), Some(other)) = (user, group, other) else {
        return Err(bad("missing owner, group or other entry"));
    };
    named.sort_by_key(|n| n.who);
    named.dedup_by_key(|n| n.who);
    Ok(Full {
        user,
        group,
        mask,
        other,
        named,
    })
}

/// Entries back into the kernel's binary form, in the order it requires.
fn encode(f: &Full) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * (f.named.len() + 4));
    out.extend_from_slice(&VERSION.to_le_bytes());
    let mut put = |tag: u16, perm: u8, id: u32| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&u16::from(perm).to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    };
    put(TAG_USER_OBJ, f.user, NO_ID);
    for n in &f.named {
        if let Who::User(id) = n.who {
            put(TAG_USER, n.perm, id);
        }
    }
    put(TAG_GROUP_OBJ, f.group, NO_ID);
    for n in &f.named {
        if let Who::Group(id) = n.who {
            put(TAG_GROUP, n.perm, id);
        }
    }
    if let Some(m) = f.mask {
        put(TAG_MASK, m, NO_ID);
    }
    put(TAG_OTHER, f.other, NO_ID);
    out
}

impl Full {
    /// The access ACL beyond the mode (`None`: the mode says it all).
    fn into_access(self) -> Option<Access> {
        (self.mask.is_some() || !self.named.is_empty()).then_some(Access {
            group: self.group,
            named: self.named,
        })
    }

    /// An access ACL whole again, its owner, mask and other entries from `mode`.
    fn of_access(a: &Access, mode: u32) -> Full {
        let bits = |shift: u32| ((mode >> shift) & 7) as u8;
        Full {
            user: bits(6),
            group: a.group,
            mask: Some(bits(3)),
            other: bits(0),
            named: a.named.clone(),
        }
    }

    fn into_default(self) -> DefaultAcl {
        DefaultAcl {
            user: self.user,
            group: self.group,
            mask: self.mask,
            other: self.other,
            named: self.named,
        }
    }

    fn of_default(d: &DefaultAcl) -> Full {
        Full {
            user: d.user,
            group: d.group,
            mask: d.mask,
            other: d.other,
            named: d.named.clone(),
        }
    }
}

/// One ACL attribute of `at`, parsed; `None` where there is none (or the file system has
/// no ACLs). `follow`: through a final symlink (a sender's `-L` entry).
fn get(at: At<'_>, name: &CStr, follow: bool) -> io::Result<Option<Full>> {
    match crate::xattr::get_value(at, name, follow) {
        Ok(Some(raw)) => parse(&raw).map(Some),
        Ok(None) | Err(Errno::NODATA | Errno::OPNOTSUPP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The ACLs of `at` (a directory's default ACL too), `None` when its mode says them all.
pub fn read(at: At<'_>, is_dir: bool, follow: bool) -> io::Result<Option<Box<Acls>>> {
    let access = get(at, ACCESS, follow)?.and_then(Full::into_access);
    let default = if is_dir {
        get(at, DEFAULT, follow)?.map(Full::into_default)
    } else {
        None
    };
    if access.is_none() && default.is_none() {
        return Ok(None);
    }
    Ok(Some(Box::new(Acls { access, default })))
}

/// Makes the ACLs of `at` what `want` says, for an entry that is to have permission bits
/// `mode` (an extended access ACL's owner, mask and other entries). Only what differs is
/// written: an access ACL set through the attribute also sets those bits of the mode, and
/// one removed leaves the mode as it was, for the caller's chmod to finish. Both ACLs are
/// tried; the first failure is returned.
pub fn apply(at: At<'_>, want: Option<&Acls>, mode: u32, is_dir: bool) -> Result<(), Errno> {
    let none = Acls::default();
    let want = want.unwrap_or(&none);
    let io_errno = |e: io::Error| Errno::from_io_error(&e).unwrap_or(Errno::INVAL);
    let mut first = None;
    let access = want.access.as_ref().map(|a| Full::of_access(a, mode));
    let mut targets = vec![(ACCESS, access)];
    if is_dir {
        targets.push((DEFAULT, want.default.as_ref().map(Full::of_default)));
    }
    for (name, want) in targets {
        let have = match get(at, name, false) {
            Ok(h) => h,
            // Unreadable or malformed: written anew.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => None,
            Err(e) => {
                first.get_or_insert(io_errno(e));
                continue;
            }
        };
        let r = match (want, have) {
            (Some(w), Some(h)) if w == h => Ok(()),
            (Some(w), _) => crate::xattr::set_value(at, name, &encode(&w)),
            (None, Some(_)) => crate::xattr::remove_value(at, name),
            (None, None) => Ok(()),
        };
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Whether the access ACLs differ (what rsync's `-i` shows as `a` and, for an entry whose
/// content is not sent, counts as the mode being set already).
pub fn access_differs(a: Option<&Acls>, b: Option<&Acls>) -> bool {
    a.and_then(|a| a.access.as_ref()) != b.and_then(|b| b.access.as_ref())
}

/// Equal ACLs (no ACLs and `Acls::default()` are the same).
pub fn same(a: Option<&Acls>, b: Option<&Acls>) -> bool {
    let none = Acls::default();
    a.unwrap_or(&none) == b.unwrap_or(&none)
}

/// Feeds the ACLs to a digest.
pub fn hash(h: &mut xxhash_rust::xxh3::Xxh3, a: Option<&Acls>) {
    fn named(h: &mut xxhash_rust::xxh3::Xxh3, n: &[Named]) {
        h.update(&(n.len() as u64).to_le_bytes());
        for e in n {
            let (tag, id) = match e.who {
                Who::User(id) => (0u8, id),
                Who::Group(id) => (1u8, id),
            };
            h.update(&[tag, e.perm]);
            h.update(&id.to_le_bytes());
        }
    }
    let none = Acls::default();
    let a = a.unwrap_or(&none);
    match &a.access {
        None => h.update(&[0]),
        Some(x) => {
            h.update(&[1, x.group]);
            named(h, &x.named);
        }
    }
    match &a.default {
        None => h.update(&[0]),
        Some(d) => {
            h.update(&[1, d.user, d.group, d.mask.map_or(8, |m| m), d.other]);
            named(h, &d.named);
        }
    }
}

impl Acls {
    /// Every id the named entries use.
    pub fn ids(&self) -> impl Iterator<Item = Who> + '_ {
        let a = self.access.iter().flat_map(|a| a.named.iter());
        let d = self.default.iter().flat_map(|d| d.named.iter());
        a.chain(d).map(|n| n.who)
    }

    /// Gives the named entries this machine's ids (by name, see `ids.rs`), in order again.
    /// Two names that map to one id keep the first one's entry, as the kernel holds one.
    pub fn map_ids(&mut self, map: &dyn Fn(Who) -> Who) {
        let fix = |v: &mut Vec<Named>| {
            for n in v.iter_mut() {
                n.who = map(n.who);
            }
            v.sort_by_key(|n| n.who);
            v.dedup_by_key(|n| n.who);
        };
        if let Some(a) = &mut self.access {
            fix(&mut a.named);
        }
        if let Some(d) = &mut self.default {
            fix(&mut d.named);
        }
    }

    /// What a peer's ACLs must be: for a kind that has them (a default ACL on a directory
    /// only), not empty (that is no ACLs), bits within `rwx`, named entries within
    /// [`MAX_NAMED`], strictly sorted (the digests hash them in order) and for real ids,
    /// and a mask wherever there are named entries (the kernel's rule).
    pub fn check(&self, kind: Holder) -> Result<(), &'static str> {
        if kind == Holder::Symlink {
            return Err("an ACL on a symlink");
        }
        if self.default.is_some() && kind != Holder::Dir {
            return Err("a default ACL on a non-directory");
        }
        if self.access.is_none() && self.default.is_none() {
            return Err("an empty ACL");
        }
        let named = |n: &[Named]| {
            if n.len() > MAX_NAMED {
                return Err("too many ACL entries");
            }
            for (i, e) in n.iter().enumerate() {
                if e.perm > 7 {
                    return Err("ACL permission bits out of range");
                }
                if matches!(e.who, Who::User(NO_ID) | Who::Group(NO_ID)) {
                    return Err("an ACL entry for no user or group");
                }
                if i > 0 && n[i - 1].who >= e.who {
                    return Err("ACL entries not sorted or have duplicates");
                }
            }
            Ok(())
        };
        if let Some(a) = &self.access {
            if a.group > 7 {
                return Err("ACL permission bits out of range");
            }
            named(&a.named)?;
        }
        if let Some(d) = &self.default {
            if [d.user, d.group, d.other, d.mask.unwrap_or(0)]
                .iter()
                .any(|p| *p > 7)
            {
                return Err("ACL permission bits out of range");
            }
            if d.mask.is_none() && !d.named.is_empty() {
                return Err("a default ACL with named entries and no mask");
            }
            named(&d.named)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = VERSION.to_le_bytes().to_vec();
        for (t, p, id) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn the_kernel_form_round_trips_and_the_mode_parts_are_left_to_the_mode() {
        // user::rw- user:65534:rwx group::r-- group:1:r-- mask::rwx other::---
        let r = raw(&[
            (TAG_USER_OBJ, 6, NO_ID),
            (TAG_USER, 7, 65534),
            (TAG_GROUP_OBJ, 4, NO_ID),
            (TAG_GROUP, 4, 1),
            (TAG_MASK, 7, NO_ID),
            (TAG_OTHER, 0, NO_ID),
        ]);
        let full = parse(&r).unwrap();
        assert_eq!(encode(&full), r);
        let a = full.into_access().unwrap();
        assert_eq!(a.group, 4);
        assert_eq!(a.named.len(), 2);
        // Rebuilt from the mode 0o670: the same bytes.
        assert_eq!(encode(&Full::of_access(&a, 0o670)), r);
        // A mode-only ACL is no ACL.
        let minimal = raw(&[
            (TAG_USER_OBJ, 6, NO_ID),
            (TAG_GROUP_OBJ, 4, NO_ID),
            (TAG_OTHER, 4, NO_ID),
        ]);
        assert_eq!(parse(&minimal).unwrap().into_access(), None);
        for broken in [
            vec![1, 0, 0, 0],
            r[..r.len() - 1].to_vec(),
            raw(&[(TAG_USER_OBJ, 8, NO_ID)]),
            raw(&[(TAG_USER_OBJ, 6, NO_ID), (TAG_OTHER, 4, NO_ID)]),
            raw(&[(0x40, 6, NO_ID)]),
        ] {
            assert!(parse(&broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn only_a_difference_the_mode_cannot_show_is_an_acl_difference() {
        let acl = |group, perm| {
            Some(Acls {
                access: Some(Access {
                    group,
                    named: vec![Named {
                        who: Who::User(7),
                        perm,
                    }],
                }),
                default: None,
            })
        };
        assert!(same(acl(4, 7).as_ref(), acl(4, 7).as_ref()));
        assert!(access_differs(acl(4, 7).as_ref(), acl(4, 5).as_ref()));
        assert!(access_differs(acl(4, 7).as_ref(), acl(5, 7).as_ref()));
        assert!(access_differs(acl(4, 7).as_ref(), None));
        assert!(same(None, Some(&Acls::default())));
        let d = |a: Option<&Acls>| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            hash(&mut h, a);
            h.digest128()
        };
        assert_eq!(d(None), d(Some(&Acls::default())));
        assert_ne!(d(acl(4, 7).as_ref()), d(acl(4, 6).as_ref()));
        assert_ne!(d(acl(4, 7).as_ref()), d(None));
    }

    #[test]
    fn a_peers_acls_are_checked() {
        let named = |v: &[(Who, u8)]| -> Vec<Named> {
            v.iter().map(|&(who, perm)| Named { who, perm }).collect()
        };
        let access = |n: Vec<Named>| Acls {
            access: Some(Access { group: 5, named: n }),
            default: None,
        };
        let good = access(named(&[(Who::User(3), 7), (Who::Group(1), 4)]));
        assert!(good.check(Holder::Other).is_ok());
        assert!(good.check(Holder::Symlink).is_err());
        for bad in [
            access(named(&[(Who::Group(1), 4), (Who::User(3), 7)])),
            access(named(&[(Who::User(3), 7), (Who::User(3), 7)])),
            access(named(&[(Who::User(3), 8)])),
            access(named(&[(Who::User(NO_ID), 1)])),
            access(
                (0..=MAX_NAMED as u32)
                    .map(|i| Named {
                        who: Who::User(i),
                        perm: 1,
                    })
                    .collect(),
            ),
            Acls::default(),
        ] {
            assert!(bad.check(Holder::Other).is_err(), "{bad:?}");
        }
        let default = Acls {
            access: None,
            default: Some(DefaultAcl {
                user: 7,
                group: 5,
                mask: None,
                other: 5,
                named: named(&[(Who::User(3), 7)]),
            }),
        };
        assert!(
            default.check(Holder::Dir).is_err(),
            "named entries need a mask"
        );
        let mut with_mask = default.clone();
        with_mask.default.as_mut().unwrap().mask = Some(7);
        assert!(with_mask.check(Holder::Dir).is_ok());
        assert!(with_mask.check(Holder::Other).is_err());
    }

    #[test]
    fn mapped_ids_are_sorted_again() {
        let mut a = Acls {
            access: Some(Access {
                group: 4,
                named: vec![
                    Named {
                        who: Who::User(1),
                        perm: 7,
                    },
                    Named {
                        who: Who::User(2),
                        perm: 5,
                    },
                    Named {
                        who: Who::Group(9),
                        perm: 4,
                    },
                ],
            }),
            default: None,
        };
        a.map_ids(&|w| match w {
            Who::User(1) => Who::User(5),
            w => w,
        });
        let who: Vec<Who> = a.ids().collect();
        assert_eq!(who, [Who::User(2), Who::User(5), Who::Group(9)]);
        assert!(a.check(Holder::Other).is_ok());
    }
}
