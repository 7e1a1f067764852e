//! The Lease service: grant, revoke, keep-alive (a stream), time-to-live and listing.

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::lease_server::Lease;
use crate::proto::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::store::Store;

pub struct LeaseService {
    pub store: Store,
    /// Turns true when the server shuts down: keep-alive streams end.
    pub closing: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        let lease = self.store.lease_grant(req.id, req.ttl).await?;
        Ok(Response::new(LeaseGrantResponse {
            header: Some(self.store.header(self.store.head())),
            id: lease.id,
            ttl: lease.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.store.lease_revoke(req.get_ref().id).await?;
        Ok(Response::new(LeaseRevokeResponse {
            header: Some(self.store.header(self.store.head())),
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (outbound, responses) = mpsc::channel(16);
        let store = self.store.clone();
        let mut closing = self.closing.clone();
        tokio::spawn(async move {
            // Ends when the client closes the stream, breaks it, or stops reading answers, or
            // when the server shuts down.
            loop {
                let request = tokio::select! {
                    () = super::closed(&mut closing) => return,
                    request = inbound.message() => match request {
                        Ok(Some(request)) => request,
                        Ok(None) | Err(_) => return,
                    },
                };
                let answer = match store.lease_keep_alive(request.id).await {
                    // etcd answers a keep-alive for an unknown lease with TTL 0.
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(store.header(store.head())),
                        id: request.id,
                        ttl: ttl.unwrap_or(0),
                    }),
                    Err(err) => Err(Status::from(err)),
                };
                if outbound.send(answer).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(responses)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let header = Some(self.store.header(self.store.head()));
        let Some((lease, keys)) = self.store.lease(req.id, req.keys).await? else {
            // etcd answers TTL -1 for a lease it does not know.
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        let remaining_ms = lease.expires_ms - crate::store::now_ms();
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: lease.id,
            // Whole seconds left, rounded down as etcd does.
            ttl: remaining_ms.max(0) / 1000,
            granted_ttl: lease.ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self.store.leases().await?;
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.store.header(self.store.head())),
            leases: leases.into_iter().map(|id| LeaseStatus { id }).collect(),
        }))
    }
}
