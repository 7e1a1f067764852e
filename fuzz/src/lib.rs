//! What every fuzz target shares: one runtime and one seeded store per process, kept across
//! inputs, so that inputs also meet what earlier inputs wrote.

use std::sync::OnceLock;

use etcdshim::server::fuzz_input::{Target, feed, seeded_store};
use etcdshim::store::Store;

struct Harness {
    runtime: tokio::runtime::Runtime,
    store: Store,
    _dir: std::path::PathBuf,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        remove_stores_of_gone_processes();
        let dir =
            std::path::PathBuf::from(format!("/dev/shm/etcdshim-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("store folder");
        let store = runtime
            .block_on(seeded_store(&dir.join("state.db")))
            .expect("seeded store");
        Harness {
            runtime,
            store,
            _dir: dir,
        }
    })
}

/// libFuzzer ends its process without running destructors: the stores of earlier runs whose
/// process is gone are removed here instead.
fn remove_stores_of_gone_processes() {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("etcdshim-fuzz-")
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Feeds one input to `target`.
pub fn run(target: Target, bytes: &[u8]) {
    let harness = harness();
    harness
        .runtime
        .block_on(feed(&harness.store, target, bytes));
}
