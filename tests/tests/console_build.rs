//! `console/build.sh` and the coordinator's build script, as `deploy/local/up.sh` runs them before
//! every `cargo build` (issue 19): a second `console/build.sh` with unchanged sources leaves
//! `console/dist` untouched, a forced one that makes the same bytes leaves it untouched too, and
//! the coordinator embeds dist by content: touching every file of dist compiles nothing again.
//!
//! Needs Node 20 and npm (as `console/build.sh` does) and runs `cargo build --workspace
//! --all-targets` in this workspace (compiling what is not up to date first).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `dir` (dotfiles too) with its modification time and bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("list dist") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
                out.insert(path.clone(), (modified, std::fs::read(&path).expect("read")));
            }
        }
    }
    out
}

/// Runs `console/build.sh` (with `FORCE=1` when `force`); answers its stdout, panicking when it fails.
fn build_console(force: bool) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("console/build.sh"))
        .env("FORCE", if force { "1" } else { "0" })
        .output()
        .expect("run console/build.sh (bash)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "console/build.sh failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs the build `.ci/run` runs (`cargo build --workspace --all-targets --locked`: the same
/// features as the test run, so it finds the workspace built); answers whether the coordinator's
/// library and binary were fresh (not compiled again).
fn build_coordinator() -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    // Without what cargo set for this test (its package's CARGO_MANIFEST_DIR, CARGO_PKG_*, a
    // LD_LIBRARY_PATH): some build scripts (ring's) track those variables, so with them this
    // build would be another configuration than .ci/run's and compile the workspace again
    // (3 minutes of CI) instead of finding it built.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "LD_LIBRARY_PATH",
            ]
            .contains(&name.as_str())
        {
            build.env_remove(&name);
        }
    }
    let out = build
        .args([
            "build",
            "--workspace",
            "--all-targets",
            "--locked",
            "--message-format=json",
        ])
        .current_dir(repo_root())
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build --workspace --all-targets failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut fresh = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = msg["package_id"].as_str().is_some_and(|p| p.contains("/coordinator#"));
        let kind = msg["target"]["kind"][0].as_str().unwrap_or("");
        let test = msg["profile"]["test"] == true;
        if msg["reason"] == "compiler-artifact" && ours && !test && (kind == "lib" || kind == "bin") {
            fresh.push(msg["fresh"] == true);
        }
    }
    assert_eq!(fresh.len(), 2, "the coordinator's lib and bin artifacts were reported");
    fresh.iter().all(|f| *f)
}

#[test]
fn building_the_console_again_leaves_dist_untouched_and_the_coordinator_embeds_it_by_content() {
    let npm = Command::new("npm").arg("--version").output();
    assert!(
        npm.is_ok_and(|o| o.status.success()),
        "npm is missing: install Node 20 or later (`apt-get install -y nodejs npm`)"
    );
    let dist = repo_root().join("console/dist");
    // Whatever state dist is in, bring it and the coordinator up to date first.
    build_console(false);
    build_coordinator();
    let before = snapshot(&dist);
    assert!(
        before.contains_key(&dist.join(".content-sha256")),
        "the coordinator's build script wrote dist's content hash"
    );

    let again = build_console(false);
    assert!(again.contains("console up to date"), "{again}");
    assert!(
        snapshot(&dist) == before,
        "an up-to-date console/build.sh changed console/dist"
    );

    let forced = build_console(true);
    assert!(forced.contains("dist is unchanged"), "{forced}");
    assert!(
        snapshot(&dist) == before,
        "a forced build that made the same bytes changed console/dist"
    );
    assert!(
        build_coordinator(),
        "the coordinator was compiled again after console/build.sh"
    );

    // New times, same bytes: nothing to embed again.
    let now = SystemTime::now();
    for path in before.keys().filter(|p| {
        !p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
    }) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(now))
            .expect("touch a file of dist");
    }
    assert!(
        build_coordinator(),
        "touching console/dist compiled the coordinator again: its build script must follow dist's content"
    );
}
