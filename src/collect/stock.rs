//! What the writer may still sell, per capped SKU. The writer alone decides each post against
//! [`Stock::left`]; where the cap is shared by several nodes (`[collect.replicate]`), `left` is
//! what this node has taken from the shared pool, topped up before each batch is decided.
//! Without replication `left` is this node's share of the cap, less what its log has sold.

use crate::logthrottle::{LogThrottle, Say};
use crate::replicate::Pool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// While the shared pool stays out of reach, how often the log says so again.
const SAY_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// The maps are B-trees: a launch caps a handful of SKUs, and the writer looks one up for each
/// post, which costs a few short comparisons in a tree and a SipHash of the SKU in a hash map.
pub struct Stock {
    left: BTreeMap<String, u64>,
    /// Units this node has sold per SKU, capped or not, so a cap set by a reload counts them.
    sold: BTreeMap<String, u64>,
    shared: Option<Shared>,
}

struct Shared {
    pool: Pool,
    /// Units taken ahead of demand (`collect.replicate.stock_block`).
    block: u64,
    /// Failed takes: when the log says the pool is out of reach.
    said: LogThrottle,
}

/// Why a batch's posts for some SKUs cannot be decided now.
pub struct Unreachable(pub HashSet<String>);

impl Stock {
    /// This node's own caps (its `shares`), less what its log has `sold`.
    pub fn local(shares: HashMap<String, u64>, sold: HashMap<String, u64>) -> Stock {
        let mut stock = Stock { left: BTreeMap::new(), sold: sold.into_iter().collect(), shared: None };
        stock.recap(shares);
        stock
    }

    /// New caps for a node that holds its own (a reload): what is sold stays sold, so a cap
    /// lowered to or below it leaves nothing to sell and a raised one sells the difference.
    /// A SKU left out is no longer capped. Shared caps are the stream's and do not change here.
    pub fn recap(&mut self, shares: HashMap<String, u64>) {
        if self.shared.is_some() {
            return;
        }
        self.left = shares
            .into_iter()
            .map(|(sku, share)| {
                let sold = self.sold.get(&sku).copied().unwrap_or(0);
                (sku, share.saturating_sub(sold))
            })
            .collect();
    }

    /// Caps of `skus` shared with every other node through `pool`; nothing is taken yet.
    pub fn shared(skus: impl IntoIterator<Item = String>, pool: Pool, block: u64) -> Stock {
        let left = skus.into_iter().map(|s| (s, 0)).collect();
        Stock {
            left,
            sold: BTreeMap::new(),
            shared: Some(Shared { pool, block, said: LogThrottle::new(SAY_AGAIN_AFTER) }),
        }
    }

    /// Before a batch is decided: takes from the shared pool what `demand` needs beyond what
    /// this node holds. Returns the SKUs whose pool could not be reached: their posts are
    /// refused (try again), never sold past the cap and never called sold out.
    pub fn reserve(&mut self, demand: &BTreeMap<&str, u64>) -> Unreachable {
        let mut unreachable = HashSet::new();
        let Some(shared) = &mut self.shared else { return Unreachable(unreachable) };
        for (sku, need) in demand {
            let Some(held) = self.left.get_mut(*sku) else { continue };
            if *held >= *need {
                continue;
            }
            match shared.pool.take(sku, *need - *held + shared.block) {
                Ok(n) => *held += n,
                Err(e) => {
                    metrics::counter!("cofferdam_stock_unreachable_total").increment(1);
                    match shared.said.failed(Instant::now()) {
                        None => {}
                        Some(Say::First) => tracing::warn!("stock: cannot take {sku} from the shared pool: {e}"),
                        Some(Say::Again { since }) => tracing::warn!(
                            "stock: still cannot take {sku} from the shared pool ({since} failed takes in {} s): {e}",
                            SAY_AGAIN_AFTER.as_secs()
                        ),
                    }
                    unreachable.insert(sku.to_string());
                }
            }
        }
        if unreachable.is_empty() && shared.said.recovered().is_some() {
            tracing::info!("stock: the shared pool answers again");
        }
        Unreachable(unreachable)
    }

    /// Units of `sku` this node may sell now; `None` when it has no cap.
    pub fn left(&self, sku: &str) -> Option<u64> {
        self.left.get(sku).copied()
    }

    pub fn sell(&mut self, sku: &str, n: u64) {
        *self.sold.entry(sku.to_string()).or_default() += n;
        if let Some(left) = self.left.get_mut(sku) {
            *left -= n;
        }
    }

    /// Units left per capped SKU: this node's, plus the shared pool's as last seen.
    pub fn remaining(&self) -> impl Iterator<Item = (&str, u64)> {
        self.left.iter().map(|(sku, n)| {
            let pool = self.shared.as_ref().and_then(|s| s.pool.left(sku)).unwrap_or(0);
            (sku.as_str(), n + pool)
        })
    }

    /// SKUs with nothing left here, nor in the shared pool when last asked.
    pub fn sold_out(&self) -> HashSet<String> {
        self.left
            .iter()
            .filter(|(sku, n)| **n == 0 && self.shared.as_ref().is_none_or(|s| s.pool.left(sku) == Some(0)))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// At shutdown: puts what this node took but did not sell back into the shared pool.
    pub fn release(&mut self) {
        let Some(shared) = &mut self.shared else { return };
        for (sku, held) in self.left.iter_mut().filter(|(_, n)| **n > 0) {
            match shared.pool.give_back(sku, *held) {
                Ok(()) => {
                    tracing::info!("stock: gave {held} unsold {sku} back to the shared pool");
                    *held = 0;
                }
                Err(e) => tracing::warn!("stock: cannot give {held} unsold {sku} back to the shared pool: {e}"),
            }
        }
    }
}
