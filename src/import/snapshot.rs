//! What the target knows, gathered in one go before planning: the tables' columns, their
//! highest IDs and counters, the ranges earlier runs reserved, the ledger, the existing rows of
//! the records' natural keys and the rows every lookup needs. Planning and checking are then
//! functions of the records, the mapping and this value, with no query half-way; the dry run
//! and the real run share them.

use super::db::{StoredRange, Target};
use super::eval::{eval, Env, Scope};
use super::plan::{lines_of, Key, RowId};
use super::source::Located;
use super::value::{Column, Kind, Value};
use super::ImportError;
use crate::config::expr::{Expr, Func};
use crate::config::{Entity, Mapping};
use crate::decimal::Decimal;
use crate::payment::Ledger;
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

pub struct Snapshot {
    /// Per `Mapping::tables`.
    pub tables: Vec<TableState>,
    /// The columns of every lookup's table, by table name (empty: no such table).
    pub lookup_tables: HashMap<String, Vec<Column>>,
    pub lookups: Lookups,
    /// Per table: normalized natural key → the existing row's ID.
    pub existing: Vec<HashMap<String, Key>>,
    /// References the ledger holds.
    pub done: HashSet<String>,
    /// The rows of imported records that records to import name as their parent.
    pub parents: HashMap<String, Vec<RowId>>,
    pub gap: i64,
}

#[derive(Default)]
pub struct TableState {
    /// Empty when the table does not exist.
    pub columns: Vec<Column>,
    /// For a table with a range: the highest value of its range column, and its counter's last
    /// issued value.
    pub max_id: i64,
    pub counter: Option<i64>,
    pub stored: Option<StoredRange>,
    /// The lowest range value at or above where this run would continue or start at its fixed
    /// offset: a row in the way.
    pub first_taken: Option<i64>,
}

impl TableState {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// The rows lookups found: per lookup site, key values → the column's value.
#[derive(Default)]
pub struct Lookups {
    sites: Vec<HashMap<Vec<String>, Value<'static>>>,
    /// Per site: keys that matched rows with different values (the smallest was taken).
    pub ambiguous: Vec<usize>,
}

impl Lookups {
    pub fn get(&self, site: usize, key: &[String]) -> Option<Value<'_>> {
        self.sites.get(site)?.get(key).map(|v| match v {
            Value::Text(t) => Value::Text(Cow::Borrowed(t.as_ref())),
            other => other.clone(),
        })
    }
}

/// Asks the target everything the plan needs, for the records not imported yet.
pub async fn gather(
    target: &Target,
    mapping: &Mapping,
    located: &[Located],
    gap: i64,
    secret: &[u8],
    payments: &Ledger,
) -> Result<Snapshot, ImportError> {
    let done = target.ledger_refs().await?;
    let stored = target.stored_ranges().await?;
    let mut tables = Vec::new();
    for spec in &mapping.tables {
        let mut state = TableState { columns: target.columns(&spec.name).await?, ..Default::default() };
        if let Some((column, offset)) = &spec.range {
            if let Some(col) = state.column(column).cloned() {
                state.max_id = target.max_of(&spec.name, column).await?;
                state.counter = target.counter(&spec.name, &col).await?;
                state.stored = stored.get(&spec.name).cloned();
                let candidate = match (&state.stored, offset) {
                    (Some(s), _) => s.open().map(|(next, _)| next),
                    (None, crate::config::Offset::Fixed(first)) => Some(*first),
                    (None, _) => None,
                };
                if let Some(from) = candidate {
                    state.first_taken = target.first_at_or_above(&spec.name, column, from).await?;
                }
            }
        }
        tables.push(state);
    }
    let mut lookup_tables = HashMap::new();
    for site in &mapping.lookups {
        if !lookup_tables.contains_key(&site.table) {
            lookup_tables.insert(site.table.clone(), target.columns(&site.table).await?);
        }
    }

    let pending: Vec<&Located> = located
        .iter()
        .filter(|l| mapping.forms.contains_key(&*l.record.form) && !done.contains(&l.reference))
        .collect();
    let mut snap = Snapshot {
        tables,
        lookup_tables,
        lookups: Lookups::default(),
        existing: vec![HashMap::new(); mapping.tables.len()],
        done,
        parents: HashMap::new(),
        gap,
    };
    gather_lookups(target, mapping, &pending, &mut snap, secret, payments).await?;
    gather_keys(target, mapping, &pending, &mut snap, secret, payments).await?;

    // The rows of already imported parents, from the ledger.
    let wanted: Vec<String> = pending
        .iter()
        .filter_map(|l| l.record.parent_ref.as_ref().map(|p| p.to_string()))
        .filter(|p| snap.done.contains(p))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for (reference, ids) in target.ledger_ids(&wanted).await? {
        snap.parents.insert(reference, ledger_rows(mapping, &ids));
    }
    Ok(snap)
}

/// The ledger's `{"table": [id, …]}` as rows, for `parent(…)`.
fn ledger_rows(mapping: &Mapping, ids: &str) -> Vec<RowId> {
    let parsed: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        serde_json::from_str(ids).unwrap_or_default();
    let mut rows = Vec::new();
    for (table, values) in parsed {
        let Some(t) = mapping.tables.iter().position(|s| s.name == table) else { continue };
        for v in values {
            let key = match v {
                serde_json::Value::Number(n) => n.as_i64().map(Key::Int).unwrap_or(Key::None),
                serde_json::Value::String(s) => Key::Text(s.into()),
                _ => Key::None,
            };
            rows.push(RowId { table: t, key, reserved: None, new: false });
        }
    }
    rows
}

/// Evaluation of keys happens before any ID exists: no rows, no parent.
fn key_scope<'a, 't>(
    l: &'a Located,
    entities: &'a [Entity],
    line: Option<usize>,
    truncated: &'t std::cell::Cell<u32>,
) -> Scope<'a, 't> {
    Scope {
        record: &l.record,
        reference: &l.reference,
        entities,
        line,
        rows: &[],
        parent: None,
        reserved_id: None,
        column_len: None,
        truncated,
    }
}

/// Fetches the rows every lookup needs, deepest-last (a lookup in another's key is fetched first).
async fn gather_lookups(
    target: &Target,
    mapping: &Mapping,
    pending: &[&Located],
    snap: &mut Snapshot,
    secret: &[u8],
    payments: &Ledger,
) -> Result<(), ImportError> {
    let sites = mapping.lookups.len();
    snap.lookups = Lookups { sites: vec![HashMap::new(); sites], ambiguous: vec![0; sites] };
    let depth = mapping.lookups.iter().map(|s| s.depth).max();
    for round in 0..=depth.unwrap_or(0) {
        if depth.is_none() {
            break;
        }
        let env = Env { lookups: &snap.lookups, secret, payments };
        let keys: Vec<HashSet<Vec<String>>> = pending
            .par_iter()
            .fold(
                || vec![HashSet::new(); sites],
                |mut acc, l| {
                    let truncated = std::cell::Cell::new(0);
                    let entities = &mapping.forms[&*l.record.form];
                    for e in entities {
                        for line in lines_of(e, &l.record) {
                            let scope = key_scope(l, entities, line, &truncated);
                            for a in &e.columns {
                                lookup_keys(&a.expr, mapping, round, &env, &scope, &mut acc);
                            }
                        }
                    }
                    acc
                },
            )
            .reduce(
                || vec![HashSet::new(); sites],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        x.extend(y);
                    }
                    a
                },
            );
        for (i, wanted) in keys.into_iter().enumerate() {
            let site = &mapping.lookups[i];
            if site.depth != round || wanted.is_empty() {
                continue;
            }
            let columns = &snap.lookup_tables[&site.table];
            let Some(col) = columns.iter().find(|c| c.name == site.column) else { continue };
            if !site.keys.iter().all(|k| columns.iter().any(|c| &c.name == k)) {
                continue;
            }
            let mut first: Vec<String> =
                wanted.iter().map(|k| k[0].clone()).collect::<HashSet<_>>().into_iter().collect();
            first.sort();
            let mut found: HashMap<Vec<String>, Value<'static>> = HashMap::new();
            for (key, value) in target.lookup_rows(&site.table, &site.column, &site.keys, &first).await? {
                if !wanted.contains(&key) {
                    continue;
                }
                let v = typed(value, col);
                match found.get(&key) {
                    Some(old) if *old == v => {}
                    Some(old) => {
                        snap.lookups.ambiguous[i] += 1;
                        if smaller(&v, old) {
                            found.insert(key, v);
                        }
                    }
                    None => {
                        found.insert(key, v);
                    }
                }
            }
            snap.lookups.sites[i] = found;
        }
    }
    Ok(())
}

fn smaller(a: &Value, b: &Value) -> bool {
    match (a.number(), b.number()) {
        (Some(x), Some(y)) => x < y,
        _ => a.to_string() < b.to_string(),
    }
}

/// A value read as text, typed by its column, so `lookup(…) * 2` is arithmetic.
fn typed(v: Option<String>, col: &Column) -> Value<'static> {
    let Some(t) = v else { return Value::Null };
    match col.kind {
        Kind::Int { .. } => t.parse().map(Value::Int).unwrap_or(Value::Text(Cow::Owned(t))),
        Kind::Decimal { .. } | Kind::Float => Decimal::parse(&t).map(Value::Dec).unwrap_or(Value::Text(Cow::Owned(t))),
        Kind::Bool => Value::Bool(matches!(t.as_str(), "t" | "true" | "1")),
        _ => Value::Text(Cow::Owned(t)),
    }
}

/// Adds the key values of the lookups of depth `round` in `x` to `out`.
fn lookup_keys(x: &Expr, mapping: &Mapping, round: usize, env: &Env, s: &Scope, out: &mut [HashSet<Vec<String>>]) {
    match x {
        Expr::Lookup(l) if mapping.lookups[l.site].depth == round => {
            let key: Result<Vec<String>, String> =
                l.keys.iter().map(|(_, k)| eval(k, env, s).map(|v| v.to_string())).collect();
            if let Ok(key) = key {
                out[l.site].insert(key);
            }
        }
        Expr::Call(Func::Sum, args) => {
            for i in 0..s.record.lines.len() {
                let inner = Scope { line: Some(i), ..*s };
                lookup_keys(&args[0], mapping, round, env, &inner, out);
            }
            return;
        }
        _ => {}
    }
    for c in x.children() {
        lookup_keys(c, mapping, round, env, s, out);
    }
}

/// Finds the existing rows of the records' natural keys.
async fn gather_keys(
    target: &Target,
    mapping: &Mapping,
    pending: &[&Located],
    snap: &mut Snapshot,
    secret: &[u8],
    payments: &Ledger,
) -> Result<(), ImportError> {
    let n = mapping.tables.len();
    let env = Env { lookups: &snap.lookups, secret, payments };
    let wanted: Vec<HashSet<String>> = pending
        .par_iter()
        .fold(
            || vec![HashSet::new(); n],
            |mut acc, l| {
                let truncated = std::cell::Cell::new(0);
                let entities = &mapping.forms[&*l.record.form];
                for e in entities.iter().filter(|e| e.natural_key.is_some()) {
                    let (_, how) = mapping.tables[e.table].natural_key.as_ref().expect("keyed");
                    for line in lines_of(e, &l.record) {
                        let scope = key_scope(l, entities, line, &truncated);
                        if let Ok(v) = eval(&e.columns[e.natural_key.expect("keyed")].expr, &env, &scope) {
                            if v != Value::Null {
                                acc[e.table].insert(how.normalize(&v.as_text()));
                            }
                        }
                    }
                }
                acc
            },
        )
        .reduce(
            || vec![HashSet::new(); n],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.extend(y);
                }
                a
            },
        );
    for (t, wanted) in wanted.into_iter().enumerate() {
        let spec = &mapping.tables[t];
        let (Some((key, how)), Some(id)) = (&spec.natural_key, spec.id_column()) else { continue };
        let state = &snap.tables[t];
        let (Some(id_col), Some(_)) = (state.column(id), state.column(key)) else { continue };
        if wanted.is_empty() {
            continue;
        }
        let how = *how;
        snap.existing[t] = target.keyed_rows(&spec.name, id_col, key, &move |s| how.normalize(s), &wanted).await?;
    }
    Ok(())
}
