//! The Watch service: one task per client stream, which owns that stream's watches.
//!
//! The task reads requests, pumps watchers forward when the hub moves, and sends periodic
//! progress notifications; answers go out through a bounded channel, so a client that reads
//! slowly slows only its own stream. A client that goes away ends the task and its watches.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::watch_request::RequestUnion;
use crate::proto::watch_server::Watch;
use crate::proto::{WatchRequest, WatchResponse};
use crate::store::Store;
use crate::store::watcher::WatchSession;

/// Responses buffered per stream before the stream's task waits for the client.
const OUTBOUND_BUFFER: usize = 64;

pub struct WatchService {
    pub store: Store,
    /// How often watchers that asked for progress notifications get one.
    pub progress_interval: Duration,
    /// The most watches one stream may hold.
    pub max_watches: usize,
    /// Turns true when the server shuts down: every stream ends.
    pub closing: watch::Receiver<bool>,
}

type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (outbound, responses) = mpsc::channel(OUTBOUND_BUFFER);
        tokio::spawn(serve_stream(
            WatchSession::new(self.store.clone(), self.max_watches),
            req.into_inner(),
            outbound,
            self.progress_interval,
            self.closing.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

/// Sends `responses` in order; false when the client is gone.
async fn send_all(outbound: &Outbound, responses: Vec<WatchResponse>) -> bool {
    for response in responses {
        if outbound.send(Ok(response)).await.is_err() {
            return false;
        }
    }
    true
}

async fn serve_stream(
    mut session: WatchSession,
    mut inbound: Streaming<WatchRequest>,
    outbound: Outbound,
    progress_interval: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let mut head = session.subscribe_head();
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + progress_interval,
        progress_interval,
    );
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = false;
    loop {
        if pending {
            head.borrow_and_update();
            match session.pump().await {
                Ok((responses, behind)) => {
                    if !send_all(&outbound, responses).await {
                        return;
                    }
                    pending = behind;
                }
                Err(err) => {
                    let _ = outbound.send(Err(err.into())).await;
                    return;
                }
            }
        }
        tokio::select! {
            biased;
            () = super::closed(&mut closing) => return,
            request = inbound.message() => {
                let request = match request {
                    Ok(Some(request)) => request,
                    // The client closed the stream or it broke: end its watches.
                    Ok(None) | Err(_) => return,
                };
                let responses = answer(&mut session, request);
                if !send_all(&outbound, responses).await {
                    return;
                }
                pending = true;
            }
            changed = head.changed(), if !pending => {
                if changed.is_err() {
                    return;
                }
                pending = true;
            }
            _ = progress.tick() => {
                if !send_all(&outbound, session.progress_notifications()).await {
                    return;
                }
            }
            () = std::future::ready(()), if pending => {}
        }
    }
}

/// What one request of a stream changes in its session, and the immediate answers.
pub(super) fn answer(session: &mut WatchSession, request: WatchRequest) -> Vec<WatchResponse> {
    match request.request_union {
        Some(RequestUnion::CreateRequest(create)) => session.create(create),
        Some(RequestUnion::CancelRequest(cancel)) => {
            session.cancel(cancel.watch_id).into_iter().collect()
        }
        Some(RequestUnion::ProgressRequest(_)) => {
            session.request_progress();
            Vec::new()
        }
        None => Vec::new(),
    }
}
