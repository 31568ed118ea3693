//! The command line: rsync's spellings and meanings for the options xsync supports, turned
//! into [`Options`].
//!
//! Anything rsync accepts that xsync does not is rejected by clap as an unknown option and
//! mapped to exit 1 — never silently ignored. `-h` is rsync's `--human-readable`, not help.

use crate::error::Error;
use crate::exit::ExitCode;
use crate::filter::{Filters, RuleKind};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::path::Path;

#[derive(Parser, Debug)]
#[command(
    name = "xsync",
    about = "xsync: fast, atomic, rsync-compatible file replication",
    override_usage = "xsync [OPTION]... SRC [SRC]... DEST\n       xsync [OPTION]... SRC [SRC]... [USER@]HOST:DEST\n       xsync [OPTION]... [USER@]HOST:SRC [DEST]",
    disable_help_flag = true,
    disable_version_flag = true,
    // rsync takes an option twice (`-a -avz`, a script's `$OPTS` repeating one): a flag stays
    // on, a value's last spelling wins, lists keep appending.
    args_override_self = true,
    max_term_width = 100
)]
struct Cli {
    /// increase verbosity
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,
    /// suppress non-error messages
    #[arg(short, long)]
    quiet: bool,
    /// skip based on checksum, not mod-time & size
    #[arg(short, long)]
    checksum: bool,
    /// archive mode is -rlptgoD (no -A,-X,-U,-N,-H)
    #[arg(short, long)]
    archive: bool,
    /// recurse into directories
    #[arg(short, long)]
    recursive: bool,
    #[arg(long = "no-recursive", alias = "no-r", hide = true)]
    no_recursive: bool,
    /// copy symlinks as symlinks
    #[arg(short, long)]
    links: bool,
    #[arg(long = "no-links", alias = "no-l", hide = true)]
    no_links: bool,
    /// preserve permissions
    #[arg(short, long)]
    perms: bool,
    #[arg(long = "no-perms", alias = "no-p", hide = true)]
    no_perms: bool,
    /// preserve modification times
    #[arg(short, long)]
    times: bool,
    #[arg(long = "no-times", alias = "no-t", hide = true)]
    no_times: bool,
    /// preserve group
    #[arg(short, long)]
    group: bool,
    #[arg(long = "no-group", alias = "no-g", hide = true)]
    no_group: bool,
    /// preserve owner (super-user only)
    #[arg(short, long)]
    owner: bool,
    #[arg(long = "no-owner", alias = "no-o", hide = true)]
    no_owner: bool,
    /// same as --devices --specials
    #[arg(short = 'D')]
    devices_specials: bool,
    #[arg(long = "no-D", hide = true)]
    no_devices_specials: bool,
    /// preserve device files (super-user only)
    #[arg(long)]
    devices: bool,
    #[arg(long = "no-devices", hide = true)]
    no_devices: bool,
    /// preserve special files
    #[arg(long)]
    specials: bool,
    #[arg(long = "no-specials", hide = true)]
    no_specials: bool,
    /// preserve hard links
    #[arg(short = 'H', long = "hard-links")]
    hard_links: bool,
    /// turn sequences of nulls into sparse blocks
    #[arg(short = 'S', long)]
    sparse: bool,
    /// don't cross filesystem boundaries
    #[arg(short = 'x', long = "one-file-system")]
    one_file_system: bool,
    /// perform a trial run with no changes made
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// skip files based on size only, not mod-time
    #[arg(long = "size-only")]
    size_only: bool,
    /// skip files that are newer on the receiver
    #[arg(short, long)]
    update: bool,
    /// skip updating files that exist on receiver
    #[arg(long = "ignore-existing")]
    ignore_existing: bool,
    /// skip creating new files on receiver
    #[arg(long = "existing", alias = "ignore-non-existing")]
    existing: bool,
    /// keep partially transferred files (they become the next run's delta basis)
    #[arg(long)]
    partial: bool,
    /// put a partially transferred file into DIR (a name relative to its directory)
    #[arg(long = "partial-dir", value_name = "DIR")]
    partial_dir: Option<String>,
    /// update destination files in-place (not atomic: an interrupted file is left part updated)
    #[arg(long)]
    inplace: bool,
    /// copy files whole (w/o delta-xfer algorithm)
    #[arg(short = 'W', long = "whole-file")]
    whole_file: bool,
    #[arg(long = "no-whole-file", alias = "no-W", hide = true)]
    no_whole_file: bool,
    /// delete extraneous files from dest dirs
    #[arg(long, alias = "del", alias = "delete-during")]
    delete: bool,
    /// also delete excluded files from dest dirs
    #[arg(long = "delete-excluded")]
    delete_excluded: bool,
    /// don't delete more than NUM files
    #[arg(long = "max-delete", value_name = "NUM", allow_negative_numbers = true)]
    max_delete: Option<i64>,
    /// exclude files matching PATTERN
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append)]
    exclude: Vec<String>,
    /// don't exclude files matching PATTERN
    #[arg(long, value_name = "PATTERN", action = ArgAction::Append)]
    include: Vec<String>,
    /// read exclude patterns from FILE
    #[arg(long = "exclude-from", value_name = "FILE", action = ArgAction::Append)]
    exclude_from: Vec<OsString>,
    /// read include patterns from FILE
    #[arg(long = "include-from", value_name = "FILE", action = ArgAction::Append)]
    include_from: Vec<OsString>,
    /// add a file-filtering RULE
    #[arg(short = 'f', long, value_name = "RULE", action = ArgAction::Append)]
    filter: Vec<String>,
    /// don't map uid/gid values by user/group name
    #[arg(long = "numeric-ids")]
    numeric_ids: bool,
    /// create destination's missing path components
    #[arg(long)]
    mkpath: bool,
    /// output numbers in a human-readable format
    #[arg(short = 'h', long = "human-readable", action = ArgAction::Count)]
    human_readable: u8,
    /// output a change-summary for all updates
    #[arg(short = 'i', long = "itemize-changes", action = ArgAction::Count)]
    itemize: u8,
    /// give some file-transfer stats
    #[arg(long)]
    stats: bool,
    /// compress file data during the transfer (zstd; no effect on a local copy, as in rsync)
    #[arg(short = 'z', long)]
    compress: bool,
    /// explicitly set compression level
    #[arg(long = "compress-level", value_name = "NUM")]
    compress_level: Option<i32>,
    /// specify the remote shell to use
    #[arg(short = 'e', long = "rsh", value_name = "COMMAND")]
    rsh: Option<String>,
    /// specify the xsync to run on the remote machine
    #[arg(long = "xsync-path", value_name = "PROGRAM")]
    xsync_path: Option<String>,
    /// rsync's spelling: the same, with its `rsync` word run as `xsync` (`"sudo rsync"`)
    #[arg(long = "rsync-path", value_name = "PROGRAM")]
    rsync_path: Option<String>,
    /// set I/O timeout in seconds (0: none; a local copy has no connection to time out)
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    timeout: Option<i64>,
    /// limit socket I/O bandwidth (KiB/s; suffixes K, M, G, KB = 1000; 0: no limit)
    #[arg(long, value_name = "RATE")]
    bwlimit: Option<String>,
    /// daemon connection timeout: refused, as rsync refuses it without a daemon
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    contimeout: Option<String>,
    /// names travel inside the protocol, never through the remote shell (always on)
    #[arg(short = 's', long = "secluded-args", alias = "protect-args")]
    secluded_args: bool,
    #[arg(
        long = "no-secluded-args",
        alias = "no-protect-args",
        alias = "no-s",
        hide = true
    )]
    no_secluded_args: bool,
    /// the remote shell's word-splitting of remote paths, as rsync before 3.2.4
    #[arg(long = "old-args", action = ArgAction::Count)]
    old_args: u8,
    #[arg(long = "no-old-args", hide = true)]
    no_old_args: bool,
    /// prefer IPv4 (passed to ssh as -4)
    #[arg(short = '4', long = "ipv4", overrides_with = "ipv6")]
    ipv4: bool,
    /// prefer IPv6 (passed to ssh as -6)
    #[arg(short = '6', long = "ipv6", overrides_with = "ipv4")]
    ipv6: bool,
    /// use blocking I/O for the remote shell (xsync's pipes always are)
    #[arg(long = "blocking-io")]
    blocking_io: bool,
    #[arg(long = "no-blocking-io", hide = true)]
    no_blocking_io: bool,
    /// print version number
    #[arg(long = "version", short = 'V')]
    version: bool,
    /// show this help
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// SRC... DEST
    #[arg(value_name = "SRC... DEST")]
    paths: Vec<OsString>,
}

/// What a run was asked to do, with rsync's implications (`-a`, `--no-X`, `-D`) resolved.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub verbose: u8,
    pub quiet: bool,
    pub checksum: bool,
    pub recursive: bool,
    pub links: bool,
    pub perms: bool,
    pub times: bool,
    pub group: bool,
    pub owner: bool,
    pub devices: bool,
    pub specials: bool,
    pub hard_links: bool,
    pub sparse: bool,
    pub one_file_system: bool,
    pub dry_run: bool,
    pub size_only: bool,
    pub update: bool,
    pub ignore_existing: bool,
    pub existing: bool,
    pub partial: bool,
    /// `--partial-dir`: one path component, created beside the file.
    pub partial_dir: Option<String>,
    pub inplace: bool,
    /// `Some(true)` for -W, `Some(false)` for --no-whole-file, `None` for the transport's default.
    pub whole_file: Option<bool>,
    pub delete: bool,
    pub delete_excluded: bool,
    pub max_delete: Option<u64>,
    pub filters: Filters,
    pub numeric_ids: bool,
    pub mkpath: bool,
    pub human_readable: u8,
    pub itemize: bool,
    pub stats: bool,
    pub compress: bool,
    pub compress_level: Option<i32>,
    pub rsh: Option<String>,
    pub xsync_path: Option<String>,
    /// `--timeout`: the longest the connection may stand still (None: forever).
    pub timeout: Option<u32>,
    /// `--bwlimit`, in rsync's unit: KiB per second (None: no limit).
    pub bwlimit: Option<u64>,
    /// `--old-args`: the server splits each remote path into words, as a remote shell would.
    pub old_args: bool,
    /// `-4`/`-6`: the address family ssh is told to use.
    pub ip_family: Option<IpFamily>,
    pub paths: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

/// What the command line asks for: a transfer, or just the version text.
pub enum Parsed {
    Run(Box<Options>),
    Version,
    /// `--help` or a clap-rendered message that is not an error (exit 0).
    Help(String),
}

pub fn parse<I, T>(args: I) -> Result<Parsed, Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return clap_error(e),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::usage(e.to_string()))?;
    if cli.version {
        return Ok(Parsed::Version);
    }
    let mut filters = ordered_filters(&matches)?;
    if let Some(d) = &cli.partial_dir {
        if d.is_empty() || d == "." || d == ".." || d.contains('/') {
            return Err(Error::usage(format!(
                "--partial-dir `{d}`: only a plain directory name (created beside each file) is supported"
            )));
        }
        // rsync protects the partial dir from --delete the same way.
        filters
            .add_rule(&format!("P {d}/"))
            .map_err(|e| Error::usage(e.to_string()))?;
    }
    let a = cli.archive;
    if (cli.delete || cli.delete_excluded) && !((cli.recursive || a) && !cli.no_recursive) {
        return Err(Error::usage(
            "--delete does not work without --recursive (-r) or --dirs (-d).",
        ));
    }
    let max_delete = cli.max_delete.map(|n| n.max(0) as u64);
    if cli.contimeout.is_some() {
        // rsync's words: --contimeout only means something for a daemon connection, which
        // xsync does not make.
        return Err(Error::usage(
            "The --contimeout option may only be used when connecting to an rsync daemon.",
        ));
    }
    let old_args = cli.old_args > 0 && !cli.no_old_args;
    if old_args && cli.secluded_args && !cli.no_secluded_args {
        return Err(Error::usage("--secluded-args conflicts with --old-args."));
    }
    let bwlimit = match &cli.bwlimit {
        Some(rate) => parse_bwlimit(rate).map_err(Error::usage)?,
        None => None,
    };
    let opts = Options {
        verbose: cli.verbose,
        quiet: cli.quiet,
        checksum: cli.checksum,
        recursive: (cli.recursive || a) && !cli.no_recursive,
        links: (cli.links || a) && !cli.no_links,
        perms: (cli.perms || a) && !cli.no_perms,
        times: (cli.times || a) && !cli.no_times,
        group: (cli.group || a) && !cli.no_group,
        owner: (cli.owner || a) && !cli.no_owner,
        devices: (cli.devices || cli.devices_specials || a)
            && !cli.no_devices
            && !cli.no_devices_specials,
        specials: (cli.specials || cli.devices_specials || a)
            && !cli.no_specials
            && !cli.no_devices_specials,
        hard_links: cli.hard_links,
        sparse: cli.sparse,
        one_file_system: cli.one_file_system,
        dry_run: cli.dry_run,
        size_only: cli.size_only,
        update: cli.update,
        ignore_existing: cli.ignore_existing,
        existing: cli.existing,
        // rsync: --inplace and --partial-dir imply --partial.
        partial: cli.partial || cli.inplace || cli.partial_dir.is_some(),
        partial_dir: cli.partial_dir,
        inplace: cli.inplace,
        whole_file: if cli.no_whole_file {
            Some(false)
        } else if cli.whole_file {
            Some(true)
        } else {
            None
        },
        delete: cli.delete || cli.delete_excluded,
        delete_excluded: cli.delete_excluded,
        max_delete,
        filters,
        numeric_ids: cli.numeric_ids,
        mkpath: cli.mkpath,
        human_readable: cli.human_readable,
        itemize: cli.itemize > 0,
        stats: cli.stats,
        compress: cli.compress,
        compress_level: cli.compress_level,
        rsh: cli.rsh,
        xsync_path: cli
            .xsync_path
            .or(cli.rsync_path.map(|p| rsync_path_as_xsync(&p))),
        // rsync takes any integer; a negative one, like 0, sets no limit.
        timeout: cli
            .timeout
            .filter(|&t| t > 0)
            .map(|t| t.min(u32::MAX as i64) as u32),
        bwlimit,
        old_args,
        ip_family: if cli.ipv4 {
            Some(IpFamily::V4)
        } else if cli.ipv6 {
            Some(IpFamily::V6)
        } else {
            None
        },
        paths: cli.paths,
    };
    Ok(Parsed::Run(Box::new(opts)))
}

/// rsync's `--bwlimit` value: a number, maybe fractional, with an optional unit (`K`
/// when none: KiB; `B` bytes, `K`, `M`, `G`, `T`, `P`; `KB`… for powers of 1000,
/// `KiB`… for powers of 1024) and an optional `+1`/`-1`. Like rsync, less than 512 bytes
/// per second is refused unless it is 0 (no limit), and the rate is rounded to whole KiB.
fn parse_bwlimit(arg: &str) -> Result<Option<u64>, String> {
    let invalid = || format!("--bwlimit={arg} is invalid");
    if arg.starts_with('-') {
        // rsync reads the number with atof, so a negative one is a negative size.
        return Err(format!("--bwlimit={arg} is too large"));
    }
    let b = arg.as_bytes();
    let mut i = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if b.get(i) == Some(&b'.') {
        i += 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    let number = &arg[..i];
    let mut rest = &arg[i..];
    let unit = match rest.bytes().next() {
        Some(c) if c != b'+' && c != b'-' => {
            rest = &rest[1..];
            c.to_ascii_lowercase()
        }
        _ => b'k',
    };
    let reps = match unit {
        b'b' => 0,
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(invalid()),
    };
    let mult: f64 = if rest.starts_with(['b', 'B']) {
        rest = &rest[1..];
        1000.0
    } else if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case("ib") {
        rest = &rest[2..];
        1024.0
    } else {
        1024.0
    };
    // atof: a missing number is 0 (`--bwlimit=K` is no limit, as in rsync).
    let mut size = mult.powi(reps) * number.parse::<f64>().unwrap_or(0.0);
    if let Some(adj) = rest.strip_prefix('+').or(rest.strip_prefix('-'))
        && adj.starts_with('1')
        && !number.is_empty()
    {
        size += if rest.starts_with('-') { -1.0 } else { 1.0 };
        rest = &adj[1..];
    }
    if !rest.is_empty() {
        return Err(invalid());
    }
    let size = size as i64;
    if size < 0 {
        return Err(format!("--bwlimit={arg} is too large"));
    }
    if size == 0 {
        return Ok(None);
    }
    if size < 512 {
        return Err(format!(
            "--bwlimit={arg} is too small (min: 512 or 0 for unlimited)"
        ));
    }
    Ok(Some((size as u64 + 512) / 1024))
}

/// A script's `--rsync-path="sudo rsync"` asks for the remote end under sudo: the program is
/// xsync here, so a word that names rsync (`rsync`, `/usr/bin/rsync`) becomes `xsync`, looked
/// up on the remote PATH (rsync's directory need not hold xsync). The other words stay.
fn rsync_path_as_xsync(program: &str) -> String {
    program
        .split(' ')
        .map(|w| {
            if w == "rsync" || w.ends_with("/rsync") {
                "xsync"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// rsync applies --include/--exclude/--filter/--*-from in the order they were given, so the
/// rules are rebuilt in command-line order from clap's argument indices.
fn ordered_filters(m: &clap::ArgMatches) -> Result<Filters, Error> {
    #[derive(Clone, Copy)]
    enum Src {
        Pat(RuleKind),
        Rule,
        From(RuleKind),
    }
    let mut items: Vec<(usize, Src, OsString)> = Vec::new();
    for (id, src) in [
        ("exclude", Src::Pat(RuleKind::Exclude)),
        ("include", Src::Pat(RuleKind::Include)),
        ("filter", Src::Rule),
    ] {
        if let (Some(idx), Some(vals)) = (m.indices_of(id), m.get_many::<String>(id)) {
            for (i, v) in idx.zip(vals) {
                items.push((i, src, OsString::from(v)));
            }
        }
    }
    for (id, kind) in [
        ("exclude_from", RuleKind::Exclude),
        ("include_from", RuleKind::Include),
    ] {
        if let (Some(idx), Some(vals)) = (m.indices_of(id), m.get_many::<OsString>(id)) {
            for (i, v) in idx.zip(vals) {
                items.push((i, Src::From(kind), v.clone()));
            }
        }
    }
    items.sort_by_key(|(i, _, _)| *i);
    let mut filters = Filters::new();
    for (_, src, val) in items {
        let res = match src {
            Src::Pat(kind) => filters.add_pattern(&val.to_string_lossy(), kind),
            Src::Rule => filters.add_rule(&val.to_string_lossy()),
            Src::From(kind) => filters.add_from_file(Path::new(&val), kind),
        };
        res.map_err(|e| Error::new(ExitCode::Usage, e.to_string()))?;
    }
    Ok(filters)
}

/// clap exits 2 on usage errors; rsync's contract is 1. Help output is not an error.
fn clap_error(e: clap::Error) -> Result<Parsed, Error> {
    use clap::error::{ContextKind, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            Ok(Parsed::Help(e.render().to_string()))
        }
        ErrorKind::UnknownArgument => {
            let arg = e
                .get(ContextKind::InvalidArg)
                .map(|a| a.to_string())
                .unwrap_or_default();
            Err(Error::usage(format!(
                "{arg}: unknown option (xsync does not support it; see `xsync --help`)"
            )))
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            Err(Error::usage(first.to_string()))
        }
    }
}

pub fn version_text() -> String {
    format!(
        "xsync version {}  protocol version {}\nCopyright the xsync authors. Licensed MIT OR Apache-2.0.\n",
        env!("CARGO_PKG_VERSION"),
        crate::PROTOCOL_VERSION
    )
}

impl Options {
    /// The option words that make the server side behave like this one (paths, the
    /// transport and filter rules travel separately). Parsed on the server by [`parse`],
    /// so the two ends cannot disagree about what an option means.
    pub fn server_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let flags = [
            (self.recursive, "--recursive"),
            (self.links, "--links"),
            (self.perms, "--perms"),
            (self.times, "--times"),
            (self.group, "--group"),
            (self.owner, "--owner"),
            (self.devices, "--devices"),
            (self.specials, "--specials"),
            (self.hard_links, "--hard-links"),
            (self.sparse, "--sparse"),
            (self.one_file_system, "--one-file-system"),
            (self.dry_run, "--dry-run"),
            (self.quiet, "--quiet"),
            (self.checksum, "--checksum"),
            (self.size_only, "--size-only"),
            (self.update, "--update"),
            (self.ignore_existing, "--ignore-existing"),
            (self.existing, "--existing"),
            (self.delete, "--delete"),
            (self.delete_excluded, "--delete-excluded"),
            (self.numeric_ids, "--numeric-ids"),
            (self.mkpath, "--mkpath"),
            (self.itemize, "--itemize-changes"),
            (self.compress, "--compress"),
            (self.partial, "--partial"),
            (self.inplace, "--inplace"),
        ];
        for (on, word) in flags {
            if on {
                a.push(word.to_string());
            }
        }
        for _ in 0..self.verbose {
            a.push("--verbose".into());
        }
        for _ in 0..self.human_readable {
            a.push("--human-readable".into());
        }
        match self.whole_file {
            Some(true) => a.push("--whole-file".into()),
            Some(false) => a.push("--no-whole-file".into()),
            None => {}
        }
        if let Some(n) = self.max_delete {
            a.push(format!("--max-delete={n}"));
        }
        if let Some(d) = &self.partial_dir {
            a.push(format!("--partial-dir={d}"));
        }
        if let Some(n) = self.compress_level {
            a.push(format!("--compress-level={n}"));
        }
        // As rsync: the server watches the connection too (a client that hangs must not
        // hold it forever), and paces what it writes (the data of a pull).
        if let Some(t) = self.timeout {
            a.push(format!("--timeout={t}"));
        }
        if let Some(k) = self.bwlimit {
            a.push(format!("--bwlimit={k}"));
        }
        if self.old_args {
            a.push("--old-args".into());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        let mut v = vec!["xsync"];
        v.extend_from_slice(args);
        match parse(v).expect("parses") {
            Parsed::Run(o) => *o,
            _ => panic!("not a run"),
        }
    }

    #[test]
    fn archive_expands_like_rsync_and_no_options_win() {
        let o = opts(&["-a", "--no-o", "s", "d"]);
        assert!(o.recursive && o.links && o.perms && o.times && o.group && o.devices);
        assert!(o.specials && !o.owner && !o.hard_links);
    }

    #[test]
    fn server_args_reproduce_the_options() {
        let o = opts(&[
            "-avH",
            "--delete",
            "--max-delete=3",
            "-c",
            "--no-W",
            "--timeout=7",
            "--bwlimit=1.5m",
            "s",
            "d",
        ]);
        let mut words = vec!["xsync".to_string()];
        words.extend(o.server_args());
        let back = match parse(words).expect("server args parse") {
            Parsed::Run(b) => b,
            _ => panic!(),
        };
        assert_eq!(
            format!("{:?}", o.server_args()),
            format!("{:?}", back.server_args())
        );
        assert!(back.hard_links && back.delete && back.checksum);
        assert_eq!(back.max_delete, Some(3));
        assert_eq!(back.whole_file, Some(false));
        assert_eq!(back.verbose, 1);
        assert_eq!(back.timeout, Some(7));
        assert_eq!(back.bwlimit, Some(1536));
    }

    #[test]
    fn partial_dir_must_be_a_plain_name_and_implies_partial() {
        for bad in ["/tmp/p", "a/b", "..", ""] {
            let e = parse(["xsync", "--partial-dir", bad, "a", "b"])
                .err()
                .expect("refused");
            assert_eq!(e.code, ExitCode::Usage, "{bad}");
        }
        let o = opts(&["--partial-dir=.p", "s", "d"]);
        assert!(o.partial && o.partial_dir.as_deref() == Some(".p"));
        // And it is protected from --delete like rsync's.
        assert!(
            o.filters
                .excluded(crate::filter::Side::Receiver, b"sub/.p", true, false)
        );
    }

    #[test]
    fn a_repeated_option_is_taken_as_rsync_takes_it() {
        let o = opts(&[
            "-a",
            "-avz",
            "-v",
            "--delete",
            "--delete",
            "-e",
            "ssh -p 1",
            "-e",
            "ssh -p 2",
            "--exclude=a",
            "--exclude=b",
            "--max-delete=1",
            "--max-delete=2",
            "s",
            "d",
        ]);
        assert!(o.recursive && o.compress && o.delete);
        assert_eq!(o.verbose, 2);
        assert_eq!(o.rsh.as_deref(), Some("ssh -p 2"));
        assert_eq!(o.max_delete, Some(2));
        assert!(
            o.filters
                .excluded(crate::filter::Side::Sender, b"a", false, false)
        );
        assert!(
            o.filters
                .excluded(crate::filter::Side::Sender, b"b", false, false)
        );
    }

    #[test]
    fn delete_without_recursion_is_refused_as_rsync_refuses_it() {
        for args in [
            &["--delete"][..],
            &["--delete-excluded"],
            &["-a", "--no-r", "--delete"],
        ] {
            let mut v = vec!["xsync"];
            v.extend_from_slice(args);
            v.extend(["s/", "d/"]);
            let e = parse(v).err().expect("refused");
            assert_eq!(e.code, ExitCode::Usage, "{args:?}");
            assert!(e.message().contains("--recursive"), "{}", e.message());
        }
        assert!(opts(&["-r", "--delete", "s/", "d/"]).delete);
    }

    #[test]
    fn rsync_path_runs_xsync_where_it_named_rsync() {
        let path = |args: &[&str]| opts(&[args, &["s", "h:d"]].concat()).xsync_path;
        assert_eq!(
            path(&["--rsync-path=sudo rsync"]).as_deref(),
            Some("sudo xsync")
        );
        assert_eq!(
            path(&["--rsync-path", "/usr/bin/rsync"]).as_deref(),
            Some("xsync")
        );
        assert_eq!(
            path(&["--rsync-path=nice -n 5 /opt/rsync"]).as_deref(),
            Some("nice -n 5 xsync")
        );
        assert_eq!(
            path(&["--rsync-path=/opt/xsync"]).as_deref(),
            Some("/opt/xsync")
        );
        // --xsync-path is taken as given, and wins.
        assert_eq!(
            path(&["--rsync-path=sudo rsync", "--xsync-path=/opt/rsync"]).as_deref(),
            Some("/opt/rsync")
        );
    }

    #[test]
    fn bwlimit_rates_are_read_as_rsync_reads_them() {
        let kib = |v: &str| parse_bwlimit(v);
        assert_eq!(kib("0"), Ok(None));
        assert_eq!(kib("100"), Ok(Some(100)));
        assert_eq!(kib("100k"), Ok(Some(100)));
        assert_eq!(kib("1.5m"), Ok(Some(1536)));
        assert_eq!(kib("1M"), Ok(Some(1024)));
        assert_eq!(kib("1MB"), Ok(Some(977)));
        assert_eq!(kib("1KB"), Ok(Some(1)));
        assert_eq!(kib("1kib"), Ok(Some(1)));
        assert_eq!(kib("1g"), Ok(Some(1 << 20)));
        assert_eq!(kib("512b"), Ok(Some(1)));
        assert_eq!(kib("2048b"), Ok(Some(2)));
        assert_eq!(kib("1k+1"), Ok(Some(1)));
        for bad in ["511b", "abc", "2x", "1.5q", "-1", "1kx"] {
            assert!(kib(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_options_are_usage_errors() {
        let e = parse(["xsync", "--frobnicate", "a", "b"])
            .err()
            .expect("refused");
        assert_eq!(e.code, ExitCode::Usage);
        assert!(e.message().contains("--frobnicate"), "{}", e.message());
    }
}
