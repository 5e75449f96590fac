//! Makes sure `console/dist` exists for the coordinator to embed (`src/console.rs`): when the web
//! console was not built (`console/build.sh`, which needs Node), it writes a one-page placeholder
//! saying so, so that `cargo build` from a clean clone compiles without Node.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("../console/dist");
    // Re-embed when the console is rebuilt (cargo watches every file under the directory).
    println!("cargo:rerun-if-changed={}", dist.display());
    let index = dist.join("index.html");
    if index.exists() {
        return;
    }
    let page = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Baton console</title></head>\n\
        <body style=\"font-family: sans-serif; color: #111; background: #fff; margin: 2em\">\n\
        <h1>Baton</h1>\n<p>The coordinator answers, but the console was not built: run <code>console/build.sh</code> \
        (needs Node 20 and npm), then <code>cargo build</code> again.</p>\n\
        <p>The HTTP API is at <a href=\"/v1/openapi.json\">/v1/openapi.json</a>.</p>\n</body></html>\n";
    if let Err(e) = std::fs::create_dir_all(&dist).and_then(|()| std::fs::write(&index, page)) {
        // Not fatal here: rust-embed then fails with the folder's path, which says enough.
        println!("cargo:warning=could not write {}: {e}", index.display());
    }
}
