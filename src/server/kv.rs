//! The KV service: validate, hand to the store, answer.

use tonic::{Request, Response, Status};

use crate::proto::kv_server::Kv;
use crate::proto::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::server::validate::Validate as _;
use crate::store::Store;

pub struct KvService {
    pub store: Store,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        req.validate()?;
        Ok(Response::new(self.store.range(&req).await?))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = req.into_inner();
        req.validate()?;
        Ok(Response::new(self.store.put(req).await?))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        req.validate()?;
        Ok(Response::new(self.store.delete_range(req).await?))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = req.into_inner();
        req.validate()?;
        Ok(Response::new(self.store.txn(req).await?))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let revision = self.store.compact(req.get_ref()).await?;
        Ok(Response::new(CompactionResponse {
            header: Some(self.store.header(revision)),
        }))
    }
}
