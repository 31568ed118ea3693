//! The atomic-write rule, in one place: every regular file, symlink, device and hard link
//! that xsync puts in a destination is first made under a temporary name in the target's own
//! directory, given its content and metadata there, and only then renamed over the target.
//! A crash, `kill -9`, full disk or lost connection therefore leaves each target either as
//! it was or as it should be; a leftover temporary carries its run's name ([`crate::temps`]) and
//! a later run removes it once that run is gone.
//!
//! All calls are relative to open directory handles and never follow a symlink in the
//! destination; every name goes through [`check_name`] first.
//!
//! Content moves with `copy_file_range` (in-kernel; reflinks on file systems that can), with
//! a read/write fallback where the kernel refuses (EXDEV, EINVAL, ENOSYS, EOPNOTSUPP), and a
//! hole-punching writer for `-S`.

use crate::backup::Keep;
use crate::fs::{cstr, open_dir_at};
use crate::pathsafe::check_name;
use crate::tree::{Attrs, Kind, Meta, Tally};
use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT, fchmod, fchown, fstat,
    futimens, linkat, mkdirat, mknodat, openat, readlinkat, renameat, statat, symlinkat, unlinkat,
    utimensat,
};
use rustix::io::Errno;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Which metadata to carry over, fixed for the run.
#[derive(Clone, Copy, Debug)]
pub struct MetaRules {
    pub perms: bool,
    /// `-E` without `-p`: an existing regular file takes the source's executability.
    pub executability: bool,
    pub times: bool,
    /// `-U`: access times are set on all but directories.
    pub atimes: bool,
    /// `--fake-super`: no owner set and no node or symlink made; what they would say goes
    /// into `user.rsync.%stat` (fakesuper.rs).
    pub fake_super: bool,
    /// `-O`: directories keep the time their changes give them.
    pub omit_dir_times: bool,
    /// `-J`: symlinks keep the time of their creation.
    pub omit_link_times: bool,
    pub owner: bool,
    pub group: bool,
    pub sparse: bool,
    /// The process umask, applied to new entries' modes without `-p`, as rsync does.
    pub umask: u32,
    /// Only the super-user may give files away; others keep the group where the system
    /// refuses (rsync's -g as a normal user changes it only to groups the user is in).
    pub am_root: bool,
    /// `--inplace`: write into the target itself, giving up atomicity (as rsync does).
    pub inplace: bool,
    /// `--delay-updates`: a finished file waits, complete with its metadata, under its
    /// temporary name until [`put_delayed_into_place`].
    pub delay_updates: bool,
    /// `--modify-window`: an existing entry's time within it is left as it is.
    pub window: crate::tree::TimeWindow,
    /// `--fsync`: each finished file reaches the disk before it is renamed into place, so
    /// after a power cut the name holds the old file or the whole new one.
    pub fsync: bool,
    /// `-X`: the attribute names this receiver sets and removes.
    pub xattrs: Option<crate::xattr::Scope>,
    /// `-A`: ACLs are set, and removed where the source has none.
    pub acls: bool,
    /// `-T`: the directory regular files' temporaries are written in (None: beside their
    /// targets).
    pub temp_dir: Option<&'static TempDir>,
}

impl MetaRules {
    /// Whether `-t` applies to an entry of this kind (not to directories under `-O`, nor
    /// to symlinks under `-J`).
    pub fn times_for(&self, kind: Kind) -> bool {
        self.times
            && match kind {
                Kind::Dir => !self.omit_dir_times,
                Kind::Symlink => !self.omit_link_times,
                _ => true,
            }
    }

    /// The mode a regular file (or node) gets: the source's with `-p`; without it, an
    /// existing target keeps its mode and a new one gets the source's masked by the umask
    /// with the special bits dropped. Under `-E` an existing regular file's x bits follow
    /// the source's, as rsync's `dest_mode` has it: all cleared when the source has none,
    /// and, when the target has none, set where its r bits are.
    pub fn file_mode(&self, src: &Meta, existing: Option<&Meta>) -> u32 {
        if self.perms {
            src.mode
        } else if let Some(d) = existing.filter(|d| d.kind == src.kind) {
            if !(self.executability && src.kind == Kind::File) {
                d.mode
            } else if src.mode & 0o111 == 0 {
                d.mode & !0o111
            } else if d.mode & 0o111 == 0 {
                d.mode | (d.mode & 0o444) >> 2
            } else {
                d.mode
            }
        } else {
            src.mode & 0o777 & !self.umask
        }
    }

    fn owner_ids(&self, m: &Meta) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
        let uid = self.owner.then(|| rustix::fs::Uid::from_raw(m.uid));
        let gid = self
            .sets_group(m.gid)
            .then(|| rustix::fs::Gid::from_raw(m.gid));
        (uid, gid)
    }

    /// `--fake-super`: stores what the entry should be on the open plain file or directory
    /// that stands for it, in place of chown and chmod.
    fn fake(&self, fd: BorrowedFd<'_>, want: &Meta, perms: u32) -> Step<()> {
        let (u, g) = self.owner_ids(want);
        crate::fakesuper::store(
            fd,
            want.kind,
            perms,
            want.rdev,
            u.map(|u| u.as_raw()),
            g.map(|g| g.as_raw()),
        )
        .map_err(|(op, e)| StepError::new(op, e))
    }

    /// Whether `-g` can give a file this group here: the super-user can give any; a
    /// normal user only its own groups (rsync leaves other groups alone, silently, and
    /// so does not count them as differences either).
    pub fn sets_group(&self, gid: u32) -> bool {
        static MINE: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
        self.group
            && (self.am_root
                || MINE
                    .get_or_init(|| {
                        let mut v: Vec<u32> = rustix::process::getgroups()
                            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                            .unwrap_or_default();
                        v.push(rustix::process::getegid().as_raw());
                        v
                    })
                    .contains(&gid))
    }

    /// chown, where a non-root EPERM is not an error.
    fn chown_result(&self, r: rustix::io::Result<()>) -> Step<()> {
        match r {
            Err(Errno::PERM) if !self.am_root => Ok(()),
            Err(e) => Err(StepError::new("change owner of", e)),
            Ok(()) => Ok(()),
        }
    }

    /// The times an entry of `m`'s kind gets: the mtime under `-t` (as [`times_for`]
    /// has it), the access time under `-U` (not a directory's, as rsync; whole seconds);
    /// None when neither.
    ///
    /// [`times_for`]: Self::times_for
    fn timestamps(&self, m: &Meta) -> Option<Timestamps> {
        const OMIT: Timespec = Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        };
        let mtime = self.times_for(m.kind);
        let atime = self.atimes && m.kind != Kind::Dir;
        (mtime || atime).then_some(Timestamps {
            last_access: if atime {
                Timespec {
                    tv_sec: m.atime,
                    tv_nsec: 0,
                }
            } else {
                OMIT
            },
            last_modification: if mtime {
                Timespec {
                    tv_sec: m.mtime,
                    tv_nsec: m.mtime_nsec as _,
                }
            } else {
                OMIT
            },
        })
    }
}

/// A failed step: which operation, the OS error. The caller adds the path.
#[derive(Debug)]
pub struct StepError {
    pub op: &'static str,
    pub err: io::Error,
}

impl StepError {
    pub fn new(op: &'static str, err: impl Into<io::Error>) -> StepError {
        StepError {
            op,
            err: err.into(),
        }
    }
}

impl StepError {
    /// Whether the step was putting file content into the destination (see
    /// [`crate::exit::ExitCode::of_dest_error`]). `copy data to` may also fail reading the
    /// source, in the kernel, where the two cannot be told apart.
    pub fn writes_data(&self) -> bool {
        matches!(self.op, "write" | "copy data to" | "set length of")
    }
}

type Step<T> = Result<T, StepError>;

/// `-X` and `-A`: brings the attributes and ACLs at `at` to `want`'s (none: none), for an
/// entry of `kind` that is to have permission bits `mode`. rsync still puts a file in place
/// when these cannot be set (a file system without them): so do we, and the caller reports
/// this error after the rename (exit 23).
fn set_attrs(
    at: crate::xattr::At<'_>,
    want: Attrs<'_>,
    kind: Kind,
    mode: u32,
    rules: &MetaRules,
) -> Step<()> {
    let xres = match rules.xattrs {
        None => Ok(()),
        Some(scope) => crate::xattr::apply(at, want.xattrs, scope)
            .map_err(|e| StepError::new("set extended attributes on", e)),
    };
    let ares = if rules.acls && kind != Kind::Symlink {
        crate::acl::apply(at, want.acls, mode, kind == Kind::Dir)
            .map_err(|e| StepError::new("set the ACLs of", e))
    } else {
        Ok(())
    };
    xres.and(ares)
}

/// `-T`'s directory, opened once for the run by the path the user gave (following symlinks
/// on the way to it, as the destination's own path is followed). Temporaries are made in
/// it by one component with `O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing below it is ever
/// followed and nothing is written outside it or the destination.
#[derive(Debug)]
pub struct TempDir {
    fd: OwnedFd,
}

impl TempDir {
    /// Opens DIR for this run, and removes the temporaries there of runs that are gone
    /// (the destination's own stale temporaries are found by its scan; these are not in
    /// it when DIR is outside the destination). The handle is leaked: [`MetaRules`] is
    /// `Copy` and lives for the run, which is the process.
    pub fn open(path: &std::path::Path) -> io::Result<&'static TempDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        remove_dead_temps(fd.as_fd());
        Ok(Box::leak(Box::new(TempDir { fd })))
    }
}

/// Removes the regular files in `dir` that are temporaries of runs that are gone.
fn remove_dead_temps(dir: BorrowedFd<'_>) {
    let Ok(mut d) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    while let Some(Ok(ent)) = d.read() {
        let name = ent.file_name();
        if ent.file_type() == FileType::RegularFile
            && crate::temps::owner(name.to_bytes()) == crate::temps::Owner::Dead
        {
            let _ = unlinkat(dir, name, AtFlags::empty());
        }
    }
}

/// A temporary name no other run or thread is using, owned by this run (see
/// [`crate::temps`]).
fn temp_name() -> CString {
    CString::new(crate::temps::name()).expect("temp names have no NUL")
}

fn checked(name: &[u8]) -> Step<CString> {
    check_name(name).map_err(|e| StepError::new("use name", e))?;
    cstr(name).map_err(|e| StepError::new("use name", e))
}

/// Runs `make(tmp)` with fresh temporary names until one is free.
fn with_temp<T>(mut make: impl FnMut(&CString) -> rustix::io::Result<T>) -> Step<(CString, T)> {
    for _ in 0..16 {
        let tmp = temp_name();
        match make(&tmp) {
            Ok(v) => return Ok((tmp, v)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(StepError::new("create temporary file in", e)),
        }
    }
    Err(StepError::new(
        "create temporary file in",
        io::Error::from(io::ErrorKind::AlreadyExists),
    ))
}

/// Renames the finished temporary over the target, or removes it if anything failed.
fn finish(dir: BorrowedFd<'_>, tmp: &CString, name: &CString, res: Step<()>) -> Step<()> {
    let res = res.and_then(|()| {
        renameat(dir, tmp, dir, name).map_err(|e| StepError::new("rename into place", e))
    });
    if res.is_err() {
        let _ = unlinkat(dir, tmp, AtFlags::empty());
    }
    res
}

/// A file being written under a temporary name beside its target. Dropped without
/// [`commit`](Self::commit), it removes itself: the target is never touched.
///
/// The one exception is `--inplace` ([`TempFile::start`] with `rules.inplace`): then the
/// "temporary" is the target itself, written in place, and a failure leaves it part
/// updated — the atomicity the user asked to give up.
pub struct TempFile<'d> {
    in_place: bool,
    /// Key in [`LIVE`].
    live: usize,
    /// The target's directory.
    dir: BorrowedFd<'d>,
    /// The directory the temporary is in: `dir`, or `-T`'s until [`Self::come_home`].
    tdir: BorrowedFd<'d>,
    tmp: CString,
    name: CString,
    fd: OwnedFd,
    sparse: bool,
    len: u64,
    committed: bool,
    /// The permission bits the file was created with (after the umask).
    created_mode: u32,
    /// `-b`: the target is backed up before it is replaced.
    keep: Option<Keep>,
}

impl<'d> TempFile<'d> {
    /// Creates the temporary for `name`, to end with permission bits `mode`. It is created
    /// with those bits already (no set-id bits, the umask applied), so the usual file needs
    /// no chmod at commit; data in flight is never readable by more users than the finished
    /// file will be.
    pub fn create(
        dir: BorrowedFd<'d>,
        name: &[u8],
        sparse: bool,
        mode: u32,
        umask: u32,
    ) -> Step<TempFile<'d>> {
        TempFile::create_in(dir, dir, name, sparse, mode, umask)
    }

    /// [`Self::create`] with the temporary in `tdir` (`-T`), to be renamed to `name` in
    /// `dir`.
    fn create_in(
        tdir: BorrowedFd<'d>,
        dir: BorrowedFd<'d>,
        name: &[u8],
        sparse: bool,
        mode: u32,
        umask: u32,
    ) -> Step<TempFile<'d>> {
        let name = checked(name)?;
        let create_mode = mode & 0o777;
        let (tmp, fd) = with_temp(|tmp| {
            openat(
                tdir,
                tmp,
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(create_mode),
            )
        })?;
        let live = register_live(tdir, &tmp);
        Ok(TempFile {
            in_place: false,
            live,
            dir,
            tdir,
            tmp,
            name,
            fd,
            sparse,
            len: 0,
            committed: false,
            created_mode: create_mode & !umask,
            keep: None,
        })
    }

    /// A temporary for `name` per the run's rules: beside it, or (`--inplace`) the target
    /// itself, opened without truncating so unchanged bytes need not be written again.
    /// With `keep` (`-b`), the target is backed up before it is replaced: just before the
    /// rename, or (`--inplace`) as a copy before anything is written into it.
    pub fn start(
        dir: BorrowedFd<'d>,
        name: &[u8],
        rules: &MetaRules,
        mode: u32,
        sparse: bool,
        keep: Option<Keep>,
    ) -> Step<TempFile<'d>> {
        if !rules.inplace {
            let tdir = rules.temp_dir.map_or(dir, |t| t.fd.as_fd());
            let mut t = TempFile::create_in(tdir, dir, name, sparse, mode, rules.umask)?;
            t.keep = keep;
            return Ok(t);
        }
        let name = checked(name)?;
        if let Some(k) = &keep {
            keep_old(dir, &name, k, KeepBy::Copy)?;
        }
        let (fd, created) = match openat(
            dir,
            &name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => (fd, false),
            Err(Errno::NOENT) => (
                openat(
                    dir,
                    &name,
                    OFlags::RDWR
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode & 0o777),
                )
                .map_err(|e| StepError::new("create", e))?,
                true,
            ),
            Err(e) => return Err(StepError::new("open for writing in place", e)),
        };
        // (In place, a run of zeros becomes a punched hole: a hole the file already had
        // would otherwise be skipped and keep the old bytes where zeros belong.)
        let created_mode = if created {
            mode & 0o777 & !rules.umask
        } else {
            u32::MAX
        };
        Ok(TempFile::the_target(dir, name, fd, sparse, 0, created_mode))
    }

    /// `--append`: the target itself, opened in place (never created: the planner saw it
    /// as a regular file), to be written from byte `at`, its length when it was scanned.
    /// What it holds before `at` is kept as it is; a target that has since become shorter
    /// than `at` is refused rather than given a hole. With `keep` (`-b`) it is backed up
    /// first, as a copy.
    pub fn append(
        dir: BorrowedFd<'d>,
        name: &[u8],
        at: u64,
        sparse: bool,
        keep: Option<Keep>,
    ) -> Step<TempFile<'d>> {
        let name = checked(name)?;
        let fd = openat(
            dir,
            &name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepError::new("open for appending", e))?;
        let st = fstat(&fd).map_err(|e| StepError::new("open for appending", e))?;
        if Kind::from_mode(st.st_mode) != Kind::File {
            return Err(StepError::new("open for appending", Errno::INVAL));
        }
        if (st.st_size as u64) < at {
            return Err(StepError::new(
                "append to",
                io::Error::other("it is shorter than when it was scanned"),
            ));
        }
        if let Some(k) = &keep {
            keep_old(dir, &name, k, KeepBy::Copy)?;
        }
        rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(at))
            .map_err(|e| StepError::new("append to", e))?;
        Ok(TempFile::the_target(dir, name, fd, sparse, at, u32::MAX))
    }

    /// The target itself, written where it is (`--inplace`, `--append`): `len` bytes kept,
    /// `created_mode` the mode it was made with or `u32::MAX` if it existed.
    fn the_target(
        dir: BorrowedFd<'d>,
        name: CString,
        fd: OwnedFd,
        sparse: bool,
        len: u64,
        created_mode: u32,
    ) -> TempFile<'d> {
        TempFile {
            in_place: true,
            live: usize::MAX,
            dir,
            tdir: dir,
            tmp: name.clone(),
            name,
            fd,
            sparse,
            len,
            committed: false,
            created_mode,
            keep: None,
        }
    }

    /// `-T`: brings a temporary written in the temporary directory beside its target, under
    /// a fresh temporary name there, so that what follows (the rename over the target, a
    /// delayed rename, a partial file kept) happens in the target's directory as without
    /// `-T`. A rename where the two are on one file system; otherwise (EXDEV) a copy into
    /// a new temporary beside the target, so the target is still replaced by one rename.
    fn come_home(&mut self) -> Step<()> {
        if self.in_place || self.tdir.as_raw_fd() == self.dir.as_raw_fd() {
            return Ok(());
        }
        let moved = with_temp(|tmp| {
            match rustix::fs::renameat_with(
                self.tdir,
                &self.tmp,
                self.dir,
                tmp,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                // (A file system without RENAME_NOREPLACE: the fresh name is still ours.)
                Err(Errno::INVAL) => renameat(self.tdir, &self.tmp, self.dir, tmp),
                r => r,
            }
        });
        match moved {
            Ok((tmp, ())) => {
                unregister_live(self.live);
                self.live = register_live(self.dir, &tmp);
                self.tmp = tmp;
                self.tdir = self.dir;
                Ok(())
            }
            Err(e) if e.err.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
                let mut home = TempFile::create(
                    self.dir,
                    self.name.as_bytes(),
                    self.sparse,
                    self.created_mode,
                    0,
                )?;
                let mut buf = vec![0u8; 1 << 20];
                let mut at = 0u64;
                while at < self.len {
                    let want = ((self.len - at) as usize).min(buf.len());
                    let n = match rustix::io::pread(&self.fd, &mut buf[..want], at) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(Errno::INTR) => continue,
                        Err(e) => return Err(StepError::new("read back", e)),
                    };
                    home.write(&buf[..n])?;
                    at += n as u64;
                }
                // The old temporary goes when `self`'s parts are swapped out below.
                home.keep = self.keep.take();
                home.created_mode = self.created_mode;
                std::mem::swap(self, &mut home);
                Ok(())
            }
            Err(e) => Err(StepError::new("move the temporary beside", e.err)),
        }
    }

    /// Appends data; with `-S`, runs of zero blocks become holes.
    pub fn write(&mut self, data: &[u8]) -> Step<()> {
        if self.sparse && self.in_place {
            write_punching(&self.fd, data, self.len)?;
        } else if self.sparse {
            write_sparse(&self.fd, data, self.len)?;
        } else {
            write_all(&self.fd, data)?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// The open temporary, for writers that place data themselves (the delta applier).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Records `n` bytes written through [`fd`](Self::fd).
    pub fn advance(&mut self, n: u64) {
        self.len += n;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Cuts the file to the bytes written (a temporary prefilled with a longer basis).
    pub fn truncate_to_len(&self) -> Step<()> {
        rustix::fs::ftruncate(&self.fd, self.len).map_err(|e| StepError::new("set length of", e))
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn in_place(&self) -> bool {
        self.in_place
    }

    /// blake3 of what was written, read back from the file (the end-to-end check of a
    /// file rebuilt from a basis).
    pub fn digest(&self) -> Step<[u8; 32]> {
        let mut h = blake3::Hasher::new();
        hash_into(&mut h, self.fd.as_fd(), 0, self.len)
            .and_then(|n| {
                if n < self.len {
                    Err(io::ErrorKind::UnexpectedEof.into())
                } else {
                    Ok(())
                }
            })
            .map_err(|e| StepError::new("read back", e))?;
        Ok(*h.finalize().as_bytes())
    }

    /// `--partial`: an interrupted file replaces the target with what arrived so far (its
    /// mtime left as now, so the next run sees it differs and uses it as the delta basis).
    pub fn keep_partial(
        mut self,
        want: &Meta,
        existing: Option<&Meta>,
        rules: &MetaRules,
    ) -> Step<u64> {
        if self.in_place {
            // Already in place, part updated.
            self.committed = true;
            return Ok(self.len);
        }
        self.come_home()?;
        fchmod(
            &self.fd,
            Mode::from_raw_mode(rules.file_mode(want, existing) & 0o777),
        )
        .map_err(|e| StepError::new("change mode of", e))?;
        self.keep_target()?;
        renameat(self.dir, &self.tmp, self.dir, &self.name)
            .map_err(|e| StepError::new("rename into place", e))?;
        self.committed = true;
        Ok(self.len)
    }

    /// `--partial-dir`: keeps what arrived as `name` in the partial directory (see
    /// [`PartialDir::open`]), leaving the target itself untouched.
    pub fn keep_partial_in(mut self, partial: &PartialDir) -> Step<u64> {
        self.come_home()?;
        let subdir = partial.open(self.dir, true)?;
        renameat(self.dir, &self.tmp, &subdir, &self.name)
            .map_err(|e| StepError::new("rename into the partial dir", e))?;
        self.committed = true;
        Ok(self.len)
    }

    /// Sets the metadata and renames the finished file over the target.
    pub fn commit(
        mut self,
        want: &Meta,
        attrs: Attrs<'_>,
        existing: Option<&Meta>,
        rules: &MetaRules,
    ) -> Step<u64> {
        self.come_home()?;
        let mode = rules.file_mode(want, existing);
        let xres = set_attrs(
            crate::xattr::At::Fd(self.fd.as_fd()),
            attrs,
            Kind::File,
            mode,
            rules,
        );
        // (--fake-super: rsync puts the file in place even where its user.rsync.%stat
        // cannot be stored, and reports that after, as for -X's attributes.)
        let xres = match rules.fake_super {
            true => xres.and(rules.fake(self.fd.as_fd(), want, mode)),
            false => xres,
        };
        // A directory's default ACL gives a new file an ACL and a mode of its own (the
        // umask does not apply), so with -A the mode is always set.
        let mode_is_set = mode == self.created_mode && !rules.acls;
        if self.in_place {
            // The old content may have been longer.
            rustix::fs::ftruncate(&self.fd, self.len)
                .map_err(|e| StepError::new("set length of", e))?;
            set_fd_meta(&self.fd, want, mode, rules, mode_is_set)?;
            self.sync(rules)?;
            self.committed = true;
            return xres.map(|()| self.len);
        }
        if self.sparse {
            // Trailing holes are not written; the length is.
            rustix::fs::ftruncate(&self.fd, self.len)
                .map_err(|e| StepError::new("set length of", e))?;
        }
        set_fd_meta(&self.fd, want, mode, rules, mode_is_set)?;
        self.sync(rules)?;
        self.keep_target()?;
        if rules.delay_updates {
            let dir = rustix::io::dup(self.dir).map_err(|e| StepError::new("open directory", e))?;
            // Still a temporary to remove if a signal ends the run, now under the dup.
            let live = register_live(dir.as_fd(), &self.tmp);
            if let Ok(mut d) = DELAYED.lock() {
                d.push(Delayed {
                    dir,
                    tmp: self.tmp.clone(),
                    name: self.name.clone(),
                    live,
                });
            }
            self.committed = true;
            return xres.map(|()| self.len);
        }
        renameat(self.dir, &self.tmp, self.dir, &self.name)
            .map_err(|e| StepError::new("rename into place", e))?;
        self.committed = true;
        xres.map(|()| self.len)
    }

    /// `-b`: the target, about to be replaced by the rename, gets its backup name too.
    fn keep_target(&self) -> Step<()> {
        match &self.keep {
            Some(k) => keep_old(self.dir, &self.name, k, KeepBy::Link).map(|_| ()),
            None => Ok(()),
        }
    }

    fn sync(&self, rules: &MetaRules) -> Step<()> {
        if rules.fsync {
            rustix::fs::fsync(&self.fd).map_err(|e| StepError::new("fsync", e))?;
        }
        Ok(())
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.in_place {
            return;
        }
        if !self.committed {
            let _ = unlinkat(self.tdir, &self.tmp, AtFlags::empty());
        }
        unregister_live(self.live);
    }
}

/// Feeds `fd`'s bytes from `from` up to `to` (or its end, if that comes first) to `h`, in
/// 8 MiB windows hashed on all cores. Returns how many were read.
pub fn hash_into(
    h: &mut blake3::Hasher,
    fd: BorrowedFd<'_>,
    from: u64,
    to: u64,
) -> io::Result<u64> {
    let mut buf = vec![0u8; (8 << 20).min(to.saturating_sub(from)).max(1) as usize];
    let mut at = from;
    while at < to {
        let want = ((to - at) as usize).min(buf.len());
        let n = match rustix::io::pread(fd, &mut buf[..want], at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        h.update_rayon(&buf[..n]);
        at += n as u64;
    }
    Ok(at - from)
}

/// `--append` on a local copy: the source's bytes from `at` (the target's length when it
/// was scanned) put after the target's first `at` bytes, in place, then its metadata.
/// Under `verify` the whole target is first compared with the whole source; on a
/// mismatch it keeps what was appended, without its metadata, and None is returned for
/// the caller to copy the file again. Otherwise the bytes appended.
#[allow(clippy::too_many_arguments)]
pub fn append_file(
    src: SrcFile<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &[u8],
    at: u64,
    want: &Meta,
    attrs: Attrs<'_>,
    existing: Option<&Meta>,
    rules: &MetaRules,
    verify: bool,
    keep: Option<Keep>,
) -> Step<Option<u64>> {
    let src = src.open()?;
    let mut out = TempFile::append(dst_dir, name, at, rules.sparse, keep)?;
    if out.sparse {
        let mut buf = vec![0u8; 1 << 20];
        let mut from = at;
        loop {
            match rustix::io::pread(&src, &mut buf, from) {
                Ok(0) => break,
                Ok(n) => {
                    out.write(&buf[..n])?;
                    from += n as u64;
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(StepError::new("read", e)),
            }
        }
    } else {
        out.len = at + copy_data_at(&src, &out.fd, at, want.size.saturating_sub(at))?;
    }
    if verify {
        let mut h = blake3::Hasher::new();
        hash_into(&mut h, src.as_fd(), 0, u64::MAX).map_err(|e| StepError::new("read", e))?;
        if out.digest()? != *h.finalize().as_bytes() {
            return Ok(None);
        }
    }
    let appended = out.len - at;
    out.commit(want, attrs, existing, rules)?;
    Ok(Some(appended))
}

/// The last handles on replaced big files, closed after the run (see [`close_later`]),
/// with their lengths.
static LATER: std::sync::Mutex<Vec<(OwnedFd, u64)>> = std::sync::Mutex::new(Vec::new());

/// How many bytes of replaced files [`close_later`] may keep allocated at once: beyond it
/// the oldest are closed at once, on a thread of their own.
const LATER_BYTES: u64 = 1 << 30;

/// Keeps `fd`, the last handle on a file a rename has just replaced (a delta's basis), to
/// be closed when the run is over by [`close_later_detached`]. Closing the last handle
/// frees the file's pages or blocks then and there: 60-80 ms for 512 MiB on tmpfs, which
/// the receiver spent after its last file, while the sender and the user waited for it.
pub fn close_later(fd: OwnedFd, len: u64) {
    let old = keep_within(
        &mut LATER.lock().unwrap_or_else(|p| p.into_inner()),
        (fd, len),
        LATER_BYTES,
    );
    if !old.is_empty() {
        // Freed beside the transfer; should no thread start, here.
        let _ = std::thread::Builder::new()
            .name("xsync-free".into())
            .spawn(move || drop(old));
    }
}

/// Adds `one` to `kept` and returns the oldest handles that take the total past `budget`
/// (never the newest: one file over the budget is still kept).
fn keep_within(kept: &mut Vec<(OwnedFd, u64)>, one: (OwnedFd, u64), budget: u64) -> Vec<OwnedFd> {
    kept.push(one);
    let mut total: u64 = kept.iter().map(|(_, l)| l).sum();
    let mut old = Vec::new();
    while total > budget && kept.len() > 1 {
        let (fd, len) = kept.remove(0);
        total -= len;
        old.push(fd);
    }
    old
}

/// At the end of the process: the handles [`close_later`] kept are closed by a forked
/// child with none of this process's standard streams, so neither the peer nor the shell
/// waiting for this process waits for the kernel to free those files. Where the fork fails
/// they are closed as the process exits.
pub fn close_later_detached() {
    let kept = std::mem::take(&mut *LATER.lock().unwrap_or_else(|p| p.into_inner()));
    if kept.is_empty() {
        return;
    }
    let fds: Vec<i32> = kept.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    // SAFETY: the child makes only the close and _exit system calls (no allocation, no
    // lock), which is what a child of a threaded process may do.
    if unsafe { libc::fork() } == 0 {
        for fd in [0, 1, 2].iter().chain(&fds) {
            // SAFETY: closing descriptors this child owns a copy of.
            unsafe { libc::close(*fd) };
        }
        // SAFETY: leaves without running the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }
    // (The parent's copies are not the last: closing them costs nothing.)
    drop(kept);
}

/// A finished file waiting for the end of a `--delay-updates` run.
struct Delayed {
    dir: OwnedFd,
    tmp: CString,
    name: CString,
    live: usize,
}

static DELAYED: std::sync::Mutex<Vec<Delayed>> = std::sync::Mutex::new(Vec::new());

/// `--delay-updates`: renames every finished file into place, in the order they were
/// finished (rsync renames them at the end, before its hard links and directory times).
/// Returns the names that could not be renamed, with the error.
pub fn put_delayed_into_place() -> Vec<(Vec<u8>, StepError)> {
    let delayed = std::mem::take(&mut *DELAYED.lock().unwrap_or_else(|p| p.into_inner()));
    let mut failed = Vec::new();
    for d in delayed {
        if let Err(e) = renameat(&d.dir, &d.tmp, &d.dir, &d.name) {
            let _ = unlinkat(&d.dir, &d.tmp, AtFlags::empty());
            failed.push((
                d.name.to_bytes().to_vec(),
                StepError::new("rename into place", e),
            ));
        }
        unregister_live(d.live);
    }
    failed
}

/// Temporaries being written right now (directory fd, name), so that a run stopped by a
/// signal can remove them before it exits. Entries live exactly as long as their
/// [`TempFile`], which also keeps the directory fd open.
static LIVE: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<usize, (i32, CString)>>,
> = std::sync::LazyLock::new(Default::default);
static LIVE_NEXT: AtomicU64 = AtomicU64::new(0);

fn register_live(dir: BorrowedFd<'_>, tmp: &CString) -> usize {
    let id = LIVE_NEXT.fetch_add(1, Ordering::Relaxed) as usize;
    if let Ok(mut m) = LIVE.lock() {
        m.insert(id, (dir.as_raw_fd(), tmp.clone()));
    }
    id
}

fn unregister_live(id: usize) {
    if let Ok(mut m) = LIVE.lock() {
        m.remove(&id);
    }
}

/// Removes every temporary still being written (called when a signal ends the run). The
/// lock is held until the process exits, so no writer can rename one of them meanwhile.
pub fn remove_live_temps()
-> std::sync::MutexGuard<'static, std::collections::HashMap<usize, (i32, CString)>> {
    let m = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    for (fd, name) in m.values() {
        // SAFETY: the fd belongs to a live TempFile's directory, and the lock keeps the
        // TempFile from being dropped (its Drop takes the lock) while we use it.
        let dir = unsafe { BorrowedFd::borrow_raw(*fd) };
        let _ = unlinkat(dir, name, AtFlags::empty());
    }
    m
}

/// A local copy's source file: `name` in `dir`, opened through a symlink only when the
/// sender's scan followed that link (`-L` and friends).
#[derive(Clone, Copy)]
pub struct SrcFile<'a> {
    pub dir: BorrowedFd<'a>,
    pub name: &'a [u8],
    pub followed: bool,
}

impl SrcFile<'_> {
    fn open(&self) -> Step<OwnedFd> {
        let c = cstr(self.name).map_err(|e| StepError::new("open", e))?;
        crate::fs::open_file_at(self.dir, &c, self.followed).map_err(|e| StepError::new("open", e))
    }
}

/// A local file copy: `src` becomes `name` in `dst_dir` atomically,
/// with `want`'s metadata per `rules`. With `reuse_basis` (`--no-whole-file`) and an
/// existing target, unchanged blocks come from the target itself (see
/// [`copy_reusing`]). `keep` (`-b`): the target is backed up as it is replaced. Returns
/// (bytes copied from the source, bytes reused).
#[allow(clippy::too_many_arguments)]
pub fn copy_file(
    src: SrcFile<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &[u8],
    want: &Meta,
    attrs: Attrs<'_>,
    existing: Option<&Meta>,
    rules: &MetaRules,
    reuse_basis: bool,
    keep: Option<Keep>,
) -> Step<(u64, u64)> {
    let to = Target {
        dir: dst_dir,
        name,
        keep,
    };
    if reuse_basis && existing.is_some_and(|d| d.kind == Kind::File && d.size > 0) {
        return copy_reusing(src, to, want, attrs, existing, rules);
    }
    copy_whole(src, to, want, attrs, existing, rules).map(|n| (n, 0))
}

/// Where a local copy goes: `name` in `dir`, backed up first under `-b`.
struct Target<'a> {
    dir: BorrowedFd<'a>,
    name: &'a [u8],
    keep: Option<Keep>,
}

fn copy_whole(
    src: SrcFile<'_>,
    to: Target<'_>,
    want: &Meta,
    attrs: Attrs<'_>,
    existing: Option<&Meta>,
    rules: &MetaRules,
) -> Step<u64> {
    let src = src.open()?;
    let mut out = TempFile::start(
        to.dir,
        to.name,
        rules,
        rules.file_mode(want, existing),
        rules.sparse,
        to.keep,
    )?;
    if out.sparse {
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            match rustix::io::read(&src, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.write(&buf[..n])?,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(StepError::new("read", e)),
            }
        }
    } else {
        out.len = copy_data(&src, &out.fd, want.size)?;
    }
    out.commit(want, attrs, existing, rules)
}

/// `--no-whole-file` on a local copy: rebuilds the target in a temporary from its current
/// version (the basis) where aligned 1 MiB blocks are equal, and from the source where they
/// differ — every byte moved by `copy_file_range`, so unchanged data never passes through
/// user space and shares extents on file systems that reflink. Returns (literal, matched).
fn copy_reusing(
    src: SrcFile<'_>,
    to: Target<'_>,
    want: &Meta,
    attrs: Attrs<'_>,
    existing: Option<&Meta>,
    rules: &MetaRules,
) -> Step<(u64, u64)> {
    const BLOCK: u64 = 1 << 20;
    let open = |dir: BorrowedFd<'_>, n: &[u8], op: &'static str| -> Step<std::fs::File> {
        let c = cstr(n).map_err(|e| StepError::new(op, e))?;
        let fd = openat(
            dir,
            &c,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepError::new(op, e))?;
        Ok(std::fs::File::from(fd))
    };
    let src = std::fs::File::from(src.open()?);
    let (dst_dir, name) = (to.dir, to.name);
    let basis = open(dst_dir, name, "open basis")?;
    let len_of = |f: &std::fs::File, op| {
        f.metadata()
            .map(|m| m.len())
            .map_err(|e| StepError::new(op, e))
    };
    let (src_len, basis_len) = (len_of(&src, "stat")?, len_of(&basis, "stat basis")?);
    let equal = crate::delta::equal_blocks(&src, src_len, &basis, basis_len, BLOCK)
        .map_err(|e| StepError::new("read", e))?;
    let mode = rules.file_mode(want, existing);
    let mut out = TempFile::start(dst_dir, name, rules, mode, false, to.keep)?;
    let (mut literal, mut matched) = (0, 0);
    let mut i = 0;
    while i < equal.len() {
        let mut j = i;
        while j < equal.len() && equal[j] == equal[i] {
            j += 1;
        }
        let start = i as u64 * BLOCK;
        let len = (j as u64 * BLOCK).min(src_len) - start;
        let (from, from_len) = if equal[i] {
            matched += len;
            (&basis, basis_len)
        } else {
            literal += len;
            (&src, src_len)
        };
        // In place, equal blocks are already there.
        if !(equal[i] && out.in_place) {
            crate::delta::Applier::new(from.as_fd(), from_len, out.fd(), start)
                .apply(crate::delta::Op::Copy { offset: start, len })
                .map_err(|e| StepError::new("copy data to", e))?;
        }
        i = j;
    }
    out.advance(src_len);
    out.commit(want, attrs, existing, rules)?;
    Ok((literal, matched))
}

/// Sets owner, mode and mtime on an open file, in that order (chown clears set-id bits).
fn set_fd_meta(
    fd: &OwnedFd,
    want: &Meta,
    mode: u32,
    rules: &MetaRules,
    mode_is_set: bool,
) -> Step<()> {
    // (--fake-super: neither; the caller has stored them in user.rsync.%stat.)
    if !rules.fake_super {
        if rules.owner || rules.group {
            let (u, g) = rules.owner_ids(want);
            rules.chown_result(fchown(fd, u, g))?;
        }
        // Without set-id bits chown leaves the mode alone, so a mode set at creation holds.
        if !mode_is_set {
            fchmod(fd, Mode::from_raw_mode(mode))
                .map_err(|e| StepError::new("change mode of", e))?;
        }
    }
    if let Some(t) = rules.timestamps(want) {
        futimens(fd, &t).map_err(|e| StepError::new("set times on", e))?;
    }
    Ok(())
}

static COPY_FILE_RANGE_WORKS: AtomicBool = AtomicBool::new(true);

/// Copies all of `src` into `dst` from offset 0 ([`crate::fs::copy_range`]), asking for a
/// little more than the `size_hint` left: a short count then means the end, which saves
/// the extra zero-length call per small file.
fn copy_data(src: &OwnedFd, dst: &OwnedFd, size_hint: u64) -> Step<u64> {
    copy_data_at(src, dst, 0, size_hint)
}

/// [`copy_data`] from offset `start` of `src` to the same offset of `dst`.
fn copy_data_at(src: &OwnedFd, dst: &OwnedFd, start: u64, size_hint: u64) -> Step<u64> {
    let mut in_kernel = COPY_FILE_RANGE_WORKS.load(Ordering::Relaxed);
    let mut buf = Vec::new();
    let mut total = 0u64;
    // Watched by --progress: in steps it can show (see progress::copying).
    let step = if crate::progress::moved_here(0) {
        crate::progress::STEP
    } else {
        1 << 30
    };
    let result = loop {
        let want = (size_hint.saturating_sub(total) + 65536).min(step);
        match crate::fs::copy_range(
            src.as_fd(),
            start + total,
            dst.as_fd(),
            start + total,
            want,
            &mut in_kernel,
            &mut buf,
        ) {
            Ok(n) => {
                total += n;
                crate::progress::moved_here(total);
                if n < want {
                    break Ok(total);
                }
            }
            Err(crate::fs::CopyError::Read(e)) => break Err(StepError::new("read", e)),
            Err(crate::fs::CopyError::Write(e)) => break Err(StepError::new("copy data to", e)),
        }
    };
    if !in_kernel {
        COPY_FILE_RANGE_WORKS.store(false, Ordering::Relaxed);
    }
    result
}

fn write_all(fd: &OwnedFd, mut data: &[u8]) -> Step<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => continue,
            Err(e) => return Err(StepError::new("write", e)),
        }
    }
    Ok(())
}

/// `-S`: writes `chunk` (which belongs at offset `off`) skipping 4 KiB blocks of zeros,
/// one write per run of non-zero blocks, leaving holes for the rest.
fn write_sparse(fd: &OwnedFd, chunk: &[u8], off: u64) -> Step<()> {
    const BLOCK: usize = 4096;
    let n = chunk.len();
    let mut i = 0;
    while i < n {
        let end = (i + BLOCK).min(n);
        if chunk[i..end].iter().all(|&b| b == 0) {
            i = end;
            continue;
        }
        let mut j = end;
        while j < n {
            let e2 = (j + BLOCK).min(n);
            if chunk[j..e2].iter().all(|&b| b == 0) {
                break;
            }
            j = e2;
        }
        write_at(fd, &chunk[i..j], off + i as u64)?;
        i = j;
    }
    Ok(())
}

/// `-S --inplace`, as rsync 3.5 does it: the data at `off`, each run of zero blocks punched
/// out of the file (`fallocate` PUNCH_HOLE, the length kept) instead of written, so the
/// file ends as sparse as a fresh `-S` copy; zeros are written where the file system
/// cannot punch.
fn write_punching(fd: &OwnedFd, chunk: &[u8], off: u64) -> Step<()> {
    use rustix::fs::FallocateFlags;
    const BLOCK: usize = 4096;
    let mut i = 0;
    while i < chunk.len() {
        let zero = |k: usize| {
            chunk[k..(k + BLOCK).min(chunk.len())]
                .iter()
                .all(|&b| b == 0)
        };
        let here = zero(i);
        let mut j = (i + BLOCK).min(chunk.len());
        while j < chunk.len() && zero(j) == here {
            j = (j + BLOCK).min(chunk.len());
        }
        let at = off + i as u64;
        let punched = here
            && rustix::fs::fallocate(
                fd,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                at,
                (j - i) as u64,
            )
            .is_ok();
        if !punched {
            write_at(fd, &chunk[i..j], at)?;
        }
        i = j;
    }
    Ok(())
}

/// Writes all of `data` at `at`.
fn write_at(fd: &OwnedFd, mut data: &[u8], mut at: u64) -> Step<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, at) {
            Ok(k) => {
                data = &data[k..];
                at += k as u64;
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(StepError::new("write", e)),
        }
    }
    Ok(())
}

/// Creates a symlink, fifo, socket or device node atomically with `want`'s metadata;
/// `keep` (`-b`): what it replaces is backed up just before the rename.
pub fn make_special(
    dst_dir: BorrowedFd<'_>,
    name: &[u8],
    want: &Meta,
    attrs: Attrs<'_>,
    target: Option<&[u8]>,
    rules: &MetaRules,
    keep: Option<&Keep>,
) -> Step<()> {
    let name_c = checked(name)?;
    if rules.fake_super {
        return make_fake_special(dst_dir, &name_c, want, attrs, target, rules, keep);
    }
    let (tmp, ()) = match want.kind {
        Kind::Symlink => {
            let t = cstr(target.unwrap_or_default()).map_err(|e| StepError::new("symlink", e))?;
            with_temp(|tmp| symlinkat(&t, dst_dir, tmp))?
        }
        Kind::CharDev | Kind::BlockDev | Kind::Fifo | Kind::Socket => {
            let ft = FileType::from_raw_mode(want.kind.type_bits());
            with_temp(|tmp| {
                mknodat(
                    dst_dir,
                    tmp,
                    ft,
                    Mode::from_raw_mode(0o600),
                    want.rdev as rustix::fs::Dev,
                )
            })?
        }
        Kind::File | Kind::Dir => {
            return Err(StepError::new(
                "create",
                io::Error::from(io::ErrorKind::InvalidInput),
            ));
        }
    };
    let res = set_path_meta(dst_dir, &tmp, want, None, rules);
    let xres = match res {
        Ok(()) => set_attrs(
            crate::xattr::At::Name(dst_dir, &tmp),
            attrs,
            want.kind,
            rules.file_mode(want, None),
            rules,
        ),
        Err(_) => Ok(()),
    };
    let res = res.and_then(|()| match keep {
        Some(k) => keep_old(dst_dir, &name_c, k, KeepBy::Link).map(|_| ()),
        None => Ok(()),
    });
    finish(dst_dir, &tmp, &name_c, res)?;
    xres
}

/// [`make_special`] under `--fake-super`: a plain file, holding a symlink's target, with
/// the rest in its `user.rsync.%stat`, made under a temporary name and renamed into place.
fn make_fake_special(
    dst_dir: BorrowedFd<'_>,
    name_c: &CString,
    want: &Meta,
    attrs: Attrs<'_>,
    target: Option<&[u8]>,
    rules: &MetaRules,
    keep: Option<&Keep>,
) -> Step<()> {
    let (tmp, fd) = with_temp(|tmp| {
        openat(
            dst_dir,
            tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    })?;
    let mut xres = Ok(());
    let res = fill_fake(&fd, want, attrs, target, rules, &mut xres).and_then(|()| match keep {
        Some(k) => keep_old(dst_dir, name_c, k, KeepBy::Link).map(|_| ()),
        None => Ok(()),
    });
    drop(fd);
    finish(dst_dir, &tmp, name_c, res)?;
    xres
}

/// The content (a symlink's target), attributes, `user.rsync.%stat` and times of a new
/// plain file that stands for a symlink or node. The attributes' failure goes to `xres`,
/// reported after the rename (rsync puts the entry in place all the same).
fn fill_fake(
    fd: &OwnedFd,
    want: &Meta,
    attrs: Attrs<'_>,
    target: Option<&[u8]>,
    rules: &MetaRules,
    xres: &mut Step<()>,
) -> Step<()> {
    if want.kind == Kind::Symlink {
        write_all(fd, target.unwrap_or_default())?;
    }
    let mode = rules.file_mode(want, None);
    *xres = set_attrs(
        crate::xattr::At::Fd(fd.as_fd()),
        attrs,
        want.kind,
        mode,
        rules,
    )
    .and(rules.fake(fd.as_fd(), want, mode));
    if let Some(t) = rules.timestamps(want) {
        futimens(fd, &t).map_err(|e| StepError::new("set times on", e))?;
    }
    Ok(())
}

/// Metadata on a name that is not open (a fresh node, or an attribute-only update), with
/// `*at()` calls that do not follow a final symlink: owner first (chown clears set-id
/// bits), then the mode where `chmod` says so (symlinks have none), then the times.
fn path_meta(
    dir: BorrowedFd<'_>,
    name: &CString,
    want: &Meta,
    mode: u32,
    rules: &MetaRules,
    chmod: bool,
) -> Step<()> {
    if rules.owner || rules.group {
        let (u, g) = rules.owner_ids(want);
        rules.chown_result(rustix::fs::chownat(
            dir,
            name,
            u,
            g,
            AtFlags::SYMLINK_NOFOLLOW,
        ))?;
    }
    if chmod && want.kind != Kind::Symlink {
        chmod_nofollow(dir, name, mode).map_err(|e| StepError::new("change mode of", e))?;
    }
    if let Some(t) = rules.timestamps(want) {
        utimensat(dir, name, &t, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| StepError::new("set times on", e))?;
    }
    Ok(())
}

/// chmod through a handle on the object itself. `chmodat` follows a final symlink, so a
/// name swapped for one between our lstat and the chmod (by a local user, or while a slow
/// peer holds the run) would hand the mode to whatever the link points at, outside the
/// tree. An `O_PATH | O_NOFOLLOW` handle pins the object the name holds now (a symlink
/// is then the link itself, refused here), and `/proc/self/fd/N` reaches exactly that
/// object. Without /proc, the kernel's own no-follow chmod (fchmodat2, Linux 6.6) is the
/// only safe way; where neither exists the mode is not set (an error, never a follow).
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &CString, mode: u32) -> io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name.as_c_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if Kind::from_mode(st.st_mode) == Kind::Symlink {
        return Err(Errno::LOOP.into());
    }
    let mode = Mode::from_raw_mode(mode);
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    match rustix::fs::chmod(proc_path.as_str(), mode) {
        Err(Errno::NOENT) => Ok(rustix::fs::chmodat(
            dir,
            name.as_c_str(),
            mode,
            AtFlags::SYMLINK_NOFOLLOW,
        )?),
        r => Ok(r?),
    }
}

fn set_path_meta(
    dir: BorrowedFd<'_>,
    name: &CString,
    want: &Meta,
    existing: Option<&Meta>,
    rules: &MetaRules,
) -> Step<()> {
    path_meta(
        dir,
        name,
        want,
        rules.file_mode(want, existing),
        rules,
        true,
    )
}

/// Attribute-only update of an existing non-directory: only the attributes that differ.
pub fn update_meta(
    dst_dir: BorrowedFd<'_>,
    name: &[u8],
    want: &Meta,
    attrs: Attrs<'_>,
    have: &Meta,
    rules: &MetaRules,
) -> Step<()> {
    let name_c = checked(name)?;
    let mode = rules.file_mode(want, Some(have));
    if rules.fake_super {
        return update_fake_meta(dst_dir, &name_c, want, attrs, have, mode, rules);
    }
    // (Before the mode: a file made read-only may still take attributes, as root.)
    let xres = set_attrs(
        crate::xattr::At::Name(dst_dir, &name_c),
        attrs,
        want.kind,
        mode,
        rules,
    );
    let mut r = *rules;
    r.owner &= want.uid != have.uid;
    r.group &= want.gid != have.gid;
    r.times &= !rules.window.same(want, have);
    r.atimes &= want.atime != have.atime;
    // chown may have cleared set-id bits, so the mode is re-applied after it.
    let chmod = mode != have.mode || r.owner || r.group;
    path_meta(dst_dir, &name_c, want, mode, &r, chmod)?;
    xres
}

/// [`update_meta`] under `--fake-super`: the plain file (or node) at `name`, opened
/// without following a symlink and without blocking on a fifo, gets the wanted entry's
/// `user.rsync.%stat` and times.
fn update_fake_meta(
    dst_dir: BorrowedFd<'_>,
    name_c: &CString,
    want: &Meta,
    attrs: Attrs<'_>,
    have: &Meta,
    mode: u32,
    rules: &MetaRules,
) -> Step<()> {
    let fd = openat(
        dst_dir,
        name_c,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::new("open", e))?;
    let xres = set_attrs(
        crate::xattr::At::Fd(fd.as_fd()),
        attrs,
        want.kind,
        mode,
        rules,
    );
    let xres = xres.and(rules.fake(fd.as_fd(), want, mode));
    let mut r = *rules;
    r.times &= !rules.window.same(want, have);
    r.atimes &= want.atime != have.atime;
    if let Some(t) = r.timestamps(want) {
        futimens(&fd, &t).map_err(|e| StepError::new("set times on", e))?;
    }
    xres
}

/// Makes `name` in `dst_dir` another name of `leader_name` in `leader_dir`, replacing
/// whatever `name` was atomically; `keep` (`-b`): backed up first, unless it already is
/// that file.
pub fn hard_link(
    leader_dir: BorrowedFd<'_>,
    leader_name: &[u8],
    dst_dir: BorrowedFd<'_>,
    name: &[u8],
    keep: Option<&Keep>,
) -> Step<()> {
    let name_c = checked(name)?;
    let leader_c = checked(leader_name)?;
    let (tmp, ()) = with_temp(|tmp| linkat(leader_dir, &leader_c, dst_dir, tmp, AtFlags::empty()))
        .map_err(|e| StepError::new("hard-link", e.err))?;
    let res = match keep {
        Some(k) => {
            let id = |d, n: &CString| {
                statat(d, n, AtFlags::SYMLINK_NOFOLLOW)
                    .ok()
                    .map(|s| (s.st_dev, s.st_ino))
            };
            if id(dst_dir, &name_c).is_some() && id(dst_dir, &name_c) == id(dst_dir, &tmp) {
                Ok(())
            } else {
                keep_old(dst_dir, &name_c, k, KeepBy::Link).map(|_| ())
            }
        }
        None => Ok(()),
    };
    finish(dst_dir, &tmp, &name_c, res)
}

/// Creates a directory with `mode` less the umask: 0700, writable by us until its final
/// mode is set after its contents, or 0777 for one whose metadata is never set.
pub fn make_dir(parent: BorrowedFd<'_>, name: &[u8], mode: u32) -> Step<OwnedFd> {
    let c = checked(name)?;
    match mkdirat(parent, &c, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(StepError::new("create directory", e)),
    }
    open_dir_at(parent, &c).map_err(|e| StepError::new("open directory", e))
}

pub fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Step<OwnedFd> {
    let c = checked(name)?;
    open_dir_at(parent, &c).map_err(|e| StepError::new("open directory", e))
}

/// A source directory the sender's scan reached through a followed symlink (`-L`, `-k`):
/// opened through the link on purpose. Never used on the destination.
pub fn open_dir_following(parent: BorrowedFd<'_>, name: &[u8]) -> Step<OwnedFd> {
    let c = checked(name)?;
    crate::fs::open_dir_following(parent, &c).map_err(|e| StepError::new("open directory", e))
}

/// `--partial-dir`: where an interrupted file is kept, to be the next run's basis.
#[derive(Debug)]
pub enum PartialDir {
    /// A name: `DIR/name` beside the file's target, made when needed and removed when it
    /// empties (rsync protects it from `--delete` with a filter rule: see cli.rs).
    Beside(Vec<u8>),
    /// An absolute path on the receiver, the user's own: `DIR/name` for every file, by its
    /// name alone, as rsync keeps it. Resolved once, when first needed (its last component
    /// is made if missing, as rsync makes it), and never removed. Names from the wire are
    /// still only ever one component below it.
    At {
        path: std::path::PathBuf,
        fd: std::sync::OnceLock<OwnedFd>,
    },
}

impl PartialDir {
    pub fn new(dir: &str) -> PartialDir {
        if dir.starts_with('/') {
            PartialDir::At {
                path: dir.into(),
                fd: std::sync::OnceLock::new(),
            }
        } else {
            PartialDir::Beside(dir.as_bytes().to_vec())
        }
    }

    /// The partial directory for a file in `dir`; with `create`, made if it is missing.
    pub fn open(&self, dir: BorrowedFd<'_>, create: bool) -> Step<OwnedFd> {
        match self {
            PartialDir::Beside(sub) if create => make_dir(dir, sub, 0o700),
            PartialDir::Beside(sub) => open_dir(dir, sub),
            PartialDir::At { path, fd } => {
                if let Some(fd) = fd.get() {
                    return rustix::io::dup(fd).map_err(|e| StepError::new("open directory", e));
                }
                let open = || {
                    rustix::fs::open(
                        path,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                };
                let opened = match open() {
                    Err(Errno::NOENT) if create => {
                        match rustix::fs::mkdir(path, Mode::from_raw_mode(0o700)) {
                            Ok(()) | Err(Errno::EXIST) => open(),
                            Err(e) => Err(e),
                        }
                    }
                    r => r,
                }
                .map_err(|e| StepError::new("open the partial dir", e))?;
                let _ = fd.set(opened);
                let fd = fd.get().ok_or_else(|| {
                    StepError::new("open the partial dir", io::Error::other("not opened"))
                })?;
                rustix::io::dup(fd).map_err(|e| StepError::new("open directory", e))
            }
        }
    }

    /// Removes a kept partial file once its file is complete (and a directory beside the
    /// target if that leaves it empty).
    pub fn drop_partial(&self, dir: BorrowedFd<'_>, name: &[u8]) {
        let Ok(name_c) = checked(name) else { return };
        if let Ok(fd) = self.open(dir, false) {
            let _ = unlinkat(&fd, &name_c, AtFlags::empty());
            if let PartialDir::Beside(sub) = self
                && let Ok(sub_c) = checked(sub)
            {
                let _ = unlinkat(dir, &sub_c, AtFlags::REMOVEDIR);
            }
        }
    }
}

/// Final metadata of a directory, set through its handle after everything inside is done
/// (creating entries changes a directory's mtime).
pub fn set_dir_meta(
    fd: impl AsFd,
    want: &Meta,
    attrs: Attrs<'_>,
    have: Option<&Meta>,
    rules: &MetaRules,
) -> Step<()> {
    let mode = if rules.perms {
        want.mode
    } else if let Some(h) = have {
        h.mode
    } else {
        want.mode & 0o777 & !rules.umask
    };
    let xres = set_attrs(
        crate::xattr::At::Fd(fd.as_fd()),
        attrs,
        Kind::Dir,
        mode,
        rules,
    );
    let xres = if rules.fake_super {
        xres.and(rules.fake(fd.as_fd(), want, mode))
    } else {
        if rules.owner || rules.group {
            let (u, g) = rules.owner_ids(want);
            rules.chown_result(fchown(&fd, u, g))?;
        }
        fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| StepError::new("change mode of", e))?;
        xres
    };
    if let Some(t) = rules.timestamps(want) {
        futimens(&fd, &t).map_err(|e| StepError::new("set times on", e))?;
    }
    xres
}

/// Removes a destination entry as the scan saw it, without following symlinks. Entries the
/// filter rules protect are kept, and so are the directories that hold them (rsync's
/// "cannot delete non-empty directory"). With `keep` (`-b`, for the entry itself) each
/// non-directory is moved to its backup instead, and a directory that then holds backups
/// stays. Returns what was removed, by kind (for `--stats`).
pub fn remove_entry(
    dir: BorrowedFd<'_>,
    e: &crate::tree::Entry,
    shallow: bool,
    keep: Option<&Keep>,
) -> Step<Tally> {
    if e.followed {
        // A -K directory link: the link goes, what it points to stays.
        return remove(dir, &e.name, Kind::Symlink, keep);
    }
    if shallow && e.is_dir() {
        let c = checked(&e.name)?;
        return match unlinkat(dir, &c, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(Tally::one(Kind::Dir)),
            Err(Errno::NOTEMPTY) => Ok(Tally::default()),
            Err(e) => Err(StepError::new("delete directory", e)),
        };
    }
    if !e.is_dir() || !e.complete {
        return remove(dir, &e.name, e.meta.kind, keep);
    }
    let c = checked(&e.name)?;
    let fd = open_dir_at(dir, &c).map_err(|e| StepError::new("open directory", e))?;
    let mut count = Tally::default();
    let mut kept = false;
    for child in &e.children {
        if child.protected && !child.perishable {
            kept = true;
        } else {
            let k = keep.map(|k| k.child(&child.name));
            count.add(remove_entry(fd.as_fd(), child, false, k.as_ref())?);
        }
    }
    if kept {
        return Ok(count);
    }
    match unlinkat(dir, &c, AtFlags::REMOVEDIR) {
        Ok(()) => {
            count.add(Tally::one(Kind::Dir));
            Ok(count)
        }
        // Something appeared since the scan: leave it, as rsync does.
        Err(Errno::NOTEMPTY) => Ok(count),
        Err(e) => Err(StepError::new("delete directory", e)),
    }
}

/// Removes `name` (and, for a directory, everything below it) without following symlinks;
/// with `keep` (`-b`, for `name` itself), non-directories are moved to their backups.
/// `kind` is what the caller knows `name` to be. Returns what was removed, by kind.
pub fn remove(dir: BorrowedFd<'_>, name: &[u8], kind: Kind, keep: Option<&Keep>) -> Step<Tally> {
    let c = checked(name)?;
    if kind != Kind::Dir {
        if let Some(k) = keep.filter(|k| !k.is_backup())
            && keep_old(dir, &c, k, KeepBy::Rename)? == Kept::Moved
        {
            return Ok(Tally::one(kind));
        }
        return match unlinkat(dir, &c, AtFlags::empty()) {
            Ok(()) => Ok(Tally::one(kind)),
            Err(Errno::ISDIR) => remove(dir, name, Kind::Dir, keep),
            Err(e) => Err(StepError::new("delete", e)),
        };
    }
    let mut count = Tally::default();
    let fd = open_dir_at(dir, &c).map_err(|e| StepError::new("open directory", e))?;
    let mut d = rustix::fs::Dir::new(fd).map_err(|e| StepError::new("read directory", e))?;
    let mut children = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent.map_err(|e| StepError::new("read directory", e))?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            let kind = match ent.file_type() {
                FileType::Directory => Kind::Dir,
                FileType::Symlink => Kind::Symlink,
                FileType::CharacterDevice => Kind::CharDev,
                FileType::BlockDevice => Kind::BlockDev,
                FileType::Fifo => Kind::Fifo,
                FileType::Socket => Kind::Socket,
                // (Unknown too: an unlink that meets a directory falls back above.)
                _ => Kind::File,
            };
            children.push((n.to_vec(), kind));
        }
    }
    let sub = d.fd().map_err(|e| StepError::new("read directory", e))?;
    for (n, kind) in children {
        let k = keep.map(|k| k.child(&n));
        count.add(remove(sub, &n, kind, k.as_ref())?);
    }
    match unlinkat(dir, &c, AtFlags::REMOVEDIR) {
        Ok(()) => {
            count.add(Tally::one(Kind::Dir));
            Ok(count)
        }
        // The backups made inside it keep it, as in rsync.
        Err(Errno::NOTEMPTY) if keep.is_some_and(|k| k.beside()) => Ok(count),
        Err(e) => Err(StepError::new("delete directory", e)),
    }
}

/// How `-b` keeps the old entry at a name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeepBy {
    /// It is about to be replaced by a rename: a second name (a hard link), so the name
    /// itself always holds the old entry or the new one.
    Link,
    /// It is being deleted: moved to its backup name.
    Rename,
    /// It is about to be written in place (`--inplace`): a copy.
    Copy,
}

/// What became of the old entry.
#[derive(Debug, PartialEq, Eq)]
enum Kept {
    /// There was none (or a directory, which is never backed up).
    Nothing,
    /// It is at its backup name and no longer at its own.
    Moved,
    /// Its backup is another name or a copy; it is still at its own name.
    Copied,
}

/// `-b`: keeps the entry at `name` in `dir` under its backup name (crate::backup), replacing
/// an older backup there.
///
/// The order is the atomic-write rule's. For a replacement the old file is hard-linked to
/// its backup name and only then is the new one renamed over the name: if the run dies in
/// between, the name still holds the old file (and the backup a second name of it), so
/// nothing is lost and the name never stands empty. Renaming old to backup and then new to
/// name would leave the name missing in between. Where the link is refused (the backup dir
/// on another file system, a file system without hard links, a file at its link limit) the
/// backup is a copy, made under a temporary name in the backup's directory and renamed
/// there, so a backup name never holds half a file either.
fn keep_old(dir: BorrowedFd<'_>, name: &CString, keep: &Keep, by: KeepBy) -> Step<Kept> {
    let id = |d: BorrowedFd<'_>, n: &CString| {
        statat(d, n, AtFlags::SYMLINK_NOFOLLOW).map(|s| (s.st_dev, s.st_ino))
    };
    let st = match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(Kept::Nothing),
        Err(e) => return Err(StepError::new("back up", e)),
    };
    let meta = Meta::from_stat(&st);
    if meta.kind == Kind::Dir {
        return Ok(Kept::Nothing);
    }
    let (bdir, bname) = keep
        .place()
        .map_err(|e| StepError::new("make the backup of", e))?;
    // A DIR that leads back to the file's own directory, with no suffix: the backup would
    // be the file itself, which the steps below would then delete.
    if let Some(b) = &bdir
        && bname == *name
        && fstat(b).map(|s| (s.st_dev, s.st_ino)).ok()
            == rustix::fs::fstat(dir).map(|s| (s.st_dev, s.st_ino)).ok()
    {
        return Err(StepError::new(
            "back up",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the backup would be the file itself (--backup-dir is its own directory)",
            ),
        ));
    }
    let bdir = bdir.as_ref().map_or(dir, |d| d.as_fd());
    let attempt = || match by {
        KeepBy::Link => linkat(dir, name, bdir, &bname, AtFlags::empty()).map(|()| Kept::Copied),
        KeepBy::Rename => renameat(dir, name, bdir, &bname).map(|()| Kept::Moved),
        KeepBy::Copy => Err(Errno::XDEV),
    };
    let result = match attempt() {
        // The backup name is already a second name of this very file (a run that died
        // between the link and the rename left it so).
        Err(Errno::EXIST) if id(bdir, &bname).ok() == Some((st.st_dev, st.st_ino)) => {
            return Ok(Kept::Copied);
        }
        // An older backup (of any kind) is in the way of the link, or a directory is in
        // the way of either.
        Err(Errno::EXIST | Errno::ISDIR | Errno::NOTEMPTY) => {
            clear(bdir, &bname)?;
            attempt()
        }
        other => other,
    };
    match result {
        Ok(Kept::Moved) => {
            // Renaming one name of a file over another name of it does nothing.
            if st.st_nlink > 1 {
                let _ = unlinkat(dir, name, AtFlags::empty());
            }
            Ok(Kept::Moved)
        }
        Ok(k) => Ok(k),
        Err(Errno::NOENT) => Ok(Kept::Nothing),
        Err(_) => {
            if let Ok(b) = statat(bdir, &bname, AtFlags::SYMLINK_NOFOLLOW)
                && Kind::from_mode(b.st_mode) == Kind::Dir
            {
                clear(bdir, &bname)?;
            }
            copy_entry(dir, name, &meta, bdir, &bname).map(|()| Kept::Copied)
        }
    }
}

/// Removes whatever holds a backup's name before it is replaced (an older backup; a
/// directory in the way goes with everything in it, as in rsync).
fn clear(dir: BorrowedFd<'_>, name: &CString) -> Step<()> {
    let kind = match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Kind::from_mode(st.st_mode),
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(StepError::new("replace the backup", e)),
    };
    remove(dir, name.as_bytes(), kind, None).map(|_| ())
}

/// The backup as a copy of `name` (a file, symlink or node, with its owner where we may
/// set it, mode and mtime), made under a temporary name in `bdir` and renamed to `bname`.
fn copy_entry(
    dir: BorrowedFd<'_>,
    name: &CString,
    meta: &Meta,
    bdir: BorrowedFd<'_>,
    bname: &CString,
) -> Step<()> {
    let am_root = rustix::process::geteuid().is_root();
    let rules = MetaRules {
        perms: true,
        times: true,
        atimes: false,
        fake_super: false,
        omit_dir_times: false,
        omit_link_times: false,
        owner: am_root,
        group: true,
        sparse: false,
        umask: 0,
        am_root,
        inplace: false,
        window: crate::tree::TimeWindow::default(),
        fsync: false,
        xattrs: None,
        acls: false,
        executability: false,
        delay_updates: false,
        temp_dir: None,
    };
    let res = match meta.kind {
        Kind::File => {
            let src = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| StepError::new("back up", e))?;
            let mut out = TempFile::create(bdir, bname.as_bytes(), false, meta.mode, 0)?;
            out.len = copy_data(&src, &out.fd, meta.size)?;
            set_fd_meta(&out.fd, meta, meta.mode, &rules, false)?;
            renameat(bdir, &out.tmp, bdir, &out.name)
                .map_err(|e| StepError::new("rename into place", e))?;
            out.committed = true;
            return Ok(());
        }
        Kind::Symlink => {
            let target =
                readlinkat(dir, name, Vec::new()).map_err(|e| StepError::new("back up", e))?;
            with_temp(|tmp| symlinkat(target.as_c_str(), bdir, tmp))?
        }
        Kind::CharDev | Kind::BlockDev | Kind::Fifo | Kind::Socket => {
            let ft = FileType::from_raw_mode(meta.kind.type_bits());
            with_temp(|tmp| {
                mknodat(
                    bdir,
                    tmp,
                    ft,
                    Mode::from_raw_mode(0o600),
                    meta.rdev as rustix::fs::Dev,
                )
            })?
        }
        Kind::Dir => return Ok(()),
    };
    let (tmp, ()) = res;
    let done = set_path_meta(bdir, &tmp, meta, None, &rules);
    finish(bdir, &tmp, bname, done)
}

/// Opens a root-relative directory one component at a time, never following a symlink.
pub fn open_rel(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, StepError> {
    let mut cur = rustix::io::dup(root).map_err(|e| StepError {
        op: "open directory",
        err: e.into(),
    })?;
    if rel.is_empty() {
        return Ok(cur);
    }
    for comp in rel.split(|&b| b == b'/') {
        cur = open_dir(cur.as_fd(), comp)?;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaced_files_are_kept_open_within_the_budget_the_oldest_closed_first() {
        let fd = || rustix::io::dup(std::io::stdin()).unwrap();
        let mut kept = Vec::new();
        assert!(keep_within(&mut kept, (fd(), 600), 1000).is_empty());
        // Over the budget: the first goes, the second stays.
        let a = kept[0].0.as_raw_fd();
        let out = keep_within(&mut kept, (fd(), 600), 1000);
        assert_eq!(out.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(), [a]);
        assert_eq!(kept.len(), 1);
        // One file bigger than the whole budget is still kept, the one before it not.
        let out = keep_within(&mut kept, (fd(), 5000), 1000);
        assert_eq!(out.len(), 1);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1, 5000);
    }

    fn rules() -> MetaRules {
        MetaRules {
            perms: true,
            executability: false,
            times: false,
            atimes: false,
            fake_super: false,
            omit_dir_times: false,
            omit_link_times: false,
            owner: false,
            group: false,
            sparse: false,
            umask: 0o022,
            am_root: false,
            inplace: false,
            delay_updates: false,
            window: crate::tree::TimeWindow::default(),
            fsync: false,
            xattrs: None,
            acls: false,
            temp_dir: None,
        }
    }

    /// The race of an attribute-only update, made deterministic: the planner has lstat'ed
    /// `dst/f` as a file, then `f` becomes a symlink to a file outside the tree before the
    /// mode is set. The outside file keeps its mode, and the update fails (ELOOP).
    #[test]
    fn attribute_update_never_follows_a_name_swapped_for_a_symlink() {
        let top = tempfile::tempdir().expect("tempdir");
        let (dst, outside) = (top.path().join("dst"), top.path().join("outside"));
        std::fs::create_dir(&dst).expect("mkdir dst");
        std::fs::write(dst.join("f"), b"f").expect("write f");
        std::fs::write(&outside, b"secret").expect("write outside");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600))
            .expect("chmod outside");
        let have = Meta::from_stat(&rustix::fs::lstat(dst.join("f")).expect("lstat f"));
        let want = Meta {
            mode: 0o777,
            ..have
        };

        std::fs::remove_file(dst.join("f")).expect("rm f");
        std::os::unix::fs::symlink(&outside, dst.join("f")).expect("symlink");
        let dir = std::fs::File::open(&dst).expect("open dst");
        let r = update_meta(dir.as_fd(), b"f", &want, Attrs::default(), &have, &rules());

        let mode = std::fs::metadata(&outside)
            .expect("stat outside")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o7777,
            0o600,
            "the file outside the tree changed mode"
        );
        let err = r.expect_err("a swapped name must not take the update");
        assert_eq!(err.err.raw_os_error(), Some(libc_eloop()), "{err:?}");

        // The same update on the real file still works.
        std::fs::remove_file(dst.join("f")).expect("rm link");
        std::fs::write(dst.join("f"), b"f").expect("write f");
        update_meta(dir.as_fd(), b"f", &want, Attrs::default(), &have, &rules()).expect("update f");
        let mode = std::fs::metadata(dst.join("f"))
            .expect("stat f")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o777);
    }

    /// The same race under `-A`: the ACL is not given to the file outside the tree either
    /// (its name is set without following the link), and the real file takes it.
    #[test]
    fn acl_update_never_follows_a_name_swapped_for_a_symlink() {
        use crate::acl::{Access, Acls, Named, Who};
        let top = tempfile::tempdir().expect("tempdir");
        let (dst, outside) = (top.path().join("dst"), top.path().join("outside"));
        std::fs::create_dir(&dst).expect("mkdir dst");
        std::fs::write(dst.join("f"), b"f").expect("write f");
        std::fs::write(&outside, b"secret").expect("write outside");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600))
            .expect("chmod outside");
        let have = Meta::from_stat(&rustix::fs::lstat(dst.join("f")).expect("lstat f"));
        let want = Meta {
            mode: 0o670,
            ..have
        };
        let acls = Acls {
            access: Some(Access {
                group: 4,
                named: vec![Named {
                    who: Who::User(65534),
                    perm: 7,
                }],
            }),
            default: None,
        };
        let attrs = Attrs {
            xattrs: None,
            acls: Some(&acls),
        };
        let r = MetaRules {
            acls: true,
            ..rules()
        };
        let acl_of = |p: &std::path::Path| {
            let mut buf = vec![0u8; 4096];
            rustix::fs::lgetxattr(p, c"system.posix_acl_access", &mut buf[..]).ok()
        };

        std::fs::remove_file(dst.join("f")).expect("rm f");
        std::os::unix::fs::symlink(&outside, dst.join("f")).expect("symlink");
        let dir = std::fs::File::open(&dst).expect("open dst");
        let res = update_meta(dir.as_fd(), b"f", &want, attrs, &have, &r);
        assert!(res.is_err(), "a swapped name must not take the update");
        assert_eq!(
            acl_of(&outside),
            None,
            "the file outside the tree got the ACL"
        );
        let mode = std::fs::metadata(&outside)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);

        std::fs::remove_file(dst.join("f")).expect("rm link");
        std::fs::write(dst.join("f"), b"f").expect("write f");
        match update_meta(dir.as_fd(), b"f", &want, attrs, &have, &r) {
            Ok(()) => {
                assert!(
                    acl_of(&dst.join("f")).is_some(),
                    "the real file has its ACL"
                );
                let mode = std::fs::metadata(dst.join("f"))
                    .expect("stat")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o7777, 0o670);
            }
            // (A file system without ACLs: the race half above still held.)
            Err(e) if e.err.raw_os_error() == Some(Errno::OPNOTSUPP.raw_os_error()) => {}
            Err(e) => panic!("update f: {e:?}"),
        }
    }

    #[test]
    fn append_writes_after_the_kept_bytes_and_refuses_a_target_that_shrank_or_is_a_link() {
        let top = tempfile::tempdir().expect("tempdir");
        std::fs::write(top.path().join("f"), b"abc").expect("write f");
        std::os::unix::fs::symlink("f", top.path().join("l")).expect("symlink");
        let dir = std::fs::File::open(top.path()).expect("open dir");
        let have = Meta::from_stat(&rustix::fs::lstat(top.path().join("f")).expect("lstat"));
        let want = Meta {
            size: 6,
            mode: 0o600,
            ..have
        };
        let mut t = TempFile::append(dir.as_fd(), b"f", 3, false, None).expect("append");
        t.write(b"def").expect("write");
        t.commit(&want, Attrs::default(), Some(&have), &rules())
            .expect("commit");
        assert_eq!(std::fs::read(top.path().join("f")).unwrap(), b"abcdef");
        let mode = std::fs::metadata(top.path().join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(TempFile::append(dir.as_fd(), b"f", 7, false, None).is_err());
        assert!(TempFile::append(dir.as_fd(), b"l", 1, false, None).is_err());
        assert_eq!(std::fs::read(top.path().join("f")).unwrap(), b"abcdef");
    }

    #[test]
    fn a_temporary_in_the_temp_dir_is_renamed_into_place_and_leaves_nothing_there() {
        let top = tempfile::tempdir().expect("tempdir");
        let (dst, tmp) = (top.path().join("dst"), top.path().join("tmp"));
        std::fs::create_dir(&dst).expect("mkdir dst");
        std::fs::create_dir(&tmp).expect("mkdir tmp");
        std::fs::write(dst.join("g"), b"old").expect("write g");
        let r = MetaRules {
            temp_dir: Some(TempDir::open(&tmp).expect("open temp dir")),
            ..rules()
        };
        let dir = std::fs::File::open(&dst).expect("open dst");
        let mut t = TempFile::start(dir.as_fd(), b"g", &r, 0o644, false, None).expect("start");
        t.write(b"new").expect("write");
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            1,
            "written in tmp"
        );
        assert_eq!(std::fs::read(dst.join("g")).unwrap(), b"old");
        let have = Meta::from_stat(&rustix::fs::lstat(dst.join("g")).expect("lstat"));
        t.commit(&Meta { size: 3, ..have }, Attrs::default(), Some(&have), &r)
            .expect("commit");
        assert_eq!(std::fs::read(dst.join("g")).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        let mut names: Vec<_> = std::fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["g"]);
    }

    fn libc_eloop() -> i32 {
        Errno::LOOP.raw_os_error()
    }
}
