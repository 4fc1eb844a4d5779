//! The plan checked against the live schema, before anything is written: every mapped column
//! exists, every NOT NULL column without a default is covered, every value of every record fits
//! its column, every lookup finds its row, every linked record's parent is there, no reserved
//! range holds a row that is not ours. The dry run shows the result; the real run refuses on it.

use super::db::Dialect;
use super::eval::Env;
use super::plan::Plan;
use super::rows::{build, Layouts};
use super::snapshot::Snapshot;
use super::source::Located;
use crate::config::Mapping;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

/// Something the real run would fail on.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The record it is about; `None` for the schema or the mapping as a whole.
    pub record: Option<RecordAt>,
    /// Where: `table.column`, or the mapping entity.
    pub place: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct RecordAt {
    /// Index into the located records.
    pub index: usize,
    pub reference: String,
    pub path: PathBuf,
    pub line: usize,
}

impl RecordAt {
    pub fn of(index: usize, l: &Located) -> RecordAt {
        RecordAt { index, reference: l.reference.clone(), path: l.path.to_path_buf(), line: l.line }
    }
}

/// A few rows of one entity, as they will be written.
pub struct Sample {
    pub table: String,
    pub at: String,
    pub update: bool,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub struct Findings {
    pub problems: Vec<Problem>,
    pub samples: Vec<Sample>,
    /// (table, column, values `truncate` shortened).
    pub truncated: Vec<(String, String, usize)>,
    /// Lookups whose key matched rows with different values: (table.column, how many keys).
    pub ambiguous: Vec<(String, usize)>,
}

/// Values `truncate` shortened, per (entity, column).
type Truncations = HashMap<(usize, usize), usize>;

pub fn check(
    mapping: &Mapping,
    snap: &Snapshot,
    plan: &Plan,
    located: &[Located],
    env: &Env,
    dialect: Dialect,
) -> Findings {
    let layouts = Layouts::new(mapping, snap);
    let mut problems = schema_problems(mapping, snap, plan, &layouts);
    for (index, why) in &plan.bad {
        problems.push(Problem {
            record: Some(RecordAt::of(*index, &located[*index])),
            place: located[*index].record.form.to_string(),
            message: why.clone(),
        });
    }

    // Every row of every record, on every core.
    let per_record: Vec<(Vec<Problem>, Truncations)> = plan
        .records
        .par_iter()
        .map(|p| match build(mapping, &layouts, plan, p, located, env, dialect) {
            Ok(built) => {
                let mut t = HashMap::new();
                for k in built.truncated {
                    *t.entry(k).or_default() += 1;
                }
                (Vec::new(), t)
            }
            Err(misfits) => {
                let at = RecordAt::of(p.index, &located[p.index]);
                let found = misfits
                    .into_iter()
                    .map(|m| {
                        let layout = &layouts.entities[m.entity];
                        let table = &mapping.tables[layout.table].name;
                        let place = if m.column.is_empty() { table.clone() } else { format!("{table}.{}", m.column) };
                        let line = m.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                        Problem { record: Some(at.clone()), place, message: format!("{}{line}", m.message) }
                    })
                    .collect();
                (found, HashMap::new())
            }
        })
        .collect();
    let mut truncated = Truncations::new();
    for (found, t) in per_record {
        problems.extend(found);
        for (k, n) in t {
            *truncated.entry(k).or_default() += n;
        }
    }
    let mut truncated: Vec<(String, String, usize)> = truncated
        .into_iter()
        .map(|((e, c), n)| {
            let layout = &layouts.entities[e];
            (mapping.tables[layout.table].name.clone(), layout.columns[c].name.clone(), n)
        })
        .collect();
    truncated.sort();

    let ambiguous = mapping
        .lookups
        .iter()
        .zip(&snap.lookups.ambiguous)
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| (format!("{}.{}", s.table, s.column), *n))
        .collect();
    Findings { problems, samples: samples(mapping, &layouts, plan, located, env, dialect), truncated, ambiguous }
}

/// What the schema says of the mapping as a whole.
fn schema_problems(mapping: &Mapping, snap: &Snapshot, plan: &Plan, layouts: &Layouts) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut say = |place: String, message: String| out.push(Problem { record: None, place, message });
    for (t, (spec, state)) in mapping.tables.iter().zip(&snap.tables).enumerate() {
        if state.columns.is_empty() {
            say(spec.name.clone(), "no such table in the target database".into());
            continue;
        }
        let mut needed: Vec<(&str, &str)> = spec.key.columns().into_iter().map(|c| (c, "key column")).collect();
        needed.extend(spec.range.as_ref().map(|(c, _)| (c.as_str(), "range column")));
        needed.extend(spec.natural_key.as_ref().map(|(c, _)| (c.as_str(), "natural key")));
        for (c, what) in needed {
            if state.column(c).is_none() {
                say(
                    format!("{}.{c}", spec.name),
                    format!("no such column (the {what} of [import.tables.{}]); {}", spec.name, columns_of(state, c)),
                );
            }
        }
        if let Some(r) = plan.tables[t].range.as_ref() {
            if let Some(taken) = r.taken {
                say(
                    spec.name.clone(),
                    format!(
                        "the reserved range of {} ({}..={}) holds rows that are not ours, from {} {taken}: choose another offset",
                        spec.name,
                        r.start,
                        r.start + r.count - 1,
                        r.column
                    ),
                );
            }
        }
    }
    for layout in &layouts.entities {
        let state = &snap.tables[layout.table];
        if state.columns.is_empty() {
            continue;
        }
        let table = &mapping.tables[layout.table].name;
        for c in &layout.columns[layout.ranged as usize..] {
            match state.column(&c.name) {
                None => say(
                    format!("{table}.{}", c.name),
                    format!("no such column ({}); {}", layout.at, columns_of(state, &c.name)),
                ),
                Some(col) if col.generated => say(
                    format!("{table}.{}", c.name),
                    format!("is computed by the database: {} cannot write it", layout.at),
                ),
                Some(_) => {}
            }
        }
        if layout.update {
            continue;
        }
        for col in &state.columns {
            let covered = layout.columns.iter().any(|c| c.name == col.name);
            if !col.nullable && !col.has_default && !col.generated && !covered {
                say(
                    format!("{table}.{}", col.name),
                    format!("is NOT NULL without a default, and {} does not set it", layout.at),
                );
            }
        }
    }
    for site in &mapping.lookups {
        let columns = &snap.lookup_tables[&site.table];
        if columns.is_empty() {
            say(site.table.clone(), "no such table in the target database (a lookup reads it)".into());
            continue;
        }
        for c in site.keys.iter().chain(std::iter::once(&site.column)) {
            if !columns.iter().any(|x| &x.name == c) {
                let state = super::snapshot::TableState { columns: columns.clone(), ..Default::default() };
                say(
                    format!("{}.{c}", site.table),
                    format!("no such column (a lookup reads it); {}", columns_of(&state, c)),
                );
            }
        }
    }
    out
}

/// "did you mean …; columns: …" for a column that is not there.
fn columns_of(state: &super::snapshot::TableState, wanted: &str) -> String {
    let near = state
        .columns
        .iter()
        .map(|c| (crate::suggest::edit_distance(wanted, &c.name), c.name.as_str()))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| format!("did you mean {n:?}? "))
        .unwrap_or_default();
    let names: Vec<&str> = state.columns.iter().map(|c| c.name.as_str()).collect();
    format!("{near}columns: {}", names.join(", "))
}

/// The first rows of every entity, as they will be written.
fn samples(
    mapping: &Mapping,
    layouts: &Layouts,
    plan: &Plan,
    located: &[Located],
    env: &Env,
    dialect: Dialect,
) -> Vec<Sample> {
    const ROWS: usize = 3;
    let mut out: Vec<Sample> = layouts
        .entities
        .iter()
        .map(|l| Sample {
            table: mapping.tables[l.table].name.clone(),
            at: l.at.clone(),
            update: l.update,
            // An update's first cell says which row it changes.
            columns: l
                .update
                .then(|| mapping.tables[l.table].id_column().unwrap_or("id").to_string())
                .into_iter()
                .chain(l.columns.iter().map(|c| c.name.clone()))
                .collect(),
            rows: Vec::new(),
        })
        .collect();
    for p in plan.records.iter().take(10_000) {
        if out.iter().all(|s| s.rows.len() >= ROWS) {
            break;
        }
        let Ok(built) = build(mapping, layouts, plan, p, located, env, dialect) else { continue };
        for row in built.rows {
            let s = &mut out[row.entity];
            if s.rows.len() < ROWS {
                s.rows.push(row.cells.iter().map(|c| c.to_string()).collect());
            }
        }
        for u in built.updates {
            let s = &mut out[u.entity];
            if s.rows.len() < ROWS {
                let mut shown = vec![super::eval::key_value(&u.key).to_string()];
                shown.extend(u.values.iter().map(|v| match v {
                    super::rows::Change::Set(c) => format!("= {c}"),
                    super::rows::Change::Add(d) => format!("+= {d}"),
                    super::rows::Change::Keep => "unchanged".into(),
                }));
                s.rows.push(shown);
            }
        }
    }
    out.retain(|s| !s.rows.is_empty());
    out
}
