//! The coordinator as the end-to-end tests start it: the library's `serve`, configured from the
//! environment like the real binary, so the tests can spawn, kill and restart it as a process.
//! `BATON_TEST_PANIC_ON=<text>` makes every background item whose member contains the text panic
//! (the supervision tests' injected fault; see `baton_coordinator::Hooks`).
//! `BATON_TEST_PUBLISH_DELAY=<duration>` makes every step-task publish wait that long first (the
//! failover tests' coordinator stuck between commit and publish).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    baton_shared::process::init_tracing_as("baton-coordinator");
    let config = baton_coordinator::CoordinatorConfig::load(None)?;
    let hooks = baton_coordinator::Hooks {
        panic_marker: std::env::var("BATON_TEST_PANIC_ON").ok().filter(|m| !m.is_empty()),
        publish_delay: match std::env::var("BATON_TEST_PUBLISH_DELAY") {
            Ok(d) => {
                Some(baton_shared::duration::parse(&d).map_err(|e| anyhow::anyhow!("BATON_TEST_PUBLISH_DELAY: {e}"))?)
            }
            Err(_) => None,
        },
    };
    baton_coordinator::serve_with(config, baton_coordinator::shutdown_signal(), hooks).await
}
