//! Differential tests: `xsync::filter::Filters` against real rsync.
//!
//! For each filter set, rsync copies (or `--delete`-syncs) a fixture tree for real and
//! the surviving destination tree is compared with what the filter module predicts,
//! walking the source the way a scanner does (never descending into an excluded
//! directory) and modelling rsync's deletion pass (protected entries survive and pin
//! their parent directories).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use xsync::filter::{Filters, RuleKind, Side};

/// Source tree: names ending in '/' are directories. Chosen so each rule kind below
/// has something to hit and something it must miss.
const SRC_TREE: &[&[u8]] = &[
    b"a.c",
    b"a.o",
    b"b.c",
    b"b.txt",
    b"ab.c",
    b"core",
    b"important.o",
    b"keep.txt",
    b"Abc.TXT",
    b"9lives.txt",
    b"sp ace.txt",
    b"back\\slash",
    b"x?y",
    b"xzy",
    b"[br].txt",
    b"caf\xe9.o",
    b"-dash",
    b"!bang",
    b"build/",
    b"build/out.o",
    b"build/log.txt",
    b"build/sub/",
    b"build/sub/x.o",
    b"cache/",
    b"cache/c.txt",
    b"docs/",
    b"docs/readme.md",
    b"docs/guide.md",
    b"docs/build/",
    b"docs/build/b.md",
    b"docs/img/",
    b"docs/img/logo.png",
    b"docs/core",
    b"src/",
    b"src/main.c",
    b"src/main.o",
    b"src/util.h",
    b"src/lib/",
    b"src/lib/deep.c",
    b"src/lib/deep.o",
    b"src/lib/core/",
    b"src/lib/core/inner.c",
    b"src/lib/cache/",
    b"src/lib/cache/z.c",
    b"a/",
    b"a/b/",
    b"a/b/d.txt",
    b"x/",
    b"x/a/",
    b"x/a/b/",
    b"x/a/b/e.txt",
    b"foo/",
    b"foo/cache",
    b"emptydir/",
    b"tmp/",
    b"tmp/t.c",
];

/// Extra destination content for the `--delete` cases.
const DST_EXTRA: &[&[u8]] = &[
    b"a.o",
    b"b.txt",
    b"extra.keep",
    b"extra.txt",
    b"extra.o",
    b"important.keep",
    b"old/",
    b"old/y.txt",
    b"old/z.o",
    b"old/sub/",
    b"old/sub/x.keep",
    b"build/",
    b"build/stale.o",
    b"docs/",
    b"docs/stale.md",
    b"src/",
    b"src/lib/",
    b"src/lib/gone.c",
    b"src/lib/gone.keep",
];

/// Contents of `@RULES`, the file handed to `--exclude-from`.
const RULES_FILE: &[u8] =
    b"# a comment\n; another comment\n\n+ important.o\n*.o\r\ndocs/\ncaf\xe9*\n";

/// Filter sets for the sender side (what gets transferred).
const SENDER_CASES: &[&[&str]] = &[
    &["--exclude=/build"],
    &["--exclude=build"],
    &["--exclude=lib/deep.c"],
    &["--exclude=a/b"],
    &["--exclude=cache/"],
    &["--exclude=*.o"],
    &["--exclude=/src/**/*.c"],
    &["--exclude=**/core"],
    &["--exclude=lib/**"],
    &["--exclude=*/lib/*"],
    &["--exclude=?.c"],
    &["--exclude=[ab].*"],
    &["--exclude=[!a]*.txt"],
    &["--exclude=[[:digit:]]*"],
    &["--exclude=[A-Z]*"],
    &["--exclude=\\[br]*"],
    &["--include=/src/***", "--exclude=/*"],
    &["--exclude=/src/lib/***"],
    &["--include=*/", "--include=*.c", "--exclude=*"],
    &["--filter=- *.o"],
    &["--exclude-from=@RULES"],
    &["--include-from=@RULES", "--exclude=*"],
    &["--exclude=docs"],
    &["--filter=-! */"],
    &["--filter=- back\\slash"],
    &["--exclude=x\\?y"],
    &["--exclude=+ a.c", "--exclude=*.c"],
    &["--exclude=*.c", "--exclude=!", "--exclude=*.o"],
    &["--filter=exclude,s *.txt"],
    &["--filter=S readme.md", "--filter=H *.md"],
    &["--filter=-,r *.o"],
    &["--exclude=* *"],
    &["--exclude=-dash", "--exclude=!bang"],
    &["--filter=+ */", "--filter=+ **/lib/*.c", "--filter=- *"],
    &["--exclude=**.o"],
    &["--exclude=src/**"],
];

/// Filter sets for the receiver side; all run with `--delete`.
const RECEIVER_CASES: &[&[&str]] = &[
    &["--filter=P *.keep"],
    &["--exclude=*.keep"],
    &["--delete-excluded", "--exclude=*.keep"],
    &["--filter=H *.txt"],
    &["--filter=-,r *.keep", "--filter=-,s *.o"],
    &["--delete-excluded", "--filter=P old/", "--exclude=*.o"],
    &["--filter=R important.keep", "--filter=P *.keep"],
    &["--exclude=/old"],
    &["--filter=protect old/sub/"],
    &[
        "--delete-excluded",
        "--filter=-sr *.keep",
        "--exclude=*.txt",
    ],
    &["--filter=P /src/lib/***"],
];

fn rsync_available() -> bool {
    Command::new("rsync")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn build_tree(root: &Path, entries: &[&[u8]]) {
    fs::create_dir_all(root).unwrap();
    for e in entries {
        let p = root.join(OsStr::from_bytes(e.strip_suffix(b"/").unwrap_or(e)));
        if e.ends_with(b"/") {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::write(&p, e).unwrap();
        }
    }
}

/// Every entry below `root` as a relative path, directories with a trailing '/'.
fn list_tree(root: &Path) -> BTreeSet<Vec<u8>> {
    fn walk(dir: &Path, prefix: &[u8], out: &mut BTreeSet<Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let mut rel = prefix.to_vec();
            rel.extend_from_slice(entry.file_name().as_bytes());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &[&rel[..], b"/"].concat(), out);
                rel.push(b'/');
            }
            out.insert(rel);
        }
    }
    let mut out = BTreeSet::new();
    walk(root, b"", &mut out);
    out
}

/// The filter module's view of a command line, plus whether `--delete-excluded` is on.
fn filters_from_args(args: &[&str], rules_file: &Path) -> (Filters, bool) {
    let mut f = Filters::new();
    let mut delete_excluded = false;
    for arg in args {
        let (opt, val) = arg.split_once('=').unwrap_or((arg, ""));
        let file = || {
            if val == "@RULES" {
                rules_file.to_path_buf()
            } else {
                PathBuf::from(val)
            }
        };
        let res = match opt {
            "--exclude" => f.add_pattern(val, RuleKind::Exclude),
            "--include" => f.add_pattern(val, RuleKind::Include),
            "--filter" => f.add_rule(val),
            "--exclude-from" => f.add_from_file(&file(), RuleKind::Exclude, false),
            "--include-from" => f.add_from_file(&file(), RuleKind::Include, false),
            "--delete-excluded" => {
                delete_excluded = true;
                Ok(())
            }
            _ => panic!("test table uses unknown option {arg}"),
        };
        res.unwrap_or_else(|e| panic!("{arg}: {e}"));
    }
    (f, delete_excluded)
}

fn rsync_args(args: &[&str], rules_file: &Path) -> Vec<String> {
    let rules = rules_file.to_str().unwrap();
    args.iter().map(|a| a.replace("@RULES", rules)).collect()
}

/// What the sender transfers: walk the source, skipping excluded entries and never
/// descending into an excluded directory.
fn predicted_transfer(f: &Filters, src: &Path, delete_excluded: bool) -> BTreeSet<Vec<u8>> {
    list_tree(src)
        .into_iter()
        .filter(|p| {
            // An entry is sent when it and each parent directory are not excluded.
            let path = p.strip_suffix(b"/").unwrap_or(p);
            let mut ok = !f.excluded(Side::Sender, path, p.ends_with(b"/"), delete_excluded);
            for (i, &b) in path.iter().enumerate() {
                if b == b'/' {
                    ok &= !f.excluded(Side::Sender, &path[..i], true, delete_excluded);
                }
            }
            ok
        })
        .collect()
}

/// What survives in `dst` after `--delete`: a receiver-excluded entry survives with
/// everything below it; any other entry survives only if it was sent or (for a
/// directory) if something below it survives.
fn predicted_after_delete(
    f: &Filters,
    dst_before: &BTreeSet<Vec<u8>>,
    sent: &BTreeSet<Vec<u8>>,
    delete_excluded: bool,
) -> BTreeSet<Vec<u8>> {
    fn keep(
        f: &Filters,
        de: bool,
        p: &[u8],
        before: &BTreeSet<Vec<u8>>,
        sent: &BTreeSet<Vec<u8>>,
        out: &mut BTreeSet<Vec<u8>>,
    ) -> bool {
        let is_dir = p.ends_with(b"/");
        let path = p.strip_suffix(b"/").unwrap_or(p);
        let children: Vec<&Vec<u8>> = before
            .iter()
            .filter(|c| {
                c.len() > p.len()
                    && c.starts_with(p)
                    && is_dir
                    && !c[p.len()..c.len() - 1].contains(&b'/')
            })
            .collect();
        if f.excluded(Side::Receiver, path, is_dir, de) {
            out.insert(p.to_vec());
            out.extend(
                before
                    .iter()
                    .filter(|c| c.starts_with(p) && is_dir)
                    .cloned(),
            );
            return true;
        }
        let mut kept = sent.contains(p);
        for c in children {
            kept |= keep(f, de, c, before, sent, out);
        }
        if kept {
            out.insert(p.to_vec());
        }
        kept
    }
    let mut out = sent.clone();
    let top: Vec<&Vec<u8>> = dst_before
        .iter()
        .filter(|p| !p[..p.len() - 1].contains(&b'/'))
        .collect();
    for p in top {
        keep(f, delete_excluded, p, dst_before, sent, &mut out);
    }
    out
}

fn run_rsync(extra: &[&str], args: &[String], src: &Path, dst: &Path) {
    let out = Command::new("rsync")
        .arg("-r")
        .args(extra)
        .args(args)
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn describe_diff(args: &[&str], rsync: &BTreeSet<Vec<u8>>, ours: &BTreeSet<Vec<u8>>) -> String {
    let show = |s: Vec<&Vec<u8>>| {
        s.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "filters {args:?}\n  only rsync keeps: [{}]\n  only xsync keeps: [{}]",
        show(rsync.difference(ours).collect()),
        show(ours.difference(rsync).collect())
    )
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
    rules: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let src = root.join("src");
    build_tree(&src, SRC_TREE);
    let rules = root.join("rules");
    fs::write(&rules, RULES_FILE).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        src,
        rules,
    }
}

#[test]
fn sender_side_matches_rsync() {
    if !rsync_available() {
        eprintln!("SKIPPED: rsync not installed");
        return;
    }
    let fx = fixture();
    let mut failures = Vec::new();
    for (i, args) in SENDER_CASES.iter().enumerate() {
        let dst = fx.root.join(format!("send{i}"));
        run_rsync(&[], &rsync_args(args, &fx.rules), &fx.src, &dst);
        let (f, de) = filters_from_args(args, &fx.rules);
        let rsync = list_tree(&dst);
        let ours = predicted_transfer(&f, &fx.src, de);
        if rsync != ours {
            failures.push(describe_diff(args, &rsync, &ours));
        }
    }
    let n = SENDER_CASES.len();
    eprintln!(
        "sender side: {}/{n} filter sets agree with rsync",
        n - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn receiver_side_matches_rsync() {
    if !rsync_available() {
        eprintln!("SKIPPED: rsync not installed");
        return;
    }
    let fx = fixture();
    let mut failures = Vec::new();
    for (i, args) in RECEIVER_CASES.iter().enumerate() {
        let dst = fx.root.join(format!("recv{i}"));
        build_tree(&dst, DST_EXTRA);
        let before = list_tree(&dst);
        run_rsync(&["--delete"], &rsync_args(args, &fx.rules), &fx.src, &dst);
        let (f, de) = filters_from_args(args, &fx.rules);
        let rsync = list_tree(&dst);
        let sent = predicted_transfer(&f, &fx.src, de);
        let ours = predicted_after_delete(&f, &before, &sent, de);
        if rsync != ours {
            failures.push(describe_diff(args, &rsync, &ours));
        }
    }
    let n = RECEIVER_CASES.len();
    eprintln!(
        "receiver side: {}/{n} filter sets agree with rsync",
        n - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Random rules built from rsync's pattern pieces and rule spellings, a fixed seed so
/// a failure reproduces; catches corner cases a hand-written table misses.
#[test]
fn random_rules_match_rsync() {
    if !rsync_available() {
        eprintln!("SKIPPED: rsync not installed");
        return;
    }
    const PIECES: &[&str] = &[
        "*",
        "**",
        "***",
        "?",
        "a",
        "b",
        "c",
        "/",
        "[ab]",
        "[!a]",
        "[^b]",
        "\\",
        ".",
        "[a-c]",
        "]",
        "[[:alpha:]]",
        "lib",
    ];
    const KINDS: &[&str] = &[
        "- ", "+ ", "-! ", "-,s ", "exclude ", "include_", "-!,s ", "+s ", "-rs ", "H ", "S ",
        "P ", "! ", "-", "+q ", "hide,! ", "exclude,", "excl ",
    ];
    let fx = fixture();
    let mut seed: u64 = 0x5eed;
    let mut rnd = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let mut failures = Vec::new();
    let cases = 60;
    for i in 0..cases {
        let mut rules: Vec<String> = (0..1 + rnd(2))
            .map(|_| {
                let pat: String = (0..1 + rnd(4)).map(|_| PIECES[rnd(PIECES.len())]).collect();
                format!("{}{pat}", KINDS[rnd(KINDS.len())])
            })
            .collect();
        if rnd(2) == 0 {
            rules.push("- *".into());
        }
        let args: Vec<String> = rules.iter().map(|r| format!("--filter={r}")).collect();
        let dst = fx.root.join(format!("rand{i}"));
        let out = Command::new("rsync")
            .arg("-r")
            .args(&args)
            .arg(format!("{}/", fx.src.display()))
            .arg(format!("{}/", dst.display()))
            .output()
            .unwrap();
        let mut f = Filters::new();
        let ours = rules.iter().try_for_each(|r| f.add_rule(r));
        match (out.status.success(), ours) {
            (true, Ok(())) => {
                let rsync = list_tree(&dst);
                let predicted = predicted_transfer(&f, &fx.src, false);
                if rsync != predicted {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    failures.push(describe_diff(&args, &rsync, &predicted));
                }
            }
            (false, Err(_)) => {}
            (ok, res) => failures.push(format!(
                "filters {rules:?}: rsync {} but xsync says {res:?}",
                if ok { "accepts them" } else { "rejects them" }
            )),
        }
    }
    eprintln!(
        "random rules: {}/{cases} agree with rsync",
        cases - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
