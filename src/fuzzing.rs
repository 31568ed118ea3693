//! Bodies of the fuzz targets in `fuzz/fuzz_targets/`, kept here so that one copy serves
//! both libFuzzer (nightly, `cargo +nightly fuzz run NAME`) and the stable replay of the
//! committed corpora in `tests/it/fuzz_corpora.rs`. Each body takes arbitrary bytes and
//! must never panic or allocate without bound; errors are the expected outcome.
#![doc(hidden)]

use crate::protocol::{self, DirListing, Msg, Reader, WireEntry, WireOp};
use crate::summary::Compared;
use crate::tree::{Entry, Kind, Meta};

/// One target's body.
pub type Body = fn(&[u8]);

/// The targets by name (the `fuzz/corpus/<name>/` directories).
pub const TARGETS: &[(&str, Body)] = &[
    ("frames", frames),
    ("listing", listing),
    ("delta_apply", delta_apply),
    ("paths", paths),
];

/// `-a`'s comparison, made once (clap on every input cost most of each execution).
fn compared() -> Compared {
    static CMP: std::sync::LazyLock<Compared> = std::sync::LazyLock::new(|| {
        // (-a's comparison: permissions, times, owners, links, devices.)
        Compared::from_options(&crate::config::Options {
            recursive: true,
            links: true,
            perms: true,
            times: true,
            group: true,
            owner: true,
            devices: true,
            specials: true,
            ..Default::default()
        })
    });
    *CMP
}

fn have_list(seed: &[u8]) -> Vec<Entry> {
    let cmp = compared();
    let n = seed.first().map_or(0, |&b| b as usize % 20);
    (0..n)
        .map(|i| {
            let meta = Meta {
                kind: if i % 3 == 0 { Kind::Dir } else { Kind::File },
                mode: 0o644,
                size: i as u64,
                ..crate::tree::virtual_dir_meta()
            };
            let mut e = Entry::new(format!("n{i:02}").into_bytes().into_boxed_slice(), meta);
            e.digest = crate::summary::digest_of(&e, &cmp);
            e
        })
        .collect()
}

fn check_wire_entry(w: WireEntry, cmp: &Compared) {
    if protocol::check_entry(&w).is_ok() {
        let _ = w.into_entry(cmp);
    }
}

/// Target 1: bytes → Reader (frames, length prefix, MAX_FRAME) → Msg → the checks each
/// end applies to what it decoded.
pub fn frames(data: &[u8]) {
    let cmp = compared();
    let have = have_list(data);
    let mut r = Reader::new(data);
    for _ in 0..64 {
        let Ok(msg) = r.recv() else { return };
        match msg {
            Msg::Sources { info } if info.check().is_ok() => {
                let names = have.iter().map(|e| (&*e.name, e.is_dir()));
                let _ = info.check_root_listing(names);
            }
            Msg::SourceRoot { root, .. } => check_wire_entry(root, &cmp),
            Msg::List { dirs } => {
                for d in dirs {
                    let _ = protocol::check_rel_path(&d.path);
                    let _ = d.answer(&have);
                }
            }
            Msg::Listing { dirs } => {
                for d in dirs {
                    let _ = d.merge(&have, &cmp);
                }
            }
            Msg::Get { files } => {
                for f in files {
                    match f {
                        protocol::Request::Whole { path, .. }
                        | protocol::Request::Append { path, .. } => {
                            let _ = protocol::check_rel_path(&path);
                        }
                        protocol::Request::Delta { path, sig, .. } => {
                            let _ = protocol::check_rel_path(&path);
                            if let Some(s) = sig {
                                let _ = s.validate();
                            }
                        }
                    }
                }
            }
            Msg::Delta { ops, .. } => apply_ops(&ops, 4096),
            _ => {}
        }
    }
}

/// Target 2: a postcard `DirListing` merged against a receiver's "have" list (its size
/// from the first byte).
pub fn listing(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(1));
    let have = have_list(head);
    if let Ok(l) = postcard::from_bytes::<DirListing>(rest)
        && let Ok(out) = l.merge(&have, &compared())
    {
        assert!(protocol::check_sorted(&out).is_ok());
        for e in &out {
            assert!(crate::pathsafe::check_name(&e.name).is_ok());
        }
    }
}

fn apply_ops(ops: &[WireOp], basis_len: usize) {
    use rustix::fs::{MemfdFlags, memfd_create};
    use std::os::fd::AsFd;
    let basis = memfd_create("basis", MemfdFlags::CLOEXEC).expect("memfd");
    let out = memfd_create("out", MemfdFlags::CLOEXEC).expect("memfd");
    let content: Vec<u8> = (0..basis_len).map(|i| i as u8).collect();
    rustix::io::pwrite(&basis, &content, 0).expect("basis written");
    let mut a = crate::delta::Applier::new(basis.as_fd(), basis_len as u64, out.as_fd(), 0);
    let mut expect = 0u64;
    for op in ops {
        let r = match op {
            WireOp::Copy { offset, len } => a.apply(crate::delta::Op::Copy {
                offset: *offset,
                len: *len,
            }),
            WireOp::Literal(b) => a.apply(crate::delta::Op::Literal(b)),
        };
        match (r, op) {
            (Ok(()), WireOp::Copy { offset, len }) => {
                assert!(
                    offset
                        .checked_add(*len)
                        .is_some_and(|e| e <= basis_len as u64)
                );
                expect += len;
            }
            (Ok(()), WireOp::Literal(b)) => expect += b.len() as u64,
            (Err(_), _) => return,
        }
        assert_eq!(a.written(), expect);
    }
}

/// Target 3: delta ops (postcard `Vec<WireOp>`) applied to a basis whose length comes from
/// the first two bytes.
pub fn delta_apply(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let basis_len = u16::from_le_bytes([data[0], data[1]]) as usize;
    if let Ok(ops) = postcard::from_bytes::<Vec<WireOp>>(&data[2..]) {
        apply_ops(&ops, basis_len);
    }
}

/// Target 4: the path checks' property: whatever is accepted is a safe relative path that
/// stays under a root when joined.
pub fn paths(data: &[u8]) {
    // (A name found in a destination: never a panic, and only our own format is ours.)
    if crate::temps::owner(data) != crate::temps::Owner::NotOurs {
        assert!(data.starts_with(crate::temps::PREFIX));
    }
    if crate::pathsafe::check_name(data).is_ok() {
        assert!(!data.is_empty() && data.len() <= 255);
        assert!(data != b"." && data != b"..");
        assert!(!data.contains(&b'/') && !data.contains(&0));
    }
    if protocol::check_rel_path(data).is_ok() && !data.is_empty() {
        assert!(data[0] != b'/' && !data.contains(&0));
        let mut depth = 0usize;
        for c in data.split(|&b| b == b'/') {
            assert!(!c.is_empty() && c != b"." && c != b".." && c.len() <= 255);
            depth += 1;
        }
        // (Joined as the bytes they are: names need not be UTF-8.)
        use std::os::unix::ffi::OsStrExt;
        let joined = std::path::Path::new("/root").join(std::ffi::OsStr::from_bytes(data));
        assert!(joined.starts_with("/root"));
        assert_eq!(joined.components().count(), 2 + depth);
    }
}
