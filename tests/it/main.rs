//! Integration tests: real servers on 127.0.0.1:0, driven by the etcd-client crate, etcdctl,
//! and side by side with a real etcd. One test binary, one link step.

mod bench;
mod compaction;
mod concurrency;
mod counts;
mod crash;
mod differential;
mod etcdctl;
mod faults;
mod fuzz_corpus;
mod guarantees;
mod harness;
mod import;
mod kine;
mod kube;
mod kv;
mod layout;
mod lease;
mod limits;
mod linearizability;
mod maintenance;
mod metrics;
mod private_db;
mod read_cache;
mod security;
mod servers;
mod txn;
mod upgrade;
mod watch;
