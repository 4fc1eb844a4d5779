//! The payment log's format: one verified provider event per line, in
//! `collected/payments/{node}-{first_seq}.jsonl`. Like [`crate::record`], it is a versioned API
//! (`"v": 1`): the hook writes it with [`Payment::to_json_line`], `stats` and `import` read it
//! with [`read_payments`].

use crate::record::{BadLine, Ref, SegmentName, OPEN_SUFFIX};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const PAYMENT_VERSION: u32 = 1;

/// The folder below `collected/` that holds the payment log (a form cannot take this name).
pub const PAYMENTS_DIR: &str = "payments";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub v: u32,
    pub provider: Provider,
    /// The provider's event ID (`evt_…`): each event is stored once.
    pub event_id: String,
    /// The provider's event type, e.g. `checkout.session.completed`.
    pub event_type: String,
    /// When the hook received it, RFC 3339 UTC.
    pub received_at: jiff::Timestamp,
    /// When the provider made the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<jiff::Timestamp>,
    /// The order paid for (the reference the payment link carried); none when the event names
    /// no reference of ours.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Ref>,
    pub status: PaymentStatus,
    /// Minor units: what was paid, or for a refund, how much of the payment is refunded so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<u64>,
    /// ISO 4217, upper case (`EUR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The provider's checkout (`cs_…`) and payment (`pi_…`) IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// False for the provider's test mode.
    pub livemode: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Stripe,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// The money is in (or nothing was due).
    Paid,
    /// The checkout is done but the money is not in yet (bank debits).
    Unpaid,
    /// The payment did not go through.
    Failed,
    /// The buyer left the payment page and it expired.
    Expired,
    /// Money went back (`amount_cents` is the total refunded so far).
    Refunded,
}

impl PaymentStatus {
    pub fn name(self) -> &'static str {
        match self {
            PaymentStatus::Paid => "paid",
            PaymentStatus::Unpaid => "unpaid",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

impl Payment {
    /// The payment as one JSON line, newline included.
    pub fn to_json_line(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a payment always serializes");
        out.push(b'\n');
        out
    }

    /// Parses one line; the error says what is wrong with it.
    pub fn from_json_line(line: &[u8]) -> Result<Payment, String> {
        match serde_json::from_slice::<Payment>(line) {
            Ok(p) if p.v == PAYMENT_VERSION => Ok(p),
            Ok(p) => Err(format!("payment version {} (this cofferdam reads {PAYMENT_VERSION})", p.v)),
            Err(e) => Err(format!("not a payment: {e}")),
        }
    }
}

/// One file of the payment log.
#[derive(Debug, Clone)]
pub struct PaymentSegment {
    pub path: PathBuf,
    pub name: SegmentName,
}

/// The payment log's files under `collected/`, sorted by node and first sequence.
pub fn list_payment_segments(collected: &Path) -> std::io::Result<Vec<PaymentSegment>> {
    let dir = collected.join(PAYMENTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(name) = SegmentName::parse(&entry.file_name().to_string_lossy()) {
            out.push(PaymentSegment { path: entry.path(), name });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every payment of one file in order, with its 1-based line; a line that does not parse (or a
/// torn last line of an open file) comes back as a [`BadLine`], never dropped.
pub fn read_payment_segment(path: &Path) -> std::io::Result<Vec<Result<(usize, Payment), BadLine>>> {
    let bytes = std::fs::read(path)?;
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let tail = lines.pop().unwrap_or_default();
    let bad = |line: usize, message: String| BadLine { path: path.to_path_buf(), line, message };
    let mut out: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, raw)| Payment::from_json_line(raw).map(|p| (i + 1, p)).map_err(|m| bad(i + 1, m)))
        .collect();
    if !tail.is_empty() {
        out.push(Err(bad(lines.len() + 1, "torn line (no newline at the end)".into())));
    }
    Ok(out)
}

/// Every payment under the given `collected/` folders (one per node), each event once: a
/// provider retrying on another node, or a folder given twice, is folded by event ID.
pub fn read_payments(folders: &[PathBuf]) -> std::io::Result<(Vec<Payment>, Vec<BadLine>)> {
    let mut seen = std::collections::HashSet::new();
    let mut payments = Vec::new();
    let mut bad = Vec::new();
    for folder in folders {
        for seg in list_payment_segments(folder)? {
            for item in read_payment_segment(&seg.path)? {
                match item {
                    Ok((_, p)) => {
                        if seen.insert((p.provider, p.event_id.clone())) {
                            payments.push(p);
                        }
                    }
                    Err(b) => bad.push(b),
                }
            }
        }
    }
    Ok((payments, bad))
}

/// `x.jsonl.open` is still being written; recovery seals it.
pub fn is_open(path: &Path) -> bool {
    path.to_string_lossy().ends_with(OPEN_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid() -> Payment {
        Payment {
            v: PAYMENT_VERSION,
            provider: Provider::Stripe,
            event_id: "evt_1".into(),
            event_type: "checkout.session.completed".into(),
            received_at: "2026-12-01T09:00:00Z".parse().unwrap(),
            created_at: Some("2026-12-01T08:59:59Z".parse().unwrap()),
            reference: Some("n1-7".parse().unwrap()),
            status: PaymentStatus::Paid,
            amount_cents: Some(8900),
            currency: Some("EUR".into()),
            checkout_id: Some("cs_test_1".into()),
            payment_id: Some("pi_1".into()),
            email: Some("ada@example.org".into()),
            livemode: false,
        }
    }

    #[test]
    fn a_payment_reads_back_as_written_and_a_torn_tail_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(PAYMENTS_DIR);
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("n1-000000000001.jsonl.open");
        let mut bytes = paid().to_json_line();
        let line = String::from_utf8(bytes.clone()).unwrap();
        assert!(line.starts_with("{\"v\":1,\"provider\":\"stripe\",\"event_id\":\"evt_1\""), "{line}");
        assert!(line.contains("\"ref\":\"n1-7\",\"status\":\"paid\",\"amount_cents\":8900"), "{line}");
        bytes.extend_from_slice(b"{\"v\":1,\"prov");
        std::fs::write(&path, &bytes).unwrap();
        let got = read_payment_segment(&path).unwrap();
        assert_eq!(got[0].as_ref().unwrap().1, paid());
        assert!(got[1].as_ref().unwrap_err().message.contains("torn"));
        assert!(is_open(&path));
        let (all, bad) = read_payments(&[dir.path().to_path_buf(), dir.path().to_path_buf()]).unwrap();
        assert_eq!(all, vec![paid()], "the same event in a folder given twice is read once");
        assert_eq!(bad.len(), 2);
    }
}
