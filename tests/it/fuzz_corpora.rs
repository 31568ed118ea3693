//! Replays every committed fuzz input (fuzz/corpus/<target>/, fuzz/artifacts/<target>/)
//! through the same bodies libFuzzer runs (`xsync::fuzzing`), on stable.

#[test]
fn fuzz_corpora_replay_without_panics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, body) in xsync::fuzzing::TARGETS {
        let mut n = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(rd) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for f in rd {
                let data = std::fs::read(f.unwrap().path()).unwrap();
                body(&data);
                n += 1;
            }
        }
        assert!(n > 0, "no corpus for fuzz target {name}");
    }
}
