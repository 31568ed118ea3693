//! rsync's rolling-checksum delta, behind our own interface: the receiver [`sign`]s a range
//! of its basis file, the sender [`diff`]s its new file against that [`Signature`] and emits
//! [`Op`]s (copy this basis range, or here are literal bytes), and the receiver's [`Applier`]
//! writes them out, moving matched runs with `copy_file_range` so unchanged bytes never pass
//! through user space.
//!
//! For huge files a coarse level comes first: both ends hash aligned blocks of
//! [`coarse_block`] bytes with blake3 ([`coarse_scan`]); the sender matches its blocks
//! against the basis's in place, then finds moved ones by rolling each basis block's
//! anchor ([`coarse_match`]), and only the [`CoarsePart`]s left go through sign/diff. The
//! file's end-to-end digest is then [`coarse_digest`], a hash over the block hashes, so
//! neither end reads the file a second time to check it.
//!
//! The rolling checksum and the strong hash are `fast_rsync`'s (librsync's rollsum, MD4
//! with SIMD). Nothing of it leaks out of this module: the signature's wire form is our own
//! struct, and fast_rsync's librsync-format delta is parsed here, as it streams out, into
//! [`Op`]s whose literals borrow the source window (no copy of the literal data is made).
//! Swapping the engine means rewriting `fine.rs` only.
//!
//! Memory is bounded by windows: the basis is signed [`SIGN_WINDOW`] bytes at a time (in
//! parallel), the source diffed [`DIFF_WINDOW`] bytes at a time. Between two source windows
//! the trailing unmatched bytes (at most one block less one byte) are carried into the next
//! window, so a block straddling the edge is still found and no byte is lost or repeated.

use rayon::prelude::*;
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;

mod apply;
mod coarse;
mod fine;

pub use apply::*;
pub use coarse::*;
pub use fine::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::Instant;

    #[test]
    fn strong_hash_length_follows_rsyncs_rule() {
        // rsync 3.x: 32 MiB in blocks of 5792 -> 3 bytes; small files -> the 2-byte floor.
        assert_eq!(strong_len(32 << 20, 5792), 3);
        assert_eq!(strong_len(10_000, 700), 2);
        assert_eq!(strong_len(2 << 30, 32768), 4);
        assert!(strong_len(u64::MAX, MIN_BLOCK) <= STRONG_LEN);
    }

    /// Deterministic bytes (xorshift64).
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn file_with(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> File {
        let path = dir.path().join(name);
        std::fs::write(&path, data).expect("write fixture");
        File::open(&path).expect("open fixture")
    }

    fn out_file(dir: &tempfile::TempDir) -> (File, std::path::PathBuf) {
        let path = dir.path().join("out");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create out");
        (f, path)
    }

    /// sign → diff (with `window`) → apply; checks the result and returns the stats.
    fn round_trip_windowed(basis: &[u8], new: &[u8], window: usize) -> DiffStats {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", basis);
        let s = file_with(&dir, "new", new);
        let (o, out_path) = out_file(&dir);
        let sig = sign(&b, 0, basis.len() as u64, block_size(basis.len() as u64)).expect("sign");
        let mut ap = Applier::new(b.as_fd(), basis.len() as u64, o.as_fd(), 0);
        let mut last_was_copy = false;
        let stats = diff_windowed(&sig, &s, 0, new.len() as u64, window, &mut |op| {
            let is_copy = matches!(op, Op::Copy { .. });
            assert!(!(is_copy && last_was_copy), "adjacent copies not merged");
            last_was_copy = is_copy;
            ap.apply(op)
        })
        .expect("diff");
        assert_eq!(ap.written(), new.len() as u64);
        assert_eq!(stats.literal + stats.matched, new.len() as u64);
        let got = std::fs::read(out_path).expect("read out");
        assert!(got == new, "round trip differs");
        stats
    }

    fn round_trip(basis: &[u8], new: &[u8]) -> DiffStats {
        round_trip_windowed(basis, new, DIFF_WINDOW)
    }

    fn figure(case: &str, stats: DiffStats) {
        eprintln!(
            "delta figures: {case}: literal {} bytes, matched {} bytes",
            stats.literal, stats.matched
        );
    }

    #[test]
    fn block_size_follows_rsync() {
        assert_eq!(block_size(0), 700);
        assert_eq!(block_size(490_000), 700);
        assert_eq!(block_size(8 << 20), 2896);
        assert_eq!(block_size(1 << 30), 32768);
        assert_eq!(block_size(u64::MAX), MAX_BLOCK);
        assert_eq!(block_size(10_000_000) % 8, 0);
    }

    #[test]
    fn identical_files_are_all_copy() {
        let data = random(3 << 20, 1);
        let st = round_trip(&data, &data);
        figure("identical 3 MiB", st);
        assert_eq!(st.literal, 0);
    }

    #[test]
    fn scattered_edits_round_trip() {
        let basis = random(32 << 20, 2);
        let mut new = basis.clone();
        let pos = random(20 * 8, 3);
        for p in pos.chunks(8) {
            let at = (u64::from_le_bytes(p.try_into().unwrap()) % (new.len() as u64 - 50)) as usize;
            for b in &mut new[at..at + 50] {
                *b = !*b;
            }
        }
        let st = round_trip(&basis, &new);
        figure("32 MiB, 20 scattered 50-byte edits", st);
        // Each edit costs at most the two blocks it may touch.
        assert!(st.literal <= 20 * 2 * block_size(32 << 20) as u64);
    }

    #[test]
    fn insertion_costs_about_its_length() {
        let basis = random(8 << 20, 4);
        let mut new = basis.clone();
        let ins = random(100, 5);
        new.splice(5000..5000, ins);
        let st = round_trip(&basis, &new);
        figure("8 MiB, 100-byte insertion", st);
        let block = block_size(8 << 20) as u64;
        assert!(st.literal >= 100);
        assert!(st.literal <= 100 + 2 * block, "literal {}", st.literal);
    }

    #[test]
    fn deletion_round_trips() {
        let basis = random(8 << 20, 6);
        let mut new = basis.clone();
        new.drain(1_000_000..1_000_777);
        let st = round_trip(&basis, &new);
        figure("8 MiB, 777-byte deletion", st);
        assert!(st.literal <= 2 * block_size(8 << 20) as u64);
    }

    #[test]
    fn unrelated_data_is_all_literal() {
        let st = round_trip(&random(2 << 20, 7), &random(2 << 20, 8));
        figure("unrelated 2 MiB", st);
        assert_eq!(st.matched, 0);
    }

    #[test]
    fn empty_basis_and_empty_new() {
        let data = random(100_000, 9);
        let st = round_trip(&[], &data);
        assert_eq!(st.literal, data.len() as u64);
        let st = round_trip(&data, &[]);
        assert_eq!(st, DiffStats::default());
        assert_eq!(round_trip(&[], &[]), DiffStats::default());
    }

    #[test]
    fn short_last_block_is_matched() {
        // Not a multiple of the block: the basis's short tail still matches at the end.
        let basis = random(1_000_003, 10);
        let st = round_trip(&basis, &basis);
        figure("identical 1000003 bytes", st);
        assert_eq!(st.literal, 0);
        let mut new = basis.clone();
        new[500] ^= 1;
        let st = round_trip(&basis, &new);
        assert!(st.literal <= block_size(basis.len() as u64) as u64);
        // Appended data: everything old is copied, only the new bytes are literal.
        let mut appended = basis.clone();
        appended.extend_from_slice(&random(333, 11));
        let st = round_trip(&basis, &appended);
        figure("1000003 bytes + 333 appended", st);
        assert!(st.literal < 333 + block_size(basis.len() as u64) as u64);
    }

    #[test]
    fn matches_across_window_edges_round_trip() {
        // Windows of 64 KiB over 1 MiB with 1000-byte blocks: the edges fall mid-block.
        let basis = random(1 << 20, 12);
        let mut new = basis.clone();
        new.splice(10_000..10_000, random(37, 13));
        for at in [65_530usize, 131_070, 400_000, 655_359] {
            new[at] ^= 0xff;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &basis);
        let s = file_with(&dir, "new", &new);
        let (o, out_path) = out_file(&dir);
        let sig = sign(&b, 0, basis.len() as u64, 1000).expect("sign");
        let mut ap = Applier::new(b.as_fd(), basis.len() as u64, o.as_fd(), 0);
        let windowed = diff_windowed(&sig, &s, 0, new.len() as u64, 64 << 10, &mut |op| {
            ap.apply(op)
        })
        .expect("diff");
        assert_eq!(std::fs::read(out_path).expect("read"), new);
        // Carrying the unmatched tail across edges loses nothing against one window.
        let whole = diff(&sig, &s, 0, new.len() as u64, &mut |_| Ok(())).expect("diff");
        figure("1 MiB in 64 KiB windows", windowed);
        assert_eq!(windowed, whole);
        // And the default-sized round trip with a tiny window too.
        round_trip_windowed(&basis, &new, 10_000);
    }

    #[test]
    fn copy_past_basis_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &random(1000, 14));
        let (o, _) = out_file(&dir);
        let mut ap = Applier::new(b.as_fd(), 1000, o.as_fd(), 0);
        ap.apply(Op::Copy {
            offset: 0,
            len: 1000,
        })
        .expect("in range");
        for (offset, len) in [(990, 11), (1001, 0), (u64::MAX, 2), (1, u64::MAX)] {
            let e = ap
                .apply(Op::Copy { offset, len })
                .expect_err("hostile copy");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        // A basis that shrank behind our back: an error, not a short file.
        let mut ap = Applier::new(b.as_fd(), 5000, o.as_fd(), 0);
        let e = ap
            .apply(Op::Copy {
                offset: 0,
                len: 5000,
            })
            .expect_err("short basis");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn fallback_copy_matches() {
        let data = random(700_001, 15);
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &data);
        let (o, out_path) = out_file(&dir);
        let mut ap = Applier::new(b.as_fd(), data.len() as u64, o.as_fd(), 7);
        ap.in_kernel = false;
        ap.apply(Op::Literal(b"abcdefg")).expect("literal");
        ap.apply(Op::Copy {
            offset: 1,
            len: 700_000,
        })
        .expect("copy");
        let got = std::fs::read(out_path).expect("read");
        assert_eq!(&got[7..14], b"abcdefg");
        assert!(got[14..] == data[1..]);
        assert_eq!(ap.written(), 700_007);
    }

    #[test]
    fn hostile_signature_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = file_with(&dir, "new", &random(10_000, 16));
        let b = file_with(&dir, "basis", &random(10_000, 17));
        let good = sign(&b, 0, 10_000, 1000).expect("sign");
        let mut bad = vec![
            Signature {
                block_size: 0,
                ..good.clone()
            },
            Signature {
                block_size: MAX_BLOCK + 1,
                ..good.clone()
            },
            Signature {
                len: 20_000,
                ..good.clone()
            },
            Signature {
                strong_len: 17,
                ..good.clone()
            },
            Signature {
                start: u64::MAX,
                ..good.clone()
            },
        ];
        let mut short = good.clone();
        short.hashes.pop();
        bad.push(short);
        for sig in bad {
            let e = diff(&sig, &s, 0, 10_000, &mut |_| Ok(())).expect_err("bad signature");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        }
        // The wire form survives serde.
        let bytes = postcard::to_stdvec(&good).expect("encode");
        let back: Signature = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, good);
    }

    #[test]
    fn coarse_block_sizes() {
        assert_eq!(coarse_block(1), 256 << 10);
        assert_eq!(coarse_block(16 << 30), 256 << 10);
        assert_eq!(coarse_block((16 << 30) + 1), 512 << 10);
        assert_eq!(coarse_block(64 << 30), 1 << 20);
        assert_eq!(coarse_block(1 << 40), 16 << 20);
        assert_eq!(coarse_block(u64::MAX), 1 << 30);
    }

    #[test]
    fn anchors_roll() {
        let data = random(3 * ANCHOR_LEN, 30);
        let w = anchor_out_weight();
        let mut h = anchor_of(&data[..ANCHOR_LEN]);
        for k in 0..2 * ANCHOR_LEN {
            h = h
                .wrapping_sub((data[k] as u64 + 1).wrapping_mul(w))
                .wrapping_mul(ROLL_MUL)
                .wrapping_add(data[k + ANCHOR_LEN] as u64 + 1);
            assert_eq!(h, anchor_of(&data[k + 1..k + 1 + ANCHOR_LEN]), "at {k}");
        }
    }

    /// What the two ends do with a big file, in one process: the receiver scans its basis,
    /// the sender matches, the receiver signs each part's basis range, the sender diffs the
    /// parts, the receiver applies copies and ops; then the rebuilt file's coarse digest is
    /// checked against the sender's. Returns (bytes in parts, literal bytes).
    fn coarse_round_trip(basis: &[u8], new: &[u8]) -> (u64, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", basis);
        let s = file_with(&dir, "new", new);
        let (o, out_path) = out_file(&dir);
        let (blen, slen) = (basis.len() as u64, new.len() as u64);
        let block = coarse_block(slen);
        let scan = coarse_scan(&b, blen, block, true).expect("scan basis");
        let short: Vec<[u8; 16]> = scan
            .hashes
            .iter()
            .map(|h| h[..16].try_into().unwrap())
            .collect();
        let m = coarse_match(&s, slen, block, blen, &short, &scan.anchors).expect("match");
        let mut ap = Applier::new(b.as_fd(), blen, o.as_fd(), 0);
        let (mut in_parts, mut literal) = (0, 0);
        for seg in &m.segments {
            match *seg {
                Segment::Copy { offset, len } => ap.apply(Op::Copy { offset, len }).expect("copy"),
                Segment::Part(p) => {
                    let st = p.basis_start.min(blen);
                    let l = p.basis_len.min(blen - st);
                    let sig = sign(&b, st, l, block_size(l).max(4096)).expect("sign");
                    let d = diff(&sig, &s, p.start, p.len, &mut |op| ap.apply(op)).expect("diff");
                    in_parts += p.len;
                    literal += d.literal;
                }
            }
        }
        assert_eq!(ap.written(), slen);
        assert!(
            std::fs::read(&out_path).expect("read") == new,
            "rebuilt file differs"
        );
        let out = File::open(&out_path).expect("open out");
        let mine = coarse_scan(&out, slen, block, false)
            .expect("scan out")
            .hashes;
        assert_eq!(coarse_digest(slen, block, &mine), m.digest);
        (in_parts, literal)
    }

    /// 16 scattered 4 KiB edits in 64 MiB: only the edited coarse blocks reach the fine
    /// level, and each edit costs about its 4 KiB.
    #[test]
    fn coarse_level_narrows_to_edited_blocks() {
        let len = 64usize << 20;
        let basis = random(len, 18);
        let mut new = basis.clone();
        let block = coarse_block(len as u64);
        let mut edited = std::collections::BTreeSet::new();
        for (k, p) in random(16 * 8, 19).chunks(8).enumerate() {
            // One edit per 4 MiB stripe, anywhere in it (may straddle a coarse edge).
            let stripe = 4usize << 20;
            let at = k * stripe
                + (u64::from_le_bytes(p.try_into().unwrap()) % (stripe as u64 - 4096)) as usize;
            for b in &mut new[at..at + 4096] {
                *b = b.wrapping_add(1);
            }
            edited.insert(at as u64 / block);
            edited.insert((at as u64 + 4095) / block);
        }
        let (in_parts, literal) = coarse_round_trip(&basis, &new);
        eprintln!(
            "delta figures: coarse 64 MiB, 16×4 KiB edits: {in_parts} bytes in parts, \
             literal {literal} bytes (edits {})",
            16 * 4096
        );
        assert_eq!(in_parts, edited.len() as u64 * block);
        assert!(literal <= 16 * (4096 + 2 * 4096));
    }

    /// An insertion shifts every later block: the anchors find them at their new offsets,
    /// so one coarse block (plus the insertion) is searched and the literal is the insertion.
    #[test]
    fn coarse_level_finds_shifted_blocks() {
        let len = 64usize << 20;
        let basis = random(len, 31);
        for (at, n) in [
            (len / 2 + 12345, 1),
            (len / 3, 100_000),
            (0, 7),
            (len - 5, 3),
        ] {
            let mut new = basis.clone();
            new.splice(at..at, random(n, 32));
            let (in_parts, literal) = coarse_round_trip(&basis, &new);
            eprintln!(
                "delta figures: coarse 64 MiB, {n} bytes inserted at {at}: {in_parts} bytes in \
                 parts, literal {literal}"
            );
            assert!(
                in_parts <= 2 * (1 << 20) + n as u64,
                "{n} at {at}: {in_parts}"
            );
            assert!(
                literal <= n as u64 + 2 * 4096,
                "{n} at {at}: literal {literal}"
            );
        }
        // A deletion shifts the other way; a file of unrelated data has nothing to find.
        let mut new = basis.clone();
        new.drain(len / 4..len / 4 + (3 << 20) + 17);
        let (in_parts, literal) = coarse_round_trip(&basis, &new);
        assert!(in_parts <= 2 << 20, "deletion: {in_parts}");
        assert!(literal <= 1 << 20, "deletion: literal {literal}");
        let other = random(len / 4, 33);
        let (in_parts, _) = coarse_round_trip(&basis[..len / 4], &other);
        assert_eq!(in_parts, other.len() as u64);
    }

    /// Hostile or odd coarse input from a peer: short lists, zero-length basis, a basis
    /// longer than its hash list, anchors that all collide — no panic, and a round trip
    /// still rebuilds the file.
    #[test]
    fn coarse_match_survives_odd_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = random(5 << 20, 34);
        let s = file_with(&dir, "new", &data);
        let len = data.len() as u64;
        let block = 1 << 20;
        for (basis_len, hashes, anchors) in [
            (0u64, vec![], vec![]),
            (len, vec![[0u8; 16]; 2], vec![7u64; 2]),
            (u64::MAX / 2, vec![[1u8; 16]; 3], vec![0u64; 100]),
            (
                len,
                vec![[2u8; 16]; 5],
                vec![anchor_of(&data[..ANCHOR_LEN]); 5],
            ),
        ] {
            let m = coarse_match(&s, len, block, basis_len, &hashes, &anchors).expect("match");
            let covered: u64 = m.parts().iter().map(|p| p.len).sum();
            assert_eq!(covered, len, "nothing can match");
        }
    }

    /// Throughput of sign, diff and apply on 64 MiB with scattered edits (8 MiB unoptimised; run with
    /// `--release --nocapture` for figures worth quoting).
    #[test]
    fn throughput_figures() {
        // Unoptimised, fast_rsync's rolling loop crawls: keep the debug run short.
        let len = if cfg!(debug_assertions) { 8usize } else { 64 } << 20;
        let basis = random(len, 20);
        let mut new = basis.clone();
        for p in random(64 * 8, 21).chunks(8) {
            let at = (u64::from_le_bytes(p.try_into().unwrap()) % (len as u64 - 100)) as usize;
            new[at..at + 100].fill(0);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let b = file_with(&dir, "basis", &basis);
        let s = file_with(&dir, "new", &new);
        let (o, out_path) = out_file(&dir);
        let mb = len as f64 / (1 << 20) as f64;
        let block = block_size(len as u64);

        let t = Instant::now();
        let sig = sign(&b, 0, len as u64, block).expect("sign");
        let sign_t = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut n_ops = 0u64;
        let st = diff(&sig, &s, 0, len as u64, &mut |_| {
            n_ops += 1;
            Ok(())
        })
        .expect("diff");
        let diff_t = t.elapsed().as_secs_f64();

        let mut ap = Applier::new(b.as_fd(), len as u64, o.as_fd(), 0);
        let mut apply_t = 0.0;
        diff(&sig, &s, 0, len as u64, &mut |op| {
            let t = Instant::now();
            let r = ap.apply(op);
            apply_t += t.elapsed().as_secs_f64();
            r
        })
        .expect("diff+apply");
        assert!(std::fs::read(out_path).expect("read") == new);

        let unrelated = file_with(&dir, "unrelated", &random(len, 22));
        let t = Instant::now();
        diff(&sig, &unrelated, 0, len as u64, &mut |_| Ok(())).expect("diff");
        let diff_unrelated_t = t.elapsed().as_secs_f64();

        eprintln!(
            "delta figures: {mb} MiB, block {block}, 64×100-byte edits: sign {:.0} MB/s, \
             diff {:.0} MB/s (unrelated data {:.0} MB/s), apply {:.0} MB/s; {n_ops} ops, \
             literal {} bytes, signature {} bytes",
            mb / sign_t,
            mb / diff_t,
            mb / diff_unrelated_t,
            mb / apply_t,
            st.literal,
            postcard::to_stdvec(&sig).expect("encode").len()
        );
    }
}
