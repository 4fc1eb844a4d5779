//! Writing: the bookkeeping tables, the counters moved past the reserved ranges (never down),
//! and batches of records, each in one transaction with its ledger entries, so a batch is in
//! completely or not at all.
//!
//! A batch is made (rows evaluated, PostgreSQL's `COPY` text encoded) on a thread of its own
//! while the batch before it is written, on the one connection: two transactions in flight
//! would not see each other's parent rows.

use super::db::{db_message, Dialect, Target, LEDGER, RANGES};
use super::eval::Env;
use super::plan::{Key, Plan};
use super::rows::{build, Change, Layouts};
use super::source::Located;
use super::value::{Cell, Column};
use super::ImportError;
use crate::config::Mapping;
use crate::decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

/// What making a batch needs, shared with the thread that makes them.
pub struct Maker<'a> {
    pub mapping: &'a Mapping,
    pub layouts: &'a Layouts,
    pub plan: &'a Plan,
    pub located: &'a [Located],
    pub env: Env<'a>,
    pub dialect: Dialect,
}

pub struct Batch {
    /// Planned records in it (indices into `Plan::records`).
    pub records: Vec<usize>,
    groups: Vec<Group>,
    updates: Vec<MergedUpdate>,
    ledger: Vec<[String; 3]>,
    /// Per table with a range: the next ID not handed out, once this batch is in.
    next: Vec<(String, i64)>,
}

/// The rows of one entity in a batch: one `COPY` or a few multi-row INSERTs.
struct Group {
    table: String,
    columns: Vec<Column>,
    payload: Payload,
}

enum Payload {
    /// PostgreSQL `COPY … (FORMAT csv)` text.
    Csv(Vec<u8>),
    Rows(Vec<Vec<Cell<'static>>>),
}

struct MergedUpdate {
    table: String,
    id_column: String,
    key: Key,
    changes: Vec<(Column, MergedChange)>,
}

enum MergedChange {
    Set(Cell<'static>),
    Add(Decimal),
}

impl Maker<'_> {
    /// The batch of planned records `records`.
    pub fn batch(&self, records: &[usize]) -> Result<Batch, ImportError> {
        let mut groups: BTreeMap<(usize, usize), Group> = BTreeMap::new();
        let mut updates: Vec<MergedUpdate> = Vec::new();
        let mut update_at: HashMap<(usize, Key), usize> = HashMap::new();
        let mut ledger = Vec::with_capacity(records.len());
        let mut next: BTreeMap<usize, i64> = BTreeMap::new();
        for &i in records {
            let p = &self.plan.records[i];
            let l = &self.located[p.index];
            let built = build(self.mapping, self.layouts, self.plan, p, self.located, &self.env, self.dialect)
                .map_err(|m| {
                    // The check passed these records: only a changed input gets here.
                    ImportError::Record {
                        at: format!("{}:{} ({})", l.path.display(), l.line, l.record.reference),
                        message: m.first().map(|m| format!("{}: {}", m.column, m.message)).unwrap_or_default(),
                    }
                })?;
            for row in built.rows {
                let layout = &self.layouts.entities[row.entity];
                let g = groups.entry((layout.table, row.entity)).or_insert_with(|| Group {
                    table: self.mapping.tables[layout.table].name.clone(),
                    columns: layout.columns.clone(),
                    payload: match self.dialect {
                        Dialect::Postgres => Payload::Csv(Vec::with_capacity(records.len() * 128)),
                        _ => Payload::Rows(Vec::with_capacity(records.len())),
                    },
                });
                match &mut g.payload {
                    Payload::Csv(out) => copy_row(out, &row.cells),
                    Payload::Rows(rows) => rows.push(row.cells.into_iter().map(Cell::into_owned).collect()),
                }
            }
            for u in built.updates {
                let layout = &self.layouts.entities[u.entity];
                let at = *update_at.entry((u.table, u.key.clone())).or_insert_with(|| {
                    updates.push(MergedUpdate {
                        table: self.mapping.tables[u.table].name.clone(),
                        id_column: self.mapping.tables[u.table].id_column().unwrap_or("id").to_string(),
                        key: u.key.clone(),
                        changes: Vec::new(),
                    });
                    updates.len() - 1
                });
                // Two offers of one order in a batch: one update, amounts added, last set wins.
                for (column, change) in layout.columns.iter().zip(u.values) {
                    let changes = &mut updates[at].changes;
                    let existing = changes.iter_mut().find(|(c, _)| c.name == column.name);
                    match (change, existing) {
                        (Change::Keep, _) => {}
                        (Change::Add(d), Some((_, MergedChange::Add(sum)))) => {
                            *sum = sum
                                .checked_add(d)
                                .ok_or_else(|| ImportError::Target("an update's sum is too large".into()))?
                        }
                        (Change::Add(d), _) => changes.push((column.clone(), MergedChange::Add(d))),
                        (Change::Set(c), Some((_, slot))) => *slot = MergedChange::Set(c.into_owned()),
                        (Change::Set(c), None) => changes.push((column.clone(), MergedChange::Set(c.into_owned()))),
                    }
                }
            }
            let mut ids: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
            for row in &p.rows {
                let value = match &row.key {
                    Key::None => continue,
                    Key::Int(n) => serde_json::Value::from(*n),
                    Key::Text(t) => serde_json::Value::from(t.as_ref()),
                };
                ids.entry(&self.mapping.tables[row.table].name).or_default().push(value);
                if let Some(r) = row.reserved.filter(|_| row.new) {
                    let n = next.entry(row.table).or_insert(r + 1);
                    *n = (*n).max(r + 1);
                }
            }
            ledger.push([
                l.reference.clone(),
                l.record.form.to_string(),
                serde_json::to_string(&ids).expect("ids serialize"),
            ]);
        }
        Ok(Batch {
            records: records.to_vec(),
            groups: groups.into_values().collect(),
            updates,
            ledger,
            next: next.into_iter().map(|(t, n)| (self.mapping.tables[t].name.clone(), n)).collect(),
        })
    }
}

/// A row as a CSV line of PostgreSQL's `COPY`: an unquoted empty cell is NULL, text is always
/// quoted (so an empty string stays one).
fn copy_row(out: &mut Vec<u8>, cells: &[Cell]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match c {
            Cell::Null => {}
            Cell::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Cell::Text(s) => copy_text(out, s),
        }
    }
    out.push(b'\n');
}

fn copy_text(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// A failed statement: the table it wrote and the database's error.
type Failed = (String, sqlx::Error);

impl Target {
    pub async fn ensure_bookkeeping(&self) -> Result<(), ImportError> {
        let key = if self.dialect == Dialect::MySql { "VARCHAR(191)" } else { "VARCHAR(200)" };
        for sql in [
            format!("CREATE TABLE IF NOT EXISTS {LEDGER} (ref {key} PRIMARY KEY, form VARCHAR(100) NOT NULL, imported_at VARCHAR(40) NOT NULL, ids TEXT NOT NULL)"),
            format!("CREATE TABLE IF NOT EXISTS {RANGES} (tbl {key} PRIMARY KEY, start_id BIGINT NOT NULL, next_id BIGINT, end_id BIGINT)"),
        ] {
            sqlx::query(&sql).execute(&self.pool).await.map_err(|e| self.refused(LEDGER, e))?;
        }
        // Kept by importers since the range's next ID and end are remembered.
        if !self.columns(RANGES).await?.iter().any(|c| c.name == "next_id") {
            for c in ["next_id", "end_id"] {
                sqlx::query(&format!("ALTER TABLE {RANGES} ADD COLUMN {c} BIGINT"))
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.refused(RANGES, e))?;
            }
        }
        Ok(())
    }

    /// Records the range this run reserves for `table`.
    pub async fn store_range(&self, table: &str, start: i64, next: i64, end: i64) -> Result<(), ImportError> {
        let e = |e| self.refused(RANGES, e);
        let mut tx = self.pool.begin().await.map_err(e)?;
        sqlx::query(&format!("DELETE FROM {RANGES} WHERE tbl = {}", self.placeholder(1)))
            .bind(table)
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        let marks: Vec<String> = (1..=4).map(|n| self.placeholder(n)).collect();
        sqlx::query(&format!("INSERT INTO {RANGES} (tbl, start_id, next_id, end_id) VALUES ({})", marks.join(", ")))
            .bind(table)
            .bind(start)
            .bind(next)
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(e)?;
        tx.commit().await.map_err(e)
    }

    /// Moves the counter of `table.column` so the shop's next own ID is above `last`; never
    /// backwards (MySQL's `ALTER TABLE … AUTO_INCREMENT` would lower it, so it is read first).
    pub async fn bump_counter(&self, table: &str, column: &Column, last: i64) -> Result<(), ImportError> {
        let refused = |e| self.refused(table, e);
        match self.dialect {
            Dialect::Postgres => {
                let Some(seq) = self.sequence(table, &column.name).await? else { return Ok(()) };
                // nextval, not a read of last_value: a value the shop takes meanwhile is never
                // handed out again.
                sqlx::query("SELECT CAST(setval($1, GREATEST($2, nextval($1))) AS BIGINT)")
                    .bind(seq)
                    .bind(last)
                    .execute(&self.pool)
                    .await
                    .map_err(refused)?;
            }
            Dialect::MySql => {
                let Some(next) = self.auto_increment(table).await? else { return Ok(()) };
                if next <= last {
                    sqlx::query(&format!("ALTER TABLE {} AUTO_INCREMENT = {}", self.quote(table), last + 1))
                        .execute(&self.pool)
                        .await
                        .map_err(refused)?;
                }
            }
            Dialect::Sqlite => {
                // Plain rowid tables continue from max(rowid) on their own.
                if !self.sqlite_autoincrement(table, column).await? {
                    return Ok(());
                }
                let updated = sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?")
                    .bind(last)
                    .bind(table)
                    .execute(&self.pool)
                    .await
                    .map_err(refused)?;
                if updated.rows_affected() == 0 {
                    sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)")
                        .bind(table)
                        .bind(last)
                        .execute(&self.pool)
                        .await
                        .map_err(refused)?;
                }
            }
        }
        Ok(())
    }

    /// Writes `batch` in one transaction. On a refusal nothing of it is written, and the
    /// error names the table.
    pub async fn write(&self, batch: &Batch, imported_at: &str) -> Result<(), Failed> {
        match &self.pg {
            Some(pg) => {
                let mut tx = pg.begin().await.map_err(|e| (LEDGER.to_string(), e))?;
                self.write_pg(&mut tx, batch, imported_at).await?;
                tx.commit().await.map_err(|e| (LEDGER.to_string(), e))
            }
            None => {
                let mut tx = self.pool.begin().await.map_err(|e| (LEDGER.to_string(), e))?;
                self.write_any(&mut tx, batch, imported_at).await?;
                tx.commit().await.map_err(|e| (LEDGER.to_string(), e))
            }
        }
    }

    /// After a refusal: the batches of single records, written one after the other in one
    /// transaction that is then rolled back, to find the record the database refuses.
    pub async fn find_refused(&self, batches: &[Batch], imported_at: &str) -> Option<(usize, Failed)> {
        match &self.pg {
            Some(pg) => {
                let mut tx = pg.begin().await.ok()?;
                for (i, b) in batches.iter().enumerate() {
                    if let Err(f) = self.write_pg(&mut tx, b, imported_at).await {
                        return Some((i, f));
                    }
                }
            }
            None => {
                let mut tx = self.pool.begin().await.ok()?;
                for (i, b) in batches.iter().enumerate() {
                    if let Err(f) = self.write_any(&mut tx, b, imported_at).await {
                        return Some((i, f));
                    }
                }
            }
        }
        None
    }

    async fn write_pg(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        batch: &Batch,
        imported_at: &str,
    ) -> Result<(), Failed> {
        for g in &batch.groups {
            let Payload::Csv(data) = &g.payload else { unreachable!("PostgreSQL batches are COPY text") };
            let names: Vec<String> = g.columns.iter().map(|c| self.quote(&c.name)).collect();
            let sql = format!("COPY {} ({}) FROM STDIN WITH (FORMAT csv)", self.quote(&g.table), names.join(", "));
            copy(tx, &sql, data).await.map_err(|e| (g.table.clone(), e))?;
        }
        for u in &batch.updates {
            let (sql, binds) = self.update_sql(u);
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = match b {
                    Cell::Null => q.bind(None::<String>),
                    Cell::Int(n) => q.bind(n),
                    Cell::Text(t) => q.bind(t.into_owned()),
                };
            }
            q.execute(&mut **tx).await.map_err(|e| (u.table.clone(), e))?;
        }
        let mut csv = Vec::with_capacity(batch.ledger.len() * 96);
        for [reference, form, ids] in &batch.ledger {
            let cells = [reference.as_str(), form.as_str(), imported_at, ids.as_str()]
                .map(|s| Cell::Text(std::borrow::Cow::Borrowed(s)));
            copy_row(&mut csv, &cells);
        }
        let sql = format!("COPY {LEDGER} (ref, form, imported_at, ids) FROM STDIN WITH (FORMAT csv)");
        copy(tx, &sql, &csv).await.map_err(|e| (LEDGER.to_string(), e))?;
        for (table, next) in &batch.next {
            sqlx::query(&format!("UPDATE {RANGES} SET next_id = $1 WHERE tbl = $2"))
                .bind(*next)
                .bind(table)
                .execute(&mut **tx)
                .await
                .map_err(|e| (RANGES.to_string(), e))?;
        }
        Ok(())
    }

    async fn write_any(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        batch: &Batch,
        imported_at: &str,
    ) -> Result<(), Failed> {
        for g in &batch.groups {
            let Payload::Rows(rows) = &g.payload else { unreachable!("row batches") };
            let names: Vec<String> = g.columns.iter().map(|c| self.quote(&c.name)).collect();
            // SQLite takes at most 32766 parameters per statement, MySQL 65535.
            let per = (30_000 / names.len().max(1)).clamp(1, 500);
            for chunk in rows.chunks(per) {
                let tuples: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let marks: Vec<String> =
                            (0..names.len()).map(|k| self.placeholder(i * names.len() + k + 1)).collect();
                        format!("({})", marks.join(", "))
                    })
                    .collect();
                let sql =
                    format!("INSERT INTO {} ({}) VALUES {}", self.quote(&g.table), names.join(", "), tuples.join(", "));
                let mut q = sqlx::query(&sql);
                for row in chunk {
                    for c in row {
                        q = match c {
                            Cell::Null => q.bind(None::<String>),
                            Cell::Int(n) => q.bind(*n),
                            Cell::Text(t) => q.bind(t.to_string()),
                        };
                    }
                }
                q.execute(&mut **tx).await.map_err(|e| (g.table.clone(), e))?;
            }
        }
        for u in &batch.updates {
            let (sql, binds) = self.update_sql(u);
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = match b {
                    Cell::Null => q.bind(None::<String>),
                    Cell::Int(n) => q.bind(n),
                    Cell::Text(t) => q.bind(t.into_owned()),
                };
            }
            q.execute(&mut **tx).await.map_err(|e| (u.table.clone(), e))?;
        }
        for chunk in batch.ledger.chunks(200) {
            let marks: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", (1..=4).map(|k| self.placeholder(i * 4 + k)).collect::<Vec<_>>().join(", ")))
                .collect();
            let sql = format!("INSERT INTO {LEDGER} (ref, form, imported_at, ids) VALUES {}", marks.join(", "));
            let mut q = sqlx::query(&sql);
            for [reference, form, ids] in chunk {
                q = q.bind(reference.clone()).bind(form.clone()).bind(imported_at.to_string()).bind(ids.clone());
            }
            q.execute(&mut **tx).await.map_err(|e| (LEDGER.to_string(), e))?;
        }
        for (table, next) in &batch.next {
            let sql =
                format!("UPDATE {RANGES} SET next_id = {} WHERE tbl = {}", self.placeholder(1), self.placeholder(2));
            sqlx::query(&sql)
                .bind(*next)
                .bind(table.clone())
                .execute(&mut **tx)
                .await
                .map_err(|e| (RANGES.to_string(), e))?;
        }
        Ok(())
    }

    /// `UPDATE t SET a = $1, b = COALESCE(b, 0) + $2 WHERE id = $3`, with the casts each
    /// dialect needs to take text as the column's type.
    fn update_sql<'u>(&self, u: &'u MergedUpdate) -> (String, Vec<Cell<'u>>) {
        let mut sets = Vec::new();
        let mut binds = Vec::new();
        for (column, change) in &u.changes {
            let n = binds.len() + 1;
            let col = self.quote(&column.name);
            match change {
                MergedChange::Set(cell) => {
                    let mark = match (self.dialect, cell) {
                        // A null is bound as text too: `search_vector = NULL` on a tsvector needs the cast.
                        (Dialect::Postgres, Cell::Text(_) | Cell::Null) => {
                            format!("CAST({} AS {})", self.placeholder(n), column.sql_type)
                        }
                        _ => self.placeholder(n),
                    };
                    sets.push(format!("{col} = {mark}"));
                    binds.push(cell.clone());
                }
                MergedChange::Add(d) => {
                    let mark = match self.dialect {
                        Dialect::Postgres => format!("CAST({} AS numeric)", self.placeholder(n)),
                        Dialect::MySql => format!("CAST({} AS DECIMAL(65,30))", self.placeholder(n)),
                        Dialect::Sqlite => self.placeholder(n),
                    };
                    sets.push(format!("{col} = COALESCE({col}, 0) + {mark}"));
                    binds.push(match d.to_i64() {
                        Some(i) if d.scale() == 0 => Cell::Int(i),
                        _ => Cell::Text(std::borrow::Cow::Owned(d.to_string())),
                    });
                }
            }
        }
        let n = binds.len() + 1;
        let key = match &u.key {
            Key::Int(i) => Cell::Int(*i),
            Key::Text(t) => Cell::Text(std::borrow::Cow::Borrowed(t)),
            Key::None => Cell::Null,
        };
        let key_mark = match (self.dialect, &key) {
            // A UUID key compared with a text parameter.
            (Dialect::Postgres, Cell::Text(_)) => format!("CAST({} AS TEXT)", self.quote(&u.id_column)),
            _ => self.quote(&u.id_column),
        };
        binds.push(key);
        (
            format!(
                "UPDATE {} SET {} WHERE {key_mark} = {}",
                self.quote(&u.table),
                sets.join(", "),
                self.placeholder(n)
            ),
            binds,
        )
    }
}

async fn copy(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, sql: &str, data: &[u8]) -> Result<u64, sqlx::Error> {
    let mut copy = tx.copy_in_raw(sql).await?;
    if let Err(e) = copy.send(data).await {
        let _ = copy.abort("send failed").await;
        return Err(e);
    }
    copy.finish().await
}

/// A refusal as the user reads it: the table, the record when known, the database's words.
pub fn refusal(table: String, record: Option<String>, e: &sqlx::Error) -> ImportError {
    ImportError::Refused { table, record, detail: db_message(e) }
}
