//! Who may call what: bearer tokens with roles, checked in front of every route.
//!
//! Auth is on when any token is configured (`auth_tokens_file`, `auth_tokens`). Then every call but
//! gRPC health needs `authorization: Bearer <token>`; the token's SHA-256 is compared in constant
//! time with every configured hash (only hashes are kept, plaintext tokens never), and the token's
//! role must hold the permission the method needs ([`METHODS`]; a method missing from the table
//! needs `admin`). No or a garbled token: `UNAUTHENTICATED`; an unknown token: `UNAUTHENTICATED`; a
//! role without the permission: `PERMISSION_DENIED` naming the role and the method. The caller
//! ([`Principal`]) travels to the handlers in the request's extensions. Tokens are never logged.
//!
//! | permission | methods | roles |
//! | --- | --- | --- |
//! | open | `grpc.health.v1.Health/*` | anyone, no token |
//! | describe | `grpc.reflection.*` | every role |
//! | read | `Get*`, `List*`, `WatchRun`, `ListBufferedEvents`, `OperationsService/List*` | admin, operator, viewer |
//! | operate | register workflows, submit, cancel, retry, rerun, events, schedules, complete human tasks | admin, operator |
//! | work | `WorkerService/*` (start, report, heartbeat, emit, register) | admin, worker |
//! | admin | anything not in the table | admin |

use std::{
    convert::Infallible,
    path::{Path, PathBuf},
    sync::Arc,
};

use baton_shared::credentials::{AUTHORIZATION, MAX_TOKEN_BYTES, Secret};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, Context, Poll, Service, http},
};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Submit, inspect, cancel, retry and rerun runs; register workflows; events, schedules and
    /// human tasks.
    Operator,
    /// The worker protocol only (`WorkerService`).
    Worker,
    /// Read only.
    Viewer,
}

impl Role {
    /// Every role, for tables and error messages.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Worker, Role::Viewer];

    /// The role's word (`admin`, `operator`, `worker`, `viewer`).
    pub fn word(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `word`, if any.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.word() == word)
    }

    /// Whether the role holds `p`.
    pub fn allows(self, p: Permission) -> bool {
        match p {
            Permission::Open | Permission::Describe => true,
            Permission::Read => matches!(self, Role::Admin | Role::Operator | Role::Viewer),
            Permission::Operate => matches!(self, Role::Admin | Role::Operator),
            Permission::Work => matches!(self, Role::Admin | Role::Worker),
            Permission::Admin => self == Role::Admin,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// What a method needs (see the module doc's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// No token needed (health).
    Open,
    /// Any valid token (reflection: it describes the API, which is public anyway).
    Describe,
    /// Reading runs, workflows, schedules, tasks, workers and queues.
    Read,
    /// Changing runs, workflows, events, schedules and human tasks.
    Operate,
    /// The worker protocol.
    Work,
    /// Everything else.
    Admin,
}

/// Every Baton method and the permission it needs, by gRPC path. A method that is not here needs
/// [`Permission::Admin`]; a test checks that every method of the proto is listed.
pub const METHODS: &[(&str, Permission)] = &[
    ("/baton.v1.WorkflowService/RegisterWorkflow", Permission::Operate),
    ("/baton.v1.WorkflowService/GetWorkflow", Permission::Read),
    ("/baton.v1.WorkflowService/ListWorkflows", Permission::Read),
    ("/baton.v1.WorkflowService/DeleteWorkflowVersion", Permission::Operate),
    ("/baton.v1.RunService/SubmitRun", Permission::Operate),
    ("/baton.v1.RunService/GetRun", Permission::Read),
    ("/baton.v1.RunService/ListRuns", Permission::Read),
    ("/baton.v1.RunService/WatchRun", Permission::Read),
    ("/baton.v1.RunService/CancelRun", Permission::Operate),
    ("/baton.v1.RunService/RetryRun", Permission::Operate),
    ("/baton.v1.RunService/RerunRun", Permission::Operate),
    ("/baton.v1.RunService/GetStepLogs", Permission::Read),
    ("/baton.v1.EventService/PublishEvent", Permission::Operate),
    ("/baton.v1.EventService/ListBufferedEvents", Permission::Read),
    ("/baton.v1.EventService/PurgeBufferedEvents", Permission::Operate),
    ("/baton.v1.ScheduleService/CreateSchedule", Permission::Operate),
    ("/baton.v1.ScheduleService/GetSchedule", Permission::Read),
    ("/baton.v1.ScheduleService/ListSchedules", Permission::Read),
    ("/baton.v1.ScheduleService/PauseSchedule", Permission::Operate),
    ("/baton.v1.ScheduleService/ResumeSchedule", Permission::Operate),
    ("/baton.v1.ScheduleService/DeleteSchedule", Permission::Operate),
    ("/baton.v1.ScheduleService/TriggerSchedule", Permission::Operate),
    ("/baton.v1.ScheduleService/ListScheduleTicks", Permission::Read),
    ("/baton.v1.HumanTaskService/ListHumanTasks", Permission::Read),
    ("/baton.v1.HumanTaskService/CompleteHumanTask", Permission::Operate),
    ("/baton.v1.WorkerService/StartStep", Permission::Work),
    ("/baton.v1.WorkerService/ReportResult", Permission::Work),
    ("/baton.v1.WorkerService/Heartbeat", Permission::Work),
    ("/baton.v1.WorkerService/EmitEvent", Permission::Work),
    ("/baton.v1.WorkerService/AppendLogs", Permission::Work),
    ("/baton.v1.WorkerService/RegisterWorker", Permission::Work),
    ("/baton.v1.OperationsService/ListWorkers", Permission::Read),
    ("/baton.v1.OperationsService/ListQueues", Permission::Read),
];

/// The permission the method at gRPC path `path` needs: health is open, reflection needs any
/// token, Baton's methods as [`METHODS`] says, anything else admin.
pub fn required(path: &str) -> Permission {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Permission::Open;
    }
    if path.starts_with("/grpc.reflection.") {
        return Permission::Describe;
    }
    METHODS
        .iter()
        .find(|(m, _)| *m == path)
        .map_or(Permission::Admin, |(_, p)| *p)
}

/// The authenticated caller, in the request's extensions of every call that carried a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (from the tokens file, or `<role>-<n>` for the n-th entry of `auth_tokens`).
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// The person the token stands for, if any (human tasks are completed by users).
    pub user: Option<String>,
}

impl Principal {
    /// Who this caller is in records (`completed_by`): the user, else the token's name.
    pub fn identity(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.name)
    }
}

/// Shortest token `auth_tokens` accepts, in bytes: 16 (`baton token new` makes 70).
pub const MIN_TOKEN_BYTES: usize = 16;

/// Longest token name or user, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Why the tokens could not be loaded. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The tokens file could not be read or parsed.
    #[error("auth_tokens_file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What was wrong (for an entry: `tokens[2].sha256: ...`).
        message: String,
    },
    /// An entry of `auth_tokens` (`BATON_AUTH_TOKENS`) is malformed.
    #[error("auth_tokens (BATON_AUTH_TOKENS) entry {index}: {message}")]
    List {
        /// 1-based position of the entry.
        index: usize,
        /// What was wrong.
        message: String,
    },
    /// Two entries have the same token.
    #[error("auth tokens {first:?} and {second:?} have the same token: give each its own")]
    Duplicate {
        /// The first entry's name.
        first: String,
        /// The second entry's name.
        second: String,
    },
}

/// One entry of a tokens file (TOML `[[tokens]]`, or `{"tokens": [...]}` in JSON or YAML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRecord {
    name: String,
    /// Hex SHA-256 of the token (64 characters).
    sha256: String,
    role: String,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<TokenRecord>,
}

#[derive(Clone)]
struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

/// The configured tokens: SHA-256 hashes with their principals. Empty means auth is off.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("count", &self.entries.len()).finish()
    }
}

/// The hex SHA-256 of `token`: what a tokens file stores.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn check_name(what: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what}: must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!("{what}: longer than {MAX_NAME_BYTES} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what}: must not contain control characters"));
    }
    Ok(())
}

fn parse_role(what: &str, word: &str) -> Result<Role, String> {
    Role::from_word(word.trim()).ok_or_else(|| {
        format!(
            "{what}: unknown role {}, expected one of: admin, operator, worker, viewer",
            baton_shared::limits::echo(word)
        )
    })
}

impl Tokens {
    /// Loads the tokens of `file` (TOML, YAML or JSON by its extension) and of `list` (the
    /// `auth_tokens` setting: comma-separated `role:user:token` entries, `user` may be empty, e.g.
    /// `admin:alice:s3cret-token-of-16+,worker::another-long-token`).
    ///
    /// # Errors
    /// [`AuthConfigError`] naming the file, the entry and the field; an unreadable file, an
    /// unknown role, a hash that is not 64 hex characters, a token under [`MIN_TOKEN_BYTES`], or
    /// two entries with the same token.
    pub fn load(file: Option<&Path>, list: &Secret) -> Result<Self, AuthConfigError> {
        let mut entries = Vec::new();
        if let Some(path) = file {
            entries.extend(Self::read_file(path)?);
        }
        for (i, item) in list
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let index = i + 1;
            let err = |message: String| AuthConfigError::List { index, message };
            let mut parts = item.splitn(3, ':');
            let (Some(role), Some(user), Some(token)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected role:user:token (user may be empty: role::token)".into()));
            };
            let role = parse_role("role", role).map_err(err)?;
            let user = user.trim();
            if !user.is_empty() {
                check_name("user", user).map_err(err)?;
            }
            let token = token.trim();
            if token.len() < MIN_TOKEN_BYTES || token.len() > MAX_TOKEN_BYTES {
                return Err(err(format!(
                    "token: must be {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes (`baton token new` makes one)"
                )));
            }
            entries.push(Entry {
                hash: Sha256::digest(token.as_bytes()).into(),
                principal: Principal {
                    name: format!("{role}-{index}"),
                    role,
                    user: (!user.is_empty()).then(|| user.to_string()),
                },
            });
        }
        for (i, a) in entries.iter().enumerate() {
            if let Some(b) = entries[i + 1..].iter().find(|b| b.hash == a.hash) {
                return Err(AuthConfigError::Duplicate {
                    first: a.principal.name.clone(),
                    second: b.principal.name.clone(),
                });
            }
        }
        Ok(Self { entries })
    }

    fn read_file(path: &Path) -> Result<Vec<Entry>, AuthConfigError> {
        let fail = |message: String| AuthConfigError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let parsed: TokenFile = match ext.as_str() {
            "toml" => config::Config::builder()
                .add_source(config::File::from_str(&text, config::FileFormat::Toml))
                .build()
                .and_then(|c| c.try_deserialize::<TokenFile>())
                .map_err(|e| fail(e.to_string()))?,
            "json" => serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?,
            "yaml" | "yml" => serde_saphyr::from_str(&text).map_err(|e| fail(e.to_string()))?,
            _ => return Err(fail("unknown format: name it *.toml, *.yaml, *.yml or *.json".into())),
        };
        let mut entries = Vec::with_capacity(parsed.tokens.len());
        for (i, r) in parsed.tokens.into_iter().enumerate() {
            let at = |m: String| fail(format!("tokens[{i}].{m}"));
            check_name("name", &r.name).map_err(at)?;
            let role = parse_role("role", &r.role).map_err(at)?;
            if let Some(u) = &r.user {
                check_name("user", u).map_err(at)?;
            }
            let mut hash = [0u8; 32];
            hex::decode_to_slice(r.sha256.trim(), &mut hash)
                .map_err(|_| at("sha256: must be 64 hex characters (the SHA-256 of the token)".into()))?;
            entries.push(Entry {
                hash,
                principal: Principal {
                    name: r.name,
                    role,
                    user: r.user,
                },
            });
        }
        Ok(entries)
    }

    /// Whether no token is configured (auth off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The principal of `token`, if it is one of the configured tokens. Hashes `token` and compares
    /// the hash with every entry in constant time (no early exit), so the time taken says nothing
    /// about which entry, if any, matched.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            let eq = e.hash[..].ct_eq(&hash[..]);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            usize::try_from(index)
                .ok()
                .and_then(|i| self.entries.get(i))
                .map(|e| e.principal.clone())
        } else {
            None
        }
    }
}

/// The message of a call without a usable token.
pub const MISSING_TOKEN: &str = "missing bearer token in `authorization` metadata";

/// The caller's principal for `headers` at `path`, or the status to answer (see the module doc).
/// `Ok(None)`: the method is open.
///
/// # Errors
/// `UNAUTHENTICATED` (no, garbled or unknown token), `PERMISSION_DENIED` (role without the
/// permission).
pub fn check(tokens: &Tokens, path: &str, headers: &http::HeaderMap) -> Result<Option<Principal>, Status> {
    let need = required(path);
    if need == Permission::Open {
        return Ok(None);
    }
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
        .ok_or_else(|| Status::unauthenticated(MISSING_TOKEN))?;
    let principal = tokens
        .authenticate(token)
        .ok_or_else(|| Status::unauthenticated("the bearer token is not valid (unknown or revoked)"))?;
    if !principal.role.allows(need) {
        return Err(Status::permission_denied(format!(
            "role {} may not call {}",
            principal.role,
            baton_shared::limits::echo(path).trim_matches('"')
        )));
    }
    Ok(Some(principal))
}

/// The service in front of every route when auth is on: checks the token ([`check`]), puts the
/// [`Principal`] into the request's extensions, drops the `authorization` header (so nothing after
/// it can log the token) and hands the call on; answers the refusal itself otherwise. With no
/// tokens (auth off) every call passes unchanged. Cheap to clone.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

impl<S> Authorize<S> {
    /// `inner` behind the check of `tokens`.
    pub fn new(inner: S, tokens: Arc<Tokens>) -> Self {
        Self { inner, tokens }
    }
}

fn refusal(status: Status) -> http::Response<Body> {
    let (parts, ()) = status.into_http::<()>().into_parts();
    http::Response::from_parts(parts, Body::empty())
}

impl<S> Service<http::Request<Body>> for Authorize<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if !self.tokens.is_empty() {
            match check(&self.tokens, req.uri().path(), req.headers()) {
                Ok(principal) => {
                    req.headers_mut().remove(AUTHORIZATION);
                    if let Some(p) = principal {
                        req.extensions_mut().insert(p);
                    }
                }
                Err(status) => return Box::pin(async move { Ok(refusal(status)) }),
            }
        }
        // `poll_ready` readied `self.inner`: call that one and leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

/// Where the coordinator's tokens come from, for the start-up log line (never the tokens).
pub fn describe(file: Option<&PathBuf>, tokens: &Tokens) -> String {
    match file {
        Some(f) => format!("{} tokens (file {} and auth_tokens)", tokens.len(), f.display()),
        None => format!("{} tokens (auth_tokens)", tokens.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-token-0123456789";
    const VIEWER: &str = "viewer-token-0123456789";

    fn tokens() -> Tokens {
        Tokens::load(None, &Secret::new(format!("admin:alice:{ADMIN}, viewer::{VIEWER}"))).unwrap()
    }

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn a_list_entry_names_its_principal() {
        let t = tokens();
        assert_eq!(t.len(), 2);
        let p = t.authenticate(ADMIN).unwrap();
        assert_eq!(
            (p.name.as_str(), p.role, p.user.as_deref()),
            ("admin-1", Role::Admin, Some("alice"))
        );
        assert_eq!(p.identity(), "alice");
        let p = t.authenticate(VIEWER).unwrap();
        assert_eq!(
            (p.role, p.user.as_deref(), p.identity()),
            (Role::Viewer, None, "viewer-2")
        );
        assert!(t.authenticate("viewer-token-012345678").is_none());
        assert!(t.authenticate("").is_none());
    }

    #[test]
    fn bad_list_entries_are_refused_without_the_token() {
        for (list, want) in [
            ("admin:short", "expected role:user:token"),
            ("boss::0123456789abcdef0", "unknown role \"boss\""),
            ("admin::short-token", "must be 16 to"),
        ] {
            let e = Tokens::load(None, &Secret::new(list)).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("entry 1"), "{list}: {e}");
            assert!(!e.contains("short-token") && !e.contains("0123456789abcdef0"), "{e}");
        }
        let e = Tokens::load(None, &Secret::new(format!("admin::{ADMIN},viewer::{ADMIN}")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("same token") && !e.contains(ADMIN), "{e}");
    }

    #[test]
    fn a_tokens_file_holds_hashes_in_any_of_three_formats() {
        let dir = tempfile::tempdir().unwrap();
        let h = hash_token(ADMIN);
        let files = [
            (
                "t.toml",
                format!("[[tokens]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"{h}\"\nuser = \"bob\"\n"),
            ),
            (
                "t.json",
                format!(r#"{{"tokens": [{{"name": "ci", "role": "operator", "sha256": "{h}", "user": "bob"}}]}}"#),
            ),
            (
                "t.yaml",
                format!("tokens:\n  - name: ci\n    role: operator\n    sha256: {h}\n    user: bob\n"),
            ),
        ];
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let t = Tokens::load(Some(&path), &Secret::default()).unwrap();
            let p = t.authenticate(ADMIN).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(
                (p.name.as_str(), p.role, p.identity()),
                ("ci", Role::Operator, "bob"),
                "{name}"
            );
        }
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[[tokens]]\nname = \"x\"\nrole = \"viewer\"\nsha256 = \"abc\"\n").unwrap();
        let e = Tokens::load(Some(&bad), &Secret::default()).unwrap_err().to_string();
        assert!(e.contains("tokens[0].sha256: must be 64 hex"), "{e}");
        let e = Tokens::load(Some(&dir.path().join("none.toml")), &Secret::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.toml"), "{e}");
    }

    #[test]
    fn health_is_open_and_everything_else_needs_a_token() {
        let t = tokens();
        let empty = http::HeaderMap::new();
        assert!(matches!(check(&t, "/grpc.health.v1.Health/Check", &empty), Ok(None)));
        for path in [
            "/baton.v1.RunService/GetRun",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/baton.v1.Nope/Nothing",
        ] {
            let e = check(&t, path, &empty).unwrap_err();
            assert_eq!(
                (e.code(), e.message()),
                (tonic::Code::Unauthenticated, MISSING_TOKEN),
                "{path}"
            );
        }
        for garbled in ["Basic abc", "Bearer", "Bearer   ", ADMIN] {
            let e = check(&t, "/baton.v1.RunService/GetRun", &headers(garbled)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{garbled}");
        }
        let e = check(
            &t,
            "/baton.v1.RunService/GetRun",
            &headers("Bearer wrong-token-0123456789"),
        )
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn roles_get_what_the_table_says() {
        let t = tokens();
        let viewer = headers(&format!("bearer {VIEWER}"));
        let ok = check(&t, "/baton.v1.RunService/GetRun", &viewer).unwrap().unwrap();
        assert_eq!(ok.role, Role::Viewer);
        let e = check(&t, "/baton.v1.RunService/SubmitRun", &viewer).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(e.message(), "role viewer may not call /baton.v1.RunService/SubmitRun");
        let admin = headers(&format!("Bearer {ADMIN}"));
        assert!(check(&t, "/baton.v1.Unknown/Method", &admin).is_ok());
        let e = check(&t, "/baton.v1.Unknown/Method", &viewer).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn the_role_table() {
        use Permission::*;
        let can = |r: Role| -> Vec<bool> { [Read, Operate, Work, Admin].map(|p| r.allows(p)).to_vec() };
        assert_eq!(can(Role::Admin), [true, true, true, true]);
        assert_eq!(can(Role::Operator), [true, true, false, false]);
        assert_eq!(can(Role::Worker), [false, false, true, false]);
        assert_eq!(can(Role::Viewer), [true, false, false, false]);
    }
}
