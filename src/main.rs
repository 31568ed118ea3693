//! `xsync`: parse the command line, run the transfer, exit with rsync's code.

use std::io::Write;

fn main() {
    xsync::bound_memory();
    xsync::install_signal_handlers();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut err = std::io::stderr();
    let code = xsync::run_with(std::env::args_os(), &mut out, &mut err);
    // process::exit skips destructors, so the buffered listing is flushed here.
    let _ = out.flush();
    // (A timeout or a signal ending the run exits with its own code.)
    xsync::exit::wait_if_ending();
    xsync::release_late();
    std::process::exit(code.code());
}
