//! Cron schedules: which instants a cron expression in an IANA time zone names, and what to do with each
//! tick (fire it, buffer it, or record it as skipped with a reason). Pure logic: every function takes
//! the times it needs as Unix milliseconds and never reads the clock.
//!
//! # Daylight saving time
//!
//! A schedule is evaluated on the wall clock of its time zone and follows Vixie cron's rules, with one
//! difference: a run is a tick, an instant, so two wall-clock times that land on the same instant are one
//! tick. A schedule is *fixed-time* when neither its minute nor its hour field uses `*` (`30 2 * * *`,
//! `0,30 1-3 * * MON-FRI`); otherwise it is a *wildcard* schedule (`*/15 * * * *`, `0 * * * *`).
//!
//! - **Clocks go forward** (a range of wall-clock times never happens, e.g. 02:00-02:59 in New York on
//!   2026-03-08): a fixed-time schedule whose time falls in the skipped range fires once, at the first
//!   instant after the jump (03:00 local), so the day is never skipped silently. A wildcard schedule just
//!   has no ticks in the range (`0 * * * *` fires 23 times that day).
//! - **Clocks go back** (a range of wall-clock times happens twice, e.g. 01:00-01:59 in New York on
//!   2026-11-01): a fixed-time schedule fires on the first pass only (`30 1 * * *` fires once, at 01:30
//!   EDT). A wildcard schedule fires on both passes, which are different instants (`0 * * * *` fires 25
//!   times that day, at 01:00 EDT and again at 01:00 EST).
//!
//! The parsing and the search are [`croner`]'s. Croner applies these rules only to expressions with a
//! single second, minute and hour; this module applies them to every fixed-time expression (croner alone
//! skips `0,30 2 * * *` on a spring-forward day and fires `0,30 1 * * *` four times on a fall-back day).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for the run ids of schedule ticks (UUID v5). Never change it: run ids of past ticks depend
/// on it.
const TICK_NAMESPACE: Uuid = Uuid::from_u128(0x5b1c_7d3e_8f2a_4c61_9e0b_3a7f_d4c2_18e5);

/// The nicknames accepted in place of five fields.
const NICKNAMES: [&str; 6] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"];

/// The names of the six fields, seconds first (a five-field expression has no seconds).
const FIELD_NAMES: [&str; 6] = ["second", "minute", "hour", "day-of-month", "month", "day-of-week"];

/// Milliseconds in a day: the step of the scan for changes of UTC offset.
const DAY_MS: i64 = 86_400_000;

/// A parsed cron expression in a time zone.
///
/// The expression has 5 fields, `minute hour day-of-month month day-of-week` (ticks on whole minutes),
/// or 6, with seconds first. Each field takes `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and
/// `a-b/n`; months and weekdays also take names (`JAN`, `MON-FRI`; Sunday is 0 or 7). The day of month
/// also takes `L` (last day) and `W` (nearest weekday), the day of week `L` and `#` (`5#2`, the second
/// Friday). As in Vixie cron, when both day fields are restricted a day matching either one matches.
/// The nicknames `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily` and `@hourly` are accepted too.
///
/// Ticks are instants in Unix milliseconds (always whole seconds). See the [module docs](self) for what
/// happens when the clocks change.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    timezone: String,
    tz: Tz,
    cron: Cron,
    /// Neither the minute nor the hour field uses `*`: DST gaps fire after the jump, repeats fire once.
    fixed_time: bool,
    /// The expression matches no date at all (e.g. February 30).
    never: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expr, self.timezone)
    }
}

impl CronSchedule {
    /// Parses `expr`, 5 fields (minute precision) or 6 (seconds first), in `timezone`, an IANA time zone
    /// name ("Europe/Paris"; "UTC"). Surrounding whitespace is ignored in both.
    ///
    /// Errors: [`ScheduleError`] with `field` `"cron"` (the message quotes the expression and says what
    /// is wrong, naming the faulty field when there is one) or `"timezone"` (the name is not an IANA
    /// time zone name). An expression that never matches (February 30) is accepted;
    /// [`next_after`](Self::next_after) then returns `None`.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let expr = expr.trim();
        let timezone = timezone.trim();
        let cron = parse_cron(expr)?;
        let tz = Tz::from_str(timezone).map_err(|_| {
            let message = if timezone.is_empty() {
                "the time zone is empty; give an IANA time zone name such as \"Europe/Paris\" or \"UTC\"".to_string()
            } else {
                format!(
                    "{} is not an IANA time zone name (names are case-sensitive, \
                     such as \"Europe/Paris\", \"America/New_York\" or \"UTC\")",
                    crate::limits::echo(timezone)
                )
            };
            ScheduleError::new("timezone", message)
        })?;
        let fixed_time = !cron.pattern.minutes.from_wildcard && !cron.pattern.hours.from_wildcard;
        // Without a year field, an expression that matches any date matches one after 2000 (croner's
        // search gives up at year 5000). Known once here, so `next_after` never repeats that long search.
        let y2k = NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        let never = cron.find_next_occurrence(&y2k, true).is_err();
        Ok(Self {
            expr: expr.to_string(),
            timezone: timezone.to_string(),
            tz,
            cron,
            fixed_time,
            never,
        })
    }

    /// The expression, as given (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The IANA time zone name, as given (trimmed).
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// The first tick strictly after `after_ms` (Unix ms), in Unix ms; `None` if there is none (the
    /// expression never matches, e.g. February 30, or the search runs past year 5000).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        if self.never {
            return None;
        }
        let mut from = after_ms;
        let next = loop {
            let next = self.croner_next(from)?;
            // A fixed-time schedule fires on the first pass of a repeated wall-clock range only.
            match self.fixed_time.then(|| self.second_pass_end(next)).flatten() {
                Some(end) => from = end - 1,
                None => break next,
            }
        };
        // A fixed-time schedule whose time falls in a skipped range fires right after the jump.
        let jump = if self.fixed_time {
            self.first_gap_tick(after_ms, next)
        } else {
            None
        };
        Some(jump.map_or(next, |jump| jump.min(next)))
    }

    /// The ticks in `(after_ms, until_ms]` (Unix ms), oldest first, at most `limit` of them (the oldest).
    pub fn ticks(&self, after_ms: i64, until_ms: i64, limit: usize) -> Vec<i64> {
        let mut ticks = Vec::new();
        let mut from = after_ms;
        while ticks.len() < limit
            && let Some(tick) = self.next_after(from).filter(|&tick| tick <= until_ms)
        {
            ticks.push(tick);
            from = tick;
        }
        ticks
    }

    /// Croner's next match strictly after `from_ms`.
    fn croner_next(&self, from_ms: i64) -> Option<i64> {
        let start = self.tz.timestamp_millis_opt(from_ms).single()?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// The UTC offset at `ms`, in seconds.
    fn offset(&self, ms: i64) -> Option<i32> {
        let utc = DateTime::from_timestamp_millis(ms)?.naive_utc();
        Some(self.tz.offset_from_utc_datetime(&utc).fix().local_minus_utc())
    }

    /// If `ms` is on the second pass of a repeated wall-clock range, the instant that pass ends.
    fn second_pass_end(&self, ms: i64) -> Option<i64> {
        let at = self.tz.timestamp_millis_opt(ms).single()?;
        let LocalResult::Ambiguous(earlier, later) = self.tz.from_local_datetime(&at.naive_local()) else {
            return None;
        };
        if at != later || earlier == later {
            return None;
        }
        // The second pass starts when the clock goes back and lasts as long as the clock went back.
        let change = self.offset_change_in(earlier.timestamp_millis(), later.timestamp_millis())?;
        Some(change + (later - earlier).num_milliseconds())
    }

    /// Where the UTC offset changes in `(lo, hi]`, given that it differs at `lo` and `hi`: the first
    /// millisecond with the new offset.
    fn offset_change_in(&self, mut lo: i64, mut hi: i64) -> Option<i64> {
        let before = self.offset(lo)?;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset(mid)? == before {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }

    /// The first jump forward of the clock in `(after_ms, until_ms]` that skips a wall-clock time the
    /// expression matches: the instant of the jump. Offsets are sampled once a day, so two changes
    /// less than a day apart could be missed (no current time zone has those).
    fn first_gap_tick(&self, after_ms: i64, until_ms: i64) -> Option<i64> {
        let mut lo = after_ms;
        let mut lo_offset = self.offset(lo)?;
        while lo < until_ms {
            let hi = lo.saturating_add(DAY_MS).min(until_ms);
            let hi_offset = self.offset(hi)?;
            if hi_offset != lo_offset {
                let change = self.offset_change_in(lo, hi)?;
                let new_offset = self.offset(change)?;
                if new_offset > lo_offset && self.matches_between(change, lo_offset, new_offset) {
                    return Some(change);
                }
                lo = change;
                lo_offset = new_offset;
            } else {
                lo = hi;
            }
        }
        None
    }

    /// Whether the expression matches a wall-clock time skipped by the jump at `change_ms` from UTC
    /// offset `old` to `new` (seconds): the times in `[change + old, change + new)`.
    fn matches_between(&self, change_ms: i64, old: i32, new: i32) -> bool {
        let wall = |offset: i32| DateTime::from_timestamp_millis(change_ms + i64::from(offset) * 1000);
        let (Some(start), Some(end)) = (wall(old), wall(new)) else {
            return false;
        };
        let (start, end): (NaiveDateTime, NaiveDateTime) = (start.naive_utc(), end.naive_utc());
        self.cron.find_next_occurrence(&start, true).is_ok_and(|hit| hit < end)
    }
}

/// Parses the expression with croner, refusing what is not 5 or 6 fields (or a nickname).
fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    let invalid = |what: String| {
        ScheduleError::new(
            "cron",
            format!("invalid cron expression {}: {what}", crate::limits::echo(expr)),
        )
    };
    if expr.is_empty() {
        return Err(ScheduleError::new(
            "cron",
            "the cron expression is empty; expected 5 fields (minute hour day-of-month month day-of-week) \
             or 6 (seconds first)",
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    if expr.starts_with('@') {
        if !NICKNAMES.iter().any(|nickname| nickname.eq_ignore_ascii_case(expr)) {
            return Err(invalid(format!(
                "unknown nickname; use one of {}",
                NICKNAMES.join(", ")
            )));
        }
        return parser.parse(expr).map_err(|e| invalid(cron_error_text(&e)));
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let names = match fields.len() {
        5 => &FIELD_NAMES[1..],
        6 => &FIELD_NAMES[..],
        n => {
            return Err(invalid(format!(
                "it has {n} field{}; expected 5 (minute hour day-of-month month day-of-week) or 6 (second \
                 minute hour day-of-month month day-of-week)",
                if n == 1 { "" } else { "s" }
            )));
        }
    };
    parser.parse(expr).map_err(|e| {
        // Name the faulty field: parse each one alone, every other field a wildcard.
        for (i, field) in fields.iter().enumerate() {
            let probe: Vec<&str> = (0..fields.len()).map(|j| if j == i { *field } else { "*" }).collect();
            if let Err(field_error) = parser.parse(&probe.join(" ")) {
                let seconds_first = if fields.len() == 6 {
                    " (of 6 fields, seconds first)"
                } else {
                    ""
                };
                let text = match field_error {
                    // Croner's text shows the field upper-cased and with names replaced: say what is allowed.
                    CronError::IllegalCharacters(_) => format!("unexpected characters; {}", field_syntax(names[i])),
                    other => cron_error_text(&other),
                };
                return invalid(format!(
                    "the {} field {}{seconds_first}: {text}",
                    names[i],
                    crate::limits::echo(field)
                ));
            }
        }
        invalid(cron_error_text(&e))
    })
}

/// What a field accepts, for an error message.
fn field_syntax(name: &str) -> &'static str {
    match name {
        "second" | "minute" => "use numbers 0-59, *, ranges a-b, lists a,b and steps */n or a-b/n",
        "hour" => "use numbers 0-23, *, ranges a-b, lists a,b and steps */n or a-b/n",
        "day-of-month" => "use numbers 1-31, *, ranges a-b, lists a,b, steps */n or a-b/n, L (last day) and W",
        "month" => "use numbers 1-12 or names JAN-DEC, *, ranges a-b, lists a,b and steps */n or a-b/n",
        _ => "use numbers 0-7 (0 and 7 are Sunday) or names SUN-SAT, *, ranges a-b, lists a,b, steps */n, L and #",
    }
}

/// Croner's error, without its type-name prefixes.
fn cron_error_text(e: &CronError) -> String {
    let text = match e {
        CronError::InvalidPattern(m) | CronError::ComponentError(m) => m.clone(),
        CronError::IllegalCharacters(m) => m.replace("CronPattern contains", "contains"),
        other => other.to_string(),
    };
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    };
    text.trim_end_matches('.').to_string()
}

/// A schedule setting refused: `field` is `"cron"`, `"timezone"` or `"overlap"`; `message` says what is
/// wrong, quoting the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// The setting at fault: `"cron"`, `"timezone"` or `"overlap"`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ScheduleError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// What a tick does when the schedule's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Skip the tick, recording why (the default).
    #[default]
    Skip,
    /// Keep the latest tick and fire it when the previous run ends.
    BufferOne,
    /// Fire anyway: runs of the schedule may overlap.
    AllowAll,
    /// Cancel the previous run, then fire.
    CancelOther,
}

impl OverlapPolicy {
    /// Every policy, in declaration order.
    pub const ALL: [Self; 4] = [Self::Skip, Self::BufferOne, Self::AllowAll, Self::CancelOther];

    /// The policy's word, as serialized: `skip`, `buffer_one`, `allow_all`, `cancel_other`.
    pub fn word(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::BufferOne => "buffer_one",
            Self::AllowAll => "allow_all",
            Self::CancelOther => "cancel_other",
        }
    }

    /// The policy named by `s`, one of the [`word`](Self::word)s (surrounding whitespace ignored).
    /// Errors: [`ScheduleError`] with `field` `"overlap"`, listing the words.
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let word = s.trim();
        Self::ALL
            .into_iter()
            .find(|policy| policy.word() == word)
            .ok_or_else(|| {
                let words: Vec<&str> = Self::ALL.iter().map(|policy| policy.word()).collect();
                ScheduleError::new(
                    "overlap",
                    format!(
                        "unknown overlap policy {}; use one of {}",
                        crate::limits::echo(s),
                        words.join(", ")
                    ),
                )
            })
    }
}

/// What to do with one tick (pure decision, see [`decide`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickAction {
    /// Start a run for this tick.
    Fire,
    /// Cancel the previous run, then start one.
    CancelPreviousThenFire,
    /// Keep this tick to fire when the previous run ends (replacing an older buffered tick, which is then
    /// skipped).
    Buffer,
    /// Record it as skipped, with the reason.
    Skip(String),
}

/// Decides one tick.
///
/// `tick_ms` is the tick and `now_ms` now (Unix ms); `catchup_window_ms` is how late a tick may still
/// fire (ms; a tick exactly that late still fires; a negative window counts as 0); `previous_running` is
/// the id of the run of the previous fire when that run is still going; `policy` what to do then.
///
/// A tick later than the window is `Skip("missed: the coordinator was down; <late> late, over the
/// catch-up window of <window>")`, whatever runs. Otherwise, with the previous run still going: `Skip`
/// gives `Skip("the previous run <id> is still running")`, `BufferOne` gives `Buffer`, `AllowAll` gives
/// `Fire` and `CancelOther` gives `CancelPreviousThenFire`. With nothing running: `Fire`.
pub fn decide(
    tick_ms: i64,
    now_ms: i64,
    catchup_window_ms: i64,
    previous_running: Option<&str>,
    policy: OverlapPolicy,
) -> TickAction {
    let late_ms = now_ms.saturating_sub(tick_ms);
    let window_ms = catchup_window_ms.max(0);
    if late_ms > window_ms {
        return TickAction::Skip(format!(
            "missed: the coordinator was down; {} late, over the catch-up window of {}",
            human(late_ms),
            human(window_ms)
        ));
    }
    match (previous_running, policy) {
        (None, _) | (Some(_), OverlapPolicy::AllowAll) => TickAction::Fire,
        (Some(id), OverlapPolicy::Skip) => TickAction::Skip(format!("the previous run {id} is still running")),
        (Some(_), OverlapPolicy::BufferOne) => TickAction::Buffer,
        (Some(_), OverlapPolicy::CancelOther) => TickAction::CancelPreviousThenFire,
    }
}

/// A catch-up window in ms as [`decide`] takes it, from the `u64` ms a schedule record or a
/// `CreateScheduleRequest` holds: saturating at `i64::MAX` instead of wrapping negative (a window
/// of 2^63 ms or more used to become 0 and skip every tick).
pub fn window_ms(catchup_window_ms: u64) -> i64 {
    i64::try_from(catchup_window_ms).unwrap_or(i64::MAX)
}

/// Checks the `catchup_window_ms` of a `CreateScheduleRequest`: 0 means the default
/// ([`crate::definition::DEFAULT_CATCHUP_WINDOW`]), anything else must be at most
/// [`crate::limits::MAX_CATCHUP_WINDOW`]. Returns the window to store, in ms.
///
/// # Errors
/// `catchup_window_ms: must be at most 30days (got "...")`, for `INVALID_ARGUMENT`.
pub fn check_catchup_window_ms(catchup_window_ms: u64) -> Result<u64, String> {
    if catchup_window_ms == 0 {
        return Ok(u64::try_from(crate::definition::DEFAULT_CATCHUP_WINDOW.as_millis()).unwrap_or(u64::MAX));
    }
    crate::limits::check_duration(
        Duration::from_millis(catchup_window_ms),
        crate::limits::MAX_CATCHUP_WINDOW,
    )
    .map(|_| catchup_window_ms)
    .map_err(|e| format!("catchup_window_ms: {e}"))
}

/// A duration in ms for a reason text ("2h 5m 3s"), to the second when it is at least one; 0 for
/// a negative one.
pub fn human(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let ms = if ms >= 1000 { ms - ms % 1000 } else { ms };
    crate::duration::format(Duration::from_millis(ms))
}

/// The run id of the run that the tick `tick_ms` (Unix ms) of schedule `schedule_id` starts (UUID v5):
/// the same (schedule, tick) always gives the same id, so a tick can never start two runs.
pub fn run_id_for_tick(schedule_id: &str, tick_ms: i64) -> String {
    let name = format!("tick\u{0}{schedule_id}\u{0}{tick_ms}");
    Uuid::new_v5(&TICK_NAMESPACE, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;

    fn schedule(expr: &str, timezone: &str) -> CronSchedule {
        CronSchedule::parse(expr, timezone).unwrap_or_else(|e| panic!("{expr} ({timezone}): {e}"))
    }

    /// A UTC instant in Unix ms.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap().timestamp_millis()
    }

    /// The ticks from local midnight of the given day to the next local midnight, in UTC "HH:MM:SS".
    fn local_day(s: &CronSchedule, y: i32, mo: u32, d: u32) -> Vec<String> {
        let tz: Tz = s.timezone().parse().unwrap();
        let midnight = |day: NaiveDate| tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap()).unwrap();
        let day = NaiveDate::from_ymd_opt(y, mo, d).unwrap();
        let start = midnight(day).timestamp_millis();
        let end = midnight(day.succ_opt().unwrap()).timestamp_millis();
        s.ticks(start - 1, end - 1, 1000)
            .into_iter()
            .map(|t| {
                DateTime::from_timestamp_millis(t)
                    .unwrap()
                    .format("%H:%M:%S")
                    .to_string()
            })
            .collect()
    }

    fn err(expr: &str, timezone: &str) -> ScheduleError {
        CronSchedule::parse(expr, timezone).expect_err(expr)
    }

    #[test]
    fn parses_five_and_six_fields() {
        let five = schedule(" */15 * * * * ", "UTC");
        assert_eq!(five.expr(), "*/15 * * * *");
        assert_eq!(five.timezone(), "UTC");
        assert_eq!(format!("{five:?}"), "*/15 * * * * (UTC)");
        assert_eq!(
            five.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 1, 0, 15, 0))
        );

        let six = schedule("30 */5 * * * *", "Europe/Paris");
        assert_eq!(format!("{six:?}"), "30 */5 * * * * (Europe/Paris)");
        assert_eq!(
            six.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 1, 0, 0, 30))
        );
        assert_eq!(
            six.next_after(utc(2026, 1, 1, 0, 0, 30)),
            Some(utc(2026, 1, 1, 0, 5, 30))
        );

        let every_second = schedule("* * * * * *", "UTC");
        let t = utc(2026, 1, 1, 0, 0, 0);
        assert_eq!(every_second.next_after(t), Some(t + 1000));
        assert_eq!(every_second.next_after(t + 500), Some(t + 1000));
        assert_eq!(every_second.next_after(t - 1), Some(t));

        // Names, nicknames, and Vixie's day-of-month OR day-of-week.
        let weekdays = schedule("0 9 * * mon-fri", "UTC");
        assert_eq!(
            weekdays.next_after(utc(2026, 1, 2, 9, 0, 0)),
            Some(utc(2026, 1, 5, 9, 0, 0))
        ); // Fri -> Mon
        let daily = schedule("@daily", "UTC");
        assert_eq!(
            daily.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 2, 0, 0, 0))
        );
        let either = schedule("0 0 13 * 5", "UTC"); // the 13th, and every Friday
        assert_eq!(
            either.ticks(utc(2026, 2, 1, 0, 0, 0), utc(2026, 2, 28, 0, 0, 0), 10),
            [6, 13, 20, 27].map(|d| utc(2026, 2, d, 0, 0, 0))
        );
    }

    #[test]
    fn refuses_bad_expressions_naming_the_field() {
        for (expr, says) in [
            ("", "empty"),
            ("* * *", "it has 3 fields; expected 5"),
            (
                "0 0 1 1 * 2030",
                "the day-of-week field \"2030\" (of 6 fields, seconds first)",
            ),
            ("1 2 3 4 5 6 7", "it has 7 fields"),
            ("61 * * * *", "the minute field \"61\""),
            ("* 24 * * *", "the hour field \"24\""),
            ("0 0 32 * *", "the day-of-month field \"32\""),
            ("0 0 * 13 *", "the month field \"13\""),
            ("0 0 * * 8", "the day-of-week field \"8\""),
            (
                "60 * * * * *",
                "the second field \"60\" (of 6 fields, seconds first): number out of bounds",
            ),
            ("*/0 * * * *", "the minute field \"*/0\": step cannot be zero"),
            ("a * * * *", "the minute field \"a\""),
            (
                "0 0 * * MON-XYZ",
                "the day-of-week field \"MON-XYZ\": unexpected characters; use numbers 0-7",
            ),
            ("@reboot", "unknown nickname"),
        ] {
            let e = err(expr, "UTC");
            assert_eq!(e.field, "cron", "{expr}");
            assert!(e.message.contains(says), "{expr}: {}", e.message);
            assert!(
                e.message.contains(&format!("{:?}", expr.trim())) || expr.is_empty(),
                "{}",
                e.message
            );
            assert!(e.to_string().starts_with("cron: "));
        }
        for zone in ["Mars/Olympus_Mons", "europe/paris", "CEST+2", ""] {
            let e = err("* * * * *", zone);
            assert_eq!(e.field, "timezone", "{zone}");
            assert!(e.message.contains("IANA time zone name"), "{}", e.message);
        }
        assert!(
            err("* * * * *", "Europe/Pariss")
                .message
                .contains("\"Europe/Pariss\" is not an IANA time zone name")
        );
        // A bad expression is reported before a bad zone.
        assert_eq!(err("nope", "nowhere").field, "cron");
    }

    #[test]
    fn ticks_are_bounded_and_limited() {
        let s = schedule("*/15 * * * *", "UTC");
        let t0 = utc(2026, 5, 1, 12, 0, 0);
        assert_eq!(s.next_after(t0), Some(t0 + 15 * MINUTE));
        assert_eq!(s.next_after(t0 - 1), Some(t0));
        // (after, until]: the tick at `after` is out, the tick at `until` is in.
        assert_eq!(s.ticks(t0, t0 + HOUR, 100), [15, 30, 45, 60].map(|m| t0 + m * MINUTE));
        assert_eq!(
            s.ticks(t0 - 1, t0 + HOUR - 1, 100),
            [0, 15, 30, 45].map(|m| t0 + m * MINUTE)
        );
        // The limit keeps the oldest.
        assert_eq!(s.ticks(t0, t0 + 24 * HOUR, 2), [t0 + 15 * MINUTE, t0 + 30 * MINUTE]);
        assert_eq!(s.ticks(t0, t0 + 24 * HOUR, 1000).len(), 96);
        assert!(s.ticks(t0, t0 + 24 * HOUR, 0).is_empty());
        assert!(s.ticks(t0, t0 + 15 * MINUTE - 1, 10).is_empty());
        assert!(s.ticks(t0, t0 - HOUR, 10).is_empty());
        // Before 1970 too.
        assert_eq!(s.next_after(-1), Some(0));
    }

    #[test]
    fn an_impossible_date_never_ticks() {
        let s = schedule("0 0 30 2 *", "UTC");
        assert_eq!(s.next_after(0), None);
        assert!(s.ticks(0, i64::MAX, 10).is_empty());
        // February 29 does come.
        let leap = schedule("0 12 29 2 *", "Europe/Paris");
        assert_eq!(
            leap.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2028, 2, 29, 11, 0, 0))
        );
    }

    #[test]
    fn new_york_spring_forward_fires_a_skipped_time_once_after_the_jump() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC); 02:00-02:59 never happens.
        let s = schedule("30 2 * * *", "America/New_York");
        assert_eq!(local_day(&s, 2026, 3, 7), ["07:30:00"]); // 02:30 EST
        assert_eq!(local_day(&s, 2026, 3, 8), ["07:00:00"]); // 03:00 EDT, right after the jump
        assert_eq!(local_day(&s, 2026, 3, 9), ["06:30:00"]); // 02:30 EDT
        assert_eq!(
            schedule("0 30 2 * * *", "America/New_York").next_after(utc(2026, 3, 8, 0, 0, 0)),
            Some(utc(2026, 3, 8, 7, 0, 0))
        );

        // Croner alone skips this one that day; several skipped times are one tick.
        let twice = schedule("0,30 2 * * *", "America/New_York");
        assert_eq!(local_day(&twice, 2026, 3, 7), ["07:00:00", "07:30:00"]);
        assert_eq!(local_day(&twice, 2026, 3, 8), ["07:00:00"]);
        assert_eq!(local_day(&twice, 2026, 3, 9), ["06:00:00", "06:30:00"]);
        let hours = schedule("0 1-3 * * *", "America/New_York");
        assert_eq!(local_day(&hours, 2026, 3, 8), ["06:00:00", "07:00:00"]); // 01:00 EST; 02:00 and 03:00 EDT
        // Only the jump's own day: a Monday-only schedule does not fire on that Sunday.
        assert_eq!(
            local_day(&schedule("30 2 * * 1", "America/New_York"), 2026, 3, 8),
            Vec::<String>::new()
        );

        // Wildcard schedules have no ticks in the skipped hour.
        let hourly = schedule("0 * * * *", "America/New_York");
        let day = local_day(&hourly, 2026, 3, 8);
        assert_eq!(day.len(), 23);
        assert_eq!(day[..3], ["05:00:00", "06:00:00", "07:00:00"]); // 00:00 EST, 01:00 EST, 03:00 EDT
        let quarter = schedule("*/15 * * * *", "America/New_York");
        assert_eq!(local_day(&quarter, 2026, 3, 8).len(), 23 * 4);
        assert_eq!(
            local_day(&schedule("*/30 2 * * *", "America/New_York"), 2026, 3, 8),
            Vec::<String>::new()
        );
    }

    #[test]
    fn new_york_fall_back_fires_a_fixed_time_once_and_each_real_hour() {
        // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:00-01:59 happens twice.
        let s = schedule("30 1 * * *", "America/New_York");
        assert_eq!(local_day(&s, 2026, 10, 31), ["05:30:00"]); // 01:30 EDT
        assert_eq!(local_day(&s, 2026, 11, 1), ["05:30:00"]); // 01:30 EDT, not again at 01:30 EST
        assert_eq!(local_day(&s, 2026, 11, 2), ["06:30:00"]); // 01:30 EST
        // From inside either pass.
        assert_eq!(
            s.next_after(utc(2026, 11, 1, 5, 15, 0)),
            Some(utc(2026, 11, 1, 5, 30, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 11, 1, 6, 15, 0)),
            Some(utc(2026, 11, 2, 6, 30, 0))
        );

        // Croner alone fires this one four times that day.
        let twice = schedule("0,30 1 * * *", "America/New_York");
        assert_eq!(local_day(&twice, 2026, 11, 1), ["05:00:00", "05:30:00"]);
        assert_eq!(
            twice.next_after(utc(2026, 11, 1, 5, 45, 0)),
            Some(utc(2026, 11, 2, 6, 0, 0))
        );
        let seconds = schedule("*/20 59 1 * * *", "America/New_York");
        assert_eq!(local_day(&seconds, 2026, 11, 1), ["05:59:00", "05:59:20", "05:59:40"]);

        // A wildcard schedule fires at each real hour: 25 instants, 01:00 EDT and 01:00 EST both.
        let hourly = schedule("0 * * * *", "America/New_York");
        let day = local_day(&hourly, 2026, 11, 1);
        assert_eq!(day.len(), 25);
        assert_eq!(day[..4], ["04:00:00", "05:00:00", "06:00:00", "07:00:00"]);
        let mut distinct = day.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 25);
        assert_eq!(
            hourly.next_after(utc(2026, 11, 1, 5, 30, 0)),
            Some(utc(2026, 11, 1, 6, 0, 0))
        );
        assert_eq!(
            local_day(&schedule("*/15 * * * *", "America/New_York"), 2026, 11, 1).len(),
            25 * 4
        );
    }

    #[test]
    fn paris_changes_of_clock() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let s = schedule("30 2 * * *", "Europe/Paris");
        assert_eq!(local_day(&s, 2026, 3, 28), ["01:30:00"]);
        assert_eq!(local_day(&s, 2026, 3, 29), ["01:00:00"]);
        assert_eq!(local_day(&s, 2026, 3, 30), ["00:30:00"]);
        let hourly = schedule("0 * * * *", "Europe/Paris");
        assert_eq!(local_day(&hourly, 2026, 3, 29).len(), 23);
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00-02:59 happens twice.
        assert_eq!(local_day(&s, 2026, 10, 25), ["00:30:00"]);
        assert_eq!(local_day(&hourly, 2026, 10, 25).len(), 25);
        // A schedule a year out still sees the jump on its day.
        let yearly = schedule("30 2 29 3 *", "Europe/Paris");
        assert_eq!(
            yearly.next_after(utc(2025, 4, 1, 0, 0, 0)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
        assert_eq!(
            yearly.next_after(utc(2026, 3, 29, 1, 0, 0)),
            Some(utc(2027, 3, 29, 0, 30, 0))
        );
    }

    #[test]
    fn decide_per_policy_and_window() {
        let tick = utc(2026, 6, 1, 12, 0, 0);
        let window = 10 * MINUTE;
        for policy in OverlapPolicy::ALL {
            // Nothing running: fire, on time or late within the window (inclusive).
            for now in [tick, tick + 1, tick + window, tick - 5000] {
                assert_eq!(decide(tick, now, window, None, policy), TickAction::Fire, "{policy:?}");
            }
            // Over the window: skipped, running or not.
            for running in [None, Some("r1")] {
                assert_eq!(
                    decide(tick, tick + 2 * HOUR + 5 * MINUTE + 3500, window, running, policy),
                    TickAction::Skip(
                        "missed: the coordinator was down; 2h 5m 3s late, over the catch-up window of 10m".into()
                    )
                );
                assert!(
                    matches!(decide(tick, tick + window + 1, window, running, policy), TickAction::Skip(r) if r.starts_with("missed:"))
                );
            }
        }
        let running = |policy| decide(tick, tick + MINUTE, window, Some("run-7"), policy);
        assert_eq!(
            running(OverlapPolicy::Skip),
            TickAction::Skip("the previous run run-7 is still running".into())
        );
        assert_eq!(running(OverlapPolicy::BufferOne), TickAction::Buffer);
        assert_eq!(running(OverlapPolicy::AllowAll), TickAction::Fire);
        assert_eq!(running(OverlapPolicy::CancelOther), TickAction::CancelPreviousThenFire);
        // No window: only a tick that is not late fires; a negative window counts as none.
        assert_eq!(decide(tick, tick, 0, None, OverlapPolicy::Skip), TickAction::Fire);
        assert_eq!(
            decide(tick, tick + 250, -5, None, OverlapPolicy::Skip),
            TickAction::Skip("missed: the coordinator was down; 250ms late, over the catch-up window of 0s".into())
        );
    }

    #[test]
    fn long_values_are_echoed_cut() {
        let long = "x".repeat(100_000);
        assert!(err(&long, "UTC").message.len() < 500);
        assert!(err("* * * * *", &long).message.len() < 500);
        assert!(OverlapPolicy::parse(&long).unwrap_err().message.len() < 500);
    }

    #[test]
    fn a_huge_catchup_window_saturates_and_is_refused_at_the_edge() {
        let now = utc(2030, 1, 1, 0, 0, 0);
        // 2^63 ms and more used to wrap negative, then count as 0: every tick was skipped
        for window in [1_u64 << 63, u64::MAX] {
            assert_eq!(
                decide(now - 1_000, now, window_ms(window), None, OverlapPolicy::Skip),
                TickAction::Fire
            );
        }
        assert_eq!(
            decide(i64::MIN, i64::MAX, window_ms(u64::MAX), None, OverlapPolicy::Skip),
            TickAction::Fire
        );
        assert!(matches!(
            decide(i64::MIN, i64::MAX, 0, None, OverlapPolicy::Skip),
            TickAction::Skip(_)
        ));
        assert_eq!(check_catchup_window_ms(0), Ok(3_600_000));
        assert_eq!(check_catchup_window_ms(60_000), Ok(60_000));
        let e = check_catchup_window_ms(u64::MAX).unwrap_err();
        assert!(e.starts_with("catchup_window_ms: must be at most 30days (got "), "{e}");
    }

    #[test]
    fn overlap_policy_words() {
        assert_eq!(OverlapPolicy::default(), OverlapPolicy::Skip);
        for policy in OverlapPolicy::ALL {
            assert_eq!(OverlapPolicy::parse(policy.word()), Ok(policy));
            assert_eq!(
                serde_json::to_string(&policy).unwrap(),
                format!("\"{}\"", policy.word())
            );
            assert_eq!(
                serde_json::from_str::<OverlapPolicy>(&format!("\"{}\"", policy.word())).unwrap(),
                policy
            );
        }
        assert_eq!(OverlapPolicy::parse(" buffer_one "), Ok(OverlapPolicy::BufferOne));
        let e = OverlapPolicy::parse("queue").unwrap_err();
        assert_eq!(e.field, "overlap");
        assert_eq!(
            e.message,
            "unknown overlap policy \"queue\"; use one of skip, buffer_one, allow_all, cancel_other"
        );
    }

    #[test]
    fn tick_run_ids_are_stable_and_distinct() {
        let id = run_id_for_tick("nightly", 1_780_000_000_000);
        assert_eq!(id, run_id_for_tick("nightly", 1_780_000_000_000));
        assert!(crate::ids::is_run_id(&id));
        assert_ne!(id, run_id_for_tick("nightly", 1_780_000_060_000));
        assert_ne!(id, run_id_for_tick("hourly", 1_780_000_000_000));
        assert_ne!(run_id_for_tick("a\u{0}1", 2), run_id_for_tick("a", 12));
        assert_ne!(id, crate::ids::run_id_for_key("nightly", "1780000000000"));
    }
}
