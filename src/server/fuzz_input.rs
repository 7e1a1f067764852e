//! Untrusted bytes through the request paths, for the fuzz targets in `fuzz/` and the test
//! that replays their corpus: each [`Target`] decodes the bytes as its request (as tonic does
//! with a request body) and, when they decode, sends the request through the same service code
//! a client's request takes (validation, the store, the sequencer, the database). Errors are
//! answers; what must never happen is a panic, a hang, or a response that does not encode.

use prost::Message;
use tonic::Request;

use crate::proto::kv_server::Kv as _;
use crate::proto::lease_server::Lease as _;
use crate::proto::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, TxnRequest, WatchRequest,
};
use crate::server::kv::KvService;
use crate::server::lease::LeaseService;
use crate::store::Store;
use crate::store::watcher::WatchSession;

/// One request path that takes client bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Range,
    Put,
    DeleteRange,
    Txn,
    /// A watch stream's requests (create, cancel, progress), then its catch-up.
    Watch,
    /// The first byte picks grant, revoke, time-to-live, keep-alive or the list of leases.
    Lease,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::Range,
        Target::Put,
        Target::DeleteRange,
        Target::Txn,
        Target::Watch,
        Target::Lease,
    ];

    /// The fuzz target's name (`fuzz/fuzz_targets/<name>.rs`, `fuzz/corpus/<name>/`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Range => "range",
            Target::Put => "put",
            Target::DeleteRange => "delete_range",
            Target::Txn => "txn",
            Target::Watch => "watch",
            Target::Lease => "lease",
        }
    }
}

/// A store in a SQLite file at `path` (a tmpfs such as /dev/shm keeps it in memory) with some
/// history for the inputs to meet: keys written, overwritten and deleted, a lease with keys,
/// and a compaction.
pub async fn seeded_store(path: &std::path::Path) -> crate::Result<Store> {
    let endpoint = format!("sqlite://{}", path.display());
    let store = Store::open(&endpoint, &crate::store::StoreOptions::default()).await?;
    let lease = store.lease_grant(7, 3600).await?;
    for i in 0..20u8 {
        let put = |value: &[u8]| PutRequest {
            key: vec![b'k', b'0' + i % 10, i].into(),
            value: value.to_vec().into(),
            lease: if i % 4 == 0 { lease.id } else { 0 },
            ..PutRequest::default()
        };
        store.put(put(b"first")).await?;
        store.put(put(b"second")).await?;
        if i % 3 == 0 {
            store
                .delete_range(DeleteRangeRequest {
                    key: vec![b'k', b'0' + i % 10, i].into(),
                    ..DeleteRangeRequest::default()
                })
                .await?;
        }
    }
    store
        .compact(&crate::proto::CompactionRequest {
            revision: 10,
            physical: false,
        })
        .await?;
    Ok(store)
}

/// The most watch requests one input may send on its stream.
const MAX_WATCH_REQUESTS: usize = 16;

/// Feeds `bytes` to `target` on `store`.
pub async fn feed(store: &Store, target: Target, bytes: &[u8]) {
    let kv = KvService {
        store: store.clone(),
    };
    match target {
        Target::Range => {
            if let Ok(req) = RangeRequest::decode(bytes) {
                encodes(kv.range(Request::new(req)).await);
            }
        }
        Target::Put => {
            if let Ok(req) = PutRequest::decode(bytes) {
                encodes(kv.put(Request::new(req)).await);
            }
        }
        Target::DeleteRange => {
            if let Ok(req) = DeleteRangeRequest::decode(bytes) {
                encodes(kv.delete_range(Request::new(req)).await);
            }
        }
        Target::Txn => {
            if let Ok(req) = TxnRequest::decode(bytes) {
                encodes(kv.txn(Request::new(req)).await);
            }
        }
        Target::Watch => watch(store, bytes).await,
        Target::Lease => lease(store, bytes).await,
    }
}

/// A stream of length-delimited watch requests, answered as the watch service answers them.
async fn watch(store: &Store, mut bytes: &[u8]) {
    let mut session = WatchSession::new(store.clone(), MAX_WATCH_REQUESTS);
    for _ in 0..MAX_WATCH_REQUESTS {
        let Ok(request) = WatchRequest::decode_length_delimited(&mut bytes) else {
            break;
        };
        for response in super::watch::answer(&mut session, request) {
            encode(&response);
        }
    }
    // Catch up as the stream would, a bounded number of steps.
    for _ in 0..8 {
        match session.pump().await {
            Ok((responses, behind)) => {
                for response in responses {
                    encode(&response);
                }
                if !behind {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

async fn lease(store: &Store, bytes: &[u8]) {
    let Some((&which, body)) = bytes.split_first() else {
        return;
    };
    let (_closing, closed) = tokio::sync::watch::channel(false);
    let service = LeaseService {
        store: store.clone(),
        closing: closed,
    };
    match which % 5 {
        0 => {
            if let Ok(req) = LeaseGrantRequest::decode(body) {
                encodes(service.lease_grant(Request::new(req)).await);
            }
        }
        1 => {
            if let Ok(req) = LeaseRevokeRequest::decode(body) {
                encodes(service.lease_revoke(Request::new(req)).await);
            }
        }
        2 => {
            if let Ok(req) = LeaseTimeToLiveRequest::decode(body) {
                encodes(service.lease_time_to_live(Request::new(req)).await);
            }
        }
        3 => {
            // The keep-alive stream's step for one request.
            if let Ok(req) = LeaseKeepAliveRequest::decode(body) {
                let _ = store.lease_keep_alive(req.id).await;
            }
        }
        _ => {
            if let Ok(req) = LeaseLeasesRequest::decode(body) {
                encodes(service.lease_leases(Request::new(req)).await);
            }
        }
    }
}

/// A successful answer must encode as the server would send it.
fn encodes<M: Message, E>(answer: Result<tonic::Response<M>, E>) {
    if let Ok(response) = answer {
        encode(response.get_ref());
    }
}

fn encode(message: &impl Message) {
    let _ = message.encode_to_vec();
}
