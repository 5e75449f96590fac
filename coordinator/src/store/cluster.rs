//! Redis Cluster: `redis_url = "redis+cluster://host:port[,host:port...]"` (`rediss+cluster://`
//! over TLS).
//!
//! Every key of a namespace carries the namespace's hash tag ([`baton_shared::keys::Keys::tag`]),
//! so the whole namespace lives in one slot, owned by one primary at a time. The store therefore
//! talks to that primary as it would to a standalone Redis, through a [`Relay`]: a local TCP
//! listener (127.0.0.1, a free port) whose every connection is passed byte for byte to the primary
//! that owns the slot. Everything the store does (multiplexed commands, scripts and `WAIT` in one
//! pipeline, the blocking connections and `CLIENT UNBLOCK`, the commit connections) then works
//! unchanged, and each connection keeps its own server-side client (ids, blocking state).
//!
//! The owner is found from the seed nodes and the nodes they name (`CLUSTER SLOTS`), every
//! [`WATCH_INTERVAL`], and at once (at most every [`MIN_WATCH_INTERVAL`]) when a connection to it
//! fails. When it changes (a failover, a slot moved), the relay closes the
//! connections to the old one; the store's connections reconnect through the relay to the new
//! one. While no reachable primary owns the slot, connections through the relay are closed at
//! once, so the store's commands fail and health reports NOT_SERVING.
//!
//! A `MOVED` or `CLUSTERDOWN` answer reaches the caller as an error (retried as any Redis error
//! is) until the next look sees the new owner, within [`WATCH_INTERVAL`]. While an operator moves
//! the namespace's slot to another primary (`ASK`), commands on keys already moved fail until the
//! move completes: move a namespace's slot when it is quiet.
//!
//! Why not the `redis` crate's cluster client (`cluster-async`): it routes each command by its
//! key, while the store relies on plain connections: `WAIT` (keyless) in the same pipeline as a
//! commit, blocking `XREAD` on connections of their own that `CLIENT UNBLOCK` names by id, and
//! `ConnectionManager` everywhere. With one slot per namespace, one primary serves it all, so a
//! relay keeps that code as it is; shards will need the cluster client's routing.
//!
//! Over TLS (`rediss+cluster://`), the relay speaks TLS to the nodes, for its own questions and
//! for every relayed connection, with the settings `redis_tls_ca`, `redis_tls_cert` and
//! `redis_tls_key` ([`super::tls`]); a node's certificate must name the host `CLUSTER SLOTS`
//! announces it with. The store's connections to the relay stay plain, on the loopback interface.
//!
//! The relay listens on the loopback interface only and adds no access of its own: the store's
//! `AUTH` (from the URL's credentials) passes through to the node. Its cost is one more local hop
//! (a copy of each command and reply in the coordinator's process): measured with `baton bench`
//! (docs/benchmark.md), the coordinator's CPU per run did not move and one-step runs/s were
//! 0.92x those on one Redis, with the cluster's six nodes on the same two cores.
//!
//! A later step (shards) will spread a namespace over many slots; this module then gives way to a
//! cluster-aware client.

use std::{collections::HashMap, sync::Arc, time::Duration};

use redis::aio::MultiplexedConnection;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
};

use super::tls::RedisTls;
use crate::error::{CoordinatorError, Result};

/// How often the relay asks the cluster which primary owns the namespace's slot.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The shortest time between two questions to the cluster, when connections to the owner fail.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// How long connecting to a node, or its answer to `CLUSTER SLOTS`, may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most seed nodes a `redis+cluster://` URL may list.
pub const MAX_SEEDS: usize = 64;

/// Most nodes the relay remembers from `CLUSTER SLOTS` answers to ask next time.
const MAX_KNOWN_NODES: usize = 256;

/// The URL scheme of a Redis Cluster.
pub const SCHEME: &str = "redis+cluster://";

/// The URL scheme of a Redis Cluster reached over TLS.
pub const TLS_SCHEME: &str = "rediss+cluster://";

/// A parsed `redis+cluster://` or `rediss+cluster://` URL:
/// `[user:password@]host:port[,host:port...][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `user:password@` or `:password@`, as written (empty when none).
    pub userinfo: String,
    /// The seed nodes.
    pub seeds: Vec<(String, u16)>,
    /// Whether the nodes are reached over TLS (`rediss+cluster://`).
    pub tls: bool,
}

impl ClusterUrl {
    /// Parses `url`; `Ok(None)` when it is not a `redis+cluster://` URL.
    ///
    /// # Errors
    /// `InvalidArgument` naming `redis_url`: no node, a node without a port, a port that is not a
    /// number from 1 to 65535, more than [`MAX_SEEDS`] nodes, or a database other than 0 (a
    /// cluster has only database 0).
    pub fn parse(url: &str) -> Result<Option<Self>> {
        let bad = |why: &str| CoordinatorError::InvalidArgument(format!("redis_url: {why}"));
        let (rest, tls) = match (url.strip_prefix(SCHEME), url.strip_prefix(TLS_SCHEME)) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => return Ok(None),
        };
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = match hosts.split_once('/') {
            Some((hosts, "" | "0")) => hosts,
            Some(_) => return Err(bad("a Redis Cluster has only database 0")),
            None => hosts,
        };
        let mut seeds = Vec::new();
        for node in hosts.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let (host, port) = node.rsplit_once(':').ok_or_else(|| {
                bad(&format!(
                    "cluster node {} has no :port",
                    baton_shared::limits::echo(node)
                ))
            })?;
            let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                bad(&format!(
                    "cluster node {}: port is not 1 to 65535",
                    baton_shared::limits::echo(node)
                ))
            })?;
            if host.is_empty() {
                return Err(bad(&format!(
                    "cluster node {} has no host",
                    baton_shared::limits::echo(node)
                )));
            }
            seeds.push((host.trim_start_matches('[').trim_end_matches(']').to_string(), port));
        }
        if seeds.is_empty() {
            return Err(bad("the cluster URL names no node (host:port[,host:port...])"));
        }
        if seeds.len() > MAX_SEEDS {
            return Err(bad(&format!("more than {MAX_SEEDS} cluster nodes")));
        }
        Ok(Some(Self { userinfo, seeds, tls }))
    }

    /// The `redis://` (`rediss://` over TLS) URL of one node, with this URL's credentials.
    fn node_url(&self, (host, port): &(String, u16)) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}{host}:{port}", self.userinfo)
    }
}

/// The Redis Cluster slot of `key` (CRC16/XMODEM of its hash tag, or of the whole key without
/// one, modulo 16384), as the Redis Cluster specification defines it.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let after = bytes.get(open + 1..)?;
            let close = after.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| after.get(..close)).flatten()
        })
        .unwrap_or(bytes);
    crc16_xmodem(hashed) % 16384
}

/// CRC16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys with.
fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A node's host and port.
type Node = (String, u16);

/// What one node answered: the slot's owner, if any, and every node the answer names.
type Answer = (Option<Node>, Vec<Node>);

/// The primary that owns `slot` by a `CLUSTER SLOTS` answer, and every node the answer names.
/// A node named with an empty host is on `asked`'s host (as Redis answers for its own address).
fn owner_in(answer: &redis::Value, slot: u16, asked: &str) -> Answer {
    let node = |v: &redis::Value| -> Option<Node> {
        let redis::Value::Array(fields) = v else { return None };
        let host = match fields.first()? {
            redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            redis::Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let redis::Value::Int(port) = fields.get(1)? else {
            return None;
        };
        let port = u16::try_from(*port).ok()?;
        let host = if host.is_empty() || host == "?" {
            asked.to_string()
        } else {
            host
        };
        Some((host, port))
    };
    let mut owner = None;
    let mut nodes = Vec::new();
    let redis::Value::Array(ranges) = answer else {
        return (None, nodes);
    };
    for range in ranges {
        let redis::Value::Array(parts) = range else { continue };
        let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) = (parts.first(), parts.get(1)) else {
            continue;
        };
        let members: Vec<Node> = parts.iter().skip(2).filter_map(node).collect();
        if (*start..=*end).contains(&i64::from(slot)) {
            owner = members.first().cloned();
        }
        nodes.extend(members);
    }
    (owner, nodes)
}

/// Connections to the cluster's nodes for `CLUSTER SLOTS` and `ROLE`, kept from one question to
/// the next (the relay asks every [`WATCH_INTERVAL`]: opening a connection per node each time
/// would cost every node a connect, an `AUTH` and a close twice a second). A connection whose
/// question fails or times out is dropped and opened again next time.
struct Nodes {
    url: ClusterUrl,
    /// The TLS settings for `rediss+cluster://`.
    tls: RedisTls,
    /// Why the last node that failed to answer failed (for the error when none answers).
    last_error: Option<String>,
    /// The nodes named by answers so far (at most [`MAX_KNOWN_NODES`]), asked besides the seeds.
    known: Vec<Node>,
    conns: HashMap<Node, MultiplexedConnection>,
}

/// Opens a connection to `node` unless `conn` is one already; the error says why not.
async fn connect(
    url: &ClusterUrl,
    tls: &RedisTls,
    node: &Node,
    conn: Option<MultiplexedConnection>,
) -> std::result::Result<MultiplexedConnection, String> {
    if let Some(conn) = conn {
        return Ok(conn);
    }
    let name = format!("{}:{}", node.0, node.1);
    let client = tls.client(&url.node_url(node)).map_err(|e| format!("{name}: {e}"))?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(NODE_TIMEOUT))
        .set_response_timeout(Some(NODE_TIMEOUT));
    match tokio::time::timeout(NODE_TIMEOUT, client.get_multiplexed_async_connection_with_config(&cfg)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("{name}: {e}")),
        Err(_) => Err(format!("{name}: no connection within {NODE_TIMEOUT:?}")),
    }
}

/// Asks one node which primary owns `slot`; answers the connection to keep (`None` when the node
/// did not answer) and the answer, or why there is none.
async fn ask(
    url: &ClusterUrl,
    tls: &RedisTls,
    node: &Node,
    conn: Option<MultiplexedConnection>,
    slot: u16,
) -> (Option<MultiplexedConnection>, std::result::Result<Answer, String>) {
    let mut conn = match connect(url, tls, node, conn).await {
        Ok(c) => c,
        Err(e) => return (None, Err(e)),
    };
    let asked = tokio::time::timeout(NODE_TIMEOUT, redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn)).await;
    match asked {
        Ok(Ok(answer)) => {
            let answer: redis::Value = answer;
            (Some(conn), Ok(owner_in(&answer, slot, &node.0)))
        }
        Ok(Err(e)) => (None, Err(format!("{}:{}: CLUSTER SLOTS: {e}", node.0, node.1))),
        Err(_) => (
            None,
            Err(format!(
                "{}:{}: no answer to CLUSTER SLOTS within {NODE_TIMEOUT:?}",
                node.0, node.1
            )),
        ),
    }
}

impl Nodes {
    fn new(url: ClusterUrl, tls: RedisTls) -> Self {
        Self {
            url,
            tls,
            last_error: None,
            known: Vec::new(),
            conns: HashMap::new(),
        }
    }

    /// Keeps `conn` for `node`, or forgets the node's connection when it is `None`.
    fn keep(&mut self, node: &Node, conn: Option<MultiplexedConnection>) {
        match conn {
            Some(c) => {
                self.conns.insert(node.clone(), c);
            }
            None => {
                self.conns.remove(node);
            }
        }
    }

    /// Finds the primary that owns `slot`, asking the seeds and the nodes known from earlier
    /// answers at once (so that a dead node's timeout does not delay the others), and taking the
    /// first answer with an owner in that order; adds the nodes the answers name to the known
    /// ones. `None` when no node answers with an owner.
    async fn discover(&mut self, slot: u16) -> Option<Node> {
        let mut candidates: Vec<Node> = Vec::new();
        for node in self.url.seeds.iter().chain(self.known.iter()) {
            if !candidates.contains(node) {
                candidates.push(node.clone());
            }
        }
        let url = &self.url;
        let tls = &self.tls;
        let conns = &self.conns;
        let answers = futures::future::join_all(
            candidates
                .iter()
                .map(|node| ask(url, tls, node, conns.get(node).cloned(), slot)),
        )
        .await;
        let mut owners: Vec<Node> = Vec::new();
        for (node, (conn, answer)) in candidates.iter().zip(answers) {
            self.keep(node, conn);
            let (found, nodes) = match answer {
                Ok(a) => a,
                Err(e) => {
                    self.last_error = Some(e);
                    continue;
                }
            };
            for n in nodes {
                if !self.known.contains(&n) && self.known.len() < MAX_KNOWN_NODES {
                    self.known.push(n);
                }
            }
            if let Some(o) = found
                && !owners.contains(&o)
            {
                owners.push(o);
            }
        }
        if owners.len() <= 1 {
            return owners.pop();
        }
        // During a failover the nodes disagree until the new configuration has spread: take the
        // one that says it is a primary now (a dead node does not answer, a demoted one is a
        // replica).
        for o in owners {
            if self.is_primary(&o).await {
                return Some(o);
            }
        }
        None
    }

    /// Whether `node` answers `ROLE` with `master`.
    async fn is_primary(&mut self, node: &Node) -> bool {
        let Ok(mut conn) = connect(&self.url, &self.tls, node, self.conns.get(node).cloned()).await else {
            self.keep(node, None);
            return false;
        };
        let role = tokio::time::timeout(NODE_TIMEOUT, redis::cmd("ROLE").query_async(&mut conn)).await;
        match role {
            Ok(Ok(redis::Value::Array(parts))) => {
                self.keep(node, Some(conn));
                match parts.first() {
                    Some(redis::Value::BulkString(b)) => b.as_slice() == b"master",
                    Some(redis::Value::SimpleString(t)) => t == "master",
                    _ => false,
                }
            }
            _ => {
                self.keep(node, None);
                false
            }
        }
    }
}

/// A local relay to the primary that owns a namespace's slot (see the module's doc). Stops when
/// dropped with every clone of the store.
#[derive(Debug)]
pub struct Relay {
    /// The `redis://` URL the store connects to (the relay's address, with the credentials).
    pub url: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Relay {
    /// Starts a relay for the namespace whose keys carry `tag` on the cluster of `url`, and waits
    /// until it knows the slot's primary.
    ///
    /// Over TLS (`rediss+cluster://`) the relay speaks TLS to the nodes with `tls` (see
    /// [`super::tls`]); the store's connections to the relay stay on the loopback interface.
    ///
    /// # Errors
    /// `Unavailable` when no seed node names a primary for the slot, with the last node's error
    /// (the caller retries with backoff, as for an unreachable standalone Redis); `Internal` when
    /// no local port is free; `InvalidArgument` for TLS settings rustls refuses.
    pub async fn start(url: ClusterUrl, tag: &str, tls: &RedisTls) -> Result<Self> {
        let slot = key_slot(tag);
        let connector = if url.tls {
            Some(tokio_rustls::TlsConnector::from(tls.rustls_config()?))
        } else {
            None
        };
        let mut nodes = Nodes::new(url.clone(), tls.clone());
        let first = match nodes.discover(slot).await {
            Some(first) => first,
            None => {
                return Err(CoordinatorError::Unavailable(format!(
                    "redis_url: no node of the Redis Cluster ({}) answered with a primary for slot {slot} (the namespace's){}",
                    url.seeds
                        .iter()
                        .map(|(h, p)| format!("{h}:{p}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    nodes
                        .last_error
                        .as_deref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                )));
            }
        };
        tracing::info!(slot, primary = %format!("{}:{}", first.0, first.1), "Redis Cluster: the namespace's slot and its primary");
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| CoordinatorError::Internal(format!("Redis Cluster relay: cannot listen on 127.0.0.1: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CoordinatorError::Internal(format!("Redis Cluster relay: {e}")))?;
        let (tx, rx) = watch::channel(Some(first));
        let failed = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch_owner(nodes, slot, tx, failed.clone()));
        let acceptor = tokio::spawn(accept(listener, rx, failed, connector));
        Ok(Self {
            url: format!("redis://{}{}", url.userinfo, local),
            tasks: vec![watcher, acceptor],
        })
    }
}

/// Asks the cluster for the slot's owner every [`WATCH_INTERVAL`], or sooner when `failed` says a
/// connection to it failed, and publishes a change (`None` while no node names one). Never ends;
/// a node that fails to answer is skipped.
async fn watch_owner(mut nodes: Nodes, slot: u16, tx: watch::Sender<Option<Node>>, failed: Arc<Notify>) {
    loop {
        tokio::time::sleep(MIN_WATCH_INTERVAL).await;
        let _ = tokio::time::timeout(WATCH_INTERVAL.saturating_sub(MIN_WATCH_INTERVAL), failed.notified()).await;
        let owner = nodes.discover(slot).await;
        tx.send_if_modified(|now| {
            if *now == owner {
                return false;
            }
            match &owner {
                Some((h, p)) => tracing::warn!(slot, primary = %format!("{h}:{p}"), "Redis Cluster: the namespace's slot has a new primary; reconnecting"),
                None => tracing::warn!(slot, "Redis Cluster: no reachable node names a primary for the namespace's slot"),
            }
            *now = owner.clone();
            true
        });
    }
}

/// Accepts the store's connections and relays each to the current owner (over TLS with
/// `connector`). A failed `accept` is logged and retried after a pause.
async fn accept(
    listener: TcpListener,
    owner: watch::Receiver<Option<Node>>,
    failed: Arc<Notify>,
    connector: Option<tokio_rustls::TlsConnector>,
) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(relay_one(client, owner.clone(), failed.clone(), connector.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis Cluster relay: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Relays one connection to the owner it finds (over TLS with `connector`), until either side
/// closes or the owner changes; tells `failed` when there is no owner or it does not answer. A
/// failed TLS handshake (an untrusted certificate, a name that does not match) is logged as a
/// warning: it does not pass with time.
async fn relay_one(
    client: TcpStream,
    mut owner: watch::Receiver<Option<Node>>,
    failed: Arc<Notify>,
    connector: Option<tokio_rustls::TlsConnector>,
) {
    let target = owner.borrow_and_update().clone();
    let Some((host, port)) = target else {
        failed.notify_one();
        return;
    };
    let server = tokio::time::timeout(NODE_TIMEOUT, TcpStream::connect((host.as_str(), port))).await;
    let Ok(Ok(server)) = server else {
        tracing::debug!(primary = %format!("{host}:{port}"), "Redis Cluster relay: the primary does not answer");
        failed.notify_one();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let Some(connector) = connector else {
        pipe(client, server, owner).await;
        return;
    };
    let name = match rustls::pki_types::ServerName::try_from(host.clone()) {
        Ok(name) => name,
        Err(e) => {
            tracing::warn!(primary = %format!("{host}:{port}"), error = %e, "Redis Cluster relay: the primary's host is not a name TLS can check");
            failed.notify_one();
            return;
        }
    };
    let server = match tokio::time::timeout(NODE_TIMEOUT, connector.connect(name, server)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(primary = %format!("{host}:{port}"), error = %e, "Redis Cluster relay: TLS handshake with the primary failed (see redis_tls_ca, redis_tls_cert)");
            failed.notify_one();
            return;
        }
        Err(_) => {
            tracing::debug!(primary = %format!("{host}:{port}"), "Redis Cluster relay: no TLS handshake within {NODE_TIMEOUT:?}");
            failed.notify_one();
            return;
        }
    };
    pipe(client, server, owner).await;
}

/// Copies bytes both ways between the store's connection and the primary's (plain or TLS) until
/// either side closes or the owner changes.
async fn pipe<S>(mut client: TcpStream, mut server: S, mut owner: watch::Receiver<Option<Node>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = owner.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_redis_cluster_specification() {
        // The examples of the Redis Cluster specification and of `CLUSTER KEYSLOT`'s page.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot("somekey"), 11058);
        assert_eq!(key_slot("foo{hash_tag}"), 2515);
        assert_eq!(key_slot("{hash_tag}"), key_slot("hash_tag"));
        assert_eq!(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(key_slot("foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % 16384);
    }

    #[test]
    fn cluster_urls_are_parsed_and_their_errors_name_redis_url() {
        assert_eq!(ClusterUrl::parse("redis://h:1").ok(), Some(None));
        let u = ClusterUrl::parse("redis+cluster://:pw@a:7000,b:7001/").ok().flatten();
        assert_eq!(
            u,
            Some(ClusterUrl {
                userinfo: ":pw@".into(),
                seeds: vec![("a".into(), 7000), ("b".into(), 7001)],
                tls: false,
            })
        );
        let u = ClusterUrl::parse("rediss+cluster://a:7000").ok().flatten();
        assert_eq!(u.as_ref().map(|u| u.tls), Some(true));
        assert_eq!(
            u.map(|u| u.node_url(&("10.0.0.1".into(), 7001))).as_deref(),
            Some("rediss://10.0.0.1:7001")
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://a",
            "redis+cluster://a:0",
            "redis+cluster://a:x",
            "redis+cluster://:1",
            "redis+cluster://a:1/3",
            "rediss+cluster://",
            "rediss+cluster://a",
        ] {
            let e = ClusterUrl::parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("redis_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_owner_of_a_slot_is_read_from_cluster_slots() {
        use redis::Value::{Array, BulkString, Int};
        let node = |h: &str, p: i64| {
            Array(vec![
                BulkString(h.as_bytes().to_vec()),
                Int(p),
                BulkString(b"id".to_vec()),
            ])
        };
        let answer = Array(vec![
            Array(vec![Int(0), Int(5460), node("10.0.0.1", 7000), node("10.0.0.4", 7003)]),
            Array(vec![Int(5461), Int(10922), node("", 7001)]),
        ]);
        let (owner, nodes) = owner_in(&answer, 6000, "seed");
        assert_eq!(owner, Some(("seed".into(), 7001)));
        assert_eq!(nodes.len(), 3);
        assert_eq!(owner_in(&answer, 100, "seed").0, Some(("10.0.0.1".into(), 7000)));
        assert_eq!(owner_in(&answer, 16000, "seed").0, None);
        assert_eq!(owner_in(&Int(3), 1, "seed").0, None);
    }
}
