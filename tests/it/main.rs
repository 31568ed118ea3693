//! The single integration-test binary: black-box tests of the `xsync` executable, mostly
//! differential against rsync (see `util`).

mod peer;
mod util;

mod altdest;
mod bench_smoke;
mod compress;
mod delta;
mod errors;
mod filters;
mod fuzz_corpora;
mod hostile;
mod layout;
mod local;
mod progress;
mod races;
mod relative;
mod remote;
mod robust;
mod sshd;
mod temps;
mod transport;
mod xattrs;
