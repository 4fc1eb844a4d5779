//! The target database through sqlx's `Any` driver (and PostgreSQL's own, for `COPY`), and the
//! few places where SQLite, PostgreSQL and MySQL/MariaDB differ: placeholders, quoting, casts,
//! how a table describes its columns, and where its ID counter lives.
//!
//! This file reads; `write.rs` writes.

use super::plan::Key;
use super::value::{Column, Kind};
use super::ImportError;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Row as _;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

pub struct Target {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// PostgreSQL's own driver as well, for `COPY`, which `Any` cannot speak.
    pub pg: Option<sqlx::PgPool>,
}

pub const LEDGER: &str = "cofferdam_ledger";
pub const RANGES: &str = "cofferdam_ranges";

/// The range an earlier run reserved for a table (`cofferdam_ranges`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRange {
    pub start: i64,
    /// The next ID of the range not handed out yet, and the reservation's end (exclusive).
    /// Unknown when written by an importer before these were kept.
    pub next: Option<i64>,
    pub end: Option<i64>,
}

impl StoredRange {
    /// (next, end) when the range still has room.
    pub fn open(&self) -> Option<(i64, i64)> {
        match (self.next, self.end) {
            (Some(n), Some(e)) if n < e => Some((n, e)),
            _ => None,
        }
    }
}

impl Target {
    pub async fn connect(url: &str) -> Result<Target, ImportError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            Dialect::MySql
        } else {
            return Err(ImportError::Target(format!("{url}: not a database URL (sqlite://, postgres://, mysql://)")));
        };
        // The shop's database must exist: importing into a new, empty file would only fail
        // later, table by table.
        if let Some(file) = url.strip_prefix("sqlite://").map(|rest| rest.split('?').next().unwrap_or(rest)) {
            if !file.starts_with(':') && !url.contains("mode=rwc") && !std::path::Path::new(file).exists() {
                return Err(ImportError::Target(format!(
                    "{url}: no such database file (the shop's database must exist; for the example shop: \
                     sqlite3 {file} < examples/shop.sqlite.sql)"
                )));
            }
        }
        let cannot = |e: sqlx::Error| ImportError::Target(format!("cannot connect to {}: {e}", redact(url)));
        let mut options = AnyPoolOptions::new().max_connections(2).acquire_timeout(std::time::Duration::from_secs(10));
        if dialect == Dialect::MySql {
            // TIMESTAMP columns convert from the session's zone: receive times are UTC.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "SET time_zone = '+00:00'").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(cannot)?;
        let pg = match dialect {
            Dialect::Postgres => {
                Some(sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.map_err(cannot)?)
            }
            _ => None,
        };
        Ok(Target { pool, dialect, pg })
    }

    /// A quoted identifier; `schema.table` is quoted part by part.
    pub fn quote(&self, ident: &str) -> String {
        ident
            .split('.')
            .map(|part| match self.dialect {
                Dialect::MySql => format!("`{}`", part.replace('`', "``")),
                _ => format!("\"{}\"", part.replace('"', "\"\"")),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    pub fn placeholder(&self, n: usize) -> String {
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    pub fn bigint(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
            _ => format!("CAST({expr} AS BIGINT)"),
        }
    }

    pub fn text(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
            _ => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// The columns of `table` in their order; empty when there is no such table.
    pub async fn columns(&self, table: &str) -> Result<Vec<Column>, ImportError> {
        let (schema, name) = match table.rsplit_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, table),
        };
        let sql = match self.dialect {
            Dialect::Sqlite => "SELECT name, type, CAST(\"notnull\" AS TEXT), dflt_value, CAST(pk AS TEXT), \
                                NULL, NULL, NULL, NULL, NULL FROM pragma_table_info(?) ORDER BY cid"
                .to_string(),
            Dialect::Postgres => format!(
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT), CAST(is_nullable AS TEXT), \
                 CAST(column_default AS TEXT), CAST(udt_name AS TEXT), CAST(character_maximum_length AS TEXT), \
                 CAST(numeric_precision AS TEXT), CAST(numeric_scale AS TEXT), \
                 CAST(is_identity AS TEXT) || ',' || COALESCE(CAST(identity_generation AS TEXT), '') || ',' || CAST(is_generated AS TEXT), \
                 CAST(datetime_precision AS TEXT) \
                 FROM information_schema.columns WHERE table_name = $1 AND table_schema = {} ORDER BY ordinal_position",
                if schema.is_some() { "$2" } else { "current_schema()" }
            ),
            Dialect::MySql => format!(
                "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR), \
                 CAST(COLUMN_DEFAULT AS CHAR), CAST(COLUMN_TYPE AS CHAR), CAST(CHARACTER_MAXIMUM_LENGTH AS CHAR), \
                 CAST(NUMERIC_PRECISION AS CHAR), CAST(NUMERIC_SCALE AS CHAR), CAST(EXTRA AS CHAR), \
                 CAST(DATETIME_PRECISION AS CHAR) \
                 FROM information_schema.COLUMNS WHERE TABLE_NAME = ? AND TABLE_SCHEMA = {} ORDER BY ORDINAL_POSITION",
                if schema.is_some() { "?" } else { "DATABASE()" }
            ),
        };
        let mut q = sqlx::query(&sql).bind(if self.dialect == Dialect::Sqlite { table } else { name });
        if let (Some(s), false) = (schema, self.dialect == Dialect::Sqlite) {
            q = q.bind(s);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(|e| self.refused(table, e))?;
        let mut out = Vec::new();
        for row in rows {
            let cell = |i: usize| opt_text_at(&row, i).map_err(|e| self.refused(table, e));
            let f: Vec<Option<String>> = (0..10).map(cell).collect::<Result<_, _>>()?;
            let get = |i: usize| f[i].clone().unwrap_or_default();
            let num = |i: usize| f[i].as_deref().and_then(|s| s.parse::<u32>().ok());
            out.push(match self.dialect {
                Dialect::Sqlite => sqlite_column(get(0), get(1), get(2) == "1", f[3].is_some(), get(4) != "0"),
                Dialect::Postgres => {
                    let (data_type, udt) = (get(1), get(4));
                    let flags = get(8);
                    let kind = match data_type.as_str() {
                        "smallint" => Kind::int(16, false),
                        "integer" => Kind::int(32, false),
                        "bigint" => Kind::int(64, false),
                        "numeric" => Kind::Decimal { precision: num(6), scale: num(7) },
                        "real" | "double precision" => Kind::Float,
                        "character varying" | "character" | "text" => Kind::Text,
                        "boolean" => Kind::Bool,
                        "timestamp with time zone" => Kind::Timestamp { zoned: true, digits: num(9).unwrap_or(6) },
                        "timestamp without time zone" => Kind::Timestamp { zoned: false, digits: num(9).unwrap_or(6) },
                        "date" => Kind::Date,
                        "uuid" => Kind::Uuid,
                        "json" | "jsonb" => Kind::Json,
                        "USER-DEFINED" if udt == "citext" => Kind::Text,
                        _ => Kind::Other,
                    };
                    let sql_type = match (data_type.as_str(), num(5), num(6), num(7)) {
                        ("character varying", Some(n), _, _) => format!("varchar({n})"),
                        ("character", Some(n), _, _) => format!("char({n})"),
                        ("numeric", _, Some(p), Some(s)) => format!("numeric({p},{s})"),
                        ("USER-DEFINED" | "ARRAY", ..) => udt,
                        (t, ..) => t.to_string(),
                    };
                    Column {
                        name: get(0),
                        sql_type,
                        kind,
                        nullable: get(2) == "YES",
                        has_default: f[3].is_some() || flags.starts_with("YES"),
                        generated: flags.contains(",ALWAYS,") || flags.ends_with("ALWAYS"),
                        max_chars: num(5).map(|n| n as usize),
                    }
                }
                Dialect::MySql => {
                    let (data_type, column_type, extra) =
                        (get(1).to_lowercase(), get(4).to_lowercase(), get(8).to_lowercase());
                    let unsigned = column_type.contains("unsigned");
                    let kind = match data_type.as_str() {
                        "tinyint" => Kind::int(8, unsigned),
                        "smallint" => Kind::int(16, unsigned),
                        "mediumint" => Kind::int(24, unsigned),
                        "int" | "integer" => Kind::int(32, unsigned),
                        "bigint" => Kind::int(64, unsigned),
                        "decimal" | "numeric" => Kind::Decimal { precision: num(6), scale: num(7) },
                        "float" | "double" | "real" => Kind::Float,
                        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => Kind::Text,
                        "datetime" | "timestamp" => Kind::Timestamp { zoned: false, digits: num(9).unwrap_or(0) },
                        "date" => Kind::Date,
                        "json" => Kind::Json,
                        "enum" => Kind::Enum(enum_values(&column_type)),
                        _ => Kind::Other,
                    };
                    let max_chars = if matches!(data_type.as_str(), "char" | "varchar") {
                        num(5).map(|n| n as usize)
                    } else {
                        None
                    };
                    Column {
                        name: get(0),
                        sql_type: column_type,
                        kind,
                        nullable: get(2) == "YES",
                        // MariaDB reports a nullable column's missing default as the text NULL.
                        has_default: f[3].is_some() || extra.contains("auto_increment"),
                        generated: extra.contains("generated") || extra.contains("persistent"),
                        max_chars,
                    }
                }
            });
        }
        Ok(out)
    }

    /// The highest value of `column` (0 for an empty table).
    pub async fn max_of(&self, table: &str, column: &str) -> Result<i64, ImportError> {
        let sql = format!("SELECT {} FROM {}", self.bigint(&format!("MAX({})", self.quote(column))), self.quote(table));
        let v: Option<i64> =
            sqlx::query_scalar(&sql).fetch_one(&self.pool).await.map_err(|e| self.refused(table, e))?;
        Ok(v.unwrap_or(0))
    }

    /// The last value the table's counter for `column` handed out (PostgreSQL sequence,
    /// MySQL AUTO_INCREMENT, SQLite's sqlite_sequence), when it has one.
    pub async fn counter(&self, table: &str, column: &Column) -> Result<Option<i64>, ImportError> {
        let refused = |e| self.refused(table, e);
        match self.dialect {
            Dialect::Postgres => {
                let Some(seq) = self.sequence(table, &column.name).await? else { return Ok(None) };
                let sql = format!(
                    "SELECT CAST(CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS BIGINT) FROM {seq}"
                );
                Ok(Some(sqlx::query_scalar(&sql).fetch_one(&self.pool).await.map_err(refused)?))
            }
            Dialect::MySql => Ok(self.auto_increment(table).await?.map(|next| next - 1)),
            Dialect::Sqlite => {
                if !self.sqlite_autoincrement(table, column).await? {
                    return Ok(None);
                }
                let seq: Option<i64> =
                    sqlx::query_scalar("SELECT CAST(seq AS BIGINT) FROM sqlite_sequence WHERE name = ?")
                        .bind(table)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(refused)?;
                Ok(Some(seq.unwrap_or(0)))
            }
        }
    }

    pub async fn sequence(&self, table: &str, column: &str) -> Result<Option<String>, ImportError> {
        sqlx::query_scalar("SELECT CAST(pg_get_serial_sequence($1, $2) AS TEXT)")
            .bind(self.quote(table))
            .bind(column)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.refused(table, e))
    }

    /// MySQL's next AUTO_INCREMENT value, read fresh (MySQL 8 caches it for a day by default).
    pub async fn auto_increment(&self, table: &str) -> Result<Option<i64>, ImportError> {
        // MariaDB has no such variable: its information_schema is never cached.
        let _ = sqlx::query("SET SESSION information_schema_stats_expiry = 0").execute(&self.pool).await;
        let (schema, name) = match table.rsplit_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, table),
        };
        let sql = format!(
            "SELECT CAST(AUTO_INCREMENT AS SIGNED) FROM information_schema.TABLES WHERE TABLE_NAME = ? AND TABLE_SCHEMA = {}",
            if schema.is_some() { "?" } else { "DATABASE()" }
        );
        let mut q = sqlx::query_scalar(&sql).bind(name);
        if let Some(s) = schema {
            q = q.bind(s);
        }
        let v: Option<Option<i64>> = q.fetch_optional(&self.pool).await.map_err(|e| self.refused(table, e))?;
        Ok(v.flatten())
    }

    /// The column is SQLite's rowid in a table declared AUTOINCREMENT (which keeps a counter).
    pub async fn sqlite_autoincrement(&self, table: &str, column: &Column) -> Result<bool, ImportError> {
        let sql: Option<String> = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(table)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.refused(table, e))?;
        Ok(sql.is_some_and(|s| s.to_uppercase().contains("AUTOINCREMENT"))
            && column.sql_type.eq_ignore_ascii_case("integer"))
    }

    /// The lowest value of `column` at or above `from`: the first row that is in the way of a
    /// range starting there.
    pub async fn first_at_or_above(&self, table: &str, column: &str, from: i64) -> Result<Option<i64>, ImportError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} >= {from}",
            self.bigint(&format!("MIN({})", self.quote(column))),
            self.quote(table),
            self.quote(column)
        );
        sqlx::query_scalar(&sql).fetch_one(&self.pool).await.map_err(|e| self.refused(table, e))
    }

    async fn table_exists(&self, table: &str) -> Result<bool, ImportError> {
        Ok(!self.columns(table).await?.is_empty())
    }

    pub async fn ledger_refs(&self) -> Result<HashSet<String>, ImportError> {
        if !self.table_exists(LEDGER).await? {
            return Ok(Default::default());
        }
        let rows = sqlx::query(&format!("SELECT {} FROM {LEDGER}", self.text("ref")))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.refused(LEDGER, e))?;
        rows.iter().map(|r| text_at(r, 0).map_err(|e| self.refused(LEDGER, e))).collect()
    }

    /// The IDs the ledger keeps for `refs` (table → IDs, as JSON).
    pub async fn ledger_ids(&self, refs: &[String]) -> Result<HashMap<String, String>, ImportError> {
        let mut out = HashMap::new();
        for chunk in refs.chunks(1000) {
            let marks: Vec<String> = (1..=chunk.len()).map(|n| self.placeholder(n)).collect();
            let sql = format!(
                "SELECT {}, {} FROM {LEDGER} WHERE ref IN ({})",
                self.text("ref"),
                self.text("ids"),
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q.bind(r.clone());
            }
            for row in q.fetch_all(&self.pool).await.map_err(|e| self.refused(LEDGER, e))? {
                let r = text_at(&row, 0).map_err(|e| self.refused(LEDGER, e))?;
                out.insert(r, text_at(&row, 1).map_err(|e| self.refused(LEDGER, e))?);
            }
        }
        Ok(out)
    }

    pub async fn stored_ranges(&self) -> Result<BTreeMap<String, StoredRange>, ImportError> {
        let columns = self.columns(RANGES).await?;
        if columns.is_empty() {
            return Ok(Default::default());
        }
        let kept = columns.iter().any(|c| c.name == "next_id");
        let sql = if kept {
            format!(
                "SELECT {}, {}, {}, {} FROM {RANGES}",
                self.text("tbl"),
                self.bigint("start_id"),
                self.bigint("next_id"),
                self.bigint("end_id")
            )
        } else {
            format!("SELECT {}, {}, NULL, NULL FROM {RANGES}", self.text("tbl"), self.bigint("start_id"))
        };
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(|e| self.refused(RANGES, e))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let e = |e| self.refused(RANGES, e);
            let table = text_at(&r, 0).map_err(e)?;
            let start: i64 = r.try_get(1).map_err(e)?;
            let next: Option<i64> = if kept { r.try_get(2).map_err(e)? } else { None };
            let end: Option<i64> = if kept { r.try_get(3).map_err(e)? } else { None };
            out.insert(table, StoredRange { start, next, end });
        }
        Ok(out)
    }

    /// Existing rows whose natural key, compared as `normalize` says, is among `wanted`:
    /// normalized key → the row's ID (the lowest when several rows share a key).
    pub async fn keyed_rows(
        &self,
        table: &str,
        id: &Column,
        key: &str,
        normalize: &(dyn Fn(&str) -> String + Sync),
        wanted: &HashSet<String>,
    ) -> Result<HashMap<String, Key>, ImportError> {
        let mut out: HashMap<String, Key> = HashMap::new();
        let mut keep = |k: String, v: Key| {
            let norm = normalize(&k);
            if wanted.contains(&norm) {
                match out.get(&norm) {
                    Some(old) if *old <= v => {}
                    _ => {
                        out.insert(norm, v);
                    }
                }
            }
        };
        let select = format!(
            "SELECT {}, {} FROM {}",
            self.text(&self.quote(&id.name)),
            self.text(&self.quote(key)),
            self.quote(table)
        );
        if let Kind::Int { .. } = id.kind {
            // The whole table, a page at a time by ID, compared here: the database cannot
            // use its index for a normalized comparison anyway.
            let mut after = i64::MIN;
            loop {
                let sql = format!("{select} WHERE {id} > {after} ORDER BY {id} LIMIT 20000", id = self.quote(&id.name));
                let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(|e| self.refused(table, e))?;
                for row in &rows {
                    let (i, k) = (text_at(row, 0), opt_text_at(row, 1));
                    let i = i.map_err(|e| self.refused(table, e))?;
                    after = i.parse().unwrap_or(after);
                    if let Some(k) = k.map_err(|e| self.refused(table, e))? {
                        keep(k, Key::from_text(&i));
                    }
                }
                if rows.len() < 20000 {
                    break;
                }
            }
        } else {
            let rows = sqlx::query(&select).fetch_all(&self.pool).await.map_err(|e| self.refused(table, e))?;
            for row in &rows {
                let i = text_at(row, 0).map_err(|e| self.refused(table, e))?;
                if let Some(k) = opt_text_at(row, 1).map_err(|e| self.refused(table, e))? {
                    keep(k, Key::from_text(&i));
                }
            }
        }
        Ok(out)
    }

    /// Rows of a lookup's table whose first key column is among `first`: (key values, value).
    pub async fn lookup_rows(
        &self,
        table: &str,
        column: &str,
        keys: &[String],
        first: &[String],
    ) -> Result<Vec<(Vec<String>, Option<String>)>, ImportError> {
        let mut out = Vec::new();
        let cols: Vec<String> =
            keys.iter().chain(std::iter::once(&column.to_string())).map(|c| self.text(&self.quote(c))).collect();
        for chunk in first.chunks(5000) {
            let marks: Vec<String> = (1..=chunk.len()).map(|n| self.placeholder(n)).collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} IN ({})",
                cols.join(", "),
                self.quote(table),
                self.text(&self.quote(&keys[0])),
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for v in chunk {
                q = q.bind(v.clone());
            }
            for row in q.fetch_all(&self.pool).await.map_err(|e| self.refused(table, e))? {
                let mut key = Vec::with_capacity(keys.len());
                for i in 0..keys.len() {
                    key.push(opt_text_at(&row, i).map_err(|e| self.refused(table, e))?.unwrap_or_default());
                }
                out.push((key, opt_text_at(&row, keys.len()).map_err(|e| self.refused(table, e))?));
            }
        }
        Ok(out)
    }

    /// A refusal, named by table (and by column when the database says which).
    pub fn refused(&self, table: &str, e: sqlx::Error) -> ImportError {
        ImportError::Refused { table: table.to_string(), record: None, detail: db_message(&e) }
    }
}

pub fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

fn sqlite_column(name: String, declared: String, not_null: bool, default: bool, pk: bool) -> Column {
    let t = declared.to_uppercase();
    let numeric_args = || -> (Option<u32>, Option<u32>) {
        let inner = t.split_once('(').and_then(|(_, r)| r.strip_suffix(')'));
        let mut parts = inner.into_iter().flat_map(|s| s.split(',')).map(|p| p.trim().parse::<u32>().ok());
        (parts.next().flatten(), parts.next().flatten())
    };
    // SQLite's type affinity rules, in its order.
    let kind = if t.contains("INT") {
        Kind::int(64, false)
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Kind::Text
    } else if t.is_empty() || t.contains("BLOB") {
        Kind::Other
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Kind::Float
    } else if t.contains("BOOL") {
        Kind::Int { min: 0, max: 1 }
    } else if t.contains("DATETIME") || t.contains("TIMESTAMP") {
        Kind::Timestamp { zoned: false, digits: 6 }
    } else if t.contains("DATE") {
        Kind::Date
    } else if t.contains("DEC") || t.contains("NUMERIC") {
        let (precision, scale) = numeric_args();
        Kind::Decimal { precision, scale }
    } else {
        Kind::Other
    };
    let rowid = pk && t == "INTEGER";
    Column {
        name,
        sql_type: declared,
        kind,
        nullable: !not_null && !rowid,
        has_default: default || rowid,
        generated: false,
        // SQLite does not enforce a declared length, but the schema says what the shop
        // expects: values are held to it as on the other databases.
        max_chars: (t.contains("CHAR")).then(|| numeric_args().0.map(|n| n as usize)).flatten(),
    }
}

/// `enum('a','it''s')` → ["a", "it's"].
fn enum_values(column_type: &str) -> Vec<String> {
    let inner = column_type.trim_start_matches("enum(").trim_end_matches(')');
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('\'', true) if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            ('\'', _) => {
                quoted = !quoted;
                if !quoted {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (c, true) => cur.push(c),
            _ => {}
        }
    }
    out
}

/// Column `i` as text. MySQL reports long text (`TEXT`, or a cast of it) as a BLOB through the
/// `Any` driver, so bytes are accepted too.
pub fn text_at(row: &sqlx::any::AnyRow, i: usize) -> Result<String, sqlx::Error> {
    opt_text_at(row, i).map(Option::unwrap_or_default)
}

pub fn opt_text_at(row: &sqlx::any::AnyRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    match row.try_get::<Option<String>, _>(i) {
        Ok(s) => Ok(s),
        Err(_) => match row.try_get::<Option<Vec<u8>>, _>(i)? {
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| sqlx::Error::Decode(Box::new(e))),
            None => Ok(None),
        },
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mysql_enum_values_and_sqlite_affinities() {
        assert_eq!(enum_values("enum('billing','shipping','it''s')"), ["billing", "shipping", "it's"]);
        let c = sqlite_column("total".into(), "DECIMAL(10,2)".into(), true, false, false);
        assert_eq!(c.kind, Kind::Decimal { precision: Some(10), scale: Some(2) });
        let id = sqlite_column("id".into(), "INTEGER".into(), false, false, true);
        assert!(id.has_default && !id.nullable);
        assert_eq!(sqlite_column("t".into(), "TEXT".into(), true, false, false).kind, Kind::Text);
        assert_eq!(sqlite_column("c".into(), "varchar(10)".into(), true, false, false).max_chars, Some(10));
    }
}
