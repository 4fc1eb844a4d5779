//! `cofferdam stats`: what has been collected, read from the logs alone.

use crate::config::{Form, Site};
use crate::payment::{Ledger, PaymentStatus};
use crate::record::{self, Ref};
use crate::replicate::Cursor;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Stats {
    /// (form, node, hour "2026-11-24T09") → records.
    pub per_hour: BTreeMap<(String, String, String), u64>,
    pub per_form: BTreeMap<String, u64>,
    pub sold: BTreeMap<String, u64>,
    /// Currency → cents.
    pub revenue: BTreeMap<String, u64>,
    pub bad: Vec<record::BadLine>,
    pub segments: usize,
    /// `ack = "local"`: per node, where its shipper is (`{node}.shipped`) and the records on
    /// disk it has not sent to the stream yet.
    pub shipping: BTreeMap<String, (Cursor, u64)>,
    /// Per form taking payment (or named by a payment): paid, unpaid, mismatched amounts.
    pub payments: BTreeMap<String, Payments>,
    /// Orders whose paid amount is not their catalog total: (ref, paid, total, currency).
    pub mismatches: Vec<(Ref, u64, u64, String)>,
    /// Payment events read, and those that name no order of these logs.
    pub payment_events: usize,
    pub unmatched_payments: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Payments {
    pub paid: u64,
    pub unpaid: u64,
    /// Paid, then refunded in full.
    pub refunded: u64,
    /// Paid, but not the order's catalog total (also counted as paid).
    pub mismatched: u64,
}

pub fn collect_stats(site: &Site, dir: &std::path::Path) -> std::io::Result<Stats> {
    let mut s = Stats::default();
    let nodes: std::collections::BTreeSet<String> =
        record::list_segments(dir)?.into_iter().map(|seg| seg.name.node).collect();
    for node in nodes {
        if let Some(c) = Cursor::load(dir, &node) {
            s.shipping.insert(node, (c, 0));
        }
    }
    let ledger = Ledger::read(&[dir.to_path_buf()])?;
    s.payment_events = ledger.events;
    s.bad.extend(ledger.bad.iter().cloned());
    let mut known = std::collections::HashSet::new();
    for seg in record::list_segments(dir)? {
        let counted = site.config.forms.get(&seg.form).map(Form::primary_store).unwrap_or_default();
        if seg.name.format != counted {
            continue;
        }
        s.segments += 1;
        for item in record::read_segment(&seg.path)? {
            let r = match item {
                Ok((_, r)) => r,
                Err(bad) => {
                    s.bad.push(bad);
                    continue;
                }
            };
            let hour = r.received_at.strftime("%Y-%m-%dT%H:00Z").to_string();
            *s.per_hour.entry((r.form.to_string(), r.reference.node.to_string(), hour)).or_default() += 1;
            *s.per_form.entry(r.form.to_string()).or_default() += 1;
            if let Some((c, behind)) = s.shipping.get_mut(&*r.reference.node) {
                *behind += u64::from(r.reference.seq > c.shipped);
            }
            for l in &r.lines {
                *s.sold.entry(l.sku.to_string()).or_default() += l.quantity as u64;
            }
            if let (Some(t), Some(c)) = (r.total_cents, &r.currency) {
                *s.revenue.entry(c.to_string()).or_default() += t;
            }
            let takes_payment = site.config.forms.get(&*r.form).is_some_and(|f| f.payment.is_some());
            let paid = ledger.get(&r.reference);
            if takes_payment || paid.is_some() {
                let p = s.payments.entry(r.form.to_string()).or_default();
                match paid.map(|o| o.status) {
                    Some(PaymentStatus::Paid) => p.paid += 1,
                    Some(PaymentStatus::Refunded) => p.refunded += 1,
                    _ => p.unpaid += 1,
                }
                if let Some(o) = paid.filter(|o| o.status == PaymentStatus::Paid) {
                    let total = r.total_cents.unwrap_or(0);
                    let currency = r.currency.as_deref().unwrap_or_default().to_string();
                    if o.paid_cents != total || o.currency.as_deref().is_some_and(|c| c != currency) {
                        p.mismatched += 1;
                        s.mismatches.push((r.reference.clone(), o.paid_cents, total, currency));
                    }
                }
            }
            known.insert(r.reference);
        }
    }
    s.unmatched_payments = ledger.unmatched.len() + ledger.iter().filter(|(r, _)| !known.contains(*r)).count();
    Ok(s)
}
