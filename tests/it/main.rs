//! The single integration-test binary: black-box tests of the `xsync` executable, mostly
//! differential against rsync (see `util`).

/// The name of the test function it is written in, so that a test's notes (`SKIPPED: …`,
/// `NOTE: …`) name it without a copy of its name that can drift — in the spirit of
/// ripgrep's `rgtest!`, which names a test's scratch directory after the test.
macro_rules! this_test {
    () => {{
        fn here() {}
        let path = std::any::type_name_of_val(&here);
        path.strip_suffix("::here")
            .unwrap_or(path)
            .rsplit("::")
            .find(|s| !s.starts_with('{'))
            .unwrap_or(path)
    }};
}

mod peer;
mod util;

mod acls;
mod altdest;
mod append;
mod backup;
mod bench_smoke;
mod compress;
mod delta;
mod deploy;
mod errors;
mod filters;
mod fuzz_corpora;
mod generated;
mod hostile;
mod json;
mod layout;
mod listing;
mod local;
mod locale;
mod merge;
mod meta;
mod names;
mod nss;
mod options;
mod options2;
mod outformat;
mod progress;
mod races;
mod relative;
mod remote;
mod robust;
mod source;
mod sshd;
mod stats;
mod streams;
mod streams_hostile;
mod temps;
mod transport;
mod xattrs;
