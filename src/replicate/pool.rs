//! The stock caps every node sells from, one key per SKU in JetStream's key-value store, each
//! holding the units nobody has taken yet. A node takes units by compare-and-set on the key's
//! revision, so two nodes can never take the same unit; the writer then sells what it took.

use super::link::{retry_no_responders, Link};
use super::ReplicateError;
use async_nats::jetstream::{self, kv, ErrorCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// How often a take retries after another node changed the key first.
const MAX_RACES: usize = 32;

pub struct Pool {
    link: Arc<Link>,
    rt: Handle,
    /// Last seen (units left, revision) per SKU: most takes then need one round trip.
    seen: HashMap<String, (u64, u64)>,
}

impl Pool {
    pub fn new(link: Arc<Link>, rt: Handle) -> Pool {
        Pool { link, rt, seen: HashMap::new() }
    }

    /// Takes up to `want` units of `sku` (fewer when fewer are left; 0 when none are).
    /// Blocking: called from the writer thread.
    pub fn take(&mut self, sku: &str, want: u64) -> Result<u64, ReplicateError> {
        self.change(sku, |left| left.min(want), |left, n| left - n)
    }

    /// Puts `n` units of `sku` back for every node to sell (a clean shutdown's unsold units).
    pub fn give_back(&mut self, sku: &str, n: u64) -> Result<(), ReplicateError> {
        self.change(sku, |_| n, |left, n| left + n).map(|_| ())
    }

    /// Units of `sku` nobody has taken, as last seen.
    pub fn left(&self, sku: &str) -> Option<u64> {
        self.seen.get(sku).map(|(left, _)| *left)
    }

    fn change(
        &mut self,
        sku: &str,
        amount: impl Fn(u64) -> u64,
        apply: impl Fn(u64, u64) -> u64,
    ) -> Result<u64, ReplicateError> {
        let link = self.link.clone();
        let seen = &mut self.seen;
        self.rt.block_on(async {
            let store = link.ready().await?.stock.as_ref().ok_or(ReplicateError::NoStockBucket)?;
            let mut fresh = false;
            for _ in 0..MAX_RACES {
                let (left, revision) = match seen.get(sku) {
                    Some(v) if !fresh => *v,
                    _ => {
                        fresh = true;
                        let v = read(store, sku, link.timeout).await?;
                        seen.insert(sku.to_string(), v);
                        v
                    }
                };
                let n = amount(left);
                if n == 0 {
                    if fresh {
                        return Ok(0);
                    }
                    // What we saw may be old (another node may have given units back): look again.
                    fresh = true;
                    seen.remove(sku);
                    continue;
                }
                let value = apply(left, n);
                match store.update(sku, value.to_string().into(), revision).await {
                    Ok(new_revision) => {
                        seen.insert(sku.to_string(), (value, new_revision));
                        return Ok(n);
                    }
                    Err(e) if lost_race(&e) => {
                        seen.remove(sku);
                        fresh = true;
                    }
                    Err(e) => return Err(ReplicateError::Stream(format!("stock {sku}: {e}"))),
                }
                metrics::counter!("cofferdam_stock_races_total").increment(1);
            }
            Err(ReplicateError::Stream(format!("stock {sku}: {MAX_RACES} races lost in a row")))
        })
    }
}

/// Whether another node changed the key first. Servers from 2.11 on answer a compare-and-set
/// on a key with error 10164, which this client does not map to `WrongLastRevision`.
fn lost_race(e: &kv::UpdateError) -> bool {
    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(js) = s.downcast_ref::<jetstream::Error>() {
            let code = js.error_code();
            return code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                || code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT;
        }
        source = s.source();
    }
    false
}

/// The units left of `sku` and the key's revision. A bucket whose stream has no leader yet (just
/// created, or electing one after a server died) has no responders: that read is tried again
/// for up to `patience`, as a publish with no responders is.
async fn read(store: &kv::Store, sku: &str, patience: Duration) -> Result<(u64, u64), ReplicateError> {
    let entry = retry_no_responders(patience, || store.entry(sku))
        .await
        .map_err(|e| ReplicateError::Stream(format!("stock {sku}: {e}")))?;
    let entry = entry.ok_or_else(|| ReplicateError::Stream(format!("stock {sku}: no such key in the bucket")))?;
    let left = std::str::from_utf8(&entry.value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| ReplicateError::Stream(format!("stock {sku}: {:?} is not a number of units", entry.value)))?;
    Ok((left, entry.revision))
}
