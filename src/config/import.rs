//! `[import]`: where collected records go and how form fields map to tables.
//!
//! ```toml
//! [import]
//! to = "sqlite://main.db"
//!
//! [import.tables.users]          # one reserved ID range per table
//! id = "id"
//! offset = "auto"                # or a number: the first imported ID
//! key = "email"                  # natural key: an existing row with this value is reused
//!
//! [[import.forms.order]]         # what one record of form `order` becomes, in order
//! table = "users"
//! columns = { email = "lower(field.email)", given_name = "split_name(field.name).given" }
//! ```
//!
//! The column values are expressions of the mapping language ([`super::expr`]). They are
//! parsed and checked against their place once, when the config loads, into a [`Mapping`]:
//! what the importer runs.

use super::expr::{self, Expr, Func, RecordValue};
use super::Config;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// The target database: `sqlite://main.db` (relative to the site), `postgres://...`, `mysql://...`.
    pub to: String,
    /// Records per transaction.
    pub batch_size: usize,
    /// With `offset = "auto"`: the first ID is this far above the table's current maximum ID
    /// and counter, so the shop can keep inserting while the import runs.
    pub gap: i64,
    pub tables: BTreeMap<String, TableMap>,
    /// Named expressions (`net = "round(money(line.total_cents) / 1.19, 2)"`), written once and
    /// used as `let.net` in any column below them.
    #[serde(rename = "let")]
    pub lets: BTreeMap<String, Spanned<toml::Value>>,
    /// Form name → the rows one record creates (or updates), written in this order.
    pub forms: BTreeMap<String, Vec<EntityMap>>,
    /// The above, compiled when the config loads.
    #[serde(skip)]
    pub mapping: Mapping,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            to: "sqlite://main.db".into(),
            batch_size: 10_000,
            gap: 1000,
            tables: BTreeMap::new(),
            lets: BTreeMap::new(),
            forms: BTreeMap::new(),
            mapping: Mapping::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMap {
    /// The key column, or columns (`["id_cart", "id_product"]`) for a composite key.
    #[serde(default = "default_id")]
    pub id: KeyColumns,
    /// The reserved range: its first ID, or `"auto"`. Without it the rows' keys come from the
    /// mapping (a UUID, a parent's ID) or from the database.
    #[serde(default)]
    pub offset: Option<Offset>,
    /// The integer column that takes the reserved range, when it is not the key (a UUID key
    /// with an order `number`). Default: the key column.
    #[serde(default)]
    pub range: Option<String>,
    /// Natural key column: a row with the same value (in the target, or earlier in this
    /// import) is reused instead of inserted.
    #[serde(default)]
    pub key: Option<String>,
    /// How natural keys are compared: `"trim-lowercase"` (default: `Anna@Example.de ` is
    /// `anna@example.de`) or `"exact"`.
    #[serde(default)]
    pub key_match: KeyMatch,
}

fn default_id() -> KeyColumns {
    KeyColumns::One("id".into())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyColumns {
    One(String),
    Composite(Vec<String>),
}

impl KeyColumns {
    pub fn columns(&self) -> Vec<&str> {
        match self {
            KeyColumns::One(c) => vec![c.as_str()],
            KeyColumns::Composite(cs) => cs.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Offset {
    Fixed(i64),
    /// `"auto"`
    Auto(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMatch {
    #[default]
    TrimLowercase,
    Exact,
}

impl KeyMatch {
    pub fn normalize(self, s: &str) -> String {
        match self {
            KeyMatch::TrimLowercase => s.trim().to_lowercase(),
            KeyMatch::Exact => s.to_string(),
        }
    }
}

/// One entity as written in `[[import.forms.FORM]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityMap {
    pub table: String,
    /// A name for `id(NAME)`/`created(NAME)`, when a form writes two rows of one table (an
    /// order's billing and shipping address); without it they name the table's latest row.
    #[serde(default)]
    pub name: Option<String>,
    /// `"line"`: one row per order line instead of one per record.
    #[serde(default)]
    pub per: Option<String>,
    /// Column → expression of the row to insert.
    #[serde(default)]
    pub columns: BTreeMap<String, Spanned<toml::Value>>,
    /// `"parent"`: instead of inserting, update the row the linked (parent) record has in
    /// `table`, with `set` and `add`, in the same transaction as this record's rows.
    #[serde(default)]
    pub update: Option<String>,
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<toml::Value>>,
    /// Column → amount added to the row's current value (an offer adds to its order's total).
    #[serde(default)]
    pub add: BTreeMap<String, Spanned<toml::Value>>,
    /// A condition: the row is written (or the update made) only when it holds, e.g.
    /// `created(account_user)` for an address-book link of a new customer only.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// The compiled mapping

#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// Every table written or updated, in the order rows are written: a table before the
    /// tables whose rows refer to it.
    pub tables: Vec<TableSpec>,
    pub forms: BTreeMap<String, Vec<Entity>>,
    /// Distinct lookups (table, column, key columns), shared by every place that uses them.
    pub lookups: Vec<LookupSite>,
}

impl Mapping {
    /// True when an expression anywhere in the mapping (a column, a condition) holds `pred`.
    pub fn uses(&self, pred: &dyn Fn(&Expr) -> bool) -> bool {
        self.forms.values().flatten().any(|e| e.columns.iter().map(|a| &a.expr).chain(&e.when).any(|x| x.any(pred)))
    }
}

#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    pub key: KeyColumns,
    /// The column taking the reserved range, and the range's start.
    pub range: Option<(String, Offset)>,
    /// The natural key column and how it is compared.
    pub natural_key: Option<(String, KeyMatch)>,
}

impl TableSpec {
    /// The single key column, if the key is one column.
    pub fn id_column(&self) -> Option<&str> {
        match &self.key {
            KeyColumns::One(c) => Some(c),
            KeyColumns::Composite(_) => None,
        }
    }

    /// The range goes to the key column itself (the classic integer ID).
    pub fn range_is_key(&self) -> bool {
        matches!((&self.range, self.id_column()), (Some((r, _)), Some(id)) if r == id)
    }
}

#[derive(Debug, Clone)]
pub struct LookupSite {
    pub table: String,
    pub column: String,
    pub keys: Vec<String>,
    /// 0 when its keys hold no lookup; else one more than the deepest lookup in them.
    pub depth: usize,
}

#[derive(Debug, Clone)]
pub struct Entity {
    /// Index into `Mapping::tables`.
    pub table: usize,
    /// The entity's own name, for `id(NAME)`.
    pub name: Option<String>,
    pub per_line: bool,
    pub update_parent: bool,
    pub columns: Vec<Assign>,
    /// Position of the table's natural key among `columns`.
    pub natural_key: Option<usize>,
    /// Position of the table's (single) key column among `columns`, when the mapping sets it.
    pub key_column: Option<usize>,
    /// Write the row (or make the update) only when this holds.
    pub when: Option<Expr>,
    /// `import.forms.FORM.N`, for messages.
    pub at: String,
}

#[derive(Debug, Clone)]
pub struct Assign {
    pub column: String,
    pub expr: Expr,
    /// `add`: the value is added to the column's current value.
    pub add: bool,
}

/// A mapping error: the key path, the message, and the byte offset of the value in the file
/// when known.
pub struct Problem {
    pub key: Vec<String>,
    pub message: String,
    pub offset: Option<usize>,
}

fn problem(key: &[&str], message: impl Into<String>) -> Problem {
    Problem { key: key.iter().map(|s| s.to_string()).collect(), message: message.into(), offset: None }
}

/// Parses and checks every expression against its place and orders the tables.
pub fn compile(config: &Config) -> Result<Mapping, Problem> {
    let imp = &config.import;
    for (table, t) in &imp.tables {
        let at = |k: &'static str| vec!["import", "tables", table.as_str(), k];
        if let Some(Offset::Auto(s)) = &t.offset {
            if s != "auto" {
                return Err(problem(&at("offset"), format!("{s:?}: use a number or \"auto\"")));
            }
        }
        let cols = t.id.columns();
        if cols.is_empty() {
            return Err(problem(&at("id"), "name at least one key column"));
        }
        if t.offset.is_some() && cols.len() > 1 && t.range.is_none() {
            return Err(problem(
                &at("range"),
                "a composite key takes no range: name the integer column that does (range = \"…\"), or drop offset",
            ));
        }
        if t.range.is_some() && t.offset.is_none() {
            return Err(problem(&at("offset"), "a range column needs an offset (a number or \"auto\")"));
        }
        if t.key.is_some() && cols.len() > 1 {
            return Err(problem(&at("key"), "a natural key reuses a row by its ID: the table needs a one-column id"));
        }
    }

    // Named expressions, in file order: each may use the ones above it.
    let mut lets = expr::Lets::new();
    let mut defs: Vec<(&String, &Spanned<toml::Value>)> = imp.lets.iter().collect();
    defs.sort_by_key(|(_, v)| v.span().start);
    for (name, value) in defs {
        let fail = |message: String| Problem {
            key: ["import", "let", name.as_str()].iter().map(|s| s.to_string()).collect(),
            message,
            offset: Some(value.span().start),
        };
        if !super::valid_name(name) || name.contains('-') {
            return Err(fail(format!("{name:?}: a name is letters, digits and _")));
        }
        let x = match value.get_ref() {
            toml::Value::String(s) => expr::parse_in(s, &lets).map_err(fail)?,
            other => expr::literal(other)
                .ok_or_else(|| fail(format!("{other} is not a value: write an expression in a string")))?,
        };
        lets.insert(name.clone(), x);
    }

    // Tables in first-use order, then sorted so that referenced tables come first.
    let mut names: Vec<&str> = Vec::new();
    for e in imp.forms.values().flatten() {
        if !names.contains(&e.table.as_str()) {
            names.push(&e.table);
        }
    }
    let mut mapping = Mapping::default();
    for name in &names {
        let Some(t) = imp.tables.get(*name) else {
            let (form, i) = imp
                .forms
                .iter()
                .find_map(|(f, es)| es.iter().position(|e| e.table == *name).map(|i| (f, i)))
                .expect("a table named by an entity");
            return Err(problem(
                &["import", "forms", form, &i.to_string(), "table"],
                format!("no [import.tables.{name}] section gives its key column and ID range"),
            ));
        };
        mapping.tables.push(TableSpec {
            name: name.to_string(),
            key: t.id.clone(),
            range: t.offset.clone().map(|o| {
                let col = t.range.clone().or_else(|| t.id.columns().first().map(|c| c.to_string()));
                (col.expect("a key column"), o)
            }),
            natural_key: t.key.clone().map(|k| (k, t.key_match)),
        });
    }
    let index = |name: &str| mapping.tables.iter().position(|t| t.name == name);

    for (form_name, entities) in &imp.forms {
        let Some(form) = config.forms.get(form_name) else {
            return Err(problem(
                &["import", "forms", form_name],
                format!("unknown form {form_name:?} (forms: {})", config.form_names()),
            ));
        };
        let mut compiled: Vec<Entity> = Vec::new();
        for (i, e) in entities.iter().enumerate() {
            let idx = i.to_string();
            let at = |k: &'static str| vec!["import", "forms", form_name.as_str(), idx.as_str(), k];
            let table = index(&e.table).expect("listed above");
            let spec = &mapping.tables[table];
            let per_line = match e.per.as_deref() {
                None => false,
                Some("line") => true,
                Some(other) => return Err(problem(&at("per"), format!("{other:?}: the only value is \"line\""))),
            };
            if let Some(n) = &e.name {
                if imp.tables.contains_key(n) {
                    return Err(problem(&at("name"), format!("{n:?} is a table's name; id({n}) would be ambiguous")));
                }
                if entities[..i].iter().any(|o| o.name.as_ref() == Some(n)) {
                    return Err(problem(
                        &at("name"),
                        format!("an earlier entity of form {form_name:?} is named {n:?}"),
                    ));
                }
            }
            let update_parent = match e.update.as_deref() {
                None => false,
                Some("parent") => true,
                Some(other) => {
                    return Err(problem(&at("update"), format!("{other:?}: the only value is \"parent\"")));
                }
            };
            let mut sources: Vec<(&str, &String, &Spanned<toml::Value>, bool)> = Vec::new();
            if update_parent {
                if form.links_to.is_none() {
                    return Err(problem(
                        &at("update"),
                        format!("form {form_name:?} has no links_to: its records have no parent to update"),
                    ));
                }
                if !e.columns.is_empty() {
                    return Err(problem(&at("columns"), "an update takes set and add, not columns"));
                }
                if e.set.is_empty() && e.add.is_empty() {
                    return Err(problem(&at("update"), "say what to update: set = { … } and/or add = { … }"));
                }
                if per_line {
                    return Err(problem(&at("per"), "an update changes one row: per = \"line\" does not apply"));
                }
                sources.extend(e.set.iter().map(|(c, v)| ("set", c, v, false)));
                sources.extend(e.add.iter().map(|(c, v)| ("add", c, v, true)));
            } else {
                if !e.set.is_empty() || !e.add.is_empty() {
                    return Err(problem(&at("set"), "set and add belong to an update (update = \"parent\")"));
                }
                if e.columns.is_empty() {
                    return Err(problem(&at("columns"), "no columns: say what the row holds"));
                }
                sources.extend(e.columns.iter().map(|(c, v)| ("columns", c, v, false)));
            }
            let mut columns = Vec::new();
            for (section, column, value, add) in sources {
                let key = [at(section), vec![column.as_str()]].concat();
                let fail = |message: String| Problem {
                    key: key.iter().map(|s| s.to_string()).collect(),
                    message,
                    offset: Some(value.span().start),
                };
                if !update_parent && spec.range_is_key() && spec.id_column() == Some(column.as_str()) {
                    return Err(fail(format!(
                        "{}.{column} is the key that takes the reserved range: the importer gives it",
                        spec.name
                    )));
                }
                let mut x = match value.get_ref() {
                    toml::Value::String(s) => expr::parse_in(s, &lets).map_err(&fail)?,
                    other => expr::literal(other)
                        .ok_or_else(|| fail(format!("{other} is not a value: write an expression in a string")))?,
                };
                if spec.range.as_ref().is_some_and(|(r, _)| r == column) && !update_parent {
                    return Err(fail(format!(
                        "{}.{column} takes the reserved range: the importer gives it",
                        spec.name
                    )));
                }
                let place = Place {
                    config,
                    form_name,
                    form,
                    entities: &compiled,
                    per_line,
                    in_sum: false,
                    reserved: spec.range.is_some() && !update_parent,
                };
                resolve(&mut x, &place, &mapping.tables, &mut mapping.lookups).map_err(&fail)?;
                columns.push(Assign { column: column.clone(), expr: x, add });
            }
            let position = |c: &str| columns.iter().position(|a| a.column == c);
            let natural_key =
                if update_parent { None } else { spec.natural_key.as_ref().and_then(|(k, _)| position(k)) };
            if let Some(k) = natural_key {
                if columns[k].expr.any(&depends_on_ids) {
                    return Err(problem(
                        &at("columns"),
                        format!(
                            "{}.{}: a natural key cannot depend on the IDs the import hands out",
                            spec.name, columns[k].column
                        ),
                    ));
                }
            }
            let key_column = if update_parent { None } else { spec.id_column().and_then(position) };
            let when = match &e.when {
                None => None,
                Some(w) => {
                    let fail = |message: String| Problem {
                        key: at("when").iter().map(|s| s.to_string()).collect(),
                        message,
                        offset: Some(w.span().start),
                    };
                    let mut x = expr::parse_in(w.get_ref(), &lets).map_err(fail)?;
                    let place = Place {
                        config,
                        form_name,
                        form,
                        entities: &compiled,
                        per_line,
                        in_sum: false,
                        reserved: false,
                    };
                    resolve(&mut x, &place, &mapping.tables, &mut mapping.lookups).map_err(fail)?;
                    if x.any(&|x| matches!(x, Expr::Id(_) | Expr::Parent(_))) {
                        return Err(fail(
                            "a condition is decided before IDs are handed out: use created(TABLE), not id()".into(),
                        ));
                    }
                    Some(x)
                }
            };
            compiled.push(Entity {
                table,
                per_line,
                update_parent,
                columns,
                natural_key,
                key_column,
                when,
                name: e.name.clone(),
                at: format!("import.forms.{form_name}.{i}"),
            });
        }
        mapping.forms.insert(form_name.clone(), compiled);
    }
    order_tables(&mut mapping)?;
    Ok(mapping)
}

/// Where an expression stands: which form, which entities come before it.
struct Place<'a> {
    config: &'a Config,
    form_name: &'a str,
    form: &'a super::Form,
    entities: &'a [Entity],
    per_line: bool,
    in_sum: bool,
    /// The entity's table has a reserved range, so `reserved_id` has a value.
    reserved: bool,
}

/// Natural keys and lookup keys are read before any ID is handed out.
fn depends_on_ids(x: &Expr) -> bool {
    matches!(x, Expr::Id(_) | Expr::Parent(_) | Expr::Record(RecordValue::ReservedId))
}

fn resolve(x: &mut Expr, place: &Place, tables: &[TableSpec], lookups: &mut Vec<LookupSite>) -> Result<(), String> {
    match x {
        Expr::Field(name) if !place.form.fields.iter().any(|f| *f.name == **name) => {
            let names: Vec<&str> = place.form.fields.iter().map(|f| &*f.name).collect();
            let near = names
                .iter()
                .map(|n| (crate::suggest::edit_distance(name, n), n))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, n)| format!(" (did you mean field.{n}?)"))
                .unwrap_or_default();
            return Err(format!(
                "form {:?} has no field {name:?}{near}; its fields: {}",
                place.form_name,
                names.join(", ")
            ));
        }
        Expr::Record(RecordValue::ReservedId) if !place.reserved => {
            return Err(
                "reserved_id: this entity's table has no reserved range (no offset), or this is an update".into()
            );
        }
        Expr::Line(_) if !place.per_line && !place.in_sum => {
            return Err("line values need per = \"line\" (one row per order line), or sum(…) over the lines".into());
        }
        Expr::Id(_) | Expr::Created(_) => {
            let f = if matches!(x, Expr::Id(_)) { "id" } else { "created" };
            let (Expr::Id(r) | Expr::Created(r)) = x else { unreachable!("matched above") };
            let earlier = || place.entities.iter().enumerate().rev().filter(|(_, e)| !e.update_parent);
            let named = earlier().find(|(_, e)| e.name.as_deref() == Some(r.table.as_str()));
            let Some((j, e)) = named.or_else(|| earlier().find(|(_, e)| tables[e.table].name == r.table)) else {
                let earlier: Vec<&str> = place
                    .entities
                    .iter()
                    .filter(|e| !e.update_parent)
                    .map(|e| e.name.as_deref().unwrap_or(&tables[e.table].name))
                    .collect();
                return Err(format!(
                    "{f}({}): no earlier entity of form {:?} writes {} (earlier: {}); entities are written in order",
                    r.table,
                    place.form_name,
                    r.table,
                    if earlier.is_empty() { "none".to_string() } else { earlier.join(", ") }
                ));
            };
            if e.per_line && !place.per_line && !place.in_sum {
                return Err(format!(
                    "{f}({}): {} has a row per line; only a per = \"line\" entity can take the same line's row",
                    r.table, r.table
                ));
            }
            if f == "id" {
                check_known_id(&tables[e.table], e, "id")?;
            }
            r.entity = j;
            r.per_line = e.per_line;
            // From here on the table itself: the write order and the messages go by it.
            r.table = tables[e.table].name.clone();
        }
        Expr::Parent(r) => {
            let Some(parent_form) = &place.form.links_to else {
                return Err(format!(
                    "parent({}): form {:?} has no links_to, so its records have no parent",
                    r.table, place.form_name
                ));
            };
            let first = place
                .config
                .import
                .forms
                .get(parent_form)
                .and_then(|es| es.iter().position(|e| e.table == r.table && e.update.is_none()));
            let Some(j) = first else {
                return Err(format!("parent({}): the parent form {parent_form:?} writes no {} row", r.table, r.table));
            };
            let e = &place.config.import.forms[parent_form][j];
            if e.per.is_some() {
                return Err(format!(
                    "parent({}): the parent form {parent_form:?} writes {} per line; parent() takes a per-record row",
                    r.table, r.table
                ));
            }
            let spec = tables.iter().find(|t| t.name == r.table).expect("written tables are listed");
            if spec.id_column().is_none() {
                return Err(format!("parent({}): {} has a composite key; parent() gives one ID", r.table, r.table));
            }
            if spec.range.is_none()
                && !e.columns.contains_key(spec.id_column().expect("one"))
                && spec.natural_key.is_none()
            {
                return Err(format!(
                    "parent({}): {}'s IDs are given by the database (no offset, and the mapping does not set {}), so the import cannot know them",
                    r.table,
                    r.table,
                    spec.id_column().expect("one")
                ));
            }
            r.entity = j;
        }
        Expr::Lookup(l) => {
            for (_, k) in &l.keys {
                if k.any(&depends_on_ids) {
                    return Err(format!(
                        "lookup({}.{}): its keys cannot depend on the IDs the import hands out",
                        l.table, l.column
                    ));
                }
            }
            for c in l.keys.iter_mut().map(|(_, e)| e).chain(l.default.as_mut()) {
                resolve(c, place, tables, lookups)?;
            }
            let depth = l.keys.iter().map(|(_, k)| lookup_depth(k)).max().unwrap_or(0);
            let keys: Vec<String> = l.keys.iter().map(|(k, _)| k.clone()).collect();
            let site = lookups.iter().position(|s| s.table == l.table && s.column == l.column && s.keys == keys);
            l.site = match site {
                Some(s) => {
                    lookups[s].depth = lookups[s].depth.max(depth);
                    s
                }
                None => {
                    lookups.push(LookupSite { table: l.table.clone(), column: l.column.clone(), keys, depth });
                    lookups.len() - 1
                }
            };
            return Ok(());
        }
        Expr::Call(Func::Sum, args) => {
            if place.in_sum {
                return Err("sum(…) inside sum(…)".into());
            }
            let inner = Place { in_sum: true, ..*place };
            return resolve(&mut args[0], &inner, tables, lookups);
        }
        _ => {}
    }
    for c in x.children_mut() {
        resolve(c, place, tables, lookups)?;
    }
    Ok(())
}

/// `id(T)` needs T's ID to be known to the import: from its range, the mapping, or a reused row.
fn check_known_id(spec: &TableSpec, e: &Entity, f: &str) -> Result<(), String> {
    let Some(id) = spec.id_column() else {
        return Err(format!("{f}({}): {} has a composite key; {f}() gives one ID", spec.name, spec.name));
    };
    if spec.range.is_none() && e.key_column.is_none() && spec.natural_key.is_none() {
        return Err(format!(
            "{f}({}): {}'s IDs are given by the database (no offset, and the mapping does not set {id}), so the import cannot know them",
            spec.name, spec.name
        ));
    }
    Ok(())
}

fn lookup_depth(x: &Expr) -> usize {
    let inner = x.children().into_iter().map(lookup_depth).max().unwrap_or(0);
    match x {
        Expr::Lookup(_) => inner + 1,
        _ => inner,
    }
}

/// Sorts `mapping.tables` so that a table comes before every table whose rows refer to it
/// through `id()`/`parent()`, and renumbers the entities.
fn order_tables(mapping: &mut Mapping) -> Result<(), Problem> {
    let n = mapping.tables.len();
    // before[b] holds a when rows of b refer to rows of a.
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); n];
    let name_index = |name: &str, tables: &[TableSpec]| tables.iter().position(|t| t.name == name);
    for entities in mapping.forms.values() {
        for e in entities.iter().filter(|e| !e.update_parent) {
            for a in &e.columns {
                let mut refs = Vec::new();
                collect_refs(&a.expr, &mut refs);
                for r in refs {
                    if let Some(t) = name_index(&r, &mapping.tables) {
                        if t != e.table && !before[e.table].contains(&t) {
                            before[e.table].push(t);
                        }
                    }
                }
            }
        }
    }
    let mut order: Vec<usize> = Vec::new();
    let mut state = vec![0u8; n]; // 0 new, 1 on the path, 2 placed
    fn visit(t: usize, before: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) -> bool {
        match state[t] {
            2 => return true,
            1 => return false,
            _ => {}
        }
        state[t] = 1;
        for &b in &before[t] {
            if !visit(b, before, state, order) {
                return false;
            }
        }
        state[t] = 2;
        order.push(t);
        true
    }
    for t in 0..n {
        if !visit(t, &before, &mut state, &mut order) {
            return Err(problem(
                &["import", "forms"],
                format!(
                    "the tables refer to each other in a circle (through {}): no order to write them in",
                    mapping.tables[t].name
                ),
            ));
        }
    }
    let new_index: Vec<usize> = (0..n).map(|old| order.iter().position(|&o| o == old).expect("placed")).collect();
    mapping.tables = order.iter().map(|&o| mapping.tables[o].clone()).collect();
    let tables = &mapping.tables;
    for e in mapping.forms.values_mut().flatten() {
        e.table = new_index[e.table];
        for a in &mut e.columns {
            set_table_index(&mut a.expr, tables);
        }
    }
    Ok(())
}

fn set_table_index(x: &mut Expr, tables: &[TableSpec]) {
    if let Expr::Id(r) | Expr::Parent(r) | Expr::Created(r) = x {
        r.index = tables.iter().position(|t| t.name == r.table).expect("written tables are listed");
    }
    for c in x.children_mut() {
        set_table_index(c, tables);
    }
}

fn collect_refs(x: &Expr, out: &mut Vec<String>) {
    match x {
        Expr::Id(r) | Expr::Parent(r) => out.push(r.table.clone()),
        _ => x.children().into_iter().for_each(|c| collect_refs(c, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::expr::{ArithOp, Expr, Func};
    use super::super::Config;
    use std::path::Path;

    const FORM: &str = "[forms.order]\nthanks = \"/t/\"\n[[forms.order.fields]]\nname = \"name\"\ntype = \"text\"\n\n";

    fn compile(import: &str) -> Result<Config, String> {
        Config::parse(&format!("{FORM}{import}"), Path::new("cofferdam.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn let_names_an_expression_once_for_many_columns() {
        let c = compile(
            "[import.let]\nrate = 1.19\nshout = \"upper(field.name)\"\ntwice = \"let.rate * 2\"\n\
             [import.tables.t]\noffset = 1\n[[import.forms.order]]\ntable = \"t\"\n\
             columns = { a = \"let.shout\", b = \"let.twice - 1\" }\n",
        )
        .unwrap();
        let columns = &c.import.mapping.forms["order"][0].columns;
        assert!(matches!(&columns[0].expr, Expr::Call(Func::Upper, _)));
        let Expr::Arith(ArithOp::Sub, twice, _) = &columns[1].expr else { panic!("{:?}", columns[1].expr) };
        assert!(matches!(&**twice, Expr::Arith(ArithOp::Mul, rate, _) if matches!(**rate, Expr::Dec(_))));

        // Only names defined above: no circles.
        let e = compile("[import.let]\na = \"let.b\"\nb = 1\n").unwrap_err();
        assert!(e.starts_with("cofferdam.toml:8: import.let.a: let.b is not defined above"), "{e}");
        // A name is checked where it is used: a line value outside a per-line row.
        let e = compile(
            "[import.let]\nq = \"line.quantity\"\n[import.tables.t]\noffset = 1\n\
             [[import.forms.order]]\ntable = \"t\"\ncolumns = { a = \"let.q\" }\n",
        )
        .unwrap_err();
        assert!(e.contains(":13: import.forms.order.0.columns.a: line values need per = \"line\""), "{e}");
    }

    #[test]
    fn named_entities_tell_two_rows_of_one_table_apart() {
        let entities = "[import.tables.addresses]\noffset = 1\n[import.tables.orders]\noffset = 1\n\
             [[import.forms.order]]\ntable = \"addresses\"\nname = \"billing\"\ncolumns = { kind = \"'billing'\" }\n\
             [[import.forms.order]]\ntable = \"addresses\"\nname = \"shipping\"\ncolumns = { kind = \"'shipping'\" }\n";
        let c = compile(&format!(
            "{entities}[[import.forms.order]]\ntable = \"orders\"\n\
             columns = {{ billing_id = \"id(billing)\", shipping_id = \"id(shipping)\", last = \"id(addresses)\" }}\n"
        ))
        .unwrap();
        let mapping = &c.import.mapping;
        let rows: Vec<(usize, &str)> = mapping.forms["order"][2]
            .columns
            .iter()
            .map(|a| match &a.expr {
                Expr::Id(r) => (r.entity, r.table.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(rows, [(0, "addresses"), (1, "addresses"), (1, "addresses")]);
        assert_eq!(mapping.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["addresses", "orders"]);

        let e = compile(&entities.replace("name = \"shipping\"", "name = \"billing\"")).unwrap_err();
        assert!(
            e.contains("import.forms.order.1.name: an earlier entity of form \"order\" is named \"billing\""),
            "{e}"
        );
        let e = compile(&entities.replace("name = \"shipping\"", "name = \"orders\"")).unwrap_err();
        assert!(e.contains("\"orders\" is a table's name"), "{e}");
        let e = compile(&format!(
            "{entities}[[import.forms.order]]\ntable = \"orders\"\ncolumns = {{ a = \"id(home)\" }}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("id(home): no earlier entity of form \"order\" writes home (earlier: billing, shipping)"),
            "{e}"
        );
    }
}
