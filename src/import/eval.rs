//! Evaluates a mapping expression for one record (and one of its lines): a pure function of
//! the record, the IDs the plan gave it, what the target knew (lookups) and the site's secret.

use super::plan::{Key, RowId};
use super::snapshot::Lookups;
use super::value::Value;
use crate::config::expr::{
    ArithOp, CmpOp, Expr, Func, LineValue, MetaValue, NamePart, PaymentValue, Piece, RecordValue,
};
use crate::config::Entity;
use crate::decimal::Decimal;
use crate::payment::{Ledger, PaymentStatus};
use crate::record::Record;
use crate::text::first_chars;
use hmac::Mac;
use sha1::Digest;
use std::borrow::Cow;

/// What every evaluation of one import shares.
pub struct Env<'a> {
    pub lookups: &'a Lookups,
    /// Key of the derived values (`token`, `uuid5`, …): the site's signing key.
    pub secret: &'a [u8],
    /// The payment logs joined to the orders, for `payment.…`.
    pub payments: &'a Ledger,
}

/// One record, one row being made.
pub struct Scope<'a, 't> {
    pub record: &'a Record,
    /// The record's reference as text.
    pub reference: &'a str,
    /// The record's entities, to find the row `id(…)` means.
    pub entities: &'a [Entity],
    /// Index into `record.lines` for a per-line row.
    pub line: Option<usize>,
    /// The record's rows so far, in the order of its entities and lines.
    pub rows: &'a [RowId],
    /// The parent record's rows (a one-time offer's order).
    pub parent: Option<&'a [RowId]>,
    pub reserved_id: Option<i64>,
    /// The length of the column being filled, for `truncate(x)`.
    pub column_len: Option<usize>,
    /// Counts values `truncate` shortened.
    pub truncated: &'t std::cell::Cell<u32>,
}

type Eval<'a> = Result<Value<'a>, String>;

pub fn eval<'a>(x: &'a Expr, env: &Env<'a>, s: &Scope<'a, '_>) -> Eval<'a> {
    let r = s.record;
    Ok(match x {
        Expr::Null => Value::Null,
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Int(n) => Value::Int(*n),
        Expr::Dec(d) => Value::Dec(*d),
        Expr::Text(t) => Value::Text(Cow::Borrowed(t)),
        Expr::Record(v) => match v {
            RecordValue::Ref => Value::Text(Cow::Borrowed(s.reference)),
            RecordValue::Form => Value::Text(Cow::Borrowed(&r.form)),
            RecordValue::ReceivedAt => Value::Time(r.received_at),
            RecordValue::TotalCents => r.total_cents.map(|t| Value::Int(t as i64)).unwrap_or(Value::Null),
            RecordValue::Currency => opt_text(r.currency.as_deref()),
            RecordValue::ParentRef => {
                r.parent_ref.as_ref().map(|p| Value::Text(Cow::Owned(p.to_string()))).unwrap_or(Value::Null)
            }
            RecordValue::ReservedId => s.reserved_id.map(Value::Int).unwrap_or(Value::Null),
        },
        Expr::Field(name) => opt_text(r.fields.get(name.as_str()).map(String::as_str)),
        Expr::Meta(MetaValue::Ip) => opt_text(r.meta.ip.as_deref()),
        Expr::Meta(MetaValue::UserAgent) => opt_text(r.meta.user_agent.as_deref()),
        Expr::Payment(v) => payment(*v, env.payments, r),
        Expr::Line(v) => {
            let i = s.line.ok_or("a line value outside a line")?;
            let l = &r.lines[i];
            match v {
                LineValue::Sku => Value::Text(Cow::Borrowed(&l.sku)),
                LineValue::Name => Value::Text(Cow::Borrowed(&l.name)),
                LineValue::Quantity => Value::Int(l.quantity as i64),
                LineValue::UnitCents => Value::Int(l.unit_cents as i64),
                LineValue::TotalCents => Value::Int(l.total_cents as i64),
                LineValue::Index => Value::Int(i as i64 + 1),
            }
        }
        Expr::Id(t) => {
            let at = row_offset(s, t.entity) + if t.per_line { s.line.unwrap_or(0) } else { 0 };
            match s.rows.get(at) {
                Some(row) => key_value(&row.key),
                None => return Err(format!("id({}): no row yet", t.table)),
            }
        }
        Expr::Created(t) => {
            let at = row_offset(s, t.entity) + if t.per_line { s.line.unwrap_or(0) } else { 0 };
            match s.rows.get(at) {
                Some(row) => Value::Bool(row.new),
                None => return Err(format!("created({}): no row yet", t.table)),
            }
        }
        Expr::Parent(t) => {
            let Some(p) = &r.parent_ref else {
                return Err(format!("parent({}): the record has no parent reference", t.table));
            };
            let rows = s.parent.ok_or_else(|| format!("parent({}): the parent record {p} is not known", t.table))?;
            match rows.iter().find(|row| row.table == t.index) {
                Some(row) => key_value(&row.key),
                None => return Err(format!("parent({}): the parent record {p} has no {} row", t.table, t.table)),
            }
        }
        Expr::Lookup(l) => {
            let mut key = Vec::with_capacity(l.keys.len());
            for (_, k) in &l.keys {
                key.push(eval(k, env, s)?.to_string());
            }
            match env.lookups.get(l.site, &key) {
                Some(v) => v,
                None => match &l.default {
                    Some(d) => eval(d, env, s)?,
                    None => {
                        let said: Vec<String> =
                            l.keys.iter().zip(&key).map(|((c, _), v)| format!("{c} = {v:?}")).collect();
                        return Err(format!(
                            "no row of {} has {} (lookup of {}.{})",
                            l.table,
                            said.join(" and "),
                            l.table,
                            l.column
                        ));
                    }
                },
            }
        }
        Expr::Neg(e) => match eval(e, env, s)? {
            Value::Null => Value::Null,
            v => Value::Dec(-number(&v, "-")?).simplified(),
        },
        Expr::Arith(op, a, b) => arith(*op, eval(a, env, s)?, eval(b, env, s)?)?,
        Expr::Cmp(op, a, b) => Value::Bool(compare(*op, &eval(a, env, s)?, &eval(b, env, s)?)),
        Expr::Call(f, args) => call(f, args, env, s)?,
    })
}

/// What the payment log says of record `r`; an order no event names is unpaid, with nothing
/// paid and no provider IDs.
fn payment<'a>(v: PaymentValue, payments: &'a Ledger, r: &Record) -> Value<'a> {
    let Some(p) = payments.get(&r.reference) else {
        return match v {
            PaymentValue::Status => Value::Text(Cow::Borrowed(PaymentStatus::Unpaid.name())),
            PaymentValue::Amount | PaymentValue::Refunded => Value::Int(0),
            _ => Value::Null,
        };
    };
    match v {
        PaymentValue::Status => Value::Text(Cow::Borrowed(p.status.name())),
        PaymentValue::Amount => Value::Int(p.paid_cents.saturating_sub(p.refunded_cents) as i64),
        PaymentValue::Refunded => Value::Int(p.refunded_cents as i64),
        PaymentValue::Currency => opt_text(p.currency.as_deref()),
        PaymentValue::Provider => Value::Text(Cow::Borrowed(p.provider.name())),
        PaymentValue::Id => opt_text(p.payment_id.as_deref().or(p.checkout_id.as_deref())),
        PaymentValue::Checkout => opt_text(p.checkout_id.as_deref()),
        PaymentValue::Event => opt_text(p.event_id.as_deref()),
        PaymentValue::PaidAt => p.paid_at.map(Value::Time).unwrap_or(Value::Null),
        PaymentValue::Email => opt_text(p.email.as_deref()),
    }
}

fn opt_text(v: Option<&str>) -> Value<'_> {
    v.map(|t| Value::Text(Cow::Borrowed(t))).unwrap_or(Value::Null)
}

pub fn key_value(k: &Key) -> Value<'_> {
    match k {
        Key::None => Value::Null,
        Key::Int(n) => Value::Int(*n),
        Key::Text(t) => Value::Text(Cow::Borrowed(t)),
    }
}

/// Where the rows of entity `j` start among the record's rows.
fn row_offset(s: &Scope, j: usize) -> usize {
    let n = s.record.lines.len();
    s.entities[..j]
        .iter()
        .map(|e| {
            if e.update_parent {
                0
            } else if e.per_line {
                n
            } else {
                1
            }
        })
        .sum()
}

impl Value<'_> {
    /// A whole-number decimal back to an integer, so `2 * 3` stays `6`, not `6.0`.
    fn simplified(self) -> Self {
        match self {
            Value::Dec(d) if d.scale() == 0 => d.to_i64().map(Value::Int).unwrap_or(self),
            v => v,
        }
    }
}

fn number(v: &Value, op: &str) -> Result<Decimal, String> {
    v.number().ok_or_else(|| match v {
        Value::Text(t) => format!("{op}: {:?} is not a number", super::value::clip(t)),
        other => format!("{op}: {} is not a number", other.kind()),
    })
}

fn arith<'a>(op: ArithOp, a: Value<'a>, b: Value<'a>) -> Eval<'a> {
    if a == Value::Null || b == Value::Null {
        return Ok(Value::Null);
    }
    let sym = match op {
        ArithOp::Add => "+",
        ArithOp::Sub => "-",
        ArithOp::Mul => "*",
        ArithOp::Div => "/",
    };
    if let (Value::Int(x), Value::Int(y), false) = (&a, &b, op == ArithOp::Div) {
        let r = match op {
            ArithOp::Add => x.checked_add(*y),
            ArithOp::Sub => x.checked_sub(*y),
            _ => x.checked_mul(*y),
        };
        return r.map(Value::Int).ok_or_else(|| format!("{x} {sym} {y} is too large"));
    }
    let (x, y) = (number(&a, sym)?, number(&b, sym)?);
    let r = match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div if y.is_zero() => return Err(format!("{x} / 0")),
        ArithOp::Div => x.checked_div(y),
    };
    r.map(Value::Dec).ok_or_else(|| format!("{x} {sym} {y} is too large"))
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        _ => match (a.number(), b.number()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => Some(a.to_string().cmp(&b.to_string())),
        },
    };
    match (op, ord) {
        (CmpOp::Ne, None) => true,
        (_, None) => false,
        (CmpOp::Eq, Some(o)) => o == Ordering::Equal,
        (CmpOp::Ne, Some(o)) => o != Ordering::Equal,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
    }
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(n) => *n != 0,
        Value::Dec(d) => !d.is_zero(),
        Value::Text(t) => !t.is_empty(),
        Value::Time(_) | Value::Local(_) => true,
    }
}

/// Digits after the point of a currency's minor unit (ISO 4217), for `money(cents)`.
fn minor_digits(currency: Option<&str>) -> u32 {
    match currency.unwrap_or("") {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

fn text<'a>(v: Value<'a>) -> Cow<'a, str> {
    match v {
        Value::Text(t) => t,
        other => Cow::Owned(other.to_string()),
    }
}

fn call<'a>(f: &'a Func, args: &'a [Expr], env: &Env<'a>, s: &Scope<'a, '_>) -> Eval<'a> {
    let arg = |i: usize| eval(&args[i], env, s);
    let text_fn = |g: &dyn Fn(&str) -> String| -> Eval<'a> {
        Ok(match arg(0)? {
            Value::Null => Value::Null,
            v => Value::Text(Cow::Owned(g(&text(v)))),
        })
    };
    Ok(match f {
        Func::Money { scale } => {
            let v = arg(0)?;
            if v == Value::Null {
                return Ok(Value::Null);
            }
            let cents = number(&v, "money")?;
            let digits = minor_digits(s.record.currency.as_deref());
            let unit = Decimal::new(cents.rescale(0).map(|c| c.to_i64().unwrap_or(0) as i128).unwrap_or(0), digits);
            if cents.scale() > 0 && cents.rescale(0) != Some(cents) {
                return Err(format!("money: {cents} is not a whole number of cents"));
            }
            let shown = unit.rescale(scale.unwrap_or(digits)).ok_or("money: the amount is too large")?;
            Value::Dec(shown)
        }
        Func::Round(digits) => match arg(0)? {
            Value::Null => Value::Null,
            v => Value::Dec(number(&v, "round")?.rescale(*digits).ok_or("round: the amount is too large")?),
        },
        Func::If => {
            if truthy(&arg(0)?) {
                arg(1)?
            } else {
                arg(2)?
            }
        }
        Func::Sum => {
            let mut total = Value::Int(0);
            for i in 0..s.record.lines.len() {
                let inner = Scope { line: Some(i), ..*s };
                let v = eval(&args[0], env, &inner)?;
                if v != Value::Null {
                    total = arith(ArithOp::Add, total, v.into_owned())?;
                }
            }
            total
        }
        Func::Trim => text_fn(&|t| t.trim().to_string())?,
        Func::Lower => text_fn(&|t| t.to_lowercase())?,
        Func::Upper => text_fn(&|t| t.to_uppercase())?,
        Func::SplitName(part) => match arg(0)? {
            Value::Null => Value::Null,
            v => {
                let (given, family) = split_name(&text(v));
                Value::Text(Cow::Owned(if *part == NamePart::Given { given } else { family }))
            }
        },
        Func::LineOf(n) => match arg(0)? {
            Value::Null => Value::Null,
            v => {
                let t = text(v);
                match t.lines().map(str::trim).filter(|l| !l.is_empty()).nth(n - 1) {
                    Some(l) => Value::Text(Cow::Owned(l.to_string())),
                    None => Value::Null,
                }
            }
        },
        Func::Truncate(n) => {
            let v = arg(0)?;
            let Some(max) = n.or(s.column_len) else { return Ok(v) };
            match v {
                Value::Null => Value::Null,
                v => {
                    let t = text(v);
                    let kept = first_chars(&t, max);
                    if kept.len() < t.len() {
                        s.truncated.set(s.truncated.get() + 1);
                        Value::Text(Cow::Owned(kept.to_string()))
                    } else {
                        Value::Text(t)
                    }
                }
            }
        }
        Func::Checked => Value::Bool(match arg(0)? {
            Value::Text(t) => matches!(t.trim().to_ascii_lowercase().as_str(), "true" | "on" | "1" | "yes" | "checked"),
            other => truthy(&other),
        }),
        Func::ToInt => match arg(0)? {
            Value::Null => Value::Null,
            Value::Int(n) => Value::Int(n),
            Value::Bool(b) => Value::Int(b as i64),
            v => match number(&v, "int")?.to_i64() {
                Some(n) => Value::Int(n),
                None => return Err(format!("int: {v} is not a whole number")),
            },
        },
        Func::ToText => match arg(0)? {
            Value::Null => Value::Null,
            v => Value::Text(text(v)),
        },
        Func::Concat => {
            let mut out = String::new();
            for i in 0..args.len() {
                out.push_str(&text(arg(i)?));
            }
            Value::Text(Cow::Owned(out))
        }
        Func::Coalesce => {
            for i in 0..args.len() - 1 {
                let v = arg(i)?;
                if !v.is_empty() {
                    return Ok(v);
                }
            }
            // The last is the fallback, empty or not: coalesce(field.phone, '') is '' for a NOT NULL column.
            arg(args.len() - 1)?
        }
        Func::Template(pieces) => {
            let mut out = String::new();
            let mut next = 0;
            for p in pieces {
                match p {
                    Piece::Text(t) => out.push_str(t),
                    Piece::Arg { width, zero } => {
                        let v = text(arg(next)?);
                        next += 1;
                        let pad = width.saturating_sub(v.chars().count());
                        let (sign, digits) = match v.strip_prefix('-') {
                            Some(d) if *zero => ("-", d),
                            _ => ("", v.as_ref()),
                        };
                        out.push_str(sign);
                        out.extend(std::iter::repeat_n(if *zero { '0' } else { ' ' }, pad));
                        out.push_str(digits);
                    }
                }
            }
            Value::Text(Cow::Owned(out))
        }
        Func::Uuid5 => Value::Text(Cow::Owned(uuid5(env.secret, &parts(args, env, s)?))),
        Func::Token(n) => Value::Text(Cow::Owned(derived(env.secret, "token", &parts(args, env, s)?, *n, ALNUM))),
        Func::Hex(n) => {
            Value::Text(Cow::Owned(derived(env.secret, "hex", &parts(args, env, s)?, *n, b"0123456789abcdef")))
        }
        Func::Letters(n) => Value::Text(Cow::Owned(derived(
            env.secret,
            "letters",
            &parts(args, env, s)?,
            *n,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        ))),
        Func::LocalTime(tz) => match arg(0)? {
            Value::Null => Value::Null,
            Value::Time(t) => Value::Local(t.to_zoned(tz.clone()).datetime()),
            other => return Err(format!("local_time: {} is not a time", other.kind())),
        },
        Func::Base64 => match arg(0)? {
            Value::Null => Value::Null,
            v => {
                use base64::Engine as _;
                Value::Text(Cow::Owned(base64::engine::general_purpose::STANDARD.encode(text(v).as_bytes())))
            }
        },
        Func::Length => match arg(0)? {
            Value::Null => Value::Null,
            v => Value::Int(text(v).chars().count() as i64),
        },
        Func::ByteLength => match arg(0)? {
            Value::Null => Value::Null,
            v => Value::Int(text(v).len() as i64),
        },
        Func::Epoch => match arg(0)? {
            Value::Null => Value::Null,
            Value::Time(t) => Value::Int(t.as_second()),
            other => return Err(format!("epoch: {} is not a time", other.kind())),
        },
    })
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The arguments of a derived value as one message: their texts, separated by a unit separator.
fn parts(args: &[Expr], env: &Env, s: &Scope) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for a in args {
        out.push(0x1f);
        out.extend_from_slice(eval(a, env, s)?.to_string().as_bytes());
    }
    Ok(out)
}

/// `n` bytes of HMAC-SHA256(secret, purpose ‖ counter ‖ message), as long as needed.
fn keyed_bytes(secret: &[u8], purpose: &str, message: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut counter = 0u32;
    while out.len() < n {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(&counter.to_be_bytes());
        mac.update(message);
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(n);
    out
}

fn derived(secret: &[u8], purpose: &str, message: &[u8], n: usize, alphabet: &[u8]) -> String {
    keyed_bytes(secret, purpose, message, n).iter().map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
}

/// A version-5 UUID of `message` in a namespace derived from the secret: stable for the same
/// record, unguessable without the secret.
fn uuid5(secret: &[u8], message: &[u8]) -> String {
    let namespace = keyed_bytes(secret, "uuid5 namespace", b"", 16);
    let mut h = sha1::Sha1::new();
    h.update(&namespace);
    h.update(message);
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("sha1 is 20 bytes");
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// "Ada Lovelace" → ("Ada", "Lovelace"); "Ludwig van Beethoven" → ("Ludwig", "van Beethoven");
/// one word → (word, "").
fn split_name(name: &str) -> (String, String) {
    let words: Vec<&str> = name.split_whitespace().collect();
    if words.len() < 2 {
        return (words.first().unwrap_or(&"").to_string(), String::new());
    }
    const PARTICLES: &[&str] = &[
        "van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la", "le", "ten", "ter",
        "zu", "af",
    ];
    let mut family_start = words.len() - 1;
    while family_start > 1 && PARTICLES.contains(&words[family_start - 1]) {
        family_start -= 1;
    }
    (words[..family_start].join(" "), words[family_start..].join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expr::parse;
    use crate::record::{Line, Meta, Ref};
    use std::collections::BTreeMap;

    fn record() -> Record {
        let mut fields = BTreeMap::new();
        fields.insert("name".into(), "  Ada   Lovelace ".to_string());
        fields.insert("email".into(), " Ada@Example.ORG".to_string());
        fields.insert("street".into(), "Hauptstr. 1\nHinterhaus\n".to_string());
        fields.insert("newsletter".into(), "true".to_string());
        fields.insert("quantity".into(), "2".to_string());
        Record {
            v: 1,
            reference: Ref { node: "n1".into(), seq: 7 },
            form: "order".into(),
            received_at: "2026-12-01T09:00:00Z".parse().unwrap(),
            fields,
            lines: vec![
                Line {
                    sku: "AURORA".into(),
                    name: "Aurora lamp".into(),
                    quantity: 1,
                    unit_cents: 11900,
                    total_cents: 11900,
                },
                Line { sku: "BULB-2PK".into(), name: "Bulbs".into(), quantity: 3, unit_cents: 1900, total_cents: 5700 },
            ],
            total_cents: Some(17600),
            currency: Some("EUR".into()),
            parent_ref: None,
            meta: Meta::default(),
        }
    }

    /// The record `n1-7` paid €176.00 and €20.00 of it refunded; `n1-8` left the payment page.
    fn payments() -> Ledger {
        use crate::payment::{Payment, Provider, PAYMENT_VERSION};
        let event = |id: &str, reference: &str, status: PaymentStatus, amount: u64, minute: u8, pi: &str| Payment {
            v: PAYMENT_VERSION,
            provider: Provider::Stripe,
            event_id: id.into(),
            event_type: "checkout.session.completed".into(),
            received_at: format!("2026-12-01T09:{minute:02}:30Z").parse().unwrap(),
            created_at: Some(format!("2026-12-01T09:{minute:02}:00Z").parse().unwrap()),
            reference: (!reference.is_empty()).then(|| reference.parse().unwrap()),
            status,
            amount_cents: Some(amount),
            currency: Some("EUR".into()),
            checkout_id: Some(format!("cs_{reference}")),
            payment_id: Some(pi.into()),
            email: Some("ada@example.org".into()),
            livemode: false,
        };
        Ledger::from_payments(vec![
            event("evt_paid", "n1-7", PaymentStatus::Paid, 17600, 1, "pi_7"),
            event("evt_refund", "", PaymentStatus::Refunded, 2000, 2, "pi_7"),
            event("evt_gone", "n1-8", PaymentStatus::Expired, 8900, 3, "pi_8"),
        ])
    }

    fn run(src: &str) -> Result<String, String> {
        run_on(&record(), src)
    }

    fn run_on(r: &Record, src: &str) -> Result<String, String> {
        let x = parse(src).unwrap();
        let lookups = Lookups::default();
        let payments = payments();
        let env = Env { lookups: &lookups, secret: b"test secret", payments: &payments };
        let truncated = std::cell::Cell::new(0);
        let reference = r.reference.to_string();
        let s = Scope {
            record: r,
            reference: &reference,
            entities: &[],
            line: Some(1),
            rows: &[],
            parent: None,
            reserved_id: Some(1234),
            column_len: Some(5),
            truncated: &truncated,
        };
        eval(&x, &env, &s).map(|v| match v {
            Value::Text(t) => format!("{t:?}"),
            Value::Null => "null".into(),
            other => other.to_string(),
        })
    }

    #[test]
    fn money_is_exact_in_the_currencys_unit() {
        assert_eq!(run("money(total_cents)").unwrap(), "176.00");
        assert_eq!(run("money(total_cents, scale = 6)").unwrap(), "176.000000");
        assert_eq!(run("round(money(total_cents) / 1.19, 2)").unwrap(), "147.90");
        assert_eq!(run("money(line.unit_cents) * line.quantity").unwrap(), "57.00");
        assert_eq!(run("sum(line.quantity)").unwrap(), "4");
        assert_eq!(run("sum(1)").unwrap(), "2");
        assert_eq!(run("money(sum(line.total_cents))").unwrap(), "176.00");
        let mut yen = record();
        yen.currency = Some("JPY".into());
        assert_eq!(run_on(&yen, "money(total_cents)").unwrap(), "17600");
        assert!(run("money(field.name)").unwrap_err().contains("is not a number"));
    }

    #[test]
    fn text_transforms() {
        assert_eq!(run("lower(trim(field.email))").unwrap(), "\"ada@example.org\"");
        assert_eq!(run("split_name(field.name).given").unwrap(), "\"Ada\"");
        assert_eq!(run("split_name(field.name).family").unwrap(), "\"Lovelace\"");
        assert_eq!(split_name("Ludwig van Beethoven"), ("Ludwig".into(), "van Beethoven".into()));
        assert_eq!(split_name("Johann Sebastian Bach"), ("Johann Sebastian".into(), "Bach".into()));
        assert_eq!(split_name("Cher"), ("Cher".into(), "".into()));
        assert_eq!(run("line_of(field.street, 2)").unwrap(), "\"Hinterhaus\"");
        assert_eq!(run("line_of(field.street, 3)").unwrap(), "null");
        assert_eq!(run("truncate(field.street)").unwrap(), "\"Haupt\"");
        assert_eq!(run("truncate('Straße', 5)").unwrap(), "\"Straß\"");
        assert_eq!(run("checked(field.newsletter)").unwrap(), "1");
        assert_eq!(run("checked(field.missing)").unwrap(), "0");
        assert_eq!(run("int(field.quantity) + 1").unwrap(), "3");
        assert!(run("int(field.name)").unwrap_err().contains("is not a number"));
        assert_eq!(run("coalesce(field.missing, '', 'x')").unwrap(), "\"x\"");
        assert_eq!(run("coalesce(field.missing, '')").unwrap(), "\"\"");
        assert_eq!(run("coalesce('', field.missing)").unwrap(), "null");
        assert_eq!(run("concat('wc_order_', line.sku)").unwrap(), "\"wc_order_BULB-2PK\"");
        assert_eq!(run("if(field.newsletter == 'true', 'yes', 'no')").unwrap(), "\"yes\"");
        assert_eq!(run("template('R{:09}', reserved_id)").unwrap(), "\"R000001234\"");
        assert_eq!(run("template('{:5}|{}', 42, -7)").unwrap(), "\"   42|-7\"");
        assert_eq!(run("local_time(received_at, 'Europe/Berlin')").unwrap(), "2026-12-01 10:00:00.000000");
        assert_eq!(run("epoch(received_at)").unwrap(), "1796115600");
        assert_eq!(run("base64(concat('ProductVariant:', 1))").unwrap(), "\"UHJvZHVjdFZhcmlhbnQ6MQ==\"");
        assert_eq!(run("length('Straße')").unwrap(), "6");
        assert_eq!(run("byte_length('Straße')").unwrap(), "7");
        // A PHP-serialized array, as WooCommerce keeps a line's taxes.
        assert_eq!(
            run("template('a:1:{{i:1;s:{}:\"{}\";}}', byte_length(text(19)), 19)").unwrap(),
            "\"a:1:{i:1;s:2:\\\"19\\\";}\""
        );
    }

    #[test]
    fn derived_values_are_stable_keyed_and_shaped() {
        let a = run("uuid5(ref)").unwrap();
        assert_eq!(a, run("uuid5(ref)").unwrap(), "the same record gives the same UUID");
        assert_ne!(a, run("uuid5(ref, 'line')").unwrap());
        let u = a.trim_matches('"');
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "5", "version 5: {u}");
        assert!("89ab".contains(&u[19..20]), "RFC 4122 variant: {u}");
        let letters = run("letters(9, ref)").unwrap();
        assert_eq!(letters.trim_matches('"').len(), 9);
        assert!(letters.trim_matches('"').chars().all(|c| c.is_ascii_uppercase()), "{letters}");
        let hex = run("hex(32, ref, 'secure_key')").unwrap();
        assert!(hex.trim_matches('"').len() == 32 && hex.trim_matches('"').chars().all(|c| c.is_ascii_hexdigit()));
        let token = run("token(100, ref)").unwrap();
        assert_eq!(token.trim_matches('"').len(), 100);
        let mut other = record();
        other.reference.seq = 8;
        assert_ne!(run_on(&other, "token(13, ref)").unwrap(), run("token(13, ref)").unwrap());
        // Another secret, another value: nobody can derive a guest token from the reference.
        let lookups = Lookups::default();
        let r = record();
        let x = parse("token(13, ref)").unwrap();
        let t = std::cell::Cell::new(0);
        let s = Scope {
            record: &r,
            reference: "n1-7",
            entities: &[],
            line: None,
            rows: &[],
            parent: None,
            reserved_id: None,
            column_len: None,
            truncated: &t,
        };
        let payments = Ledger::default();
        let other_key = eval(&x, &Env { lookups: &lookups, secret: b"another", payments: &payments }, &s).unwrap();
        assert_ne!(format!("{:?}", other_key.to_string()), run("token(13, ref)").unwrap());
    }

    #[test]
    fn payment_values_come_from_the_log_by_the_records_reference() {
        assert_eq!(run("payment.status").unwrap(), "\"paid\"");
        assert_eq!(run("money(payment.amount)").unwrap(), "156.00", "paid minus refunded, in the unit");
        assert_eq!(run("money(payment.refunded, scale = 3)").unwrap(), "20.000");
        assert_eq!(run("payment.amount < total_cents").unwrap(), "1");
        assert_eq!(run("payment.id").unwrap(), "\"pi_7\"");
        assert_eq!(run("payment.checkout").unwrap(), "\"cs_n1-7\"");
        assert_eq!(run("payment.event").unwrap(), "\"evt_refund\"");
        assert_eq!(run("payment.provider").unwrap(), "\"stripe\"");
        assert_eq!(run("payment.currency").unwrap(), "\"EUR\"");
        assert_eq!(run("epoch(payment.paid_at)").unwrap(), "1796115660");
        let mut expired = record();
        expired.reference.seq = 8;
        assert_eq!(run_on(&expired, "payment.status").unwrap(), "\"expired\"");
        assert_eq!(run_on(&expired, "payment.amount").unwrap(), "0");
        assert_eq!(run_on(&expired, "payment.paid_at").unwrap(), "null");
        let mut none = record();
        none.reference.seq = 9;
        assert_eq!(run_on(&none, "payment.status").unwrap(), "\"unpaid\"", "no event names it");
        assert_eq!(run_on(&none, "payment.amount").unwrap(), "0");
        assert_eq!(run_on(&none, "coalesce(payment.id, '')").unwrap(), "\"\"");
        assert_eq!(run_on(&none, "payment.provider").unwrap(), "null");
        assert_eq!(
            run_on(&none, "if(payment.status == 'paid', 'wc-processing', 'wc-pending')").unwrap(),
            "\"wc-pending\""
        );
    }

    #[test]
    fn nulls_propagate_and_errors_name_the_value() {
        assert_eq!(run("field.missing + 1").unwrap(), "null");
        assert_eq!(run("1 / 0").unwrap_err(), "1 / 0");
        assert!(run("field.name * 2").unwrap_err().contains("\"  Ada   Lovelace \" is not a number"));
        assert_eq!(run("-(2 * 3)").unwrap(), "-6");
        assert_eq!(run("7 / 2").unwrap(), "3.5");
    }
}
