//! Stripe's webhook: the `Stripe-Signature` check as Stripe documents it, and the events of a
//! Payment Link's checkout mapped onto [`Payment`].
//!
//! The header is `t=TIMESTAMP,v1=HEX[,v1=HEX…][,v0=…]`. The signed text is `"{t}.{raw body}"`,
//! the signature its HMAC-SHA256 under the endpoint's secret, in hex. Any `v1` may match (Stripe
//! sends one per active secret while a secret is rolled); other schemes are ignored. A timestamp
//! further than the tolerance from now is refused, so a captured event cannot be replayed later.

use super::record::{Payment, PaymentStatus, Provider, PAYMENT_VERSION};
use crate::record::Ref;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no t= timestamp")]
    NoTimestamp,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error("no v1 signature matches the body")]
    Mismatch,
    #[error("the signed timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
    #[error("no signing secret is set")]
    NoSecret,
}

/// Checks `header` against the raw `body`; `now` is in Unix seconds.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    tolerance_secs: u64,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.push(s),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::NoTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let matched = secrets.iter().any(|secret| {
        let mac = signed(secret, t, body);
        signatures.iter().any(|s| decode_hex(s).is_some_and(|given| mac.clone().verify_slice(&given).is_ok()))
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let age = now - t;
    if age.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::Stale(age));
    }
    Ok(())
}

fn signed(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: Option<i64>,
    #[serde(default)]
    livemode: bool,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// The fields of a Checkout Session (what a Payment Link makes) that a shop needs.
#[derive(Deserialize)]
struct Session {
    id: String,
    client_reference_id: Option<String>,
    amount_total: Option<u64>,
    currency: Option<String>,
    payment_status: Option<String>,
    /// An ID, or the whole object when expanded.
    payment_intent: Option<serde_json::Value>,
    customer_details: Option<CustomerDetails>,
    customer_email: Option<String>,
}

#[derive(Deserialize)]
struct CustomerDetails {
    email: Option<String>,
}

#[derive(Deserialize)]
struct Charge {
    amount_refunded: u64,
    currency: Option<String>,
    payment_intent: Option<serde_json::Value>,
}

/// What a verified body is: a payment event to store, or an event of no concern to the shop.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Store(Box<Payment>),
    /// Verified, acknowledged, not stored (an event type this log does not track).
    Ignored(String),
}

/// The events of a Payment Link checkout and its refunds, as [`Payment`]s.
pub fn parse_event(body: &[u8], received_at: jiff::Timestamp) -> Result<Parsed, String> {
    let event: Event = serde_json::from_slice(body).map_err(|e| format!("not a Stripe event: {e}"))?;
    let status = match event.kind.as_str() {
        "checkout.session.completed" => None,
        "checkout.session.async_payment_succeeded" => Some(PaymentStatus::Paid),
        "checkout.session.async_payment_failed" => Some(PaymentStatus::Failed),
        "checkout.session.expired" => Some(PaymentStatus::Expired),
        "charge.refunded" => Some(PaymentStatus::Refunded),
        other => return Ok(Parsed::Ignored(other.to_string())),
    };
    let created_at = event.created.and_then(|s| jiff::Timestamp::from_second(s).ok());
    let mut p = Payment {
        v: PAYMENT_VERSION,
        provider: Provider::Stripe,
        event_id: event.id,
        event_type: event.kind,
        received_at,
        created_at,
        reference: None,
        status: status.unwrap_or(PaymentStatus::Unpaid),
        amount_cents: None,
        currency: None,
        checkout_id: None,
        payment_id: None,
        email: None,
        livemode: event.livemode,
    };
    let object = event.data.object;
    if p.status == PaymentStatus::Refunded {
        let charge: Charge = serde_json::from_value(object).map_err(|e| format!("not a charge: {e}"))?;
        p.amount_cents = Some(charge.amount_refunded);
        p.currency = charge.currency.map(|c| c.to_ascii_uppercase());
        p.payment_id = charge.payment_intent.as_ref().and_then(id_of);
        return Ok(Parsed::Store(Box::new(p)));
    }
    let s: Session = serde_json::from_value(object).map_err(|e| format!("not a checkout session: {e}"))?;
    if status.is_none() {
        // "completed" means the checkout is done; bank debits pay later ("unpaid" until then).
        p.status = match s.payment_status.as_deref() {
            Some("paid") | Some("no_payment_required") => PaymentStatus::Paid,
            _ => PaymentStatus::Unpaid,
        };
    }
    p.reference = s.client_reference_id.as_deref().and_then(|r| r.parse::<Ref>().ok());
    p.amount_cents = s.amount_total;
    p.currency = s.currency.map(|c| c.to_ascii_uppercase());
    p.checkout_id = Some(s.id);
    p.payment_id = s.payment_intent.as_ref().and_then(id_of);
    p.email = s.customer_details.and_then(|c| c.email).or(s.customer_email);
    Ok(Parsed::Store(Box::new(p)))
}

fn id_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("id").and_then(|i| i.as_str()).map(String::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Stripe's own test vector style: the signature of "{t}.{body}" under the secret, in hex.
    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        let hex: String = signed(secret, t, body).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},v1={hex},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
    }

    #[test]
    fn signatures_verify_as_stripe_documents_them() {
        let body = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
        let secrets = vec!["whsec_test".to_string()];
        let now = 1_764_000_000;
        assert_eq!(verify(Some(&header("whsec_test", now, body)), body, &secrets, 300, now), Ok(()));
        // Several v1 signatures (a secret being rolled): one matching is enough.
        let two = format!("t={now},v1=00ff,{}", &header("whsec_test", now, body)[format!("t={now},").len()..]);
        assert_eq!(verify(Some(&two), body, &secrets, 300, now), Ok(()));
        let both = vec!["whsec_old".to_string(), "whsec_test".to_string()];
        assert_eq!(verify(Some(&header("whsec_test", now, body)), body, &both, 300, now), Ok(()));
        let wrong = header("whsec_other", now, body);
        assert_eq!(verify(Some(&wrong), body, &secrets, 300, now), Err(SignatureError::Mismatch));
        let tampered = br#"{"id":"evt_1","type":"checkout.session.completed "}"#;
        assert_eq!(
            verify(Some(&header("whsec_test", now, body)), tampered, &secrets, 300, now),
            Err(SignatureError::Mismatch)
        );
        let old = header("whsec_test", now - 301, body);
        assert_eq!(verify(Some(&old), body, &secrets, 300, now), Err(SignatureError::Stale(301)));
        assert_eq!(verify(None, body, &secrets, 300, now), Err(SignatureError::Missing));
        assert_eq!(verify(Some("v1=abc"), body, &secrets, 300, now), Err(SignatureError::NoTimestamp));
        assert_eq!(verify(Some(&format!("t={now},v0=ab")), body, &secrets, 300, now), Err(SignatureError::NoSignature));
        assert_eq!(verify(Some(&header("", now, body)), body, &[], 300, now), Err(SignatureError::NoSecret));
    }

    #[test]
    fn a_completed_checkout_becomes_a_paid_payment_of_its_reference() {
        let body = br#"{"id":"evt_9","object":"event","type":"checkout.session.completed","created":1764000000,"livemode":false,
            "data":{"object":{"id":"cs_test_9","object":"checkout.session","client_reference_id":"n1-42","amount_total":17800,
            "currency":"eur","payment_status":"paid","payment_intent":"pi_9","customer_details":{"email":"ada@example.org"}}}}"#;
        let at: jiff::Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        let Parsed::Store(p) = parse_event(body, at).unwrap() else { panic!("stored") };
        assert_eq!(p.reference, Some("n1-42".parse().unwrap()));
        assert_eq!((p.status, p.amount_cents, p.currency.as_deref()), (PaymentStatus::Paid, Some(17800), Some("EUR")));
        assert_eq!((p.checkout_id.as_deref(), p.payment_id.as_deref()), (Some("cs_test_9"), Some("pi_9")));
        assert_eq!(p.email.as_deref(), Some("ada@example.org"));
        let debit = String::from_utf8_lossy(body).replace("\"paid\"", "\"unpaid\"");
        let Parsed::Store(p) = parse_event(debit.as_bytes(), at).unwrap() else { panic!("stored") };
        assert_eq!(p.status, PaymentStatus::Unpaid);
        let other = br#"{"id":"evt_2","type":"customer.created","data":{"object":{}}}"#;
        assert_eq!(parse_event(other, at).unwrap(), Parsed::Ignored("customer.created".into()));
        assert!(parse_event(b"[]", at).is_err());
    }
}
