//! The `porchlight` binary: parses the command line, sets up logging, and runs the server or a
//! management subcommand.

use clap::Parser;
use dashboards::config::{self, Cli, Command, LogFormat};
use dashboards::{Server, cli};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// (body, headers, JSON), and glibc's malloc was the largest single cost per beacon in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("porchlight: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Cli) -> anyhow::Result<()> {
    let common = config::resolve_common(&args.global)?;
    init_logging(common.log_format, &common.log)?;
    match args.command {
        None => serve(&args.global, &args.serve).await,
        Some(Command::Serve(serve_args)) => serve(&args.global, &serve_args).await,
        Some(Command::Agent(command)) => cli::agent(&common, command).await,
        Some(Command::Site(command)) => cli::site(&common, command).await,
        Some(Command::Token(command)) => cli::token(&common, command).await,
    }
}

async fn serve(global: &config::GlobalArgs, serve_args: &config::ServeArgs) -> anyhow::Result<()> {
    let settings = config::resolve(global, serve_args)?;
    let server = Server::start(settings).await?;
    tracing::info!(addr = %server.addr, "porchlight is serving");
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).map_err(|error| anyhow::anyhow!("setting `log`: {error}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
