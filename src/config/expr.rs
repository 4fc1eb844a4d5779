//! The import mapping language: one column's value as a small expression, parsed once when the
//! config loads (`"money(total_cents)"`, `"lookup(variants.id, sku = line.sku)"`).
//!
//! ```text
//! expr    := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/") unary)*
//! unary   := "-" unary | primary
//! primary := number | 'text' | "text" | "(" expr ")" | call ("." name)? | path
//! call    := name "(" (arg ("," arg)*)? ")"      arg := expr | name "=" expr
//! path    := ref | form | received_at | total_cents | currency | parent_ref | reserved_id | null | true | false
//!          | field.NAME | line.(sku|name|quantity|unit_cents|total_cents|index) | meta.(ip|user_agent)
//!          | payment.(status|amount|refunded|currency|provider|id|checkout|event|paid_at|email) | let.NAME
//! ```
//!
//! `payment.VALUE` is what the payment log says of the record's own reference (the
//! `payments/` folder of each collected folder given to the import, joined by
//! `payment::Ledger`): a pure function of the logs, so a re-run or a resume writes the same.
//!
//! `let.NAME` stands for an expression named in `[import.let]` (a tax rate, a line's net
//! amount), written once and used in many columns; it is replaced by that expression when
//! parsed, so it is checked at each place it is used.
//!
//! The forms of the first importer (`field:NAME`, `int:NAME`, `id:TABLE`, `parent:TABLE`,
//! `line:sku`, `meta:ip`, `'text'`) are read as their equivalents here. [`parse`] checks what
//! the text alone can tell (names, arity, literal arguments); `config::import` then checks an
//! expression against its place (the form's fields, the entities before it, per-line context).

use crate::decimal::Decimal;
use std::collections::BTreeMap;

/// The expressions of `[import.let]` by name, for `let.NAME`.
pub type Lets = BTreeMap<String, Expr>;

#[derive(Debug, Clone)]
pub enum Expr {
    Null,
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Text(String),
    Record(RecordValue),
    Field(String),
    Meta(MetaValue),
    Line(LineValue),
    /// What the payment log says of this record (its own reference).
    Payment(PaymentValue),
    /// The ID this record's row got in a table written by an earlier entity of the same form
    /// (the same line's row when both entities are per line).
    Id(TableRef),
    /// The ID the linked (parent) record's row got in a table.
    Parent(TableRef),
    /// True when this record's row in a table (as for `id`) is new, false when an existing
    /// row was reused by its natural key (a returning customer).
    Created(TableRef),
    Lookup(Box<Lookup>),
    Neg(Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordValue {
    Ref,
    Form,
    ReceivedAt,
    TotalCents,
    Currency,
    ParentRef,
    /// The ID (or number) this row got from its table's reserved range.
    ReservedId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaValue {
    Ip,
    UserAgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineValue {
    Sku,
    Name,
    Quantity,
    UnitCents,
    TotalCents,
    /// 1-based position of the line in its record.
    Index,
}

/// `payment.VALUE`: the record's payment as the payment log has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentValue {
    /// `paid`, `unpaid`, `failed`, `expired` or `refunded`; `unpaid` when no event names the order.
    Status,
    /// Minor units (cents) the shop holds: paid minus refunded, 0 when nothing was paid.
    Amount,
    /// Minor units refunded.
    Refunded,
    /// ISO 4217 of the payment (`EUR`), null without one.
    Currency,
    /// `stripe`, null without a payment.
    Provider,
    /// The provider's payment ID (`pi_…`), else its checkout ID (`cs_…`).
    Id,
    /// The provider's checkout (session) ID (`cs_…`).
    Checkout,
    /// The provider's ID of the event that gave the order its status (`evt_…`).
    Event,
    /// When the provider confirmed the payment (UTC), null when unpaid.
    PaidAt,
    /// The e-mail the buyer gave the provider.
    Email,
}

/// A table named in `id(…)`/`parent(…)`, and the entity it was resolved to.
#[derive(Debug, Clone)]
pub struct TableRef {
    pub table: String,
    /// For `id`: the index of the entity (in its form's list) whose row is meant; set by
    /// `config::import` once the form's entities are known.
    pub entity: usize,
    /// For `id`: that entity writes a row per line (so the same line's row is meant).
    pub per_line: bool,
    /// The table's index in `Mapping::tables`.
    pub index: usize,
}

/// `lookup(TABLE.COLUMN, KEY = expr, …, default = expr)`: a column of an existing row.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub table: String,
    pub column: String,
    pub keys: Vec<(String, Expr)>,
    /// The value when no row matches; without it a miss makes the record bad.
    pub default: Option<Expr>,
    /// Index into `Mapping::lookups` (one per table, column and key columns), set by
    /// `config::import`.
    pub site: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Func {
    /// Integer minor units (cents) → the currency's unit, optionally shown at `scale` digits.
    Money {
        scale: Option<u32>,
    },
    Round(u32),
    If,
    /// The sum of the argument over the record's lines.
    Sum,
    Trim,
    Lower,
    Upper,
    SplitName(NamePart),
    /// Line N (1-based) of a multi-line value.
    LineOf(usize),
    /// To N characters, or to the column's length when N is not given.
    Truncate(Option<usize>),
    /// A checkbox's stored value → true/false.
    Checked,
    ToInt,
    ToText,
    Concat,
    Template(Vec<Piece>),
    /// The first argument that is neither null nor empty, else the last.
    Coalesce,
    /// Values derived from their arguments (usually `ref`) and the site's signing key, so a
    /// re-run writes the same bytes and nobody can guess them from the reference.
    Uuid5,
    Token(usize),
    Hex(usize),
    Letters(usize),
    LocalTime(jiff::tz::TimeZone),
    Epoch,
    Base64,
    /// Length in characters.
    Length,
    /// Length in UTF-8 bytes (PHP's `strlen`, as in serialized PHP values).
    ByteLength,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    Given,
    Family,
}

/// A piece of a `template("R{:09}", …)` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// The next argument, padded to `width` with zeros or spaces (right-aligned).
    Arg {
        width: usize,
        zero: bool,
    },
}

/// Names a user may write, for did-you-mean.
const FUNCTIONS: &[&str] = &[
    "id",
    "parent",
    "created",
    "lookup",
    "money",
    "round",
    "if",
    "sum",
    "trim",
    "lower",
    "upper",
    "split_name",
    "line_of",
    "truncate",
    "checked",
    "int",
    "text",
    "concat",
    "template",
    "coalesce",
    "uuid5",
    "token",
    "hex",
    "letters",
    "local_time",
    "epoch",
    "base64",
    "length",
    "byte_length",
];
const VALUES: &[&str] = &[
    "ref",
    "form",
    "received_at",
    "total_cents",
    "currency",
    "parent_ref",
    "reserved_id",
    "null",
    "true",
    "false",
    "field",
    "line",
    "meta",
    "payment",
    "let",
];
const LINE_VALUES: &str = "sku, name, quantity, unit_cents, total_cents, index";
const PAYMENT_VALUES: &str = "status, amount, refunded, currency, provider, id, checkout, event, paid_at, email";

/// Reads one expression. The error says where in the text and what would be valid.
pub fn parse(src: &str) -> Result<Expr, String> {
    parse_in(src, &Lets::new())
}

/// Reads one expression in which `let.NAME` stands for `lets[NAME]`.
pub fn parse_in(src: &str, lets: &Lets) -> Result<Expr, String> {
    let mut p = Parser { src, pos: 0, lets };
    let e = p.expr().map_err(|m| p.located(m))?;
    p.skip_ws();
    if p.pos < src.len() {
        return Err(p.located("unexpected text after the expression".into()));
    }
    Ok(e)
}

/// A TOML number or boolean used as a column value.
pub fn literal(v: &toml::Value) -> Option<Expr> {
    match v {
        toml::Value::Integer(n) => Some(Expr::Int(*n)),
        toml::Value::Boolean(b) => Some(Expr::Bool(*b)),
        toml::Value::Float(f) => Decimal::parse(&f.to_string()).map(Expr::Dec),
        _ => None,
    }
}

struct Parser<'s, 'l> {
    src: &'s str,
    pos: usize,
    lets: &'l Lets,
}

type Parsed<T> = Result<T, String>;

impl<'s> Parser<'s, '_> {
    fn located(&self, message: String) -> String {
        let rest = &self.src[self.pos.min(self.src.len())..];
        if rest.is_empty() {
            format!("{message} (at the end of {:?})", self.src)
        } else {
            let shown = crate::text::first_chars(rest, 20);
            format!("{message} (at {shown:?} in {:?})", self.src)
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    /// Consumes `s` (after whitespace) when it comes next.
    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str, what: &str) -> Parsed<()> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    /// A name: letters, digits and `_` (and `-` where `dash` allows, for field names).
    fn name(&mut self, dash: bool) -> Option<&'s str> {
        self.skip_ws();
        let start = self.pos;
        let ok = |c: char, first: bool| {
            c.is_ascii_alphabetic() || c == '_' || !first && (c.is_ascii_digit() || dash && c == '-')
        };
        while let Some(c) = self.peek() {
            if !ok(c, self.pos == start) {
                break;
            }
            self.pos += c.len_utf8();
        }
        (self.pos > start).then(|| &self.src[start..self.pos])
    }

    fn expr(&mut self) -> Parsed<Expr> {
        let left = self.sum()?;
        for (tok, op) in [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ] {
            if self.eat(tok) {
                let right = self.sum()?;
                return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
            }
        }
        Ok(left)
    }

    fn sum(&mut self) -> Parsed<Expr> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat("+") {
                ArithOp::Add
            } else if self.eat("-") {
                ArithOp::Sub
            } else {
                return Ok(left);
            };
            left = Expr::Arith(op, Box::new(left), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Parsed<Expr> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat("*") {
                ArithOp::Mul
            } else if self.eat("/") {
                ArithOp::Div
            } else {
                return Ok(left);
            };
            left = Expr::Arith(op, Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Parsed<Expr> {
        if self.eat("-") {
            return Ok(match self.unary()? {
                Expr::Int(n) => Expr::Int(-n),
                Expr::Dec(d) => Expr::Dec(-d),
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Parsed<Expr> {
        self.skip_ws();
        match self.peek() {
            None => Err("expected a value".into()),
            Some(c) if c.is_ascii_digit() || c == '.' => self.number(),
            Some(q @ ('\'' | '"')) => Ok(Expr::Text(self.string(q)?)),
            Some('(') => {
                self.pos += 1;
                let e = self.expr()?;
                self.expect(")", "`)`")?;
                Ok(e)
            }
            Some(_) => {
                let start = self.pos;
                let Some(name) = self.name(false) else {
                    return Err(
                        "expected a value: a number, 'text', a name like field.email, or a function like money(…)"
                            .into(),
                    );
                };
                if self.src[self.pos..].starts_with(':') {
                    self.pos += 1;
                    return self.legacy(name).inspect_err(|_| self.pos = start);
                }
                if self.eat("(") {
                    return self.call(name, start);
                }
                self.path(name, start)
            }
        }
    }

    fn number(&mut self) -> Parsed<Expr> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '_') {
            self.pos += 1;
        }
        let text: String = self.src[start..self.pos].chars().filter(|c| *c != '_').collect();
        if text.contains('.') {
            Decimal::parse(&text).map(Expr::Dec).ok_or_else(|| format!("{text:?} is not a number"))
        } else {
            text.parse().map(Expr::Int).map_err(|_| format!("{text:?} is not a number (too large?)"))
        }
    }

    /// A quoted text; the quote is escaped by doubling it (`'it''s'`).
    fn string(&mut self, q: char) -> Parsed<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("the text has no closing {q}")),
                Some(c) if c == q => {
                    self.pos += 1;
                    if self.peek() == Some(q) {
                        self.pos += 1;
                        out.push(q);
                    } else {
                        return Ok(out);
                    }
                }
                Some(c) => {
                    self.pos += c.len_utf8();
                    out.push(c);
                }
            }
        }
    }

    /// `field:NAME`, `int:NAME`, `id:TABLE`, `parent:TABLE`, `line:VALUE`, `meta:VALUE`.
    fn legacy(&mut self, kind: &str) -> Parsed<Expr> {
        let arg = self.name(true).ok_or("expected a name after `:`")?;
        Ok(match kind {
            "field" => Expr::Field(arg.into()),
            "int" => Expr::Call(Func::ToInt, vec![Expr::Field(arg.into())]),
            "id" => Expr::Id(TableRef { table: arg.into(), entity: usize::MAX, per_line: false, index: usize::MAX }),
            "parent" => {
                Expr::Parent(TableRef { table: arg.into(), entity: usize::MAX, per_line: false, index: usize::MAX })
            }
            "line" => Expr::Line(line_value(arg)?),
            "meta" => Expr::Meta(meta_value(arg)?),
            other => return Err(format!("unknown value {other}:{arg} (did you mean {other}.{arg}?)")),
        })
    }

    fn path(&mut self, name: &str, start: usize) -> Parsed<Expr> {
        let member = |p: &mut Self, what: &str| -> Parsed<&'s str> {
            if !p.eat(".") {
                return Err(format!("`{name}` needs a name after it: {name}.{what}"));
            }
            p.name(true).ok_or_else(|| format!("expected a name after `{name}.`"))
        };
        let e = match name {
            "ref" => Expr::Record(RecordValue::Ref),
            "form" => Expr::Record(RecordValue::Form),
            "received_at" => Expr::Record(RecordValue::ReceivedAt),
            "total_cents" => Expr::Record(RecordValue::TotalCents),
            "currency" => Expr::Record(RecordValue::Currency),
            "parent_ref" => Expr::Record(RecordValue::ParentRef),
            "reserved_id" => Expr::Record(RecordValue::ReservedId),
            "null" => Expr::Null,
            "true" => Expr::Bool(true),
            "false" => Expr::Bool(false),
            "field" => Expr::Field(member(self, "NAME")?.into()),
            "line" => Expr::Line(line_value(member(self, "sku")?)?),
            "meta" => Expr::Meta(meta_value(member(self, "ip")?)?),
            "payment" => Expr::Payment(payment_value(member(self, "status")?)?),
            "let" => {
                let n = member(self, "NAME")?;
                match self.lets.get(n) {
                    Some(x) => x.clone(),
                    None => {
                        let known: Vec<&str> = self.lets.keys().map(String::as_str).collect();
                        return Err(format!(
                            "let.{n} is not defined above{}; [import.let] names an expression once for many columns (defined: {})",
                            did_you_mean(n, known.iter()),
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ));
                    }
                }
            }
            other => {
                self.pos = start;
                let hint = if FUNCTIONS.contains(&other) {
                    format!(" ({other} is a function: {other}(…))")
                } else {
                    did_you_mean(other, VALUES.iter().chain(FUNCTIONS))
                };
                return Err(format!(
                    "unknown name `{other}`{hint}; values are ref, form, received_at, total_cents, currency, \
                     parent_ref, reserved_id, field.NAME, line.VALUE, meta.ip, meta.user_agent, payment.VALUE, let.NAME, null, true, false, 'text', numbers"
                ));
            }
        };
        Ok(e)
    }

    /// Positional and `name = value` arguments up to the closing `)`.
    fn args(&mut self) -> Parsed<Vec<(Option<&'s str>, Expr)>> {
        let mut out = Vec::new();
        if self.eat(")") {
            return Ok(out);
        }
        loop {
            let save = self.pos;
            let named = match self.name(false) {
                Some(n) => {
                    self.skip_ws();
                    let rest = &self.src[self.pos..];
                    if rest.starts_with('=') && !rest.starts_with("==") {
                        self.pos += 1;
                        Some(n)
                    } else {
                        self.pos = save;
                        None
                    }
                }
                None => None,
            };
            out.push((named, self.expr()?));
            if self.eat(")") {
                return Ok(out);
            }
            self.expect(",", "`,` or `)`")?;
        }
    }

    /// The table name in `id(TABLE)` / `parent(TABLE)`: a bare name, as in SQL.
    fn table_arg(&mut self, f: &str) -> Parsed<String> {
        let t = self.name(false).ok_or_else(|| format!("{f}(TABLE) takes a table name, e.g. {f}(orders)"))?;
        let mut table = t.to_string();
        // A schema-qualified name: `shop.orders`.
        while self.eat(".") {
            table.push('.');
            table.push_str(self.name(false).ok_or("expected a name after `.`")?);
        }
        self.expect(")", &format!("`)`: {f}(TABLE) takes one table name"))?;
        Ok(table)
    }

    fn call(&mut self, name: &str, start: usize) -> Parsed<Expr> {
        match name {
            "id" | "parent" | "created" => {
                let r =
                    TableRef { table: self.table_arg(name)?, entity: usize::MAX, per_line: false, index: usize::MAX };
                return Ok(match name {
                    "id" => Expr::Id(r),
                    "parent" => Expr::Parent(r),
                    _ => Expr::Created(r),
                });
            }
            "lookup" => return self.lookup(),
            _ => {}
        }
        let args = self.args()?;
        let at_call = |p: &mut Self, m: String| {
            p.pos = start;
            m
        };
        let call = build_call(name, args).map_err(|m| at_call(self, m))?;
        if let Expr::Call(Func::SplitName(_), args) = call {
            // split_name(x) is a pair: say which half.
            let part = if self.eat(".") {
                match self.name(false) {
                    Some("given") => NamePart::Given,
                    Some("family") => NamePart::Family,
                    _ => return Err("split_name(…) is followed by .given or .family".into()),
                }
            } else {
                return Err(at_call(self, "split_name(…) is followed by .given or .family".into()));
            };
            return Ok(Expr::Call(Func::SplitName(part), args));
        }
        Ok(call)
    }

    fn lookup(&mut self) -> Parsed<Expr> {
        const USAGE: &str = "lookup(TABLE.COLUMN, KEY_COLUMN = value, …, default = value)";
        let table = self.name(false).ok_or_else(|| format!("expected TABLE.COLUMN: {USAGE}"))?;
        self.expect(".", &format!("`.COLUMN` after the table: {USAGE}"))?;
        let column = self.name(false).ok_or_else(|| format!("expected the column after `{table}.`: {USAGE}"))?;
        let mut keys = Vec::new();
        let mut default = None;
        if !self.eat(")") {
            self.expect(",", &format!("`,` and the key: {USAGE}"))?;
            for (named, e) in self.args()? {
                match named {
                    Some("default") => default = Some(e),
                    Some(k) => keys.push((k.to_string(), e)),
                    None => return Err(format!("the keys of a lookup are named: {USAGE}")),
                }
            }
        }
        if keys.is_empty() {
            return Err(format!("a lookup needs at least one key: {USAGE}"));
        }
        Ok(Expr::Lookup(Box::new(Lookup {
            table: table.into(),
            column: column.into(),
            keys,
            default,
            site: usize::MAX,
        })))
    }
}

fn line_value(s: &str) -> Parsed<LineValue> {
    Ok(match s {
        "sku" => LineValue::Sku,
        "name" => LineValue::Name,
        "quantity" => LineValue::Quantity,
        "unit_cents" => LineValue::UnitCents,
        "total_cents" => LineValue::TotalCents,
        "index" => LineValue::Index,
        other => return Err(format!("unknown line value {other:?} (line values: {LINE_VALUES})")),
    })
}

fn payment_value(s: &str) -> Parsed<PaymentValue> {
    Ok(match s {
        "status" => PaymentValue::Status,
        "amount" => PaymentValue::Amount,
        "refunded" => PaymentValue::Refunded,
        "currency" => PaymentValue::Currency,
        "provider" => PaymentValue::Provider,
        "id" => PaymentValue::Id,
        "checkout" => PaymentValue::Checkout,
        "event" => PaymentValue::Event,
        "paid_at" => PaymentValue::PaidAt,
        "email" => PaymentValue::Email,
        other => return Err(format!("unknown payment value {other:?} (payment values: {PAYMENT_VALUES})")),
    })
}

fn meta_value(s: &str) -> Parsed<MetaValue> {
    match s {
        "ip" => Ok(MetaValue::Ip),
        "user_agent" => Ok(MetaValue::UserAgent),
        other => Err(format!("unknown meta value {other:?} (meta.ip, meta.user_agent)")),
    }
}

fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a &'a str>) -> String {
    known
        .map(|k| (crate::suggest::edit_distance(name, k), *k))
        // Close enough to be a slip, not just another short word.
        .filter(|(d, _)| *d <= 2 && d * 2 <= name.chars().count().max(2))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

/// A whole number given as a literal argument (a length, a scale).
fn count_arg(e: &Expr, what: &str) -> Parsed<usize> {
    match e {
        Expr::Int(n) if *n >= 0 => Ok(*n as usize),
        _ => Err(format!("{what} must be a whole number written out, like 9")),
    }
}

fn build_call(name: &str, args: Vec<(Option<&str>, Expr)>) -> Parsed<Expr> {
    let usage = |u: &str| format!("{name} takes {u}");
    let mut positional = Vec::new();
    let mut named = Vec::new();
    for (n, e) in args {
        match n {
            Some(n) => named.push((n, e)),
            None => positional.push(e),
        }
    }
    let allow_named = |allowed: &[&str]| -> Parsed<()> {
        for (n, _) in &named {
            if !allowed.contains(n) {
                let valid = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
                return Err(format!("{name}() has no argument named {n:?} (named arguments: {valid})"));
            }
        }
        Ok(())
    };
    let arity = |n: usize, u: &str| -> Parsed<()> {
        if positional.len() == n {
            Ok(())
        } else {
            Err(usage(u))
        }
    };
    let func = match name {
        "money" => {
            allow_named(&["scale"])?;
            arity(1, "one amount in cents: money(total_cents), money(line.unit_cents, scale = 6)")?;
            let scale = named.iter().find(|(n, _)| *n == "scale").map(|(_, e)| count_arg(e, "scale")).transpose()?;
            if scale.is_some_and(|s| s > crate::decimal::MAX_SCALE as usize) {
                return Err(format!("scale is at most {}", crate::decimal::MAX_SCALE));
            }
            Func::Money { scale: scale.map(|s| s as u32) }
        }
        "round" => {
            allow_named(&[])?;
            arity(2, "a number and the digits to keep: round(money(total_cents) / 1.19, 2)")?;
            let digits = count_arg(&positional.pop().expect("two"), "round's digits")?;
            if digits > crate::decimal::MAX_SCALE as usize {
                return Err(format!("round keeps at most {} digits", crate::decimal::MAX_SCALE));
            }
            Func::Round(digits as u32)
        }
        "if" => {
            allow_named(&[])?;
            arity(3, "a condition and two values: if(checked(field.newsletter), 'yes', 'no')")?;
            Func::If
        }
        "sum" => {
            allow_named(&[])?;
            arity(1, "one value per line: sum(line.quantity), sum(1) counts the lines")?;
            Func::Sum
        }
        "trim" | "lower" | "upper" | "checked" | "int" | "text" | "epoch" | "base64" | "length" | "byte_length" => {
            allow_named(&[])?;
            arity(1, "one value")?;
            match name {
                "trim" => Func::Trim,
                "lower" => Func::Lower,
                "upper" => Func::Upper,
                "checked" => Func::Checked,
                "int" => Func::ToInt,
                "text" => Func::ToText,
                "base64" => Func::Base64,
                "length" => Func::Length,
                "byte_length" => Func::ByteLength,
                _ => Func::Epoch,
            }
        }
        "split_name" => {
            allow_named(&[])?;
            arity(1, "one name: split_name(field.name).given, split_name(field.name).family")?;
            Func::SplitName(NamePart::Given)
        }
        "line_of" => {
            allow_named(&[])?;
            arity(2, "a text and a line number from 1: line_of(field.address, 2)")?;
            let n = count_arg(&positional.pop().expect("two"), "the line number")?;
            if n == 0 {
                return Err("line_of counts lines from 1".into());
            }
            Func::LineOf(n)
        }
        "truncate" => {
            allow_named(&[])?;
            match positional.len() {
                1 => Func::Truncate(None),
                2 => Func::Truncate(Some(count_arg(&positional.pop().expect("two"), "the length")?)),
                _ => return Err(usage("a text and optionally a length: truncate(field.street) cuts to the column's length, truncate(x, 40)")),
            }
        }
        "concat" | "coalesce" | "uuid5" => {
            allow_named(&[])?;
            if positional.is_empty() {
                return Err(usage("at least one value"));
            }
            match name {
                "concat" => Func::Concat,
                "coalesce" => Func::Coalesce,
                _ => Func::Uuid5,
            }
        }
        "token" | "hex" | "letters" => {
            allow_named(&[])?;
            if positional.len() < 2 {
                return Err(usage(&format!("a length and the values it derives from: {name}(32, ref)")));
            }
            let n = count_arg(&positional.remove(0), "the length")?;
            if n == 0 || n > 256 {
                return Err(format!("{name}'s length must be 1..=256"));
            }
            match name {
                "token" => Func::Token(n),
                "hex" => Func::Hex(n),
                _ => Func::Letters(n),
            }
        }
        "template" => {
            allow_named(&[])?;
            let Some(Expr::Text(format)) = positional.first().cloned() else {
                return Err(usage("a format text and its values: template('R{:09}', id(orders))"));
            };
            positional.remove(0);
            let pieces = template(&format)?;
            let wanted = pieces.iter().filter(|p| matches!(p, Piece::Arg { .. })).count();
            if wanted != positional.len() {
                return Err(format!("template {format:?} has {wanted} {{}} but {} values follow", positional.len()));
            }
            Func::Template(pieces)
        }
        "local_time" => {
            allow_named(&[])?;
            let zone = match positional.pop() {
                Some(Expr::Text(z)) if positional.len() == 1 => z,
                _ => return Err(usage("a time and a zone name: local_time(received_at, 'Europe/Berlin')")),
            };
            let tz = jiff::tz::TimeZone::get(&zone)
                .map_err(|_| format!("unknown time zone {zone:?} (e.g. 'Europe/Berlin', 'UTC')"))?;
            Func::LocalTime(tz)
        }
        "id" | "parent" | "created" | "lookup" => unreachable!("parsed before"),
        other => {
            return Err(format!(
                "unknown function {other}(){}; functions: {}",
                did_you_mean(other, FUNCTIONS.iter()),
                FUNCTIONS.join(", ")
            ))
        }
    };
    Ok(Expr::Call(func, positional))
}

/// `R{:09}` → "R", a 9-wide zero-padded value. `{{`/`}}` are literal braces.
fn template(format: &str) -> Parsed<Vec<Piece>> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let spec: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let bad = || format!("template {format:?}: {{{spec}}} is not {{}}, {{:N}} or {{:0N}}");
                let (width, zero) = match spec.strip_prefix(':') {
                    None if spec.is_empty() => (0, false),
                    Some(w) => (w.parse::<usize>().map_err(|_| bad())?, w.starts_with('0')),
                    None => return Err(bad()),
                };
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Arg { width, zero });
            }
            '}' => return Err(format!("template {format:?}: a lone `}}` (write `}}}}` for a brace)")),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

impl Expr {
    /// Every direct sub-expression, for walks over the tree.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Lookup(l) => l.keys.iter().map(|(_, e)| e).chain(l.default.as_ref()).collect(),
            Expr::Neg(e) => vec![e],
            Expr::Arith(_, a, b) | Expr::Cmp(_, a, b) => vec![a, b],
            Expr::Call(_, args) => args.iter().collect(),
            _ => Vec::new(),
        }
    }

    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Lookup(l) => l.keys.iter_mut().map(|(_, e)| e).chain(l.default.as_mut()).collect(),
            Expr::Neg(e) => vec![e],
            Expr::Arith(_, a, b) | Expr::Cmp(_, a, b) => vec![a, b],
            Expr::Call(_, args) => args.iter_mut().collect(),
            _ => Vec::new(),
        }
    }

    /// True when `pred` holds for this expression or any inside it.
    pub fn any(&self, pred: &dyn Fn(&Expr) -> bool) -> bool {
        pred(self) || self.children().into_iter().any(|c| c.any(pred))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Expr {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match parse(s) {
            Ok(e) => panic!("{s} parsed as {e:?}"),
            Err(m) => m,
        }
    }

    #[test]
    fn reads_values_paths_and_the_first_importers_forms() {
        assert!(matches!(ok("ref"), Expr::Record(RecordValue::Ref)));
        assert!(matches!(ok("field.email"), Expr::Field(f) if f == "email"));
        assert!(matches!(ok("field:first-name"), Expr::Field(f) if f == "first-name"));
        assert!(
            matches!(ok("int:quantity"), Expr::Call(Func::ToInt, a) if matches!(&a[0], Expr::Field(f) if f == "quantity"))
        );
        assert!(matches!(ok("line:unit_cents"), Expr::Line(LineValue::UnitCents)));
        assert!(matches!(ok("line.index"), Expr::Line(LineValue::Index)));
        assert!(matches!(ok("meta:ip"), Expr::Meta(MetaValue::Ip)));
        assert!(matches!(ok("id:users"), Expr::Id(t) if t.table == "users"));
        assert!(matches!(ok("parent(orders)"), Expr::Parent(t) if t.table == "orders"));
        assert!(matches!(ok("'it''s'"), Expr::Text(t) if t == "it's"));
        assert!(matches!(ok("\"new\""), Expr::Text(t) if t == "new"));
        assert!(matches!(ok("-3"), Expr::Int(-3)));
        assert!(matches!(ok("1.19"), Expr::Dec(d) if d.to_string() == "1.19"));
        assert!(matches!(ok("null"), Expr::Null));
        assert!(matches!(ok("payment.status"), Expr::Payment(PaymentValue::Status)));
        assert!(
            matches!(ok("money(payment.amount)"), Expr::Call(Func::Money { .. }, a) if matches!(a[0], Expr::Payment(PaymentValue::Amount)))
        );
    }

    #[test]
    fn reads_calls_operators_and_precedence() {
        let e = ok("round(money(total_cents) / 1.19, 2)");
        let Expr::Call(Func::Round(2), args) = e else { panic!() };
        assert!(
            matches!(&args[0], Expr::Arith(ArithOp::Div, a, _) if matches!(**a, Expr::Call(Func::Money { scale: None }, _)))
        );
        let Expr::Arith(ArithOp::Add, _, right) = ok("1 + 2 * 3") else { panic!() };
        assert!(matches!(*right, Expr::Arith(ArithOp::Mul, _, _)));
        assert!(matches!(ok("money(line.unit_cents, scale = 6)"), Expr::Call(Func::Money { scale: Some(6) }, _)));
        assert!(matches!(ok("split_name(field.name).family"), Expr::Call(Func::SplitName(NamePart::Family), _)));
        assert!(
            matches!(ok("if(field.country == 'DE', 1, 0)"), Expr::Call(Func::If, a) if matches!(a[0], Expr::Cmp(CmpOp::Eq, _, _)))
        );
        let Expr::Call(Func::Template(p), a) = ok("template('R{:09}-{}', id(orders), ref)") else { panic!() };
        assert_eq!(
            p,
            [
                Piece::Text("R".into()),
                Piece::Arg { width: 9, zero: true },
                Piece::Text("-".into()),
                Piece::Arg { width: 0, zero: false }
            ]
        );
        assert_eq!(a.len(), 2);
        assert!(matches!(ok("letters(9, ref)"), Expr::Call(Func::Letters(9), a) if a.len() == 1));
        let Expr::Lookup(l) = ok("lookup(wp_wc_product_meta_lookup.product_id, sku = line.sku, default = 0)") else {
            panic!()
        };
        assert_eq!(
            (l.table.as_str(), l.column.as_str(), l.keys[0].0.as_str()),
            ("wp_wc_product_meta_lookup", "product_id", "sku")
        );
        assert!(matches!(l.default, Some(Expr::Int(0))));
        assert!(matches!(ok("local_time(received_at, 'Europe/Berlin')"), Expr::Call(Func::LocalTime(_), _)));
    }

    #[test]
    fn let_names_stand_for_their_expressions() {
        let mut lets = Lets::new();
        lets.insert("net".into(), ok("round(money(line.total_cents) / 1.19, 2)"));
        let e = parse_in("money(line.total_cents) - let.net", &lets).unwrap();
        assert!(matches!(e, Expr::Arith(ArithOp::Sub, _, b) if matches!(*b, Expr::Call(Func::Round(2), _))));
        let e = parse_in("let.nett * 2", &lets).unwrap_err();
        assert!(
            e.contains("let.nett is not defined above (did you mean `net`?)") && e.contains("(defined: net)"),
            "{e}"
        );
        assert!(err("let.net").contains("(defined: none)"));
    }

    #[test]
    fn errors_say_where_and_what_would_be_valid() {
        let e = err("money(total_cents, scale = 'two')");
        assert!(e.contains("scale must be a whole number") && e.contains("money(total_cents, scale = 'two')"), "{e}");
        let e = err("money(total_cents, scale = x)");
        assert!(e.starts_with("unknown name `x`; values are ref,") && e.contains("(at \"x)\""), "{e}");
        let e = err("mony(total_cents)");
        assert!(
            e.contains("unknown function mony() (did you mean `money`?)")
                && e.contains("functions: id, parent, created, lookup"),
            "{e}"
        );
        let e = err("feild.email");
        assert!(e.contains("unknown name `feild` (did you mean `field`?)"), "{e}");
        let e = err("payment.state");
        assert!(e.contains("unknown payment value \"state\"") && e.contains("status, amount"), "{e}");
        let e = err("line.price");
        assert!(e.contains("unknown line value \"price\"") && e.contains("unit_cents"), "{e}");
        let e = err("lookup(products.id)");
        assert!(e.contains("at least one key") && e.contains("KEY_COLUMN = value"), "{e}");
        let e = err("lookup(products.id, line.sku)");
        assert!(e.contains("keys of a lookup are named"), "{e}");
        let e = err("template('R{:x}', ref)");
        assert!(e.contains("{:x} is not {}"), "{e}");
        let e = err("template('R{:09}')");
        assert!(e.contains("has 1 {} but 0 values follow"), "{e}");
        let e = err("split_name(field.name)");
        assert!(e.contains(".given or .family"), "{e}");
        let e = err("money(total_cents");
        assert!(e.contains("expected `,` or `)`") && e.contains("at the end"), "{e}");
        let e = err("'open");
        assert!(e.contains("no closing '"), "{e}");
        let e = err("field.email extra");
        assert!(e.contains("unexpected text after the expression (at \"extra\""), "{e}");
        let e = err("local_time(received_at, 'Mars/Base')");
        assert!(e.contains("unknown time zone \"Mars/Base\""), "{e}");
        let e = err("money(total_cents, digits = 2)");
        assert!(e.contains("no argument named \"digits\" (named arguments: scale)"), "{e}");
        let e = err("round");
        assert!(e.contains("round is a function"), "{e}");
    }
}
