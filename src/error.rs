//! One error type for the whole server, and the only conversion into a gRPC `Status`.
//!
//! clientv3 and kube-apiserver match on etcd's exact codes and messages, so every error that etcd
//! also has carries etcd's text verbatim. Database failures are logged here with their detail and
//! reach clients only as a generic `Unavailable`, never with SQL text or credentials.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdshim: {0} is not supported")]
    Unsupported(&'static str),
    /// The database failed; the detail stays in the server log.
    #[error("etcdshim: the datastore is unavailable")]
    Database(#[source] sqlx::Error),
    /// A write batch failed in the database; its detail was logged once for the batch.
    #[error("etcdshim: the datastore is unavailable")]
    Unavailable,
    #[error("etcdshim: migrating the datastore failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("etcdshim: invalid endpoint: {0}")]
    InvalidEndpoint(String),
    #[error("etcdshim: the server is shutting down")]
    ShuttingDown,
    /// An import that cannot go on (the detail says why).
    #[error("etcdshim import: {0}")]
    Import(String),
    /// Work that took longer than it may (the detail says which).
    #[error("etcdshim: {0} timed out")]
    Timeout(&'static str),
    #[error("etcdshim: {0}")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Database(err)
    }
}

impl Error {
    /// The text for the server log: with the database's own message, which clients never see.
    pub fn detail(&self) -> String {
        match self {
            Error::Database(source) => format!("{self}: {source}"),
            other => other.to_string(),
        }
    }

    fn code(&self) -> Code {
        match self {
            Error::Compacted | Error::FutureRevision => Code::OutOfRange,
            Error::LeaseNotFound => Code::NotFound,
            Error::LeaseExists => Code::FailedPrecondition,
            Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::EmptyKey
            | Error::KeyNotFound
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::TooManyOps
            | Error::DuplicateKey
            | Error::RequestTooLarge
            | Error::InvalidEndpoint(_) => Code::InvalidArgument,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::Database(_) | Error::Unavailable | Error::ShuttingDown => Code::Unavailable,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Import(_) => Code::FailedPrecondition,
            Error::Migrate(_) | Error::Io(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        if let Error::Database(source) = &err {
            tracing::error!(error = %source, "datastore error");
        }
        Status::new(err.code(), err.to_string())
    }
}
