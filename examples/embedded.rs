//! Embedding etcdshim in another program (a fleet manager, a test harness): open a server on a
//! SQLite file, serve it on a listener you bound, talk to it, and stop it with a future.
//!
//! Run with `cargo run --example embedded`; it starts, writes and reads a key, and stops.

use etcdshim::proto::kv_client::KvClient;
use etcdshim::proto::{PutRequest, RangeRequest};
use etcdshim::{Listener, Server, ServerOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("etcdshim-example-{}", std::process::id()));
    let server = Server::open(ServerOptions {
        endpoint: format!("sqlite://{}/state.db", dir.display()),
        ..ServerOptions::default()
    })
    .await?;

    // Port 0: the operating system picks a free port; read it back from the listener.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(Listener::Tcp(listener), async {
        let _ = stopped.await;
    }));

    let mut kv = KvClient::connect(url.clone()).await?;
    let put = kv
        .put(PutRequest {
            key: "/registry/clusters/demo".into(),
            value: "hello from an embedded etcdshim".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let got = kv
        .range(RangeRequest {
            key: "/registry/clusters/demo".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let value = got
        .kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    println!(
        "served at {url}; put at revision {}; read back {:?}",
        put.header.map_or(0, |h| h.revision),
        value
    );

    // Completing the shutdown future stops the server after in-flight requests finish.
    let _ = stop.send(());
    serving.await??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
