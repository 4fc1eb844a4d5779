//! One node's connection to JetStream: the stream its records go to, the stock bucket, and
//! pipelined publishing with the record's reference as the message ID (JetStream keeps one
//! message per ID, so a re-sent record is stored once).

use super::ReplicateError;
use crate::config::ReplicateConfig;
use crate::record::{Record, Ref};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind};
use async_nats::jetstream::{self, kv, stream};
use async_nats::StatusCode;
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

/// A message sent to the stream, its acknowledgement not awaited yet; kept to be sent again
/// when no server took it.
pub struct Sent {
    ack: PublishAckFuture,
    id: String,
    payload: Bytes,
}

/// What is known once the stream (and the stock bucket) exist.
pub struct Ready {
    /// The highest sequence of this node's references found in the stream (0: none).
    pub floor: u64,
    pub stock: Option<kv::Store>,
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
            self.ensure_stream().await?;
            let floor = self.floor().await?;
            let stock = if self.caps.is_empty() { None } else { Some(self.ensure_stock().await?) };
            Ok::<_, ReplicateError>(Ready { floor, stock })
        };
        let bounded = async {
            tokio::time::timeout(self.timeout * 2, prepare).await.map_err(|_| ReplicateError::Timeout(self.timeout))?
        };
        self.ready.get_or_try_init(|| bounded).await
    }

    async fn ensure_stream(&self) -> Result<(), ReplicateError> {
        let c = &self.config;
        let mut stream = self
            .js
            .get_or_create_stream(stream::Config {
                name: c.stream.clone(),
                subjects: vec![format!("{}.>", c.stream)],
                num_replicas: c.replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| ReplicateError::Stream(format!("stream {}: {e}", c.stream)))?;
        let has = stream.info().await.map_err(|e| ReplicateError::Stream(e.to_string()))?.config.num_replicas;
        if has < c.replicas {
            return Err(ReplicateError::TooFewReplicas { stream: c.stream.clone(), has, want: c.replicas });
        }
        Ok(())
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
                .map_err(|e| ReplicateError::Stream(format!("bucket {}: {e}", c.stock_bucket())))?,
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

    /// Publishes the records in order, all in flight at once, and waits (bounded) for every
    /// acknowledgement. Returns how many of the first records were acknowledged in a row, and
    /// the error that stopped the rest, if any.
    pub async fn publish(&self, records: &[Record]) -> (usize, Option<ReplicateError>) {
        let messages = records.iter().map(|r| {
            (r.reference.to_string(), Bytes::from(serde_json::to_vec(r).expect("a record always serializes")))
        });
        let pending = match self.send(messages).await {
            Ok(pending) => pending,
            Err((_, e)) => return (0, Some(e)),
        };
        let mut acked = 0;
        let wait = async {
            for sent in pending {
                match self.ack(sent).await {
                    Ok(()) => acked += 1,
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

    /// Sends one message per (message ID, record JSON), in order, without waiting for any
    /// acknowledgement: they are awaited with [`Link::acks`]. On an error, how many were sent
    /// (they may reach the stream) and the error.
    pub async fn send(
        &self,
        messages: impl Iterator<Item = (String, Bytes)>,
    ) -> Result<Vec<Sent>, (usize, ReplicateError)> {
        // Publishing while disconnected would queue the messages in the client and send them
        // after a reconnect, long after the post was refused: refuse without sending instead.
        if !self.connected() {
            return Err((0, ReplicateError::Disconnected));
        }
        let mut pending = Vec::with_capacity(messages.size_hint().0);
        for (id, payload) in messages {
            match self.publish_one(&id, &payload).await {
                Ok(ack) => pending.push(Sent { ack, id, payload }),
                Err(e) => return Err((pending.len(), e)),
            }
        }
        Ok(pending)
    }

    async fn publish_one(&self, id: &str, payload: &Bytes) -> Result<PublishAckFuture, ReplicateError> {
        let msg = jetstream::message::PublishMessage::build().message_id(id).payload(payload.clone());
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
        let Sent { mut ack, id, payload } = sent;
        loop {
            match ack.into_future().await {
                Ok(a) => return self.check(&a),
                Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    ack = self.publish_one(&id, &payload).await?;
                }
                Err(e) => return Err(ReplicateError::Stream(e.to_string())),
            }
        }
    }

    fn check(&self, ack: &jetstream::publish::PublishAck) -> Result<(), ReplicateError> {
        if ack.stream == self.config.stream {
            Ok(())
        } else {
            Err(ReplicateError::Stream(format!(
                "{} is stored by stream {}, not {}",
                self.subject, ack.stream, self.config.stream
            )))
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
        self.check(&ack)
    }

    fn void_subject(&self) -> String {
        format!("{}.void", self.subject)
    }
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
