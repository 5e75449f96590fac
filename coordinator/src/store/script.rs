//! The call of a standalone script (one that is not a run script: it has no common prelude and
//! its own KEYS): every key it touches in KEYS, one JSON argument with named fields, and a reply
//! whose first element is a tag. Each script has a typed struct for its arguments and an enum for
//! its reply, beside the [`super::Store`] method that calls it; a tag the enum does not know is an
//! error ([`unknown_reply`]), never a default.

use serde::Serialize;

use super::Store;
use crate::error::{CoordinatorError, Result};

/// A standalone script: its code and its name in metrics and errors.
pub(super) struct Standalone {
    script: redis::Script,
    name: &'static str,
}

impl Standalone {
    /// The script `code` (a `.lua` file, `include_str!`) named `name` (the file's stem).
    pub(super) fn new(name: &'static str, code: &str) -> Self {
        Self {
            script: redis::Script::new(code),
            name,
        }
    }

    /// The script's name (the file's stem).
    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the script with `keys` (every key it touches) and `args` as one JSON argument, and
    /// answers its reply as strings (`EVALSHA`, loading the script when Redis does not know it).
    ///
    /// # Errors
    /// `Redis`; `Internal` when the arguments do not serialize.
    pub(super) async fn call(&self, store: &Store, keys: &[String], args: &impl Serialize) -> Result<Vec<String>> {
        let json = serde_json::to_string(args)
            .map_err(|e| CoordinatorError::Internal(format!("{}.lua: arguments: {e}", self.name)))?;
        let mut invocation = self.script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        invocation.arg(json);
        let mut conn = store.commit_conn();
        let reply = crate::metrics::script(self.name, invocation.invoke_async::<Vec<String>>(&mut conn)).await?;
        // With `durability = "replicated"`, the script's writes reach the replicas before its
        // answer counts (WAIT covers this connection's writes so far; it holds the connection,
        // one of the store's commit connections, until then).
        if let Some(r) = store.durability() {
            let acked: u32 = redis::cmd("WAIT")
                .arg(r.replicas)
                .arg(r.timeout_ms())
                .query_async(&mut conn)
                .await?;
            r.check(self.name, acked)?;
        }
        Ok(reply)
    }
}

/// The error for a reply that a script's reply enum does not know: `Internal`, naming the script
/// and the tag (cut to 100 bytes).
pub(super) fn unknown_reply(script: &str, reply: &[String]) -> CoordinatorError {
    let tag = reply
        .first()
        .map_or_else(|| "nothing".to_string(), |t| baton_shared::limits::echo(t));
    CoordinatorError::Internal(format!("{script}.lua answered {tag} ({} elements)", reply.len()))
}

/// Parses one element of a reply as a number, naming the script when it is not one.
pub(super) fn number<T: std::str::FromStr>(script: &str, text: &str) -> Result<T> {
    text.parse().map_err(|_| {
        CoordinatorError::Internal(format!(
            "{script}.lua answered {} for a number",
            baton_shared::limits::echo(text)
        ))
    })
}

/// Test helper: panics unless the header of `lua` (its leading `--` comment lines) names every
/// field of `args` as JSON (`"field"`) and the argument struct `struct_path`, so the header and
/// the Rust struct cannot drift apart; and unless the script builds no key itself (no `':{'`, no
/// `':sem:'`, no prefix).
#[cfg(test)]
pub(super) fn assert_header_matches(lua: &str, struct_path: &str, args: &impl Serialize) {
    let header: String = lua
        .lines()
        .take_while(|l| l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        header.contains(struct_path),
        "the header does not name {struct_path}:\n{header}"
    );
    let value = serde_json::to_value(args).expect("arguments serialize");
    let fields = value.as_object().expect("arguments are a JSON object");
    for field in fields.keys() {
        assert!(
            header.contains(&format!("\"{field}\"")),
            "the header of the script for {struct_path} does not name field \"{field}\":\n{header}"
        );
    }
    let code: String = lua
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for built in ["':{'", "':sem:'", "PREFIX", "prefix"] {
        assert!(
            !code.contains(built),
            "the script for {struct_path} builds a key ({built})"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_reply_names_the_script_and_the_tag() {
        let e = unknown_reply("acquire", &["bogus".into(), "x".into()]).to_string();
        assert!(
            e.contains("acquire.lua") && e.contains("bogus") && e.contains("2 elements"),
            "{e}"
        );
        let e = unknown_reply("claim", &[]).to_string();
        assert!(e.contains("claim.lua answered nothing"), "{e}");
        let e = number::<u32>("renew", "-1").unwrap_err().to_string();
        assert!(e.contains("renew.lua") && e.contains("-1"), "{e}");
    }
}
