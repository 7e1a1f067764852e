//! Request validation, as etcd's gRPC layer does it before a request reaches the store:
//! handlers call `req.validate()?` and get etcd's exact errors.

use std::collections::HashSet;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::proto::request_op::Request;
use crate::proto::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024 / 2;
/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

pub trait Validate {
    fn validate(&self) -> Result<()>;
}

/// Requests that etcd replicates through raft carry its size limit.
fn check_size(req: &impl prost::Message) -> Result<()> {
    if req.encoded_len() > MAX_REQUEST_BYTES {
        return Err(Error::RequestTooLarge);
    }
    Ok(())
}

impl Validate for RangeRequest {
    fn validate(&self) -> Result<()> {
        if self.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        Ok(())
    }
}

impl Validate for PutRequest {
    fn validate(&self) -> Result<()> {
        check_size(self)?;
        check_put(self)
    }
}

fn check_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

impl Validate for DeleteRangeRequest {
    fn validate(&self) -> Result<()> {
        check_size(self)?;
        if self.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        Ok(())
    }
}

impl Validate for TxnRequest {
    fn validate(&self) -> Result<()> {
        check_size(self)?;
        check_txn(self, MAX_TXN_OPS)?;
        check_intervals(&self.success)?;
        check_intervals(&self.failure)?;
        Ok(())
    }
}

/// Nested txns share the op budget of their parent, as in etcd.
fn check_txn(req: &TxnRequest, max_ops: usize) -> Result<()> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if ops > max_ops {
        return Err(Error::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<()> {
    match &op.request {
        Some(Request::RequestRange(r)) => r.validate(),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) if r.key.is_empty() => Err(Error::EmptyKey),
        Some(Request::RequestDeleteRange(_)) => Ok(()),
        Some(Request::RequestTxn(r)) => check_txn(r, max_ops),
        // etcd answers an empty op this way.
        None => Err(Error::KeyNotFound),
    }
}

/// A deleted key or range, as etcd's interval check sees it: a non-empty `range_end` is taken
/// literally (so `"\0"` covers nothing), an empty one means the key alone.
struct Deletion {
    key: Bytes,
    end: Option<Bytes>,
}

impl Deletion {
    fn covers(&self, key: &[u8]) -> bool {
        match &self.end {
            None => self.key.as_ref() == key,
            Some(end) => self.key.as_ref() <= key && key < end.as_ref(),
        }
    }
}

/// etcd's rule that one txn branch may not write a key twice: no two puts of a key, and no put
/// of a deleted key, across nested txns (the two branches of a nested txn may both put a key,
/// since only one of them runs). Returns the puts and deletions of `ops`.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Bytes>, Vec<Deletion>)> {
    let mut deletions: Vec<Deletion> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deletion {
                key: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let mut puts = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, deletions_then) = check_intervals(&nested.success)?;
        let (puts_else, deletions_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deletions.iter().any(|d| d.covers(key)) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key))
                || deletions.iter().any(|d| d.covers(&key))
            {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key);
        }
        deletions.extend(deletions_then);
        deletions.extend(deletions_else);
    }
    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if !puts.insert(put.key.clone()) || deletions.iter().any(|d| d.covers(&put.key)) {
            return Err(Error::DuplicateKey);
        }
    }
    Ok((puts, deletions))
}
