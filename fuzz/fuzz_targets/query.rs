//! Fuzz target: a run search filter (`baton_shared::query`), as the archive's ListRuns reads it.
//! The input is the query text. Parsing is bounded (bytes, depth, comparisons, path segments, IN
//! values), so nothing may panic or overflow the stack; a filter that parses must print a
//! canonical text that parses back to itself, and its SQL must hold placeholders only.
#![no_main]

use baton_shared::query::Filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Filter::parse(text) {
        Ok(filter) => {
            // The canonical text puts spaces around operators: a dense query near the size bound
            // may print longer than the bound.
            let canonical = filter.to_string();
            if canonical.len() <= baton_shared::query::MAX_QUERY_BYTES {
                assert_eq!(Filter::parse(&canonical).as_ref(), Ok(&filter), "{canonical}");
            }
            let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
            let sql = filter.to_sql(1, now);
            assert!(
                !sql.sql.contains(['\'', '"']),
                "a quote in the SQL: {}",
                sql.sql
            );
        }
        Err(e) => assert!(
            e.column >= 1 && e.column <= text.chars().count() + 1,
            "column out of the query: {e}"
        ),
    }
});
