//! Publishing an event (`publish_event.lua`): the waiting set is read first, so that the script
//! declares the steps hash of every run it may deliver to; a step that starts waiting in between
//! makes the script answer `again`, and the set is read again.

use std::time::Duration;

use redis::AsyncCommands;
use serde::Serialize;

use super::{
    Store,
    script::{Standalone, unknown_reply},
};
use crate::error::{CoordinatorError, Result};

static PUBLISH_EVENT: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("publish_event", include_str!("../scripts/publish_event.lua")));

/// Times [`Store::publish_event`] reads the waiting set again when steps keep starting to wait
/// between its read and its script: 5.
pub const PUBLISH_TRIES: usize = 5;

/// `publish_event.lua`'s argument.
#[derive(Serialize)]
struct PublishArgs<'a> {
    now: i64,
    payload: &'a str,
    ttl_s: u64,
    max_buffered: usize,
    identity: String,
    buffered_member: String,
    waiters: &'a [String],
}

impl Store {
    /// Delivers event (`name`, `key`) with `payload` to the steps waiting for it, or buffers it for
    /// `ttl` (at most `max_buffered` per name and key) when none waits. Returns the (run, step)
    /// pairs it was delivered to (empty: buffered).
    ///
    /// # Errors
    /// `Redis`; `Unavailable` when steps kept starting to wait for it [`PUBLISH_TRIES`] times in a
    /// row (nothing changed: publish again); `Internal` for an answer the script does not give.
    pub async fn publish_event(
        &self,
        name: &str,
        key: &str,
        payload: &str,
        ttl: Duration,
        max_buffered: usize,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        let s = &*PUBLISH_EVENT;
        let waiting = self.keys.event_waiters(name, key);
        for _ in 0..PUBLISH_TRIES {
            let waiters: Vec<String> = {
                let mut conn = self.conn();
                conn.smembers(&waiting).await?
            };
            let mut keys = vec![
                waiting.clone(),
                self.keys.event_buffer(name, key),
                self.keys.timers(),
                self.keys.event_buffers(),
            ];
            // A member that does not parse is skipped by the script without touching its key.
            keys.extend(
                waiters
                    .iter()
                    .map(|m| self.keys.steps(m.split('|').next().unwrap_or_default())),
            );
            let args = PublishArgs {
                now,
                payload,
                ttl_s: ttl.as_secs().max(1),
                max_buffered: max_buffered.max(1),
                identity: baton_shared::keys::event_identity(name, key),
                buffered_member: baton_shared::keys::buffered_member(name, key),
                waiters: &waiters,
            };
            let reply = s.call(self, &keys, &args).await?;
            match reply.split_first() {
                Some((tag, [])) if tag == "again" => continue,
                Some((tag, [])) if tag == "buffered" => return Ok(Vec::new()),
                Some((tag, pairs)) if tag == "delivered" && pairs.len() % 2 == 0 => {
                    return Ok(pairs.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect());
                }
                _ => return Err(unknown_reply(s.name(), &reply)),
            }
        }
        Err(CoordinatorError::Unavailable(format!(
            "event {}: steps kept starting to wait for it while it was published; nothing changed, publish it again",
            baton_shared::limits::echo(name)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::script::assert_header_matches;

    #[test]
    fn the_publish_scripts_header_names_its_arguments_and_it_builds_no_key() {
        assert_header_matches(
            include_str!("../scripts/publish_event.lua"),
            "store::events::PublishArgs",
            &PublishArgs {
                now: 1,
                payload: "{}",
                ttl_s: 2,
                max_buffered: 3,
                identity: "i".into(),
                buffered_member: "m".into(),
                waiters: &[],
            },
        );
    }
}
