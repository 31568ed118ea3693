//! Compression over a real sshd against rsync: bytes on the wire (counted on the ssh pipes by
//! benches/compare/count-bytes, for both tools alike) on a tree of real source code, and the
//! trees each way of choosing compression (by default, `-z`, `--no-compress`,
//! `--compress-level`) leaves. No test here asserts a time: which level the run picks
//! depends on the machine's speed, so what is asserted holds for any level it picks.
//!
//! The corpus is source text already on the machine, copied at test time: the crate sources
//! under cargo's registry (there on CI, which builds this crate first), else C headers from
//! /usr/include; with neither, the tests say SKIPPED.

use crate::delta::{counted, remote_dir};
use crate::sshd::Sshd;
use crate::util::{Compare, diff_trees, have_rsync, note, rsync, skip, slash, test_dir, xsync};
use std::fs;
use std::path::{Path, PathBuf};

/// About as much text as the acceptance figure was measured on, and quick in a debug build.
const CORPUS_BYTES: u64 = 32 << 20;
/// Less than this is no corpus to judge a compressor by.
const CORPUS_MIN: u64 = 5 << 20;

/// A corpus found on the machine: the files (relative to `root`) in path order, and the
/// most bytes xsync may send as a fraction of rsync's.
struct Corpus {
    what: String,
    root: PathBuf,
    files: Vec<PathBuf>,
    bytes: u64,
    bound: f64,
}

/// Every regular file under `dir` whose suffix is one of `suffixes`, relative to `root`.
fn walk(root: &Path, dir: &Path, suffixes: &[&str], out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        let p = e.path();
        if m.is_dir() {
            walk(root, &p, suffixes, out);
        } else if m.is_file()
            && p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| suffixes.contains(&x))
        {
            let rel = p.strip_prefix(root).expect("under root").to_path_buf();
            out.push((rel, m.len()));
        }
    }
}

/// The first [`CORPUS_BYTES`] of matching files under `root`, in path order (so the same
/// machine always yields the same corpus), or None if there are fewer than [`CORPUS_MIN`].
fn pick(what: &str, root: PathBuf, suffixes: &[&str], bound: f64) -> Option<Corpus> {
    let mut all = Vec::new();
    walk(&root, &root, suffixes, &mut all);
    all.sort();
    let (mut files, mut bytes) = (Vec::new(), 0);
    for (p, len) in all {
        if bytes + len > CORPUS_BYTES {
            break;
        }
        files.push(p);
        bytes += len;
    }
    (bytes >= CORPUS_MIN).then(|| Corpus {
        what: format!("{what} ({} files under {})", files.len(), root.display()),
        root,
        files,
        bytes,
        bound,
    })
}

fn corpus() -> Option<Corpus> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    // The acceptance figure: at most 0.8x rsync's bytes on source code (measured 0.76x on 40
    // MB of crate sources).
    pick(
        "crate sources",
        cargo_home.join("registry/src"),
        &["rs", "c", "h", "toml", "md"],
        0.8,
    )
    // On other text xsync gains less: 0.84x on these headers (0.82x on the kernel's fs/ and
    // on Python's standard library), so the fallback is held to a looser bound.
    .or_else(|| pick("C headers", PathBuf::from("/usr/include"), &["h"], 0.86))
}

/// Copies the corpus into `dst`, the tree both tools then sync.
fn copy_corpus(c: &Corpus, dst: &Path) {
    for rel in &c.files {
        let to = dst.join(rel);
        fs::create_dir_all(to.parent().expect("a file has a parent")).unwrap();
        fs::copy(c.root.join(rel), &to)
            .unwrap_or_else(|e| panic!("copy {:?}: {e}", c.root.join(rel)));
    }
}

/// Push or pull the corpus with `xsync -az XFLAGS` and `rsync -az` over the same sshd; checks
/// both results are the same tree and xsync's bytes are within `bound` of rsync's (None: the
/// corpus's own bound).
fn compare_with_rsync_z(test: &str, pull: bool, xflags: &[&str], bound: Option<f64>) {
    if !have_rsync(test) {
        return;
    }
    let Some(corpus) = corpus() else {
        skip(
            test,
            "no source text on this machine (cargo's registry/src or /usr/include)",
        );
        return;
    };
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = test_dir();
    let src = tmp.path().join("src");
    copy_corpus(&corpus, &src);
    let (dx, dr) = (tmp.path().join("dst-x"), tmp.path().join("dst-r"));
    // The remote side of each run is a path on this machine reached through sshd.
    let ends = |dst: &Path| {
        if pull {
            (remote_dir(&src).into(), slash(dst))
        } else {
            (slash(&src), remote_dir(dst).into())
        }
    };

    let mut r = rsync().expect("checked");
    let (from, to) = ends(&dr);
    r.arg("-az").arg(from).arg(to);
    let (rc, rerr, rbytes) = counted(r, &sshd, tmp.path(), "r");
    assert_eq!(rc, 0, "rsync failed: {rerr}");

    let mut x = xsync();
    let (from, to) = ends(&dx);
    x.arg("-az")
        .args(xflags)
        .arg("--xsync-path")
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(from)
        .arg(to);
    let (xc, xerr, xbytes) = counted(x, &sshd, tmp.path(), "x");
    assert_eq!(xc, 0, "xsync failed: {xerr}");

    // xsync's result is an exact `-a` copy of the source (times to the nanosecond), and the
    // same tree as rsync's apart from times: rsync 3.5 -z here now and then leaves a
    // directory's mtime at the time of the run (seen on CI in push and pull), which says
    // nothing about xsync.
    let diffs = diff_trees(&src, &dx, &Compare::for_flags(&["-a"]));
    assert!(
        diffs.is_empty(),
        "xsync's tree differs from the source:\n{}",
        diffs.join("\n")
    );
    let no_times = Compare {
        times: false,
        symlink_times: false,
        ..Compare::for_flags(&["-a"])
    };
    let diffs = diff_trees(&dx, &dr, &no_times);
    assert!(
        diffs.is_empty(),
        "xsync's tree differs from rsync's:\n{}",
        diffs.join("\n")
    );
    let ratio = xbytes as f64 / rbytes as f64;
    let bound = bound.unwrap_or(corpus.bound);
    note(&format!(
        "NOTE: {test}: {}, {} bytes: xsync -z {xflags:?} {xbytes} bytes, rsync -z {rbytes} bytes on the wire ({ratio:.3}x, bound {bound})",
        corpus.what, corpus.bytes
    ));
    assert!(xbytes > 0 && rbytes > 0, "byte counter saw nothing");
    assert!(
        ratio <= bound,
        "xsync -z {xflags:?} sent {xbytes} bytes, rsync -z {rbytes}: {ratio:.3}x, over {bound}x"
    );
}

// Plain -z starts at rsync's level (zstd 3) and only goes deeper, so on any link it sends no
// more than rsync -z. (On loopback it stays near zstd 3: 0.88x measured on crate sources.)
#[test]
fn compress_push_sends_no_more_than_rsync_z() {
    compare_with_rsync_z(this_test!(), false, &[], Some(1.0));
}

#[test]
fn compress_pull_sends_no_more_than_rsync_z() {
    compare_with_rsync_z(this_test!(), true, &[], Some(1.0));
}

// A deep level, as -z reaches on a slow link: at most 0.8x rsync -z's bytes on source code
// (the corpus's bound).
#[test]
fn a_deep_compress_level_sends_at_most_0_8_of_rsync_z_bytes() {
    compare_with_rsync_z(this_test!(), false, &["--compress-level=12"], None);
}

/// `xsync FLAGS` pushing `src` to `dst` over `sshd`, through count-bytes: (exit code,
/// stderr, bytes both ways).
fn push_counted(
    sshd: &Sshd,
    dir: &Path,
    flags: &[&str],
    src: &Path,
    dst: &Path,
) -> (i32, String, u64) {
    let mut x = xsync();
    x.args(flags)
        .arg("--xsync-path")
        .arg(env!("CARGO_BIN_EXE_xsync"))
        .arg(slash(src))
        .arg(remote_dir(dst));
    counted(x, sshd, dir, &format!("x{}", flags.join("")))
}

/// `--no-compress` sends the data bare: about its own size on the wire, where the default
/// run on the same text may compress it.
#[test]
fn no_compress_sends_the_data_raw() {
    let test = this_test!();
    let Some(corpus) = corpus() else {
        skip(test, "no source text on this machine");
        return;
    };
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = test_dir();
    let src = tmp.path().join("src");
    copy_corpus(&corpus, &src);
    for flags in [&["-a", "--no-compress"][..], &["-a", "-z", "--no-z"]] {
        let dst = tmp.path().join(format!("dst{}", flags.len()));
        let (rc, err, bytes) = push_counted(&sshd, tmp.path(), flags, &src, &dst);
        assert_eq!(rc, 0, "{flags:?}: {err}");
        let ratio = bytes as f64 / corpus.bytes as f64;
        note(&format!(
            "NOTE: {test}: {flags:?}: {bytes} bytes on the wire for {} bytes of files ({ratio:.3}x)",
            corpus.bytes
        ));
        // Frame headers, the file list and digests add a few percent, never a factor.
        assert!(
            (1.0..1.1).contains(&ratio),
            "{flags:?}: {bytes} bytes on the wire for {} bytes: not raw",
            corpus.bytes
        );
        let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
        assert!(diffs.is_empty(), "{flags:?}:\n{}", diffs.join("\n"));
    }
}

/// Under -z a file whose suffix is on rsync's --skip-compress list travels raw even when its
/// bytes would compress (rsync's rule: the suffix decides); the same bytes under another
/// name are compressed.
#[test]
fn already_compressed_suffixes_travel_raw() {
    let test = this_test!();
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = test_dir();
    let text = include_bytes!("compress.rs").repeat(200);
    for (name, raw) in [
        ("notes.txt.gz", true),
        ("photo.JPG", true),
        ("notes.txt", false),
    ] {
        let src = tmp.path().join(format!("src-{name}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join(name), &text).unwrap();
        let dst = tmp.path().join(format!("dst-{name}"));
        let (rc, err, bytes) = push_counted(&sshd, tmp.path(), &["-az"], &src, &dst);
        assert_eq!(rc, 0, "{name}: {err}");
        assert_eq!(fs::read(dst.join(name)).unwrap(), text, "{name}");
        let ratio = bytes as f64 / text.len() as f64;
        note(&format!(
            "NOTE: {test}: {name}: {bytes} bytes for {} ({ratio:.3}x)",
            text.len()
        ));
        if raw {
            assert!(
                ratio >= 1.0,
                "{name} was compressed: {bytes} bytes for {}",
                text.len()
            );
        } else {
            assert!(
                ratio < 0.2,
                "{name} was not compressed: {bytes} bytes for {}",
                text.len()
            );
        }
    }
}

/// `--compress-level` is zstd's level as rsync passes it: 0 is zstd's default, values past
/// either end are clamped, negative levels are zstd's fast ones, and a level turns
/// compression on even after --no-compress (rsync's rule, checked against rsync itself).
#[test]
fn compress_levels_map_onto_zstd_and_imply_compression() {
    let test = this_test!();
    if !have_rsync(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let tmp = test_dir();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let text = include_bytes!("compress.rs").repeat(100);
    fs::write(src.join("a.rs"), &text).unwrap();
    let mut sizes = Vec::new();
    for level in ["0", "1", "19", "99", "-5"] {
        let dst = tmp.path().join(format!("dst{level}"));
        let flag = format!("--compress-level={level}");
        let (rc, err, bytes) = push_counted(&sshd, tmp.path(), &["-a", &flag], &src, &dst);
        assert_eq!(rc, 0, "{flag}: {err}");
        assert_eq!(fs::read(dst.join("a.rs")).unwrap(), text, "{flag}");
        assert!(
            bytes < text.len() as u64 / 4,
            "{flag}: {bytes} bytes: not compressed"
        );
        sizes.push(bytes);
    }
    // Level 19 finds more than level 1 does.
    assert!(sizes[2] < sizes[1], "{sizes:?}");
    // As rsync: a level after --no-compress still compresses.
    let dx = tmp.path().join("dst-x");
    let (rc, err, xbytes) = push_counted(
        &sshd,
        tmp.path(),
        &["-a", "--no-compress", "--compress-level=9"],
        &src,
        &dx,
    );
    assert_eq!(rc, 0, "{err}");
    let mut r = rsync().expect("checked");
    r.args(["-a", "--no-compress", "--compress-level=9"])
        .arg(slash(&src))
        .arg(remote_dir(&tmp.path().join("dst-r")));
    let (rc, rerr, rbytes) = counted(r, &sshd, tmp.path(), "r");
    assert_eq!(rc, 0, "{rerr}");
    let half = text.len() as u64 / 2;
    assert!(
        xbytes < half && rbytes < half,
        "--no-compress --compress-level=9: xsync {xbytes}, rsync {rbytes} bytes for {}",
        text.len()
    );
}

/// A source tree for the default-flags cases: text that compresses, an already-compressed
/// suffix, incompressible bytes under a neutral name, and enough of each to fill several
/// of the writer's batches.
fn mixed_tree(root: &Path) {
    let text = include_bytes!("compress.rs");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.rs"), text.repeat(64)).unwrap();
    fs::write(root.join("sub/b.txt.gz"), text.repeat(16)).unwrap();
    fs::write(
        root.join("sub/noise.bin"),
        crate::util::pseudo_random(3, 3 << 20),
    )
    .unwrap();
    for i in 0..40 {
        fs::write(
            root.join(format!("sub/small{i}.c")),
            &text[..(i * 97) % text.len()],
        )
        .unwrap();
    }
    // Fixed times, so that trees built apart compare equal.
    let mut names: Vec<String> = vec!["a.rs".into(), "sub/b.txt.gz".into(), "sub/noise.bin".into()];
    names.extend((0..40).map(|i| format!("sub/small{i}.c")));
    names.extend(["sub".into(), ".".into()]);
    for rel in names {
        crate::util::set_mtime(&root.join(rel), 1_700_000_000, 0);
    }
}

/// Default flags over ssh (xsync compresses where it pays, rsync sends raw): the same trees
/// as rsync's, pushed and pulled, on a fresh destination, with nothing changed and after a
/// change.
#[test]
fn default_compression_makes_rsyncs_trees_both_ways() {
    for direction in [
        crate::remote::Direction::Push,
        crate::remote::Direction::Pull,
    ] {
        crate::remote::remote_case(
            &format!("{} ({direction:?})", this_test!()),
            &crate::util::simple_case(&["-a"], true, crate::util::Fixture::with_src(mixed_tree)),
            direction,
        );
    }
}

/// The same with -z and with --no-compress: every form of the stream carries the same tree.
#[test]
fn z_and_no_compress_make_rsyncs_trees_both_ways() {
    for flags in [&["-az"][..], &["-a", "--no-compress"]] {
        for direction in [
            crate::remote::Direction::Push,
            crate::remote::Direction::Pull,
        ] {
            crate::remote::remote_case(
                &format!("{} ({flags:?} {direction:?})", this_test!()),
                &crate::util::simple_case(flags, true, crate::util::Fixture::with_src(mixed_tree)),
                direction,
            );
        }
    }
}

/// A local copy has no wire, so compression does not apply: the default copies rsync's tree,
/// and -z or a level copy the source exactly. (Not compared with rsync -z, which here now and
/// then leaves a directory's mtime at the time of the run; see above.)
#[test]
fn a_local_copy_with_or_without_z_copies_the_tree() {
    let test = this_test!();
    crate::util::differential(
        test,
        &["-a"],
        true,
        crate::util::Fixture::with_src(mixed_tree),
    );
    let tmp = test_dir();
    let src = tmp.path().join("src");
    mixed_tree(&src);
    for flags in [&["-az"][..], &["-a", "--compress-level=19"]] {
        let dst = tmp.path().join(format!("dst{}", flags.len()));
        let out = crate::util::run(xsync().args(flags).arg(slash(&src)).arg(slash(&dst)));
        assert_eq!(
            crate::util::code(&out),
            0,
            "{flags:?}: {}",
            crate::util::stderr(&out)
        );
        let diffs = diff_trees(&src, &dst, &Compare::for_flags(&["-a"]));
        assert!(diffs.is_empty(), "{flags:?}:\n{}", diffs.join("\n"));
    }
}
