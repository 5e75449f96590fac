//! The store is the only module that names the `redis` crate: a test reads every source file of
//! the coordinator and fails on a use of `redis` outside `src/store.rs` and `src/store/`.

use std::path::{Path, PathBuf};

/// Whether `line` (one line of Rust) names the `redis` crate in code: a path (`redis::`), a `use`
/// or an `extern crate`. Comments and string literals are not code: a line's `//` comment is
/// dropped, and text between double quotes is skipped.
fn names_redis(line: &str) -> bool {
    let mut code = String::new();
    let mut in_string = false;
    let mut prev = '\0';
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            if c == '"' && prev != '\\' {
                in_string = false;
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
            continue;
        }
        if c == '"' {
            in_string = true;
            prev = c;
            continue;
        }
        if c == '/' && chars.peek() == Some(&'/') {
            break;
        }
        code.push(c);
        prev = c;
    }
    let word_before = |i: usize| {
        code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    code.match_indices("redis").any(|(i, _)| {
        let rest = &code[i + "redis".len()..];
        let after_is_word = rest.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word_before(i) || after_is_word {
            return false;
        }
        let before = code[..i].trim_end();
        rest.trim_start().starts_with("::") || before.ends_with("use") || before.ends_with("crate")
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_detector_sees_what_names_redis_and_nothing_else() {
    for line in [
        "let mut pipe = redis::pipe();",
        "use redis::AsyncCommands;",
        "    Redis(#[from] redis::RedisError),",
        "let x: ::redis::Value = v;",
        "extern crate redis;",
        "use redis;",
    ] {
        assert!(names_redis(line), "{line}");
    }
    for line in [
        "/// Redis URL (`redis://host:port/db`).",
        r#"redis_url: "redis://127.0.0.1:6379".into(),"#,
        "let redis = async { engine.store.ping().await };",
        "crate::metrics::redis_reset();",
        "health.set_redis_lost(None).await; // redis::pipe() is gone",
        r#"tracing::warn!("redis::x in a message");"#,
    ] {
        assert!(!names_redis(line), "{line}");
    }
}

#[test]
fn only_the_store_names_redis() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let store_dir = src.join("store");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} source files under {}",
        files.len(),
        src.display()
    );
    let mut found = Vec::new();
    for f in files {
        if f == src.join("store.rs") || f.starts_with(&store_dir) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if names_redis(line) {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "only the store (src/store.rs, src/store/) may name the redis crate; give these a typed Store method:\n{}",
        found.join("\n")
    );
}
