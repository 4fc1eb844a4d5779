//! The payment log joined to the orders by reference: what each order has paid, for `stats`
//! and `import`. Events are read once each (by event ID, across nodes), in the provider's
//! order; a checkout counts once however many events confirm it, and a refund finds its order
//! through the payment ID of the checkout it refunds.

use super::record::{read_payments, Payment, PaymentStatus, Provider};
use crate::record::{BadLine, Ref};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

/// What one order has paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPayment {
    /// Paid (net of refunds above zero), refunded (all of it), or the last word of a checkout
    /// that never paid (unpaid, failed, expired).
    pub status: PaymentStatus,
    /// Minor units paid, over every paid checkout of the order.
    pub paid_cents: u64,
    pub refunded_cents: u64,
    pub currency: Option<String>,
    pub provider: Provider,
    /// The last paid (else last) checkout's IDs.
    pub checkout_id: Option<String>,
    pub payment_id: Option<String>,
    pub email: Option<String>,
    /// When the provider confirmed the payment.
    pub paid_at: Option<jiff::Timestamp>,
    /// The provider's ID of the event that gave the order its status.
    pub event_id: Option<String>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    by_ref: BTreeMap<Ref, OrderPayment>,
    /// Events that name no order (no reference, or a refund of an unknown payment).
    pub unmatched: Vec<Payment>,
    pub bad: Vec<BadLine>,
    /// Distinct events read.
    pub events: usize,
}

impl Ledger {
    /// Reads the payment logs of the given `collected/` folders (one per node).
    pub fn read(folders: &[PathBuf]) -> std::io::Result<Ledger> {
        let (payments, bad) = read_payments(folders)?;
        let mut ledger = Ledger::from_payments(payments);
        ledger.bad = bad;
        Ok(ledger)
    }

    pub fn from_payments(mut payments: Vec<Payment>) -> Ledger {
        payments.sort_by(|a, b| {
            (a.created_at.unwrap_or(a.received_at), &a.event_id)
                .cmp(&(b.created_at.unwrap_or(b.received_at), &b.event_id))
        });
        let mut ledger = Ledger { events: payments.len(), ..Ledger::default() };
        let owner: HashMap<&str, &Ref> =
            payments.iter().filter_map(|p| Some((p.payment_id.as_deref()?, p.reference.as_ref()?))).collect();
        let mut paid_checkouts: HashSet<(Provider, String)> = HashSet::new();
        let mut refunded: HashMap<&str, u64> = HashMap::new();
        for p in &payments {
            let reference = match (&p.reference, p.status) {
                (Some(r), _) => r.clone(),
                (None, PaymentStatus::Refunded) => match p.payment_id.as_deref().and_then(|id| owner.get(id)) {
                    Some(r) => (*r).clone(),
                    None => {
                        ledger.unmatched.push(p.clone());
                        continue;
                    }
                },
                (None, _) => {
                    ledger.unmatched.push(p.clone());
                    continue;
                }
            };
            let o = ledger.by_ref.entry(reference).or_insert_with(|| OrderPayment {
                status: p.status,
                paid_cents: 0,
                refunded_cents: 0,
                currency: p.currency.clone(),
                provider: p.provider,
                checkout_id: None,
                payment_id: None,
                email: None,
                paid_at: None,
                event_id: None,
            });
            match p.status {
                PaymentStatus::Paid => {
                    let checkout = p.checkout_id.clone().unwrap_or_else(|| p.event_id.clone());
                    if paid_checkouts.insert((p.provider, checkout)) {
                        o.paid_cents += p.amount_cents.unwrap_or(0);
                        o.paid_at = p.created_at.or(Some(p.received_at));
                    }
                    o.checkout_id = p.checkout_id.clone().or(o.checkout_id.take());
                    o.payment_id = p.payment_id.clone().or(o.payment_id.take());
                    o.email = p.email.clone().or(o.email.take());
                    o.currency = p.currency.clone().or(o.currency.take());
                    o.event_id = Some(p.event_id.clone());
                }
                PaymentStatus::Refunded => {
                    // A charge's refunded amount is its running total: keep the largest.
                    let id = p.payment_id.as_deref().unwrap_or(&p.event_id);
                    let seen = refunded.entry(id).or_default();
                    let now = p.amount_cents.unwrap_or(0).max(*seen);
                    o.refunded_cents += now - *seen;
                    *seen = now;
                    o.event_id = Some(p.event_id.clone());
                }
                PaymentStatus::Unpaid | PaymentStatus::Failed | PaymentStatus::Expired => {
                    if o.paid_cents == 0 {
                        o.checkout_id = p.checkout_id.clone().or(o.checkout_id.take());
                        o.email = p.email.clone().or(o.email.take());
                        o.event_id = Some(p.event_id.clone());
                    }
                }
            }
            o.status = if o.paid_cents > 0 {
                if o.refunded_cents >= o.paid_cents {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::Paid
                }
            } else if p.status == PaymentStatus::Refunded {
                o.status
            } else {
                p.status
            };
        }
        ledger
    }

    /// What the order `reference` has paid, if the log names it.
    pub fn get(&self, reference: &Ref) -> Option<&OrderPayment> {
        self.by_ref.get(reference)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Ref, &OrderPayment)> {
        self.by_ref.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::record::PAYMENT_VERSION;

    fn event(
        id: &str,
        status: PaymentStatus,
        reference: Option<&str>,
        amount: u64,
        checkout: &str,
        minute: u8,
    ) -> Payment {
        Payment {
            v: PAYMENT_VERSION,
            provider: Provider::Stripe,
            event_id: id.into(),
            event_type: "x".into(),
            received_at: format!("2026-12-01T09:{minute:02}:00Z").parse().unwrap(),
            created_at: None,
            reference: reference.map(|r| r.parse().unwrap()),
            status,
            amount_cents: Some(amount),
            currency: Some("EUR".into()),
            checkout_id: (!checkout.is_empty()).then(|| checkout.to_string()),
            payment_id: (!checkout.is_empty()).then(|| format!("pi_{checkout}")),
            email: None,
            livemode: false,
        }
    }

    #[test]
    fn checkouts_count_once_refunds_find_their_order_and_strays_are_kept() {
        use PaymentStatus::*;
        let ledger = Ledger::from_payments(vec![
            // A bank debit: completed unpaid, then paid; counted once.
            event("e1", Unpaid, Some("n1-1"), 8900, "a", 1),
            event("e2", Paid, Some("n1-1"), 8900, "a", 2),
            // Paid, then refunded in two steps (the charge's running total).
            event("e3", Paid, Some("n1-2"), 17800, "b", 3),
            event("e4", Refunded, None, 8900, "b", 4),
            event("e5", Refunded, None, 17800, "b", 5),
            // Left the payment page.
            event("e6", Expired, Some("n1-3"), 8900, "c", 6),
            // No reference of ours.
            event("e7", Paid, None, 100, "d", 7),
        ]);
        let one = ledger.get(&"n1-1".parse().unwrap()).unwrap();
        assert_eq!((one.status, one.paid_cents, one.checkout_id.as_deref()), (Paid, 8900, Some("a")));
        assert_eq!(one.event_id.as_deref(), Some("e2"), "the event that paid it");
        let two = ledger.get(&"n1-2".parse().unwrap()).unwrap();
        assert_eq!((two.status, two.paid_cents, two.refunded_cents), (Refunded, 17800, 17800));
        assert_eq!(two.event_id.as_deref(), Some("e5"));
        assert_eq!(ledger.get(&"n1-3".parse().unwrap()).unwrap().status, Expired);
        assert_eq!(ledger.unmatched.len(), 1);
        assert_eq!(ledger.events, 7);
    }
}
