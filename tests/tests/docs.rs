//! The docs are a contract, like the API: what README.md and the book in `docs/` show must work.
//!
//! - Every link of every Markdown file of the repository reaches a file of the repository, and
//!   every `#anchor` a heading (or an `id`) of the file it points into, with the anchors GitHub and
//!   mdBook give headings.
//! - Every fenced workflow definition (`yaml`, `json`) of README.md and `docs/` registers with a
//!   real coordinator, file by file in the order they are written; the ones marked `run` are run
//!   with the test worker (its `echo` and `fail` are the stock worker's) and must succeed.
//!   Fragments are marked: `yaml steps` (a definition without `name` and `version`: the test adds
//!   them) and `not-a-workflow` (only parsed). A fence in a language the test does not know fails,
//!   so that nothing is skipped silently; the languages it does not run are listed in
//!   [`NOT_RUN`].
//! - Every `baton` command line of a `sh` fence parses: the CLI is run with the line's own
//!   arguments and `--help` appended, which clap answers only when every subcommand and flag
//!   before it exists and every value parses. Every `baton ...` in inline code names a
//!   subcommand path that exists (`baton <path> --help`).
//! - Every metric that the Grafana dashboard (`deploy/grafana/baton.json`) queries is served by
//!   a real coordinator's or worker's `/metrics` after a few runs and schedule ticks.
//!
//! docs/writing-docs.md says the same to whoever writes the docs.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use baton_shared::proto::{CreateScheduleRequest, RegisterWorkflowRequest};
use baton_tests::{Cluster, free_port, prom::scrape, status};
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use serde_json::json;

/// Fence languages the tests do not run, on purpose: Rust (its compiled twins are the examples'
/// `docs-worker` and the SDK's tests), text, diagrams and protobuf text. `python` and `toml`
/// fences are parsed by python3 ([`python_parses`]).
const NOT_RUN: &[&str] = &["rust", "text", "textproto"];

/// Whether `text` parses as `lang` (`python`: its syntax; `toml`: a TOML document), by the
/// machine's python3 (3.11 or later, for tomllib); the parser's complaint otherwise.
fn python_parses(lang: &str, text: &str) -> Result<(), String> {
    use std::io::Write;
    let check = match lang {
        "python" => "import ast, sys; ast.parse(sys.stdin.read())",
        _ => "import sys, tomllib; tomllib.loads(sys.stdin.read())",
    };
    let mut child = Command::new("python3")
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Most Markdown files the walk reads: a bound on the walk, far above the repository's count.
const MAX_MARKDOWN_FILES: usize = 2_000;

/// Directories never walked: build output, dependencies, virtualenvs, fuzz corpora.
const SKIP_DIRS: &[&str] = &[
    "target",
    "node_modules",
    "dist",
    "build",
    "venv",
    "corpus",
    "artifacts",
    "__pycache__",
];

fn repo() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// The Markdown files of the repository, sorted: README.md, docs/, deploy/, sdk/, examples/ ...
fn markdown_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![repo()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                let hidden = name.starts_with('.') && name != ".ci";
                if !hidden && !SKIP_DIRS.contains(&name.as_str()) && !name.ends_with(".egg-info") {
                    dirs.push(path);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
        assert!(
            out.len() <= MAX_MARKDOWN_FILES,
            "more than {MAX_MARKDOWN_FILES} Markdown files"
        );
    }
    out.sort();
    out
}

/// The repository-relative name of a path, for messages.
fn rel(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

/// A fenced code block: the words of its info string, its text and its first line's number.
struct Fence {
    words: Vec<String>,
    text: String,
    line: usize,
}

/// What a Markdown file holds that the tests check.
#[derive(Default)]
struct Doc {
    /// The anchors its headings get (GitHub's and mdBook's rule), and ids of raw HTML.
    anchors: BTreeSet<String>,
    /// Link destinations with their line.
    links: Vec<(String, usize)>,
    fences: Vec<Fence>,
    /// Inline code spans with their line.
    code: Vec<(String, usize)>,
}

/// A heading's anchor as GitHub and mdBook make it: lower case; letters, digits, `_` and `-` kept;
/// spaces become `-`; everything else dropped.
fn slug(heading: &str) -> String {
    let mut out = String::new();
    for c in heading.chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            out.extend(c.to_lowercase());
        } else if c == ' ' {
            out.push('-');
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

fn read_doc(path: &Path) -> Doc {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", rel(path)));
    let mut doc = Doc::default();
    let mut heading: Option<String> = None;
    let mut fence: Option<Fence> = None;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let id_attr = |html: &str, anchors: &mut BTreeSet<String>| {
        for attr in ["id=\"", "name=\""] {
            for part in html.split(attr).skip(1) {
                if let Some((id, _)) = part.split_once('"') {
                    anchors.insert(id.to_string());
                }
            }
        }
    };
    for (event, range) in Parser::new_ext(&text, Options::ENABLE_TABLES).into_offset_iter() {
        let line = line_of(&text, range.start);
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                // A repeated heading gets `-1`, `-2`, ... as on GitHub and in mdBook.
                let n = seen.entry(base.clone()).or_insert(0);
                let anchor = if *n == 0 { base.clone() } else { format!("{base}-{n}") };
                *n += 1;
                doc.anchors.insert(anchor);
            }
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => {
                doc.links.push((dest_url.to_string(), line));
            }
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                fence = Some(Fence {
                    words: info.split_whitespace().map(str::to_string).collect(),
                    text: String::new(),
                    line,
                });
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(f) = fence.take() {
                    doc.fences.push(f);
                }
            }
            Event::Text(t) => {
                if let Some(f) = fence.as_mut() {
                    f.text.push_str(&t);
                } else if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Code(c) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&c);
                }
                doc.code.push((c.to_string(), line));
            }
            Event::Html(h) | Event::InlineHtml(h) => id_attr(&h, &mut doc.anchors),
            _ => {}
        }
    }
    doc
}

/// Whether a link leaves the repository (`https:`, `mailto:`, ...).
fn is_external(link: &str) -> bool {
    let scheme: String = link
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "+.-".contains(*c))
        .collect();
    !scheme.is_empty() && link[scheme.len()..].starts_with(':')
}

#[test]
fn every_link_in_the_docs_reaches_a_file_and_every_anchor_a_heading() {
    let files = markdown_files();
    assert!(
        files.iter().any(|f| rel(f) == "docs/SUMMARY.md"),
        "the book's docs/SUMMARY.md is missing"
    );
    let root = repo().canonicalize().expect("repository root");
    let mut docs: BTreeMap<PathBuf, Doc> = BTreeMap::new();
    for f in &files {
        let canonical = f.canonicalize().unwrap_or_else(|_| f.clone());
        docs.insert(canonical, read_doc(f));
    }
    let mut broken = Vec::new();
    let mut checked = 0usize;
    for (path, doc) in &docs {
        let dir = path.parent().unwrap_or(&root);
        for (link, line) in &doc.links {
            if is_external(link) || link.starts_with('/') {
                continue;
            }
            checked += 1;
            let (target, fragment) = link.split_once('#').unwrap_or((link, ""));
            let at = format!("{}:{line}: {link}", rel(path));
            let dest = if target.is_empty() {
                path.clone()
            } else {
                match dir.join(target).canonicalize() {
                    Ok(d) => d,
                    Err(_) => {
                        broken.push(format!("{at}: no such file"));
                        continue;
                    }
                }
            };
            if !dest.starts_with(&root) {
                broken.push(format!("{at}: leaves the repository"));
                continue;
            }
            if fragment.is_empty() || dest.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let anchors = match docs.get(&dest) {
                Some(d) => &d.anchors,
                None => {
                    broken.push(format!("{at}: {} was not read", rel(&dest)));
                    continue;
                }
            };
            if !anchors.contains(fragment) {
                broken.push(format!("{at}: no heading with anchor #{fragment} in {}", rel(&dest)));
            }
        }
    }
    assert!(checked > 80, "only {checked} links checked: is the walk missing files?");
    assert!(broken.is_empty(), "broken links in the docs:\n{}", broken.join("\n"));
    eprintln!(
        "{checked} links in {} Markdown files: every one reaches its file and anchor",
        docs.len()
    );
}

/// The Markdown files whose examples the tests run: README.md and the book.
fn book_files() -> Vec<PathBuf> {
    let docs_dir = repo().join("docs");
    let mut files = vec![repo().join("README.md")];
    files.extend(markdown_files().into_iter().filter(|f| f.starts_with(&docs_dir)));
    files
}

/// The `name` of a definition, YAML or JSON (JSON is YAML).
fn definition_name(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    value.get("name")?.as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_workflow_definition_in_the_docs_registers_and_the_runnable_ones_succeed() {
    let mut failures = Vec::new();
    let mut registered = 0usize;
    let mut ran = 0usize;
    let mut not_run: BTreeMap<String, usize> = BTreeMap::new();
    for file in book_files() {
        let doc = read_doc(&file);
        let mut definitions = Vec::new();
        for (i, f) in doc.fences.iter().enumerate() {
            let lang = f.words.first().map(String::as_str).unwrap_or("");
            let at = format!("{}:{}", rel(&file), f.line);
            match lang {
                "yaml" | "yml" | "json" if f.words.iter().any(|w| w == "not-a-workflow") => {
                    let parsed: Result<serde_json::Value, String> = if lang == "json" {
                        serde_json::from_str(&f.text).map_err(|e| e.to_string())
                    } else {
                        serde_saphyr::from_str(&f.text).map_err(|e| e.to_string())
                    };
                    if let Err(e) = parsed {
                        failures.push(format!("{at}: does not parse as {lang}: {e}"));
                    }
                }
                "yaml" | "yml" | "json" => {
                    let text = if f.words.iter().any(|w| w == "steps") {
                        let stem = file
                            .file_stem()
                            .map(|s| s.to_string_lossy().to_string())
                            .unwrap_or_default();
                        format!("name: {stem}-fragment-{i}\nversion: 1\n{}", f.text)
                    } else {
                        f.text.clone()
                    };
                    definitions.push((at, text, f.words.iter().any(|w| w == "run")));
                }
                // Their `baton` lines: every_baton_command_in_the_docs_parses.
                "sh" | "bash" | "shell" => {}
                "python" | "toml" => {
                    if let Err(e) = python_parses(lang, &f.text) {
                        failures.push(format!("{at}: does not parse as {lang}: {e}"));
                    }
                    *not_run.entry(format!("{lang} (parsed)")).or_default() += 1;
                }
                _ if NOT_RUN.contains(&lang) => *not_run.entry(lang.to_string()).or_default() += 1,
                _ => failures.push(format!(
                    "{at}: a fence in `{lang}`, which the docs tests do not know: run it in tests/tests/docs.rs \
                     or add the language to NOT_RUN"
                )),
            }
        }
        if definitions.is_empty() {
            continue;
        }
        // One coordinator per file: two files may show the same name and version differently (an
        // abridged README example and the chapter's whole one).
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut cluster = Cluster::start(&format!("docs-{}", stem.to_lowercase()), &[]).await;
        if definitions.iter().any(|(_, _, run)| *run) {
            cluster.spawn_worker("w1", 4);
        }
        for (at, text, run) in definitions {
            let answer = cluster
                .workflows()
                .await
                .register_workflow(RegisterWorkflowRequest {
                    definition: text.clone(),
                })
                .await;
            match answer {
                Err(e) => {
                    failures.push(format!("{at}: refused: {:?} {}", e.code(), e.message()));
                    continue;
                }
                // Again through the harness, which remembers the handlers to clean up after.
                Ok(_) => cluster.register(&text).await,
            }
            registered += 1;
            if !run {
                continue;
            }
            let Some(name) = definition_name(&text) else {
                failures.push(format!("{at}: a `run` example without a name"));
                continue;
            };
            let run_id = cluster.submit(&name, json!({})).await;
            let finished = cluster.wait_run(&run_id, Duration::from_secs(60)).await;
            if status(&finished) != "succeeded" {
                failures.push(format!("{at}: its run ended {}: {finished:#?}", status(&finished)));
            }
            ran += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "docs examples that do not work:\n{}",
        failures.join("\n")
    );
    assert!(registered >= 5, "only {registered} definitions found in the docs");
    assert!(ran >= 1, "no runnable (`run`) example found in the docs");
    eprintln!("{registered} definitions registered, {ran} run; other fences: {not_run:?}");
}

/// The `baton` binary cargo built beside this test (`target/<profile>/baton`).
fn baton_cli() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let p = profile.join("baton");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p baton-cli`; `cargo test --workspace` does)",
        p.display()
    );
    p
}

/// Splits a shell command line into words: single and double quotes, backslash escapes, and a
/// `#` comment outside quotes; `None` for a line with shell syntax the test does not run
/// (pipes, `;`, `&&`, `$(...)`, redirections, a trailing `&`).
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        '$' => return None,
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            '|' | ';' | '&' | '<' | '>' | '`' | '$' => return None,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Whether a word is the CLI: `baton`, `target/release/baton`, `./target/debug/baton`, ...
fn is_baton(word: &str) -> bool {
    word == "baton" || word.ends_with("/baton")
}

#[test]
fn every_baton_command_in_the_docs_parses() {
    let cli = baton_cli();
    let mut failures = Vec::new();
    let mut lines = 0usize;
    let mut paths: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for file in markdown_files() {
        let doc = read_doc(&file);
        for f in &doc.fences {
            if !matches!(f.words.first().map(String::as_str), Some("sh" | "bash" | "shell")) {
                continue;
            }
            // Logical lines: a line ending in `\` goes on on the next one.
            let mut logical: Vec<(usize, String)> = Vec::new();
            let mut open = false;
            for (n, raw) in f.text.lines().enumerate() {
                let (text, more) = match raw.strip_suffix('\\') {
                    Some(head) => (head, true),
                    None => (raw, false),
                };
                match logical.last_mut() {
                    Some((_, line)) if open => {
                        line.push(' ');
                        line.push_str(text);
                    }
                    _ => logical.push((n, text.to_string())),
                }
                open = more;
            }
            for (n, raw) in &logical {
                let at = format!("{}:{}", rel(&file), f.line + n + 1);
                let Some(words) = shell_words(raw) else { continue };
                // Leading VAR=value assignments, as in `BATON_ADDR=... baton run list`.
                let words: Vec<String> = words
                    .into_iter()
                    .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                    .collect();
                if !words.first().is_some_and(|w| is_baton(w)) {
                    continue;
                }
                lines += 1;
                let out = Command::new(&cli)
                    .args(&words[1..])
                    .arg("--help")
                    .output()
                    .expect("run baton");
                if !out.status.success() {
                    failures.push(format!(
                        "{at}: `{raw}` does not parse: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
        }
        for (code, line) in &doc.code {
            let mut words = code.split_whitespace();
            if !words.next().is_some_and(is_baton) {
                continue;
            }
            let path: Vec<String> = words
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-'))
                .map(str::to_string)
                .collect();
            paths
                .entry(path)
                .or_insert_with(|| format!("{}:{line}: `{code}`", rel(&file)));
        }
    }
    for (path, at) in &paths {
        let out = Command::new(&cli).args(path).arg("--help").output().expect("run baton");
        if !out.status.success() {
            failures.push(format!(
                "{at}: `baton {}` is not a command: {}",
                path.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        lines >= 10,
        "only {lines} baton command lines found in the docs' sh fences"
    );
    assert!(
        paths.len() >= 20,
        "only {} baton command paths found in the docs",
        paths.len()
    );
    assert!(
        failures.is_empty(),
        "CLI examples in the docs that do not parse:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "{lines} baton command lines and {} command paths in the docs parse",
        paths.len()
    );
}

/// The names of the samples of a Prometheus text answer (`baton_x_bucket`, `baton_x_count`, ...).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every `baton_...` metric name in the dashboard's query expressions (`expr` of every target).
fn dashboard_metrics(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dashboard];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                    for (i, _) in expr.match_indices("baton_") {
                        let name: String = expr[i..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(name);
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_grafana_dashboard_queries_is_served() {
    let path = repo().join("deploy/grafana/baton.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/baton.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let wanted = dashboard_metrics(&dashboard);
    assert!(wanted.len() >= 15, "the dashboard names only {wanted:?}");

    let (cport, wport) = (free_port(), free_port());
    let (caddr, waddr) = (format!("127.0.0.1:{cport}"), format!("127.0.0.1:{wport}"));
    let mut cluster = Cluster::start("grafana", &[("BATON_METRICS_ADDR", &caddr)]).await;
    cluster.spawn_worker_with_env("w1", 4, &[("BATON_METRICS_ADDR", &waddr)]);
    // What moves every series the dashboard reads: runs that succeed (one step retried) and fail,
    // concurrency slots, and a schedule that fires every second.
    cluster
        .register(
            "name: dash\nversion: 1\nsteps:\n  - {id: a, handler: echo}\n  - id: b\n    handler: fail\n    depends_on: [a]\n    \
             input: {succeed_on_attempt: 2}\n    retry: {max_attempts: 2, initial_interval: 100ms}\n    \
             concurrency: {limit: 1}\n",
        )
        .await;
    cluster
        .register("name: dash-fails\nversion: 1\nsteps:\n  - {id: a, handler: fail, input: {fatal: true}}\n")
        .await;
    let ok = cluster.submit("dash", json!({})).await;
    let failed = cluster.submit("dash-fails", json!({})).await;
    assert_eq!(
        status(&cluster.wait_run(&ok, Duration::from_secs(60)).await),
        "succeeded"
    );
    assert_eq!(
        status(&cluster.wait_run(&failed, Duration::from_secs(60)).await),
        "failed"
    );
    cluster
        .schedules()
        .await
        .create_schedule(CreateScheduleRequest {
            id: "every-second".into(),
            workflow: "dash-fails".into(),
            cron: "* * * * * *".into(),
            ..Default::default()
        })
        .await
        .expect("create schedule");

    // Gauges are sampled every 5 s and schedule ticks come every second: scrape until every name
    // is there, at most 30 s.
    let start = Instant::now();
    let missing = loop {
        let mut served = BTreeSet::new();
        for port in [cport, wport] {
            if let Ok(body) = scrape(port).await {
                served.extend(sample_names(&body));
            }
        }
        let missing: Vec<&String> = wanted.iter().filter(|m| !served.contains(*m)).collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(30) {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        missing.is_empty(),
        "deploy/grafana/baton.json queries metrics that neither the coordinator nor the worker serves: {missing:?}"
    );
    eprintln!("the dashboard's {} metrics are all served: {wanted:?}", wanted.len());
}
