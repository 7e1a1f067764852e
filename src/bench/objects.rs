//! The shape of a Fleet-managed store: per downstream cluster, ten Kubernetes objects under
//! /registry/RESOURCE/NAMESPACE/NAME (its cluster record, registration objects and bundle
//! deployments), each cluster in its own namespace. `load` writes it, `fleet` lives in it.

use bytes::Bytes;

/// The resources of one cluster's objects, in the order they are created.
pub const RESOURCES: [&str; 10] = [
    "fleet.cattle.io/clusters",
    "serviceaccounts",
    "secrets",
    "rbac.authorization.k8s.io/roles",
    "rbac.authorization.k8s.io/rolebindings",
    "fleet.cattle.io/clusterregistrations",
    "fleet.cattle.io/bundledeployments",
    "fleet.cattle.io/bundledeployments",
    "configmaps",
    "coordination.k8s.io/leases",
];

/// Objects per cluster.
pub const PER_CLUSTER: u64 = RESOURCES.len() as u64;

/// Where the manager lists every cluster record.
pub const CLUSTERS_PREFIX: &str = "/registry/fleet.cattle.io/clusters/";

/// The namespace of cluster `cluster` of run `run`.
fn namespace(run: &str, cluster: u64) -> String {
    format!("cluster-fleet-{run}-{cluster}")
}

/// The `i`th object of run `run`: object `i % 10` of cluster `i / 10`.
pub fn object_key(run: &str, i: u64) -> Bytes {
    let cluster = i / PER_CLUSTER;
    let resource = RESOURCES[(i % PER_CLUSTER) as usize];
    Bytes::from(format!(
        "/registry/{resource}/{}/object-{i}",
        namespace(run, cluster)
    ))
}

/// The cluster record of cluster `cluster`: its first object.
pub fn cluster_key(run: &str, cluster: u64) -> Bytes {
    object_key(run, cluster * PER_CLUSTER)
}

/// The prefix of cluster `cluster`'s bundle deployments.
pub fn deployments_prefix(run: &str, cluster: u64) -> String {
    format!(
        "/registry/fleet.cattle.io/bundledeployments/{}/",
        namespace(run, cluster)
    )
}

/// Bundle deployments per cluster.
pub fn deployments_per_cluster() -> usize {
    RESOURCES
        .iter()
        .filter(|r| **r == "fleet.cattle.io/bundledeployments")
        .count()
}
