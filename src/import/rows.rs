//! The rows one planned record becomes, cell by cell, exactly as the database receives them.
//! The check (dry run and real run alike) and the writer both build rows here, so the sample
//! rows the plan shows are the rows written, and a value that would not fit is found before
//! anything is written.

use super::db::Dialect;
use super::eval::{eval, truthy, Env, Scope};
use super::plan::{lines_of, Key, Plan, Planned};
use super::snapshot::Snapshot;
use super::source::Located;
use super::value::{fit, Cell, Column, Kind, Value};
use crate::config::Mapping;
use crate::decimal::Decimal;
use std::collections::HashMap;

/// Every entity of every form, with the target columns it writes, numbered once.
pub struct Layouts {
    /// Form → the number of its first entity.
    first: HashMap<String, usize>,
    pub entities: Vec<Layout>,
}

pub struct Layout {
    pub table: usize,
    /// `import.forms.FORM.N`
    pub at: String,
    pub update: bool,
    /// The columns written, in order: the range column (when the importer gives it), then
    /// the mapped ones.
    pub columns: Vec<Column>,
    /// The first column is the range column.
    pub ranged: bool,
}

impl Layouts {
    pub fn new(mapping: &Mapping, snap: &Snapshot) -> Layouts {
        let mut first = HashMap::new();
        let mut entities = Vec::new();
        for (form, es) in &mapping.forms {
            first.insert(form.clone(), entities.len());
            for e in es {
                let state = &snap.tables[e.table];
                let spec = &mapping.tables[e.table];
                let column = |name: &str| {
                    state.column(name).cloned().unwrap_or_else(|| Column {
                        // A missing column is a schema problem of its own; records are still
                        // checked through a column that takes anything.
                        name: name.to_string(),
                        sql_type: "?".into(),
                        kind: Kind::Other,
                        nullable: true,
                        has_default: true,
                        generated: false,
                        max_chars: None,
                    })
                };
                let range = spec.range.as_ref().filter(|_| !e.update_parent).map(|(c, _)| c.as_str());
                let columns: Vec<Column> =
                    range.into_iter().chain(e.columns.iter().map(|a| a.column.as_str())).map(column).collect();
                entities.push(Layout {
                    table: e.table,
                    at: e.at.clone(),
                    update: e.update_parent,
                    columns,
                    ranged: range.is_some(),
                });
            }
        }
        Layouts { first, entities }
    }

    pub fn first_of(&self, form: &str) -> usize {
        self.first[form]
    }
}

/// One row to insert.
pub struct Row<'a> {
    /// Index into `Layouts::entities`.
    pub entity: usize,
    pub cells: Vec<Cell<'a>>,
}

/// An update of a parent's row: `set` columns to values, `add` amounts to columns.
pub struct Update<'a> {
    pub entity: usize,
    pub table: usize,
    pub key: Key,
    /// Per column of the layout: a value to set, or an amount to add.
    pub values: Vec<Change<'a>>,
}

pub enum Change<'a> {
    Set(Cell<'a>),
    Add(Decimal),
    /// Adding null: nothing changes.
    Keep,
}

/// A value that does not fit, or could not be made.
pub struct Misfit {
    pub entity: usize,
    pub column: String,
    /// 1-based line number for a per-line row.
    pub line: Option<usize>,
    pub message: String,
}

pub struct Built<'a> {
    pub rows: Vec<Row<'a>>,
    pub updates: Vec<Update<'a>>,
    /// Per layout column of an entity: values `truncate` shortened, as (entity, column index).
    pub truncated: Vec<(usize, usize)>,
}

/// The rows and updates of planned record `p`, or everything about them that does not fit.
pub fn build<'a>(
    mapping: &'a Mapping,
    layouts: &'a Layouts,
    plan: &'a Plan,
    p: &'a Planned,
    located: &'a [Located],
    env: &Env<'a>,
    dialect: Dialect,
) -> Result<Built<'a>, Vec<Misfit>> {
    let r = &located[p.index].record;
    let reference = &located[p.index].reference;
    let entities = &mapping.forms[&*r.form];
    let base = layouts.first_of(&r.form);
    let parent = plan.parent_rows(p);
    let mut out = Built { rows: Vec::new(), updates: Vec::new(), truncated: Vec::new() };
    let mut misfits = Vec::new();
    let mut at = 0;
    let truncated = std::cell::Cell::new(0);
    for (j, e) in entities.iter().enumerate() {
        let layout = &layouts.entities[base + j];
        let skip = layout.ranged as usize;
        if e.update_parent {
            if let Some(w) = &e.when {
                let scope = Scope {
                    record: r,
                    reference,
                    entities,
                    line: None,
                    rows: &p.rows,
                    parent,
                    reserved_id: None,
                    column_len: None,
                    truncated: &truncated,
                };
                match eval(w, env, &scope) {
                    Ok(v) if truthy(&v) => {}
                    Ok(_) => continue,
                    Err(message) => {
                        misfits.push(Misfit { entity: base + j, column: "when".into(), line: None, message });
                        continue;
                    }
                }
            }
            let key = parent
                .and_then(|rows| rows.iter().find(|row| row.table == e.table))
                .map(|row| row.key.clone())
                .unwrap_or(Key::None);
            if key == Key::None {
                misfits.push(Misfit {
                    entity: base + j,
                    column: String::new(),
                    line: None,
                    message: format!("the parent record has no {} row to update", mapping.tables[e.table].name),
                });
                continue;
            }
            let scope = Scope {
                record: r,
                reference,
                entities,
                line: None,
                rows: &p.rows,
                parent,
                reserved_id: None,
                column_len: None,
                truncated: &truncated,
            };
            let mut values = Vec::with_capacity(e.columns.len());
            for (k, a) in e.columns.iter().enumerate() {
                let column = &layout.columns[k];
                let change = match eval(&a.expr, env, &Scope { column_len: column.max_chars, ..scope }) {
                    Err(m) => Err(m),
                    Ok(Value::Null) if a.add => Ok(Change::Keep),
                    Ok(v) if a.add => match (v.number(), &column.kind) {
                        (Some(d), Kind::Int { .. } | Kind::Decimal { .. } | Kind::Float | Kind::Other) => {
                            Ok(Change::Add(d))
                        }
                        (Some(_), _) => Err(format!("is {}: add needs a number column", column.sql_type)),
                        (None, _) => Err(format!("add needs a number, the value is {}", v.kind())),
                    },
                    Ok(v) => fit(v, column, dialect).map(Change::Set),
                };
                match change {
                    Ok(c) => values.push(c),
                    Err(message) => {
                        misfits.push(Misfit { entity: base + j, column: a.column.clone(), line: None, message })
                    }
                }
            }
            out.updates.push(Update { entity: base + j, table: e.table, key, values });
            continue;
        }
        for line in lines_of(e, r) {
            let row = &p.rows[at];
            at += 1;
            if !row.new {
                continue;
            }
            let mut cells = Vec::with_capacity(layout.columns.len());
            if layout.ranged {
                cells.push(Cell::Int(row.reserved.expect("a ranged row has its ID")));
            }
            for (k, a) in e.columns.iter().enumerate() {
                let column = &layout.columns[skip + k];
                let before = truncated.get();
                let scope = Scope {
                    record: r,
                    reference,
                    entities,
                    line,
                    rows: &p.rows[..at],
                    parent,
                    reserved_id: row.reserved,
                    column_len: column.max_chars,
                    truncated: &truncated,
                };
                match eval(&a.expr, env, &scope).and_then(|v| fit(v, column, dialect)) {
                    Ok(c) => cells.push(c),
                    Err(message) => {
                        misfits.push(Misfit {
                            entity: base + j,
                            column: a.column.clone(),
                            line: line.map(|l| l + 1),
                            message,
                        });
                        cells.push(Cell::Null);
                    }
                }
                if truncated.get() > before {
                    out.truncated.push((base + j, skip + k));
                }
            }
            out.rows.push(Row { entity: base + j, cells });
        }
    }
    if misfits.is_empty() {
        Ok(out)
    } else {
        Err(misfits)
    }
}
