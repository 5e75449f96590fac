//! Fuzz target: a CEL expression compiled and evaluated against a JSON input, as the coordinator
//! does for `when:` and the other expression fields. The input is `<source>\0<input JSON>` (no `\0`:
//! the whole input is the source, evaluated against `{}`). Compilation is bounded (source bytes,
//! nodes, depth) and evaluation by the cost budget, so nothing may panic, overflow the stack or run
//! long.
#![no_main]

use baton_shared::expr::{Bindings, Expr, Scope, Template, Want};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, input) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let input = serde_json::from_slice(input).unwrap_or_else(|_| serde_json::json!({}));
    let scope = Scope {
        steps: ["a".to_owned()].into_iter().collect(),
        item: true,
    };
    let bindings = Bindings {
        steps: [("a".to_owned(), ("succeeded".to_owned(), input.clone()))]
            .into_iter()
            .collect(),
        item: Some((0, input.clone())),
        input,
    };
    for want in [Want::Any, Want::Bool, Want::List, Want::Key, Want::Time] {
        if let Ok(e) = Expr::compile(source, &scope, want) {
            let _ = e.eval(&bindings);
            let _ = e.eval_bool(&bindings);
            let _ = e.eval_list(&bindings);
            let _ = e.eval_key(&bindings);
            let _ = e.eval_time_ms(&bindings);
        }
    }
    if let Ok(t) = Template::compile(&serde_json::Value::String(format!("${{{{ {source} }}}}")), &scope) {
        let _ = t.render(&bindings);
    }
});
