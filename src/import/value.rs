//! Values of the mapping language, the target's columns, and how a value becomes the cell a
//! column receives: `178.00` at a `DECIMAL(26,8)` column is `178.00000000`; `true` at an
//! integer column is `1`; `"false"` at an integer column is a misfit, named before anything is
//! written. The dry run and the real run both go through [`fit`], so what the plan shows is
//! what the database gets.

use super::db::Dialect;
use crate::decimal::Decimal;
use std::borrow::Cow;
use std::fmt;

/// A value while an expression is evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Text(Cow<'a, str>),
    /// An instant (the receive time).
    Time(jiff::Timestamp),
    /// A wall-clock time without zone (`local_time(…)`).
    Local(jiff::civil::DateTime),
}

impl Value<'_> {
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(n) => Value::Int(n),
            Value::Dec(d) => Value::Dec(d),
            Value::Time(t) => Value::Time(t),
            Value::Local(t) => Value::Local(t),
        }
    }

    /// The value as a number, when it is one (a text that reads as one counts).
    pub fn number(&self) -> Option<Decimal> {
        match self {
            Value::Int(n) => Some(Decimal::from_int(*n)),
            Value::Dec(d) => Some(*d),
            Value::Text(t) => Decimal::parse(t),
            _ => None,
        }
    }

    /// The text form, borrowed when the value is text already.
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Value::Text(t) => Cow::Borrowed(t),
            other => Cow::Owned(other.to_string()),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Text(t) => t.is_empty(),
            _ => false,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a true/false",
            Value::Int(_) => "a whole number",
            Value::Dec(_) => "a decimal number",
            Value::Text(_) => "a text",
            Value::Time(_) | Value::Local(_) => "a time",
        }
    }
}

/// The text form of a value (templates, `concat`, text columns of SQLite and MySQL).
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            Value::Int(n) => write!(f, "{n}"),
            Value::Dec(d) => write!(f, "{d}"),
            Value::Text(t) => f.write_str(t),
            Value::Time(t) => write!(f, "{}", t.strftime("%Y-%m-%d %H:%M:%S%.6f")),
            Value::Local(t) => write!(f, "{}", t.strftime("%Y-%m-%d %H:%M:%S%.6f")),
        }
    }
}

/// What a column receives: the SQL NULL, an integer, or text the database converts by the
/// column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
}

impl Cell<'_> {
    pub fn into_owned(self) -> Cell<'static> {
        match self {
            Cell::Null => Cell::Null,
            Cell::Int(n) => Cell::Int(n),
            Cell::Text(t) => Cell::Text(Cow::Owned(t.into_owned())),
        }
    }
}

impl fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Int(n) => write!(f, "{n}"),
            Cell::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// One column of a target table, as its database describes it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// The type as the database names it, for messages and casts.
    pub sql_type: String,
    pub kind: Kind,
    pub nullable: bool,
    /// A default, a sequence, AUTO_INCREMENT or a rowid: an insert may leave it out.
    pub has_default: bool,
    /// Computed by the database: an insert must leave it out.
    pub generated: bool,
    /// The most characters a text column takes, where the database enforces it.
    pub max_chars: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Int {
        min: i128,
        max: i128,
    },
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    Float,
    Text,
    Bool,
    /// `zoned`: PostgreSQL's `timestamptz`; `digits`: fractional second digits kept.
    Timestamp {
        zoned: bool,
        digits: u32,
    },
    Date,
    Uuid,
    Json,
    /// MySQL `ENUM('a','b')`.
    Enum(Vec<String>),
    Other,
}

impl Kind {
    pub fn int(bits: u32, unsigned: bool) -> Kind {
        if unsigned {
            Kind::Int { min: 0, max: (1i128 << bits) - 1 }
        } else {
            Kind::Int { min: -(1i128 << (bits - 1)), max: (1i128 << (bits - 1)) - 1 }
        }
    }
}

/// `value` as the cell `column` receives, or why it does not fit.
pub fn fit<'a>(value: Value<'a>, column: &Column, dialect: Dialect) -> Result<Cell<'a>, String> {
    if value == Value::Null {
        return if column.nullable { Ok(Cell::Null) } else { Err("is NOT NULL, the value is null".into()) };
    }
    let shown = || match &value {
        Value::Text(t) => format!("{:?}", clip(t)),
        other => other.to_string(),
    };
    let misfit =
        |what: &str| Err(format!("is {} ({what}), the value {} is {}", column.sql_type, shown(), value.kind()));
    match &column.kind {
        Kind::Int { min, max } => {
            let n = match &value {
                Value::Int(n) => Some(*n),
                Value::Bool(b) => Some(*b as i64),
                Value::Dec(d) => d.to_i64(),
                Value::Text(t) => t.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if (*min..=*max).contains(&(n as i128)) => Ok(Cell::Int(n)),
                Some(n) => Err(format!("is {} ({min}..={max}), the value {n} is out of range", column.sql_type)),
                None => misfit("a whole number"),
            }
        }
        Kind::Decimal { precision, scale } => {
            let Some(d) = value.number() else { return misfit("a number") };
            let d = match scale {
                Some(s) => {
                    d.rescale(*s).ok_or_else(|| format!("is {}, the value {d} is too large", column.sql_type))?
                }
                None => d,
            };
            if let (Some(p), Some(s)) = (precision, scale) {
                if d.integer_digits() > p.saturating_sub(*s) {
                    return Err(format!(
                        "is {} (at most {} digits before the point), the value {d} does not fit",
                        column.sql_type,
                        p - s
                    ));
                }
            }
            Ok(Cell::Text(Cow::Owned(d.to_string())))
        }
        Kind::Float => match value.number() {
            Some(d) => Ok(Cell::Text(Cow::Owned(d.to_string()))),
            None => misfit("a number"),
        },
        Kind::Bool => {
            let b = match &value {
                Value::Bool(b) => Some(*b),
                Value::Int(0) => Some(false),
                Value::Int(1) => Some(true),
                Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "yes" | "on" | "1" => Some(true),
                    "f" | "false" | "no" | "off" | "0" => Some(false),
                    _ => None,
                },
                _ => None,
            };
            match b {
                Some(b) => Ok(Cell::Text(Cow::Borrowed(if b { "true" } else { "false" }))),
                None => misfit("true or false"),
            }
        }
        Kind::Timestamp { zoned, digits } => {
            let shown = match &value {
                Value::Time(t) if *zoned && dialect == Dialect::Postgres => {
                    return Ok(Cell::Text(Cow::Owned(t.to_string())))
                }
                Value::Time(t) => t.to_zoned(jiff::tz::TimeZone::UTC).datetime(),
                Value::Local(t) => *t,
                // MySQL's zero date, which shops write for "not yet" (PrestaShop's invoice_date).
                Value::Text(t) if dialect == Dialect::MySql && t.starts_with("0000-00-00") => {
                    return Ok(Cell::Text(Cow::Owned(t.to_string())));
                }
                Value::Text(t) => match parse_time(t) {
                    Some(t) => t,
                    None => return misfit("a date and time"),
                },
                _ => return misfit("a date and time"),
            };
            Ok(Cell::Text(Cow::Owned(civil_text(shown, *digits))))
        }
        Kind::Date => {
            let date = match &value {
                Value::Time(t) => t.to_zoned(jiff::tz::TimeZone::UTC).date(),
                Value::Local(t) => t.date(),
                Value::Text(t) => {
                    match t.trim().parse::<jiff::civil::Date>().ok().or_else(|| parse_time(t).map(|t| t.date())) {
                        Some(d) => d,
                        None => return misfit("a date"),
                    }
                }
                _ => return misfit("a date"),
            };
            Ok(Cell::Text(Cow::Owned(date.to_string())))
        }
        Kind::Uuid => match &value {
            Value::Text(t) if is_uuid(t) => Ok(Cell::Text(Cow::Owned(t.to_ascii_lowercase()))),
            _ => misfit("a UUID"),
        },
        Kind::Json => {
            let text = text_of(value, dialect);
            match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                Ok(_) => Ok(Cell::Text(text)),
                Err(_) => Err(format!("is {}, the value {:?} is not JSON", column.sql_type, clip(&text))),
            }
        }
        Kind::Enum(options) => {
            let text = text_of(value, dialect);
            match options.iter().find(|o| o.eq_ignore_ascii_case(&text)) {
                Some(_) => Ok(Cell::Text(text)),
                None => Err(format!(
                    "is {}, the value {:?} is not one of {}",
                    column.sql_type,
                    clip(&text),
                    options.join(", ")
                )),
            }
        }
        Kind::Text | Kind::Other => {
            let text = text_of(value, dialect);
            if let Some(max) = column.max_chars {
                let n = text.chars().count();
                if n > max {
                    return Err(format!(
                        "is {} (at most {max} characters), the value {:?} has {n} (truncate(…) cuts it)",
                        column.sql_type,
                        clip(&text)
                    ));
                }
            }
            Ok(Cell::Text(text))
        }
    }
}

/// A value in a text column.
fn text_of(value: Value<'_>, dialect: Dialect) -> Cow<'_, str> {
    match value {
        Value::Text(t) => t,
        Value::Time(t) if dialect == Dialect::Postgres => Cow::Owned(t.to_string()),
        other => Cow::Owned(other.to_string()),
    }
}

fn civil_text(t: jiff::civil::DateTime, digits: u32) -> String {
    let base = t.strftime("%Y-%m-%d %H:%M:%S").to_string();
    if digits == 0 {
        return base;
    }
    let frac = format!("{:09}", t.subsec_nanosecond());
    format!("{base}.{}", &frac[..digits.min(9) as usize])
}

fn parse_time(t: &str) -> Option<jiff::civil::DateTime> {
    let t = t.trim();
    t.parse::<jiff::Timestamp>()
        .ok()
        .map(|ts| ts.to_zoned(jiff::tz::TimeZone::UTC).datetime())
        .or_else(|| t.parse::<jiff::civil::DateTime>().ok())
}

fn is_uuid(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

/// A long value shortened for a message.
pub fn clip(s: &str) -> String {
    crate::text::clipped(s, 60, 57)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: Kind, sql_type: &str) -> Column {
        Column {
            name: "c".into(),
            sql_type: sql_type.into(),
            kind,
            nullable: false,
            has_default: false,
            generated: false,
            max_chars: None,
        }
    }

    fn text(s: &str) -> Value<'_> {
        Value::Text(Cow::Borrowed(s))
    }

    #[test]
    fn money_takes_the_columns_scale() {
        let c = col(Kind::Decimal { precision: Some(26), scale: Some(8) }, "decimal(26,8)");
        let v = Value::Dec(Decimal::new(17800, 2));
        assert_eq!(fit(v, &c, Dialect::MySql).unwrap(), Cell::Text("178.00000000".into()));
        let c = col(Kind::Decimal { precision: Some(5), scale: Some(2) }, "numeric(5,2)");
        let e = fit(Value::Int(1234), &c, Dialect::Postgres).unwrap_err();
        assert!(e.contains("at most 3 digits before the point"), "{e}");
    }

    #[test]
    fn integer_columns_take_whole_numbers_and_checkboxes_only() {
        let c = col(Kind::int(8, false), "tinyint(1)");
        assert_eq!(fit(Value::Bool(true), &c, Dialect::MySql).unwrap(), Cell::Int(1));
        assert_eq!(fit(text("42"), &c, Dialect::MySql).unwrap(), Cell::Int(42));
        let e = fit(text("false"), &c, Dialect::MySql).unwrap_err();
        assert_eq!(e, "is tinyint(1) (a whole number), the value \"false\" is a text");
        let e = fit(Value::Int(300), &c, Dialect::MySql).unwrap_err();
        assert!(e.contains("-128..=127"), "{e}");
        let e = fit(Value::Null, &c, Dialect::MySql).unwrap_err();
        assert_eq!(e, "is NOT NULL, the value is null");
    }

    #[test]
    fn text_columns_are_held_to_their_length() {
        let mut c = col(Kind::Text, "varchar(5)");
        c.max_chars = Some(5);
        assert_eq!(fit(text("Straß"), &c, Dialect::Postgres).unwrap(), Cell::Text("Straß".into()));
        let e = fit(text("Hauptstraße 1"), &c, Dialect::Postgres).unwrap_err();
        assert!(e.contains("at most 5 characters") && e.contains("has 13"), "{e}");
    }

    #[test]
    fn times_are_written_as_each_column_keeps_them() {
        let t: jiff::Timestamp = "2026-12-01T09:00:01.5Z".parse().unwrap();
        let zoned = col(Kind::Timestamp { zoned: true, digits: 6 }, "timestamp with time zone");
        assert_eq!(
            fit(Value::Time(t), &zoned, Dialect::Postgres).unwrap(),
            Cell::Text("2026-12-01T09:00:01.5Z".into())
        );
        let dt = col(Kind::Timestamp { zoned: false, digits: 0 }, "datetime");
        assert_eq!(fit(Value::Time(t), &dt, Dialect::MySql).unwrap(), Cell::Text("2026-12-01 09:00:01".into()));
        let b = col(Kind::Bool, "boolean");
        assert_eq!(fit(text("on"), &b, Dialect::Postgres).unwrap(), Cell::Text("true".into()));
        let u = col(Kind::Uuid, "uuid");
        assert!(fit(text("not-a-uuid"), &u, Dialect::Postgres).is_err());
        let e = col(Kind::Enum(vec!["billing".into(), "shipping".into()]), "enum('billing','shipping')");
        assert!(fit(text("home"), &e, Dialect::MySql).unwrap_err().contains("not one of billing, shipping"));
    }
}
