//! The ID planner: a pure function of the records, the mapping and what the target knew
//! ([`Snapshot`]). It walks the records not imported yet in import order and gives each row
//! its key: a new ID from its table's reserved range, an existing row's ID found by natural
//! key, or a value the mapping derives (a UUID).
//!
//! Ranges: a run continues a reserved range an earlier, interrupted run left room in (so a
//! resumed import gives every row the ID an uninterrupted one would have); otherwise a table
//! starts at its fixed `offset` the first time, and every later range starts `gap` above both
//! the table's highest ID and its counter, so it never meets an ID the shop handed out.

use super::eval::{eval, truthy, Env, Scope};
use super::snapshot::Snapshot;
use super::source::Located;
use super::value::Value;
use crate::config::{Entity, Mapping, Offset};
use std::collections::{HashMap, HashSet};

/// The key of one row: what `id(…)` gives and the ledger keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// Given by the database (no range, no mapped key), or a composite key.
    None,
    Int(i64),
    Text(Box<str>),
}

impl Key {
    pub fn from_value(v: &Value) -> Key {
        match v {
            Value::Int(n) => Key::Int(*n),
            Value::Null => Key::None,
            other => Key::Text(other.to_string().into()),
        }
    }

    /// A key read back from the database or the ledger as text.
    pub fn from_text(s: &str) -> Key {
        match s.parse::<i64>() {
            Ok(n) => Key::Int(n),
            Err(_) => Key::Text(s.into()),
        }
    }
}

/// One row a record has in a table: made by it, or an existing one it reuses.
#[derive(Debug, Clone)]
pub struct RowId {
    /// Index into `Mapping::tables`.
    pub table: usize,
    pub key: Key,
    /// The value from the table's reserved range (the ID itself, or a separate number).
    pub reserved: Option<i64>,
    /// False when the row exists already (reused by natural key): nothing is inserted.
    pub new: bool,
}

pub struct Plan {
    pub tables: Vec<TablePlan>,
    /// The records to import, in import order.
    pub records: Vec<Planned>,
    /// Records imported by earlier runs (in the ledger).
    pub done: usize,
    /// Records that cannot be imported, found while planning: (index into the located
    /// records, why).
    pub bad: Vec<(usize, String)>,
}

pub struct Planned {
    /// Index into the located records.
    pub index: usize,
    /// In the order of the form's entities and lines.
    pub rows: Vec<RowId>,
    pub parent: Parent,
}

pub enum Parent {
    None,
    /// Index into `Plan::records`: imported in this run, before this record.
    Planned(usize),
    /// Imported by an earlier run: its rows as the ledger keeps them.
    Done(Vec<RowId>),
}

impl Plan {
    pub fn parent_rows<'p>(&'p self, p: &'p Planned) -> Option<&'p [RowId]> {
        match &p.parent {
            Parent::None => None,
            Parent::Planned(i) => Some(&self.records[*i].rows),
            Parent::Done(rows) => Some(rows),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TablePlan {
    pub name: String,
    pub range: Option<RangePlan>,
    /// The table's highest value in the range column, and its counter's last issued value
    /// (sequence, AUTO_INCREMENT, sqlite_sequence), when it has one.
    pub max_id: i64,
    pub counter: Option<i64>,
    pub new_rows: usize,
    pub reused: usize,
    /// New rows whose key the database gives (no range, no mapped key).
    pub by_database: bool,
}

#[derive(Debug, Clone)]
pub struct RangePlan {
    pub column: String,
    /// The first ID this run hands out; it hands out `count`.
    pub start: i64,
    pub count: i64,
    /// Where the reservation ends (exclusive): `start + count`, or further for a range an
    /// interrupted run reserved.
    pub end: i64,
    /// Where the reservation began (an interrupted run's start when continued).
    pub reserved_from: i64,
    pub how: RangeHow,
    /// A row that is not ours inside the range: the import must not run.
    pub taken: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeHow {
    /// In the room an interrupted run reserved.
    Continued,
    /// At the table's fixed `offset`.
    Offset,
    /// `gap` above the table's highest ID and counter.
    Auto,
}

/// How a row's key is decided before IDs are handed out.
#[derive(Clone)]
enum Decision {
    New,
    /// An existing row of the target.
    Existing(Key),
    /// The row an earlier record of this run creates: (record position, row position).
    Earlier(usize, usize),
    /// Not written: its entity's `when` does not hold.
    Skip,
}

pub fn make(mapping: &Mapping, located: &[Located], snap: &Snapshot, env: &Env, excluded: &HashSet<usize>) -> Plan {
    let mut plan = Plan {
        tables: mapping
            .tables
            .iter()
            .zip(&snap.tables)
            .map(|(t, s)| TablePlan {
                name: t.name.clone(),
                max_id: s.max_id,
                counter: s.counter,
                ..Default::default()
            })
            .collect(),
        records: Vec::new(),
        done: 0,
        bad: Vec::new(),
    };
    let uses_parent: HashSet<&str> = mapping
        .forms
        .iter()
        .filter(|(_, es)| {
            es.iter().any(|e| {
                e.update_parent
                    || e.columns.iter().any(|a| a.expr.any(&|x| matches!(x, crate::config::expr::Expr::Parent(_))))
            })
        })
        .map(|(f, _)| f.as_str())
        .collect();

    // Pass 1: which records go in, their parents, and which rows are new or reused.
    let mut decisions: Vec<Vec<Decision>> = Vec::new();
    let mut position: HashMap<&crate::record::Ref, usize> = HashMap::new();
    let mut bad_refs: HashSet<&crate::record::Ref> = HashSet::new();
    let mut keyed: Vec<HashMap<String, (usize, usize)>> = vec![HashMap::new(); mapping.tables.len()];
    let truncated = std::cell::Cell::new(0);
    for (index, l) in located.iter().enumerate() {
        let r = &l.record;
        let Some(entities) = mapping.forms.get(&*r.form) else { continue };
        if !snap.done.is_empty() && snap.done.contains(&l.reference) {
            plan.done += 1;
            continue;
        }
        if excluded.contains(&index) {
            bad_refs.insert(&r.reference);
            continue;
        }
        let parent = match (&r.parent_ref, uses_parent.contains(&*r.form)) {
            (Some(p), true) => {
                if let Some(&at) = position.get(p) {
                    Ok(Parent::Planned(at))
                } else if bad_refs.contains(p) {
                    Err(format!("its parent record {p} is not imported (it is bad)"))
                } else if let Some(rows) = snap.parents.get(&p.to_string()) {
                    Ok(Parent::Done(rows.clone()))
                } else if located.iter().any(|o| &o.record.reference == p) {
                    Err(format!("it comes before its parent record {p} in import order (are the nodes' clocks apart?)"))
                } else {
                    Err(format!(
                        "its parent record {p} is neither among the records given nor imported before (give its node's folder too)"
                    ))
                }
            }
            (None, true) if entities.iter().any(|e| e.update_parent) => Err("it has no parent record to update".into()),
            _ => Ok(Parent::None),
        };
        let parent = match parent {
            Ok(p) => p,
            Err(why) => {
                plan.bad.push((index, why));
                bad_refs.insert(&r.reference);
                continue;
            }
        };
        let mut ds = Vec::new();
        // Rows so far as `created(…)` in a condition sees them.
        let mut seen: Vec<RowId> = Vec::new();
        let mut new_keys: Vec<(usize, String, usize)> = Vec::new();
        let mut error = None;
        for e in entities.iter().filter(|e| !e.update_parent) {
            for line in lines_of(e, r) {
                let scope = Scope {
                    record: r,
                    reference: &l.reference,
                    entities,
                    line,
                    rows: &seen,
                    parent: None,
                    reserved_id: None,
                    column_len: None,
                    truncated: &truncated,
                };
                let wanted = match &e.when {
                    None => true,
                    Some(w) => eval(w, env, &scope).map(|v| truthy(&v)).unwrap_or_else(|m| {
                        error.get_or_insert(format!("{} (when): {m}", e.at));
                        false
                    }),
                };
                let decision = match e.natural_key {
                    _ if !wanted => Decision::Skip,
                    None => Decision::New,
                    Some(k) => match eval(&e.columns[k].expr, env, &scope) {
                        Err(m) => {
                            error.get_or_insert(format!(
                                "{}.{}: {m}",
                                mapping.tables[e.table].name, e.columns[k].column
                            ));
                            Decision::New
                        }
                        Ok(Value::Null) => Decision::New,
                        Ok(v) => {
                            let (_, how) = mapping.tables[e.table].natural_key.as_ref().expect("keyed");
                            let norm = how.normalize(&v.as_text());
                            if let Some((rec, row)) = keyed[e.table].get(&norm) {
                                Decision::Earlier(*rec, *row)
                            } else if let Some((_, _, row)) =
                                new_keys.iter().find(|(t, k, _)| *t == e.table && *k == norm)
                            {
                                Decision::Earlier(plan.records.len(), *row)
                            } else if let Some(existing) = snap.existing[e.table].get(&norm) {
                                Decision::Existing(existing.clone())
                            } else {
                                new_keys.push((e.table, norm, ds.len()));
                                Decision::New
                            }
                        }
                    },
                };
                seen.push(RowId {
                    table: e.table,
                    key: Key::None,
                    reserved: None,
                    new: matches!(decision, Decision::New),
                });
                ds.push(decision);
            }
        }
        if let Some(why) = error {
            plan.bad.push((index, why));
            bad_refs.insert(&r.reference);
            continue;
        }
        let at = plan.records.len();
        for (t, k, row) in new_keys {
            keyed[t].insert(k, (at, row));
        }
        if !uses_parent.is_empty() {
            position.insert(&r.reference, at);
        }
        plan.records.push(Planned { index, rows: Vec::new(), parent });
        decisions.push(ds);
    }

    // The ranges, now that the number of new rows per table is known.
    let mut counts = vec![(0usize, 0usize); mapping.tables.len()];
    for (p, ds) in plan.records.iter().zip(&decisions) {
        let entities = &mapping.forms[&*located[p.index].record.form];
        let mut d = ds.iter();
        for e in entities.iter().filter(|e| !e.update_parent) {
            for _ in lines_of(e, &located[p.index].record) {
                match d.next().expect("a decision per row") {
                    Decision::New => counts[e.table].0 += 1,
                    Decision::Skip => {}
                    _ => counts[e.table].1 += 1,
                }
            }
        }
    }
    for (t, (spec, state)) in mapping.tables.iter().zip(&snap.tables).enumerate() {
        let tp = &mut plan.tables[t];
        (tp.new_rows, tp.reused) = counts[t];
        let sets_key = mapping.forms.values().flatten().any(|e| e.table == t && e.key_column.is_some());
        tp.by_database = spec.range.is_none() && !sets_key && spec.id_column().is_some();
        let Some((column, offset)) = &spec.range else { continue };
        let n = counts[t].0 as i64;
        if n == 0 {
            continue;
        }
        let open = state
            .stored
            .as_ref()
            .and_then(|s| s.open())
            .filter(|(next, end)| n <= end - next && state.first_taken.is_none_or(|taken| taken >= next + n));
        let above = state.max_id.max(state.counter.unwrap_or(0)) + snap.gap.max(1);
        let range = match (open, offset) {
            (Some((next, end)), _) => RangePlan {
                column: column.clone(),
                start: next,
                count: n,
                end,
                reserved_from: state.stored.as_ref().map(|s| s.start).unwrap_or(next),
                how: RangeHow::Continued,
                taken: None,
            },
            (None, Offset::Fixed(first)) if state.stored.is_none() => RangePlan {
                column: column.clone(),
                start: *first,
                count: n,
                end: first + n,
                reserved_from: *first,
                how: RangeHow::Offset,
                taken: state.first_taken.filter(|taken| *taken < first + n),
            },
            _ => RangePlan {
                column: column.clone(),
                start: above,
                count: n,
                end: above + n,
                reserved_from: above,
                how: RangeHow::Auto,
                taken: None,
            },
        };
        tp.range = Some(range);
    }

    // Pass 2: hand out the IDs and derive the mapped keys, in import order.
    let mut next: Vec<i64> = plan.tables.iter().map(|t| t.range.as_ref().map(|r| r.start).unwrap_or(0)).collect();
    for (i, decided) in decisions.iter().enumerate() {
        let index = plan.records[i].index;
        let r = &located[index].record;
        let entities = &mapping.forms[&*r.form];
        let mut rows: Vec<RowId> = Vec::new();
        let mut d = decided.iter();
        let mut error = None;
        for e in entities.iter().filter(|e| !e.update_parent) {
            let spec = &mapping.tables[e.table];
            for line in lines_of(e, r) {
                let row = match d.next().expect("a decision per row") {
                    Decision::Skip => RowId { table: e.table, key: Key::None, reserved: None, new: false },
                    Decision::Existing(k) => RowId { table: e.table, key: k.clone(), reserved: None, new: false },
                    Decision::Earlier(rec, row) => {
                        let key =
                            if *rec == i { rows[*row].key.clone() } else { plan.records[*rec].rows[*row].key.clone() };
                        RowId { table: e.table, key, reserved: None, new: false }
                    }
                    Decision::New => {
                        let reserved = spec.range.as_ref().map(|_| {
                            let id = next[e.table];
                            next[e.table] += 1;
                            id
                        });
                        let key = match e.key_column {
                            Some(k) => {
                                let scope = Scope {
                                    record: r,
                                    reference: &located[index].reference,
                                    entities,
                                    line,
                                    rows: &rows,
                                    parent: plan.parent_rows(&plan.records[i]),
                                    reserved_id: reserved,
                                    column_len: None,
                                    truncated: &truncated,
                                };
                                match eval(&e.columns[k].expr, env, &scope) {
                                    Ok(v) => Key::from_value(&v),
                                    Err(m) => {
                                        error.get_or_insert(format!("{}.{}: {m}", spec.name, e.columns[k].column));
                                        Key::None
                                    }
                                }
                            }
                            None if spec.range_is_key() => Key::Int(reserved.expect("a range")),
                            None => Key::None,
                        };
                        RowId { table: e.table, key, reserved, new: true }
                    }
                };
                rows.push(row);
            }
        }
        if let Some(why) = error {
            plan.bad.push((index, why));
        }
        plan.records[i].rows = rows;
    }
    plan
}

/// The lines a row is made for: every line of the record for a per-line entity, else one.
pub fn lines_of(e: &Entity, r: &crate::record::Record) -> impl Iterator<Item = Option<usize>> {
    let n = if e.per_line { r.lines.len() } else { 1 };
    let per_line = e.per_line;
    (0..n).map(move |i| per_line.then_some(i))
}
