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
//! columns = { email = "field:email", name = "field:name", created_at = "received_at" }
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// The target database: `sqlite://main.db` (relative to the site), `postgres://...`, `mysql://...`.
    pub to: String,
    /// Records per transaction.
    pub batch_size: usize,
    /// With `offset = "auto"`: the first ID is the table's current maximum plus this gap, so
    /// the shop can keep inserting while the import runs.
    pub gap: i64,
    pub tables: BTreeMap<String, TableMap>,
    /// Form name → the rows one record creates, written in this order.
    pub forms: BTreeMap<String, Vec<EntityMap>>,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            to: "sqlite://main.db".into(),
            batch_size: 1000,
            gap: 1000,
            tables: BTreeMap::new(),
            forms: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMap {
    #[serde(default = "default_id")]
    pub id: String,
    pub offset: Offset,
    /// Natural key column: a row with the same value (in the target, or earlier in this
    /// import) is reused instead of inserted.
    #[serde(default)]
    pub key: Option<String>,
}

fn default_id() -> String {
    "id".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Offset {
    Fixed(i64),
    /// `"auto"`
    Auto(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityMap {
    pub table: String,
    /// `"line"`: one row per order line instead of one per record.
    #[serde(default)]
    pub per: Option<String>,
    /// Column → expression: `ref`, `form`, `received_at`, `total_cents`, `currency`,
    /// `field:NAME`, `int:NAME`, `line:sku|name|quantity|unit_cents|total_cents`, `id:TABLE`,
    /// `parent:TABLE`, `meta:ip|user_agent`, `'literal text'`, or a number.
    pub columns: BTreeMap<String, toml::Value>,
}
