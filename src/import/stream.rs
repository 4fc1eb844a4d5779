//! `import --from nats://HOST:PORT/STREAM`: every node's records from the JetStream stream that
//! `[collect.replicate]` fills, read through the same [`Record`] type as the folders, so they
//! merge with them (and with each other) by reference.

use crate::record::Record;
use crate::replicate::{is_void_subject, Void};
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How many times the stream is read before the import gives up.
const READ_ATTEMPTS: u32 = 3;

/// How long the stream may send nothing before a read gives up.
const STALLED: Duration = Duration::from_secs(10);

/// One message of the stream: its record, or why it is none.
pub struct Fetched {
    /// `nats://HOST:PORT/STREAM`, where bad messages are reported from.
    pub origin: Arc<Path>,
    /// The message's sequence in the stream (the "line" of a bad one).
    pub seq: u64,
    pub record: Result<Record, String>,
}

/// Whether a `--from` value names a stream rather than a folder.
pub fn is_stream(from: &Path) -> bool {
    from.to_str().is_some_and(|s| s.starts_with("nats://"))
}

/// Reads the whole stream as it is now (messages published meanwhile wait for the next run).
/// Records that their node voided (refused after publishing, see [`crate::replicate::Void`])
/// are left out; the second value counts them.
pub async fn fetch(url: &Path) -> Result<(Vec<Fetched>, usize), String> {
    let text = url.to_string_lossy();
    let (mut servers, stream) = parse(&text)?;
    // Reading is read-only and nothing is imported before it ends, so a read cut short (a
    // server lost, a request that timed out across the reconnect) is simply done again, also
    // through the cluster's other servers, which the first connection learnt.
    let mut attempt = 1;
    loop {
        match read(url, &mut servers, stream).await {
            Ok(fetched) => return Ok(fetched),
            Err(e) if attempt < READ_ATTEMPTS => {
                tracing::warn!("{e}; reading the stream again ({} of {READ_ATTEMPTS})", attempt + 1);
                tokio::time::sleep(Duration::from_secs(1)).await;
                attempt += 1;
            }
            Err(e) => return Err(format!("{e} (read {READ_ATTEMPTS} times; nothing was imported)")),
        }
    }
}

/// One read of the whole stream; adds the servers the connection learns of to `servers`.
async fn read(url: &Path, servers: &mut Vec<String>, stream: &str) -> Result<(Vec<Fetched>, usize), String> {
    let text = url.to_string_lossy();
    let origin: Arc<Path> = url.into();
    let client = async_nats::ConnectOptions::new()
        .name("cofferdam import")
        .connection_timeout(Duration::from_secs(10))
        .connect(servers.as_slice())
        .await
        .map_err(|e| format!("{text}: {e}"))?;
    for learnt in client.server_info().connect_urls {
        let learnt = if learnt.contains("://") { learnt } else { format!("nats://{learnt}") };
        if !servers.contains(&learnt) {
            servers.push(learnt);
        }
    }
    let js = jetstream::new(client);
    let mut s = js.get_stream(stream).await.map_err(|e| format!("{text}: stream {stream}: {e}"))?;
    let state = s.info().await.map_err(|e| format!("{text}: {e}"))?.state.clone();
    let mut out = Vec::with_capacity(state.messages as usize);
    let mut voided = HashSet::new();
    if state.messages == 0 {
        return Ok((out, 0));
    }
    let reader = s
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("{text}: {e}"))?;
    let mut messages = reader.messages().await.map_err(|e| format!("{text}: {e}"))?;
    let mut received = 0u64;
    loop {
        // The reader outlives a server's loss by itself (it reconnects and starts again after
        // the last message it had); a stream that stops answering altogether must not hang the
        // import: the read gives up, and is done again.
        let next = tokio::time::timeout(STALLED, messages.next()).await.map_err(|_| {
            format!(
                "{text}: the stream sent nothing for {} s after {received} of {} messages",
                STALLED.as_secs(),
                state.messages
            )
        })?;
        let Some(m) = next else { break };
        received += 1;
        let m = m.map_err(|e| format!("{text}: {e}"))?;
        let info = m.info().map_err(|e| format!("{text}: {e}"))?;
        let seq = info.stream_sequence;
        if is_void_subject(&m.subject) {
            match serde_json::from_slice::<Void>(&m.payload) {
                Ok(v) => voided.extend(v.void),
                Err(e) => out.push(Fetched { origin: origin.clone(), seq, record: Err(format!("not a void: {e}")) }),
            }
        } else {
            let record = serde_json::from_slice::<Record>(&m.payload).map_err(|e| format!("not a record: {e}"));
            out.push(Fetched { origin: origin.clone(), seq, record });
        }
        if seq >= state.last_sequence || info.pending == 0 {
            break;
        }
    }
    let before = out.len();
    out.retain(|f| f.record.as_ref().map_or(true, |r| !voided.contains(&r.reference)));
    let dropped = before - out.len();
    Ok((out, dropped))
}

/// `nats://h1:4222,h2:4222/STREAM` → the server addresses and the stream.
fn parse(url: &str) -> Result<(Vec<String>, &str), String> {
    let usage = || format!("{url:?}: expected nats://HOST:PORT/STREAM (or nats://H1:P1,H2:P2/STREAM)");
    let rest = url.strip_prefix("nats://").ok_or_else(usage)?;
    let (hosts, stream) = rest.rsplit_once('/').ok_or_else(usage)?;
    if hosts.is_empty() || !crate::config::valid_name(stream) {
        return Err(usage());
    }
    Ok((hosts.split(',').map(|h| format!("nats://{h}")).collect(), stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_name_servers_and_stream() {
        let (servers, stream) = parse("nats://a:4222,b:4223/ORDERS").unwrap();
        assert_eq!(servers, ["nats://a:4222", "nats://b:4223"]);
        assert_eq!(stream, "ORDERS");
        assert!(parse("nats://a:4222").is_err());
        assert!(parse("nats://a:4222/OR.DERS").is_err());
        assert!(is_stream(Path::new("nats://a:4222/X")) && !is_stream(Path::new("collected")));
    }
}
