//! The target database through sqlx's `Any` driver, and the few places where SQLite,
//! PostgreSQL and MySQL/MariaDB differ: placeholders, quoting, casts, and moving a sequence.

use super::plan::{Row, TablePlan};
use super::ImportError;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Row as _;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// A value for one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Time(jiff::Timestamp),
}

pub struct Target {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// PostgreSQL's own driver as well, for `COPY`, which `Any` cannot speak.
    pg: Option<sqlx::PgPool>,
}

/// One imported reference, as the ledger keeps it.
pub struct LedgerEntry {
    pub reference: String,
    pub form: String,
    /// Table name → IDs, as JSON.
    pub ids: String,
}

pub const LEDGER: &str = "cofferdam_ledger";
pub const RANGES: &str = "cofferdam_ranges";

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
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| ImportError::Target(format!("cannot connect to {}: {e}", redact(url))))?;
        let pg = match dialect {
            Dialect::Postgres => Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await
                    .map_err(|e| ImportError::Target(format!("cannot connect to {}: {e}", redact(url))))?,
            ),
            _ => None,
        };
        Ok(Target { pool, dialect, pg })
    }

    pub fn quote(&self, ident: &str) -> String {
        match self.dialect {
            Dialect::MySql => format!("`{}`", ident.replace('`', "``")),
            _ => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }

    pub fn placeholder(&self, n: usize) -> String {
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    fn bigint(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
            _ => format!("CAST({expr} AS BIGINT)"),
        }
    }

    fn text(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
            _ => format!("CAST({expr} AS TEXT)"),
        }
    }

    /// Column name → type of `table`, or a clear error when the table is not there.
    pub async fn columns(&self, table: &str) -> Result<BTreeMap<String, String>, ImportError> {
        let sql = match self.dialect {
            Dialect::Sqlite => "SELECT name, type FROM pragma_table_info(?)".to_string(),
            Dialect::Postgres => {
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                                  WHERE table_name = $1 AND table_schema = current_schema()"
                    .to_string()
            }
            Dialect::MySql => {
                "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns \
                               WHERE table_name = ? AND table_schema = DATABASE()"
                    .to_string()
            }
        };
        let rows = sqlx::query(&sql).bind(table).fetch_all(&self.pool).await.map_err(|e| self.refused(table, e))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let name = text_at(&row, 0).map_err(|e| self.refused(table, e))?;
            let ty = text_at(&row, 1).map_err(|e| self.refused(table, e))?;
            out.insert(name, ty.to_lowercase());
        }
        Ok(out)
    }

    pub async fn max_id(&self, table: &str, id: &str) -> Result<i64, ImportError> {
        let sql = format!("SELECT {} FROM {}", self.bigint(&format!("MAX({})", self.quote(id))), self.quote(table));
        let v: Option<i64> =
            sqlx::query_scalar(&sql).fetch_one(&self.pool).await.map_err(|e| self.refused(table, e))?;
        Ok(v.unwrap_or(0))
    }

    pub async fn count_in(&self, table: &str, id: &str, from: i64, to_excl: i64) -> Result<i64, ImportError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {id} >= {from} AND {id} < {to_excl}",
            self.bigint("COUNT(*)"),
            self.quote(table),
            id = self.quote(id)
        );
        sqlx::query_scalar(&sql).fetch_one(&self.pool).await.map_err(|e| self.refused(table, e))
    }

    /// Existing rows by natural key: key value → ID.
    pub async fn ids_by_key(
        &self,
        table: &str,
        id: &str,
        key: &str,
        values: &[String],
    ) -> Result<BTreeMap<String, i64>, ImportError> {
        let mut out = BTreeMap::new();
        for chunk in values.chunks(5000) {
            let marks: Vec<String> = (1..=chunk.len()).map(|n| self.placeholder(n)).collect();
            let sql = format!(
                "SELECT {}, {} FROM {} WHERE {} IN ({})",
                self.bigint(&self.quote(id)),
                self.text(&self.quote(key)),
                self.quote(table),
                self.quote(key),
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for v in chunk {
                q = q.bind(v.clone());
            }
            for row in q.fetch_all(&self.pool).await.map_err(|e| self.refused(table, e))? {
                let id: i64 = row.try_get(0).map_err(|e| self.refused(table, e))?;
                let k = text_at(&row, 1).map_err(|e| self.refused(table, e))?;
                out.insert(k, id);
            }
        }
        Ok(out)
    }

    pub async fn table_exists(&self, table: &str) -> Result<bool, ImportError> {
        Ok(!self.columns(table).await?.is_empty())
    }

    pub async fn ensure_bookkeeping(&self) -> Result<(), ImportError> {
        let key = if self.dialect == Dialect::MySql { "VARCHAR(191)" } else { "VARCHAR(200)" };
        for sql in [
            format!("CREATE TABLE IF NOT EXISTS {LEDGER} (ref {key} PRIMARY KEY, form VARCHAR(100) NOT NULL, imported_at VARCHAR(40) NOT NULL, ids TEXT NOT NULL)"),
            format!("CREATE TABLE IF NOT EXISTS {RANGES} (tbl {key} PRIMARY KEY, start_id BIGINT NOT NULL)"),
        ] {
            sqlx::query(&sql).execute(&self.pool).await.map_err(|e| self.refused(LEDGER, e))?;
        }
        Ok(())
    }

    pub async fn ledger_refs(&self) -> Result<std::collections::HashSet<String>, ImportError> {
        if !self.table_exists(LEDGER).await? {
            return Ok(Default::default());
        }
        let rows = sqlx::query(&format!("SELECT {} FROM {LEDGER}", self.text("ref")))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.refused(LEDGER, e))?;
        rows.iter().map(|r| text_at(r, 0).map_err(|e| self.refused(LEDGER, e))).collect()
    }

    pub async fn stored_ranges(&self) -> Result<BTreeMap<String, i64>, ImportError> {
        if !self.table_exists(RANGES).await? {
            return Ok(Default::default());
        }
        let rows = sqlx::query(&format!("SELECT {}, {} FROM {RANGES}", self.text("tbl"), self.bigint("start_id")))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.refused(RANGES, e))?;
        rows.iter()
            .map(|r| {
                Ok((
                    text_at(r, 0).map_err(|e| self.refused(RANGES, e))?,
                    r.try_get::<i64, _>(1).map_err(|e| self.refused(RANGES, e))?,
                ))
            })
            .collect()
    }

    pub async fn store_ranges(
        &self,
        ranges: &BTreeMap<String, i64>,
        known: &BTreeMap<String, i64>,
    ) -> Result<(), ImportError> {
        for (table, start) in ranges {
            if known.contains_key(table) {
                continue;
            }
            let sql = format!(
                "INSERT INTO {RANGES} (tbl, start_id) VALUES ({}, {})",
                self.placeholder(1),
                self.placeholder(2)
            );
            sqlx::query(&sql)
                .bind(table.clone())
                .bind(*start)
                .execute(&self.pool)
                .await
                .map_err(|e| self.refused(RANGES, e))?;
        }
        Ok(())
    }

    /// Moves the table's sequence (or AUTO_INCREMENT) to at least `past`, never backwards, so
    /// the shop's next own ID is above every ID of the reserved range.
    pub async fn bump_sequence(&self, table: &str, id: &str, past: i64) -> Result<(), ImportError> {
        let past = past.max(self.max_id(table, id).await?);
        if past <= 0 {
            return Ok(());
        }
        let result = match self.dialect {
            Dialect::Postgres => {
                // No sequence behind the column (IDs always given): nothing to move.
                let seq: Option<String> = sqlx::query_scalar("SELECT CAST(pg_get_serial_sequence($1, $2) AS TEXT)")
                    .bind(table)
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| self.refused(table, e))?;
                let Some(seq) = seq else { return Ok(()) };
                let sql = format!("SELECT CAST(setval($1, GREATEST($2, (SELECT last_value FROM {seq}))) AS BIGINT)");
                sqlx::query(&sql).bind(seq.clone()).bind(past).execute(&self.pool).await.map(|_| ())
            }
            // MySQL never lowers AUTO_INCREMENT below the table's maximum on its own.
            Dialect::MySql => sqlx::query(&format!("ALTER TABLE {} AUTO_INCREMENT = {}", self.quote(table), past + 1))
                .execute(&self.pool)
                .await
                .map(|_| ()),
            Dialect::Sqlite => {
                // Only AUTOINCREMENT tables keep a sequence; plain rowid tables continue from
                // max(rowid) on their own.
                let autoinc: Option<String> =
                    sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
                        .bind(table)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| self.refused(table, e))?;
                if !autoinc.is_some_and(|s| s.to_uppercase().contains("AUTOINCREMENT")) {
                    return Ok(());
                }
                let updated = sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?")
                    .bind(past)
                    .bind(table)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.refused(table, e))?;
                if updated.rows_affected() == 0 {
                    sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)")
                        .bind(table)
                        .bind(past)
                        .execute(&self.pool)
                        .await
                        .map(|_| ())
                } else {
                    Ok(())
                }
            }
        };
        result.map_err(|e| self.refused(table, e))
    }

    /// The SQL value for parameter `n` in a column of type `ty`. PostgreSQL gets an explicit
    /// cast where it would not convert a text parameter on its own (timestamps, numbers, JSON);
    /// character types get none, as `CAST(x AS character)` would cut `CHAR(3)` to one letter.
    pub fn value_sql(&self, n: usize, ty: &str) -> String {
        let p = self.placeholder(n);
        let cast = self.dialect == Dialect::Postgres
            && !(ty.contains("char") || ty == "text" || ty == "user-defined" || ty == "array");
        if cast {
            format!("CAST({p} AS {ty})")
        } else {
            p
        }
    }

    pub fn time_text(&self, t: jiff::Timestamp) -> String {
        match self.dialect {
            Dialect::Postgres => t.to_string(),
            _ => t.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        }
    }

    /// A refusal, named by table (and by column when the database says which).
    pub fn refused(&self, table: &str, e: sqlx::Error) -> ImportError {
        let detail = match &e {
            sqlx::Error::Database(db) => db.message().to_string(),
            other => other.to_string(),
        };
        ImportError::Refused { table: table.to_string(), detail }
    }
}

impl Target {
    /// Writes one batch in one transaction: the rows, table by table in `tables` order, then
    /// the ledger entries. A refusal rolls the whole batch back and names the table.
    pub async fn write_batch(
        &self,
        tables: &[TablePlan],
        rows: &[Vec<Row<'_>>],
        ledger: &[LedgerEntry],
        imported_at: &str,
    ) -> Result<(), ImportError> {
        if let Some(pg) = &self.pg {
            return self.copy_batch(pg, tables, rows, ledger, imported_at).await;
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.refused(LEDGER, e))?;
        for (t, rows) in tables.iter().zip(rows) {
            for group in by_columns(rows) {
                for chunk in group.chunks(200) {
                    self.insert_rows(&mut tx, t, chunk).await?;
                }
            }
        }
        for chunk in ledger.chunks(200) {
            let marks: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", (1..=4).map(|k| self.placeholder(i * 4 + k)).collect::<Vec<_>>().join(", ")))
                .collect();
            let sql = format!("INSERT INTO {LEDGER} (ref, form, imported_at, ids) VALUES {}", marks.join(", "));
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q.bind(e.reference.clone()).bind(e.form.clone()).bind(imported_at.to_string()).bind(e.ids.clone());
            }
            q.execute(&mut *tx).await.map_err(|e| self.refused(LEDGER, e))?;
        }
        tx.commit().await.map_err(|e| self.refused(LEDGER, e))
    }

    /// One multi-row INSERT of rows that share their columns.
    async fn insert_rows(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        t: &TablePlan,
        rows: &[&Row<'_>],
    ) -> Result<(), ImportError> {
        let columns = &rows[0].entity.columns;
        let names: Vec<String> = std::iter::once(&t.id_column).chain(columns).map(|c| self.quote(c)).collect();
        let width = names.len();
        let tuples: Vec<String> = (0..rows.len())
            .map(|i| {
                let marks: Vec<String> = std::iter::once(&t.id_column)
                    .chain(columns)
                    .enumerate()
                    .map(|(k, c)| self.value_sql(i * width + k + 1, &t.types[c]))
                    .collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {} ({}) VALUES {}", self.quote(&t.name), names.join(", "), tuples.join(", "));
        let mut q = sqlx::query(&sql);
        for r in rows {
            q = q.bind(r.id);
            for v in &r.values {
                q = match v {
                    Value::Null => q.bind(None::<String>),
                    Value::Int(i) => q.bind(*i),
                    Value::Text(s) => q.bind(s.clone()),
                    Value::Time(ts) => q.bind(self.time_text(*ts)),
                };
            }
        }
        q.execute(&mut **tx).await.map_err(|e| self.refused(&t.name, e))?;
        Ok(())
    }

    /// PostgreSQL: `COPY … FROM STDIN` per table, several times faster than INSERTs.
    async fn copy_batch(
        &self,
        pg: &sqlx::PgPool,
        tables: &[TablePlan],
        rows: &[Vec<Row<'_>>],
        ledger: &[LedgerEntry],
        imported_at: &str,
    ) -> Result<(), ImportError> {
        let mut tx = pg.begin().await.map_err(|e| self.refused(LEDGER, e))?;
        for (t, rows) in tables.iter().zip(rows) {
            for group in by_columns(rows) {
                let names: Vec<String> =
                    std::iter::once(&t.id_column).chain(&group[0].entity.columns).map(|c| self.quote(c)).collect();
                let mut csv = Vec::with_capacity(group.len() * 128);
                for r in &group {
                    csv.extend_from_slice(r.id.to_string().as_bytes());
                    for v in &r.values {
                        csv.push(b',');
                        copy_cell(&mut csv, v);
                    }
                    csv.push(b'\n');
                }
                let sql = format!("COPY {} ({}) FROM STDIN WITH (FORMAT csv)", self.quote(&t.name), names.join(", "));
                self.copy(&mut tx, &sql, csv).await.map_err(|e| self.refused(&t.name, e))?;
            }
        }
        let mut csv = Vec::with_capacity(ledger.len() * 96);
        for e in ledger {
            for (i, cell) in [&e.reference, &e.form, imported_at, &e.ids].into_iter().enumerate() {
                if i > 0 {
                    csv.push(b',');
                }
                copy_cell(&mut csv, &Value::Text(cell.to_string()));
            }
            csv.push(b'\n');
        }
        let sql = format!("COPY {LEDGER} (ref, form, imported_at, ids) FROM STDIN WITH (FORMAT csv)");
        self.copy(&mut tx, &sql, csv).await.map_err(|e| self.refused(LEDGER, e))?;
        tx.commit().await.map_err(|e| self.refused(LEDGER, e))
    }

    async fn copy(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        sql: &str,
        data: Vec<u8>,
    ) -> Result<u64, sqlx::Error> {
        let mut copy = tx.copy_in_raw(sql).await?;
        if let Err(e) = copy.send(data).await {
            let _ = copy.abort("send failed").await;
            return Err(e);
        }
        copy.finish().await
    }
}

/// Rows grouped by their column list, as one statement writes one list.
fn by_columns<'r, 'p>(rows: &'r [Row<'p>]) -> Vec<Vec<&'r Row<'p>>> {
    let mut groups: Vec<Vec<&Row>> = Vec::new();
    for r in rows {
        match groups.iter_mut().find(|g| g[0].entity.columns == r.entity.columns) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
}

/// A value as a CSV cell of PostgreSQL's `COPY`: an unquoted empty cell is NULL, text is
/// always quoted (so an empty string stays one).
fn copy_cell(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => {}
        Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Time(t) => out.extend_from_slice(t.to_string().as_bytes()),
        Value::Text(s) => {
            out.push(b'"');
            for b in s.bytes() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        }
    }
}

/// Column `i` as text. MySQL reports long text (`TEXT`, or a cast of it) as a BLOB through the
/// `Any` driver, so bytes are accepted too.
pub fn text_at(row: &sqlx::any::AnyRow, i: usize) -> Result<String, sqlx::Error> {
    match row.try_get::<String, _>(i) {
        Ok(s) => Ok(s),
        Err(_) => {
            let bytes: Vec<u8> = row.try_get(i)?;
            String::from_utf8(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        }
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
