//! Helpers shared by the CLI's integration tests (each `tests/*.rs` is its own crate and includes
//! this module with `mod common;`).

use std::process::Command;

/// Runs the built `baton` binary as `baton --addr <addr> <args>` on a blocking thread; returns
/// (exit code, or -1 when killed by a signal; stdout; stderr).
pub async fn baton(addr: &str, args: &[&str]) -> (i32, String, String) {
    let addr = addr.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("--addr")
            .arg(&addr)
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}
