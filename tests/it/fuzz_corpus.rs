//! The fuzz targets' corpus (fuzz/corpus/<target>/, committed) replayed through the same
//! request paths the targets feed (etcdshim::server::fuzz_input), so every input that once
//! found new code keeps passing without cargo-fuzz or a nightly compiler.

use std::path::Path;

use etcdshim::server::fuzz_input::{Target, feed, seeded_store};

/// Inputs replayed per target: the corpus sorted by name, the first this many.
const PER_TARGET: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fuzz_corpus_replays_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let store = seeded_store(&dir.path().join("state.db"))
        .await
        .expect("seeded store");
    for target in Target::ALL {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target.name());
        let mut inputs: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|err| panic!("{}: {err}", folder.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{} holds inputs", folder.display());
        for input in inputs.iter().take(PER_TARGET) {
            let bytes = std::fs::read(input).expect("read input");
            feed(&store, target, &bytes).await;
        }
    }
    // The store still serves after everything the corpus sent.
    let head = store.head();
    assert!(head > 1, "the store took writes (head {head})");
}
