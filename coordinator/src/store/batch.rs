//! [`Batch`]: writes on global keys (timers, outbox, indexes) that a caller hands to a store call,
//! sent in the same round trip just before the call's script.

/// Plain commands on global keys sent, in order, just before a run script in the same round trip
/// (see [`super::Store::complete_step`], [`super::Store::wait`]). Their replies are not read; they
/// are not atomic with the script (a crash between leaves at worst a timer or an index entry that
/// the attempt fence makes harmless).
#[derive(Clone, Default)]
pub struct Batch(redis::Pipeline);

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// `ZADD key score member`: `score` is Unix ms for the timers and the outbox.
    pub fn zadd(&mut self, key: impl AsRef<str>, member: impl AsRef<str>, score: i64) -> &mut Self {
        self.0.zadd(key.as_ref(), member.as_ref(), score).ignore();
        self
    }

    /// `ZREM key member...` (nothing for no member).
    pub fn zrem<M: AsRef<str>>(&mut self, key: impl AsRef<str>, members: impl IntoIterator<Item = M>) -> &mut Self {
        let members: Vec<String> = members.into_iter().map(|m| m.as_ref().to_string()).collect();
        if !members.is_empty() {
            self.0.zrem(key.as_ref(), members).ignore();
        }
        self
    }
}

impl From<Batch> for redis::Pipeline {
    fn from(b: Batch) -> Self {
        b.0
    }
}
