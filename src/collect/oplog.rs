//! The operator's log: while orders flow, one line every few seconds with what came in (per
//! form), the stock left and the posts shed with 503; nothing while the site is idle.
//! `orders: 42 in 5s (order 40, offer 2) · stock left AURORA-EB 4958, AURORA 20000 · shed 3`

use super::writer::Shared;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Counters bumped as posts are decided: the records each form's batches made durable (by the
/// writer, once a form and batch) and the posts shed (by the request handlers). A form's count
/// is an atomic behind a lock that is only written when the form first appears.
#[derive(Default)]
pub struct OpLog {
    accepted: RwLock<BTreeMap<String, AtomicU64>>,
    shed: AtomicU64,
}

impl OpLog {
    /// `n` more records of `form` are durable.
    pub fn accepted(&self, form: &str, n: u64) {
        let known = self.accepted.read().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = known.get(form) {
            count.fetch_add(n, Ordering::Relaxed);
            return;
        }
        drop(known);
        let mut all = self.accepted.write().unwrap_or_else(|e| e.into_inner());
        all.entry(form.to_string()).or_insert_with(|| AtomicU64::new(0)).fetch_add(n, Ordering::Relaxed);
    }

    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// The line for what was counted since the last call, or none when nothing was.
    pub fn take_line(&self, stock: &BTreeMap<String, u64>, every: Duration) -> Option<String> {
        let accepted = self.accepted.read().unwrap_or_else(|e| e.into_inner());
        let per_form: Vec<(&str, u64)> =
            accepted.iter().map(|(f, n)| (f.as_str(), n.swap(0, Ordering::Relaxed))).filter(|(_, n)| *n > 0).collect();
        let shed = self.shed.swap(0, Ordering::Relaxed);
        if per_form.is_empty() && shed == 0 {
            return None;
        }
        let total: u64 = per_form.iter().map(|(_, n)| n).sum();
        let forms: Vec<String> = per_form.iter().map(|(f, n)| format!("{f} {n}")).collect();
        let mut line = format!("orders: {total} in {}s ({})", every.as_secs(), forms.join(", "));
        if !stock.is_empty() {
            let left: Vec<String> = stock.iter().map(|(sku, n)| format!("{sku} {n}")).collect();
            line.push_str(&format!(" · stock left {}", left.join(", ")));
        }
        if shed > 0 {
            line.push_str(&format!(" · shed {shed} (503, queue full)"));
        }
        Some(line)
    }
}

/// Logs a summary line every `every` while anything happens, until `closed`.
pub async fn run(shared: Arc<Shared>, closed: Arc<AtomicBool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    while !closed.load(Ordering::Relaxed) {
        tick.tick().await;
        let stock = shared.remaining.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(line) = shared.oplog.take_line(&stock, every) {
            tracing::info!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_while_orders_flow_and_silence_when_idle() {
        let log = OpLog::default();
        let stock: BTreeMap<String, u64> = [("AURORA-EB".to_string(), 4958)].into();
        let every = Duration::from_secs(5);
        assert_eq!(log.take_line(&stock, every), None);
        log.accepted("order", 30);
        log.accepted("order", 10);
        log.accepted("offer", 2);
        log.shed();
        assert_eq!(
            log.take_line(&stock, every).as_deref(),
            Some("orders: 42 in 5s (offer 2, order 40) · stock left AURORA-EB 4958 · shed 1 (503, queue full)")
        );
        assert_eq!(log.take_line(&stock, every), None, "counted once");
        // A form a reload added is counted too.
        log.accepted("preorder", 1);
        assert_eq!(
            log.take_line(&stock, every).as_deref(),
            Some("orders: 1 in 5s (preorder 1) · stock left AURORA-EB 4958")
        );
    }
}
