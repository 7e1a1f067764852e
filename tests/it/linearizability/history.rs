//! Recording a history: concurrent clients spread over several servers send random Range, Put,
//! DeleteRange and compare-and-swap Txn requests on a few keys, and note when each was sent and
//! when (and what) it answered.
//!
//! A read that failed is left out (it changed nothing); a write that failed or timed out is
//! kept with no answer, since the client cannot know whether it was applied.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use super::checker::{Input, Operation, Output};

/// Few keys, so that operations collide.
const KEYS: usize = 4;
/// A request not answered within this is counted as unanswered.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where every key of a history lives.
pub const PREFIX: &str = "lin/";

/// What the clients saw, in call order, and how many of their requests failed or timed out
/// (reads among them, which the history leaves out).
pub struct Recorded {
    pub history: Vec<Operation>,
    pub failed: usize,
}

/// Runs `clients` clients (client `i` on `endpoints[i % len]`) for `duration`.
pub async fn record(
    endpoints: &[String],
    clients: usize,
    duration: Duration,
    seed: u64,
) -> Recorded {
    let start = Instant::now();
    let history = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let endpoint = endpoints[client % endpoints.len()].clone();
        let (history, failed) = (history.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(client as u64));
            let options = ConnectOptions::new()
                .with_timeout(TIMEOUT)
                .with_connect_timeout(Duration::from_secs(1));
            let mut connection = None;
            let mut sent = 0usize;
            let mut seen = HashMap::new();
            while start.elapsed() < duration {
                if connection.is_none() {
                    connection = etcd_client::Client::connect([&endpoint], Some(options.clone()))
                        .await
                        .ok();
                }
                let Some(etcd) = connection.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let input = random_input(&mut rng, client, sent, &seen);
                sent += 1;
                let call = nanos(start);
                let answer = tokio::time::timeout(TIMEOUT, send(etcd, &input)).await;
                let answer = match answer {
                    Ok(Ok(output)) => {
                        remember(&mut seen, &input, &output);
                        Some((nanos(start), output))
                    }
                    Ok(Err(_)) | Err(_) => None,
                };
                if answer.is_none() {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // One unanswered request per client and fault, not one every few
                    // milliseconds while it lasts (each multiplies the checker's search): wait
                    // on a fresh connection until the server answers a read outside the model.
                    connection = None;
                    while start.elapsed() < duration {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if let Ok(mut probe) =
                            etcd_client::Client::connect([&endpoint], Some(options.clone())).await
                            && probe.get("lin-probe", None).await.is_ok()
                        {
                            connection = Some(probe);
                            break;
                        }
                    }
                    if matches!(input, Input::Get { .. }) {
                        continue;
                    }
                }
                history.lock().await.push(Operation {
                    call,
                    answer,
                    input,
                });
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    let mut history = std::mem::take(&mut *history.lock().await);
    history.sort_by_key(|operation| operation.call);
    Recorded {
        history,
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
    }
}

fn nanos(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A random request; a compare-and-swap expects the value this client last saw for the key,
/// as kube-apiserver's GuaranteedUpdate does.
fn random_input(
    rng: &mut StdRng,
    client: usize,
    sent: usize,
    seen: &HashMap<String, Option<String>>,
) -> Input {
    let key = format!("{PREFIX}{}", rng.random_range(0..KEYS));
    let value = format!("c{client}-{sent}");
    match rng.random_range(0..100) {
        0..40 => Input::Get { key },
        40..65 => Input::Put { key, value },
        65..75 => Input::Delete { key },
        _ => Input::CompareAndSwap {
            expected: seen.get(&key).cloned().flatten(),
            key,
            value,
        },
    }
}

/// Notes what an answered request tells the client about its key.
fn remember(seen: &mut HashMap<String, Option<String>>, input: &Input, output: &Output) {
    match (input, output) {
        (Input::Get { key }, Output::Get { value, .. }) => {
            seen.insert(key.clone(), value.clone());
        }
        (Input::Put { key, value }, _)
        | (
            Input::CompareAndSwap { key, value, .. },
            Output::CompareAndSwap {
                succeeded: true, ..
            },
        ) => {
            seen.insert(key.clone(), Some(value.clone()));
        }
        (Input::Delete { key }, _) => {
            seen.insert(key.clone(), None);
        }
        _ => {}
    }
}

async fn send(etcd: &mut etcd_client::Client, input: &Input) -> Result<Output, etcd_client::Error> {
    let revision = |header: Option<&etcd_client::ResponseHeader>| {
        header
            .map(|h| h.revision())
            .expect("every answer has a header")
    };
    Ok(match input {
        Input::Get { key } => {
            let response = etcd.get(key.as_str(), None).await?;
            let kv = response.kvs().first();
            Output::Get {
                value: kv.map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                mod_revision: kv.map_or(0, |kv| kv.mod_revision()),
                revision: revision(response.header()),
            }
        }
        Input::Put { key, value } => {
            let response = etcd.put(key.as_str(), value.as_str(), None).await?;
            Output::Put {
                revision: revision(response.header()),
            }
        }
        Input::Delete { key } => {
            let response = etcd.delete(key.as_str(), None).await?;
            Output::Delete {
                deleted: response.deleted(),
                revision: revision(response.header()),
            }
        }
        Input::CompareAndSwap {
            key,
            expected,
            value,
        } => {
            let compare = match expected {
                Some(expected) => Compare::value(key.as_str(), CompareOp::Equal, expected.as_str()),
                None => Compare::version(key.as_str(), CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key.as_str(), value.as_str(), None)])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let response = etcd.txn(txn).await?;
            Output::CompareAndSwap {
                succeeded: response.succeeded(),
                revision: revision(response.header()),
            }
        }
    })
}
