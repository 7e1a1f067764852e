//! The Maintenance service: Status, which etcdctl and kube-apiserver read (the etcd version
//! gates kube-apiserver's features; dbSize feeds its storage metrics). The rest of the service
//! concerns raft clusters and bbolt files and answers Unimplemented;
//! Alarm answers that no alarm is raised, and Defragment vacuums the database.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::proto::maintenance_server::Maintenance;
use crate::proto::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::store::{RAFT_TERM, Store};

pub struct MaintenanceService {
    pub store: Store,
    /// The etcd version reported to clients (`--emulated-etcd-version`).
    pub version: String,
    /// The datastore endpoint, to name its own backup tools where etcd would send a snapshot.
    pub endpoint: String,
}

/// How to back up the datastore `endpoint` names, online.
fn backup_advice(endpoint: &str) -> &'static str {
    if endpoint.starts_with("sqlite://") {
        "back up the SQLite file with sqlite3's .backup command (consistent while etcdshim writes)"
    } else if endpoint.starts_with("mysql://") {
        "back up the MySQL database with mysqldump --single-transaction"
    } else {
        "back up the PostgreSQL database with pg_dump or pg_basebackup"
    }
}

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("etcdshim: Maintenance.{what} is not supported"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// etcdshim raises no alarms (no space quota, no corruption checks): every query finds none.
    async fn alarm(&self, _: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(AlarmResponse {
            header: Some(self.store.header(self.store.head())),
            alarms: Vec::new(),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let head = self.store.head();
        let size = self.store.db_size().await?;
        let member_id = self.store.member_id();
        Ok(Response::new(StatusResponse {
            header: Some(self.store.header(head)),
            version: self.version.clone(),
            db_size: size.allocated,
            leader: member_id,
            raft_index: head as u64,
            raft_term: RAFT_TERM,
            raft_applied_index: head as u64,
            errors: Vec::new(),
            db_size_in_use: size.in_use,
            is_learner: false,
            storage_version: self.version.clone(),
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    /// Returns the datastore's unused space to the file system (SQLite: VACUUM).
    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.store.defragment().await?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.store.header(self.store.head())),
        }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(unimplemented("Hash"))
    }

    async fn hash_kv(&self, _: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(unimplemented("HashKV"))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented(format!(
            "etcdshim: Maintenance.Snapshot is not supported: the data lives in the datastore; {}",
            backup_advice(&self.endpoint)
        )))
    }

    async fn move_leader(
        &self,
        _: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(unimplemented("MoveLeader"))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(unimplemented("Downgrade"))
    }
}
