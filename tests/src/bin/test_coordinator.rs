//! The coordinator as the end-to-end tests start it: the library's `serve`, configured from the
//! environment like the real binary, so the tests can spawn, kill and restart it as a process.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    baton_shared::process::init_tracing();
    let config = baton_coordinator::CoordinatorConfig::load(None)?;
    baton_coordinator::serve(config, baton_coordinator::shutdown_signal()).await
}
