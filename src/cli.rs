//! The command line: rsync's spellings and meanings for the options xsync supports, turned
//! into [`Options`].
//!
//! Anything rsync accepts that xsync does not is rejected by clap as an unknown option and
//! mapped to exit 1 — never silently ignored. `-h` is rsync's `--human-readable`, and help
//! only when it is the only argument (as rsync has it).

use crate::config::{AltDest, BackupRule, DeleteWhen, IpFamily, MAX_ALT_DESTS, Options, SizeRange};
use crate::error::Error;
use crate::exit::ExitCode;
use crate::filter::{Filters, RuleKind};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueHint};
use std::ffi::OsString;
use std::path::Path;

// The headings of `--help`. rsync's `--help` is one list without headings that keeps related
// options together; xsync names those groups, output first and help last as there, and keeps
// rsync's order inside each (`tests/it/generated.rs` checks it against `rsync --help`). The
// man page has one subsection for each.
const OUTPUT: &str = "Output";
const WHICH: &str = "Which files are updated";
const ARCHIVE: &str = "Archive and recursion";
const LINKS: &str = "Symlinks";
const ATTRS: &str = "Attributes";
const TRANSFER: &str = "Transfer";
const REMOTE: &str = "Remote shell and connection";
const DELETE: &str = "Deletion";
const FILTERS: &str = "Filters and file lists";
const HELP: &str = "Help";

/// rsync's options as clap sees them. Each doc comment's first paragraph is the one-liner of
/// `--help` (rsync's own words where rsync has the option); the paragraphs after it are the
/// man page's text for the option (`long_help`, which `--help` does not print: it stays
/// rsync's one line per option). The man page and the shell completions are generated from
/// this (`tests/it/generated.rs`); `hide` keeps an option out of both, so a hidden option is
/// a `--no-X` form (listed together in the man page), an internal word the client sends the
/// server, or one the man page's hand-written text explains.
#[derive(Parser, Debug)]
#[command(
    name = "xsync",
    about = "xsync: fast, atomic, rsync-compatible file replication",
    override_usage = "xsync [OPTION]... SRC [SRC]... DEST\n       xsync [OPTION]... SRC [SRC]... [USER@]HOST:DEST\n       xsync [OPTION]... [USER@]HOST:SRC [DEST]",
    after_help = "--no-OPTION turns off an implied OPTION (e.g. --no-D). Any other rsync option is \
                  refused. See the xsync(1) manual page for each option in full.",
    disable_help_flag = true,
    disable_version_flag = true,
    // rsync takes an option twice (`-a -avz`, a script's `$OPTS` repeating one): a flag stays
    // on, a value's last spelling wins, lists keep appending.
    args_override_self = true,
    max_term_width = 100
)]
struct Cli {
    /// increase verbosity
    ///
    /// List what is transferred.
    #[arg(short, long, action = ArgAction::Count, help_heading = OUTPUT)]
    verbose: u8,
    /// fine-grained informational verbosity (xsync: progress0-2, name0-1)
    ///
    /// Comma-separated, case-insensitive words: progress0, progress1 (--progress), progress2
    /// (one line for the whole transfer, rewritten with \r at most ten times a second: bytes
    /// moved so far, of finished files and of those in flight, percent of the total size
    /// from the scan (which, as rsync's, counts symlink targets), rate, time left (elapsed
    /// time at the end), (xfr#N, to-chk=R/T); no figure ever goes back. Where stdout is a
    /// terminal it is drawn as a bar instead: elapsed time, the bar, bytes done of the total,
    /// files done of those to transfer, rate, ETA and the file in flight; piped or
    /// redirected it is rsync's line); name0 (no names of transferred entries, even with -v)
    /// and name1 (names without -v). Any other flag (and name2) is refused with exit status
    /// 1.
    #[arg(long, value_name = "FLAGS", value_hint = ValueHint::Other, action = ArgAction::Append, help_heading = OUTPUT)]
    info: Vec<String>,
    /// suppress non-error messages
    #[arg(short, long, help_heading = OUTPUT)]
    quiet: bool,
    /// give some file-transfer stats
    ///
    /// Print rsync's statistics block at the end, in rsync 3.5's words, order and number
    /// formats: the files of the transfer by kind (with what the run leaves out, as in
    /// rsync's file list: kinds it does not carry, -m's pruned directories), the files
    /// created and deleted by kind, the regular files transferred and their size, the
    /// literal and matched data, the file list's size and times, and the bytes sent and
    /// received. A dry run counts what it would do. The bytes on the connection, the file
    /// list's size and times, the rate and the speedup are xsync's own, as its protocol is
    /// not rsync's: locally nothing crosses a connection, so the file list's size is 0 and
    /// the literal data count as sent.
    #[arg(long, help_heading = OUTPUT)]
    stats: bool,
    /// output numbers in a human-readable format
    ///
    /// Units of 1000, as rsync's; -hh: units of 1024. -h as the only argument prints the
    /// help, as rsync's does.
    #[arg(short = 'h', long = "human-readable", action = ArgAction::Count, help_heading = OUTPUT)]
    human_readable: u8,
    /// show progress during transfer (--progress=bar: one bar for the whole run, as
    /// --info=progress2, drawn where stdout is a terminal)
    ///
    /// rsync's --info=progress1: the file in flight shown live, as rsync shows it: its name
    /// (unless --info=name0), then a line rewritten at most ten times a second with the
    /// bytes done, percent, rate and time left, and when it is done rsync's completed line,
    /// "3,000,000 100%  715.26MB/s    0:00:00 (xfr#2, to-chk=3/6)". Files are transferred in
    /// parallel: one file is shown live at a time (one that has been in flight for a tenth
    /// of a second), and files that finish meanwhile are listed after it. In to-chk=R/T, T
    /// is rsync's (the entries of the transfer) and R the files still to transfer, so the
    /// last line ends to-chk=0/T. Nothing is shown under -q. With -i, not supported on a
    /// push (the remote receiver decides the flags).
    ///
    /// --progress=bar: progress for the whole run as a bar (as --info=progress2 on a
    /// terminal, which it is unless --info names a progress level).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        value_name = "bar",
        value_hint = ValueHint::Other,
        help_heading = OUTPUT
    )]
    progress: Option<String>,
    #[arg(long = "no-progress", hide = true)]
    no_progress: bool,
    /// same as --partial --progress
    #[arg(short = 'P', help_heading = OUTPUT)]
    partial_progress: bool,
    /// output a change-summary for all updates
    ///
    /// List changes in rsync's YXcstpoguax format.
    #[arg(short = 'i', long = "itemize-changes", action = ArgAction::Count, help_heading = OUTPUT)]
    itemize: u8,
    /// output updates using the specified FORMAT
    ///
    /// One line per updated item in FORMAT, rsync's % escapes: %n the name (a directory's
    /// with its /), %f the name as a path (without the /; rsync's sending client puts the source argument's directory before it, xsync does not), %i the -i change code, %L
    /// " -> TARGET" of a symlink or " => NAME" of a hard link, %l the length, %o the
    /// operation (send, recv, del.), %b the bytes sent for a transferred file and %c those
    /// of the block checksums, %M the modification time (YYYY/MM/DD-HH:MM:SS), %t the time
    /// now, %B the permissions as ls shows them, %U and %G the owner's and group's numbers
    /// (0 without -o, DEFAULT without -g), %p the process id, %C a checksum (always blank: the
    /// digests xsync compares are not rsync's checksums), %m the module (empty) and %% a
    /// percent sign. A width pads on the left (%10n), after a - on the right (%-10n); with
    /// %l, %b and %c one ' groups the digits by commas, '' shows units of 1000, ''' of 1024.
    /// rsync's daemon escapes (%a, %h, %P, %u) and any other letter are printed as written.
    /// With %i in FORMAT the items are -i's (attribute changes too), without it -v's, and
    /// deletions are listed in FORMAT when it has %i or %o ("deleting NAME" otherwise). It
    /// replaces the lines of -i and -v (--out-format='%i %n%L' is -i). With %b or %c a
    /// transferred file's line comes when the file is done, as rsync's. Names are escaped
    /// as in the listing. Printed on the client for a push and a pull alike; nothing under
    /// -q.
    #[arg(long = "out-format", alias = "log-format", value_name = "FORMAT", value_hint = ValueHint::Other, help_heading = OUTPUT)]
    out_format: Option<String>,
    /// log what we're doing to the specified FILE
    ///
    /// The client appends a log of the run to FILE (created with mode 0644 less the umask),
    /// each line starting with the local time and the process id ("2026/01/31 12:00:00
    /// [4242] "), as rsync's: "building file list" (or "receiving file list" on a pull), a
    /// line for each updated item in --log-file-format, the messages and errors the run
    /// prints (also under -q), the --stats and -v summary when there is one and otherwise
    /// "sent N bytes  received N bytes  total size N". Under --dry-run only the directories, links and nodes rsync's generator lists are logged. A
    /// FILE that cannot be opened is reported and the run goes on without a log, as rsync's.
    #[arg(long = "log-file", value_name = "FILE", value_hint = ValueHint::FilePath, help_heading = OUTPUT)]
    log_file: Option<OsString>,
    /// log updates using the specified FMT
    ///
    /// The log's item lines, in --out-format's escapes ("%i %n%L" by default); as there,
    /// without %i the items of -v, and deletions in FMT only with %i or %o. Without
    /// --log-file it does nothing.
    #[arg(long = "log-file-format", value_name = "FMT", value_hint = ValueHint::Other, help_heading = OUTPUT)]
    log_file_format: Option<String>,
    /// print the run as NDJSON records on stdout: one per file transferred, deleted or
    /// failed, and a final summary (schema in docs/JSON.md)
    ///
    /// Print the run as NDJSON on stdout in place of the listing, progress and summaries: a
    /// record for each file created, updated, deleted or failed (path, itemize code, bytes,
    /// literal and matched bytes, the error), and always a last summary record (counts,
    /// bytes, durations, exit code, every error), also when a signal or a lost connection
    /// ends the run. Errors still go to stderr. The schema (version 1) is docs/JSON.md and
    /// docs/json-schema.json.
    #[arg(long, help_heading = OUTPUT)]
    json: bool,
    /// list the files instead of copying them
    ///
    /// Print the source's entries as rsync does (permissions, size, modification time,
    /// name, and a symlink's target under -l) and copy nothing; a destination, if given, is
    /// left alone. One source and no destination lists it too, as in rsync. Without -r a
    /// directory's contents are listed one level deep (an implied --dirs).
    #[arg(long = "list-only", help_heading = OUTPUT)]
    list_only: bool,

    /// skip based on checksum, not mod-time & size
    ///
    /// Compare content (blake3) instead of size and mtime.
    #[arg(short, long, help_heading = WHICH)]
    checksum: bool,
    /// skip files that are newer on the receiver
    #[arg(short, long, help_heading = WHICH)]
    update: bool,
    /// skip creating new files on receiver
    ///
    /// Don't create new files on the receiver; also spelled --ignore-non-existing.
    #[arg(long = "existing", alias = "ignore-non-existing", help_heading = WHICH)]
    existing: bool,
    /// skip updating files that exist on receiver
    #[arg(long = "ignore-existing", help_heading = WHICH)]
    ignore_existing: bool,
    /// sender removes synchronized files (non-directory)
    ///
    /// Once the receiver has a source file in place (sent, verified and renamed, or found
    /// already up to date), the sender removes it, as rsync does; directories stay. A file
    /// that changed since it was scanned (size, modification time, inode) is left, with
    /// rsync's "Skipping sender remove for changed file" error (exit status 23). Nothing is
    /// removed under --dry-run.
    #[arg(long = "remove-source-files", help_heading = WHICH)]
    remove_source_files: bool,
    /// don't transfer any file larger than SIZE
    ///
    /// Don't transfer (or update the attributes of) any regular file larger than SIZE. A
    /// transfer rule, not an exclude: such files are not deleted by --delete. SIZE is
    /// rsync's: a number with an optional fraction and unit (b, k, m, g, t, p; alone or with
    /// "ib" for 1024s, with "b" for 1000s; any case) and an optional "+1" or "-1", so
    /// 1.5mb-1 is 1499999 bytes.
    #[arg(
        long = "max-size",
        value_name = "SIZE", value_hint = ValueHint::Other,
        allow_hyphen_values = true,
        help_heading = WHICH
    )]
    max_size: Option<String>,
    /// don't transfer any file smaller than SIZE
    ///
    /// Don't transfer (or update the attributes of) any regular file smaller than SIZE; as
    /// --max-size, a transfer rule, and SIZE written as there.
    #[arg(
        long = "min-size",
        value_name = "SIZE", value_hint = ValueHint::Other,
        allow_hyphen_values = true,
        help_heading = WHICH
    )]
    min_size: Option<String>,
    /// don't skip files that match size and time
    ///
    /// Every file is sent (over a wire by delta, so an unchanged one costs little). -c and
    /// --size-only decide first, as in rsync.
    #[arg(short = 'I', long = "ignore-times", help_heading = WHICH)]
    ignore_times: bool,
    /// skip files based on size only, not mod-time
    #[arg(long = "size-only", help_heading = WHICH)]
    size_only: bool,
    /// set the accuracy for mod-time comparisons (0: whole seconds; negative: nanoseconds)
    ///
    /// When two modification times count as the same, as in rsync: 0 (the default) compares
    /// whole seconds, so a copy on a file system that keeps coarser times (ext3, HFS+, many
    /// SMB and NFS mounts) is not sent again on every run; a negative NUM compares
    /// nanoseconds too; NUM > 0 allows that many seconds apart (FAT keeps 2-second times: use
    /// 1). A file that is transferred always gets the source's exact time.
    #[arg(
        short = '@',
        long = "modify-window",
        value_name = "NUM", value_hint = ValueHint::Other,
        allow_negative_numbers = true,
        help_heading = WHICH
    )]
    modify_window: Option<i64>,

    /// archive mode is -rlptgoD (no -A,-X,-U,-N,-H)
    ///
    /// Same as -rlptgoD. Any of these is turned off by its --no-OPTION form, as in -a
    /// --no-o.
    #[arg(short, long, help_heading = ARCHIVE)]
    archive: bool,
    /// recurse into directories
    #[arg(short, long, help_heading = ARCHIVE)]
    recursive: bool,
    #[arg(long = "no-recursive", alias = "no-r", hide = true)]
    no_recursive: bool,
    /// enable incremental recursion (accepted: xsync's walk is its own)
    ///
    /// Accepted, as are --i-r, --no-inc-recursive and --no-i-r: rsync's choice between
    /// sending its file list in pieces or whole changes nothing in xsync, whose two ends walk
    /// their trees in parallel and exchange only the directories that differ.
    #[arg(long = "inc-recursive", alias = "i-r", help_heading = ARCHIVE)]
    inc_recursive: bool,
    #[arg(long = "no-inc-recursive", alias = "no-i-r", hide = true)]
    no_inc_recursive: bool,
    /// use relative path names
    ///
    /// Keep each source's path under DEST: "xsync -aR /etc/./nginx/ host:/backup/" makes
    /// /backup/nginx/; without a /./ the whole path is kept (an absolute one below /). The
    /// implied directories (the kept path's parents) are created, or updated, with the
    /// source's attributes, and --delete deletes nothing in them, only in the directories
    /// sent. A .. in the kept part is refused (exit status 1), as in rsync. Sources whose kept
    /// paths start with the same name must share the part before /./ (xsync refuses the rest
    /// with exit status 1). --no-relative turns it off.
    #[arg(short = 'R', long, help_heading = ARCHIVE)]
    relative: bool,
    #[arg(long = "no-relative", alias = "no-R", hide = true)]
    no_relative: bool,
    /// don't send implied directories with --relative
    ///
    /// With -R, the directories on a kept path above the named entries are not sent: a
    /// missing one is created with default attributes, an existing one is left as it is.
    /// A destination symlink (or other non-directory) where an implied directory would be
    /// is never followed: the entries below it fail (exit status 23), as in rsync 3.5.
    #[arg(long = "no-implied-dirs", help_heading = ARCHIVE)]
    no_implied_dirs: bool,
    /// transfer directories without recursing
    ///
    /// Without -r, send directories instead of skipping them, as rsync does: a directory
    /// named without a trailing slash is created (or its attributes updated) without its
    /// contents; one named by its contents (src/, or .) has its entries sent, and
    /// subdirectories among them created without theirs. --delete works with it, in the
    /// directories whose contents are sent. -r wins over it; --no-dirs (--no-d) turns it
    /// off.
    #[arg(short = 'd', long = "dirs", help_heading = ARCHIVE)]
    dirs: bool,
    #[arg(long = "no-dirs", alias = "no-d", hide = true)]
    no_dirs: bool,
    /// create destination's missing path components
    ///
    /// Create all missing components of the destination path (without it, a missing DEST is
    /// created one level deep).
    #[arg(long, help_heading = ARCHIVE)]
    mkpath: bool,
    /// don't cross filesystem boundaries
    #[arg(short = 'x', long = "one-file-system", help_heading = ARCHIVE)]
    one_file_system: bool,

    /// copy symlinks as symlinks
    #[arg(short, long, help_heading = LINKS)]
    links: bool,
    #[arg(long = "no-links", alias = "no-l", hide = true)]
    no_links: bool,
    /// transform symlink into referent file/dir
    ///
    /// Replace every symlink in the source by what it points to: a file's content and
    /// attributes, a directory walked as a directory (source arguments that are links too).
    /// A link to nothing is reported as "symlink has no referent" and left out (exit 23). A
    /// directory link that leads back to one of its own ancestors is not walked again: it is
    /// reported as "Too many levels of symbolic links" (exit 23), where rsync walks the loop
    /// 40 times before the kernel stops it.
    #[arg(short = 'L', long = "copy-links", help_heading = LINKS)]
    copy_links: bool,
    /// only "unsafe" symlinks are transformed
    ///
    /// Replace only the unsafe symlinks by their referents; with -l the safe ones stay links.
    /// A link is unsafe by rsync's lexical test: absolute, empty, with a .. after a name
    /// (a/../b, a/..), or with more leading .. than its directory is deep below the top of
    /// the transfer (src/: src itself; src: its parent). With -v each is named ("copying
    /// unsafe symlink").
    #[arg(long = "copy-unsafe-links", help_heading = LINKS)]
    copy_unsafe_links: bool,
    /// ignore symlinks that point outside the tree
    ///
    /// With -l, leave out the unsafe symlinks (with -v: "ignoring unsafe symlink");
    /// --copy-unsafe-links wins over it.
    #[arg(long = "safe-links", help_heading = LINKS)]
    safe_links: bool,
    /// munge symlinks to make them safe & unusable
    ///
    /// As rsync's, this end's own option (the other end is not told): the sender takes a
    /// leading /rsyncd-munged/ off each symlink target it reads, and a client receiving from
    /// a remote sender puts /rsyncd-munged/ in front of every target it makes, so the links
    /// lead nowhere until unmunged. A local copy only unmunges. Refused (exit 4) where a
    /// /rsyncd-munged directory exists, which would make munged links lead somewhere.
    #[arg(long = "munge-links", help_heading = LINKS)]
    munge_links: bool,
    #[arg(long = "no-munge-links", hide = true)]
    no_munge_links: bool,
    /// transform symlink to dir into referent dir
    ///
    /// Walk a symlink to a directory as the directory; other links are treated as -l says.
    #[arg(short = 'k', long = "copy-dirlinks", help_heading = LINKS)]
    copy_dirlinks: bool,
    /// treat symlinked directory on receiver as directory
    ///
    /// Where the destination has a symlink to a directory and the source a directory of
    /// that name, the link stays and the directory's contents go where it points, as in
    /// rsync. xsync follows such a link only when it was there before the run and leads to
    /// a directory inside the destination: it is resolved from the destination's root by
    /// the kernel (openat2 with RESOLVE_BENEATH), which refuses a .. past the root and an
    /// absolute target. A link that leads out of the destination is not followed: it is
    /// named ("not following ... it leads out of the destination") and treated as a symlink,
    /// so it is replaced by the source's directory (what it points to is left alone). A link
    /// the source has a file for is replaced; one --delete removes is unlinked, and nothing
    /// it points to is deleted through it.
    #[arg(short = 'K', long = "keep-dirlinks", help_heading = LINKS)]
    keep_dirlinks: bool,

    /// preserve hard links
    #[arg(short = 'H', long = "hard-links", help_heading = ATTRS)]
    hard_links: bool,
    /// preserve permissions
    #[arg(short, long, help_heading = ATTRS)]
    perms: bool,
    #[arg(long = "no-perms", alias = "no-p", hide = true)]
    no_perms: bool,
    /// preserve executability
    ///
    /// Without -p, keep whether a regular file is executable, as rsync does: a file counts as
    /// executable when any of its x bits is set; where the source's and an existing
    /// destination file's differ, the destination's x bits are all cleared, or set where
    /// its r bits are set (so a file no one may read stays as it is); its other bits are
    /// kept. -i shows a p then. A new file gets the source's mode less the umask, as
    /// without -E. With -p (as under -a) it changes nothing.
    #[arg(short = 'E', long = "executability", help_heading = ATTRS)]
    executability: bool,
    /// affect file and/or directory permissions
    ///
    /// rsync's permission changes, applied to what the sender supplies: comma-separated
    /// items, each optionally D (directories) or F (the rest), then an octal mode or chmod's
    /// [ugoa]*[+-=][rwxXst]* (or a copy: o=u), e.g. --chmod=D755,F644 or
    /// --chmod=ug+rwX,o-w. As in rsync, an empty class means all (without the umask), =
    /// keeps set-id and sticky bits unless named, and without -p only new files take the
    /// result; may be given more than once.
    #[arg(long, value_name = "CHMOD", value_hint = ValueHint::Other, action = ArgAction::Append, help_heading = ATTRS)]
    chmod: Vec<String>,
    /// preserve ACLs (implies --perms)
    ///
    /// POSIX ACLs, as rsync: every file's and directory's access ACL and each directory's
    /// default ACL; symlinks have none. Named users and groups are mapped by name like
    /// owners (unless --numeric-ids). An ACL the source lacks is removed. A file whose ACL
    /// differs only as its mode does is a mode change (p), anything else an ACL change: -i
    /// shows an a in the tenth column (and, as rsync, for a file whose content is not sent,
    /// no p for the permission bits the ACL brings with it). A receiving file system without
    /// ACLs still gets the files; each whose ACL cannot be set is reported and the run ends
    /// with exit status 23.
    #[arg(short = 'A', long = "acls", help_heading = ATTRS)]
    acls: bool,
    #[arg(long = "no-acls", alias = "no-A", hide = true)]
    no_acls: bool,
    /// preserve extended attributes
    ///
    /// As rsync: user.* names, and as the super-user also trusted.* and security.*
    /// (security.selinux included); system.* (ACLs) is left to -A. Attributes the source lacks are removed (within the same names). A
    /// receiver that is not the super-user sets and removes only user.* names. A file system
    /// that refuses attributes still gets the files; each such file is reported and the run
    /// ends with exit status 23. -i shows an x in the last column where attributes differ.
    /// Over ssh, a client that is not the super-user has both ends count only user.* names.
    /// rsync's own user.rsync.%* names (its --fake-super data) are left alone, as by rsync's
    /// single -X; -XX is refused.
    #[arg(short = 'X', long = "xattrs", action = ArgAction::Count, help_heading = ATTRS)]
    xattrs: u8,
    #[arg(long = "no-xattrs", alias = "no-X", hide = true)]
    no_xattrs: bool,
    /// (sent to the server: the client is not the super-user, so only `user.*` names count)
    #[arg(long = "xattrs-user-only", hide = true)]
    xattrs_user_only: bool,
    /// preserve owner (super-user only)
    #[arg(short, long, help_heading = ATTRS)]
    owner: bool,
    #[arg(long = "no-owner", alias = "no-o", hide = true)]
    no_owner: bool,
    /// preserve group
    #[arg(short, long, help_heading = ATTRS)]
    group: bool,
    #[arg(long = "no-group", alias = "no-g", hide = true)]
    no_group: bool,
    /// preserve device files (super-user only)
    #[arg(long, help_heading = ATTRS)]
    devices: bool,
    #[arg(long = "no-devices", hide = true)]
    no_devices: bool,
    /// preserve special files
    #[arg(long, help_heading = ATTRS)]
    specials: bool,
    #[arg(long = "no-specials", hide = true)]
    no_specials: bool,
    /// same as --devices --specials
    #[arg(short = 'D', help_heading = ATTRS)]
    devices_specials: bool,
    #[arg(long = "no-D", hide = true)]
    no_devices_specials: bool,
    /// preserve modification times
    ///
    /// Preserve modification times, to the nanosecond.
    #[arg(short, long, help_heading = ATTRS)]
    times: bool,
    #[arg(long = "no-times", alias = "no-t", hide = true)]
    no_times: bool,
    /// preserve access (use) times
    ///
    /// Compare and set the access times of everything but directories, in whole seconds as
    /// rsync does (a difference shows as u in -i's time column). Both ends read files with
    /// O_NOATIME (as --open-noatime) so the run itself leaves access times as it found them,
    /// and a re-run with nothing changed changes nothing; where the kernel refuses the flag
    /// (a file the user does not own), reading it moves its access time as it would rsync's.
    /// -UU is accepted as rsync's -U --open-noatime.
    #[arg(short = 'U', long = "atimes", action = ArgAction::Count, help_heading = ATTRS)]
    atimes: u8,
    #[arg(long = "no-atimes", alias = "no-U", hide = true)]
    no_atimes: bool,
    /// avoid changing the atime on opened files
    ///
    /// The sender opens the files it reads with O_NOATIME, so reading them for the transfer
    /// (or for -c) leaves their access times alone; where the kernel refuses the flag (a
    /// file the user does not own, without CAP_FOWNER), the file is opened without it, as
    /// rsync does. --no-open-noatime turns it off.
    #[arg(long = "open-noatime", help_heading = ATTRS)]
    open_noatime: bool,
    #[arg(long = "no-open-noatime", hide = true)]
    no_open_noatime: bool,
    /// preserve create times (newness)
    ///
    /// Refused, as by rsync on Linux (exit 1): Linux has no call that sets a file's
    /// creation time.
    #[arg(short = 'N', long = "crtimes", help_heading = ATTRS)]
    crtimes: bool,
    /// omit directories from --times
    ///
    /// Their times are neither compared nor set (a directory whose contents change keeps the
    /// time of that change).
    #[arg(short = 'O', long = "omit-dir-times", help_heading = ATTRS)]
    omit_dir_times: bool,
    #[arg(long = "no-omit-dir-times", alias = "no-O", hide = true)]
    no_omit_dir_times: bool,
    /// omit symlinks from --times
    ///
    /// Their times are neither compared nor set.
    #[arg(short = 'J', long = "omit-link-times", help_heading = ATTRS)]
    omit_link_times: bool,
    #[arg(long = "no-omit-link-times", alias = "no-J", hide = true)]
    no_omit_link_times: bool,
    /// store/recover privileged attrs using xattrs
    ///
    /// As rsync's, this end's own option (the other end is not told; give a server its own
    /// with --xsync-path='xsync --fake-super'). Receiving, no owner is set and no device,
    /// fifo, socket or symlink made: each is a plain file (a symlink's holding its target), a
    /// directory a plain directory, with the owner's read and write (and a directory's
    /// search) added to its permission bits, and what that leaves out (the type, set-id and
    /// sticky bits, the device number, the owner and group) kept in the user.rsync.%stat
    /// attribute in rsync's format ("MODE MAJOR,MINOR UID:GID"), removed where nothing is
    /// left out. Sending, and scanning its own destination, xsync reads that attribute back
    /// in place of what the file system says, so a tree written by rsync --fake-super reads as
    /// rsync reads it. The file system must have user attributes (each entry that cannot take
    /// one is an error, exit 23). Not with -A (rsync keeps fake ACLs in attributes of its own,
    /// which xsync does not write).
    #[arg(long = "fake-super", help_heading = ATTRS)]
    fake_super: bool,
    /// don't map uid/gid values by user/group name
    #[arg(long = "numeric-ids", help_heading = ATTRS)]
    numeric_ids: bool,
    /// custom username mapping
    ///
    /// FROM:TO rules, comma-separated, applied by the receiver to the sender's owners before
    /// the mapping by name; the first that matches wins. FROM is a name, a wildcard over
    /// names (*, ?, [...]), an id or a range LO-HI of ids; an empty FROM matches the ids the
    /// sender has no name for. TO is a name or an id on the receiving side (an unknown one is
    /// reported and its rule dropped). Implies -o. Unlike the name mapping, root is mapped
    /// too when a rule matches it (as root, or by *). Over a wire the directories are then
    /// always listed in full, since the sender's digests cannot know the receiver's ids.
    #[arg(long, value_name = "STRING", value_hint = ValueHint::Other, help_heading = ATTRS)]
    usermap: Option<String>,
    /// custom groupname mapping
    ///
    /// As --usermap, for groups. Implies -g.
    #[arg(long, value_name = "STRING", value_hint = ValueHint::Other, help_heading = ATTRS)]
    groupmap: Option<String>,
    /// simple username/groupname mapping
    ///
    /// Give every entry this owner and group on the receiving side (names resolved there, or
    /// numbers); USER, :GROUP and USER: map one of them. Implies -o and/or -g as in rsync; an
    /// unknown name is reported and left unmapped. An unchanged tree still costs one exchange
    /// over a wire (the digests leave the sender's ids out).
    #[arg(long, value_name = "USER:GROUP", value_hint = ValueHint::Other, help_heading = ATTRS)]
    chown: Option<String>,

    /// make backups (see --suffix & --backup-dir)
    ///
    /// A destination file that is about to be replaced or deleted is first kept as NAME~ beside
    /// it (see --suffix), or under --backup-dir. The old file is hard-linked to its backup name
    /// before the new one is renamed over it, so the name never stands empty (a copy where the
    /// file system refuses the link; with --inplace, a copy made before the file is written).
    /// Directories are not backed up, nor files that are unchanged or whose attributes alone
    /// change; an existing backup is replaced. With --delete and without --backup-dir, files
    /// ending in the suffix are protected from deletion (rsync's P *SUFFIX rule, left out under
    /// --delete-excluded), and a deleted directory that now holds backups stays. Without
    /// --backup-dir, directory times are not preserved (an implied -O, as in rsync).
    #[arg(short = 'b', long, help_heading = TRANSFER)]
    backup: bool,
    #[arg(long = "no-backup", hide = true)]
    no_backup: bool,
    /// make backups into hierarchy based in DIR
    ///
    /// Keep each backup as DIR/PATH, PATH being the file's path in the destination (and no
    /// suffix unless --suffix is given). A relative DIR is relative to the destination
    /// directory, on the receiving side. DIR and its missing parents are made by the first
    /// backup; below DIR, directories are made as needed with the destination's modes, and a
    /// non-directory in their way (a symlink, say) is replaced, never followed. Implies
    /// --backup.
    #[arg(long = "backup-dir", value_name = "DIR", value_hint = ValueHint::DirPath, help_heading = TRANSFER)]
    backup_dir: Option<String>,
    /// backup suffix (default ~ w/o --backup-dir)
    ///
    /// The suffix of backup names: ~ by default, nothing with --backup-dir. It may not contain a
    /// slash, nor be empty without a --backup-dir.
    #[arg(long, value_name = "SUFFIX", value_hint = ValueHint::Other, allow_hyphen_values = true, help_heading = TRANSFER)]
    suffix: Option<String>,
    /// update destination files in-place (not atomic: an interrupted file is left part updated)
    ///
    /// Update files by writing into them directly instead of through a temporary file and a
    /// rename. This gives up atomicity: an interrupted run leaves the file partly updated, and
    /// readers may see it change. Only changed blocks are written. Implies --partial.
    #[arg(long, help_heading = TRANSFER)]
    inplace: bool,
    /// append data onto shorter files
    ///
    /// A destination file shorter than its source gets only the source's bytes past its
    /// length appended; what it holds already is trusted and neither read nor sent (so use
    /// it only where the destination can be a prefix of the source: growing logs, an
    /// interrupted copy). The appended file is written in place, the user's explicit
    /// choice: an interrupted run leaves it partly appended, and readers see it grow. A
    /// destination file as long as its source or longer is left alone, attributes too, as
    /// rsync 3 does; a file that the quick check finds unchanged keeps the usual attribute
    /// update, and a file the destination lacks is copied as usual. Not with -W,
    /// --partial-dir or --delay-updates (rsync's refusals).
    #[arg(long, help_heading = TRANSFER)]
    append: bool,
    /// --append w/old data in file checksum
    ///
    /// As --append, then the whole file (the data it held before too) is checked against
    /// the source's. A file that fails the check keeps what was appended ("WARNING: NAME
    /// failed verification -- update retained (will try again)", shown with -v or -i, as
    /// rsync shows it) and is sent again whole, through a temporary file and a rename.
    #[arg(long = "append-verify", help_heading = TRANSFER)]
    append_verify: bool,
    #[arg(long = "no-append", hide = true)]
    no_append: bool,
    /// turn sequences of nulls into sparse blocks
    ///
    /// Turn runs of zeros into holes.
    #[arg(short = 'S', long, help_heading = TRANSFER)]
    sparse: bool,
    /// perform a trial run with no changes made
    ///
    /// Show what would be done, change nothing.
    #[arg(short = 'n', long = "dry-run", help_heading = TRANSFER)]
    dry_run: bool,
    /// copy files whole (w/o delta-xfer algorithm)
    ///
    /// Copy files whole, without the delta algorithm (the default for a local copy).
    #[arg(short = 'W', long = "whole-file", help_heading = TRANSFER)]
    whole_file: bool,
    /// use the delta-xfer algorithm
    ///
    /// Use the delta algorithm (the default over a remote shell); locally, rebuild a changed
    /// file from its current version where blocks are equal. Also spelled --no-W.
    #[arg(long = "no-whole-file", alias = "no-W", help_heading = TRANSFER)]
    no_whole_file: bool,
    /// choose the checksum algorithm (accepted: xsync's own are used)
    ///
    /// Also spelled --cc. rsync's names are accepted (any case), alone or as XFER,FILE: auto, xxh128, xxh3,
    /// xxh64 (xxhash), md5, md4, sha1. They change nothing on the wire: xsync's delta blocks
    /// carry its own rolling and strong hashes, and -c and the check of every transferred
    /// file use blake3, which is at least as strong as any of them. none (rsync's
    /// whole-file copy without a check) is refused, since xsync always checks what it
    /// wrote; any other name is refused as rsync refuses it (exit 4).
    #[arg(long = "checksum-choice", alias = "cc", value_name = "STR", value_hint = ValueHint::Other, help_heading = TRANSFER)]
    checksum_choice: Option<String>,
    /// force a fixed checksum block-size
    ///
    /// The block size of the delta algorithm for every file whose basis is signed whole
    /// (below 64 MiB), in place of the size picked from the file's length (about its square
    /// root). SIZE is read as --max-size's (bytes by default, 1k...); as in rsync, at most
    /// 128K, and 0 is the default. Blocks below 700 bytes are taken as 700 (xsync's floor,
    /// which bounds what a signature may cost the sender). Files of 64 MiB and more keep
    /// their coarse level of 1 MiB blocks, and pick their fine blocks per range.
    #[arg(short = 'B', long = "block-size", value_name = "SIZE", value_hint = ValueHint::Other, allow_hyphen_values = true, help_heading = TRANSFER)]
    block_size: Option<String>,
    /// keep partially transferred files (they become the next run's delta basis)
    #[arg(long, help_heading = TRANSFER)]
    partial: bool,
    /// put a partially transferred file into DIR (a name beside each file, or an absolute path)
    ///
    /// Keep a partially transferred file as DIR/name, use it as the next run's basis, remove
    /// it once the file is complete. Implies --partial. DIR is either a plain directory name,
    /// made beside each file's target when needed (and removed when it empties), which is
    /// protected from --delete as rsync protects it; or, as in rsync, an absolute path on the
    /// receiving side (resolved there, once, when a file is first kept; its last component
    /// made if missing), where every kept file goes by its name alone, and which no filter
    /// rule protects. A relative path of more than one component (a/b) and a .. in an
    /// absolute one are refused (exit 1). Only names from the transfer, never paths, are
    /// ever put below DIR.
    #[arg(long = "partial-dir", value_name = "DIR", value_hint = ValueHint::Other, help_heading = TRANSFER)]
    partial_dir: Option<String>,
    /// put all updated files into place at end
    ///
    /// Keep each finished file (content and attributes) under its temporary name beside
    /// its target until every file is done, then rename them all into place, just before
    /// hard links and directory times are set: the destination changes from old to new in
    /// a moment rather than file by file (as rsync's, which keeps them in .~tmp~
    /// directories). Not with --inplace.
    #[arg(long = "delay-updates", help_heading = TRANSFER)]
    delay_updates: bool,
    /// create temporary files in directory DIR
    ///
    /// Write each file's temporary in DIR instead of beside its target, then rename it into
    /// place. A relative DIR is relative to the destination directory, on the receiving
    /// side; it must exist (rsync's "The temp-dir does not exist"). The temporaries carry
    /// xsync's run-owned names, so one left by a killed run is never taken for a file of the
    /// destination and is removed by a later run with the same DIR. Where DIR is on another
    /// file system than the target (the rename fails with EXDEV), the file is copied into a
    /// temporary beside its target and that is renamed, so the name still changes from the
    /// old file to the whole new one at once. Symlinks and device nodes are still made
    /// beside their names; with --inplace there is no temporary. A relative DIR inside the
    /// destination is protected from --delete, with what is in it.
    #[arg(short = 'T', long = "temp-dir", value_name = "DIR", value_hint = ValueHint::DirPath, help_heading = TRANSFER)]
    temp_dir: Option<String>,
    /// also compare destination files relative to DIR
    ///
    /// As --link-dest, but an exact match is not transferred at all (and a destination file
    /// it stands for is removed, as rsync does): only what differs from DIR lands.
    #[arg(
        long = "compare-dest",
        value_name = "DIR",
        action = ArgAction::Append,
        value_hint = ValueHint::DirPath,
        help_heading = TRANSFER
    )]
    compare_dest: Vec<String>,
    /// ... and include copies of unchanged files
    ///
    /// As --link-dest, but an exact match is copied locally from DIR; only files the
    /// destination lacks are looked for. The three options may not be mixed.
    #[arg(
        long = "copy-dest",
        value_name = "DIR",
        action = ArgAction::Append,
        value_hint = ValueHint::DirPath,
        help_heading = TRANSFER
    )]
    copy_dest: Vec<String>,
    /// hardlink to files in DIR when unchanged
    ///
    /// Hard-link a file that the destination lacks (or has in another version) to DIR's copy
    /// when that copy is an exact match: the quick check passes (size and mtime, or -c) and
    /// every preserved attribute (permissions, owner, group) is equal, since a hard link
    /// shares them. A relative DIR is relative to the destination directory (on the remote
    /// side for a remote destination): the snapshot idiom is "xsync -a --delete
    /// --link-dest=../2026-11-30 src/ backup/2026-12-01/".
    ///
    /// Up to 20 may be given, searched in order; the first exact match is linked. A match
    /// that differs only in attributes is copied locally from DIR and its attributes set (cf
    /// under -i); a file that differs is transferred, over a wire as a delta against DIR's
    /// copy. Symlinks and other non-directories are linked too. Linked files are not listed
    /// by -i or -v, and never cross the wire. A DIR that does not exist gets rsync's warning
    /// ("--link-dest arg does not exist: ...") and the run goes on. A destination file
    /// already right is still replaced by the link, as rsync does. If the link is refused
    /// (another file system, the link limit), the file is copied from DIR.
    #[arg(
        long = "link-dest",
        value_name = "DIR",
        action = ArgAction::Append,
        value_hint = ValueHint::DirPath,
        help_heading = TRANSFER
    )]
    link_dest: Vec<String>,
    /// fsync every written file
    ///
    /// Sync each written file to disk before it is renamed into place, so after a power cut a
    /// name holds its old file or the whole new one.
    #[arg(long, help_heading = TRANSFER)]
    fsync: bool,

    /// specify the remote shell to use
    ///
    /// The remote shell, split like a shell command line. Without -e: $XSYNC_RSH, else
    /// rsync's $RSYNC_RSH, else ssh. When it is OpenSSH's ssh and its ciphers are its
    /// defaults (no -c, no Ciphers in -e or any ssh_config, as `ssh -G` shows), and this
    /// CPU has AES instructions, ssh is asked for AES-GCM first: the same ciphers, in an
    /// order that costs a third of chacha20-poly1305's CPU here. And where its configuration
    /// connects directly (no ProxyCommand, ProxyJump, BindAddress, BindInterface,
    /// CheckHostIP or host-name canonicalisation), ssh is given a socket xsync connected
    /// with Nagle's algorithm off (ProxyUseFdpass, with `xsync --xsync-connect` as the
    /// ProxyCommand, keeping ssh's address family, ConnectTimeout, ConnectionAttempts and
    /// TCPKeepAlive): ssh turns it off only after the login, whose small packets otherwise
    /// wait for delayed acknowledgements (50 ms of a loopback login here).
    #[arg(
        short = 'e',
        long = "rsh",
        value_name = "COMMAND",
        value_hint = ValueHint::CommandString,
        help_heading = REMOTE
    )]
    rsh: Option<String>,
    /// specify the xsync to run on the remote machine
    ///
    /// The xsync to run on the remote host (may carry arguments, e.g. "sudo xsync"); nothing
    /// is installed there then (see REMOTE INSTALL).
    #[arg(long = "xsync-path", value_name = "PROGRAM", value_hint = ValueHint::Other, help_heading = REMOTE)]
    xsync_path: Option<String>,
    /// rsync's spelling: the same, with a word naming rsync run as xsync ("sudo rsync")
    ///
    /// rsync's spelling, for scripts that carry it: the same as --xsync-path, with a word
    /// that names rsync (rsync, /usr/bin/rsync) run as xsync from the remote PATH, so
    /// --rsync-path="sudo rsync" runs "sudo xsync".
    #[arg(long = "rsync-path", value_name = "PROGRAM", value_hint = ValueHint::Other, help_heading = REMOTE)]
    rsync_path: Option<String>,
    /// never install xsync on a remote that lacks it (also: XSYNC_NO_DEPLOY=1)
    ///
    /// Never install xsync on the remote host (see REMOTE INSTALL); a remote without one then
    /// fails with exit 127, as before. Also XSYNC_NO_DEPLOY=1.
    #[arg(long = "no-deploy", help_heading = REMOTE)]
    no_deploy: bool,
    /// data streams over ssh: N channels of one login (1: one stream; default: by the link)
    ///
    /// How many streams carry file data over an ssh remote shell. ssh's window caps one
    /// stream at about 2 MB per round trip (20 MB/s at 100 ms), whatever the link, so on a
    /// long link xsync opens more channels through the same login (OpenSSH's ControlMaster,
    /// with its socket in a private directory removed at the end) and spreads new files
    /// across them, a big file by ranges. By default it does so when the round trip it
    /// measures and the bytes to send call for it; 1 turns it off. A remote shell that is
    /// not ssh, or an ssh that cannot multiplex, always uses one stream, as do --bwlimit,
    /// --timeout and --inplace; --partial and --sparse keep their files on the first.
    #[arg(long, value_name = "N", value_hint = ValueHint::Other, value_parser = clap::value_parser!(u32).range(1..=16), help_heading = REMOTE)]
    streams: Option<u32>,
    /// set I/O timeout in seconds (0: none; a local copy has no connection to time out)
    ///
    /// rsync's I/O timeout: when this end has waited on the connection for SECONDS with no
    /// byte moving, it prints "[sender] io timeout after SECONDS seconds -- exiting" (or
    /// [receiver]), removes the files it was writing (every destination file stays old or
    /// new) and exits 30. The server is given the same timeout, so a client that hangs does
    /// not hold it either. An end that is busy (scanning, hashing) sends keepalives
    /// meanwhile, so only a peer that stopped answering ends the run. 0 (the default) or a
    /// negative value: no timeout. A local copy has no connection and never times out.
    #[arg(
        long,
        value_name = "SECONDS", value_hint = ValueHint::Other,
        allow_negative_numbers = true,
        help_heading = REMOTE
    )]
    timeout: Option<i64>,
    /// daemon connection timeout: refused, as rsync refuses it without a daemon
    ///
    /// Refused with exit 1 and rsync's message: it is for rsync daemon connections, which
    /// xsync does not make.
    #[arg(
        long,
        value_name = "SECONDS", value_hint = ValueHint::Other,
        allow_negative_numbers = true,
        help_heading = REMOTE
    )]
    contimeout: Option<String>,
    /// compress file data during the transfer (zstd; by default only where it pays)
    ///
    /// Compress data on the wire with zstd, one stream per direction (a 2 MiB window at the
    /// fast levels, 8 MiB at the deeper ones), on a thread of its own beside the one that
    /// reads and frames the files. It starts at zstd
    /// level 3 (the level rsync 3.x negotiates) and goes deeper while the link, measured
    /// during the run, is slower than the compressor. Already-compressed suffixes (rsync's
    /// --skip-compress list) and data whose sample looks incompressible pass raw.
    ///
    /// Without -z (and without --no-compress), a transfer over a remote shell compresses
    /// where it pays: it sends raw, measures how fast the remote shell drains what it writes
    /// and how fast zstd would go on this data, and compresses for as long as that delivers
    /// the data sooner (a slow link and data that compresses). It does not start while the
    /// machine's CPUs are all busy (as on loopback, where ssh and both ends share them): the
    /// compressor's time would come out of theirs. rsync sends raw unless asked. A local
    /// copy never compresses.
    #[arg(short = 'z', long, overrides_with = "no_compress", help_heading = REMOTE)]
    compress: bool,
    /// choose the compression algorithm (xsync compresses with zstd)
    ///
    /// Also spelled --zc. rsync's names, as rsync takes them: zstd, lz4, zlibx and zlib turn compression on (as
    /// -z), none turns it off, auto leaves it to -z. The data is always compressed with
    /// zstd, which the two ends of xsync always share (lz4 and zlib ask for a fast or an old
    /// algorithm; zstd at the level of --compress-level serves both). Any other name is
    /// refused as rsync refuses it (exit 4).
    #[arg(long = "compress-choice", alias = "zc", value_name = "STR", value_hint = ValueHint::Other, help_heading = REMOTE)]
    compress_choice: Option<String>,
    /// send file data raw over the wire, never compressed
    ///
    /// Turns off -z and the compression a remote transfer would otherwise choose by itself:
    /// frames travel bare, as rsync's do without -z. Also spelled --no-z.
    #[arg(long = "no-compress", alias = "no-z", overrides_with = "compress", help_heading = REMOTE)]
    no_compress: bool,
    /// explicitly set compression level
    ///
    /// zstd level NUM throughout the run, as rsync passes its level to zstd: 1 to 22, or
    /// negative for zstd's fastest levels; 0 is zstd's default (3); out-of-range values are
    /// clamped. Implies -z, as in rsync (even after --no-compress).
    #[arg(long = "compress-level", value_name = "NUM", value_hint = ValueHint::Other, allow_negative_numbers = true, help_heading = REMOTE)]
    compress_level: Option<i32>,
    /// the remote shell's word-splitting of remote paths, as rsync before 3.2.4
    ///
    /// rsync's behaviour before 3.2.4: the remote shell splits each remote path at blanks, so
    /// host:'dir/a dir/b' names two sources. xsync's server splits them the same way (quotes
    /// and backslashes are not interpreted); a remote destination that splits into several
    /// words is refused. Conflicts with -s, as in rsync.
    #[arg(long = "old-args", action = ArgAction::Count, help_heading = REMOTE)]
    old_args: u8,
    #[arg(long = "no-old-args", hide = true)]
    no_old_args: bool,
    /// names travel inside the protocol, never through the remote shell (always on)
    ///
    /// Accepted, and what xsync always does: file names and options travel inside the
    /// protocol (the Start message), never through the remote shell, so blanks and shell
    /// characters in names need no quoting. Also spelled --protect-args; --no-secluded-args
    /// changes nothing either.
    #[arg(
        short = 's',
        long = "secluded-args",
        alias = "protect-args",
        help_heading = REMOTE
    )]
    secluded_args: bool,
    #[arg(
        long = "no-secluded-args",
        alias = "no-protect-args",
        alias = "no-s",
        hide = true
    )]
    no_secluded_args: bool,
    /// use blocking I/O for the remote shell (xsync's pipes always are)
    ///
    /// Accepted, as is --no-blocking-io; xsync's pipes to the remote shell are always
    /// blocking, which is what rsync's option asks for.
    #[arg(long = "blocking-io", help_heading = REMOTE)]
    blocking_io: bool,
    #[arg(long = "no-blocking-io", hide = true)]
    no_blocking_io: bool,
    /// limit socket I/O bandwidth (KiB/s; suffixes K, M, G, KB = 1000; 0: no limit)
    ///
    /// Limit what each end writes to the connection to RATE per second, paced as rsync paces
    /// it: KiB by default; the suffixes B, K, M, G, T, P (powers of 1024, also spelled
    /// KiB...) and KB, MB... (powers of 1000); fractions allowed (1.5m); less than 512 bytes
    /// per second is refused; 0: no limit. The server is given the limit too, so a pull is
    /// paced where its data is written. A local copy refuses it (exit 1): rsync's local limit
    /// slows its internal pipe, and xsync's local copy has no pipe and does not pace its disk
    /// I/O.
    #[arg(long, value_name = "RATE", value_hint = ValueHint::Other, help_heading = REMOTE)]
    bwlimit: Option<String>,
    /// force an older protocol version to be used (accepted: no effect on xsync's protocol)
    ///
    /// rsync's protocol numbers 20 to 32 are accepted, for scripts that pin one, and change
    /// nothing: both ends speak xsync's own protocol, whose version they agree on at the
    /// start (so times keep their nanoseconds, which rsync's protocols before 31 drop). A
    /// number above 32 is refused as rsync refuses it (exit 2), and so is one below 20.
    #[arg(long, value_name = "NUM", value_hint = ValueHint::Other, allow_negative_numbers = true, help_heading = REMOTE)]
    protocol: Option<i64>,
    /// request charset conversion of filenames (refused: names are copied as bytes)
    ///
    /// Refused with exit 1: xsync copies every name as the bytes it is, on both ends.
    /// --iconv=- and --no-iconv, which ask for no conversion, are accepted.
    #[arg(long, value_name = "CONVERT_SPEC", value_hint = ValueHint::Other, help_heading = REMOTE)]
    iconv: Option<String>,
    #[arg(long = "no-iconv", hide = true)]
    no_iconv: bool,
    /// prefer IPv4 (passed to ssh as -4)
    ///
    /// Passed to the remote shell as -4 when it is ssh (after the -e words and -l USER), as
    /// rsync passes it; another remote shell is not told. The last of -4 and -6 wins.
    #[arg(
        short = '4',
        long = "ipv4",
        overrides_with = "ipv6",
        help_heading = REMOTE
    )]
    ipv4: bool,
    /// prefer IPv6 (passed to ssh as -6)
    ///
    /// Passed to the remote shell as -6 when it is ssh, as -4 is.
    #[arg(
        short = '6',
        long = "ipv6",
        overrides_with = "ipv4",
        help_heading = REMOTE
    )]
    ipv6: bool,

    /// delete extraneous files from dest dirs
    ///
    /// Delete extraneous files from destination directories (each directory's as it is
    /// reached, as --delete-during).
    #[arg(long, help_heading = DELETE)]
    delete: bool,
    /// receiver deletes before xfer, not during
    ///
    /// Delete all extraneous files before the first transfer (frees space on a full disk).
    /// Implies --delete, as do the three below; any two of before, during (or delay) and
    /// after are refused, as rsync refuses them.
    #[arg(long = "delete-before", help_heading = DELETE)]
    delete_before: bool,
    /// receiver deletes during the transfer
    ///
    /// Delete each directory's extraneous files as the directory is reached (the default).
    /// Also spelled --del.
    #[arg(long = "delete-during", alias = "del", help_heading = DELETE)]
    delete_during: bool,
    /// find deletions during, delete after
    ///
    /// Delete extraneous files after all transfers are done, so that the old files stay until
    /// the new ones have landed. (xsync plans every deletion before it writes anything, so
    /// --delete-delay and --delete-after delete the same entries.) As with every --delete,
    /// nothing is deleted when the sender could not read its whole tree.
    #[arg(long = "delete-delay", help_heading = DELETE)]
    delete_delay: bool,
    /// receiver deletes after transfer, not during
    ///
    /// As --delete-delay: extraneous files are deleted after all transfers are done.
    #[arg(long = "delete-after", help_heading = DELETE)]
    delete_after: bool,
    /// also delete excluded files from dest dirs
    #[arg(long = "delete-excluded", help_heading = DELETE)]
    delete_excluded: bool,
    /// delete even if there are I/O errors
    ///
    /// Delete extraneous files under --delete even when the sender could not read
    /// everything (rsync's "IO error encountered -- skipping file deletion" is the default).
    /// A directory the sender could not read is still never emptied on the receiver.
    #[arg(long = "ignore-errors", help_heading = DELETE)]
    ignore_errors: bool,
    /// force deletion of directories even if not empty (xsync: always)
    ///
    /// Accepted, and what xsync always does: a destination directory where the source has
    /// a file, symlink or special file is removed with everything in it to make way for it
    /// (rsync without --force or --delete refuses a non-empty one). --no-force changes
    /// nothing either. With it, as with --delete, -v and -i list what that removes, as
    /// rsync's do; under --delete-missing-args it lets a missing source's non-empty
    /// directory be deleted, as in rsync.
    #[arg(long, help_heading = DELETE)]
    force: bool,
    #[arg(long = "no-force", hide = true)]
    no_force: bool,
    /// don't delete more than NUM files
    ///
    /// Don't delete more than NUM entries (exit 25 when the limit stopped deletions).
    #[arg(
        long = "max-delete",
        value_name = "NUM", value_hint = ValueHint::Other,
        allow_negative_numbers = true,
        help_heading = DELETE
    )]
    max_delete: Option<i64>,

    /// ignore missing source args without error
    ///
    /// A source argument (or --files-from name) that does not exist is left out without an
    /// error, as in rsync (a file that vanishes later still counts: exit 24).
    #[arg(long = "ignore-missing-args", help_heading = FILTERS)]
    ignore_missing_args: bool,
    /// delete missing source arguments from destination
    ///
    /// A source argument (or --files-from name) that does not exist deletes what the
    /// destination has at its name, as in rsync, without --delete: a file, a symlink, an
    /// empty directory, and a directory with entries only with --delete or --force (else
    /// rsync's "cannot delete non-empty directory" note). Implies --ignore-missing-args.
    #[arg(long = "delete-missing-args", help_heading = FILTERS)]
    delete_missing_args: bool,
    /// prune empty directory chains from the file-list
    ///
    /// Leave out directories that hold no file (after the filter rules), as rsync: with
    /// --include='*/' --include='*.pdf' --exclude='*' only the directories on the way to a
    /// PDF are created; under --delete a pruned directory is extraneous.
    #[arg(
        short = 'm',
        long = "prune-empty-dirs",
        overrides_with = "no_prune_empty_dirs",
        help_heading = FILTERS
    )]
    prune_empty_dirs: bool,
    #[arg(
        long = "no-prune-empty-dirs",
        alias = "no-m",
        hide = true,
        overrides_with = "prune_empty_dirs"
    )]
    no_prune_empty_dirs: bool,
    /// auto-ignore files in the same way CVS does
    ///
    /// Leave out what CVS ignores, as rsync: the default list (RCS SCCS CVS CVS.adm RCSLOG
    /// cvslog.* tags TAGS .make.state .nse_depinfo *~ #* .#* ,* _$* *$ *.old *.bak *.BAK
    /// *.orig *.rej .del-* *.a *.olb *.o *.obj *.so *.exe *.Z *.elc *.ln core .svn/ .git/
    /// .hg/ .bzr/), then the names in $HOME/.cvsignore and in $CVSIGNORE, and in each
    /// directory the names its .cvsignore lists (all split on whitespace). These rules come
    /// after all of your own, wherever -C stands (use --filter=:C and --filter=-C to place
    /// them). Under --delete the receiver's matching files are kept, except those of the
    /// default list inside a directory that is deleted (they are perishable).
    #[arg(short = 'C', long = "cvs-exclude", help_heading = FILTERS)]
    cvs_exclude: bool,
    /// add a file-filtering RULE
    ///
    /// A filter rule, as rsync's: + (include), - (exclude), P (protect), R (risk), H (hide),
    /// S (show), ! (clear), . or merge FILE (the rules in FILE, read now), : or dir-merge
    /// FILE (the rules in each directory's FILE, read as the walk reaches it, for that
    /// directory and below; the receiver reads its own for --delete), with rsync's
    /// modifiers (! / s r p on rules; - + C e n w s r on merge rules). Filter rules apply in
    /// command-line order, with --exclude, --include and their -from files among them; the
    /// first match wins.
    #[arg(short = 'f', long, value_name = "RULE", value_hint = ValueHint::Other, action = ArgAction::Append, allow_hyphen_values = true, help_heading = FILTERS)]
    filter: Vec<String>,
    /// same as --filter='dir-merge /.rsync-filter'
    ///
    /// Read .rsync-filter files as the walk goes (rsync's --filter='dir-merge
    /// /.rsync-filter': also in the directories above the transfer); repeated (-FF), also
    /// leave out the .rsync-filter files themselves (--filter='- .rsync-filter').
    #[arg(short = 'F', action = ArgAction::Count, help_heading = FILTERS)]
    filter_files: u8,
    /// exclude files matching PATTERN
    ///
    /// An exclude rule, applied in command-line order with the other filter options (see
    /// --filter).
    #[arg(long, value_name = "PATTERN", value_hint = ValueHint::Other, action = ArgAction::Append, allow_hyphen_values = true, help_heading = FILTERS)]
    exclude: Vec<String>,
    /// read exclude patterns from FILE
    ///
    /// Exclude patterns read from FILE (-: standard input), one a line (NUL-separated with
    /// --from0; empty lines and lines starting with # or ; are skipped), applied in this
    /// option's place in the command-line order.
    #[arg(
        long = "exclude-from",
        value_name = "FILE",
        action = ArgAction::Append,
        value_hint = ValueHint::FilePath,
        help_heading = FILTERS
    )]
    exclude_from: Vec<OsString>,
    /// don't exclude files matching PATTERN
    ///
    /// An include rule, applied in command-line order with the other filter options.
    #[arg(long, value_name = "PATTERN", value_hint = ValueHint::Other, action = ArgAction::Append, allow_hyphen_values = true, help_heading = FILTERS)]
    include: Vec<String>,
    /// read include patterns from FILE
    ///
    /// Include patterns read from FILE, as --exclude-from reads its own.
    #[arg(
        long = "include-from",
        value_name = "FILE",
        action = ArgAction::Append,
        value_hint = ValueHint::FilePath,
        help_heading = FILTERS
    )]
    include_from: Vec<OsString>,
    /// read list of source-file names from FILE ("-": stdin)
    ///
    /// Send the names listed in FILE (-: standard input), one a line, relative to the one
    /// source argument; empty lines and lines starting with # or ; are skipped. Implies -R
    /// (a /./ in a name works as there), and turns off the recursion of -a: a listed
    /// directory is created but not descended into unless -r is given (and --delete then
    /// deletes only in directories descended into). A leading / is dropped and a .. only
    /// takes back the component before it, so every name stays inside the source. A name
    /// that does not exist is reported and the rest is sent (exit status 23). The list is
    /// always read on the client and travels to a pulling server in the protocol; a remote
    /// list (host:FILE) is refused with exit status 1.
    #[arg(
        long = "files-from",
        value_name = "FILE",
        value_hint = ValueHint::FilePath,
        help_heading = FILTERS
    )]
    files_from: Option<OsString>,
    /// all *-from/filter files are delimited by 0s
    ///
    /// The names of --files-from and the rules of --exclude-from/--include-from are separated
    /// by NUL characters, not newlines ("find . -print0 | xsync -a --from0 --files-from=-
    /// ./ host:dst/"). Comments are skipped as without it, as rsync 3.5 does.
    #[arg(short = '0', long, help_heading = FILTERS)]
    from0: bool,
    /// Server side of a --files-from pull: the names come in the protocol's `Start`.
    #[arg(long = "files-from-wire", hide = true)]
    files_from_wire: bool,
    /// (server only) the client's locale: `utf8` or `ascii`, for escaping names
    #[arg(long = "client-names", hide = true, value_parser = ["utf8", "ascii"])]
    client_names: Option<String>,
    /// (server only) the format of the lines the server relays for the client's --log-file
    #[arg(long = "log-relay-format", hide = true)]
    log_relay_format: Option<String>,

    // rsync's --no-OPTION forms of the options above that had none yet (each turns its
    // option off wherever it appears, as the other --no-X forms here do).
    #[arg(long = "no-verbose", alias = "no-v", hide = true)]
    no_verbose: bool,
    #[arg(long = "no-human-readable", alias = "no-h", hide = true)]
    no_human_readable: bool,
    #[arg(long = "no-itemize-changes", alias = "no-i", hide = true)]
    no_itemize: bool,
    #[arg(long = "no-checksum", alias = "no-c", hide = true)]
    no_checksum: bool,
    #[arg(long = "no-hard-links", alias = "no-H", hide = true)]
    no_hard_links: bool,
    #[arg(long = "no-one-file-system", alias = "no-x", hide = true)]
    no_one_file_system: bool,
    #[arg(long = "no-sparse", alias = "no-S", hide = true)]
    no_sparse: bool,
    #[arg(long = "no-inplace", hide = true)]
    no_inplace: bool,
    #[arg(long = "no-partial", hide = true)]
    no_partial: bool,
    #[arg(long = "no-bwlimit", hide = true)]
    no_bwlimit: bool,
    #[arg(long = "no-timeout", hide = true)]
    no_timeout: bool,
    #[arg(long = "no-contimeout", hide = true)]
    no_contimeout: bool,
    #[arg(long = "no-numeric-ids", hide = true)]
    no_numeric_ids: bool,
    #[arg(long = "no-mkpath", hide = true)]
    no_mkpath: bool,
    #[arg(long = "no-from0", hide = true)]
    no_from0: bool,

    /// print version number
    #[arg(long = "version", short = 'V', help_heading = HELP)]
    version: bool,
    /// show this help (as -h does when it is alone)
    #[arg(long = "help", action = ArgAction::HelpShort, help_heading = HELP)]
    help: Option<bool>,
    /// the sources, then the destination; a remote one is [USER@]HOST:PATH (SRC/ copies
    /// the directory's contents, SRC the directory itself)
    #[arg(value_name = "PATH", value_hint = ValueHint::AnyPath)]
    paths: Vec<OsString>,
}

/// clap's definition of the command line, for what is generated from it: the man page and
/// the shell completions (`tests/it/generated.rs`).
pub fn command() -> clap::Command {
    Cli::command()
}

/// At most one kind of alternate destination, and at most 20 DIRs, as rsync insists.
fn alt_dest(
    matches: &clap::ArgMatches,
    cli: &Cli,
) -> Result<Option<(AltDest, Vec<String>)>, Error> {
    let given: Vec<(AltDest, &Vec<String>)> = [
        (AltDest::Compare, &cli.compare_dest),
        (AltDest::Copy, &cli.copy_dest),
        (AltDest::Link, &cli.link_dest),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    match given.as_slice() {
        [] => Ok(None),
        [(kind, dirs)] => {
            if dirs.len() > MAX_ALT_DESTS {
                return Err(Error::usage(format!(
                    "at most {MAX_ALT_DESTS} {} args may be specified",
                    kind.word()
                )));
            }
            Ok(Some((*kind, dirs.to_vec())))
        }
        _ => {
            // rsync names the one given last first.
            let pos = |k: AltDest| {
                let id = match k {
                    AltDest::Compare => "compare_dest",
                    AltDest::Copy => "copy_dest",
                    AltDest::Link => "link_dest",
                };
                matches
                    .indices_of(id)
                    .and_then(|mut i| i.next_back())
                    .unwrap_or(0)
            };
            let mut kinds: Vec<AltDest> = given.iter().map(|(k, _)| *k).collect();
            kinds.sort_by_key(|k| std::cmp::Reverse(pos(*k)));
            Err(Error::usage(format!(
                "the {} option conflicts with the {} option",
                kinds[0].word(),
                kinds[1].word()
            )))
        }
    }
}

fn any_delete_of(cli: &Cli) -> bool {
    cli.delete
        || cli.delete_excluded
        || cli.delete_before
        || cli.delete_during
        || cli.delete_delay
        || cli.delete_after
}

/// rsync's `-b`, `--backup-dir` and `--suffix`, with its checks and defaults: a DIR implies
/// `-b` and an empty default suffix, and a DIR that names the destination itself (`.`) is
/// no DIR at all.
fn backup_rule(cli: &Cli) -> Result<Option<BackupRule>, Error> {
    let mut dir = cli.backup_dir.as_deref();
    if (!cli.backup || cli.no_backup) && dir.is_none() {
        return Ok(None);
    }
    let suffix = cli
        .suffix
        .clone()
        .unwrap_or_else(|| if dir.is_some() { "" } else { "~" }.to_string());
    if suffix.contains('/') {
        return Err(Error::usage(format!(
            "--suffix cannot contain slashes: {suffix}"
        )));
    }
    if let Some(d) = dir.as_mut() {
        while let Some(rest) = d.strip_prefix("./") {
            *d = rest;
        }
        if *d == "." {
            *d = "";
        }
    }
    let same_as_dest = dir == Some("");
    let dir = dir.filter(|d| !d.is_empty()).map(str::to_string);
    if dir.is_none() && suffix.is_empty() {
        return Err(Error::usage(if same_as_dest {
            "--suffix cannot be empty when --backup-dir is the same as the dest dir"
        } else {
            "--suffix cannot be empty without a --backup-dir"
        }));
    }
    Ok(Some(BackupRule { dir, suffix }))
}

/// What the command line asks for: a transfer, or just the version text.
pub enum Parsed {
    Run(Box<Options>),
    Version,
    /// `--help` or a clap-rendered message that is not an error (exit 0).
    Help(String),
}

/// The command line into [`Options`]. Long because it is the table of rsync's options,
/// one assignment (or one implication, as `-a` or `--no-X`) per option in the order
/// rsync's own parser applies them; there is no logic to split out, and one place keeps
/// the implications' order visible.
pub fn parse<I, T>(args: I) -> Result<Parsed, Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // rsync's `-h` is --human-readable, except alone, where it is help.
    if args.len() == 2 && args[1] == "-h" {
        return Ok(Parsed::Help(Cli::command().render_help().to_string()));
    }
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return clap_error(e),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Error::usage(e.to_string()))?;
    if cli.version {
        return Ok(Parsed::Version);
    }
    let from0 = cli.from0 && !cli.no_from0;
    let mut filters = ordered_filters(&matches, from0)?;
    let files_from = match (&cli.files_from, cli.files_from_wire) {
        (Some(f), _) => Some(read_files_from(f, from0)?),
        (None, true) => Some(Vec::new()),
        (None, false) => None,
    };
    if let Some(d) = &cli.partial_dir {
        let absolute = d.starts_with('/');
        if !absolute && (d.is_empty() || d == "." || d == ".." || d.contains('/')) {
            return Err(Error::usage(format!(
                "--partial-dir `{d}`: a plain directory name (created beside each file) or an absolute path is supported"
            )));
        }
        if absolute && d.split('/').any(|c| c == "..") {
            return Err(Error::usage(format!(
                "--partial-dir `{d}`: an absolute partial dir may not contain `..`"
            )));
        }
        // rsync protects a relative partial dir from --delete the same way (an absolute
        // one is no name in the transfer).
        if !absolute {
            filters
                .add_rule(&format!("P {d}/"))
                .map_err(|e| Error::usage(e.to_string()))?;
        }
    }
    let backup = backup_rule(&cli)?;
    // rsync: with --delete and no DIR, the backups beside the files are protected from it.
    if let Some(b) = &backup
        && b.dir.is_none()
        && any_delete_of(&cli)
        && !cli.delete_excluded
    {
        filters
            .add_rule(&format!("P *{}", b.suffix))
            .map_err(|e| Error::usage(e.to_string()))?;
    }
    let append = if cli.no_append {
        None
    } else if cli.append_verify {
        Some(crate::config::Append { verify: true })
    } else if cli.append {
        Some(crate::config::Append { verify: false })
    } else {
        None
    };
    if append.is_some() {
        // rsync's refusals, in its words.
        let with = if cli.whole_file {
            Some("--whole-file")
        } else if cli.partial_dir.is_some() {
            Some("--partial-dir")
        } else if cli.delay_updates {
            Some("--delay-updates")
        } else {
            None
        };
        if let Some(other) = with {
            return Err(Error::usage(format!(
                "--append cannot be used with {other}"
            )));
        }
    }
    if let Some(d) = &cli.temp_dir {
        if d.is_empty() {
            return Err(Error::usage("--temp-dir: DIR may not be empty"));
        }
        // A temporary directory inside the destination must outlive --delete, with what is
        // in it (rsync's receiver deletes it and then fails every file).
        let inside = !d.starts_with('/')
            && d.split('/').all(|c| c != "..")
            && d.split('/').any(|c| !c.is_empty() && c != ".");
        if inside {
            let path: Vec<&str> = d
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            filters
                .add_rule(&format!("P /{}/***", path.join("/")))
                .map_err(|e| Error::usage(e.to_string()))?;
        }
    }
    if cli.inplace && cli.delay_updates {
        return Err(Error::new(
            ExitCode::Usage,
            "--inplace cannot be used with --delay-updates",
        ));
    }
    if cli.crtimes {
        return Err(Error::new(
            ExitCode::Usage,
            "This xsync does not support --crtimes (-N)",
        ));
    }
    let delete_when = delete_when(&matches, &cli)?;
    let alt_dest = alt_dest(&matches, &cli)?;
    let size_of = |name: &str, v: &Option<String>| -> Result<Option<u64>, Error> {
        v.as_deref().map(|v| parse_size(name, v)).transpose()
    };
    let sizes = SizeRange {
        min: size_of("min-size", &cli.min_size)?,
        max: size_of("max-size", &cli.max_size)?,
    };
    let any_delete = any_delete_of(&cli);
    let a = cli.archive;
    // rsync's USER:GROUP, USER, :GROUP or USER: (an empty part maps nothing).
    let chown = match cli.chown.as_deref() {
        Some(spec) => {
            let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
            let part = |p: &str| (!p.is_empty()).then(|| p.to_string());
            (part(u), part(g))
        }
        None => (None, None),
    };
    // rsync's --chown is a `*:USER` --usermap (and `*:GROUP` --groupmap), so one of each.
    for (map, part, what) in [
        (&cli.usermap, &chown.0, "user"),
        (&cli.groupmap, &chown.1, "group"),
    ] {
        let Some(spec) = map else { continue };
        if part.is_some() {
            let later = matches.index_of(&format!("{what}map")) > matches.index_of("chown");
            return Err(Error::usage(if later {
                format!("--{what}map conflicts with prior --chown.")
            } else {
                format!("--chown conflicts with prior --{what}map.")
            }));
        }
        crate::ids::MapSpec::parse(spec, what).map_err(Error::usage)?;
    }
    let mut chmod = crate::chmod::Chmod::default();
    for spec in &cli.chmod {
        chmod.add(spec).map_err(Error::usage)?;
    }
    // rsync: --files-from turns off -a's recursion (only an explicit -r descends into a
    // listed directory), and lists directories as -d would, which --delete accepts.
    let recursive = (cli.recursive || (a && files_from.is_none())) && !cli.no_recursive;
    // rsync: one source and no destination lists it (the client's listing mode, so not a
    // server's, whose paths travel in the protocol); listing without -r implies -d.
    let list_only = cli.list_only || cli.paths.len() == 1;
    let dirs = (cli.dirs || list_only) && !cli.no_dirs && !recursive;
    if any_delete && !recursive && !dirs && files_from.is_none() {
        return Err(Error::usage(
            "--delete does not work without --recursive (-r) or --dirs (-d).",
        ));
    }
    if cli.xattrs > 1 && !cli.no_xattrs {
        return Err(Error::usage(
            "-XX: xsync does not copy rsync's own `user.rsync.%*` attributes (use one -X)",
        ));
    }
    if cli.fake_super && cli.acls && !cli.no_acls {
        return Err(Error::usage(
            "--fake-super with -A: rsync keeps the ACLs of a fake super-user in user.rsync.%aacl and %dacl, which xsync does not build (leave out -A)",
        ));
    }
    let max_delete = cli.max_delete.map(|n| n.max(0) as u64);
    let info = parse_info(&cli.info)?;
    let bar = match cli.progress.as_deref() {
        None | Some("") => false,
        Some("bar") => true,
        Some(other) => {
            return Err(Error::usage(format!(
                "--progress=`{other}`: the only value --progress takes is `bar`"
            )));
        }
    };
    let dash_progress = (cli.progress.is_some() || cli.partial_progress) && !cli.no_progress;
    // --json replaces the listing and progress on stdout.
    let progress = if cli.quiet || cli.json {
        0
    } else if bar && !cli.no_progress {
        info.progress.unwrap_or(2)
    } else {
        info.progress.unwrap_or(u8::from(dash_progress))
    };
    // An explicit --out-format lists names as -v does (rsync: it implies --info=name).
    let out_format = cli.out_format.as_deref().map(crate::outfmt::Format::parse);
    let names = info.name.map(|n| n > 0).unwrap_or(
        !cli.quiet && (cli.verbose > 0 || (dash_progress && progress == 1) || out_format.is_some()),
    );
    // The log's item lines: the client's own log, or on a server the lines it relays for
    // that log. An empty format logs no items (rsync's too).
    let log_format = match (&cli.log_file, &cli.log_relay_format) {
        (Some(_), _) => Some(cli.log_file_format.as_deref().unwrap_or("%i %n%L")),
        (None, relay) => relay.as_deref(),
    }
    .filter(|f| !f.is_empty())
    .map(crate::outfmt::Format::parse);
    let accepted = accepted_rsync_options(&cli)?;
    if cli.contimeout.is_some() && !cli.no_contimeout {
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
        Some(rate) if !cli.no_bwlimit => parse_bwlimit(rate).map_err(Error::usage)?,
        _ => None,
    };
    let acls = cli.acls && !cli.no_acls;
    let opts = Options {
        verbose: if cli.no_verbose { 0 } else { cli.verbose },
        quiet: cli.quiet,
        checksum: cli.checksum && !cli.no_checksum,
        recursive,
        links: (cli.links || a) && !cli.no_links,
        copy_links: cli.copy_links,
        copy_unsafe_links: cli.copy_unsafe_links,
        safe_links: cli.safe_links,
        copy_dirlinks: cli.copy_dirlinks,
        // rsync: -A implies -p, whatever --no-p says.
        perms: ((cli.perms || a) && !cli.no_perms) || acls,
        executability: cli.executability,
        times: (cli.times || a) && !cli.no_times,
        // rsync: -b without a DIR implies -O (its backups change the directories' times).
        omit_dir_times: (cli.omit_dir_times && !cli.no_omit_dir_times)
            || backup.as_ref().is_some_and(|b| b.dir.is_none()),
        omit_link_times: cli.omit_link_times && !cli.no_omit_link_times,
        group: ((cli.group || a) && !cli.no_group) || chown.1.is_some() || cli.groupmap.is_some(),
        owner: ((cli.owner || a) && !cli.no_owner) || chown.0.is_some() || cli.usermap.is_some(),
        devices: (cli.devices || cli.devices_specials || a)
            && !cli.no_devices
            && !cli.no_devices_specials,
        specials: (cli.specials || cli.devices_specials || a)
            && !cli.no_specials
            && !cli.no_devices_specials,
        hard_links: cli.hard_links && !cli.no_hard_links,
        xattrs: (cli.xattrs > 0 && !cli.no_xattrs).then(|| crate::xattr::Scope {
            all: rustix::process::geteuid().is_root() && !cli.xattrs_user_only,
        }),
        acls,
        sparse: cli.sparse && !cli.no_sparse,
        one_file_system: cli.one_file_system && !cli.no_one_file_system,
        relative: (cli.relative || files_from.is_some()) && !cli.no_relative,
        files_from,
        dry_run: cli.dry_run,
        ignore_times: cli.ignore_times,
        prune_empty_dirs: cli.prune_empty_dirs,
        fsync: cli.fsync,
        ignore_missing_args: cli.ignore_missing_args || cli.delete_missing_args,
        delete_missing_args: cli.delete_missing_args,
        chmod,
        chown,
        usermap: cli.usermap.clone(),
        groupmap: cli.groupmap.clone(),
        atimes: cli.atimes > 0 && !cli.no_atimes,
        munge_links: cli.munge_links && !cli.no_munge_links,
        fake_super: cli.fake_super,
        modify_window: crate::tree::TimeWindow(cli.modify_window.unwrap_or(0)),
        sizes,
        size_only: cli.size_only,
        update: cli.update,
        ignore_existing: cli.ignore_existing,
        remove_source_files: cli.remove_source_files,
        no_implied_dirs: cli.no_implied_dirs,
        list_only,
        existing: cli.existing,
        // rsync: --inplace and --partial-dir imply --partial.
        partial: ((cli.partial || cli.partial_progress) && !cli.no_partial)
            || (cli.inplace && !cli.no_inplace)
            || cli.partial_dir.is_some(),
        partial_dir: cli.partial_dir,
        inplace: cli.inplace && !cli.no_inplace,
        append,
        temp_dir: cli.temp_dir,
        backup,
        delay_updates: cli.delay_updates,
        ignore_errors: cli.ignore_errors,
        force: cli.force && !cli.no_force,
        alt_dest,
        whole_file: if cli.no_whole_file {
            Some(false)
        } else if cli.whole_file {
            Some(true)
        } else {
            None
        },
        delete: any_delete,
        delete_when,
        delete_excluded: cli.delete_excluded,
        max_delete,
        filters,
        numeric_ids: cli.numeric_ids && !cli.no_numeric_ids,
        mkpath: cli.mkpath && !cli.no_mkpath,
        human_readable: if cli.no_human_readable {
            0
        } else {
            cli.human_readable
        },
        // The records carry each file's itemize code (the listing itself is not shown).
        itemize: (cli.itemize > 0 && !cli.no_itemize) || cli.json,
        stats: cli.stats,
        progress,
        names,
        out_format,
        log_file: cli.log_file.map(std::path::PathBuf::from),
        log_format,
        compress: accepted.compress.unwrap_or(cli.compress) && !cli.no_compress,
        no_compress: cli.no_compress || accepted.compress == Some(false),
        compress_level: cli.compress_level,
        rsh: cli.rsh,
        xsync_path: cli
            .xsync_path
            .or(cli.rsync_path.map(|p| rsync_path_as_xsync(&p))),
        json: cli.json,
        streams: cli.streams,
        deploy: !cli.no_deploy
            && std::env::var_os(crate::endpoint::deploy::NO_DEPLOY_ENV)
                .is_none_or(|v| v.is_empty() || v == "0"),
        // rsync takes any integer; a negative one, like 0, sets no limit.
        timeout: cli
            .timeout
            .filter(|&t| t > 0 && !cli.no_timeout)
            .map(|t| t.min(u32::MAX as i64) as u32),
        bwlimit,
        old_args,
        client_utf8: cli.client_names.as_deref().map(|n| n == "utf8"),
        listed_as_sent: false,
        ip_family: if cli.ipv4 {
            Some(IpFamily::V4)
        } else if cli.ipv6 {
            Some(IpFamily::V6)
        } else {
            None
        },
        block_size: accepted.block_size,
        // (rsync's -UU is -U with --open-noatime; xsync's -U reads without atimes anyway.)
        open_noatime: (cli.open_noatime || cli.atimes > 1) && !cli.no_open_noatime,
        keep_dirlinks: cli.keep_dirlinks,
        dirs,
        paths: cli.paths,
    };
    Ok(Parsed::Run(Box::new(opts)))
}

/// What the rsync options that xsync accepts for rsync's sake come to.
struct Accepted {
    /// `--compress-choice`: on or off, or `None` to leave it to `-z`.
    compress: Option<bool>,
    /// `-B`: the delta block size (`None`: picked from each file's length).
    block_size: Option<u32>,
}

/// rsync's options that name rsync's own machinery (its protocol numbers, checksum and
/// compression algorithms, block size, character sets): checked as rsync checks them, and
/// turned into what they mean for xsync (see each option's text).
fn accepted_rsync_options(cli: &Cli) -> Result<Accepted, Error> {
    const CHECKSUMS: [&str; 8] = [
        "auto", "xxh128", "xxh3", "xxh64", "xxhash", "md5", "md4", "sha1",
    ];
    if let Some(choice) = &cli.checksum_choice {
        // XFER,FILE or one name for both, as rsync splits it.
        for name in choice.splitn(2, ',') {
            let lower = name.to_ascii_lowercase();
            if lower == "none" {
                return Err(Error::usage(format!(
                    "--checksum-choice=`{choice}`: xsync always checks each file it writes \
                     (blake3), so `none` is not supported"
                )));
            }
            if !CHECKSUMS.contains(&lower.as_str()) {
                return Err(Error::new(
                    ExitCode::Unsupported,
                    format!("unknown checksum name: {name}"),
                ));
            }
        }
    }
    let compress = match cli.compress_choice.as_deref().map(str::to_ascii_lowercase) {
        None => None,
        Some(c) => match c.as_str() {
            "auto" => None,
            "zstd" | "lz4" | "zlibx" | "zlib" => Some(true),
            "none" => Some(false),
            _ => {
                return Err(Error::new(
                    ExitCode::Unsupported,
                    format!(
                        "unknown compress name: {}",
                        cli.compress_choice.as_deref().unwrap_or("")
                    ),
                ));
            }
        },
    };
    if let Some(p) = cli.protocol {
        // rsync's oldest and newest protocol numbers.
        if p > 32 {
            return Err(Error::new(
                ExitCode::Protocol,
                "--protocol must be no more than 32 on the Client.",
            ));
        }
        if p < 20 {
            return Err(Error::new(
                ExitCode::Protocol,
                format!("--protocol={p}: rsync's protocol numbers start at 20"),
            ));
        }
    }
    if let Some(spec) = &cli.iconv
        && spec != "-"
        && !cli.no_iconv
    {
        return Err(Error::usage(format!(
            "--iconv=`{spec}`: xsync does not convert file names between character sets \
             (names are copied as the bytes they are)"
        )));
    }
    let block_size = match &cli.block_size {
        None => None,
        Some(v) => {
            let max = crate::delta::MAX_BLOCK as u64;
            let n = parse_size("block-size", v)?;
            if n > max || v.starts_with('-') {
                return Err(Error::usage(format!(
                    "--block-size={v} is too large (max: {}K)",
                    max / 1024
                )));
            }
            (n > 0).then(|| (n as u32).max(crate::delta::MIN_BLOCK))
        }
    };
    Ok(Accepted {
        compress,
        block_size,
    })
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

/// The `--info` words xsync honours; `None` where the command line left the default.
#[derive(Default)]
struct Info {
    progress: Option<u8>,
    name: Option<u8>,
}

/// rsync's `--info=FLAGS`: comma-separated words, case-insensitive, each a flag name with
/// an optional level (no digit means 1). Only PROGRESS and NAME are implemented; any
/// other flag is refused rather than accepted and ignored.
fn parse_info(words: &[String]) -> Result<Info, Error> {
    let mut info = Info::default();
    for word in words.iter().flat_map(|w| w.split(',')) {
        if word.is_empty() {
            continue;
        }
        let lower = word.to_ascii_lowercase();
        let digits = lower.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let flag = &lower[..lower.len() - digits.len()];
        let level: u8 = match digits {
            "" => 1,
            d => d.parse().map_err(|_| {
                Error::usage(format!("--info=`{word}`: the level must be a number"))
            })?,
        };
        match (flag, level) {
            // rsync treats progress3 and up as progress2.
            ("progress", n) => info.progress = Some(n.min(2)),
            ("name", 0 | 1) => info.name = Some(level),
            ("name", _) => {
                return Err(Error::usage(format!(
                    "--info=`{word}`: xsync does not list unchanged names (only name0 and name1 are supported)"
                )));
            }
            _ => {
                return Err(Error::usage(format!(
                    "--info=`{word}`: xsync does not support this --info flag (supported: progress0-2, name0-1)"
                )));
            }
        }
    }
    Ok(info)
}

/// rsync's SIZE: digits with an optional fraction, an optional unit (b, k, m, g, t, p; alone
/// or with "ib" in 1024s, with "b" in 1000s; any case), then an optional "+1" or "-1".
/// `1.5mb-1` is 1499999 bytes.
fn parse_size(name: &str, arg: &str) -> Result<u64, Error> {
    let invalid = || Error::usage(format!("--{name}={arg} is invalid"));
    let b = arg.as_bytes();
    let mut i = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if b.get(i) == Some(&b'.') {
        i += 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    let number = &arg[..i];
    let mut rest = &b[i..];
    let reps = match rest.first().map(u8::to_ascii_lowercase) {
        None | Some(b'+' | b'-') => 0,
        Some(c) => {
            rest = &rest[1..];
            b"bkmgtp".iter().position(|&u| u == c).ok_or_else(invalid)? as i32
        }
    };
    let mult: f64 = match rest.first().map(u8::to_ascii_lowercase) {
        Some(b'b') => {
            rest = &rest[1..];
            1000.0
        }
        None | Some(b'+' | b'-') => 1024.0,
        Some(b'i') if rest.get(1).is_some_and(|c| c.eq_ignore_ascii_case(&b'b')) => {
            rest = &rest[2..];
            1024.0
        }
        _ => return Err(invalid()),
    };
    // rsync reads the number with atof: "" and "." are 0.
    let value: f64 = if number.is_empty() || number == "." {
        0.0
    } else {
        number.parse().map_err(|_| invalid())?
    };
    let mut size = (mult.powi(reps) * value) as i128;
    match rest {
        [] => {}
        [b'+', b'1'] if i > 0 => size += 1,
        [b'-', b'1'] if i > 0 => size -= 1,
        _ => return Err(invalid()),
    }
    // rsync's largest size is 8192P-1 (a signed 64-bit count).
    if !(0..=i64::MAX as i128).contains(&size) {
        return Err(Error::usage(format!("--{name}={arg} is too large")));
    }
    Ok(size as u64)
}

/// rsync keeps --delete-during and --delete-delay in one variable (the last one given
/// wins) and refuses any two of before, during-or-delay and after.
fn delete_when(m: &clap::ArgMatches, cli: &Cli) -> Result<DeleteWhen, Error> {
    if cli.delete_before as u8
        + (cli.delete_during || cli.delete_delay) as u8
        + cli.delete_after as u8
        > 1
    {
        return Err(Error::usage(
            "You may not combine multiple --delete-WHEN options.",
        ));
    }
    // (A flag that was not given has an index too, for its default.)
    let last = |id: &str| {
        (m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
            .then(|| m.indices_of(id).and_then(|i| i.max()))
            .flatten()
    };
    Ok(if cli.delete_before {
        DeleteWhen::Before
    } else if cli.delete_after {
        DeleteWhen::After
    } else if cli.delete_delay && last("delete_delay") > last("delete_during") {
        DeleteWhen::Delay
    } else {
        DeleteWhen::During
    })
}

/// A rule rsync rejects is its exit 1; a rules file it cannot open (--exclude-from, a
/// merge file) its 11.
fn filter_error(e: crate::filter::FilterError) -> Error {
    let code = match e {
        crate::filter::FilterError::Io { .. } => ExitCode::FileIo,
        _ => ExitCode::Usage,
    };
    Error::new(code, e.to_string())
}

/// rsync applies --include/--exclude/--filter/--*-from in the order they were given, so the
/// rules are rebuilt in command-line order from clap's argument indices.
fn ordered_filters(m: &clap::ArgMatches, from0: bool) -> Result<Filters, Error> {
    #[derive(Clone, Copy)]
    enum Src {
        Pat(RuleKind),
        Rule,
        From(RuleKind),
    }
    let mut items: Vec<(usize, Src, OsString)> = Vec::new();
    // -F is a rule in its place; a second one another (rsync's options.c).
    // (clap gives a cluster like -FF one index.)
    if let Some(idx) = m.indices_of("filter_files") {
        let idx: Vec<usize> = idx.collect();
        let count = usize::from(m.get_count("filter_files"));
        let at = |k: usize| idx.get(k).or(idx.last()).copied().unwrap_or(0);
        for (k, rule) in ["dir-merge /.rsync-filter", "- .rsync-filter"]
            .into_iter()
            .take(count)
            .enumerate()
        {
            items.push((at(k), Src::Rule, OsString::from(rule)));
        }
    }
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
            Src::From(kind) => filters.add_from_file(Path::new(&val), kind, from0),
        };
        res.map_err(filter_error)?;
    }
    // -C's rules come after all the others, wherever it stands (rsync's send_filter_list).
    if m.get_flag("cvs_exclude") {
        for rule in [":C", "-C"] {
            filters.add_rule(rule).map_err(filter_error)?;
        }
    }
    Ok(filters)
}

/// rsync's --files-from: the list is read on the client (a remote list, `host:FILE`, is
/// refused), one name a line or NUL-separated with `--from0`; empty names and `#` or `;`
/// comments are skipped. Each name is made safe here, so
/// what travels to a pulling server is already a relative path inside the source.
fn read_files_from(
    file: &OsString,
    from0: bool,
) -> Result<Vec<crate::pathsafe::ListedName>, Error> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let b = file.as_bytes();
    if crate::endpoint::remote::parse_spec(b)
        .ok()
        .flatten()
        .is_some()
    {
        return Err(Error::usage(format!(
            "--files-from=`{}`: a remote list is not supported by xsync (copy the list here first)",
            crate::error::show(b)
        )));
    }
    let mut data = Vec::new();
    let read = if b == b"-" {
        std::io::stdin().lock().read_to_end(&mut data).map(|_| ())
    } else {
        std::fs::read(Path::new(file)).map(|d| data = d)
    };
    read.map_err(|e| Error::usage(crate::error::io_message("open files-from file", b, &e)))?;
    let names: Vec<&[u8]> = if from0 {
        data.split(|&c| c == 0).collect()
    } else {
        data.split(|&c| c == b'\n' || c == b'\r').collect()
    };
    // (rsync 3.5 skips `#` and `;` lines with --from0 too.)
    Ok(names
        .into_iter()
        .filter(|n| !n.is_empty() && !n.starts_with(b"#") && !n.starts_with(b";"))
        .filter_map(crate::pathsafe::ListedName::parse)
        .collect())
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
            // clap's nearest long option, when one is close enough to be the one meant.
            let near = match e.get(ContextKind::SuggestedArg) {
                Some(clap::error::ContextValue::String(s)) => Some(s.clone()),
                Some(clap::error::ContextValue::Strings(v)) => v.first().cloned(),
                _ => None,
            };
            Err(Error::usage(match near {
                Some(near) => {
                    format!("{arg}: unknown option; did you mean `{near}`? (see `xsync --help`)")
                }
                None => {
                    format!("{arg}: unknown option (xsync does not support it; see `xsync --help`)")
                }
            }))
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

/// The server's half of [`parse`]: the client's option words, which must describe a run.
pub fn server_options(argv: Vec<OsString>) -> Result<Options, Error> {
    match parse(argv)? {
        Parsed::Run(o) => Ok(*o),
        _ => Err(Error::new(
            ExitCode::Protocol,
            "bad options from the client",
        )),
    }
}

pub fn version_text() -> String {
    format!(
        "xsync version {}  protocol version {}\nCopyright the xsync authors. Licensed MIT OR Apache-2.0.\n",
        env!("CARGO_PKG_VERSION"),
        crate::PROTOCOL_VERSION
    )
}

/// The face's half of [`Options`]: back into words.
impl Options {
    /// The option words that make the server side behave like this one (paths, the
    /// transport and filter rules travel separately). Parsed on the server by [`parse`],
    /// so the two ends cannot disagree about what an option means. Long because it is
    /// [`parse`]'s table read backwards: one line for each option the server must know.
    pub fn server_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let flags = [
            (self.recursive, "--recursive"),
            (self.links, "--links"),
            (self.copy_links, "--copy-links"),
            (self.copy_unsafe_links, "--copy-unsafe-links"),
            (self.safe_links, "--safe-links"),
            (self.copy_dirlinks, "--copy-dirlinks"),
            (self.perms, "--perms"),
            (self.executability && !self.perms, "--executability"),
            (self.open_noatime, "--open-noatime"),
            (self.atimes, "--atimes"),
            (self.keep_dirlinks, "--keep-dirlinks"),
            (self.dirs, "--dirs"),
            (self.times, "--times"),
            (self.omit_dir_times, "--omit-dir-times"),
            (self.omit_link_times, "--omit-link-times"),
            (self.group, "--group"),
            (self.owner, "--owner"),
            (self.devices, "--devices"),
            (self.specials, "--specials"),
            (self.hard_links, "--hard-links"),
            (self.xattrs.is_some(), "--xattrs"),
            (self.xattrs.is_some_and(|s| !s.all), "--xattrs-user-only"),
            (self.acls, "--acls"),
            (self.sparse, "--sparse"),
            (self.one_file_system, "--one-file-system"),
            (self.relative, "--relative"),
            (self.files_from.is_some(), "--files-from-wire"),
            (self.dry_run, "--dry-run"),
            (self.quiet, "--quiet"),
            (self.checksum, "--checksum"),
            (self.ignore_times, "--ignore-times"),
            (self.prune_empty_dirs, "--prune-empty-dirs"),
            (self.fsync, "--fsync"),
            (self.ignore_missing_args, "--ignore-missing-args"),
            (self.delete_missing_args, "--delete-missing-args"),
            (self.size_only, "--size-only"),
            (self.update, "--update"),
            (self.ignore_existing, "--ignore-existing"),
            (self.existing, "--existing"),
            (self.list_only, "--list-only"),
            (self.remove_source_files, "--remove-source-files"),
            (self.no_implied_dirs, "--no-implied-dirs"),
            (self.delete, "--delete"),
            (self.delete_excluded, "--delete-excluded"),
            (self.numeric_ids, "--numeric-ids"),
            (self.mkpath, "--mkpath"),
            (self.itemize, "--itemize-changes"),
            (self.json, "--json"),
            (self.compress, "--compress"),
            (self.no_compress, "--no-compress"),
            (self.partial, "--partial"),
            (self.inplace, "--inplace"),
            (self.delay_updates, "--delay-updates"),
            (self.append.is_some_and(|a| !a.verify), "--append"),
            (self.append.is_some_and(|a| a.verify), "--append-verify"),
            (self.ignore_errors, "--ignore-errors"),
            (self.force, "--force"),
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
        if self.delete
            && let Some(w) = self.delete_when.word()
        {
            a.push(w.into());
        }
        if self.chown.0.is_some() || self.chown.1.is_some() {
            a.push(format!(
                "--chown={}:{}",
                self.chown.0.as_deref().unwrap_or(""),
                self.chown.1.as_deref().unwrap_or("")
            ));
        }
        if let Some(m) = &self.usermap {
            a.push(format!("--usermap={m}"));
        }
        if let Some(m) = &self.groupmap {
            a.push(format!("--groupmap={m}"));
        }
        for spec in self.chmod.specs() {
            a.push(format!("--chmod={spec}"));
        }
        if self.modify_window.0 != 0 {
            a.push(format!("--modify-window={}", self.modify_window.0));
        }
        if let Some(n) = self.sizes.min {
            a.push(format!("--min-size={n}"));
        }
        if let Some(n) = self.sizes.max {
            a.push(format!("--max-size={n}"));
        }
        if let Some(n) = self.max_delete {
            a.push(format!("--max-delete={n}"));
        }
        if let Some(d) = &self.partial_dir {
            a.push(format!("--partial-dir={d}"));
        }
        // DIR as the user typed it: the receiving server resolves it against its destination.
        if let Some(d) = &self.temp_dir {
            a.push(format!("--temp-dir={d}"));
        }
        // DIR as the user typed it: the server resolves it against its destination.
        if let Some(b) = &self.backup {
            a.push("--backup".into());
            if let Some(d) = &b.dir {
                a.push(format!("--backup-dir={d}"));
            }
            a.push(format!("--suffix={}", b.suffix));
        }
        if let Some(n) = self.compress_level {
            a.push(format!("--compress-level={n}"));
        }
        // The receiver signs the bases, so it is the end that needs -B.
        if let Some(n) = self.block_size {
            a.push(format!("--block-size={n}"));
        }
        // DIR as the user typed it: the server resolves it against its destination.
        if let Some((kind, dirs)) = &self.alt_dest {
            for d in dirs {
                a.push(format!("{}={d}", kind.word()));
            }
        }
        // A receiving server under per-file progress leaves the names of transferred files
        // to the client, which prints each with its progress line.
        a.push(format!(
            "--info=progress{},name{}",
            self.progress,
            u8::from(self.names)
        ));
        // As rsync: the server watches the connection too (a client that hangs must not
        // hold it forever), and paces what it writes (the data of a pull).
        // A receiving server makes the listing's lines, and the log's for the client's
        // --log-file (the file itself is the client's: its name never travels).
        if let Some(f) = &self.out_format {
            a.push(format!("--out-format={}", f.text));
        }
        if let Some(f) = &self.log_format {
            a.push(format!("--log-relay-format={}", f.text));
        }
        if let Some(t) = self.timeout {
            a.push(format!("--timeout={t}"));
        }
        if let Some(k) = self.bwlimit {
            a.push(format!("--bwlimit={k}"));
        }
        // The server learns whether the client can open more streams (1: it cannot).
        if let Some(n) = self.streams {
            a.push(format!("--streams={n}"));
        }
        if self.old_args {
            a.push("--old-args".into());
        }
        // The lines a server prints reach this end's terminal: escape names for it.
        a.push(
            if self.client_utf8.unwrap_or_else(crate::error::utf8_locale) {
                "--client-names=utf8"
            } else {
                "--client-names=ascii"
            }
            .into(),
        );
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
    fn append_and_temp_dir_reach_the_server_and_refuse_what_rsync_refuses() {
        for (flags, verify) in [(&["--append"][..], false), (&["--append-verify"], true)] {
            let mut args = flags.to_vec();
            args.extend(["-a", "-T", "../tmp", "s", "d"]);
            let o = opts(&args);
            let mut words = vec!["xsync".to_string()];
            words.extend(o.server_args());
            let back = match parse(words).expect("server args parse") {
                Parsed::Run(b) => b,
                _ => panic!(),
            };
            assert_eq!(back.append, Some(crate::config::Append { verify }));
            assert_eq!(back.temp_dir.as_deref(), Some("../tmp"));
            assert_eq!(
                format!("{:?}", o.server_args()),
                format!("{:?}", back.server_args())
            );
        }
        assert_eq!(opts(&["--append", "--no-append", "s", "d"]).append, None);
        for other in ["-W", "--partial-dir=.p", "--delay-updates"] {
            let Err(e) = parse(["xsync", "--append", other, "s", "d"]) else {
                panic!("--append {other} was taken");
            };
            assert_eq!(e.code, ExitCode::Usage, "{other}");
            assert!(
                e.message().starts_with("--append cannot be used with --"),
                "{other}"
            );
        }
        // A DIR inside the destination is kept from --delete.
        let o = opts(&["-r", "--delete", "-T", "./tmp/x/", "s", "d"]);
        let rules = format!("{:?}", o.filters);
        assert!(
            rules.contains(&format!(
                "pattern: {:?}, include: false, sides: Receiver",
                b"/tmp/x/***"
            )),
            "{rules}"
        );
    }

    #[test]
    fn server_args_reproduce_the_options() {
        let o = opts(&[
            "-avHOJX",
            "--delete-after",
            "--max-delete=3",
            "-c",
            "-I",
            "--min-size=1.5k",
            "--max-size=2mb-1",
            "--modify-window=-1",
            "-m",
            "--chmod=D755,F644",
            "--chmod=o-w",
            "--chown=:staff",
            "--fsync",
            "--force",
            "--ignore-missing-args",
            "--no-W",
            "--timeout=7",
            "--bwlimit=1.5m",
            "--streams=3",
            "--link-dest=../day1",
            "--link-dest=/abs/day0",
            "-Lk",
            "--copy-unsafe-links",
            "--safe-links",
            "--delay-updates",
            "--ignore-errors",
            "--usermap=0-99:nobody,a*:7",
            "-U",
            "--munge-links",
            "--remove-source-files",
            "--delete-missing-args",
            "--no-implied-dirs",
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
        assert_eq!(back.delete_when, DeleteWhen::After);
        assert!(back.omit_dir_times && back.omit_link_times && back.ignore_times);
        assert_eq!(back.sizes.min, Some(1536));
        assert_eq!(back.sizes.max, Some(1_999_999));
        assert_eq!(back.modify_window.0, -1);
        assert!(back.prune_empty_dirs && back.fsync && back.ignore_missing_args);
        assert!(back.delay_updates && back.ignore_errors && back.force);
        assert!(back.remove_source_files && back.delete_missing_args);
        assert!(back.no_implied_dirs && !back.list_only);
        assert_eq!(back.chmod.specs(), ["D755,F644", "o-w"]);
        assert_eq!(back.chown, (None, Some("staff".to_string())));
        assert_eq!(back.usermap.as_deref(), Some("0-99:nobody,a*:7"));
        assert!(back.atimes && !back.open_noatime);
        // --munge-links is each end's own, as rsync's: the server is not told.
        assert!(o.munge_links && !back.munge_links);
        let m = opts(&["-r", "--usermap=1:2", "--groupmap=3:4", "s", "d"]);
        assert!(m.owner && m.group, "the maps imply -o and -g");
        let mut words = vec!["xsync".to_string()];
        words.extend(m.server_args());
        assert!(matches!(parse(words), Ok(Parsed::Run(b)) if b.groupmap.as_deref() == Some("3:4")));
        assert!(parse(["xsync", "--chown=:g", "--groupmap=1:2", "s", "d"]).is_err());
        assert!(parse(["xsync", "--usermap=1", "s", "d"]).is_err());
        assert!(opts(&["-UU", "s", "d"]).open_noatime);
        assert!(!opts(&["-U", "--no-U", "s", "d"]).atimes);
        let c = opts(&["-r", "--chown=www:", "s", "d"]);
        assert!(c.owner && !c.group && c.chown == (Some("www".into()), None));
        assert!(!opts(&["-m", "--no-m", "s", "d"]).prune_empty_dirs);
        assert!(opts(&["--no-m", "-m", "s", "d"]).prune_empty_dirs);
        assert_eq!(opts(&["-@", "2", "s", "d"]).modify_window.0, 2);
        assert_eq!(back.max_delete, Some(3));
        assert_eq!(back.xattrs, o.xattrs);
        assert!(back.xattrs.is_some());
        assert!(opts(&["-X", "--no-X", "s", "d"]).xattrs.is_none());
        let acl = opts(&["-r", "-A", "s", "d"]);
        assert!(acl.acls && acl.perms, "-A implies -p");
        assert!(opts(&["-a", "--no-p", "-A", "s", "d"]).perms);
        assert!(!opts(&["-aA", "--no-A", "s", "d"]).acls);
        assert!(!opts(&["-aA", "--no-acls", "s", "d"]).acls);
        let mut words = vec!["xsync".to_string()];
        words.extend(acl.server_args());
        assert!(matches!(parse(words), Ok(Parsed::Run(b)) if b.acls && b.perms));
        assert!(
            parse(["xsync", "-aXX", "s", "d"]).is_err(),
            "-XX is refused"
        );
        // A client that is not the super-user has the server count `user.*` names only.
        let user = opts(&["-X", "--xattrs-user-only", "s", "d"]);
        assert_eq!(user.xattrs, Some(crate::xattr::Scope { all: false }));
        assert!(
            user.server_args()
                .contains(&"--xattrs-user-only".to_string())
        );
        assert_eq!(back.whole_file, Some(false));
        assert_eq!(back.verbose, 1);
        assert_eq!(back.timeout, Some(7));
        assert_eq!(back.bwlimit, Some(1536));
        assert_eq!(back.streams, Some(3));
        assert!(!back.relative && back.files_from.is_none());
        assert_eq!(
            back.alt_dest,
            Some((
                AltDest::Link,
                vec!["../day1".to_string(), "/abs/day0".to_string()]
            ))
        );
        assert!(back.copy_links && back.copy_dirlinks);
        assert!(back.copy_unsafe_links && back.safe_links);
    }

    #[test]
    fn one_source_and_no_destination_lists_it_as_rsync() {
        let l = opts(&["src"]);
        assert!(
            l.list_only && l.dirs && !l.recursive,
            "rsync's listing mode implies -d"
        );
        let r = opts(&["-r", "src"]);
        assert!(r.list_only && r.recursive && !r.dirs);
        let d = opts(&["--list-only", "src", "dst"]);
        assert!(d.list_only && d.dirs);
        assert!(!opts(&["src", "dst"]).list_only);
        // The server's paths travel in the protocol: its words alone never list.
        let mut words = vec!["xsync".to_string()];
        words.extend(opts(&["-a", "src", "dst"]).server_args());
        assert!(
            !server_options(words.iter().map(Into::into).collect())
                .expect("server")
                .list_only
        );
        let mut words = vec!["xsync".to_string()];
        words.extend(l.server_args());
        let back = server_options(words.iter().map(Into::into).collect()).expect("server");
        assert!(
            back.list_only && back.dirs,
            "a pulled listing's server carries every kind"
        );
    }

    #[test]
    fn relative_and_files_from_reach_the_server_as_rsync_means_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = dir.path().join("list");
        std::fs::write(&list, b"a/b\n# c\n;d\n\n/../x/./y/../z\n").expect("write");
        let from = format!("--files-from={}", list.display());
        let o = opts(&["-a", "--delete", &from, "s", "h:d"]);
        // -a's recursion is off with --files-from, which implies -R and allows --delete.
        assert!(o.relative && !o.recursive && o.delete);
        let names = o.files_from.clone().expect("names");
        let want = |dir: &str, path: &str| crate::pathsafe::ListedName {
            dir: dir.into(),
            path: path.into(),
        };
        assert_eq!(names, [want("", "a/b"), want("x", "z")]);
        let mut words = vec!["xsync".to_string()];
        words.extend(o.server_args());
        words.extend(["s".to_string(), "d".to_string()]);
        let back = match parse(words).expect("server args parse") {
            Parsed::Run(b) => b,
            _ => panic!(),
        };
        // The names themselves travel in `Start`.
        assert!(back.relative && !back.recursive && back.delete);
        assert_eq!(back.files_from.as_deref(), Some(&[][..]));
        assert_eq!(
            format!("{:?}", o.server_args()),
            format!("{:?}", back.server_args())
        );
        let r = opts(&["-aR", "s", "d"]);
        assert!(r.relative && r.recursive && r.files_from.is_none());
        assert!(opts(&["-ar", &from, "s", "d"]).recursive);
        assert!(!opts(&["-aR", "--no-R", "s", "d"]).relative);
    }

    #[test]
    fn backup_options_take_rsyncs_defaults_checks_and_implications() {
        let protects = |o: &Options, name: &[u8]| {
            o.filters
                .excluded(crate::filter::Side::Receiver, name, false, false)
        };
        let b = opts(&["-rb", "--delete", "s", "d"]);
        let rule = b.backup.clone().expect("-b");
        assert_eq!((rule.dir, rule.suffix.as_str()), (None, "~"));
        // -b without a DIR implies -O, and under --delete protects the backups.
        assert!(b.omit_dir_times && protects(&b, b"sub/f~") && !protects(&b, b"f"));
        let ex = opts(&["-rb", "--delete-excluded", "s", "d"]);
        assert!(
            !protects(&ex, b"f~"),
            "--delete-excluded deletes old backups"
        );
        let s = opts(&["-rb", "--suffix=.old", "--delete", "s", "d"]);
        assert!(protects(&s, b"f.old") && !protects(&s, b"f~"));
        // A DIR implies -b, an empty suffix, no -O and no protect rule.
        let d = opts(&["-r", "--backup-dir=./bak", "--delete", "s", "d"]);
        let rule = d.backup.clone().expect("--backup-dir implies -b");
        assert_eq!(
            (rule.dir.as_deref(), rule.suffix.as_str()),
            (Some("bak"), "")
        );
        assert!(!d.omit_dir_times && !protects(&d, b"f~"));
        assert!(opts(&["-b", "--no-backup", "s", "d"]).backup.is_none());
        for (bad, msg) in [
            (
                &["-b", "--suffix=a/b"][..],
                "--suffix cannot contain slashes: a/b",
            ),
            (
                &["-b", "--suffix="][..],
                "--suffix cannot be empty without a --backup-dir",
            ),
            (
                &["--backup-dir=./"][..],
                "--suffix cannot be empty when --backup-dir is the same as the dest dir",
            ),
        ] {
            let e = parse(["xsync"].iter().chain(bad).chain(&["s", "d"]).copied())
                .err()
                .expect("refused");
            assert_eq!((e.code, e.message()), (ExitCode::Usage, msg), "{bad:?}");
        }
        // The server gets the rule as given and takes it the same way.
        for o in [b, s, d] {
            let mut words = vec!["xsync".to_string()];
            words.extend(o.server_args());
            let Parsed::Run(back) = parse(words).expect("server args parse") else {
                panic!()
            };
            assert_eq!(back.backup, o.backup);
            assert_eq!(back.omit_dir_times, o.omit_dir_times);
        }
    }

    #[test]
    fn partial_dir_must_be_a_plain_name_or_absolute_and_implies_partial() {
        let abs = opts(&["--partial-dir=/tmp/p", "s", "d"]);
        assert!(abs.partial && abs.partial_dir.as_deref() == Some("/tmp/p"));
        assert!(
            !abs.filters
                .excluded(crate::filter::Side::Receiver, b"tmp/p", true, false),
            "an absolute partial dir adds no rule"
        );
        for bad in ["/tmp/../p", "a/b", "..", ""] {
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
    fn delete_when_options_imply_delete_and_refuse_each_other_as_rsync_does() {
        for (args, when) in [
            (&["--delete-before"][..], DeleteWhen::Before),
            (&["--delete-after", "--delete-after"], DeleteWhen::After),
            (&["--del"], DeleteWhen::During),
            (&["--delete", "--delete-during"], DeleteWhen::During),
            (&["--del", "--delete-delay"], DeleteWhen::Delay),
            (&["--delete-delay", "--delete-during"], DeleteWhen::During),
            (
                &["--delete-excluded", "--delete-before"],
                DeleteWhen::Before,
            ),
        ] {
            let mut v = vec!["-r"];
            v.extend_from_slice(args);
            v.extend(["s/", "d/"]);
            let o = opts(&v);
            assert!(o.delete, "{args:?}");
            assert_eq!(o.delete_when, when, "{args:?}");
        }
        for args in [
            &["--delete-before", "--delete-after"][..],
            &["--delete-after", "--del"],
            &["--delete-before", "--delete-delay"],
        ] {
            let mut v = vec!["xsync", "-r"];
            v.extend_from_slice(args);
            v.extend(["s/", "d/"]);
            let e = parse(v).err().expect("refused");
            assert_eq!(e.code, ExitCode::Usage, "{args:?}");
            assert!(e.message().contains("--delete-WHEN"), "{}", e.message());
        }
        let e = parse(["xsync", "--delete-after", "s/", "d/"])
            .err()
            .expect("refused");
        assert!(e.message().contains("--recursive"), "{}", e.message());
    }

    #[test]
    fn sizes_are_read_as_rsync_reads_them() {
        for (arg, want) in [
            ("10", 10),
            ("10b", 10),
            ("1k", 1024),
            ("1K", 1024),
            ("1kb", 1000),
            ("1KiB", 1024),
            ("1kB+1", 1001),
            ("1.5k", 1536),
            (".5k", 512),
            ("1.5", 1),
            ("1.5mb-1", 1_499_999),
            ("2g+1", 2_147_483_649),
            ("1bb", 1),
            ("", 0),
            ("0", 0),
            ("1t", 1 << 40),
            ("8191P", 8191 << 50),
        ] {
            assert_eq!(parse_size("max-size", arg).ok(), Some(want), "{arg}");
        }
        for bad in ["abc", "1x", "1e3", "1kx", "1k+2", "-1", "8193P", "1ki"] {
            let e = parse_size("max-size", bad).expect_err(bad);
            assert_eq!(e.code, ExitCode::Usage, "{bad}");
        }
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
    fn rsyncs_accepted_options_reach_the_server_and_are_checked_as_rsync_checks_them() {
        let o = opts(&[
            "-rtE",
            "-B",
            "2k",
            "--open-noatime",
            "--protocol=29",
            "--cc=XXH128,md5",
            "--zc=lz4",
            "--no-i-r",
            "--force",
            "s",
            "h:d",
        ]);
        assert!(o.executability && o.open_noatime && o.compress);
        assert_eq!(o.block_size, Some(2048));
        let mut words = vec!["xsync".to_string()];
        words.extend(o.server_args());
        let back = match parse(words).expect("server args parse") {
            Parsed::Run(b) => b,
            _ => panic!(),
        };
        assert!(back.executability && back.open_noatime);
        assert_eq!(back.block_size, Some(2048));
        // -E means nothing beside -p, and is not sent then.
        assert!(
            !opts(&["-aE", "s", "h:d"])
                .server_args()
                .contains(&"--executability".into())
        );
        // Small blocks are taken as xsync's floor; 0 is the default.
        assert_eq!(opts(&["-B", "100", "s", "d"]).block_size, Some(700));
        assert_eq!(opts(&["--block-size=0", "s", "d"]).block_size, None);
        assert!(!opts(&["-z", "--zc=none", "s", "d"]).compress);
        assert!(opts(&["-z", "--zc=auto", "s", "d"]).compress);
        assert!(!opts(&["--zc=auto", "s", "d"]).compress);
        assert!(!opts(&["-z", "--no-z", "s", "d"]).compress);
        let code = |args: &[&str]| {
            let mut v = vec!["xsync"];
            v.extend_from_slice(args);
            v.extend(["s", "d"]);
            parse(v).err().map(|e| e.code)
        };
        assert_eq!(code(&["-B", "200000"]), Some(ExitCode::Usage));
        assert_eq!(code(&["-B", "-5"]), Some(ExitCode::Usage));
        assert_eq!(code(&["--cc=foo"]), Some(ExitCode::Unsupported));
        assert_eq!(code(&["--cc=md5,foo"]), Some(ExitCode::Unsupported));
        assert_eq!(code(&["--cc=none"]), Some(ExitCode::Usage));
        assert_eq!(code(&["--zc=zlibq"]), Some(ExitCode::Unsupported));
        assert_eq!(code(&["--protocol=33"]), Some(ExitCode::Protocol));
        assert_eq!(code(&["--protocol=19"]), Some(ExitCode::Protocol));
        assert_eq!(code(&["--iconv=utf8,latin1"]), Some(ExitCode::Usage));
        assert_eq!(code(&["--iconv=-"]), None);
        assert_eq!(code(&["--iconv=utf8", "--no-iconv"]), None);
    }

    #[test]
    fn no_option_forms_turn_their_option_off() {
        let o = opts(&[
            "-vvhHxSciz",
            "--inplace",
            "--numeric-ids",
            "--mkpath",
            "--timeout=5",
            "--bwlimit=100",
            "--no-v",
            "--no-h",
            "--no-H",
            "--no-x",
            "--no-S",
            "--no-c",
            "--no-i",
            "--no-z",
            "--no-inplace",
            "--no-numeric-ids",
            "--no-mkpath",
            "--no-timeout",
            "--no-bwlimit",
            "s",
            "d",
        ]);
        assert_eq!((o.verbose, o.human_readable), (0, 0));
        assert!(!(o.hard_links || o.one_file_system || o.sparse || o.checksum || o.itemize));
        assert!(!(o.compress || o.inplace || o.partial || o.numeric_ids || o.mkpath));
        assert!(o.timeout.is_none() && o.bwlimit.is_none());
        assert!(!opts(&["--partial", "--no-partial", "s", "d"]).partial);
    }

    #[test]
    fn filter_values_may_start_with_a_dash() {
        let o = opts(&["-f", "- *.log", "--exclude", "-x", "--include=-y", "s", "d"]);
        let side = crate::filter::Side::Sender;
        assert!(o.filters.excluded(side, b"a.log", false, false));
        assert!(o.filters.excluded(side, b"-x", false, false));
        assert_eq!(o.paths, ["s", "d"]);
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
