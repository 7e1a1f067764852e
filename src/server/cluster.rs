//! The Cluster service: one member, this server. Membership changes belong to raft clusters
//! and answer Unimplemented.

use tonic::{Request, Response, Status};

use crate::proto::cluster_server::Cluster;
use crate::proto::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::store::Store;

pub struct ClusterService {
    pub store: Store,
    /// The URL clients reach this server at.
    pub client_url: String,
    pub name: String,
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "etcdshim: Cluster.{what} is not supported (etcdshim has no raft membership)"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(unimplemented("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(unimplemented("MemberRemove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(unimplemented("MemberUpdate"))
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: Some(self.store.header(self.store.head())),
            members: vec![Member {
                id: self.store.member_id(),
                name: self.name.clone(),
                peer_ur_ls: Vec::new(),
                client_ur_ls: vec![self.client_url.clone()],
                is_learner: false,
            }],
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(unimplemented("MemberPromote"))
    }
}
