//! Micro-benchmarks of the engine's hot parts, one criterion group each: the parallel scan
//! and Merkle summary, the raw hashes, the rsync delta, zstd at the candidate levels, and the
//! protocol's framing. `cargo bench --bench micro` (about 2½ minutes on 2 cores; append
//! `-- GROUP` to run one group).
//!
//! These measure xsync's own pieces in isolation, to see where a change moves the cost; the
//! races against rsync live in `benches/compare/`. Fixtures are built once per group, lazily
//! (a group filtered out builds nothing), in `/dev/shm` when it exists so that the file
//! system's cost is the kernel's and not a disk's, and are removed when the group ends.
//! Setup may `expect()`: a bench that cannot build its fixture has nothing to measure.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use std::fs::{self, File};
use std::hint::black_box;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;
use xsync::cli::{self, Parsed};
use xsync::compress::{Compressor, Decompressor, Setting};
use xsync::config::Options;
use xsync::delta::{self, Applier, Op};
use xsync::filter::Side;
use xsync::fs::open_dir_at;
use xsync::protocol::{self, Msg, Reader, WireEntry, Writer};
use xsync::report::Report;
use xsync::scan::{Scanner, dev_of};
use xsync::summary::{Compared, digest_tree};
use xsync::tree::{Entry, Meta};

const MIB: usize = 1 << 20;

/// The criterion defaults (100 samples, 5 s each) would take a quarter of an hour here;
/// 10 samples over a few seconds give ±2–3 % on this machine, enough to see a regression.
fn group<'a>(c: &'a mut Criterion, name: &str, measure_secs: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(measure_secs));
    g
}

/// A scratch directory on tmpfs if there is one (see the module doc).
fn scratch() -> TempDir {
    let shm = Path::new("/dev/shm");
    let b = tempfile::Builder::new().prefix("xsync-micro-").to_owned();
    if shm.is_dir() {
        b.tempdir_in(shm).expect("create a scratch dir in /dev/shm")
    } else {
        b.tempdir().expect("create a scratch dir")
    }
}

/// Deterministic incompressible bytes (xorshift64*), so runs compare like with like.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `xsync -a SRC DEST` as the CLI resolves it: the options a typical run scans with.
fn archive_options() -> Options {
    match cli::parse(["xsync", "-a", "src/", "dest/"]) {
        Ok(Parsed::Run(o)) => *o,
        _ => panic!("`xsync -a src/ dest/` did not parse to a run"),
    }
}

// ---- 1. scan + Merkle summary ---------------------------------------------------------

const SCAN_DIRS: usize = 1_000;
const SCAN_FILES: usize = 100;
/// Every file and directory below the root.
const SCAN_ENTRIES: u64 = (SCAN_DIRS * (SCAN_FILES + 1)) as u64;

/// 1,000 directories of 100 files of 1–256 bytes (so tmpfs gives each a page, as a real
/// small file has).
fn build_tree() -> TempDir {
    let dir = scratch();
    for d in 0..SCAN_DIRS {
        let sub = dir.path().join(format!("dir{d:04}"));
        fs::create_dir(&sub).expect("create fixture dir");
        for f in 0..SCAN_FILES {
            let len = 1 + (d * 31 + f * 7) % 256;
            fs::write(sub.join(format!("file{f:03}.rs")), b"x".repeat(len))
                .expect("write fixture file");
        }
    }
    dir
}

fn bench_scan(c: &mut Criterion) {
    let opts = archive_options();
    let cmp = Compared::from_options(&opts);
    let (mut out, mut err) = (std::io::sink(), std::io::sink());
    let report = Report::new(&mut out, &mut err, true);
    let scanner = Scanner::new(Side::Sender, &opts.filters, &opts, &report);
    let mut tree: Option<TempDir> = None;

    let mut g = group(c, "scan", 8);
    g.throughput(Throughput::Elements(SCAN_ENTRIES));
    g.bench_function("read_children+digest_tree/101k", |b| {
        let root = tree.get_or_insert_with(build_tree).path().to_owned();
        // The tree's drop is left out of the timing: it is the allocator's cost, not the scan's.
        b.iter_with_large_drop(|| {
            let fd = open_dir_at(rustix::fs::CWD, &scan_cstr(&root)).expect("open fixture root");
            let st = rustix::fs::fstat(&fd).expect("stat fixture root");
            let dev = dev_of(&fd);
            let mut entry = Entry::new(Box::from(&b"."[..]), Meta::from_stat(&st));
            let up = xsync::scan::Up::base(&fd);
            let (children, complete) = scanner
                .read_children(fd, b"", dev, &up, &Default::default())
                .expect("scan");
            assert!(complete && children.len() == SCAN_DIRS);
            entry.children = children;
            digest_tree(&mut entry, &cmp);
            entry
        })
    });
    g.finish();
    drop(tree);
}

fn scan_cstr(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in a temp path")
}

// ---- 2. hashes --------------------------------------------------------------------------

fn bench_hash(c: &mut Criterion) {
    let data = noise(64 * MIB, 1);
    let mut g = group(c, "hash", 3);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("blake3/64MiB", |b| {
        b.iter(|| blake3::hash(black_box(&data)))
    });
    g.bench_function("blake3_update_rayon/64MiB", |b| {
        b.iter(|| {
            let mut h = blake3::Hasher::new();
            h.update_rayon(black_box(&data));
            h.finalize()
        })
    });
    g.bench_function("xxh3_128/64MiB", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_128(black_box(&data)))
    });
    // Streaming, in the 256 KiB pieces the transfer reads files in.
    g.bench_function("Xxh3_streaming_256KiB/64MiB", |b| {
        b.iter(|| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for chunk in black_box(&data).chunks(protocol::CHUNK) {
                h.update(chunk);
            }
            h.digest128()
        })
    });
    g.finish();
}

// ---- 3. delta ---------------------------------------------------------------------------

const DELTA_LEN: usize = 64 * MIB;

/// An owned delta op, so the applier bench replays the same delta every iteration.
enum OwnedOp {
    Copy { offset: u64, len: u64 },
    Literal(Vec<u8>),
}

struct DeltaFixture {
    _dir: TempDir,
    basis: File,
    similar: File,
    unrelated: File,
    out: File,
    sig: delta::Signature,
    similar_ops: Vec<OwnedOp>,
}

fn build_delta() -> DeltaFixture {
    let dir = scratch();
    let write = |name: &str, bytes: &[u8]| -> File {
        let p = dir.path().join(name);
        fs::write(&p, bytes).expect("write delta fixture");
        File::open(&p).expect("open delta fixture")
    };
    let basis_bytes = noise(DELTA_LEN, 2);
    let mut similar_bytes = basis_bytes.clone();
    // 64 edits of 100 bytes, spread evenly (each lands in a different block).
    let stride = DELTA_LEN / 64;
    for (i, edit) in noise(64 * 100, 3).chunks(100).enumerate() {
        let at = i * stride + stride / 3;
        similar_bytes[at..at + 100].copy_from_slice(edit);
    }
    let basis = write("basis", &basis_bytes);
    let similar = write("similar", &similar_bytes);
    let unrelated = write("unrelated", &noise(DELTA_LEN, 4));
    drop((basis_bytes, similar_bytes));
    let out_path = dir.path().join("out");
    let out = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&out_path)
        .expect("create delta output");
    let len = DELTA_LEN as u64;
    let sig = delta::sign(&basis, 0, len, delta::block_size(len)).expect("sign basis");
    let mut similar_ops = Vec::new();
    delta::diff(&sig, &similar, 0, len, &mut |op| {
        similar_ops.push(match op {
            Op::Copy { offset, len } => OwnedOp::Copy { offset, len },
            Op::Literal(d) => OwnedOp::Literal(d.to_vec()),
        });
        Ok(())
    })
    .expect("diff similar");
    DeltaFixture {
        _dir: dir,
        basis,
        similar,
        unrelated,
        out,
        sig,
        similar_ops,
    }
}

/// Diffs `src` against the fixture's signature, returning (literal, matched) bytes.
fn run_diff(fx: &DeltaFixture, src: &File) -> (u64, u64) {
    let stats = delta::diff(&fx.sig, src, 0, DELTA_LEN as u64, &mut |op| {
        black_box(op);
        Ok(())
    })
    .expect("diff");
    (stats.literal, stats.matched)
}

fn bench_delta(c: &mut Criterion) {
    let len = DELTA_LEN as u64;
    let mut fx: Option<DeltaFixture> = None;
    let mut g = group(c, "delta", 6);
    g.throughput(Throughput::Bytes(len));
    g.bench_function("sign/64MiB", |b| {
        let fx = fx.get_or_insert_with(build_delta);
        b.iter(|| delta::sign(&fx.basis, 0, len, delta::block_size(len)).expect("sign"))
    });
    g.bench_function("diff_similar_64x100B/64MiB", |b| {
        let fx = fx.get_or_insert_with(build_delta);
        b.iter(|| {
            let (literal, _) = run_diff(fx, &fx.similar);
            assert!(literal < len / 16, "similar data should mostly match");
        })
    });
    g.bench_function("diff_unrelated/64MiB", |b| {
        let fx = fx.get_or_insert_with(build_delta);
        b.iter(|| {
            let (_, matched) = run_diff(fx, &fx.unrelated);
            assert_eq!(matched, 0, "unrelated data should not match");
        })
    });
    g.bench_function("apply_similar/64MiB", |b| {
        let fx = fx.get_or_insert_with(build_delta);
        b.iter(|| {
            let mut a = Applier::new(fx.basis.as_fd(), len, fx.out.as_fd(), 0);
            for op in &fx.similar_ops {
                a.apply(match op {
                    OwnedOp::Copy { offset, len } => Op::Copy {
                        offset: *offset,
                        len: *len,
                    },
                    OwnedOp::Literal(d) => Op::Literal(d),
                })
                .expect("apply");
            }
            assert_eq!(a.written(), len);
        })
    });
    g.bench_function("coarse_scan_1MiB/64MiB", |b| {
        let fx = fx.get_or_insert_with(build_delta);
        b.iter(|| delta::coarse_scan(&fx.basis, len, delta::coarse_block(len), true).expect("scan"))
    });
    g.finish();
    drop(fx);
}

// ---- 4. zstd ------------------------------------------------------------------------------

const TEXT_LEN: usize = 16 * MIB;

/// ~16 MiB of source-like text: lines of xsync's own sources, drawn in a deterministic
/// shuffled order, with every third line's numbers and identifiers perturbed, so the
/// stream has the local and long-range repetition of a source tree without being the same
/// few hundred KiB over and over (which any 8 MiB window would reduce to nothing).
fn source_text() -> Vec<u8> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names: Vec<_> = fs::read_dir(&src)
        .expect("read src/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    names.sort();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for p in names {
        let text = fs::read(&p).expect("read a source file");
        lines.extend(text.split(|&b| b == b'\n').map(|l| l.to_vec()));
    }
    let rand = noise(TEXT_LEN / 8, 5);
    let mut out = Vec::with_capacity(TEXT_LEN + 4096);
    let mut r = rand
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    // Runs of consecutive lines (like a file's body), from random places.
    while out.len() < TEXT_LEN {
        let x = r.next().unwrap_or(0);
        let start = (x % lines.len() as u64) as usize;
        let run = 1 + (x >> 32) as usize % 24;
        for (k, line) in lines.iter().skip(start).take(run).enumerate() {
            if k % 3 == 2 {
                let salt = (x >> 16) as u8;
                out.extend(line.iter().map(|&b| match b {
                    b'0'..=b'9' => b'0' + (((b - b'0') as u16 + salt as u16) % 10) as u8,
                    b'a'..=b'z' if b % 5 == salt % 5 => {
                        b'a' + (((b - b'a') as u16 + salt as u16) % 26) as u8
                    }
                    _ => b,
                }));
            } else {
                out.extend_from_slice(line);
            }
            out.push(b'\n');
        }
    }
    out.truncate(TEXT_LEN);
    out
}

/// Compresses as the protocol does: one stream fed 256 KiB at a time (its write buffer),
/// each piece sent as zstd produces it, one flush at the end.
fn compress_stream(text: &[u8], level: Setting) -> Vec<Vec<u8>> {
    let mut c = Compressor::new(level).expect("zstd encoder");
    let pieces: Vec<&[u8]> = text.chunks(protocol::CHUNK).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut z = Vec::with_capacity(piece.len() / 2);
            if i + 1 == pieces.len() {
                c.compress_flush(piece, &mut z).expect("compress");
            } else {
                c.compress_more(piece, &mut z).expect("compress");
            }
            z
        })
        .collect()
}

fn bench_zstd(c: &mut Criterion) {
    let mut text: Option<Vec<u8>> = None;
    let mut g = group(c, "zstd", 4);
    g.throughput(Throughput::Bytes(TEXT_LEN as u64));
    // The sender's per-file check for data with no telling suffix, on its 64 KiB sample.
    g.bench_function("worth_compressing/16MiB-in-64KiB-samples", |b| {
        let text = &*text.get_or_insert_with(source_text);
        b.iter(|| {
            black_box(text)
                .chunks(64 << 10)
                .filter(|s| xsync::compress::worth_compressing(s))
                .count()
        })
    });
    // The steps the tuner moves along (Deep: zstd 6 searching deeper).
    for level in [
        Setting::Zstd(1),
        Setting::Zstd(3),
        Setting::Deep,
        Setting::Zstd(9),
        Setting::Zstd(12),
    ] {
        let mut segments: Option<Vec<Vec<u8>>> = None;
        g.bench_function(format!("compress_flush/{level:?}/16MiB"), |b| {
            let text = text.get_or_insert_with(source_text);
            b.iter(|| compress_stream(black_box(text), level))
        });
        g.bench_function(format!("decompress/{level:?}/16MiB"), |b| {
            let text = text.get_or_insert_with(source_text);
            let segments = segments.get_or_insert_with(|| {
                let s = compress_stream(text, level);
                let z: usize = s.iter().map(Vec::len).sum();
                eprintln!(
                    "zstd {level:?}: {} -> {z} bytes, ratio {:.2}",
                    text.len(),
                    text.len() as f64 / z as f64
                );
                s
            });
            let mut out = Vec::with_capacity(2 * protocol::CHUNK);
            b.iter(|| {
                let mut d = Decompressor::new().expect("zstd decoder");
                let mut total = 0;
                for seg in segments.iter() {
                    out.clear();
                    d.decompress(seg, &mut out, protocol::MAX_FRAME)
                        .expect("decompress");
                    total += out.len();
                }
                assert_eq!(total, TEXT_LEN);
            })
        });
    }
    g.finish();
}

// ---- 5. protocol framing ------------------------------------------------------------------

/// One directory's listing as the sender sends it to a receiver that has none of it:
/// 1,000 files with typical names.
fn listing() -> Msg {
    let meta = Meta::from_stat(&rustix::fs::stat(env!("CARGO_MANIFEST_DIR")).expect("stat"));
    let entries = (0..1000u32)
        .map(|i| {
            let mut e = Entry::new(
                format!("module_{i:04}.rs").into_bytes().into_boxed_slice(),
                Meta {
                    kind: xsync::tree::Kind::File,
                    size: 1000 + 37 * i as u64,
                    ino: meta.ino + i as u64,
                    ..meta
                },
            );
            e.digest = u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            WireEntry::from_entry(&e)
        })
        .collect();
    Msg::Listing {
        dirs: vec![protocol::DirListing {
            same: Default::default(),
            new: entries,
        }],
    }
}

fn encode(msg: &Msg, out: &mut Vec<u8>) {
    out.clear();
    let mut w = Writer::new(&mut *out);
    w.send(msg).expect("encode");
    w.flush().expect("flush");
}

fn decode(bytes: &[u8]) -> Msg {
    Reader::new(bytes).recv().expect("decode")
}

fn bench_protocol(c: &mut Criterion) {
    let list = listing();
    let data = Msg::Data {
        id: 7,
        data: noise(protocol::CHUNK, 6),
        end: None,
    };
    let mut g = group(c, "protocol", 2);
    for (name, msg, tp) in [
        ("listing_1000", &list, Throughput::Elements(1000)),
        (
            "data_256KiB",
            &data,
            Throughput::Bytes(protocol::CHUNK as u64),
        ),
    ] {
        let mut buf = Vec::new();
        encode(msg, &mut buf);
        g.throughput(tp);
        g.bench_function(format!("encode/{name}"), |b| {
            let mut out = Vec::with_capacity(buf.len());
            b.iter(|| encode(black_box(msg), &mut out))
        });
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode(black_box(&buf)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_scan,
    bench_hash,
    bench_delta,
    bench_zstd,
    bench_protocol
);
criterion_main!(benches);
