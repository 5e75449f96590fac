//! Claims on the durable-time sorted sets (timers, the outbox, due schedules): `claim.lua` leases
//! due entries to one coordinator, `renew.lua` moves a claim's lease (or gives entries back),
//! `release.lua` removes a handled entry unless it was rescheduled, and `expedite.lua` makes the
//! outbox's pending entries due at once.

use std::time::Duration;

use serde::Serialize;

use super::{
    Claimed, Lease, Store,
    script::{Standalone, number, unknown_reply},
};
use crate::error::Result;

static CLAIM: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("claim", include_str!("../scripts/claim.lua")));
static RENEW: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("renew", include_str!("../scripts/renew.lua")));
static RELEASE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("release", include_str!("../scripts/release.lua")));
static EXPEDITE: std::sync::LazyLock<Standalone> =
    std::sync::LazyLock::new(|| Standalone::new("expedite", include_str!("../scripts/expedite.lua")));

/// Most outbox entries one [`Store::expedite_outbox`] call moves.
pub const EXPEDITE_BATCH: usize = 10_000;

/// `claim.lua`'s argument.
#[derive(Serialize)]
struct ClaimArgs {
    now: i64,
    lease_ms: u64,
    limit: usize,
}

/// `renew.lua`'s argument.
#[derive(Serialize)]
struct RenewArgs<'a> {
    held: i64,
    until_ms: i64,
    members: &'a [String],
}

/// `release.lua`'s argument.
#[derive(Serialize)]
struct ReleaseArgs<'a> {
    member: &'a str,
    held: i64,
}

/// `expedite.lua`'s argument.
#[derive(Serialize)]
struct ExpediteArgs {
    now: i64,
    horizon: i64,
    limit: usize,
}

impl Store {
    /// Leases up to `limit` due timers (or outbox entries when `outbox`) for `lease`.
    ///
    /// # Errors
    /// [`crate::error::CoordinatorError::Redis`].
    pub async fn claim(&self, outbox: bool, now: i64, lease: Duration, limit: usize) -> Result<Vec<Claimed>> {
        let key = self.due_set_key(outbox);
        self.claim_key(&key, now, lease, limit).await
    }

    /// As [`Store::claim`], for any sorted set of due entries (the schedules' due times).
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer `claim.lua` does not give.
    pub async fn claim_key(&self, key: &str, now: i64, lease: Duration, limit: usize) -> Result<Vec<Claimed>> {
        let s = &*CLAIM;
        let args = ClaimArgs {
            now,
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
            limit,
        };
        let reply = s.call(self, &[key.to_string()], &args).await?;
        match reply.split_first() {
            Some((tag, [score, members @ ..])) if tag == "claimed" => {
                let lease = Lease::new(number(s.name(), score)?);
                Ok(members
                    .iter()
                    .map(|member| Claimed {
                        member: member.clone(),
                        lease: lease.clone(),
                    })
                    .collect())
            }
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// Moves `lease` forward to `until_ms` (Unix ms) for `members` that it still holds in `key`; with
    /// `until_ms` now, gives them back for any coordinator to claim at once. Returns how many moved.
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer `renew.lua` does not give; the lease is unchanged then.
    pub async fn renew(&self, key: &str, lease: &Lease, members: &[String], until_ms: i64) -> Result<usize> {
        if members.is_empty() {
            return Ok(0);
        }
        let mut held = lease.0.write().await;
        let moved = self.renew_members(key, *held, members, until_ms).await?;
        *held = until_ms;
        Ok(moved)
    }

    /// Gives one claimed entry back, due now, unless it is no longer held by its claim (a coordinator
    /// shutting down gives back what it claimed and has not started).
    ///
    /// # Errors
    /// `Redis`; the entry then comes due when its lease lapses.
    pub async fn give_back(&self, key: &str, claimed: &Claimed, now: i64) -> Result<()> {
        let held = claimed.lease.0.read().await;
        self.renew_members(key, *held, std::slice::from_ref(&claimed.member), now)
            .await?;
        drop(held);
        Ok(())
    }

    async fn renew_members(&self, key: &str, held: i64, members: &[String], until_ms: i64) -> Result<usize> {
        let s = &*RENEW;
        let args = RenewArgs {
            held,
            until_ms,
            members,
        };
        let reply = s.call(self, &[key.to_string()], &args).await?;
        match reply.as_slice() {
            [tag, n] if tag == "renewed" => number(s.name(), n),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// The key of the durable-time sorted set a claim comes from: the outbox (`outbox = true`) or
    /// the timers. For [`Store::renew`] and [`Store::give_back`].
    pub fn due_set_key(&self, outbox: bool) -> String {
        if outbox { self.keys.outbox() } else { self.keys.timers() }
    }

    /// Makes every pending outbox entry due now (those due within the dispatch grace), for the
    /// sweeper to re-send at once: called when a fault that stopped publishes has ended. Returns how
    /// many entries moved (at most [`EXPEDITE_BATCH`] per call).
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer `expedite.lua` does not give.
    pub async fn expedite_outbox(&self, now: i64) -> Result<usize> {
        let s = &*EXPEDITE;
        let args = ExpediteArgs {
            now,
            horizon: now.saturating_add(i64::try_from(self.dispatch_grace.as_millis()).unwrap_or(i64::MAX)),
            limit: EXPEDITE_BATCH,
        };
        let reply = s.call(self, &[self.keys.outbox()], &args).await?;
        match reply.as_slice() {
            [tag, n] if tag == "moved" => number(s.name(), n),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }

    /// Removes a claimed entry unless it was rescheduled since (or claimed again after its lease
    /// lapsed).
    ///
    /// # Errors
    /// `Redis`; `Internal` for an answer `release.lua` does not give.
    pub async fn release(&self, outbox: bool, claimed: &Claimed) -> Result<()> {
        let s = &*RELEASE;
        let key = self.due_set_key(outbox);
        let held = claimed.lease.0.read().await;
        let args = ReleaseArgs {
            member: &claimed.member,
            held: *held,
        };
        let reply = s.call(self, &[key], &args).await?;
        drop(held);
        match reply.as_slice() {
            [tag] if tag == "released" || tag == "kept" => Ok(()),
            _ => Err(unknown_reply(s.name(), &reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::script::assert_header_matches;

    #[test]
    fn the_claim_scripts_headers_name_their_arguments_and_build_no_key() {
        let members = vec!["m".to_string()];
        assert_header_matches(
            include_str!("../scripts/claim.lua"),
            "store::claims::ClaimArgs",
            &ClaimArgs {
                now: 1,
                lease_ms: 2,
                limit: 3,
            },
        );
        assert_header_matches(
            include_str!("../scripts/renew.lua"),
            "store::claims::RenewArgs",
            &RenewArgs {
                held: 1,
                until_ms: 2,
                members: &members,
            },
        );
        assert_header_matches(
            include_str!("../scripts/release.lua"),
            "store::claims::ReleaseArgs",
            &ReleaseArgs { member: "m", held: 1 },
        );
        assert_header_matches(
            include_str!("../scripts/expedite.lua"),
            "store::claims::ExpediteArgs",
            &ExpediteArgs {
                now: 1,
                horizon: 2,
                limit: 3,
            },
        );
    }
}
