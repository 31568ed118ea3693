//! `xsync`: parse the command line, run the transfer, exit with rsync's code.

fn main() {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut err = std::io::stderr();
    let code = xsync::run_with(std::env::args_os(), &mut out, &mut err);
    std::process::exit(code.code());
}
