//! rsync's exit codes, and the one place an error's kind becomes one of them.
//!
//! Scripts test `$?` against rsync's table, so xsync keeps its numbers and meanings exactly;
//! only the subset xsync can actually produce is listed. The run's final code is the most
//! severe one recorded (see `ExitCode::severity`), as rsync reports e.g. 23 over 24.

/// An rsync-compatible process exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ExitCode {
    /// Everything requested was done.
    Ok = 0,
    /// Syntax or usage error: unknown or unsupported option, bad arguments.
    Usage = 1,
    /// Protocol incompatibility: the peer speaks another protocol version or sent nonsense
    /// during the handshake.
    Protocol = 2,
    /// Errors selecting input/output files or directories (e.g. bad filter file).
    FileSelect = 3,
    /// The requested action is not supported (e.g. remote to remote).
    Unsupported = 4,
    /// Error starting the client-server protocol (the remote program could not be started).
    StartClient = 5,
    /// Error in socket I/O.
    SocketIo = 10,
    /// Error in file I/O that stops the run (e.g. the destination cannot be created).
    FileIo = 11,
    /// Error in the protocol data stream: the peer sent a malformed or hostile frame, or the
    /// stream ended early.
    StreamIo = 12,
    /// Error in inter-process communication (spawning or waiting on the remote shell).
    Ipc = 14,
    /// Received SIGINT, SIGTERM or SIGHUP.
    Signal = 20,
    /// More memory than this host can give: a peer announced a tree beyond the receiver's
    /// budget (rsync's "error allocating core memory buffers").
    Memory = 22,
    /// Partial transfer due to error: some files could not be read, written or deleted.
    Partial = 23,
    /// Partial transfer because source files vanished while the run was reading them.
    Vanished = 24,
    /// The --max-delete limit stopped deletions.
    MaxDelete = 25,
    /// Timeout in data send/receive.
    Timeout = 30,
    /// The remote shell exited with status 255 (ssh's own failure: refused login,
    /// unreachable host), passed on as rsync does.
    RemoteShell = 255,
    /// The remote command exited with status 255 that was not ssh's (rsync's 124).
    CmdFailed = 124,
    /// The remote command was killed by a signal.
    CmdKilled = 125,
    /// The remote command exists but could not be run (not executable).
    CmdRun = 126,
    /// The remote command (`xsync`, or `--xsync-path`) was not found.
    CmdNotFound = 127,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code a peer sent as a number (an unknown one is a protocol-stream error).
    pub fn from_code(n: i32) -> ExitCode {
        use ExitCode::*;
        [
            Ok,
            Usage,
            Protocol,
            FileSelect,
            Unsupported,
            StartClient,
            SocketIo,
            FileIo,
            StreamIo,
            Ipc,
            Signal,
            Memory,
            Partial,
            Vanished,
            MaxDelete,
            Timeout,
            CmdFailed,
            CmdKilled,
            CmdRun,
            CmdNotFound,
            RemoteShell,
        ]
        .into_iter()
        .find(|c| c.code() == n)
        .unwrap_or(StreamIo)
    }

    /// Which of two recorded outcomes wins the final exit status. A fatal code always wins
    /// over per-file trouble; among per-file codes rsync prefers 23 over 24 over 25.
    fn severity(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::MaxDelete => 1,
            ExitCode::Vanished => 2,
            ExitCode::Partial => 3,
            _ => 4,
        }
    }

    /// The more severe of two codes (the earlier one on a tie).
    pub fn worst(self, other: ExitCode) -> ExitCode {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// What a failed change to the destination means for the run. `writing_data`: the step
    /// was writing file content (or sizing the temporary that holds it), as opposed to
    /// creating, renaming or setting metadata.
    ///
    /// rsync's receiver ends the run with 11 on any failed write of file data ("write failed
    /// on …", receiver.c), so ENOSPC, EDQUOT, EIO and EFBIG there are 11, not the per-file
    /// 23; a full file system or quota fails a mkdir, symlink or rename just the same, so
    /// those two are 11 from any step. The transfer stops where the file system itself can
    /// take no more (full, over quota, a failing device): every later file would fail the
    /// same way, printing a line each and, over a wire, costing its whole data first.
    /// EFBIG is one file's limit (the file system's largest file, or RLIMIT_FSIZE), so the
    /// run goes on with the others and still ends 11, as rsync would.
    pub fn of_dest_error(err: &std::io::Error, writing_data: bool) -> DestFailure {
        use rustix::io::Errno;
        let (code, stops) = match Errno::from_io_error(err) {
            Some(Errno::NOSPC | Errno::DQUOT) => (ExitCode::FileIo, true),
            Some(Errno::IO) if writing_data => (ExitCode::FileIo, true),
            Some(Errno::FBIG) if writing_data => (ExitCode::FileIo, false),
            _ => (ExitCode::Partial, false),
        };
        DestFailure { code, stops }
    }

    /// rsync's wording for the closing `rsync error: … (code N)` line.
    pub fn describe(self) -> &'static str {
        match self {
            ExitCode::Ok => "success",
            ExitCode::Usage => "syntax or usage error",
            ExitCode::Protocol => "protocol incompatibility",
            ExitCode::FileSelect => "errors selecting input/output files, dirs",
            ExitCode::Unsupported => "requested action not supported",
            ExitCode::StartClient => "error starting client-server protocol",
            ExitCode::SocketIo => "error in socket IO",
            ExitCode::FileIo => "error in file IO",
            ExitCode::StreamIo => "error in rsync protocol data stream",
            ExitCode::Ipc => "error in IPC code",
            ExitCode::Signal => "received SIGINT, SIGTERM, or SIGHUP",
            ExitCode::Memory => "error allocating core memory buffers",
            ExitCode::Partial => "some files/attrs were not transferred (see previous errors)",
            ExitCode::Vanished => "some files vanished before they could be transferred",
            ExitCode::MaxDelete => "the --max-delete limit stopped deletions",
            ExitCode::Timeout => "timeout in data send/receive",
            ExitCode::RemoteShell => "unexplained error",
            ExitCode::CmdFailed => "remote command failed",
            ExitCode::CmdKilled => "remote command killed",
            ExitCode::CmdRun => "remote command could not be run",
            ExitCode::CmdNotFound => "remote command not found",
        }
    }
}

static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A timeout or a signal ends the run from its own thread: it removes the files being
/// written, says why and exits with its code (30, 20). Meanwhile the main thread may see the
/// connection close under it and head for its own exit (12): the first to call this owns
/// the ending, and [`wait_if_ending`] keeps everyone else from exiting first.
pub fn begin_ending() -> bool {
    !ENDING.swap(true, std::sync::atomic::Ordering::SeqCst)
}

/// Never returns while another thread owns the ending (it exits the process).
pub fn wait_if_ending() {
    while ENDING.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::park();
    }
}

/// See [`ExitCode::of_dest_error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestFailure {
    pub code: ExitCode,
    /// No further files are started: the destination cannot take them.
    pub stops: bool,
}

#[cfg(test)]
mod tests {
    use super::{DestFailure, ExitCode};

    #[test]
    fn partial_outranks_vanished_and_fatal_outranks_partial() {
        assert_eq!(
            ExitCode::Vanished.worst(ExitCode::Partial),
            ExitCode::Partial
        );
        assert_eq!(
            ExitCode::Partial.worst(ExitCode::Vanished),
            ExitCode::Partial
        );
        assert_eq!(ExitCode::Partial.worst(ExitCode::FileIo), ExitCode::FileIo);
        assert_eq!(ExitCode::Ok.worst(ExitCode::MaxDelete), ExitCode::MaxDelete);
    }

    #[test]
    fn failed_writes_are_rsyncs_file_io_error_and_a_full_disk_stops_the_run() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        let f = |code, stops| DestFailure { code, stops };
        let (nospc, dquot, eio, fbig, acces) = (28, 122, 5, 27, 13);
        assert_eq!(
            ExitCode::of_dest_error(&e(nospc), true),
            f(ExitCode::FileIo, true)
        );
        assert_eq!(
            ExitCode::of_dest_error(&e(nospc), false),
            f(ExitCode::FileIo, true)
        );
        assert_eq!(
            ExitCode::of_dest_error(&e(dquot), false),
            f(ExitCode::FileIo, true)
        );
        assert_eq!(
            ExitCode::of_dest_error(&e(eio), true),
            f(ExitCode::FileIo, true)
        );
        assert_eq!(
            ExitCode::of_dest_error(&e(eio), false),
            f(ExitCode::Partial, false)
        );
        assert_eq!(
            ExitCode::of_dest_error(&e(fbig), true),
            f(ExitCode::FileIo, false)
        );
        assert_eq!(
            ExitCode::of_dest_error(&e(acces), true),
            f(ExitCode::Partial, false)
        );
    }
}
