//! The `etcdshim` command: parses flags and runs the library's server until SIGINT or SIGTERM.

use clap::Parser as _;
use etcdshim::config::{Cli, Command, LogFormat, MetricsAddress};
use etcdshim::{Listener, Server};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// glibc's allocator keeps what each thread freed in that thread's arena (a list page of
/// 10,000 objects of 1 KiB is tens of MiB while it is built and sent, on whichever of the
/// runtime's and SQLite's threads), so resident memory grew with the large pages served: 288
/// MiB after a list of 1M objects in pages of 10,000 and 100k puts. jemalloc with two arenas
/// and a background thread that returns freed pages within 200 ms (its options are compiled
/// in, `.cargo/config.toml`) held 130 MiB after the same, and served the lists faster.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Kine's --debug logs every statement too: sqlx traces them.
    let level = if cli.serve.debug {
        "info,etcdshim=trace,sqlx=trace"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colors only on a terminal: log files and journald get plain text.
    let colored = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colored);
    match cli.serve.log_format {
        LogFormat::Plain => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    for warning in cli.serve.warnings() {
        tracing::warn!("{warning}");
    }
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.serve).await,
        Command::Import(args) => {
            let datastore = cli.serve.server_options().store.datastore;
            etcdshim::importer::run(&args.source, &cli.serve.endpoint, &datastore)
                .await
                .map(|imported| {
                    tracing::info!(
                        keys = imported.keys,
                        leases = imported.leases,
                        revision = imported.head,
                        "imported; serve the datastore to go on from this revision"
                    )
                })
        }
        Command::Bench(args) => match etcdshim::bench::run(&args).await {
            Ok(reports) => {
                for report in &reports {
                    report.print(args.json);
                }
                if reports.iter().any(|r| r.errors > 0) {
                    return std::process::ExitCode::FAILURE;
                }
                Ok(())
            }
            Err(err) => {
                eprintln!("etcdshim bench: {err}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The cause (a database error, a file that could not be read) is what an operator
            // needs; sqlx's errors carry no credentials.
            let cause = std::error::Error::source(&err).map(ToString::to_string);
            tracing::error!(error = %err, cause = cause.as_deref().unwrap_or(""), "etcdshim stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: &etcdshim::config::ServeArgs) -> etcdshim::Result<()> {
    let options = args.server_options();
    let server = Server::open(options.clone()).await?;
    let listener = Listener::bind(&args.listen_address).await?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(metrics) = bind_metrics(args.metrics_address()).await? {
        let tls = match (&options.tls, args.metrics_ignore_tls_config) {
            (Some(files), false) => Some(etcdshim::metrics::tls_config(files).await?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %metrics.local_addr()?, scheme, "serving metrics at /metrics");
        tokio::spawn(etcdshim::metrics::serve(metrics, tls, async {
            let _ = metrics_stopped.await;
        }));
    }
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let served = server.serve(listener, shutdown).await;
    let _ = stop_metrics.send(());
    served
}

/// The metrics listener: an address given on the command line must be bound, but when the
/// default one is taken (another etcdshim on this machine has it) metrics are off, with a
/// warning, so that several servers started with only --listen-address and --endpoint all
/// serve.
async fn bind_metrics(address: MetricsAddress) -> etcdshim::Result<Option<TcpListener>> {
    match address {
        MetricsAddress::Off => Ok(None),
        MetricsAddress::Given(address) => match TcpListener::bind(&address).await {
            Ok(listener) => Ok(Some(listener)),
            Err(err) => Err(etcdshim::Error::Io(std::io::Error::new(
                err.kind(),
                format!("--metrics-bind-address {address}: {err}"),
            ))),
        },
        MetricsAddress::Default(address) => match TcpListener::bind(&address).await {
            Ok(listener) => Ok(Some(listener)),
            Err(err) => {
                tracing::warn!(%address, error = %err, "metrics are off: the default metrics address is taken; give --metrics-bind-address to choose one");
                Ok(None)
            }
        },
    }
}
