//! The run filter language (issue 20, section 4): `status = "failed" AND created > "-24h" AND
//! input.customer.id = "c-42"`. One module turns the text a user types into a checked syntax tree
//! ([`Filter`]), prints it back in a canonical form, writes it as a parameterised SQL condition over
//! the archive's `runs` table ([`Filter::to_sql`]) and evaluates it on a run still in Redis
//! ([`Filter::matches`]) with the same meaning. Pure: no I/O, no clock (the caller passes `now`).
//!
//! # Grammar
//!
//! ```text
//! filter     := or
//! or         := and ("OR" and)*
//! and        := not ("AND" not)*
//! not        := "NOT" not | "(" or ")" | comparison
//! comparison := field op value | field "IN" "(" value ("," value)* ")"
//! op         := "=" | "!=" | "<" | "<=" | ">" | ">="
//! field      := "id" | "workflow" | "version" | "status" | "created" | "finished" | "parent"
//!             | "idempotency_key" | "error_type" | ("input" | "output") ("." segment)+
//! segment    := identifier | string | digits            (digits: an array index)
//! value      := string | integer | decimal | "true" | "false" | "null"
//! ```
//!
//! Keywords (`AND`, `OR`, `NOT`, `IN`, `true`, `false`, `null`) take any case; field names are
//! lower case. Strings are JSON strings (double quotes, JSON escapes). `created` and `finished`
//! take a string holding an RFC 3339 time (`"2026-11-21T08:30:00Z"`) or a time relative to `now`
//! (`"-24h"`, `"-7days"`, humantime's units, at most [`MAX_RELATIVE_TIME`] back).
//!
//! The text is lexed with `winnow` combinators; the token stream is then read by a small
//! recursive-descent parser that checks the depth before it recurses and names the column of the
//! offending token in every error.
//!
//! # Bounds
//!
//! The query is at most [`MAX_QUERY_BYTES`] bytes (checked before anything else), nests at most
//! [`MAX_DEPTH`] levels of parentheses and `NOT` (checked before the parser recurses), holds at
//! most [`MAX_COMPARISONS`] comparisons, a path at most [`MAX_PATH_SEGMENTS`] segments of at most
//! [`MAX_SEGMENT_BYTES`] bytes each, and an `IN` list at most [`MAX_IN_VALUES`] values. Anything
//! over a bound is a [`QueryError`].
//!
//! # Meaning (the same in SQL and in [`Filter::matches`])
//!
//! SQL's three-valued logic: a comparison with a missing value (`parent` of a top-level run,
//! `finished` of a live run, a missing JSON path) is unknown, `NOT unknown` is unknown, and a run
//! matches when the whole filter is true. Two exceptions, both from PostgreSQL's operators:
//! `input.a.b = v` (a path of keys only) is JSON containment, false (not unknown) when the path is
//! missing, so `NOT input.a.b = v` matches runs without the field; `error_type = "X"` is true when
//! any failed attempt of the run had that error type, and `error_type != "X"` when none had.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value as Json;
use winnow::Parser;
use winnow::ascii::{digit1, multispace0};
use winnow::combinator::{alt, opt, preceded, repeat};
use winnow::token::{any, none_of, one_of, take_while};

use crate::proto::RunStatus;

/// The longest query, in bytes (UTF-8), checked before parsing.
pub const MAX_QUERY_BYTES: usize = 4096;
/// The deepest nesting of parentheses and `NOT`.
pub const MAX_DEPTH: usize = 32;
/// The most comparisons (`field op value`, `field IN (...)`) in one query.
pub const MAX_COMPARISONS: usize = 64;
/// The most segments of an `input.` or `output.` path (after `input`/`output`).
pub const MAX_PATH_SEGMENTS: usize = 8;
/// The longest path segment, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 128;
/// The most values in one `IN (...)` list.
pub const MAX_IN_VALUES: usize = 100;
/// The furthest back a relative time (`"-24h"`) may reach: 100 years of 365.25 days.
pub const MAX_RELATIVE_TIME: Duration = Duration::from_secs(36_525 * 86_400);
/// How many characters of a token an error message echoes.
const ECHO_CHARS: usize = 40;
/// The largest array index in a path (PostgreSQL's `integer`).
const MAX_INDEX: u32 = i32::MAX as u32;

/// A parsed, checked filter. Build it with [`Filter::parse`]; print it with `Display` (canonical
/// text that parses back to the same filter, when it fits [`MAX_QUERY_BYTES`]: the canonical form
/// puts one space around operators, so a dense query near the bound can print longer); use it
/// with [`Filter::to_sql`] or [`Filter::matches`].
///
/// ```
/// use baton_shared::query::{Filter, SqlValue};
///
/// let filter = Filter::parse(r#"status = "FAILED" and input.customer.id = "c-42""#)?;
/// assert_eq!(filter.to_string(), r#"status = "failed" AND input.customer.id = "c-42""#);
/// // Placeholders from $2: the caller's own condition (the namespace) is $1.
/// let sql = filter.to_sql(2, chrono::Utc::now());
/// assert_eq!(sql.sql, "(r.status = $2::text AND r.input @> $3::jsonb)");
/// assert_eq!(sql.params[0], SqlValue::Text("failed".into()));
/// assert_eq!(
///     sql.params[1],
///     SqlValue::Json(serde_json::json!({"customer": {"id": "c-42"}}))
/// );
///
/// let refused = Filter::parse(r#"status = "failed" AND version = )"#).map_err(|e| e.to_string());
/// let message = r#"query: column 33: expected a value after "=", found ")""#;
/// assert_eq!(refused, Err(message.to_owned()));
/// # Ok::<(), baton_shared::query::QueryError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

/// Why a query was refused: the 1-based character column of the offending token (the end of the
/// query plus one when the query ended too early) and what was wrong. Displays as
/// `query: column 17: expected a value after "=", found ")"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query: column {column}: {message}")]
pub struct QueryError {
    /// 1-based column, counted in characters (Unicode scalar values).
    pub column: usize,
    /// What was wrong, echoing at most 40 characters of a token.
    pub message: String,
}

/// A parameter of the SQL that [`Filter::to_sql`] writes, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// Bound as `text` (`$n::text`).
    Text(String),
    /// Bound as `bigint` (`$n::bigint`).
    Int(i64),
    /// Bound as `timestamptz` (`$n::timestamptz`), whole microseconds.
    Time(DateTime<Utc>),
    /// Bound as `jsonb` (`$n::jsonb`).
    Json(Json),
    /// Bound as `text[]` (`$n::text[]`): a JSON path or a set of error types.
    TextArray(Vec<String>),
}

/// A boolean SQL condition and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlWhere {
    /// The condition over the `runs` table aliased `r`, with `$n` placeholders only: no value of
    /// the query appears in it.
    pub sql: String,
    /// The values of the placeholders `$first`, `$first + 1`, ..., in order.
    pub params: Vec<SqlValue>,
}

/// What [`Filter::matches`] knows of a run (live or finished, from Redis). Words and shapes as in
/// the archive's `runs` table: `status` is the lower-case word (`succeeded`), `error_types` the
/// distinct error types of its failed attempts.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts<'a> {
    /// The run id.
    pub id: &'a str,
    /// The workflow name.
    pub workflow: &'a str,
    /// The workflow version.
    pub version: u32,
    /// The status word (`pending`, `running`, `succeeded`, `failed`, `cancelled`, `timed_out`).
    pub status: &'a str,
    /// When the run was created.
    pub created: DateTime<Utc>,
    /// When it finished; `None` while it runs.
    pub finished: Option<DateTime<Utc>>,
    /// Its parent run id; `None` for a top-level run.
    pub parent: Option<&'a str>,
    /// Its idempotency key; `None` when none.
    pub idempotency_key: Option<&'a str>,
    /// The distinct error types of its failed attempts.
    pub error_types: &'a [String],
    /// Its input; `None` (SQL NULL) when it has none.
    pub input: Option<&'a Json>,
    /// Its output; `None` (SQL NULL) while it has none.
    pub output: Option<&'a Json>,
}

// ---------------------------------------------------------------------------------------------
// The syntax tree.

/// A node of the tree. `And` and `Or` hold at least two operands (the parser builds them so).
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Cmp),
}

#[derive(Debug, Clone, PartialEq)]
struct Cmp {
    field: Field,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Op(Op, Value),
    /// At least one value.
    In(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    /// The SQL operator (`!=` is written `<>`).
    fn sql(self) -> &'static str {
        match self {
            Op::Ne => "<>",
            other => other.text(),
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }

    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Id,
    Workflow,
    Version,
    Status,
    Created,
    Finished,
    Parent,
    IdempotencyKey,
    ErrorType,
    Input(Vec<Seg>),
    Output(Vec<Seg>),
}

/// The plain fields, with their names in the filter and their columns.
const FIELDS: [(&str, Field, &str); 9] = [
    ("id", Field::Id, "run_id"),
    ("workflow", Field::Workflow, "workflow"),
    ("version", Field::Version, "version"),
    ("status", Field::Status, "status"),
    ("created", Field::Created, "created_at"),
    ("finished", Field::Finished, "finished_at"),
    ("parent", Field::Parent, "parent_run_id"),
    ("idempotency_key", Field::IdempotencyKey, "idempotency_key"),
    ("error_type", Field::ErrorType, "error_types"),
];

/// What a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string; `=`, `!=`, `IN`.
    Text {
        nullable: bool,
    },
    Status,
    Version,
    Time {
        nullable: bool,
    },
    ErrorType,
    Json,
}

impl Field {
    fn kind(&self) -> Kind {
        match self {
            Field::Id | Field::Workflow => Kind::Text { nullable: false },
            Field::Parent | Field::IdempotencyKey => Kind::Text { nullable: true },
            Field::Status => Kind::Status,
            Field::Version => Kind::Version,
            Field::Created => Kind::Time { nullable: false },
            Field::Finished => Kind::Time { nullable: true },
            Field::ErrorType => Kind::ErrorType,
            Field::Input(_) | Field::Output(_) => Kind::Json,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Field::Input(_) => "input",
            Field::Output(_) => "output",
            plain => FIELDS
                .iter()
                .find(|(_, f, _)| f == plain)
                .map_or("?", |(name, _, _)| *name),
        }
    }

    fn column(&self) -> &'static str {
        match self {
            Field::Input(_) => "input",
            Field::Output(_) => "output",
            plain => FIELDS
                .iter()
                .find(|(_, f, _)| f == plain)
                .map_or("?", |(_, _, column)| *column),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(u32),
}

impl Seg {
    fn text(&self) -> String {
        match self {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    /// Finite.
    Dec(f64),
    Bool(bool),
    Null,
    /// An RFC 3339 time.
    At(DateTime<Utc>),
    /// A time this long before `now`, at most [`MAX_RELATIVE_TIME`].
    Ago(Duration),
}

impl Value {
    fn json(&self) -> Json {
        match self {
            Value::Str(s) => Json::String(s.clone()),
            Value::Int(i) => Json::from(*i),
            Value::Dec(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
            Value::Bool(b) => Json::Bool(*b),
            Value::Null => Json::Null,
            // Not built for JSON fields (the parser keeps times to `created`/`finished`).
            Value::At(t) => Json::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Value::Ago(d) => Json::String(format!("-{}", humantime::format_duration(*d))),
        }
    }

    /// The instant a time value stands for, in whole microseconds (PostgreSQL's precision).
    fn instant(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = match self {
            Value::At(t) => *t,
            Value::Ago(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            _ => return None,
        };
        Some(micros(t))
    }
}

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

// ---------------------------------------------------------------------------------------------
// Lexing (winnow).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Dot,
    Op(Op),
    Str,
    Num,
    Word,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    tok: Tok,
    /// Byte offsets into the query.
    start: usize,
    end: usize,
}

type WResult<T> = winnow::Result<T>;

fn string_token(i: &mut &str) -> WResult<Tok> {
    (
        '"',
        repeat::<_, _, (), _, _>(0.., alt((preceded('\\', any).void(), none_of(['"', '\\']).void()))),
        '"',
    )
        .value(Tok::Str)
        .parse_next(i)
}

fn number_token(i: &mut &str) -> WResult<Tok> {
    (
        opt('-'),
        digit1,
        opt(('.', digit1)),
        opt((one_of(['e', 'E']), opt(one_of(['+', '-'])), digit1)),
    )
        .value(Tok::Num)
        .parse_next(i)
}

fn word_token(i: &mut &str) -> WResult<Tok> {
    (
        one_of(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(0.., |c: char| c.is_ascii_alphanumeric() || c == '_'),
    )
        .value(Tok::Word)
        .parse_next(i)
}

fn op_token(i: &mut &str) -> WResult<Tok> {
    alt((
        "!=".value(Op::Ne),
        "<=".value(Op::Le),
        ">=".value(Op::Ge),
        "=".value(Op::Eq),
        "<".value(Op::Lt),
        ">".value(Op::Gt),
    ))
    .map(Tok::Op)
    .parse_next(i)
}

fn token(i: &mut &str) -> WResult<Tok> {
    alt((
        '('.value(Tok::LParen),
        ')'.value(Tok::RParen),
        ','.value(Tok::Comma),
        '.'.value(Tok::Dot),
        op_token,
        string_token,
        number_token,
        word_token,
    ))
    .parse_next(i)
}

fn spaces(i: &mut &str) -> WResult<()> {
    multispace0.void().parse_next(i)
}

/// The 1-based character column of a byte offset.
fn column(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or(0, |s| s.chars().count()).saturating_add(1)
}

/// A token for an error message: at most [`ECHO_CHARS`] characters, control characters escaped,
/// `…` where it was cut; in double quotes (a string token keeps its own).
fn echo(raw: &str) -> String {
    let mut chars = raw.chars();
    let mut cut = String::new();
    for c in chars.by_ref().take(ECHO_CHARS) {
        if c.is_control() {
            cut.extend(c.escape_default());
        } else {
            cut.push(c);
        }
    }
    if chars.next().is_some() {
        cut.push('…');
    }
    if raw.starts_with('"') {
        cut
    } else {
        format!("\"{cut}\"")
    }
}

fn lex(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut rest = text;
    let mut tokens = Vec::new();
    loop {
        // Whitespace never fails to parse; ignore the impossible error and go on.
        let _ = spaces(&mut rest);
        if rest.is_empty() {
            return Ok(tokens);
        }
        let start = text.len().saturating_sub(rest.len());
        let before = rest;
        match token(&mut rest) {
            Ok(tok) => {
                let end = text.len().saturating_sub(rest.len());
                tokens.push(Token { tok, start, end });
            }
            Err(_) => {
                let first = before.chars().next().unwrap_or(' ');
                let message = if first == '"' {
                    "a string that does not end (no closing '\"')".to_owned()
                } else {
                    format!("unexpected character {}", echo(&first.to_string()))
                };
                return Err(QueryError {
                    column: column(text, start),
                    message,
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

impl Filter {
    /// Parses and checks a query (see the module's grammar and bounds).
    ///
    /// # Errors
    ///
    /// A [`QueryError`] naming the column of the offending token: a syntax error, an unknown
    /// field, a value of the wrong type for its field (`version = "x"`, an unknown `status`), an
    /// operator the field does not take (`parent < "x"`), or a bound passed.
    pub fn parse(text: &str) -> Result<Filter, QueryError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(QueryError {
                column: 1,
                message: format!(
                    "the query is {} bytes, more than the limit of {MAX_QUERY_BYTES}",
                    text.len()
                ),
            });
        }
        let tokens = lex(text)?;
        let mut p = P {
            text,
            toks: &tokens,
            pos: 0,
            depth: 0,
            comparisons: 0,
        };
        let expr = p.or()?;
        if p.peek().is_some() {
            return Err(p.expected("AND, OR or the end of the query"));
        }
        Ok(Filter { expr })
    }
}

struct P<'a> {
    text: &'a str,
    toks: &'a [Token],
    pos: usize,
    depth: usize,
    comparisons: usize,
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<Token> {
        self.toks.get(self.pos).copied()
    }

    fn raw(&self, t: Token) -> &'a str {
        self.text.get(t.start..t.end).unwrap_or("")
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    fn is_word(&self, word: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.tok == Tok::Word && self.raw(t).eq_ignore_ascii_case(word))
    }

    fn error_at(&self, t: Option<Token>, message: String) -> QueryError {
        let byte = t.map_or(self.text.len(), |t| t.start);
        QueryError {
            column: column(self.text, byte),
            message,
        }
    }

    /// `expected WHAT after "PREV", found "NEXT"`, at the next token (or the end).
    fn expected(&self, what: &str) -> QueryError {
        let next = self.peek();
        let found = next.map_or_else(|| "the end of the query".to_owned(), |t| echo(self.raw(t)));
        let prev = self
            .pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map(|t| echo(self.raw(*t)));
        let message = match prev {
            Some(prev) => format!("expected {what} after {prev}, found {found}"),
            None => format!("expected {what}, found {found}"),
        };
        self.error_at(next, message)
    }

    fn deeper(&mut self) -> Result<(), QueryError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error_at(
                self.peek(),
                format!("the query nests more than {MAX_DEPTH} levels deep (the limit)"),
            ));
        }
        self.depth = self.depth.saturating_add(1);
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let first = self.and()?;
        if !self.is_word("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("or") {
            self.bump();
            items.push(self.and()?);
        }
        Ok(Expr::Or(items))
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let first = self.not()?;
        if !self.is_word("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_word("and") {
            self.bump();
            items.push(self.not()?);
        }
        Ok(Expr::And(items))
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.is_word("not") {
            self.deeper()?;
            self.bump();
            let inner = self.not()?;
            self.depth = self.depth.saturating_sub(1);
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek().is_some_and(|t| t.tok == Tok::LParen) {
            self.deeper()?;
            self.bump();
            let inner = self.or()?;
            if !self.peek().is_some_and(|t| t.tok == Tok::RParen) {
                return Err(self.expected("AND, OR or \")\""));
            }
            self.bump();
            self.depth = self.depth.saturating_sub(1);
            return Ok(inner);
        }
        self.comparison().map(Expr::Cmp)
    }

    fn comparison(&mut self) -> Result<Cmp, QueryError> {
        let start = self.peek();
        let field = self.field()?;
        self.comparisons = self.comparisons.saturating_add(1);
        if self.comparisons > MAX_COMPARISONS {
            return Err(self.error_at(
                start,
                format!("the query has more than {MAX_COMPARISONS} comparisons (the limit)"),
            ));
        }
        let op_token = self.peek();
        let test = match op_token {
            Some(Token { tok: Tok::Op(op), .. }) => {
                self.bump();
                let value = self.value(&field, Some(op))?;
                if op.is_ordering() {
                    self.check_ordering(&field, op, op_token, &value)?;
                }
                Test::Op(op, value)
            }
            _ if self.is_word("in") => {
                self.bump();
                if !self.peek().is_some_and(|t| t.tok == Tok::LParen) {
                    return Err(self.expected("\"(\""));
                }
                self.bump();
                let mut values = Vec::new();
                loop {
                    if values.len() >= MAX_IN_VALUES {
                        return Err(self.error_at(
                            self.peek(),
                            format!("an IN list holds at most {MAX_IN_VALUES} values (the limit)"),
                        ));
                    }
                    values.push(self.value(&field, None)?);
                    match self.peek().map(|t| t.tok) {
                        Some(Tok::Comma) => self.bump(),
                        Some(Tok::RParen) => {
                            self.bump();
                            break;
                        }
                        _ => return Err(self.expected("\",\" or \")\"")),
                    }
                }
                Test::In(values)
            }
            _ => return Err(self.expected("an operator (=, !=, <, <=, >, >=, IN)")),
        };
        Ok(Cmp { field, test })
    }

    fn check_ordering(&self, field: &Field, op: Op, at: Option<Token>, value: &Value) -> Result<(), QueryError> {
        let refuse = |why: String| Err(self.error_at(at, why));
        match field.kind() {
            Kind::Version | Kind::Time { .. } => Ok(()),
            Kind::Json => match value {
                Value::Int(_) | Value::Dec(_) => Ok(()),
                _ => refuse(format!(
                    "{:?} on {} compares with a number only (= and != take any value)",
                    op.text(),
                    field.name()
                )),
            },
            _ => refuse(format!(
                "{:?} does not apply to {} (it takes =, != and IN)",
                op.text(),
                field.name()
            )),
        }
    }

    fn field(&mut self) -> Result<Field, QueryError> {
        let Some(t) = self.peek().filter(|t| t.tok == Tok::Word) else {
            return Err(self.expected("a field or \"(\""));
        };
        let name = self.raw(t);
        let field = match name {
            "input" | "output" => {
                self.bump();
                let path = self.path()?;
                if name == "input" {
                    Field::Input(path)
                } else {
                    Field::Output(path)
                }
            }
            _ => match FIELDS.iter().find(|(n, _, _)| *n == name) {
                Some((_, f, _)) => {
                    self.bump();
                    f.clone()
                }
                None => {
                    return Err(self.error_at(
                        Some(t),
                        format!(
                            "unknown field {} (fields: id, workflow, version, status, created, \
                             finished, parent, idempotency_key, error_type, input.<path>, \
                             output.<path>)",
                            echo(name)
                        ),
                    ));
                }
            },
        };
        Ok(field)
    }

    fn path(&mut self) -> Result<Vec<Seg>, QueryError> {
        let mut segs = Vec::new();
        while self.peek().is_some_and(|t| t.tok == Tok::Dot) {
            self.bump();
            let Some(t) = self.peek() else {
                return Err(self.expected("a path segment"));
            };
            let raw = self.raw(t);
            let new: Vec<Seg> = match t.tok {
                Tok::Word => vec![Seg::Key(raw.to_owned())],
                Tok::Str => vec![Seg::Key(self.string(t)?)],
                // `0.1` lexes as one number: two indexes.
                Tok::Num => raw
                    .split('.')
                    .map(|part| {
                        part.bytes()
                            .all(|b| b.is_ascii_digit())
                            .then(|| part.parse::<u32>().ok())
                            .flatten()
                            .filter(|i| *i <= MAX_INDEX)
                            .map(Seg::Index)
                            .ok_or_else(|| {
                                self.error_at(
                                    Some(t),
                                    format!("an array index is digits, at most {MAX_INDEX}, found {}", echo(raw)),
                                )
                            })
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(self.expected("a path segment (a name, a string or an index)")),
            };
            for seg in new {
                if let Seg::Key(k) = &seg
                    && k.len() > MAX_SEGMENT_BYTES
                {
                    return Err(self.error_at(
                        Some(t),
                        format!(
                            "a path segment is {} bytes, more than the limit of {MAX_SEGMENT_BYTES}",
                            k.len()
                        ),
                    ));
                }
                if segs.len() >= MAX_PATH_SEGMENTS {
                    return Err(self.error_at(
                        Some(t),
                        format!("a path has at most {MAX_PATH_SEGMENTS} segments (the limit)"),
                    ));
                }
                segs.push(seg);
            }
            self.bump();
        }
        if segs.is_empty() {
            return Err(self.expected("\".\" and a path"));
        }
        Ok(segs)
    }

    /// Decodes a string token (JSON escapes).
    fn string(&self, t: Token) -> Result<String, QueryError> {
        serde_json::from_str::<String>(self.raw(t)).map_err(|e| {
            self.error_at(
                Some(t),
                format!("{} is not a valid JSON string: {e}", echo(self.raw(t))),
            )
        })
    }

    /// Reads one value and checks it against the field; `op` is `None` inside `IN (...)`.
    fn value(&mut self, field: &Field, op: Option<Op>) -> Result<Value, QueryError> {
        let Some(t) = self.peek() else {
            return Err(self.expected("a value"));
        };
        let raw = self.raw(t);
        let value = match t.tok {
            Tok::Str => Value::Str(self.string(t)?),
            Tok::Num if raw.contains(['.', 'e', 'E']) => match raw.parse::<f64>() {
                Ok(d) if d.is_finite() => Value::Dec(d),
                _ => return Err(self.error_at(Some(t), format!("{} is out of range", echo(raw)))),
            },
            Tok::Num => match raw.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => {
                    return Err(self.error_at(Some(t), format!("{} is out of range (a 64-bit integer)", echo(raw))));
                }
            },
            Tok::Word if raw.eq_ignore_ascii_case("true") => Value::Bool(true),
            Tok::Word if raw.eq_ignore_ascii_case("false") => Value::Bool(false),
            Tok::Word if raw.eq_ignore_ascii_case("null") => Value::Null,
            _ => return Err(self.expected("a value")),
        };
        let value = self.typed(field, op, t, value)?;
        self.bump();
        Ok(value)
    }

    fn typed(&self, field: &Field, op: Option<Op>, t: Token, value: Value) -> Result<Value, QueryError> {
        let name = field.name();
        let wrong =
            |what: &str| Err(self.error_at(Some(t), format!("{name} takes {what}, found {}", echo(self.raw(t)))));
        if value == Value::Null {
            let nullable = matches!(
                field.kind(),
                Kind::Text { nullable: true } | Kind::Time { nullable: true } | Kind::Json
            );
            return match op {
                _ if !nullable => wrong("no null (it always has a value)"),
                Some(Op::Eq | Op::Ne) => Ok(Value::Null),
                Some(_) => wrong("null with = and != only"),
                None if field.kind() == Kind::Json => Ok(Value::Null),
                None => wrong("no null in an IN list (write `= null`)"),
            };
        }
        match (field.kind(), value) {
            (Kind::Text { .. } | Kind::ErrorType, v @ Value::Str(_)) => Ok(v),
            (Kind::Text { .. } | Kind::ErrorType, _) => wrong("a string"),
            (Kind::Status, Value::Str(s)) => {
                let word = s.to_ascii_lowercase();
                let word = word.strip_prefix("run_status_").unwrap_or(&word);
                match RunStatus::from_word(word) {
                    Some(status) => Ok(Value::Str(status.word().to_owned())),
                    None => wrong(
                        "one of \"pending\", \"running\", \"succeeded\", \"failed\", \
                         \"cancelled\", \"timed_out\"",
                    ),
                }
            }
            (Kind::Status, _) => wrong("a status string (\"failed\")"),
            (Kind::Version, Value::Int(i)) if (0..=i64::from(i32::MAX)).contains(&i) => Ok(Value::Int(i)),
            (Kind::Version, _) => wrong("an integer from 0 to 2147483647"),
            (Kind::Time { .. }, Value::Str(s)) => match time_value(&s) {
                Some(v) => Ok(v),
                None => wrong(
                    "an RFC 3339 time (\"2026-11-21T08:30:00Z\") or a time before now \
                     (\"-24h\", at most 100 years)",
                ),
            },
            (Kind::Time { .. }, _) => wrong("a time string (\"-24h\", \"2026-11-21T08:30:00Z\")"),
            (Kind::Json, v) => Ok(v),
        }
    }
}

/// An RFC 3339 time or `-<humantime duration>` (at most [`MAX_RELATIVE_TIME`]).
fn time_value(s: &str) -> Option<Value> {
    if let Some(ago) = s.strip_prefix('-') {
        return humantime::parse_duration(ago)
            .ok()
            .filter(|d| *d <= MAX_RELATIVE_TIME)
            .map(Value::Ago);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| Value::At(t.with_timezone(&Utc)))
}

// ---------------------------------------------------------------------------------------------
// Canonical text.

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(&self.expr, f)
    }
}

fn write_expr(e: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // Parentheses keep the tree's shape: an OR inside anything, an AND inside an AND or a NOT.
    let child = |c: &Expr, f: &mut fmt::Formatter<'_>, and_too: bool| match c {
        Expr::Or(_) => paren(c, f),
        Expr::And(_) if and_too => paren(c, f),
        _ => write_expr(c, f),
    };
    match e {
        Expr::Or(items) | Expr::And(items) => {
            let (sep, and_too) = match e {
                Expr::Or(_) => (" OR ", false),
                _ => (" AND ", true),
            };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                child(item, f, and_too)?;
            }
            Ok(())
        }
        Expr::Not(inner) => {
            f.write_str("NOT ")?;
            child(inner, f, true)
        }
        Expr::Cmp(c) => write_cmp(c, f),
    }
}

fn paren(e: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("(")?;
    write_expr(e, f)?;
    f.write_str(")")
}

fn write_cmp(c: &Cmp, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(c.field.name())?;
    if let Field::Input(path) | Field::Output(path) = &c.field {
        for seg in path {
            f.write_str(".")?;
            match seg {
                Seg::Index(i) => write!(f, "{i}")?,
                Seg::Key(k) if is_identifier(k) => f.write_str(k)?,
                Seg::Key(k) => write_json_string(k, f)?,
            }
        }
    }
    match &c.test {
        Test::Op(op, v) => {
            write!(f, " {} ", op.text())?;
            write_value(v, f)
        }
        Test::In(values) => {
            f.write_str(" IN (")?;
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_value(v, f)?;
            }
            f.write_str(")")
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn write_json_string(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let text = serde_json::to_string(s).map_err(|_| fmt::Error)?;
    f.write_str(&text)
}

fn write_value(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Str(s) => write_json_string(s, f),
        Value::Int(i) => write!(f, "{i}"),
        // `Debug` keeps a decimal point or an exponent (`1.0`, `1e300`), so it reads back as a
        // decimal, and is the shortest text that does.
        Value::Dec(d) => write!(f, "{d:?}"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Null => f.write_str("null"),
        Value::At(t) => write_json_string(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true), f),
        Value::Ago(d) => write_json_string(&format!("-{}", humantime::format_duration(*d)), f),
    }
}

// ---------------------------------------------------------------------------------------------
// SQL.

impl Filter {
    /// A boolean SQL condition over the archive's `runs` table aliased `r` (columns as in
    /// `docs/search.md`), with placeholders `$first`, `$first + 1`, ... and their values. No value
    /// of the query appears in the SQL text: values, JSON paths and JSON documents are parameters.
    /// Relative times (`"-24h"`) are resolved against `now`.
    ///
    /// Equality on an `input.`/`output.` path of keys is containment (`r.input @> $n::jsonb`,
    /// served by a GIN `jsonb_path_ops` index); other path comparisons read the value at the path
    /// (`(r.input #> $n::text[]) < $m::jsonb`). `error_type = "X"` is `r.error_types @>
    /// $n::text[]`, `error_type IN (...)` the overlap `&&`. The rest are plain comparisons.
    pub fn to_sql(&self, first: usize, now: DateTime<Utc>) -> SqlWhere {
        let mut w = SqlWriter {
            sql: String::new(),
            params: Vec::new(),
            first,
            now,
        };
        w.expr(&self.expr);
        SqlWhere {
            sql: w.sql,
            params: w.params,
        }
    }
}

struct SqlWriter {
    sql: String,
    params: Vec<SqlValue>,
    first: usize,
    now: DateTime<Utc>,
}

impl SqlWriter {
    /// Adds a parameter and returns its placeholder with its cast (`$3::text`).
    fn param(&mut self, v: SqlValue) -> String {
        let cast = match &v {
            SqlValue::Text(_) => "text",
            SqlValue::Int(_) => "bigint",
            SqlValue::Time(_) => "timestamptz",
            SqlValue::Json(_) => "jsonb",
            SqlValue::TextArray(_) => "text[]",
        };
        let n = self.first.saturating_add(self.params.len());
        self.params.push(v);
        format!("${n}::{cast}")
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Or(items) | Expr::And(items) => {
                let sep = if matches!(e, Expr::Or(_)) { " OR " } else { " AND " };
                self.sql.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(sep);
                    }
                    self.expr(item);
                }
                self.sql.push(')');
            }
            Expr::Not(inner) => {
                self.sql.push_str("(NOT ");
                self.expr(inner);
                self.sql.push(')');
            }
            Expr::Cmp(c) => {
                let s = self.cmp(c);
                self.sql.push_str(&s);
            }
        }
    }

    /// A scalar parameter for a column field's value.
    fn scalar(&mut self, v: &Value) -> String {
        let p = match v {
            Value::Str(s) => SqlValue::Text(s.clone()),
            Value::Int(i) => SqlValue::Int(*i),
            Value::At(_) | Value::Ago(_) => SqlValue::Time(v.instant(self.now).unwrap_or(DateTime::<Utc>::MIN_UTC)),
            other => SqlValue::Json(other.json()),
        };
        self.param(p)
    }

    fn cmp(&mut self, c: &Cmp) -> String {
        let col = format!("r.{}", c.field.column());
        match (&c.field, &c.test) {
            (Field::Input(path) | Field::Output(path), test) => self.json_cmp(&col, path, test),
            (Field::ErrorType, Test::Op(op, Value::Str(s))) => {
                let p = self.param(SqlValue::TextArray(vec![s.clone()]));
                if *op == Op::Ne {
                    format!("(NOT {col} @> {p})")
                } else {
                    format!("{col} @> {p}")
                }
            }
            (Field::ErrorType, Test::In(values)) => {
                let set = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                let p = self.param(SqlValue::TextArray(set));
                format!("{col} && {p}")
            }
            (_, Test::Op(Op::Eq, Value::Null)) => format!("{col} IS NULL"),
            (_, Test::Op(Op::Ne, Value::Null)) => format!("{col} IS NOT NULL"),
            (_, Test::Op(op, v)) => {
                let p = self.scalar(v);
                format!("{col} {} {p}", op.sql())
            }
            (_, Test::In(values)) => {
                let ps: Vec<String> = values.iter().map(|v| self.scalar(v)).collect();
                format!("{col} IN ({})", ps.join(", "))
            }
        }
    }

    fn json_cmp(&mut self, col: &str, path: &[Seg], test: &Test) -> String {
        let keys_only = path.iter().all(|s| matches!(s, Seg::Key(_)));
        let contains = |w: &mut Self, v: &Value| {
            let p = w.param(SqlValue::Json(template(path, v.json())));
            format!("{col} @> {p}")
        };
        match test {
            Test::Op(Op::Eq, v) if keys_only => contains(self, v),
            Test::In(values) if keys_only => {
                let parts: Vec<String> = values.iter().map(|v| contains(self, v)).collect();
                format!("({})", parts.join(" OR "))
            }
            Test::Op(op, v) => {
                let at = self.param(SqlValue::TextArray(path.iter().map(Seg::text).collect()));
                let p = self.param(SqlValue::Json(v.json()));
                format!("({col} #> {at}) {} {p}", op.sql())
            }
            Test::In(values) => {
                let at = self.param(SqlValue::TextArray(path.iter().map(Seg::text).collect()));
                let ps: Vec<String> = values.iter().map(|v| self.param(SqlValue::Json(v.json()))).collect();
                format!("({col} #> {at}) IN ({})", ps.join(", "))
            }
        }
    }
}

/// `{"a": {"b": value}}` for the path `a.b` (keys only).
fn template(path: &[Seg], value: Json) -> Json {
    path.iter().rev().fold(value, |inner, seg| {
        let mut object = serde_json::Map::new();
        object.insert(seg.text(), inner);
        Json::Object(object)
    })
}

// ---------------------------------------------------------------------------------------------
// In memory.

/// SQL's three truth values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn of(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }

    fn negate(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }

    /// SQL `OR` over any number of operands (`IN` is one too).
    fn any(items: impl Iterator<Item = Truth>) -> Truth {
        let mut out = Truth::False;
        for t in items {
            match t {
                Truth::True => return Truth::True,
                Truth::Unknown => out = Truth::Unknown,
                Truth::False => {}
            }
        }
        out
    }

    /// SQL `AND`.
    fn all(items: impl Iterator<Item = Truth>) -> Truth {
        let mut out = Truth::True;
        for t in items {
            match t {
                Truth::False => return Truth::False,
                Truth::Unknown => out = Truth::Unknown,
                Truth::True => {}
            }
        }
        out
    }
}

impl Filter {
    /// Whether a run (in Redis) matches, with the meaning [`Filter::to_sql`] has in PostgreSQL:
    /// three-valued logic, true only when the whole filter is true. Relative times are resolved
    /// against `now`; times compare in whole microseconds, as PostgreSQL stores them.
    pub fn matches(&self, run: &RunFacts<'_>, now: DateTime<Utc>) -> bool {
        eval(&self.expr, run, now) == Truth::True
    }

    /// Whether some comparison of the filter is on `error_type`: only then does
    /// [`Filter::matches`] read [`RunFacts::error_types`], which a caller may have to fetch.
    pub fn uses_error_type(&self) -> bool {
        let mut stack = vec![&self.expr];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Or(items) | Expr::And(items) => stack.extend(items),
                Expr::Not(inner) => stack.push(inner),
                Expr::Cmp(c) => {
                    if c.field == Field::ErrorType {
                        return true;
                    }
                }
            }
        }
        false
    }
}

fn eval(e: &Expr, run: &RunFacts<'_>, now: DateTime<Utc>) -> Truth {
    match e {
        Expr::Or(items) => Truth::any(items.iter().map(|i| eval(i, run, now))),
        Expr::And(items) => Truth::all(items.iter().map(|i| eval(i, run, now))),
        Expr::Not(inner) => eval(inner, run, now).negate(),
        Expr::Cmp(c) => eval_cmp(c, run, now),
    }
}

fn eval_cmp(c: &Cmp, run: &RunFacts<'_>, now: DateTime<Utc>) -> Truth {
    // One comparison `field op value` on a column: NULL (None) is unknown, `= null` is IS NULL.
    let compare = |op: Op, v: &Value| -> Truth {
        if v == &Value::Null {
            let present = match &c.field {
                Field::Parent => run.parent.is_some(),
                Field::IdempotencyKey => run.idempotency_key.is_some(),
                Field::Finished => run.finished.is_some(),
                _ => true,
            };
            return Truth::of(if op == Op::Eq { !present } else { present });
        }
        let ord = match (&c.field, v) {
            (Field::Id, Value::Str(s)) => Some(run.id.cmp(s.as_str())),
            (Field::Workflow, Value::Str(s)) => Some(run.workflow.cmp(s.as_str())),
            (Field::Status, Value::Str(s)) => Some(run.status.cmp(s.as_str())),
            (Field::Parent, Value::Str(s)) => run.parent.map(|p| p.cmp(s.as_str())),
            (Field::IdempotencyKey, Value::Str(s)) => run.idempotency_key.map(|k| k.cmp(s.as_str())),
            (Field::Version, Value::Int(i)) => Some(i64::from(run.version).cmp(i)),
            (Field::Created, v) => v.instant(now).map(|t| micros(run.created).cmp(&t)),
            (Field::Finished, v) => run.finished.zip(v.instant(now)).map(|(f, t)| micros(f).cmp(&t)),
            _ => None,
        };
        ord.map_or(Truth::Unknown, |o| Truth::of(op.holds(o)))
    };
    match (&c.field, &c.test) {
        (Field::Input(path), test) => eval_json(run.input, path, test),
        (Field::Output(path), test) => eval_json(run.output, path, test),
        (Field::ErrorType, test) => {
            let has = |v: &Value| matches!(v, Value::Str(s) if run.error_types.contains(s));
            match test {
                Test::Op(Op::Ne, v) => Truth::of(!has(v)),
                Test::Op(_, v) => Truth::of(has(v)),
                Test::In(values) => Truth::of(values.iter().any(has)),
            }
        }
        (_, Test::Op(op, v)) => compare(*op, v),
        (_, Test::In(values)) => Truth::any(values.iter().map(|v| compare(Op::Eq, v))),
    }
}

fn eval_json(doc: Option<&Json>, path: &[Seg], test: &Test) -> Truth {
    let Some(doc) = doc else {
        // The column is NULL: every operator gives NULL.
        return Truth::Unknown;
    };
    let keys_only = path.iter().all(|s| matches!(s, Seg::Key(_)));
    // Containment (`@>`) of `{"a": {"b": v}}`: walk objects only; a scalar contains an equal one.
    let contains = |v: &Value| {
        let mut at = doc;
        for seg in path {
            match at.as_object().and_then(|o| o.get(&seg.text())) {
                Some(next) => at = next,
                None => return Truth::False,
            }
        }
        Truth::of(json_eq(at, &v.json()))
    };
    // `#>`: objects by key, arrays by integer index (negative from the end), else NULL.
    let extract = || {
        let mut at = doc;
        for seg in path {
            let text = seg.text();
            let next = match at {
                Json::Object(o) => o.get(&text),
                Json::Array(a) => text.trim_start().parse::<i64>().ok().and_then(|i| {
                    let i = if i < 0 {
                        i64::try_from(a.len()).ok()?.checked_add(i)?
                    } else {
                        i
                    };
                    a.get(usize::try_from(i).ok()?)
                }),
                _ => None,
            };
            at = next?;
        }
        Some(at)
    };
    let compare = |op: Op, v: &Value| {
        let Some(found) = extract() else {
            return Truth::Unknown;
        };
        let v = v.json();
        match op {
            Op::Eq => Truth::of(json_eq(found, &v)),
            Op::Ne => Truth::of(!json_eq(found, &v)),
            _ => json_cmp(found, &v).map_or(Truth::Unknown, |o| Truth::of(op.holds(o))),
        }
    };
    match test {
        Test::Op(Op::Eq, v) if keys_only => contains(v),
        Test::In(values) if keys_only => Truth::any(values.iter().map(contains)),
        Test::Op(op, v) => compare(*op, v),
        Test::In(values) => Truth::any(values.iter().map(|v| compare(Op::Eq, v))),
    }
}

/// PostgreSQL's `jsonb` equality: same type and value, numbers by value (`1 = 1.0`).
fn json_eq(a: &Json, b: &Json) -> bool {
    json_cmp(a, b) == Some(std::cmp::Ordering::Equal)
}

/// PostgreSQL's `jsonb` order where it needs no collation: by type (an empty array < null <
/// string < number < boolean < array < object), numbers by value, booleans false < true, strings
/// equal or not.
/// `None` for two different strings, arrays or objects (never needed: the filter compares them
/// only for equality with a scalar, and orders numbers only).
fn json_cmp(a: &Json, b: &Json) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    fn rank(v: &Json) -> u8 {
        match v {
            // "For historical reasons" (PostgreSQL's docs, jsonb indexing), an empty top-level
            // array sorts before null; a value read with `#>` is a top-level value.
            Json::Array(a) if a.is_empty() => 0,
            Json::Null => 1,
            Json::String(_) => 2,
            Json::Number(_) => 3,
            Json::Bool(_) => 4,
            Json::Array(_) => 5,
            Json::Object(_) => 6,
        }
    }
    match (a, b) {
        (Json::Null, Json::Null) => Some(Ordering::Equal),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        (Json::Number(x), Json::Number(y)) => num_cmp(x, y),
        (Json::String(x), Json::String(y)) => (x == y).then_some(Ordering::Equal),
        (Json::Array(x), Json::Array(y)) => (x == y).then_some(Ordering::Equal),
        (Json::Object(x), Json::Object(y)) => (x == y).then_some(Ordering::Equal),
        _ => Some(rank(a).cmp(&rank(b))),
    }
}

fn num_cmp(x: &serde_json::Number, y: &serde_json::Number) -> Option<std::cmp::Ordering> {
    let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (int(x), int(y)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn sql(q: &str, first: usize) -> Result<SqlWhere, QueryError> {
        Ok(Filter::parse(q)?.to_sql(first, now()))
    }

    fn err(q: &str) -> QueryError {
        match Filter::parse(q) {
            Ok(f) => QueryError {
                column: 0,
                message: format!("parsed as {f}"),
            },
            Err(e) => e,
        }
    }

    #[test]
    fn the_issue_example_is_three_placeholders_and_a_containment() -> Result<(), QueryError> {
        let w = sql(
            r#"status = "failed" AND created > "-24h" AND input.customer.id = "c-42""#,
            2,
        )?;
        assert_eq!(
            w.sql,
            "(r.status = $2::text AND r.created_at > $3::timestamptz AND r.input @> $4::jsonb)"
        );
        let day_ago = DateTime::from_timestamp(1_790_000_000 - 86_400, 0);
        assert_eq!(
            w.params,
            vec![
                SqlValue::Text("failed".into()),
                SqlValue::Time(day_ago.unwrap_or(DateTime::<Utc>::MIN_UTC)),
                SqlValue::Json(json!({"customer": {"id": "c-42"}})),
            ]
        );
        Ok(())
    }

    #[test]
    fn each_kind_of_comparison_has_its_sql() -> Result<(), QueryError> {
        let cases: [(&str, &str, Vec<SqlValue>); 9] = [
            (
                r#"error_type IN ("Timeout", "Boom") OR NOT parent = null"#,
                "(r.error_types && $1::text[] OR (NOT r.parent_run_id IS NULL))",
                vec![SqlValue::TextArray(vec!["Timeout".into(), "Boom".into()])],
            ),
            (
                r#"error_type != "Timeout""#,
                "(NOT r.error_types @> $1::text[])",
                vec![SqlValue::TextArray(vec!["Timeout".into()])],
            ),
            (
                "output.items.0.price >= 10.5",
                "(r.output #> $1::text[]) >= $2::jsonb",
                vec![
                    SqlValue::TextArray(vec!["items".into(), "0".into(), "price".into()]),
                    SqlValue::Json(json!(10.5)),
                ],
            ),
            (
                "version in (1, 2) and version < 10",
                "(r.version IN ($1::bigint, $2::bigint) AND r.version < $3::bigint)",
                vec![SqlValue::Int(1), SqlValue::Int(2), SqlValue::Int(10)],
            ),
            (
                r#"input."a b" != "x""#,
                "(r.input #> $1::text[]) <> $2::jsonb",
                vec![SqlValue::TextArray(vec!["a b".into()]), SqlValue::Json(json!("x"))],
            ),
            (
                r#"input.kind IN ("a", 1)"#,
                "(r.input @> $1::jsonb OR r.input @> $2::jsonb)",
                vec![SqlValue::Json(json!({"kind": "a"})), SqlValue::Json(json!({"kind": 1}))],
            ),
            (
                r#"finished <= "2026-11-21T08:30:00.5+01:00" AND finished != null"#,
                "(r.finished_at <= $1::timestamptz AND r.finished_at IS NOT NULL)",
                vec![SqlValue::Time(
                    DateTime::parse_from_rfc3339("2026-11-21T07:30:00.5Z")
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(DateTime::<Utc>::MIN_UTC),
                )],
            ),
            (
                r#"id = "0193" OR workflow = "w" OR idempotency_key = "k""#,
                "(r.run_id = $1::text OR r.workflow = $2::text OR r.idempotency_key = $3::text)",
                vec![
                    SqlValue::Text("0193".into()),
                    SqlValue::Text("w".into()),
                    SqlValue::Text("k".into()),
                ],
            ),
            (
                r#"status = "RUN_STATUS_TIMED_OUT""#,
                "r.status = $1::text",
                vec![SqlValue::Text("timed_out".into())],
            ),
        ];
        for (q, want, params) in cases {
            let w = sql(q, 1)?;
            assert_eq!(w.sql, want, "{q}");
            assert_eq!(w.params, params, "{q}");
        }
        Ok(())
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let cases = [
            (
                r#"status = "failed" AND version = )"#,
                33,
                r#"expected a value after "=", found ")""#,
            ),
            ("version = \"x\"", 11, "version takes an integer"),
            ("status = \"done\"", 10, "status takes one of"),
            ("parent < \"x\"", 8, "\"<\" does not apply to parent"),
            ("input.a < \"x\"", 9, "compares with a number only"),
            ("foo = 1", 1, "unknown field \"foo\""),
            ("created > \"yesterday\"", 11, "created takes an RFC 3339 time"),
            ("created > \"-200years\"", 11, "created takes an RFC 3339 time"),
            ("", 1, "expected a field or \"(\", found the end of the query"),
            ("id = \"x\" AND", 13, "expected a field or \"(\" after \"AND\""),
            ("id = \"x\" id", 10, "expected AND, OR or the end of the query"),
            ("(id = \"x\"", 10, "expected AND, OR or \")\""),
            ("input = 1", 7, "expected \".\" and a path after \"input\""),
            ("input.a.-1 = 1", 9, "an array index is digits"),
            ("id = \"abc", 6, "a string that does not end"),
            ("id = \"\\q\"", 6, "is not a valid JSON string"),
            ("id # 1", 4, "unexpected character \"#\""),
            ("é = 1", 1, "unexpected character \"é\""),
            ("workflow = \"é\" AND version = x", 30, "expected a value"),
            ("version = 99999999999999999999", 11, "out of range"),
            ("id in ()", 8, "expected a value after \"(\""),
            ("id in (\"a\" \"b\")", 12, "expected \",\" or \")\""),
            ("id = null", 6, "id takes no null"),
            ("parent in (null)", 12, "no null in an IN list"),
            ("version = 1.5", 11, "version takes an integer"),
            (
                "id = \"an echoed token is cut to forty characters, not more\" x",
                61,
                "after \"an echoed token is cut to forty charact…, found \"x\"",
            ),
        ];
        for (q, column, message) in cases {
            let e = err(q);
            assert!(
                e.column == column && e.message.contains(message),
                "{q}: got {e}, wanted column {column} and {message:?}"
            );
        }
        let long = "x".repeat(60);
        let e = err(&format!("id = \"a\" {long}"));
        assert_eq!(
            e.to_string(),
            format!(
                "query: column 10: expected AND, OR or the end of the query after \"a\", found \
                 \"{}…\"",
                "x".repeat(40)
            )
        );
    }

    #[test]
    fn bounds_are_errors_at_the_token_past_them() {
        let nested = |n: usize| format!("{}id = \"x\"{}", "(".repeat(n), ")".repeat(n));
        assert!(Filter::parse(&nested(MAX_DEPTH)).is_ok());
        let e = err(&nested(MAX_DEPTH + 1));
        assert_eq!(e.column, MAX_DEPTH + 1, "{e}");
        assert!(e.message.contains("nests more than 32 levels"), "{e}");
        // Far past the limit: an error, not a stack overflow.
        assert_eq!(err(&"(".repeat(4000)).column, MAX_DEPTH + 1);
        assert_eq!(err(&"NOT ".repeat(1000)).column, 4 * MAX_DEPTH + 1);

        let many = |n: usize| vec!["version = 1"; n].join(" OR ");
        assert!(Filter::parse(&many(MAX_COMPARISONS)).is_ok());
        let e = err(&many(MAX_COMPARISONS + 1));
        assert!(e.message.contains("more than 64 comparisons"), "{e}");
        assert_eq!(e.column, 64 * 15 + 1, "{e}");

        let e = err(&format!("id = \"{}\"", "x".repeat(MAX_QUERY_BYTES)));
        assert_eq!(e.column, 1);
        assert!(e.message.contains("4103 bytes, more than the limit of 4096"), "{e}");

        assert!(Filter::parse("input.a.b.c.d.e.f.g.h = 1").is_ok());
        let e = err("input.a.b.c.d.e.f.g.h.i = 1");
        assert_eq!(e.column, 23, "{e}");
        assert!(e.message.contains("at most 8 segments"), "{e}");

        let key = "k".repeat(MAX_SEGMENT_BYTES);
        assert!(Filter::parse(&format!("input.{key} = 1")).is_ok());
        let e = err(&format!("input.{key}k = 1"));
        assert_eq!(e.column, 7, "{e}");

        let list = |n: usize| format!("version IN ({})", vec!["1"; n].join(", "));
        assert!(Filter::parse(&list(MAX_IN_VALUES)).is_ok());
        let e = err(&list(MAX_IN_VALUES + 1));
        assert!(e.message.contains("at most 100 values"), "{e}");
        assert_eq!(e.column, 12 + 3 * MAX_IN_VALUES + 1, "{e}");
    }

    #[test]
    fn keywords_take_any_case_and_print_canonically() -> Result<(), QueryError> {
        let f =
            Filter::parse(r#"status = "FAILED" and not version < 3 Or created > "-1h" AND input.items.0.1 = TRUE"#)?;
        assert_eq!(
            f.to_string(),
            r#"status = "failed" AND NOT version < 3 OR created > "-1h" AND input.items.0.1 = true"#
        );
        let f = Filter::parse(r#"(id = "a" or id = "b") and not (id = "c" and id = "d")"#)?;
        assert_eq!(
            f.to_string(),
            r#"(id = "a" OR id = "b") AND NOT (id = "c" AND id = "d")"#
        );
        let f = Filter::parse(r#"input."x.y"."0".z IN (1.0, 1e300, -2, "s", null, false)"#)?;
        assert_eq!(
            f.to_string(),
            r#"input."x.y"."0".z IN (1.0, 1e300, -2, "s", null, false)"#
        );
        Ok(())
    }

    fn run<'a>(error_types: &'a [String], input: Option<&'a Json>) -> RunFacts<'a> {
        RunFacts {
            id: "r1",
            workflow: "orders",
            version: 3,
            status: "failed",
            created: DateTime::from_timestamp(1_790_000_000 - 7_200, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
            finished: None,
            parent: None,
            idempotency_key: Some("k1"),
            error_types,
            input,
            output: None,
        }
    }

    #[test]
    fn matches_follows_three_valued_logic() -> Result<(), QueryError> {
        let errors = vec!["Timeout".to_owned()];
        let input = json!({
            "customer": {"id": "c-42", "tags": ["a"]}, "n": 5, "items": [{"p": 1}], "empty": []
        });
        let r = run(&errors, Some(&input));
        let yes = |q: &str| -> Result<bool, QueryError> { Ok(Filter::parse(q)?.matches(&r, now())) };
        let cases = [
            (
                r#"status = "failed" AND created > "-24h" AND input.customer.id = "c-42""#,
                true,
            ),
            (r#"created > "-1h""#, false),
            (r#"version >= 3 AND version IN (1, 3)"#, true),
            // parent is NULL: unknown, and NOT unknown is unknown.
            (r#"parent = "p""#, false),
            (r#"NOT parent = "p""#, false),
            (r#"parent = null"#, true),
            (r#"parent = "p" OR workflow = "orders""#, true),
            // finished is NULL for a live run.
            (r#"NOT finished < "-1h""#, false),
            // containment: a missing path is false, so NOT matches.
            (r#"input.customer.name = "x""#, false),
            (r#"NOT input.customer.name = "x""#, true),
            // != reads the path: missing is unknown.
            (r#"input.customer.name != "x""#, false),
            (r#"input.customer.id != "x""#, true),
            // an array is not its element.
            (r#"input.customer.tags = "a""#, false),
            (r#"input.items.0.p = 1.0"#, true),
            (r#"input.items.0.p > 0.5"#, true),
            (r#"input.n > 4 AND input.n < 6 AND input.n = 5.0"#, true),
            // a string orders before any number in jsonb.
            (r#"input.customer.id < 0"#, true),
            // so does an empty array (PostgreSQL's order puts it before null).
            (r#"input.empty < 0 AND input.empty <= -5"#, true),
            (r#"error_type = "Timeout" AND error_type != "Boom""#, true),
            (r#"error_type IN ("Boom", "Other")"#, false),
            (r#"idempotency_key = "k1" AND id = "r1""#, true),
        ];
        for (q, want) in cases {
            assert_eq!(yes(q)?, want, "{q}");
        }
        let no_input = run(&errors, None);
        let f = Filter::parse(r#"NOT input.a = 1"#)?;
        assert!(!f.matches(&no_input, now()), "a NULL input column is unknown");
        Ok(())
    }

    #[test]
    fn a_filter_says_whether_it_reads_error_types() -> Result<(), QueryError> {
        for (q, want) in [
            (r#"status = "failed""#, false),
            (r#"input.error_type = "x""#, false),
            (r#"error_type = "Timeout""#, true),
            (
                r#"status = "failed" OR (version = 1 AND NOT error_type IN ("A"))"#,
                true,
            ),
        ] {
            assert_eq!(Filter::parse(q)?.uses_error_type(), want, "{q}");
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Properties.

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_][a-z0-9_]{0,8}",
            ".{0,12}",
            Just(String::new()),
            "[\"\\\\\\x00-\\x1fé]{0,4}",
        ]
    }

    fn arb_seg() -> impl Strategy<Value = Seg> {
        prop_oneof![arb_string().prop_map(Seg::Key), (0..=MAX_INDEX).prop_map(Seg::Index),]
    }

    fn arb_time() -> impl Strategy<Value = Value> {
        prop_oneof![
            (0i64..253_402_300_799, 0u32..1_000_000_000)
                .prop_map(|(s, n)| { Value::At(DateTime::from_timestamp(s, n).unwrap_or(DateTime::<Utc>::MIN_UTC)) }),
            (0..=MAX_RELATIVE_TIME.as_secs(), 0u32..1_000_000_000)
                .prop_map(|(s, n)| Value::Ago(Duration::new(s, n).min(MAX_RELATIVE_TIME))),
        ]
    }

    fn arb_number() -> impl Strategy<Value = Value> {
        prop_oneof![
            proptest::prelude::any::<i64>().prop_map(Value::Int),
            proptest::prelude::any::<f64>()
                .prop_filter("finite", |d| d.is_finite())
                .prop_map(Value::Dec),
        ]
    }

    fn arb_json_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            arb_string().prop_map(Value::Str),
            arb_number(),
            proptest::prelude::any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            proptest::prelude::any::<bool>().prop_map(Json::Bool),
            proptest::prelude::any::<i64>().prop_map(Json::from),
            "[a-c]{0,2}".prop_map(Json::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::btree_map("[a-c_0-2]", inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop::sample::select(vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge])
    }

    fn eq_ne() -> impl Strategy<Value = Op> {
        prop::sample::select(vec![Op::Eq, Op::Ne])
    }

    fn tests_of(values: BoxedStrategy<Value>, ordering: bool, null: bool) -> BoxedStrategy<Test> {
        let ops = if ordering { arb_op().boxed() } else { eq_ne().boxed() };
        let mut options = vec![
            (ops, values.clone()).prop_map(|(op, v)| Test::Op(op, v)).boxed(),
            prop::collection::vec(values, 1..4).prop_map(Test::In).boxed(),
        ];
        if null {
            options.push(eq_ne().prop_map(|op| Test::Op(op, Value::Null)).boxed());
        }
        prop::strategy::Union::new(options).boxed()
    }

    fn arb_cmp() -> impl Strategy<Value = Cmp> {
        let text = arb_string().prop_map(Value::Str).boxed();
        let status = prop::sample::select(RunStatus::ALL.to_vec())
            .prop_map(|s| Value::Str(s.word().to_owned()))
            .boxed();
        let path = prop::collection::vec(arb_seg(), 1..=MAX_PATH_SEGMENTS).boxed();
        let with = |field: Field, tests: BoxedStrategy<Test>| {
            tests
                .prop_map(move |test| Cmp {
                    field: field.clone(),
                    test,
                })
                .boxed()
        };
        prop::strategy::Union::new(vec![
            with(Field::Id, tests_of(text.clone(), false, false)),
            with(Field::Workflow, tests_of(text.clone(), false, false)),
            with(Field::Parent, tests_of(text.clone(), false, true)),
            with(Field::IdempotencyKey, tests_of(text.clone(), false, true)),
            with(Field::ErrorType, tests_of(text, false, false)),
            with(Field::Status, tests_of(status, false, false)),
            with(
                Field::Version,
                tests_of((0..=i64::from(i32::MAX)).prop_map(Value::Int).boxed(), true, false),
            ),
            with(Field::Created, tests_of(arb_time().boxed(), true, false)),
            with(Field::Finished, tests_of(arb_time().boxed(), true, true)),
            (
                path.clone(),
                prop::bool::ANY,
                tests_of(arb_json_value().boxed(), false, false),
            )
                .prop_map(|(path, input, test)| Cmp {
                    field: if input { Field::Input(path) } else { Field::Output(path) },
                    test,
                })
                .boxed(),
            (path, prop::bool::ANY, arb_op(), arb_number())
                .prop_map(|(path, input, op, v)| Cmp {
                    field: if input { Field::Input(path) } else { Field::Output(path) },
                    test: Test::Op(op, v),
                })
                .boxed(),
        ])
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        arb_cmp().prop_map(Expr::Cmp).prop_recursive(4, 32, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..=3).prop_map(Expr::And),
                prop::collection::vec(inner.clone(), 2..=3).prop_map(Expr::Or),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
    }

    fn count(e: &Expr) -> usize {
        match e {
            Expr::Or(items) | Expr::And(items) => items.iter().map(count).sum(),
            Expr::Not(inner) => count(inner),
            Expr::Cmp(_) => 1,
        }
    }

    /// The placeholder numbers in `sql`, or why it is not placeholders only.
    fn placeholders(sql: &str) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' {
                let mut n = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    n.push(d);
                }
                out.push(n.parse().map_err(|_| format!("a bare $ in {sql}"))?);
            } else if c.is_ascii_digit() || c == '\'' || c == '"' || !c.is_ascii() {
                return Err(format!("{c:?} outside a placeholder in {sql}"));
            }
        }
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_filter_prints_and_parses_back_to_itself(expr in arb_expr()) {
            prop_assume!(count(&expr) <= MAX_COMPARISONS);
            let f = Filter { expr };
            let text = f.to_string();
            prop_assume!(text.len() <= MAX_QUERY_BYTES);
            prop_assert_eq!(Filter::parse(&text), Ok(f), "{}", text);
        }

        #[test]
        fn the_sql_of_any_filter_has_placeholders_only(expr in arb_expr(), first in 1usize..50) {
            let w = Filter { expr }.to_sql(first, now());
            let mut seen = placeholders(&w.sql).map_err(TestCaseError::fail)?;
            seen.sort_unstable();
            seen.dedup();
            let want: Vec<usize> = (first..first + w.params.len()).collect();
            prop_assert_eq!(seen, want, "{}", w.sql);
        }

        #[test]
        fn matches_is_kleene_logic_on_any_run(
            a in arb_expr(),
            b in arb_expr(),
            input in arb_json(),
            finished in prop::option::of(arb_time()),
            errors in prop::collection::vec("[A-C]", 0..3),
        ) {
            let finished = finished.and_then(|t| t.instant(now()));
            let mut facts = run(&errors, Some(&input));
            facts.finished = finished;
            facts.output = Some(&input);
            let m = |e: Expr| Filter { expr: e }.matches(&facts, now());
            let (ma, mb) = (m(a.clone()), m(b.clone()));
            // True and its negation are never both true; AND and OR of true values.
            prop_assert!(!(ma && m(Expr::Not(Box::new(a.clone())))));
            prop_assert_eq!(m(Expr::And(vec![a.clone(), b.clone()])), ma && mb);
            prop_assert_eq!(m(Expr::Or(vec![a, b])), ma || mb);
        }

        #[test]
        fn any_text_is_a_filter_or_an_error(text in prop_oneof![
            ".{0,200}",
            prop::collection::vec(
                prop::sample::select(vec![
                    "(", ")", ",", ".", "=", "!=", "<", ">=", "AND", "or", "NOT", "in", "id",
                    "version", "status", "created", "finished", "parent", "error_type", "input",
                    "output", "\"failed\"", "\"-24h\"", "\"2026-11-21T08:30:00Z\"", "1", "-2.5",
                    "1e5", "true", "null", "\"", "\\", "é", "0.1", "x",
                ]),
                0..80,
            ).prop_map(|t| t.join(" ")),
            (1usize..3000, prop::sample::select(vec!["(", "NOT ", "input.a", "((NOT "]))
                .prop_map(|(n, s)| s.repeat(n)),
            ".{4000,4200}",
        ]) {
            match Filter::parse(&text) {
                Ok(f) => {
                    // The canonical text puts spaces around operators, so a dense query near the
                    // size bound may print longer than the bound.
                    let canonical = f.to_string();
                    if canonical.len() <= MAX_QUERY_BYTES {
                        prop_assert_eq!(Filter::parse(&canonical), Ok(f));
                    }
                }
                Err(e) => {
                    prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{}", e);
                    prop_assert!(e.to_string().starts_with("query: column "));
                    prop_assert!(e.message.len() < 1024, "{}", e);
                }
            }
        }
    }
}
