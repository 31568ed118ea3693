//! The client side of a remote transfer: recognising `[user@]host:path`, spawning the
//! remote shell (`-e`/`--rsh`, `XSYNC_RSH`, rsync's `RSYNC_RSH`, default `ssh`) to run `xsync --server` (or
//! `--xsync-path`), and driving the session as sender (push) or receiver (pull).
//!
//! The remote shell is the system's, run with std::process, so a user's `-e "ssh -p 2222
//! -i key"` or any wrapper works exactly as it does for rsync.

use super::conn::{Conn, Wire, settle_stream};
use super::deploy;
use super::streams::Streams;
use super::{receiver, sender};
use crate::config::{IpFamily, Options};
use crate::error::{Error, show};
use crate::exit::ExitCode;
use crate::protocol::{FilterLine, Msg, Reader, Role, Writer};
use crate::report::Report;
use crate::report::print_summary;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// A path argument that names a remote location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub user: Option<String>,
    pub host: String,
    pub path: Vec<u8>,
}

/// rsync's rule: an argument is remote when it has a colon before any slash. `[v6]:path`
/// brackets an IPv6 address; `host::module` (daemon syntax) is refused.
pub fn parse_spec(arg: &[u8]) -> Result<Option<Spec>, Error> {
    if arg.starts_with(b"rsync://") {
        return Err(Error::usage(format!(
            "`{}`: rsync daemon URLs are not supported by xsync",
            show(arg)
        )));
    }
    let (hostpart, path) = if arg.first() == Some(&b'[') {
        match arg.windows(2).position(|w| w == b"]:") {
            Some(i) => (&arg[..i + 1], &arg[i + 2..]),
            None => return Ok(None),
        }
    } else {
        match arg.iter().position(|&b| b == b':') {
            Some(c) if c > 0 && !arg[..c].contains(&b'/') => (&arg[..c], &arg[c + 1..]),
            _ => return Ok(None),
        }
    };
    if path.first() == Some(&b':') {
        return Err(Error::usage(format!(
            "`{}`: rsync daemon syntax (host::module) is not supported by xsync",
            show(arg)
        )));
    }
    let hostpart = String::from_utf8_lossy(hostpart).into_owned();
    let (user, host) = match hostpart.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, hostpart),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(Error::usage(format!("`{}`: empty host name", show(arg))));
    }
    Ok(Some(Spec {
        user,
        host,
        path: if path.is_empty() {
            b".".to_vec()
        } else {
            path.to_vec()
        },
    }))
}

pub struct RemoteJob {
    spec: Spec,
    /// true: local sources to a remote destination.
    push: bool,
    remote_paths: Vec<OsString>,
    local_paths: Vec<OsString>,
}

impl RemoteJob {
    /// Classifies the paths; None for a purely local run.
    pub fn from_options(opts: &Options) -> Result<Option<RemoteJob>, Error> {
        let (dst, srcs) = opts.paths.split_last().expect("caller checked");
        let dst_spec = parse_spec(dst.as_bytes())?;
        let mut src_specs = Vec::new();
        for s in srcs {
            src_specs.push(parse_spec(s.as_bytes())?);
        }
        // rsync's shorthand for more sources on the same host: `host:a :b`.
        if let Some(first) = src_specs.iter().flatten().next().cloned() {
            for (spec, s) in src_specs.iter_mut().zip(srcs) {
                let b = s.as_bytes();
                if spec.is_none() && b.len() > 1 && b[0] == b':' && b[1] != b':' {
                    *spec = Some(Spec {
                        path: b[1..].to_vec(),
                        ..first.clone()
                    });
                }
            }
        }
        let remote_srcs = src_specs.iter().filter(|s| s.is_some()).count();
        match (dst_spec, remote_srcs) {
            (None, 0) => Ok(None),
            (Some(_), n) if n > 0 => Err(Error::usage(
                "remote to remote transfers are not supported: the source and the destination cannot both be remote",
            )),
            // The receiver decides a file's -i flags, and on a push that is the server,
            // while each file's line is printed here with its progress.
            (Some(_), _) if opts.itemize && opts.progress == 1 && !opts.dry_run => {
                Err(Error::usage(
                    "--itemize-changes (-i) with --progress is not supported when pushing to a remote destination (use -v, or --info=progress2)",
                ))
            }
            (Some(spec), _) => Ok(Some(RemoteJob {
                remote_paths: vec![OsString::from_vec(spec.path.clone())],
                spec,
                push: true,
                local_paths: srcs.to_vec(),
            })),
            (None, n) if n == srcs.len() => {
                let specs: Vec<Spec> = src_specs.into_iter().flatten().collect();
                let first = specs[0].clone();
                if specs
                    .iter()
                    .any(|s| s.host != first.host || s.user != first.user)
                {
                    return Err(Error::usage("all remote sources must be on the same host"));
                }
                Ok(Some(RemoteJob {
                    remote_paths: specs
                        .into_iter()
                        .map(|s| OsString::from_vec(s.path))
                        .collect(),
                    spec: first,
                    push: false,
                    local_paths: vec![dst.clone()],
                }))
            }
            (None, _) => Err(Error::usage(
                "mixing local and remote sources is not supported",
            )),
        }
    }

    /// `--list-only`: the sources are all but the destination (if one is given; a listing
    /// never writes to it), and a remote one is pulled with no destination. None when the
    /// sources are local, whatever the destination.
    pub fn listing(opts: &Options) -> Result<Option<RemoteJob>, Error> {
        let srcs = match opts.paths.len() {
            1 => &opts.paths[..],
            n => &opts.paths[..n - 1],
        };
        let mut specs = Vec::new();
        for s in srcs {
            specs.push(parse_spec(s.as_bytes())?);
        }
        if specs.iter().all(Option::is_none) {
            return Ok(None);
        }
        let first = specs
            .iter()
            .flatten()
            .next()
            .cloned()
            .expect("one is remote");
        let mut remote_paths = Vec::new();
        for (spec, s) in specs.into_iter().zip(srcs) {
            let b = s.as_bytes();
            let spec = match spec {
                Some(spec) => spec,
                // rsync's shorthand for more sources on the same host: `host:a :b`.
                None if b.len() > 1 && b[0] == b':' && b[1] != b':' => Spec {
                    path: b[1..].to_vec(),
                    ..first.clone()
                },
                None => {
                    return Err(Error::usage(
                        "mixing local and remote sources is not supported",
                    ));
                }
            };
            if spec.host != first.host || spec.user != first.user {
                return Err(Error::usage("all remote sources must be on the same host"));
            }
            remote_paths.push(OsString::from_vec(spec.path));
        }
        Ok(Some(RemoteJob {
            spec: first,
            push: false,
            remote_paths,
            local_paths: vec![OsString::new()],
        }))
    }

    /// The remote shell command line: the `-e` words, `-l user` when given, the host, and
    /// the remote program with `--server` as one word for the remote shell to parse (so
    /// `--xsync-path "sudo xsync"` works, as with rsync's --rsync-path).
    /// Local sources to a remote destination (else a pull).
    pub fn is_push(&self) -> bool {
        self.push
    }

    /// The remote shell command line for `remote_command` (None: the plain `xsync
    /// --server`, or `--xsync-path`'s program).
    pub fn command(&self, opts: &Options, remote_command: Option<&str>) -> Result<Command, Error> {
        let rsh = opts
            .rsh
            .clone()
            .or_else(|| std::env::var("XSYNC_RSH").ok())
            // A script written for rsync may set only rsync's variable.
            .or_else(|| std::env::var("RSYNC_RSH").ok())
            .unwrap_or_else(|| "ssh".to_string());
        let mut words = shlex::split(&rsh)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| {
                Error::usage(format!("cannot parse the remote shell command `{rsh}`"))
            })?;
        let prog = words.remove(0);
        let mut cmd = Command::new(&prog);
        cmd.args(&words);
        if let Some(u) = &self.spec.user {
            cmd.arg("-l").arg(u);
        }
        // rsync's -4/-6 reach ssh only (another remote shell may not take them), after the
        // user's words and -l, as rsync places them.
        let is_ssh = std::path::Path::new(&prog).file_name() == Some("ssh".as_ref());
        match opts.ip_family {
            Some(IpFamily::V4) if is_ssh => {
                cmd.arg("-4");
            }
            Some(IpFamily::V6) if is_ssh => {
                cmd.arg("-6");
            }
            _ => {}
        }
        if is_ssh {
            let words: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
            let host = std::ffi::OsStr::new(&self.spec.host);
            for o in super::sshopts::options(cmd.get_program(), &words, host) {
                cmd.arg("-o").arg(o);
            }
        }
        cmd.arg(&self.spec.host);
        match remote_command {
            Some(c) => cmd.arg(c),
            None => {
                let program = opts.xsync_path.as_deref().unwrap_or("xsync");
                cmd.arg(format!("{program} --server"))
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Ok(cmd)
    }

    pub fn run(self, opts: &Options, report: &Report<'_>, start: Instant) -> Result<(), Error> {
        // A build that cannot read its own executable just runs without installing.
        let binary = (opts.deploy && opts.xsync_path.is_none())
            .then(deploy::Binary::own)
            .and_then(Result::ok);
        let run_command = binary.as_ref().map(deploy::Binary::run_command);
        // The extra streams' channels run the program the session runs.
        let remote = run_command.clone().unwrap_or_else(|| {
            let program = opts.xsync_path.as_deref().unwrap_or("xsync");
            format!("{program} --server")
        });
        let (mut cmd, streams) =
            Streams::client(self.command(opts, run_command.as_deref())?, opts, &remote);
        let first = self.attempt(&mut cmd, opts, report, None, &streams)?;
        drop(streams);
        let (done, installed) = match (first, &binary) {
            (a, Some(bin)) if a.wants_install() => {
                let (mut cmd, streams) = Streams::client(
                    self.command(opts, Some(&bin.install_command()))?,
                    opts,
                    &remote,
                );
                (
                    self.attempt(&mut cmd, opts, report, Some(bin), &streams)?,
                    true,
                )
            }
            (a, _) => (a, false),
        };
        let Attempt {
            result,
            status,
            sent,
            received,
            ..
        } = done;
        let counts = explain(result, status, opts, &self.spec, installed)?;
        report.stats.add_counts(counts);
        let scan_ms = crate::report::Stats::get(&report.stats.flist_build_ms);
        report.note_totals(scan_ms as f64 / 1000.0, Some((sent, received)));
        // (The summary, or the log's closing line where there is none.)
        print_summary(
            opts,
            report,
            start.elapsed().as_secs_f64(),
            Some((sent, received)),
        );
        Ok(())
    }

    /// One remote-shell session: spawn `cmd`, install `install` first when given (the
    /// session then starts once the installed binary has greeted), run the transfer, wait
    /// for the shell.
    fn attempt(
        &self,
        cmd: &mut Command,
        opts: &Options,
        report: &Report<'_>,
        install: Option<&deploy::Binary>,
        streams: &Streams,
    ) -> Result<Attempt, Error> {
        let prog = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().map_err(|e| {
            Error::new(
                ExitCode::Ipc,
                format!("cannot run the remote shell `{prog}`: {e}"),
            )
        })?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        if let Some(bin) = install {
            let ready = deploy::read_platform(&mut stdout).and_then(|p| {
                deploy::fits(&p, bin).map(|()| p.zstd).map_err(|why| {
                    Error::new(
                        ExitCode::CmdNotFound,
                        format!(
                            "remote command not found: `xsync` on `{}`, and this xsync cannot be installed there: {why}; install xsync {} there or point --xsync-path at it",
                            self.spec.host,
                            env!("CARGO_PKG_VERSION")
                        ),
                    )
                })
            });
            let sent = ready.and_then(|zstd| {
                if !opts.quiet {
                    report.warn(format!(
                        "installing xsync {} on `{}` in ~/.cache/xsync ({:.1} MB): it has none that speaks this protocol (--no-deploy turns this off)",
                        env!("CARGO_PKG_VERSION"),
                        self.spec.host,
                        bin.size() as f64 / 1e6
                    ));
                }
                bin.upload(&mut stdin, zstd)
            });
            if let Err(e) = sent {
                drop(stdin);
                drop(stdout);
                let status = wait_child(&mut child, true);
                // The remote's own refusal is the message; a lost connection is explained
                // by the shell's status as for any session.
                let result = Err(e);
                return Ok(Attempt {
                    result,
                    status,
                    sent: 0,
                    received: 0,
                    mismatch: false,
                });
            }
        }
        let Conn {
            mut rd,
            mut wr,
            wire,
        } = Conn::over(stdout, stdin);
        wire.set_child(child.id());
        // After an upload nothing may follow the executable until it runs (the remote's
        // `head -c` must not see the protocol), so the server's greeting comes first.
        let greeted = match install {
            Some(_) => rd.await_greeting(),
            None => Ok(()),
        };
        let result = greeted.and_then(|()| {
            self.session(
                opts,
                report,
                (&mut rd, &mut wr, &wire),
                install.is_some(),
                streams,
            )
        });
        let mismatch = rd
            .peer_version()
            .is_some_and(|v| v != crate::PROTOCOL_VERSION);
        let more = streams.bytes();
        let (sent, received) = (wr.sent + more.0, rd.received + more.1);
        drop(wr);
        drop(rd);
        // (The master ssh waits for the channels of the extra streams.)
        streams.finish();
        let status = wait_child(&mut child, result.is_err());
        Ok(Attempt {
            result,
            status,
            sent,
            received,
            mismatch,
        })
    }

    /// Handshake, then this end's role. Returns the source totals for --stats.
    fn session<R: std::io::Read + Send, W: std::io::Write + Send>(
        &self,
        opts: &Options,
        report: &Report<'_>,
        (rd, wr, wire): (&mut Reader<R>, &mut Writer<W>, &Wire),
        greeted: bool,
        streams: &Streams,
    ) -> Result<[u64; 7], Error> {
        // No waiting for the server: its greeting is checked before the first frame read,
        // and a pushing client scans its tree while the remote shell logs in.
        crate::protocol::greet(wr)?;
        if !greeted {
            rd.expect_greeting();
        }
        let filters = FilterLine::from_filters(&opts.filters);
        wr.send(&Msg::Start {
            role: if self.push {
                Role::Receiver
            } else {
                Role::Sender
            },
            args: server_args(opts, streams)
                .into_iter()
                .map(|a| serde_bytes::ByteBuf::from(a.into_bytes()))
                .collect(),
            paths: self
                .remote_paths
                .iter()
                .map(|p| serde_bytes::ByteBuf::from(p.as_bytes().to_vec()))
                .collect(),
            filters,
            files: if self.push {
                Vec::new()
            } else {
                opts.files_from.clone().unwrap_or_default()
            },
        })?;
        wr.flush()?;
        let me = if self.push {
            Role::Sender
        } else {
            Role::Receiver
        };
        settle_stream(rd, wr, wire, opts, me)?;
        let none: sender::Relay<'_> = &|| None;
        if self.push {
            let out = sender::send(rd, wr, opts, &self.local_paths, report, none, true, streams)?;
            report.record(out.peer_code);
            out.peer_stats.add_to(&report.stats);
            Ok(out.counts)
        } else {
            // Sources that all name a directory's contents (`host:dir/`) make the root a
            // transfer directory with no named tops, whatever the remote finds (a source
            // that fails is reported there, and a differing description just means the
            // early scan is not used).
            let predicted = self
                .remote_paths
                .iter()
                .all(|p| crate::source::names_contents(p.as_bytes()))
                .then(|| crate::protocol::SourceInfo {
                    root_is_transfer_dir: true,
                    ..Default::default()
                });
            let out = receiver::receive(
                rd,
                wr,
                opts,
                &self.local_paths[0],
                report,
                none,
                Some(receiver::Pull {
                    sources: &self.remote_paths,
                    predicted,
                }),
                streams.enabled().then_some(streams as _),
            )?;
            report.record(out.peer_code);
            Ok(out.counts)
        }
    }
}

/// The option words for the server; `--streams=1` when this end cannot open more streams,
/// so a receiving server does not ask for them.
fn server_args(opts: &Options, streams: &Streams) -> Vec<String> {
    if streams.enabled() {
        return opts.server_args();
    }
    let mut one = opts.clone();
    one.streams = Some(1);
    one.server_args()
}

/// How one remote-shell session ended.
struct Attempt {
    result: Result<[u64; 7], Error>,
    /// The remote shell's exit status.
    status: Option<i32>,
    sent: u64,
    received: u64,
    /// The remote xsync greeted with another protocol version.
    mismatch: bool,
}

impl Attempt {
    /// The remote has no xsync that can serve this client: the shell found none (127),
    /// or the one it ran speaks another protocol.
    fn wants_install(&self) -> bool {
        match &self.result {
            Ok(_) => false,
            Err(e) => {
                self.mismatch
                    || (self.status == Some(127)
                        && matches!(e.code, ExitCode::StreamIo | ExitCode::Protocol))
            }
        }
    }
}

/// Waits for the remote shell. After a failed session the stream is gone and the shell
/// normally exits at once: it gets a moment to say why before it is ended.
fn wait_child(child: &mut Child, failed: bool) -> Option<i32> {
    let status = if failed {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        }
    } else {
        child.wait().ok()
    };
    status.and_then(|s| s.code())
}

/// Explains a failed session by the remote shell's status: 255 is ssh's own failure
/// (passed on, as rsync does); 127/126 mean the remote program is missing or not
/// executable (rsync's 127/126; rsync itself sometimes reports 12 there, depending on
/// whether it notices the closed stream or the shell's status first — xsync always waits
/// for the status, so scripts get the specific code). `installing`: the session was the
/// install's, so a 126 is the freshly installed binary that could not be run.
fn explain(
    result: Result<[u64; 7], Error>,
    code: Option<i32>,
    opts: &Options,
    spec: &Spec,
    installing: bool,
) -> Result<[u64; 7], Error> {
    let e = match result {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    if e.code != ExitCode::StreamIo && e.code != ExitCode::Protocol {
        return Err(e);
    }
    let program = opts.xsync_path.as_deref().unwrap_or("xsync");
    Err(match code {
        Some(255) => Error::new(
            ExitCode::RemoteShell,
            format!(
                "{} (the remote shell exited with status 255: could not connect or log in to `{}`)",
                e.message(),
                spec.host
            ),
        ),
        Some(127) => Error::new(
            ExitCode::CmdNotFound,
            format!(
                "{}: remote command not found: `{program}` on `{}` (install xsync there or point --xsync-path at it)",
                e.message(),
                spec.host
            ),
        ),
        Some(126) if installing => Error::new(
            ExitCode::CmdRun,
            format!(
                "{}: the xsync installed in ~/.cache/xsync on `{}` could not be run (is the home directory mounted noexec?)",
                e.message(),
                spec.host
            ),
        ),
        Some(126) => Error::new(
            ExitCode::CmdRun,
            format!(
                "{}: remote command `{program}` on `{}` could not be run",
                e.message(),
                spec.host
            ),
        ),
        _ => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_follow_rsyncs_colon_rule() {
        let s = parse_spec(b"user@host:dir/x").unwrap().unwrap();
        assert_eq!(
            (s.user.as_deref(), s.host.as_str(), &s.path[..]),
            (Some("user"), "host", &b"dir/x"[..])
        );
        assert_eq!(parse_spec(b"host:").unwrap().unwrap().path, b".");
        assert_eq!(parse_spec(b"[::1]:/tmp").unwrap().unwrap().host, "::1");
        assert!(parse_spec(b"./a:b").unwrap().is_none());
        assert!(parse_spec(b"/abs/a:b").unwrap().is_none());
        assert!(parse_spec(b"plain").unwrap().is_none());
        assert!(parse_spec(b"host::module").is_err());
    }

    #[test]
    fn ip_family_reaches_ssh_after_the_login_as_rsync_passes_it() {
        let words = |args: &[&str]| {
            let opts = match crate::cli::parse([&["xsync"], args, &["s", "u@h:d"]].concat()) {
                Ok(crate::cli::Parsed::Run(o)) => o,
                _ => panic!("parses"),
            };
            let job = RemoteJob::from_options(&opts).expect("ok").expect("remote");
            let cmd = job.command(&opts, None).expect("command");
            let mut w = vec![cmd.get_program().to_string_lossy().into_owned()];
            w.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
            w.pop(); // the remote program
            // What `ssh -G` makes xsync add (endpoint::sshopts: the cipher order, the
            // direct connection) has tests of its own.
            while let Some(i) = w.iter().position(|a| {
                ["Ciphers=", "ProxyUseFdpass=", "ProxyCommand="]
                    .iter()
                    .any(|o| a.starts_with(o))
            }) {
                w.drain(i - 1..=i);
            }
            w
        };
        assert_eq!(
            words(&["-4", "-e", "/usr/bin/ssh -p 22"]),
            ["/usr/bin/ssh", "-p", "22", "-l", "u", "-4", "h"]
        );
        assert_eq!(words(&["-6", "-e", "ssh"]), ["ssh", "-l", "u", "-6", "h"]);
        assert_eq!(
            words(&["-4", "-6", "-e", "ssh"]),
            ["ssh", "-l", "u", "-6", "h"]
        );
        // Another remote shell is not told.
        assert_eq!(words(&["-4", "-e", "rsh"]), ["rsh", "-l", "u", "h"]);
    }

    #[test]
    fn a_source_after_a_remote_one_may_leave_out_the_host() {
        let opts = match crate::cli::parse(["xsync", "-a", "u@h:a", ":b/", "dst"]) {
            Ok(crate::cli::Parsed::Run(o)) => o,
            _ => panic!("parses"),
        };
        let job = RemoteJob::from_options(&opts).expect("ok").expect("remote");
        assert!(!job.push);
        assert_eq!(
            job.remote_paths,
            [OsString::from("a"), OsString::from("b/")]
        );
        assert_eq!(
            (job.spec.user.as_deref(), job.spec.host.as_str()),
            (Some("u"), "h")
        );
    }
}
