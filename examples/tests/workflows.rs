//! The definitions in `examples/workflows/` are valid, and fit the handlers of `docs-worker`: the
//! `doc-scan` emitter's `items`, `key` and `input` read the output of `docs.scan`, and make inputs
//! that `documents` accepts. Checked with the coordinator's own parser and CEL evaluation, so that
//! a mistake shows here rather than when `up.sh` applies the file.

use std::{fs, path::Path};

use baton_examples::{FileStore, ScanInput, ScanSummaryInput, scan};
use baton_shared::{definition::WorkflowDefinition, expr::Bindings};

fn definition(file: &str) -> WorkflowDefinition {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows").join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    WorkflowDefinition::parse(&text).unwrap_or_else(|e| panic!("{file} is refused: {e}"))
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("baton-examples-it-{label}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_definition_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if file.ends_with(".yaml") {
            let def = definition(&file);
            names.push(format!("{}@{}", def.name, def.version));
        }
    }
    names.sort();
    assert_eq!(names, ["doc-scan@1", "documents@2", "expense@1", "review@2"]);
}

#[test]
fn the_expense_form_needs_a_comment_of_ten_characters_only_to_reject() {
    let expense = definition("expense.yaml");
    let Some(baton_shared::definition::StepKind::Human(form)) = expense.step("approve").map(|s| &s.kind) else {
        panic!("approve is a human step");
    };
    let ok = |v: serde_json::Value| {
        form.validate(&v)
            .map_err(|e| e.0.iter().map(|f| f.path.clone()).collect::<Vec<_>>())
    };
    assert_eq!(ok(serde_json::json!({"approved": true, "category": "travel"})), Ok(()));
    assert_eq!(
        ok(serde_json::json!({"approved": false, "category": "travel", "comment": "Not a business trip"})),
        Ok(())
    );
    assert_eq!(
        ok(serde_json::json!({"approved": false, "category": "travel", "comment": "no"})),
        Err(vec!["data/comment".to_string()])
    );
    // A missing comment is named at the property, so the console shows it next to the field.
    assert_eq!(
        ok(serde_json::json!({"approved": false, "category": "travel"})),
        Err(vec!["data/comment".to_string()])
    );
    assert_eq!(
        ok(serde_json::json!({"approved": true, "category": "food"})),
        Err(vec!["data/category".to_string()])
    );
    // Its task steps use the stock worker's handler.
    assert_eq!(expense.handlers(), ["echo"]);
}

#[test]
fn documents_limits_its_store_step_and_review_runs_its_latest_version() {
    let documents = definition("documents.yaml");
    let store = documents.step("store").unwrap();
    let concurrency = store.concurrency.as_ref().expect("store has a concurrency limit");
    assert_eq!(concurrency.limit, 2);
    assert!(concurrency.key.is_none(), "one pool for every run");

    let review = definition("review.yaml");
    let largest = review.step("largest").unwrap();
    assert_eq!(largest.handler, "", "a workflow step");
    let doc = &review.document["steps"];
    let step = doc.as_array().unwrap().iter().find(|s| s["id"] == "largest").unwrap();
    assert_eq!(step["workflow"]["name"], "documents");
    assert!(
        step["workflow"].get("version").is_none(),
        "the latest version of documents"
    );
}

#[test]
fn the_scan_schedule_and_its_emitter_fit_docs_scan() {
    let def = definition("scan.yaml");
    assert_eq!(def.max_concurrent_runs, Some(1));
    let [schedule] = def.schedules.as_slice() else {
        panic!("one schedule: {:?}", def.schedules)
    };
    assert_eq!(schedule.name, "every-15-minutes");
    def.validate_input(&schedule.input).unwrap();
    let input: ScanInput = serde_json::from_value(schedule.input.clone()).unwrap();
    assert_eq!(input.dir, "/usr/share/doc");
    assert!(
        def.validate_input(&serde_json::json!({"dir": "/d", "limit": 0}))
            .is_err()
    );
    assert!(def.validate_input(&serde_json::json!({})).is_err());

    let step = def.step("scan").unwrap();
    assert_eq!(step.handler, "docs.scan");
    let emit = step.emit.as_ref().expect("scan emits runs");
    assert_eq!((emit.workflow.as_str(), emit.version), ("documents", 0));
    assert!(emit.wait);
    assert_eq!(emit.max_in_flight, 64);

    // A real scan output, as the coordinator would see it.
    let tmp = TempDir::new("scan-emit");
    for pkg in ["zlib1g", "bash"] {
        fs::create_dir_all(tmp.0.join("doc").join(pkg)).unwrap();
        fs::write(
            tmp.0.join("doc").join(pkg).join("copyright"),
            format!("{pkg} copyright\n"),
        )
        .unwrap();
    }
    let store = FileStore::new(tmp.0.join("store"));
    let out = scan(
        &serde_json::from_value(serde_json::json!({"dir": tmp.0.join("doc")})).unwrap(),
        &store,
    )
    .unwrap();
    let output = serde_json::to_value(&out).unwrap();
    let mut b = Bindings::default();
    b.steps.insert("scan".into(), ("succeeded".into(), output.clone()));
    let items = emit.items.eval_list(&b).unwrap();
    assert_eq!(items.len(), 2);
    let documents = definition("documents.yaml");
    for (i, item) in items.into_iter().enumerate() {
        b.item = Some((i as u64, item));
        let key = emit.key.eval_key(&b).unwrap();
        assert_eq!(key, format!("{}@{}", out.files[i].path, out.files[i].sha256));
        let child = emit.input.as_ref().unwrap().render(&b).unwrap();
        assert_eq!(child, serde_json::json!({"path": out.files[i].path}));
        documents.validate_input(&child).unwrap();
    }

    // `summary` reads the scan's output through its template.
    let summary = def.step("summary").unwrap();
    assert_eq!(
        (summary.handler.as_str(), summary.depends_on.as_slice()),
        ("docs.scan_summary", &["scan".to_string()][..])
    );
    b.item = None;
    let rendered = summary.input.as_ref().unwrap().render(&b).unwrap();
    let input: ScanSummaryInput = serde_json::from_value(rendered).unwrap();
    assert_eq!(input.scan, out);
}
