//! What a run was asked to do, as the engine sees it: the options with rsync's implications
//! resolved, and their types. The face (cli.rs) turns a command line, or the option words a
//! server is sent, into an [`Options`]; nothing below it knows clap.

use crate::error::Error;
use crate::filter::Filters;
use std::ffi::OsString;

/// What a run was asked to do, with rsync's implications (`-a`, `--no-X`, `-D`) resolved.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub verbose: u8,
    pub quiet: bool,
    pub checksum: bool,
    pub recursive: bool,
    pub links: bool,
    /// `-L`: the sender replaces every symlink by its referent.
    pub copy_links: bool,
    /// The sender replaces a symlink that points out of the transfer by its referent.
    pub copy_unsafe_links: bool,
    /// Symlinks that point out of the transfer are left out (rsync's receiver skips them).
    pub safe_links: bool,
    /// `-k`: the sender walks a symlink to a directory as the directory.
    pub copy_dirlinks: bool,
    pub perms: bool,
    /// `-E`: without `perms`, a regular file's executability (any x bit) is kept.
    pub executability: bool,
    pub times: bool,
    pub omit_dir_times: bool,
    pub omit_link_times: bool,
    pub group: bool,
    pub owner: bool,
    pub devices: bool,
    pub specials: bool,
    pub hard_links: bool,
    /// `-X`: which attribute names count, as the client's rsync would read them (all but
    /// `system.*` as the super-user, `user.*` otherwise). A receiver narrows it further to
    /// what it may set ([`Options::receiver_xattrs`]).
    pub xattrs: Option<crate::xattr::Scope>,
    /// `-A`: POSIX ACLs (implies `perms`).
    pub acls: bool,
    pub sparse: bool,
    pub one_file_system: bool,
    /// `-R`: each source's path (after a `/./`) is kept under the destination.
    pub relative: bool,
    /// `--files-from`: the listed names, as the sender reads them (implies `relative`).
    pub files_from: Option<Vec<crate::pathsafe::ListedName>>,
    pub dry_run: bool,
    pub ignore_times: bool,
    /// `--chown=USER:GROUP`: the names (or numbers) the receiver gives every entry; each
    /// implies `-o` or `-g` as in rsync (see `ids::Chown`).
    pub chown: (Option<String>, Option<String>),
    /// `--usermap`/`--groupmap`: FROM:TO rules as written (checked by the face), applied
    /// by the receiver to the sender's ids before the name mapping (see `ids::Maps`).
    pub usermap: Option<String>,
    pub groupmap: Option<String>,
    /// `-U`: access times of non-directories are compared and set (whole seconds, as
    /// rsync's), and both ends read files with `O_NOATIME` so the run leaves them as found.
    pub atimes: bool,
    /// `--munge-links`, this end's own (it never travels, as in rsync): a sender takes
    /// `/rsyncd-munged/` off the targets it reads, a receiver of a remote sender's tree
    /// puts it in front of every target it makes.
    pub munge_links: bool,
    /// `--fake-super`, this end's own (never sent, as in rsync): privileged attributes kept
    /// in and read from `user.rsync.%stat` (see fakesuper.rs).
    pub fake_super: bool,
    /// `--fsync`: every written file is synced to disk before its rename.
    pub fsync: bool,
    /// `--ignore-missing-args`: a source argument (or listed name) that does not exist is
    /// left out without an error.
    pub ignore_missing_args: bool,
    /// `--delete-missing-args`: a missing source argument deletes the destination's entry
    /// of that name (and implies `ignore_missing_args`).
    pub delete_missing_args: bool,
    /// `--remove-source-files`: the sender removes each non-directory the receiver has in
    /// place.
    pub remove_source_files: bool,
    /// `--no-implied-dirs` (with `-R`): the kept paths' parent directories are not sent.
    pub no_implied_dirs: bool,
    /// `--list-only`, or one source and no destination: the sources are listed, nothing is
    /// copied.
    pub list_only: bool,
    /// `--chmod`: the sender's permissions as tweaked (see chmod.rs).
    pub chmod: crate::chmod::Chmod,
    /// `-m`: the sender leaves out directories with no non-directory below them.
    pub prune_empty_dirs: bool,
    /// `--modify-window`: when two mtimes count as equal (rsync's default: the same second).
    pub modify_window: crate::tree::TimeWindow,
    /// `--min-size`/`--max-size`: which regular files are transferred at all.
    pub sizes: SizeRange,
    pub size_only: bool,
    pub update: bool,
    pub ignore_existing: bool,
    pub existing: bool,
    pub partial: bool,
    /// `--partial-dir`: one path component, created beside the file.
    pub partial_dir: Option<String>,
    pub inplace: bool,
    /// `--append`/`--append-verify`: a shorter destination file gets the source's tail.
    pub append: Option<Append>,
    /// `-T`: where temporaries are written (relative to the destination unless absolute,
    /// resolved on the receiving side).
    pub temp_dir: Option<String>,
    /// `-b`, `--backup-dir`, `--suffix`: the receiver keeps what it replaces or deletes.
    pub backup: Option<BackupRule>,
    /// `--delay-updates`: finished files are renamed into place together at the end.
    pub delay_updates: bool,
    /// `--ignore-errors`: --delete deletes even after the sender's I/O errors.
    pub ignore_errors: bool,
    /// `--force`: xsync always removes a non-empty directory in a file's way; under it
    /// (as under --delete) rsync lists what that removes, and under
    /// `--delete-missing-args` a missing source's non-empty directory is deleted too.
    pub force: bool,
    /// `--compare-dest`, `--copy-dest` or `--link-dest`: the kind and the DIRs, searched
    /// in order (relative ones to the destination directory, on the receiving side).
    pub alt_dest: Option<(AltDest, Vec<String>)>,
    /// `Some(true)` for -W, `Some(false)` for --no-whole-file, `None` for the transport's default.
    pub whole_file: Option<bool>,
    pub delete: bool,
    /// When extraneous entries are deleted relative to the transfers (with `delete`).
    pub delete_when: DeleteWhen,
    pub delete_excluded: bool,
    pub max_delete: Option<u64>,
    pub filters: Filters,
    pub numeric_ids: bool,
    pub mkpath: bool,
    pub human_readable: u8,
    pub itemize: bool,
    pub stats: bool,
    /// rsync's `--info=progressN`: 0 none, 1 a line per transferred file (`--progress`),
    /// 2 one line for the whole transfer. Always 0 under `-q`, as rsync prints none then.
    pub progress: u8,
    /// rsync's `--info=name1`: list the names of updated entries. `-v` and `--progress`
    /// turn it on, `--info=name0` off (the `-v` summary stays).
    pub names: bool,
    /// `--out-format`: the listing's lines in rsync's escapes, in place of `-i`'s and `-v`'s
    /// (crate::outfmt).
    pub out_format: Option<crate::outfmt::Format>,
    /// `--log-file`: where the client appends its log of the run (crate::report).
    pub log_file: Option<std::path::PathBuf>,
    /// The log's item lines (`--log-file-format`, `%i %n%L` by default): on the client with
    /// `log_file`; on a server, those it relays for the client's log.
    pub log_format: Option<crate::outfmt::Format>,
    /// `-z`. With neither this nor `no_compress`, a remote run compresses where it pays
    /// (`compress::Plan`).
    pub compress: bool,
    /// `--no-compress`: frames travel bare.
    pub no_compress: bool,
    pub compress_level: Option<i32>,
    pub rsh: Option<String>,
    pub xsync_path: Option<String>,
    /// Install this build on a remote that has no usable xsync (endpoint::deploy); off
    /// with `--no-deploy`, `XSYNC_NO_DEPLOY`, or a named `--xsync-path`.
    pub deploy: bool,
    /// `--json`: NDJSON records on stdout in place of the listing (crate::json).
    pub json: bool,
    /// `--timeout`: the longest the connection may stand still (None: forever).
    pub timeout: Option<u32>,
    /// `--bwlimit`, in rsync's unit: KiB per second (None: no limit).
    pub bwlimit: Option<u64>,
    /// `--streams`: how many streams carry file data over ssh (None: decided by the link).
    pub streams: Option<u32>,
    /// `--old-args`: the server splits each remote path into words, as a remote shell would.
    pub old_args: bool,
    /// On a server: whether the client's terminal shows UTF-8 (names in the lines the
    /// client prints are escaped for it); None on the client itself.
    pub client_utf8: Option<bool>,
    /// On a server receiving a push: transfers are listed with `<` (sent), not `>`, since
    /// the lines are the client's, which sent them (rsync's client marks what it sent).
    pub listed_as_sent: bool,
    /// `-4`/`-6`: the address family ssh is told to use.
    pub ip_family: Option<IpFamily>,
    /// `-B`: the delta block size for a basis signed whole (None: from the file's length).
    pub block_size: Option<u32>,
    /// `--open-noatime`: the sender reads files without changing their access times.
    pub open_noatime: bool,
    /// `-d` without `-r`: a directory argument is sent without its contents, and one
    /// named by its contents (`src/`, `.`) with its entries but theirs.
    pub dirs: bool,
    /// `-K`: a destination symlink to a directory inside the destination, there before the
    /// run, is treated as that directory (`fs::open_dirlink_beneath`).
    pub keep_dirlinks: bool,
    pub paths: Vec<OsString>,
}

/// rsync's --delete-WHEN: deleting first frees space on a full disk; deleting last leaves
/// the old files in place until every new one has landed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeleteWhen {
    Before,
    /// Each directory's extraneous entries as the directory is reached (rsync's default).
    #[default]
    During,
    /// Found during, deleted after the transfers (for us the same deletions as `After`:
    /// the plan is made before anything is written).
    Delay,
    After,
}

impl DeleteWhen {
    /// rsync's spelling, as the server is told it.
    pub fn word(self) -> Option<&'static str> {
        match self {
            DeleteWhen::Before => Some("--delete-before"),
            DeleteWhen::During => None,
            DeleteWhen::Delay => Some("--delete-delay"),
            DeleteWhen::After => Some("--delete-after"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

/// rsync's alternate destination directories: what an exact match in DIR means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltDest {
    /// Not transferred at all.
    Compare,
    /// Copied locally from DIR.
    Copy,
    /// Hard-linked to DIR's copy.
    Link,
}

impl AltDest {
    pub fn word(self) -> &'static str {
        match self {
            AltDest::Compare => "--compare-dest",
            AltDest::Copy => "--copy-dest",
            AltDest::Link => "--link-dest",
        }
    }
}

/// rsync's `-b`: a destination entry about to be replaced or deleted is kept, as NAME plus
/// `suffix` beside it, or (with `dir`) as DIR/PATH plus `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRule {
    /// `--backup-dir` as the user gave it (with rsync's leading `./` taken off): resolved on
    /// the receiving side, relative to the destination directory unless absolute.
    pub dir: Option<String>,
    /// `--suffix`: `~` by default, empty by default with a DIR; never holds a `/`.
    pub suffix: String,
}

/// rsync's `--append`: a regular file shorter at the destination than at the source gets
/// the source's bytes past its length, written in place; one as long or longer is left
/// alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Append {
    /// `--append-verify`: the whole file is checked after, and sent again whole on a
    /// mismatch.
    pub verify: bool,
}

/// rsync's limit on alternate destination directories.
pub const MAX_ALT_DESTS: usize = 20;

/// rsync's --min-size/--max-size: a transfer rule, not a filter. A file outside the range
/// is left alone (content and attributes) but still counts as present for --delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeRange {
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl SizeRange {
    pub fn contains(&self, size: u64) -> bool {
        self.min.is_none_or(|m| size >= m) && self.max.is_none_or(|m| size <= m)
    }
}

impl Options {
    /// The first character of a transferred file's `-i` line: `>` received, `<` sent.
    pub fn transfer_mark(&self) -> char {
        if self.listed_as_sent { '<' } else { '>' }
    }

    /// The `-X` scope of the receiving side: a receiver that is not the super-user may set
    /// and remove only `user.*` names, so only those count there (rsync's rule).
    pub fn receiver_xattrs(&self) -> Option<crate::xattr::Scope> {
        self.xattrs.map(|s| crate::xattr::Scope {
            all: s.all && rustix::process::geteuid().is_root(),
        })
    }

    /// Whether the sender may replace a symlink by what it points to.
    pub fn follows_links(&self) -> bool {
        self.copy_links || self.copy_unsafe_links || self.copy_dirlinks
    }
}

/// Turns option words (argv with the program name first) into [`Options`]: the face's
/// parser, handed down to the server, which gets its words over the wire.
pub type ParseWords = fn(Vec<OsString>) -> Result<Options, Error>;
