//! The etcd v3 calls the workloads make, in the shapes kube-apiserver uses (create and update
//! txns, paged lists pinned to one revision), over the generated gRPC client. The only bench
//! module that names the gRPC library: the others take its connection and stream types from here.

use std::time::{Duration, Instant};

use bytes::Bytes;
pub use tonic::transport::Channel;
pub use tonic::{Status, Streaming};

use super::BenchArgs;
use crate::proto::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::kv_client::KvClient;
use crate::proto::request_op::Request;
use crate::proto::response_op::Response;
use crate::proto::{Compare, KeyValue, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// Responses up to this size are accepted (a list page or a watch batch may be large).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// `--conns` channels, spread over the endpoints.
pub async fn connect(args: &BenchArgs) -> Result<Vec<Channel>, String> {
    if args.endpoints.is_empty() {
        return Err("give at least one endpoint".into());
    }
    let mut channels = Vec::new();
    for i in 0..args.conns.max(1) {
        channels.push(connect_to(&args.endpoints[i % args.endpoints.len()]).await?);
    }
    Ok(channels)
}

/// A channel to one endpoint (http://HOST:PORT).
pub async fn connect_to(endpoint: &str) -> Result<Channel, String> {
    Channel::from_shared(endpoint.to_string())
        .map_err(|e| format!("{endpoint}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("connecting to {endpoint}: {e}"))
}

pub fn lease(channel: Channel) -> crate::proto::lease_client::LeaseClient<Channel> {
    crate::proto::lease_client::LeaseClient::new(channel)
}

pub fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The end of the range of every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    // Every byte was 0xff: etcd's "to the end of the keyspace".
    Bytes::from_static(b"\0")
}

pub async fn put(channel: Channel, key: Bytes, value: Bytes) -> Result<(), String> {
    kv(channel)
        .put(PutRequest {
            key,
            value,
            ..Default::default()
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// kube-apiserver's create: put `key` if it does not exist. Returns the new mod_revision.
pub async fn create(channel: Channel, key: Bytes, value: Bytes) -> Result<i64, String> {
    put_if_mod_revision(channel, key, value, 0)
        .await?
        .map_err(|_| "the key existed".to_string())
}

/// kube-apiserver's update (GuaranteedUpdate): put `key` if its mod_revision is still
/// `expected`, else read it back. Returns Ok(new mod_revision) or Err(the current pair).
pub async fn update(
    channel: Channel,
    key: Bytes,
    value: Bytes,
    expected: i64,
) -> Result<Result<i64, Option<KeyValue>>, String> {
    put_if_mod_revision(channel, key, value, expected).await
}

async fn put_if_mod_revision(
    channel: Channel,
    key: Bytes,
    value: Bytes,
    expected: i64,
) -> Result<Result<i64, Option<KeyValue>>, String> {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::ModRevision(expected)),
            range_end: Bytes::new(),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.clone(),
                value,
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key,
                ..Default::default()
            })),
        }],
    };
    let resp = kv(channel)
        .txn(txn)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    if resp.succeeded {
        return Ok(Ok(resp.header.map_or(0, |h| h.revision)));
    }
    let current = resp.responses.into_iter().find_map(|op| match op.response {
        Some(Response::ResponseRange(range)) => range.kvs.into_iter().next(),
        _ => None,
    });
    Ok(Err(current))
}

/// What one full paged list saw.
pub struct Listed {
    /// The revision every page was read at.
    pub revision: i64,
    pub count: usize,
    /// How long each page took, in order.
    pub pages: Vec<Duration>,
}

/// Why a paged list stopped before its end.
pub struct ListFailure {
    /// The list's revision was compacted while it ran: a client starts the list again (client-go's
    /// reflector does, on kube-apiserver's 410 Gone for an expired continue token).
    pub compacted: bool,
    pub message: String,
    /// How long each page answered before the failure took.
    pub pages: Vec<Duration>,
}

/// One full paged list of `prefix` as kube-apiserver lists: the first page at the head, the
/// rest pinned to its revision, each page starting after the last key of the one before.
/// Each page's pairs go to `on_page`.
pub async fn list(
    channel: Channel,
    prefix: &[u8],
    page_size: i64,
    mut on_page: impl FnMut(Vec<KeyValue>),
) -> Result<Listed, ListFailure> {
    let end = prefix_end(prefix);
    let mut start = prefix.to_vec();
    let mut client = kv(channel);
    let mut listed = Listed {
        revision: 0,
        count: 0,
        pages: Vec::new(),
    };
    loop {
        let began = Instant::now();
        let page = client
            .range(RangeRequest {
                key: Bytes::from(start.clone()),
                range_end: end.clone(),
                limit: page_size,
                revision: listed.revision,
                ..Default::default()
            })
            .await;
        let page = match page {
            Ok(page) => page.into_inner(),
            Err(status) => {
                return Err(ListFailure {
                    compacted: is_compacted(&status),
                    message: status.to_string(),
                    pages: listed.pages,
                });
            }
        };
        listed.pages.push(began.elapsed());
        if listed.revision == 0 {
            listed.revision = page.header.map_or(0, |h| h.revision);
        }
        let more = page.more;
        if let Some(last) = page.kvs.last() {
            start = last.key.to_vec();
            start.push(0);
        }
        let got = page.kvs.len();
        listed.count += got;
        on_page(page.kvs);
        if !more || got == 0 {
            return Ok(listed);
        }
    }
}

/// Whether `status` is etcd's answer to a read at a compacted revision.
fn is_compacted(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::OutOfRange
        && status.message() == crate::error::Error::Compacted.to_string()
}

/// The number of keys under `prefix` at the head: by a count-only range, or with `limit` > 0
/// from a range of that many keys (which carries the exact count of the whole range, as the
/// first page of a list does).
pub async fn count(channel: Channel, prefix: &[u8], limit: i64) -> Result<i64, String> {
    let resp = kv(channel)
        .range(RangeRequest {
            key: Bytes::copy_from_slice(prefix),
            range_end: prefix_end(prefix),
            count_only: limit <= 0,
            limit,
            keys_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(resp.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compacted_revision_is_told_from_other_range_errors() {
        let compacted = tonic::Status::out_of_range(crate::error::Error::Compacted.to_string());
        let future = tonic::Status::out_of_range(crate::error::Error::FutureRevision.to_string());
        let unavailable = tonic::Status::unavailable("etcdserver: request timed out");
        assert!(is_compacted(&compacted));
        assert!(!is_compacted(&future));
        assert!(!is_compacted(&unavailable));
    }
}
