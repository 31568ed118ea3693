//! The ends of a run, by role. The client resolves the command line's sources and
//! destination and runs either both ends here ([`local`]) or one of them against
//! `xsync --server` through the remote shell ([`remote`], [`server`]). Either way the
//! sender's scan is [`sender::scan_sources`] and the receiver's work is [`apply`]: one
//! sequence, with a connection ([`conn`]) between the roles or without one.
//!
//! rsync's path rules are the sides' own (`source.rs`, `dest.rs`): `src/` copies the
//! contents, `src` the directory itself; one missing destination level is created (all of
//! them with `--mkpath`); a single file whose destination is not an existing directory is
//! copied to that name.

mod apply;
mod conn;
pub mod connect;
pub mod deploy;
mod local;
mod receiver;
pub mod remote;
mod sender;
mod server;
mod sshopts;
mod streams;

pub use server::run as serve;
pub use streams::join;

use crate::config::Options;
use crate::error::Error;
use crate::report::Report;
use std::time::Instant;

/// One run of the client.
pub fn run(opts: &mut Options, report: &Report<'_>) -> Result<(), Error> {
    let start = Instant::now();
    if opts.paths.is_empty() {
        return Err(Error::usage(
            "no source or destination given (usage: xsync [OPTION]... SRC [SRC]... DEST)",
        ));
    }
    crate::fs::set_open_noatime(opts.open_noatime || opts.atimes);
    // rsync's check: a munged link would lead into such a directory.
    if opts.munge_links && std::fs::metadata("/rsyncd-munged").is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(
            crate::exit::ExitCode::Unsupported,
            "Symlink munging is unsafe when a /rsyncd-munged directory exists.",
        ));
    }
    // (--list-only, or one source and no destination: the sources are listed, and a
    // remote one is pulled without a destination.)
    let remote = if opts.list_only {
        remote::RemoteJob::listing(opts)?
    } else {
        remote::RemoteJob::from_options(opts)?
    };
    let pull = remote.as_ref().is_some_and(|r| !r.is_push());
    // --log-file's opening line (rsync's, whatever the verbosity).
    report.log(if pull {
        "receiving file list"
    } else {
        "building file list"
    });
    // rsync's -v (or --progress) listing opens with the file list's direction, as seen from
    // the client, and whether it is sent incrementally (a list of directories sent whole
    // says it is done; a list of named files says nothing).
    if opts.verbose > 0 || opts.progress == 1 {
        let header = match (crate::plan::inc_recursive(opts), pull) {
            (true, true) => Some("receiving incremental file list"),
            (true, false) => Some("sending incremental file list"),
            _ if !opts.recursive && opts.files_from.is_none() => None,
            (false, true) => Some("receiving file list ... done"),
            (false, false) => Some("building file list ... done"),
        };
        if let Some(h) = header {
            // (Not in the log: rsync's says only "building file list".)
            report.note(h);
        }
    }
    if let Some(remote) = remote {
        return remote.run(opts, report, start);
    }
    if opts.list_only {
        return local::list(opts, report, start);
    }
    local::run(opts, report, start)
}
