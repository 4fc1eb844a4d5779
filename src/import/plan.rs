//! The ID-range planner: walks every record in import order and gives each row its ID, from
//! its table's reserved range or from an existing row with the same natural key. The walk
//! covers records already imported too (their rows are not written again), so a resumed or
//! repeated import gives every record the same IDs as an uninterrupted one.

use super::db::{Target, Value};
use super::source::Located;
use super::ImportError;
use crate::config::{Config, EntityMap, Offset};
use crate::record::Record;
use std::collections::{BTreeMap, HashMap, HashSet};

pub struct Row {
    pub table: String,
    pub id: i64,
    pub columns: Vec<(String, Value)>,
}

pub struct PlannedRecord {
    pub reference: String,
    pub form: String,
    /// IDs this record has per table (created or reused), for the ledger.
    pub ids: BTreeMap<String, Vec<i64>>,
    pub rows: Vec<Row>,
    pub already: bool,
}

#[derive(Default)]
pub struct TablePlan {
    pub start: i64,
    pub auto: bool,
    /// New IDs handed out (including those of already imported records).
    pub count: i64,
    /// New IDs of records imported before (their rows are in the range already).
    pub count_done: i64,
    pub reused: i64,
    pub columns: BTreeMap<String, String>,
    pub id_column: String,
}

pub struct Plan {
    pub records: Vec<PlannedRecord>,
    pub tables: BTreeMap<String, TablePlan>,
    /// Tables in the order rows are written (parents before children).
    pub table_order: Vec<String>,
    pub stored_ranges: BTreeMap<String, i64>,
}

impl Plan {
    pub fn pending(&self) -> usize {
        self.records.iter().filter(|r| !r.already).count()
    }
}

pub async fn make(
    config: &Config,
    target: &Target,
    located: &[Located],
    done: &HashSet<String>,
) -> Result<Plan, ImportError> {
    let imp = &config.import;
    let mut table_order: Vec<String> = Vec::new();
    for entities in imp.forms.values() {
        for e in entities {
            if !table_order.contains(&e.table) {
                table_order.push(e.table.clone());
            }
        }
    }
    // Parents first: a table referenced by `id:`/`parent:` goes before the one referencing it.
    table_order.sort_by_key(|t| depth(imp.forms.values().flatten(), t, 0));

    let stored = target.stored_ranges().await?;
    let mut tables = BTreeMap::new();
    for t in &table_order {
        let map = &imp.tables[t];
        let columns = target.columns(t).await?;
        if columns.is_empty() {
            return Err(ImportError::Refused {
                table: t.clone(),
                detail: "no such table in the target database".into(),
            });
        }
        let mut needed: Vec<&str> = vec![map.id.as_str()];
        needed.extend(map.key.as_deref());
        for e in imp.forms.values().flatten().filter(|e| &e.table == t) {
            needed.extend(e.columns.keys().map(|s| s.as_str()));
        }
        for col in needed {
            if !columns.contains_key(col) {
                return Err(ImportError::Refused {
                    table: t.clone(),
                    detail: format!(
                        "no column {col:?} (columns: {})",
                        columns.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        let (start, auto) = match (stored.get(t), &map.offset) {
            (Some(s), _) => (*s, matches!(map.offset, Offset::Auto(_))),
            (None, Offset::Fixed(n)) => (*n, false),
            (None, Offset::Auto(_)) => (target.max_id(t, &map.id).await? + imp.gap.max(1), true),
        };
        tables.insert(
            t.clone(),
            TablePlan {
                start,
                auto,
                columns,
                id_column: map.id.clone(),
                ..Default::default()
            },
        );
    }

    // Natural keys that exist in the target already.
    let mut existing: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    for t in &table_order {
        let Some(key) = &imp.tables[t].key else {
            continue;
        };
        let mut values: Vec<String> = Vec::new();
        for l in located {
            for e in imp
                .forms
                .get(&l.record.form)
                .into_iter()
                .flatten()
                .filter(|e| &e.table == t)
            {
                if let Some(expr) = e.columns.get(key) {
                    if let Ok(Value::Text(v)) =
                        eval(expr, &l.record, None, &BTreeMap::new(), &HashMap::new())
                    {
                        values.push(v);
                    }
                }
            }
        }
        values.sort();
        values.dedup();
        existing.insert(
            t.clone(),
            target
                .ids_by_key(t, &imp.tables[t].id, key, &values)
                .await?,
        );
    }

    let mut records = Vec::with_capacity(located.len());
    let mut by_ref: HashMap<String, BTreeMap<String, Vec<i64>>> = HashMap::new();
    let mut keyed: HashMap<(String, String), i64> = HashMap::new();
    for l in located {
        let r = &l.record;
        let reference = r.reference.to_string();
        let already = done.contains(&reference);
        let mut ids: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut rows = Vec::new();
        let parent_ids = r
            .parent_ref
            .as_ref()
            .and_then(|p| by_ref.get(&p.to_string()))
            .cloned()
            .unwrap_or_default();
        for e in imp.forms.get(&r.form).into_iter().flatten() {
            let lines: Vec<Option<usize>> = if e.per.is_some() {
                (0..r.lines.len()).map(Some).collect()
            } else {
                vec![None]
            };
            for line in lines {
                let mut cols = Vec::with_capacity(e.columns.len());
                for (col, expr) in &e.columns {
                    let v = eval(
                        expr,
                        r,
                        line,
                        &ids,
                        &HashMap::from([("parent", &parent_ids)]),
                    )
                    .map_err(|m| ImportError::Record {
                        at: format!("{}:{}", l.path.display(), l.line),
                        message: format!("{}.{col}: {m}", e.table),
                    })?;
                    cols.push((col.clone(), v));
                }
                let plan = tables.get_mut(&e.table).expect("planned above");
                let key_value = imp.tables[&e.table].key.as_ref().and_then(|k| {
                    cols.iter()
                        .find(|(c, _)| c == k)
                        .and_then(|(_, v)| match v {
                            Value::Text(s) => Some(s.clone()),
                            Value::Int(n) => Some(n.to_string()),
                            _ => None,
                        })
                });
                let reused = key_value.as_ref().and_then(|k| {
                    keyed
                        .get(&(e.table.clone(), k.clone()))
                        .copied()
                        .or_else(|| {
                            // A row of ours from an earlier run counts as new, so IDs stay stable.
                            existing
                                .get(&e.table)
                                .and_then(|m| m.get(k))
                                .copied()
                                .filter(|id| *id < plan.start)
                        })
                });
                let id = match reused {
                    Some(id) => {
                        plan.reused += 1;
                        id
                    }
                    None => {
                        let id = plan.start + plan.count;
                        plan.count += 1;
                        if already {
                            plan.count_done += 1;
                        } else {
                            rows.push(Row {
                                table: e.table.clone(),
                                id,
                                columns: cols,
                            });
                        }
                        if let Some(k) = key_value {
                            keyed.insert((e.table.clone(), k), id);
                        }
                        id
                    }
                };
                ids.entry(e.table.clone()).or_default().push(id);
            }
        }
        by_ref.insert(reference.clone(), ids.clone());
        records.push(PlannedRecord {
            reference,
            form: r.form.clone(),
            ids,
            rows,
            already,
        });
    }
    Ok(Plan {
        records,
        tables,
        table_order,
        stored_ranges: stored,
    })
}

fn depth<'a>(
    entities: impl Iterator<Item = &'a EntityMap> + Clone,
    table: &str,
    level: usize,
) -> usize {
    if level > 8 {
        return level;
    }
    let refs: HashSet<String> = entities
        .clone()
        .filter(|e| e.table == table)
        .flat_map(|e| e.columns.values())
        .filter_map(|v| v.as_str())
        .filter_map(|s| s.strip_prefix("id:").or_else(|| s.strip_prefix("parent:")))
        .filter(|t| *t != table)
        .map(String::from)
        .collect();
    refs.iter()
        .map(|t| 1 + depth(entities.clone(), t, level + 1))
        .max()
        .unwrap_or(0)
}

/// Evaluates one column expression for a record (and, for per-line entities, one of its lines).
fn eval(
    expr: &toml::Value,
    r: &Record,
    line: Option<usize>,
    ids: &BTreeMap<String, Vec<i64>>,
    linked: &HashMap<&str, &BTreeMap<String, Vec<i64>>>,
) -> Result<Value, String> {
    let s = match expr {
        toml::Value::Integer(n) => return Ok(Value::Int(*n)),
        toml::Value::Boolean(b) => return Ok(Value::Int(*b as i64)),
        toml::Value::String(s) => s.as_str(),
        other => return Err(format!("unsupported literal {other}")),
    };
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        return Ok(Value::Text(s[1..s.len() - 1].to_string()));
    }
    let text = |o: Option<&String>| o.map(|v| Value::Text(v.clone())).unwrap_or(Value::Null);
    Ok(match s.split_once(':') {
        None => match s {
            "ref" => Value::Text(r.reference.to_string()),
            "form" => Value::Text(r.form.clone()),
            "received_at" => Value::Time(r.received_at),
            "total_cents" => r
                .total_cents
                .map(|t| Value::Int(t as i64))
                .unwrap_or(Value::Null),
            "currency" => text(r.currency.as_ref()),
            other => return Err(format!("unknown expression {other:?}")),
        },
        Some(("field", name)) => text(r.fields.get(name)),
        Some(("int", name)) => match r.fields.get(name).map(|v| v.parse::<i64>()) {
            Some(Ok(n)) => Value::Int(n),
            Some(Err(_)) => return Err(format!("field {name:?} is not a whole number")),
            None => Value::Null,
        },
        Some(("meta", "ip")) => text(r.meta.ip.as_ref()),
        Some(("meta", "user_agent")) => text(r.meta.user_agent.as_ref()),
        Some(("line", what)) => {
            let l = line
                .and_then(|i| r.lines.get(i))
                .ok_or("line: outside a per = \"line\" entity")?;
            match what {
                "sku" => Value::Text(l.sku.clone()),
                "name" => Value::Text(l.name.clone()),
                "quantity" => Value::Int(l.quantity as i64),
                "unit_cents" => Value::Int(l.unit_cents as i64),
                "total_cents" => Value::Int(l.total_cents as i64),
                other => return Err(format!("unknown line value {other:?}")),
            }
        }
        Some(("id", table)) => match ids.get(table).and_then(|v| v.first()) {
            Some(id) => Value::Int(*id),
            None => {
                return Err(format!(
                    "id:{table}: this record has no {table} row yet (list that entity first)"
                ))
            }
        },
        Some(("parent", table)) => {
            if r.parent_ref.is_none() {
                return Err(format!(
                    "parent:{table}: the record has no parent reference"
                ));
            }
            match linked
                .get("parent")
                .and_then(|m| m.get(table))
                .and_then(|v| v.first())
            {
                Some(id) => Value::Int(*id),
                None => {
                    return Err(format!(
                        "parent:{table}: parent record {} is not among the collected records",
                        r.parent_ref.as_ref().unwrap()
                    ))
                }
            }
        }
        _ => return Err(format!("unknown expression {s:?}")),
    })
}
