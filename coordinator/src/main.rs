//! `baton-coordinator`: runs one coordinator. Settings come from `--config FILE` (TOML) and `BATON_*`
//! environment variables; see `deploy/coordinator.toml` for every setting.

use clap::Parser;

/// jemalloc rather than glibc's malloc: over `baton bench`'s full sequence the coordinator spent a
/// quarter less CPU on it, for 2 MB more memory (docs/benchmark.md, "Allocator: jemalloc").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Baton coordinator: gRPC API, run state in Redis, dispatch to RabbitMQ.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file.
    #[arg(long, short, env = "BATON_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    baton_shared::process::init_tracing_as("baton-coordinator");
    let args = Args::parse();
    let config = match baton_coordinator::CoordinatorConfig::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match baton_coordinator::serve(config, baton_coordinator::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
