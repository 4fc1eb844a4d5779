//! The ID-range planner: walks every record in import order and gives each row its ID, from
//! its table's reserved range or from an existing row with the same natural key. The walk
//! covers records already imported too (their rows are not written again), so a resumed or
//! repeated import gives every record the same IDs as an uninterrupted one.
//!
//! The plan keeps only IDs; the rows of a batch are made from the records when it is written
//! ([`Plan::rows`]), by the same walk, so a million records do not sit in memory twice.

use super::db::{Target, Value};
use super::source::Located;
use super::ImportError;
use crate::config::{Config, EntityMap, Offset};
use crate::record::{Line, Record, Ref};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A column expression, parsed once (the forms are listed at `EntityMap::columns`).
#[derive(Debug, Clone)]
enum Expr {
    Ref,
    Form,
    ReceivedAt,
    TotalCents,
    Currency,
    Field(String),
    Int(String),
    Ip,
    UserAgent,
    Line(LineValue),
    /// The ID this record got in a table (by index), e.g. an order's user.
    Id(usize),
    /// The ID the linked (parent) record got in a table, e.g. a one-time offer's order.
    Parent(usize),
    Literal(Value),
}

#[derive(Debug, Clone, Copy)]
enum LineValue {
    Sku,
    Name,
    Quantity,
    UnitCents,
    TotalCents,
}

/// The rows one record (or each of its order lines) becomes in one table.
pub struct Entity {
    pub table: usize,
    per_line: bool,
    pub columns: Vec<String>,
    exprs: Vec<Expr>,
    /// Position of the table's natural key among `columns`.
    key: Option<usize>,
}

#[derive(Default)]
pub struct TablePlan {
    pub name: String,
    pub id_column: String,
    pub start: i64,
    pub auto: bool,
    /// New IDs handed out (including those of already imported records).
    pub count: i64,
    /// New IDs of records imported before (their rows are in the range already).
    pub count_done: i64,
    pub reused: i64,
    /// Column name → SQL type in the target.
    pub types: BTreeMap<String, String>,
}

impl TablePlan {
    /// The reserved range, inclusive, when it holds any ID.
    pub fn range(&self) -> Option<(i64, i64)> {
        (self.count > 0).then(|| (self.start, self.start + self.count - 1))
    }
}

/// One ID a record has in a table: created by it, or reused by natural key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Id {
    pub table: usize,
    pub id: i64,
    pub new: bool,
}

pub struct PlannedRecord {
    /// Index into the located records the plan was made from.
    pub index: usize,
    /// In the walk order of entities and lines.
    pub ids: Vec<Id>,
    pub already: bool,
}

/// A row to insert.
pub struct Row<'p> {
    pub entity: &'p Entity,
    pub id: i64,
    pub values: Vec<Value>,
}

pub struct Plan {
    /// In the order rows are written: parents before the tables referencing them.
    pub tables: Vec<TablePlan>,
    forms: HashMap<String, Vec<Entity>>,
    pub records: Vec<PlannedRecord>,
    /// Record reference → index into `records`, for `parent:` links.
    by_ref: HashMap<Ref, usize>,
    pub stored_ranges: BTreeMap<String, i64>,
}

impl Plan {
    pub fn pending(&self) -> usize {
        self.records.iter().filter(|r| !r.already).count()
    }

    /// The rows planned record `p` creates (reused IDs create none).
    pub fn rows<'p>(&'p self, p: &PlannedRecord, located: &[Located]) -> Result<Vec<Row<'p>>, ImportError> {
        let r = &located[p.index].record;
        let parent = self.parent_ids(r);
        let mut rows = Vec::new();
        let mut at = 0;
        for e in self.forms.get(&r.form).into_iter().flatten() {
            for line in lines_of(e, r) {
                let id = p.ids[at];
                at += 1;
                if id.new {
                    let values = e
                        .exprs
                        .iter()
                        .map(|x| self.eval(x, r, line, &p.ids[..at - 1], parent))
                        .collect::<Result<_, _>>()
                        .map_err(|m| record_error(&located[p.index], m))?;
                    rows.push(Row { entity: e, id: id.id, values });
                }
            }
        }
        Ok(rows)
    }

    /// Table name → the IDs the record has there, as the ledger keeps them.
    pub fn ledger_ids(&self, p: &PlannedRecord) -> String {
        let mut by_table: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for id in &p.ids {
            by_table.entry(&self.tables[id.table].name).or_default().push(id.id);
        }
        serde_json::to_string(&by_table).expect("ids serialize")
    }

    fn parent_ids(&self, r: &Record) -> Option<&[Id]> {
        let parent = self.by_ref.get(r.parent_ref.as_ref()?)?;
        Some(&self.records[*parent].ids)
    }

    fn eval(
        &self,
        x: &Expr,
        r: &Record,
        line: Option<&Line>,
        own: &[Id],
        parent: Option<&[Id]>,
    ) -> Result<Value, String> {
        let text = |o: Option<&String>| o.map(|v| Value::Text(v.clone())).unwrap_or(Value::Null);
        let first = |ids: &[Id], t: usize| ids.iter().find(|i| i.table == t).map(|i| Value::Int(i.id));
        Ok(match x {
            Expr::Ref => Value::Text(r.reference.to_string()),
            Expr::Form => Value::Text(r.form.clone()),
            Expr::ReceivedAt => Value::Time(r.received_at),
            Expr::TotalCents => r.total_cents.map(|t| Value::Int(t as i64)).unwrap_or(Value::Null),
            Expr::Currency => text(r.currency.as_ref()),
            Expr::Field(name) => text(r.fields.get(name)),
            Expr::Int(name) => match r.fields.get(name).map(|v| v.parse::<i64>()) {
                Some(Ok(n)) => Value::Int(n),
                Some(Err(_)) => return Err(format!("field {name:?} is not a whole number")),
                None => Value::Null,
            },
            Expr::Ip => text(r.meta.ip.as_ref()),
            Expr::UserAgent => text(r.meta.user_agent.as_ref()),
            Expr::Line(what) => {
                let l = line.ok_or("line: outside a per = \"line\" entity")?;
                match what {
                    LineValue::Sku => Value::Text(l.sku.clone()),
                    LineValue::Name => Value::Text(l.name.clone()),
                    LineValue::Quantity => Value::Int(l.quantity as i64),
                    LineValue::UnitCents => Value::Int(l.unit_cents as i64),
                    LineValue::TotalCents => Value::Int(l.total_cents as i64),
                }
            }
            Expr::Id(t) => first(own, *t).ok_or_else(|| {
                let name = &self.tables[*t].name;
                format!("id:{name}: this record has no {name} row yet (list that entity first)")
            })?,
            Expr::Parent(t) => {
                let name = &self.tables[*t].name;
                let Some(p) = &r.parent_ref else {
                    return Err(format!("parent:{name}: the record has no parent reference"));
                };
                parent
                    .and_then(|ids| first(ids, *t))
                    .ok_or_else(|| format!("parent:{name}: parent record {p} is not among the collected records"))?
            }
            Expr::Literal(v) => v.clone(),
        })
    }
}

fn lines_of<'r>(e: &Entity, r: &'r Record) -> Vec<Option<&'r Line>> {
    if e.per_line {
        r.lines.iter().map(Some).collect()
    } else {
        vec![None]
    }
}

fn record_error(l: &Located, message: String) -> ImportError {
    ImportError::Record { at: format!("{}:{}", l.path.display(), l.line), message }
}

pub async fn make(
    config: &Config,
    target: &Target,
    located: &[Located],
    done: &HashSet<String>,
) -> Result<Plan, ImportError> {
    let imp = &config.import;
    let mut names: Vec<String> = Vec::new();
    for e in imp.forms.values().flatten() {
        if !names.contains(&e.table) {
            names.push(e.table.clone());
        }
    }
    // Parents first: a table referenced by `id:`/`parent:` goes before the one referencing it.
    names.sort_by_key(|t| depth(imp.forms.values().flatten(), t, 0));
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();

    let stored = target.stored_ranges().await?;
    let mut tables = Vec::with_capacity(names.len());
    for t in &names {
        let map = &imp.tables[t];
        let types = target.columns(t).await?;
        if types.is_empty() {
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
            if !types.contains_key(col) {
                let have = types.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(ImportError::Refused {
                    table: t.clone(),
                    detail: format!("no column {col:?} (columns: {have})"),
                });
            }
        }
        let (start, auto) = match (stored.get(t), &map.offset) {
            (Some(s), _) => (*s, matches!(map.offset, Offset::Auto(_))),
            (None, Offset::Fixed(n)) => (*n, false),
            (None, Offset::Auto(_)) => (target.max_id(t, &map.id).await? + imp.gap.max(1), true),
        };
        tables.push(TablePlan { name: t.clone(), id_column: map.id.clone(), start, auto, types, ..Default::default() });
    }

    let mut forms = HashMap::new();
    for (form, entities) in &imp.forms {
        let compiled = entities.iter().map(|e| compile(e, config, &index)).collect::<Result<Vec<_>, _>>()?;
        forms.insert(form.clone(), compiled);
    }
    let mut plan = Plan {
        tables,
        forms,
        records: Vec::with_capacity(located.len()),
        by_ref: HashMap::new(),
        stored_ranges: stored,
    };
    let existing = existing_keys(&plan, target, located).await?;
    let links = plan.forms.values().flatten().any(|e| e.exprs.iter().any(|x| matches!(x, Expr::Parent(_))));

    // Natural key → ID handed out earlier in this walk, per table.
    let mut keyed: Vec<HashMap<String, i64>> = vec![HashMap::new(); plan.tables.len()];
    // (new IDs, of which already imported, reused), per table.
    let mut counts = vec![(0i64, 0i64, 0i64); plan.tables.len()];
    for (index, l) in located.iter().enumerate() {
        let r = &l.record;
        let already = done.contains(&r.reference.to_string());
        let parent = plan.parent_ids(r);
        let mut ids = Vec::new();
        for e in plan.forms.get(&r.form).into_iter().flatten() {
            for line in lines_of(e, r) {
                let t = e.table;
                let key = match e.key {
                    Some(k) => key_text(plan.eval(&e.exprs[k], r, line, &ids, parent).map_err(|m| record_error(l, m))?),
                    None => None,
                };
                let start = plan.tables[t].start;
                // A row of ours from an earlier run counts as new, so IDs stay stable.
                let reused = key.as_ref().and_then(|k| {
                    keyed[t].get(k).copied().or_else(|| existing[t].get(k).copied().filter(|id| *id < start))
                });
                let (count, count_done, reuses) = &mut counts[t];
                let id = match reused {
                    Some(id) => {
                        *reuses += 1;
                        Id { table: t, id, new: false }
                    }
                    None => {
                        let id = start + *count;
                        *count += 1;
                        *count_done += already as i64;
                        if let Some(k) = key {
                            keyed[t].insert(k, id);
                        }
                        Id { table: t, id, new: true }
                    }
                };
                ids.push(id);
            }
        }
        if links {
            plan.by_ref.insert(r.reference.clone(), plan.records.len());
        }
        plan.records.push(PlannedRecord { index, ids, already });
    }
    for (t, (count, count_done, reused)) in plan.tables.iter_mut().zip(counts) {
        (t.count, t.count_done, t.reused) = (count, count_done, reused);
    }
    Ok(plan)
}

/// Natural keys that exist in the target already, per table.
async fn existing_keys(
    plan: &Plan,
    target: &Target,
    located: &[Located],
) -> Result<Vec<BTreeMap<String, i64>>, ImportError> {
    let mut out = vec![BTreeMap::new(); plan.tables.len()];
    let mut values: Vec<Vec<String>> = vec![Vec::new(); plan.tables.len()];
    for l in located {
        for e in plan.forms.get(&l.record.form).into_iter().flatten().filter(|e| e.key.is_some()) {
            // Keys never depend on IDs, so no IDs are needed to read them.
            for line in lines_of(e, &l.record) {
                if let Ok(Some(k)) =
                    plan.eval(&e.exprs[e.key.expect("keyed")], &l.record, line, &[], None).map(key_text)
                {
                    values[e.table].push(k);
                }
            }
        }
    }
    for (t, mut v) in values.into_iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        v.sort_unstable();
        v.dedup();
        let table = &plan.tables[t];
        let key = table_key(plan, t);
        out[t] = target.ids_by_key(&table.name, &table.id_column, key, &v).await?;
    }
    Ok(out)
}

fn table_key(plan: &Plan, t: usize) -> &str {
    let e = plan.forms.values().flatten().find(|e| e.table == t && e.key.is_some()).expect("a keyed entity");
    &e.columns[e.key.expect("keyed")]
}

fn key_text(v: Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn compile(e: &EntityMap, config: &Config, index: &HashMap<&str, usize>) -> Result<Entity, ImportError> {
    let table = index[e.table.as_str()];
    let key_column = config.import.tables[&e.table].key.as_deref();
    let mut columns = Vec::new();
    let mut exprs = Vec::new();
    for (col, value) in &e.columns {
        let bad = |m: String| ImportError::Target(format!("import.forms: {}.{col}: {m}", e.table));
        let x = match value {
            toml::Value::Integer(n) => Expr::Literal(Value::Int(*n)),
            toml::Value::Boolean(b) => Expr::Literal(Value::Int(*b as i64)),
            toml::Value::String(s) => parse_expr(s, index).map_err(bad)?,
            other => return Err(bad(format!("unsupported literal {other}"))),
        };
        columns.push(col.clone());
        exprs.push(x);
    }
    let key = key_column.and_then(|k| columns.iter().position(|c| c == k));
    Ok(Entity { table, per_line: e.per.is_some(), columns, exprs, key })
}

fn parse_expr(s: &str, index: &HashMap<&str, usize>) -> Result<Expr, String> {
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        return Ok(Expr::Literal(Value::Text(s[1..s.len() - 1].to_string())));
    }
    let table = |t: &str| index.get(t).copied().ok_or_else(|| format!("{t:?} is not a table any entity writes"));
    Ok(match s.split_once(':') {
        None => match s {
            "ref" => Expr::Ref,
            "form" => Expr::Form,
            "received_at" => Expr::ReceivedAt,
            "total_cents" => Expr::TotalCents,
            "currency" => Expr::Currency,
            other => return Err(format!("unknown expression {other:?}")),
        },
        Some(("field", name)) => Expr::Field(name.into()),
        Some(("int", name)) => Expr::Int(name.into()),
        Some(("meta", "ip")) => Expr::Ip,
        Some(("meta", "user_agent")) => Expr::UserAgent,
        Some(("line", what)) => Expr::Line(match what {
            "sku" => LineValue::Sku,
            "name" => LineValue::Name,
            "quantity" => LineValue::Quantity,
            "unit_cents" => LineValue::UnitCents,
            "total_cents" => LineValue::TotalCents,
            other => return Err(format!("unknown line value {other:?}")),
        }),
        Some(("id", t)) => Expr::Id(table(t)?),
        Some(("parent", t)) => Expr::Parent(table(t)?),
        _ => return Err(format!("unknown expression {s:?}")),
    })
}

fn depth<'a>(entities: impl Iterator<Item = &'a EntityMap> + Clone, table: &str, level: usize) -> usize {
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
    refs.iter().map(|t| 1 + depth(entities.clone(), t, level + 1)).max().unwrap_or(0)
}
