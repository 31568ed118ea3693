//! xsync: one-shot, rsync-compatible replication — parallel walks, Merkle comparison,
//! atomic writes.
//!
//! The binary is a thin shell over [`run_with`], so the whole command line can be driven
//! in-process (tests, benches) with its output captured.

pub mod acl;
mod altdest;
mod backup;
mod chmod;
pub mod cli;
pub mod compress;
pub mod config;
pub mod delta;
mod dest;
mod endpoint;
pub mod error;
mod exec;
pub mod exit;
mod fakesuper;
pub mod filter;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
pub mod json;
mod ls;
mod outfmt;
mod pathsafe;
mod plan;
mod progress;
pub mod protocol;
pub mod report;
pub mod scan;
mod source;
pub mod summary;
pub mod temps;
mod transfer;
pub mod tree;
mod write;
mod xattr;

use exit::ExitCode;
use std::ffi::OsString;
use std::io::Write;

/// Version of the wire protocol spoken by `xsync --server` (bumped on incompatible change).
pub const PROTOCOL_VERSION: u32 = 11;

/// Runs xsync with `args` (including the program name), writing to `stdout`/`stderr`, and
/// returns the rsync-compatible exit code.
pub fn run_with<I, T>(
    args: I,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // ssh's ProxyCommand, connecting for the client (endpoint::sshopts).
    if args.get(1).is_some_and(|a| a == endpoint::connect::FLAG) {
        return ExitCode::from_code(endpoint::connect::run(&args[2..]));
    }
    if args.get(1).is_some_and(|a| a == "--server") {
        // `--server --join ID`: an extra stream of a session (endpoint::streams).
        if args.len() == 4 && args[2] == "--join" {
            return endpoint::join(&args[3].to_string_lossy());
        }
        // `--server --install …`: this binary was just uploaded and must check itself and
        // take its cache name before it serves (endpoint::deploy).
        if args.len() > 2
            && let Err(e) = endpoint::deploy::settle_install(&args[2..])
        {
            let _ = writeln!(stderr, "xsync: {e}");
            return e.code;
        }
        return endpoint::serve(stderr, cli::server_options);
    }
    let mut opts = match cli::parse(args) {
        Ok(cli::Parsed::Run(o)) => o,
        Ok(cli::Parsed::Version) => {
            let _ = stdout.write_all(cli::version_text().as_bytes());
            return ExitCode::Ok;
        }
        Ok(cli::Parsed::Help(text)) => {
            let _ = stdout.write_all(text.as_bytes());
            return ExitCode::Ok;
        }
        Err(e) => {
            let _ = writeln!(stderr, "xsync: {e}");
            let _ = writeln!(
                stderr,
                "xsync error: {} (code {})",
                e.code.describe(),
                e.code.code()
            );
            return e.code;
        }
    };
    raise_fd_limit();
    // progress2 is a bar where stdout is a terminal (Progress::new looks), rsync's line
    // elsewhere.
    let progress = progress::Progress::new(opts.progress, opts.human_readable, true);
    // --json writes its records straight to stdout, unbuffered by the listing's writer, so
    // that the signal thread can end them with the summary (json::interrupted).
    let log = opts.json.then(|| json::start(Box::new(std::io::stdout())));
    let log_file = opts.log_file.as_deref().and_then(|path| {
        report::LogFile::open(path)
            .map_err(|e| {
                // As rsync: said, and the run goes on without a log.
                use std::os::unix::ffi::OsStrExt;
                let msg = error::io_message("open log-file", path.as_os_str().as_bytes(), &e);
                let _ = writeln!(stderr, "xsync: {msg}");
                if !opts.quiet {
                    let _ = writeln!(stdout, "Ignoring \"log file\" setting.");
                }
            })
            .ok()
    });
    let report = report::Report::new(stdout, stderr, opts.quiet)
        .with_progress(progress)
        .with_json(log)
        .with_log(log_file);
    std::thread::scope(|scope| {
        // The one printer of progress lines, besides the end of the run.
        let ticker = report
            .progress
            .as_ref()
            .map(|p| scope.spawn(|| p.tick(&report)));
        if let Err(e) = endpoint::run(&mut opts, &report) {
            report.error(e.code, e.message());
        }
        if let (Some(p), Some(t)) = (&report.progress, ticker) {
            p.stop();
            t.thread().unpark();
            let _ = t.join();
        }
    });
    report.finish()
}

/// At most two glibc malloc arenas. glibc gives each thread that allocates its own arena
/// (up to eight per core) and keeps what is freed in it: with eight extra streams the
/// client's buffers, made on one thread and freed on another, left 98 MiB resident for
/// 44 MB of live heap pushing 1 GiB at 100 ms RTT; two arenas held 49 MiB, at no cost
/// measurable on the local kernel copy (hyperfine, 10 runs each, within the noise).
/// What a process leaves to the kernel after its run: the replaced files' last handles,
/// closed by a detached child (`write::close_later_detached`). Called by `main` last.
pub fn release_late() {
    write::close_later_detached();
}

pub fn bound_memory() {
    // SAFETY: mallopt only sets a parameter of the allocator; called before any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// rsync's behaviour on SIGINT, SIGTERM and SIGHUP: remove the files being written, say
/// why, exit 20. (Files already renamed into place are complete; the rest are untouched.)
pub fn install_signal_handlers() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            if !crate::exit::begin_ending() {
                crate::exit::wait_if_ending();
            }
            let _held = write::remove_live_temps();
            let code = ExitCode::Signal;
            json::interrupted(code.code());
            eprintln!("xsync error: {} (code {})", code.describe(), code.code());
            std::process::exit(code.code());
        }
    });
}

/// Parallel walks hold a directory handle per level per thread; the default soft limit of
/// 1024 is raised to the hard limit so deep trees cannot run out.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}
