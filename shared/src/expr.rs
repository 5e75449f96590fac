//! CEL expressions (<https://cel.dev>) of workflow definitions: `when:` conditions, `for_each:` lists,
//! `input:` templates, `sleep_until:` times and `wait_for_event` keys.
//!
//! An expression is compiled and checked once, when its workflow is registered ([`Expr::compile`],
//! [`Template::compile`]): syntax, the variables it reads (`input`, `steps.<id>` of the steps it
//! depends on, and `item` / `index` in a fan-out step's input), the functions it calls (CEL's
//! standard ones) and, where the field wants a type, a literal of the wrong one. It is then evaluated
//! by the coordinator against [`Bindings`], converting JSON to CEL values and back.
//!
//! JSON numbers become CEL `int`s when they are integers that fit an `i64`, `uint`s when they only
//! fit a `u64`, and `double`s otherwise. Results convert back to JSON with timestamps as RFC 3339
//! strings, durations as `"1.5s"`-style strings, bytes as base64, and optionals as their value (or
//! `null` when empty).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr as Ast, IdedEntryExpr, LiteralValue, operators};
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
use cel::common::value::Val;
use cel::objects::OptionalValue;
use cel::{Context, Env, ExecutionError, IdedExpr, Program, Value};

/// The standard environment every expression is compiled and evaluated with (built once).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// `timestamp(s)`: how an RFC 3339 string becomes a point in time (CEL's own parser).
static PARSE_TIMESTAMP: LazyLock<Program> =
    LazyLock::new(|| ENV.compile("timestamp(s)").expect("`timestamp(s)` is valid CEL"));

/// Operators the interpreter evaluates itself, whatever the environment declares.
const OPERATORS: &[&str] = &[
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::SUBSTRACT,
    operators::ADD,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER_EQUALS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::LESS,
    operators::NEGATE,
    operators::INDEX,
    operators::OPT_INDEX,
    operators::OPT_SELECT,
    operators::NOT_STRICTLY_FALSE,
    operators::IN,
];

/// The fields of a `steps.<id>` entry.
const STEP_FIELDS: &[&str] = &["output", "status"];

/// What an expression may refer to: checked at registration.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Step ids whose outputs the expression may read as `steps.<id>` (the step's ancestors).
    pub steps: BTreeSet<String>,
    /// Whether `item` and `index` are in scope (input templates of for_each steps).
    pub item: bool,
}

/// Values an expression is evaluated against.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    /// The run input (`input`).
    pub input: serde_json::Value,
    /// step id -> (status word, output JSON), read as `steps.<id>.status` and `steps.<id>.output`.
    pub steps: BTreeMap<String, (String, serde_json::Value)>,
    /// `(index, element)` of a fan-out step's element, read as `index` and `item`.
    pub item: Option<(u64, serde_json::Value)>,
}

/// What type a field wants its expression to evaluate to; a literal of another type is refused when
/// compiling (other expressions are only checked when evaluated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Any value (template expressions).
    Any,
    /// A bool (`when:`).
    Bool,
    /// A list (`for_each:`).
    List,
    /// A string or an int (`wait_for_event.key`).
    Key,
    /// A timestamp, an RFC 3339 string or Unix ms (`sleep_until:`).
    Time,
}

/// A compiled, checked CEL expression. Cheap to clone (`Arc` inside). `Debug` prints the source.
#[derive(Clone)]
pub struct Expr(Arc<Compiled>);

struct Compiled {
    source: String,
    program: Program,
    steps_read: BTreeSet<String>,
    /// What of each value the expression reads: only that is converted when evaluating.
    input: Reads,
    item: Reads,
    index: bool,
    steps: Vec<(String, Reads)>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.0.source).finish()
    }
}

impl Expr {
    /// Compiles and checks `source` against `scope`.
    ///
    /// # Errors
    /// A human message (no field path: the caller adds it), every problem found joined with `; `: a
    /// syntax error, an unknown variable (anything but `input`, `steps` and, where the scope allows
    /// them, `item` and `index`), `steps.<id>` naming a step not in scope, a use of `steps` that does
    /// not name a step statically (`steps[input.name]`), an unknown function (only CEL's standard
    /// functions and macros), and, where `want` says so, a literal of the wrong type.
    pub fn compile(source: &str, scope: &Scope, want: Want) -> Result<Expr, String> {
        if source.trim().is_empty() {
            return Err("empty expression".to_owned());
        }
        let program = ENV.compile(source).map_err(|errors| {
            let messages: Vec<String> = errors
                .errors
                .iter()
                .map(|e| {
                    let message = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
                    format!("syntax error at {}:{}: {message}", e.pos.0, e.pos.1)
                })
                .collect();
            messages.join("; ")
        })?;
        let mut checker = Checker {
            scope,
            bound: Vec::new(),
            input: Reads::Nothing,
            item: Reads::Nothing,
            index: false,
            steps: BTreeMap::new(),
            errors: Vec::new(),
        };
        checker.walk(program.expression());
        let Checker {
            input,
            item,
            index,
            steps,
            mut errors,
            ..
        } = checker;
        errors.extend(check_literal(program.expression(), want));
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(Expr(Arc::new(Compiled {
            source: source.to_owned(),
            program,
            steps_read: steps.keys().cloned().collect(),
            input,
            item,
            index,
            steps: steps.into_iter().collect(),
        })))
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Step ids this expression reads.
    pub fn steps_read(&self) -> &BTreeSet<String> {
        &self.0.steps_read
    }

    /// Evaluates to JSON.
    ///
    /// # Errors
    /// Evaluation errors (no such key, type mismatch, division by zero), prefixed with the source,
    /// e.g. `steps.a.output.kind: no such key: kind`; a result with no JSON form (a NaN, a type...).
    pub fn eval(&self, b: &Bindings) -> Result<serde_json::Value, String> {
        let value = self.eval_value(b)?;
        to_json(&value).map_err(|e| self.error(e))
    }

    /// As [`eval`](Self::eval); the result must be a bool.
    ///
    /// # Errors
    /// As `eval`, and `<source>: evaluated to a string, not a bool`.
    pub fn eval_bool(&self, b: &Bindings) -> Result<bool, String> {
        match self.eval_value(b)? {
            Value::Bool(v) => Ok(v),
            other => Err(self.error(format!("evaluated to {}, not a bool", type_word(&other)))),
        }
    }

    /// As [`eval`](Self::eval); the result must be a list. Returns its elements.
    ///
    /// # Errors
    /// As `eval`, and `<source>: evaluated to a map, not a list`.
    pub fn eval_list(&self, b: &Bindings) -> Result<Vec<serde_json::Value>, String> {
        match self.eval_value(b)? {
            Value::List(items) => items.iter().map(|v| to_json(v).map_err(|e| self.error(e))).collect(),
            other => Err(self.error(format!("evaluated to {}, not a list", type_word(&other)))),
        }
    }

    /// As [`eval`](Self::eval); the result must be a string, or an int or uint (its decimal text).
    ///
    /// # Errors
    /// As `eval`, and `<source>: evaluated to a bool, not a string or an int`.
    pub fn eval_key(&self, b: &Bindings) -> Result<String, String> {
        match self.eval_value(b)? {
            Value::String(s) => Ok(s.as_str().to_owned()),
            Value::Int(i) => Ok(i.to_string()),
            Value::UInt(u) => Ok(u.to_string()),
            other => Err(self.error(format!("evaluated to {}, not a string or an int", type_word(&other)))),
        }
    }

    /// As [`eval`](Self::eval); the result must be a point in time, returned in Unix ms: a CEL
    /// timestamp, an RFC 3339 string, or an int (Unix ms).
    ///
    /// # Errors
    /// As `eval`, a string that is not RFC 3339, and any other type.
    pub fn eval_time_ms(&self, b: &Bindings) -> Result<i64, String> {
        match self.eval_value(b)? {
            Value::Timestamp(t) => Ok(t.timestamp_millis()),
            Value::Int(ms) => Ok(ms),
            Value::UInt(ms) => i64::try_from(ms).map_err(|_| self.error(format!("{ms} ms is out of range"))),
            Value::String(s) => parse_rfc3339_ms(&s).map_err(|e| self.error(e)),
            other => Err(self.error(format!(
                "evaluated to {}, not a timestamp, an RFC 3339 string or an int (Unix ms)",
                type_word(&other)
            ))),
        }
    }

    fn error(&self, message: impl fmt::Display) -> String {
        format!("{}: {message}", self.0.source)
    }

    /// Evaluates against a context holding only what the expression reads: the variables it names,
    /// the `steps` entries it names, and of `input`, `item` and step outputs, when it only reads
    /// written-out top-level fields of them, only those fields.
    fn eval_value(&self, b: &Bindings) -> Result<Value, String> {
        let c = &self.0;
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        if let Some(input) = c.input.convert(&b.input) {
            ctx.add_variable_as_val("input", input);
        }
        if !c.steps.is_empty() {
            let mut steps: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(c.steps.len());
            for (id, reads) in &c.steps {
                if let Some((status, output)) = b.steps.get(id) {
                    let mut step: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(2);
                    if let Some(output) = reads.convert(output) {
                        step.insert(CelMapKey::from("output"), output);
                    }
                    step.insert(CelMapKey::from("status"), Box::new(CelString::from(status.as_str())));
                    steps.insert(CelMapKey::from(id.as_str()), Box::new(CelMap::from(step)));
                }
            }
            ctx.add_variable_as_val("steps", Box::new(CelMap::from(steps)));
        }
        if let Some((index, item)) = &b.item {
            if let Some(item) = c.item.convert(item) {
                ctx.add_variable_as_val("item", item);
            }
            if c.index {
                let index = i64::try_from(*index).unwrap_or(i64::MAX);
                ctx.add_variable_as_val("index", Box::new(CelInt::from(index)));
            }
        }
        c.program.execute(&ctx).map_err(|e| self.error(describe(&e)))
    }
}

/// A JSON template, compiled: string values of the exact form `${{ <cel> }}` are expressions,
/// replaced by their value when rendered; everything else is kept as written.
#[derive(Debug, Clone)]
pub struct Template {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    /// A subtree without expressions.
    Literal(serde_json::Value),
    Expr(Expr),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Template {
    /// Compiles every `${{ }}` string of `value` with [`Want::Any`] against `scope`.
    ///
    /// # Errors
    /// Every bad expression as (relative JSON path, e.g. `text`, `n[1]`, `a.b` or `["a b"]`, empty
    /// for the root; message), all of them.
    pub fn compile(value: &serde_json::Value, scope: &Scope) -> Result<Template, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let root = compile_node(value, scope, &mut String::new(), &mut errors);
        if errors.is_empty() {
            Ok(Template { root })
        } else {
            Err(errors)
        }
    }

    /// Step ids the template's expressions read.
    pub fn steps_read(&self) -> BTreeSet<String> {
        fn collect(node: &Node, out: &mut BTreeSet<String>) {
            match node {
                Node::Literal(_) => {}
                Node::Expr(e) => out.extend(e.steps_read().iter().cloned()),
                Node::Array(items) => items.iter().for_each(|n| collect(n, out)),
                Node::Object(entries) => entries.iter().for_each(|(_, n)| collect(n, out)),
            }
        }
        let mut out = BTreeSet::new();
        collect(&self.root, &mut out);
        out
    }

    /// Renders with `b`.
    ///
    /// # Errors
    /// The first failing expression's, prefixed with its path (`n[1]: input.n + 1: ...`).
    pub fn render(&self, b: &Bindings) -> Result<serde_json::Value, String> {
        render_node(&self.root, b, &mut String::new())
    }
}

/// The expression of a template string, if it is one: `${{ <cel> }}`, trimmed.
fn template_expression(s: &str) -> Option<&str> {
    s.strip_prefix("${{")?.strip_suffix("}}").map(str::trim)
}

fn compile_node(
    value: &serde_json::Value,
    scope: &Scope,
    path: &mut String,
    errors: &mut Vec<(String, String)>,
) -> Node {
    match value {
        serde_json::Value::String(s) => match template_expression(s) {
            None => Node::Literal(value.clone()),
            Some(source) => match Expr::compile(source, scope, Want::Any) {
                Ok(e) => Node::Expr(e),
                Err(mut message) => {
                    if source.contains("}}") && source.contains("${{") {
                        message.push_str(
                            " (a `${{ }}` expression must be the whole string: there is no interpolation \
                             inside a string, use `+` to concatenate)",
                        );
                    }
                    errors.push((path.clone(), message));
                    Node::Literal(serde_json::Value::Null)
                }
            },
        },
        serde_json::Value::Array(items) => {
            let len = path.len();
            let nodes: Vec<Node> = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    path.push_str(&format!("[{i}]"));
                    let node = compile_node(item, scope, path, errors);
                    path.truncate(len);
                    node
                })
                .collect();
            if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                Node::Literal(value.clone())
            } else {
                Node::Array(nodes)
            }
        }
        serde_json::Value::Object(map) => {
            let len = path.len();
            let entries: Vec<(String, Node)> = map
                .iter()
                .map(|(key, item)| {
                    push_key(path, key);
                    let node = compile_node(item, scope, path, errors);
                    path.truncate(len);
                    (key.clone(), node)
                })
                .collect();
            if entries.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
                Node::Literal(value.clone())
            } else {
                Node::Object(entries)
            }
        }
        _ => Node::Literal(value.clone()),
    }
}

fn render_node(node: &Node, b: &Bindings, path: &mut String) -> Result<serde_json::Value, String> {
    match node {
        Node::Literal(v) => Ok(v.clone()),
        Node::Expr(e) => e
            .eval(b)
            .map_err(|m| if path.is_empty() { m } else { format!("{path}: {m}") }),
        Node::Array(items) => {
            let len = path.len();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                out.push(render_node(item, b, path)?);
                path.truncate(len);
            }
            Ok(serde_json::Value::Array(out))
        }
        Node::Object(entries) => {
            let len = path.len();
            let mut out = serde_json::Map::new();
            for (key, item) in entries {
                push_key(path, key);
                out.insert(key.clone(), render_node(item, b, path)?);
                path.truncate(len);
            }
            Ok(serde_json::Value::Object(out))
        }
    }
}

/// Appends an object key to a relative path: `.key` (no dot at the root) when it is a plain word,
/// `["a key"]` (JSON-quoted) otherwise.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&serde_json::Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

/// What an expression reads of a JSON value (`input`, `item` or a step's output), so that evaluation
/// converts no more of it than that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Reads {
    /// Nothing: the value is not bound.
    #[default]
    Nothing,
    /// Only these top-level fields, each written out (`input.x`, `input["x"]`, `has(input.x)`).
    Fields(BTreeSet<String>),
    /// The whole value.
    Whole,
}

impl Reads {
    fn field(&mut self, name: &str) {
        match self {
            Reads::Nothing => *self = Reads::Fields(BTreeSet::from([name.to_owned()])),
            Reads::Fields(fields) => {
                fields.insert(name.to_owned());
            }
            Reads::Whole => {}
        }
    }

    /// The value as CEL, reduced to the fields read when it is an object; `None` when not read.
    fn convert<'v>(&self, value: &'v serde_json::Value) -> Option<Box<dyn Val + 'v>> {
        match (self, value) {
            (Reads::Nothing, _) => None,
            (Reads::Fields(fields), serde_json::Value::Object(map)) => Some(Box::new(CelMap::from(
                fields
                    .iter()
                    .filter_map(|f| map.get_key_value(f.as_str()))
                    .map(|(k, v)| (CelMapKey::from(k.as_str()), json_to_val(v)))
                    .collect::<HashMap<_, _>>(),
            ))),
            _ => Some(json_to_val(value)),
        }
    }
}

/// A JSON value an expression may read a field of.
enum Root<'e> {
    Input,
    Item,
    /// `steps.<id>.output`
    Output(&'e str),
}

/// The static checks of a parsed expression (variables, `steps.<id>`, functions), and what it reads.
struct Checker<'a> {
    scope: &'a Scope,
    /// Variables of the enclosing comprehensions (macros such as `map(x, ...)`), innermost last.
    bound: Vec<&'a str>,
    input: Reads,
    item: Reads,
    index: bool,
    /// Step id -> what of its output is read (a step read only for its status reads `Nothing`).
    steps: BTreeMap<String, Reads>,
    errors: Vec<String>,
}

impl<'a> Checker<'a> {
    /// Records a problem, once.
    fn error(&mut self, message: String) {
        if !self.errors.contains(&message) {
            self.errors.push(message);
        }
    }

    fn is_bound(&self, name: &str) -> bool {
        self.bound.contains(&name)
    }

    /// Whether `name` is a variable: one of ours, or a comprehension variable.
    fn is_variable(&self, name: &str) -> bool {
        self.is_bound(name) || matches!(name, "input" | "steps" | "item" | "index")
    }

    /// Whether `e` is the identifier `name`, not shadowed by a comprehension variable.
    fn is_global(&self, e: &IdedExpr, name: &str) -> bool {
        matches!(&e.expr, Ast::Ident(n) if n == name && !self.is_bound(name))
    }

    /// The step id of `steps.<id>`, `steps["<id>"]`, `steps.?<id>` or `steps[?"<id>"]`.
    fn step_access<'e>(&self, e: &'e IdedExpr) -> Option<&'e str> {
        let (target, key) = written_out_field(e, false)?;
        self.is_global(target, "steps").then_some(key)
    }

    /// `(id, field)` of `steps.<id>.<field>`, in any of the forms of `step_access`.
    fn step_entry_field<'e>(&self, e: &'e IdedExpr) -> Option<(&'e str, &'e str)> {
        let (target, field) = written_out_field(e, false)?;
        Some((self.step_access(target)?, field))
    }

    /// `(root, field)` of `input.<field>`, `item.<field>` or `steps.<id>.output.<field>`, presence
    /// tests (`has(input.<field>)`) included.
    fn root_field<'e>(&self, e: &'e IdedExpr) -> Option<(Root<'e>, &'e str)> {
        let (target, field) = written_out_field(e, true)?;
        if self.is_global(target, "input") {
            return Some((Root::Input, field));
        }
        if self.scope.item && self.is_global(target, "item") {
            return Some((Root::Item, field));
        }
        match self.step_entry_field(target)? {
            (id, "output") => Some((Root::Output(id), field)),
            _ => None,
        }
    }

    /// Records a read of step `id`, and `output` as what is read of its output.
    fn record_step(&mut self, id: &str, output: Reads) {
        if !self.scope.steps.contains(id) {
            self.error(format!(
                "steps.{id}: not a step this one depends on (directly or transitively)"
            ));
            return;
        }
        let reads = self.steps.entry(id.to_owned()).or_default();
        match output {
            Reads::Nothing => {}
            Reads::Whole => *reads = Reads::Whole,
            Reads::Fields(fields) => fields.iter().for_each(|f| reads.field(f)),
        }
    }

    fn walk(&mut self, e: &'a IdedExpr) {
        if let Some((root, field)) = self.root_field(e) {
            match root {
                Root::Input => self.input.field(field),
                Root::Item => self.item.field(field),
                Root::Output(id) => self.record_step(id, Reads::Fields(BTreeSet::from([field.to_owned()]))),
            }
            return;
        }
        if let Some((id, field)) = self.step_entry_field(e) {
            if !STEP_FIELDS.contains(&field) {
                self.error(format!("steps.{id}.{field}: a step has only `output` and `status`"));
            }
            self.record_step(
                id,
                if field == "output" {
                    Reads::Whole
                } else {
                    Reads::Nothing
                },
            );
            return;
        }
        if let Some(id) = self.step_access(e) {
            self.record_step(id, Reads::Whole);
            return;
        }
        match &e.expr {
            Ast::Unspecified | Ast::Literal(_) => {}
            Ast::Ident(name) => self.ident(name),
            Ast::Select(s) => {
                if s.test && self.is_global(&s.operand, "steps") {
                    // `has(steps.x)`: whether the step ran
                    self.record_step(&s.field, Reads::Nothing);
                    return;
                }
                if !s.test
                    && let Some(segments) = qualified_name(e)
                    && !self.is_variable(segments[0])
                    && ENV.types().find_type(&segments.join(".")).is_some()
                {
                    // a type name such as `google.protobuf.Timestamp`
                    return;
                }
                self.walk(&s.operand);
            }
            Ast::Call(c) => {
                if c.target.is_none()
                    && c.args.len() == 2
                    && is_index(&c.func_name)
                    && self.is_global(&c.args[0], "steps")
                {
                    // not a written-out step id (that is `step_access`)
                    self.error(
                        "`steps` must be indexed by a step id written out, as in `steps.<id>` or \
                         `steps[\"<id>\"]`, not computed"
                            .to_owned(),
                    );
                    self.walk(&c.args[1]);
                    return;
                }
                if let Some(target) = &c.target
                    && let Some(segments) = qualified_name(target)
                    && !self.is_variable(segments[0])
                    && is_std_function(&format!("{}.{}", segments.join("."), c.func_name))
                {
                    // a namespaced function such as `optional.of(x)`
                    c.args.iter().for_each(|a| self.walk(a));
                    return;
                }
                if !is_std_function(&c.func_name) {
                    self.error(format!("unknown function `{}`", c.func_name));
                }
                if let Some(target) = &c.target {
                    self.walk(target);
                }
                c.args.iter().for_each(|a| self.walk(a));
            }
            Ast::Comprehension(c) => {
                self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                let depth = self.bound.len();
                self.bound.push(&c.iter_var);
                if let Some(v) = &c.iter_var2 {
                    self.bound.push(v);
                }
                self.bound.push(&c.accu_var);
                self.walk(&c.loop_cond);
                self.walk(&c.loop_step);
                self.walk(&c.result);
                self.bound.truncate(depth);
            }
            Ast::List(l) => l.elements.iter().for_each(|x| self.walk(x)),
            Ast::Map(m) => self.entries(&m.entries),
            Ast::Struct(s) => {
                if ENV.types().find_struct(&s.type_name).is_none() {
                    self.error(format!("unknown message type `{}`", s.type_name));
                }
                self.entries(&s.entries);
            }
        }
    }

    fn entries(&mut self, entries: &'a [IdedEntryExpr]) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::MapEntry(me) => {
                    self.walk(&me.key);
                    self.walk(&me.value);
                }
                EntryExpr::StructField(f) => self.walk(&f.value),
            }
        }
    }

    fn ident(&mut self, name: &str) {
        if self.is_bound(name) {
            return;
        }
        match name {
            "input" => self.input = Reads::Whole,
            "steps" => self.error(
                "`steps` must be followed by a step id, as in `steps.<id>.output` or `steps[\"<id>\"].status`"
                    .to_owned(),
            ),
            "item" if self.scope.item => self.item = Reads::Whole,
            "index" if self.scope.item => self.index = true,
            "item" | "index" => self.error(format!(
                "`{name}` is only in scope in the input template of a for_each step"
            )),
            _ if ENV.types().find_type(name).is_some() => {} // a type name such as `int`
            _ => {
                let in_scope = if self.scope.item {
                    "input, steps, item and index"
                } else {
                    "input and steps"
                };
                self.error(format!("unknown variable `{name}` (an expression may read {in_scope})"));
            }
        }
    }
}

fn is_index(function: &str) -> bool {
    matches!(
        function,
        operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT
    )
}

/// `(target, field)` of `target.field`, `target["field"]`, `target.?field` or `target[?"field"]`, and,
/// if `test`, of `has(target.field)`.
fn written_out_field(e: &IdedExpr, test: bool) -> Option<(&IdedExpr, &str)> {
    match &e.expr {
        Ast::Select(s) if test || !s.test => Some((&s.operand, &s.field)),
        Ast::Call(c) if c.target.is_none() && c.args.len() == 2 && is_index(&c.func_name) => {
            Some((&c.args[0], string_literal(&c.args[1])?))
        }
        _ => None,
    }
}

/// The segments of `a.b.c` (an identifier, or field selections on one).
fn qualified_name(e: &IdedExpr) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut e = e;
    loop {
        match &e.expr {
            Ast::Ident(name) => {
                segments.push(name.as_str());
                segments.reverse();
                return Some(segments);
            }
            Ast::Select(s) if !s.test => {
                segments.push(s.field.as_str());
                e = &s.operand;
            }
            _ => return None,
        }
    }
}

fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Ast::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// Whether `name` is an operator or a function (global or member) of the standard environment.
fn is_std_function(name: &str) -> bool {
    if OPERATORS.contains(&name) {
        return true;
    }
    // The environment's declarations are not public; adding a function of the same name to a context
    // is refused exactly when the environment declares an overload of that name (global or member).
    let mut probe = Context::with_env(Arc::clone(&ENV));
    probe.add_function(name, |x: i64| x).is_err()
}

/// Refuses a literal (or list or map literal) at the root of `e` of a type `want` excludes.
fn check_literal(e: &IdedExpr, want: Want) -> Option<String> {
    let word = match &e.expr {
        Ast::Literal(LiteralValue::Boolean(_)) => "a bool",
        Ast::Literal(LiteralValue::Bytes(_)) => "bytes",
        Ast::Literal(LiteralValue::Double(_)) => "a double",
        Ast::Literal(LiteralValue::Int(_)) => "an int",
        Ast::Literal(LiteralValue::Null) => "null",
        Ast::Literal(LiteralValue::String(_)) => "a string",
        Ast::Literal(LiteralValue::UInt(_)) => "a uint",
        Ast::List(_) => "a list",
        Ast::Map(_) => "a map",
        _ => return None,
    };
    let (ok, wanted) = match want {
        Want::Any => (true, ""),
        Want::Bool => (word == "a bool", "a bool"),
        Want::List => (word == "a list", "a list"),
        Want::Key => (matches!(word, "a string" | "an int" | "a uint"), "a string or an int"),
        Want::Time => (
            matches!(word, "a string" | "an int" | "a uint"),
            "a timestamp, an RFC 3339 string or an int (Unix ms)",
        ),
    };
    if !ok {
        return Some(format!("is {word}, not {wanted}"));
    }
    if want == Want::Time
        && let Some(s) = string_literal(e)
    {
        return parse_rfc3339_ms(s).err();
    }
    None
}

/// Unix ms of an RFC 3339 string, parsed as CEL's `timestamp()` does.
fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let mut ctx = Context::with_env(Arc::clone(&ENV));
    ctx.add_variable_as_val("s", Box::new(CelString::from(s)));
    match PARSE_TIMESTAMP.execute(&ctx) {
        Ok(Value::Timestamp(t)) => Ok(t.timestamp_millis()),
        Ok(other) => Err(format!("{s:?} is not a timestamp: {other:?}")),
        Err(ExecutionError::FunctionError { message, .. }) => {
            Err(format!("{s:?} is not an RFC 3339 timestamp: {message}"))
        }
        Err(e) => Err(format!("{s:?} is not an RFC 3339 timestamp: {}", describe(&e))),
    }
}

/// JSON as a CEL value, borrowing its strings.
fn json_to_val(j: &serde_json::Value) -> Box<dyn Val + '_> {
    match j {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        serde_json::Value::String(s) => Box::new(CelString::from(s.as_str())),
        serde_json::Value::Array(items) => Box::new(CelList::from(items.iter().map(json_to_val).collect::<Vec<_>>())),
        serde_json::Value::Object(map) => Box::new(CelMap::from(
            map.iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), json_to_val(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// A CEL value as JSON.
fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => (*i).into(),
        Value::UInt(u) => (*u).into(),
        Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => serde_json::Value::Number(n),
            None => return Err(format!("evaluated to {f}, which has no JSON form")),
        },
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        Value::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map.map.iter() {
                out.insert(k.to_string(), to_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Value::Timestamp(t) => serde_json::Value::String(t.to_rfc3339()),
        Value::Duration(d) => {
            let secs = d.num_seconds();
            let nanos = d.subsec_nanos();
            let sign = if secs < 0 || nanos < 0 { "-" } else { "" };
            let (secs, nanos) = (secs.unsigned_abs(), nanos.unsigned_abs());
            serde_json::Value::String(if nanos == 0 {
                format!("{sign}{secs}s")
            } else {
                format!("{sign}{secs}.{}s", format!("{nanos:09}").trim_end_matches('0'))
            })
        }
        // base64, as cel's own conversion does
        Value::Bytes(_) => v.json().map_err(|e| e.to_string())?,
        Value::Opaque(o) => match o.downcast_ref::<OptionalValue>() {
            Some(opt) => match opt.value() {
                Some(inner) => to_json(inner)?,
                None => serde_json::Value::Null,
            },
            None => match o.json() {
                Some(j) => j,
                None => return Err(format!("evaluated to {}, which has no JSON form", type_word(v))),
            },
        },
        _ => return Err(format!("evaluated to {}, which has no JSON form", type_word(v))),
    })
}

/// `a string`, `an int`...: a value's type, for messages.
fn type_word(v: &Value) -> String {
    match v {
        Value::List(_) => "a list".to_owned(),
        Value::Map(_) => "a map".to_owned(),
        Value::Function(..) => "a function".to_owned(),
        Value::Int(_) => "an int".to_owned(),
        Value::UInt(_) => "a uint".to_owned(),
        Value::Float(_) => "a double".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Bytes(_) => "bytes".to_owned(),
        Value::Bool(_) => "a bool".to_owned(),
        Value::Duration(_) => "a duration".to_owned(),
        Value::Timestamp(_) => "a timestamp".to_owned(),
        Value::Opaque(o) if o.downcast_ref::<OptionalValue>().is_some() => "an optional".to_owned(),
        Value::Opaque(o) => format!("a value of type {}", o.runtime_type_name()),
        Value::Struct(s) => format!("a {}", s.name()),
        Value::Null => "null".to_owned(),
    }
}

/// An evaluation error, for people.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::UndeclaredReference(name) => format!("undeclared reference to `{name}`"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::FunctionError { function, message } => format!("{function}(): {message}"),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn scope(steps: &[&str]) -> Scope {
        Scope {
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            item: false,
        }
    }

    fn bindings(input: serde_json::Value, steps: &[(&str, serde_json::Value)]) -> Bindings {
        Bindings {
            input,
            steps: steps
                .iter()
                .map(|(id, out)| ((*id).to_owned(), ("succeeded".to_owned(), out.clone())))
                .collect(),
            item: None,
        }
    }

    fn compile(source: &str, steps: &[&str], want: Want) -> Expr {
        Expr::compile(source, &scope(steps), want).unwrap_or_else(|e| panic!("{source}: {e}"))
    }

    fn refused(source: &str, steps: &[&str], want: Want) -> String {
        match Expr::compile(source, &scope(steps), want) {
            Ok(_) => panic!("{source} compiled"),
            Err(e) => e,
        }
    }

    #[test]
    fn condition_over_input_and_step_outputs() {
        let e = compile(
            r#"steps.classify.output.kind == "long" && input.priority > 2"#,
            &["classify"],
            Want::Bool,
        );
        assert_eq!(e.steps_read().iter().collect::<Vec<_>>(), ["classify"]);
        let b = bindings(json!({"priority": 3}), &[("classify", json!({"kind": "long"}))]);
        assert!(e.eval_bool(&b).unwrap());
        let b = bindings(json!({"priority": 1}), &[("classify", json!({"kind": "long"}))]);
        assert!(!e.eval_bool(&b).unwrap());
        let b = bindings(json!({"priority": 3}), &[("classify", json!({"kind": "short"}))]);
        assert!(!e.eval_bool(&b).unwrap());
    }

    #[test]
    fn step_status_is_readable() {
        let e = compile(r#"steps.a.status == "skipped""#, &["a"], Want::Bool);
        let mut b = bindings(json!({}), &[("a", json!(null))]);
        assert!(!e.eval_bool(&b).unwrap());
        b.steps.get_mut("a").unwrap().0 = "skipped".to_owned();
        assert!(e.eval_bool(&b).unwrap());
    }

    #[test]
    fn step_out_of_scope_is_refused_naming_it() {
        let e = refused("steps.x.output.ok", &["a"], Want::Bool);
        assert!(e.contains("steps.x: not a step this one depends on"), "{e}");
        let e = refused(r#"steps["x"].output.ok"#, &["a"], Want::Bool);
        assert!(e.contains("steps.x:"), "{e}");
        let e = refused("has(steps.x.output)", &[], Want::Bool);
        assert!(e.contains("steps.x:"), "{e}");
    }

    #[test]
    fn index_form_of_steps_is_accepted() {
        let e = compile(
            r#"steps["a"].output.n + steps.?b.output.orValue(0)"#,
            &["a", "b"],
            Want::Any,
        );
        assert_eq!(e.steps_read().len(), 2);
        let b = bindings(json!({}), &[("a", json!({"n": 2}))]);
        assert_eq!(e.eval(&b).unwrap(), json!(2));
    }

    #[test]
    fn computed_or_bare_steps_is_refused() {
        let e = refused("steps[input.name].output", &["a"], Want::Any);
        assert!(e.contains("written out"), "{e}");
        let e = refused("size(steps) > 0", &["a"], Want::Bool);
        assert!(e.contains("`steps` must be followed by a step id"), "{e}");
    }

    #[test]
    fn unknown_step_field_is_refused() {
        let e = refused("steps.a.outptu.x", &["a"], Want::Any);
        assert!(
            e.contains("steps.a.outptu: a step has only `output` and `status`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_variable_is_refused() {
        let e = refused("inputs.x == 1", &[], Want::Bool);
        assert!(e.contains("unknown variable `inputs`"), "{e}");
    }

    #[test]
    fn comprehension_variables_are_in_scope_only_inside() {
        let e = compile("input.xs.map(x, x * 2)", &[], Want::List);
        assert_eq!(
            e.eval_list(&bindings(json!({"xs": [1, 2]}), &[])).unwrap(),
            vec![json!(2), json!(4)]
        );
        compile(
            "input.xs.all(x, x > 0) && input.m.exists(k, input.m[k] == k)",
            &[],
            Want::Bool,
        );
        let e = refused("input.xs.map(x, x) == [] && x > 1", &[], Want::Bool);
        assert!(e.contains("unknown variable `x`"), "{e}");
    }

    #[test]
    fn type_names_and_namespaced_functions_are_known() {
        let e = compile("type(input.n) == int && optional.of(1).hasValue()", &[], Want::Bool);
        assert!(e.eval_bool(&bindings(json!({"n": 1}), &[])).unwrap());
    }

    #[test]
    fn unknown_function_is_refused() {
        let e = refused("frobnicate(input.x)", &[], Want::Any);
        assert!(e.contains("unknown function `frobnicate`"), "{e}");
        let e = refused("input.s.shout()", &[], Want::Any);
        assert!(e.contains("unknown function `shout`"), "{e}");
        compile(
            r#"input.s.startsWith("a") && input.s.matches("^a+$") && size(input.s) > 0"#,
            &[],
            Want::Bool,
        );
    }

    #[test]
    fn syntax_error_is_refused() {
        let e = refused("input.x ==", &[], Want::Bool);
        assert!(e.starts_with("syntax error"), "{e}");
        let e = refused("  ", &[], Want::Bool);
        assert_eq!(e, "empty expression");
    }

    #[test]
    fn literal_of_the_wrong_type_is_refused() {
        assert!(refused(r#""yes""#, &[], Want::Bool).contains("is a string, not a bool"));
        assert!(refused("3", &[], Want::Bool).contains("is an int, not a bool"));
        assert!(refused("3", &[], Want::List).contains("is an int, not a list"));
        assert!(refused("[1]", &[], Want::Key).contains("is a list, not a string or an int"));
        assert!(refused(r#""tomorrow""#, &[], Want::Time).contains("not an RFC 3339 timestamp"));
        compile("true", &[], Want::Bool);
        compile("[1, 2]", &[], Want::List);
        compile("3", &[], Want::Any);
        compile(r#""2030-01-01T00:00:00Z""#, &[], Want::Time);
    }

    #[test]
    fn eval_bool_refuses_other_types() {
        let e = compile("input.s", &[], Want::Bool);
        let err = e.eval_bool(&bindings(json!({"s": "x"}), &[])).unwrap_err();
        assert_eq!(err, "input.s: evaluated to a string, not a bool");
    }

    #[test]
    fn eval_errors_name_the_source() {
        let e = compile("steps.a.output.kind", &["a"], Want::Any);
        let err = e.eval(&bindings(json!({}), &[("a", json!({}))])).unwrap_err();
        assert_eq!(err, "steps.a.output.kind: no such key: kind");
        let e = compile("input.n / 0", &[], Want::Any);
        let err = e.eval(&bindings(json!({"n": 1}), &[])).unwrap_err();
        assert_eq!(err, "input.n / 0: division by zero");
    }

    #[test]
    fn template_renders_nested_values_and_keeps_literals() {
        let t = json!({
            "text": "${{ steps.read.output.text }}",
            "mode": "fast",
            "n": [1, "${{input.n + 1}}"],
            "deep": {"a": {"b": "${{ [input.n, steps.read.output.text] }}"}, "lit": "just text"},
            "price": "costs ${{ input.n }} dollars",
            "dollar": "$",
        });
        let t = Template::compile(&t, &scope(&["read"])).unwrap();
        assert_eq!(t.steps_read().into_iter().collect::<Vec<_>>(), ["read"]);
        let out = t
            .render(&bindings(json!({"n": 4}), &[("read", json!({"text": "hi"}))]))
            .unwrap();
        assert_eq!(
            out,
            json!({
                "text": "hi",
                "mode": "fast",
                "n": [1, 5],
                "deep": {"a": {"b": [4, "hi"]}, "lit": "just text"},
                "price": "costs ${{ input.n }} dollars",
                "dollar": "$",
            })
        );
    }

    #[test]
    fn template_root_expression_and_json_forms() {
        let t = Template::compile(&json!("${{ input }}"), &scope(&[])).unwrap();
        let input = json!({"a": [1, 2.5, null, true, "s"]});
        assert_eq!(t.render(&bindings(input.clone(), &[])).unwrap(), input);
        let t = Template::compile(
            &json!([
                "${{ duration('1500ms') }}",
                "${{ b'hi' }}",
                "${{ timestamp('2030-01-02T03:04:05Z') }}"
            ]),
            &scope(&[]),
        )
        .unwrap();
        assert_eq!(
            t.render(&Bindings::default()).unwrap(),
            json!(["1.5s", "aGk=", "2030-01-02T03:04:05+00:00"])
        );
    }

    #[test]
    fn template_render_error_is_prefixed_with_its_path() {
        let t = Template::compile(&json!({"a": {"b": [0, "${{ input.missing }}"]}}), &scope(&[])).unwrap();
        let err = t.render(&bindings(json!({}), &[])).unwrap_err();
        assert_eq!(err, "a.b[1]: input.missing: no such key: missing");
    }

    #[test]
    fn template_compile_errors_collect_every_path() {
        let t = json!({
            "ok": "${{ input.x }}",
            "text": "${{ steps.nope.output }}",
            "n": [1, "${{ nope + 1 }}"],
            "a": {"b": "${{ input. }}"},
            "odd key": "${{ }}",
        });
        let mut errors = Template::compile(&t, &scope(&[])).unwrap_err();
        errors.sort();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [r#"["odd key"]"#, "a.b", "n[1]", "text"], "{errors:?}");
        let root = Template::compile(&json!("${{ nope }}"), &scope(&[])).unwrap_err();
        assert_eq!(root[0].0, "");
    }

    #[test]
    fn two_expressions_in_one_string_are_refused_with_a_hint() {
        let errors = Template::compile(&json!({"s": "${{ input.a }} and ${{ input.b }}"}), &scope(&[])).unwrap_err();
        assert!(errors[0].1.contains("must be the whole string"), "{errors:?}");
    }

    #[test]
    fn item_and_index_only_when_the_scope_allows() {
        let t = json!({"element": "${{ item }}", "i": "${{ index }}", "n": "${{ input.n }}"});
        let errors = Template::compile(&t, &scope(&[])).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .all(|(_, m)| m.contains("only in scope in the input template of a for_each"))
        );
        let s = Scope {
            item: true,
            ..Scope::default()
        };
        let t = Template::compile(&t, &s).unwrap();
        let b = Bindings {
            input: json!({"n": 7}),
            item: Some((3, json!({"x": 1}))),
            ..Bindings::default()
        };
        assert_eq!(t.render(&b).unwrap(), json!({"element": {"x": 1}, "i": 3, "n": 7}));
        assert!(refused("item", &[], Want::Any).contains("`item`"));
    }

    #[test]
    fn eval_list_returns_elements_and_refuses_non_lists() {
        let e = compile("steps.split.output.paragraphs", &["split"], Want::List);
        let b = bindings(json!({}), &[("split", json!({"paragraphs": ["a", "b"], "n": 2}))]);
        assert_eq!(e.eval_list(&b).unwrap(), vec![json!("a"), json!("b")]);
        let e = compile("steps.split.output.n", &["split"], Want::List);
        assert_eq!(
            e.eval_list(&b).unwrap_err(),
            "steps.split.output.n: evaluated to an int, not a list"
        );
    }

    #[test]
    fn eval_key_takes_strings_and_ints() {
        let e = compile("input.order_id", &[], Want::Key);
        assert_eq!(e.eval_key(&bindings(json!({"order_id": "o-1"}), &[])).unwrap(), "o-1");
        assert_eq!(e.eval_key(&bindings(json!({"order_id": 42}), &[])).unwrap(), "42");
        assert_eq!(
            e.eval_key(&bindings(json!({"order_id": u64::MAX}), &[])).unwrap(),
            u64::MAX.to_string()
        );
        let err = e.eval_key(&bindings(json!({"order_id": true}), &[])).unwrap_err();
        assert!(err.contains("evaluated to a bool, not a string or an int"), "{err}");
    }

    #[test]
    fn eval_time_ms_takes_timestamps_strings_and_ints() {
        let b = bindings(
            json!({"deadline": "2030-01-01T00:00:01.5+01:00", "ms": 1_700_000_000_000_i64}),
            &[],
        );
        let expected = 1_893_452_401_500; // 2029-12-31T23:00:01.5Z
        assert_eq!(
            compile("timestamp(input.deadline)", &[], Want::Time)
                .eval_time_ms(&b)
                .unwrap(),
            expected
        );
        assert_eq!(
            compile("input.deadline", &[], Want::Time).eval_time_ms(&b).unwrap(),
            expected
        );
        assert_eq!(
            compile("input.ms", &[], Want::Time).eval_time_ms(&b).unwrap(),
            1_700_000_000_000
        );
        let e = compile("timestamp(input.deadline) + duration('1s')", &[], Want::Time);
        assert_eq!(e.eval_time_ms(&b).unwrap(), expected + 1000);
        let b = bindings(json!({"deadline": "soon"}), &[]);
        let err = compile("input.deadline", &[], Want::Time).eval_time_ms(&b).unwrap_err();
        assert!(err.contains("not an RFC 3339 timestamp"), "{err}");
    }

    #[test]
    fn has_on_step_output() {
        let e = compile("has(steps.a.output.x)", &["a"], Want::Bool);
        assert!(e.eval_bool(&bindings(json!({}), &[("a", json!({"x": 1}))])).unwrap());
        assert!(!e.eval_bool(&bindings(json!({}), &[("a", json!({"y": 1}))])).unwrap());
    }

    #[test]
    fn size_of_step_output_list() {
        let e = compile("size(steps.a.output.items) > 2", &["a"], Want::Bool);
        assert!(
            e.eval_bool(&bindings(json!({}), &[("a", json!({"items": [1, 2, 3]}))]))
                .unwrap()
        );
        assert!(
            !e.eval_bool(&bindings(json!({}), &[("a", json!({"items": [1]}))]))
                .unwrap()
        );
    }

    #[test]
    fn only_the_steps_read_are_converted() {
        // `b` is in scope but not read: its output is not converted.
        let e = compile("input.x", &["a", "b"], Want::Any);
        assert!(e.steps_read().is_empty());
        let b = bindings(json!({"x": 1}), &[("b", json!({"huge": [1, 2, 3]}))]);
        assert_eq!(e.eval(&b).unwrap(), json!(1));
    }

    #[test]
    fn only_the_written_out_fields_read_are_converted() {
        let fields = |names: &[&str]| Reads::Fields(names.iter().map(|n| (*n).to_owned()).collect());
        let e = compile(
            r#"input.a > 1 && has(input.b) && input["c"] == 2 && steps.s.output.k == 1 && steps.t.status == "x""#,
            &["s", "t"],
            Want::Bool,
        );
        assert_eq!(e.0.input, fields(&["a", "b", "c"]));
        assert_eq!(
            e.0.steps,
            [("s".to_owned(), fields(&["k"])), ("t".to_owned(), Reads::Nothing)]
        );
        let e = compile(
            "input.a > 1 && size(input) > 1 && size(steps.s.output) > 0",
            &["s"],
            Want::Bool,
        );
        assert_eq!(e.0.input, Reads::Whole);
        assert_eq!(e.0.steps, [("s".to_owned(), Reads::Whole)]);
        let e = compile("input.xs.map(input, input.y)", &[], Want::List);
        assert_eq!(e.0.input, fields(&["xs"]));

        // the projection does not change results
        let e = compile("has(input.a) && !has(input.b) && input.a.z == 1", &[], Want::Bool);
        assert!(
            e.eval_bool(&bindings(json!({"a": {"z": 1}, "other": [1, 2]}), &[]))
                .unwrap()
        );
        let e = compile("input.a", &[], Want::Any);
        let err = e.eval(&bindings(json!({"b": 1}), &[])).unwrap_err();
        assert_eq!(err, "input.a: no such key: a");
        let e = compile("input.a", &[], Want::Any);
        assert!(e.eval(&bindings(json!([1]), &[])).is_err());
        let e = compile("steps.t.status", &["t"], Want::Any);
        assert_eq!(
            e.eval(&bindings(json!({}), &[("t", json!([1, 2]))])).unwrap(),
            json!("succeeded")
        );
    }

    #[test]
    fn compiled_expressions_are_shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Expr>();
        send_sync::<Template>();
    }

    #[test]
    fn debug_prints_the_source() {
        assert_eq!(
            format!("{:?}", compile("input.x", &[], Want::Any)),
            r#"Expr("input.x")"#
        );
    }

    fn json_without_expressions() -> impl Strategy<Value = serde_json::Value> {
        let text = "[a-z0-9 ${}]{0,10}".prop_filter("no ${{", |s: &String| !s.contains("${{"));
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (-1e9f64..1e9).prop_map(|f| json!(f)),
            text.clone().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(text.clone(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn template_without_expressions_renders_unchanged(value in json_without_expressions()) {
            let t = Template::compile(&value, &Scope::default()).unwrap();
            prop_assert!(t.steps_read().is_empty());
            prop_assert_eq!(t.render(&Bindings::default()).unwrap(), value);
        }
    }
}
