//! `[import]`: where collected records go and how form fields map to tables.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// The target database: `sqlite://main.db`, `postgres://...`, `mysql://...`.
    pub to: String,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            to: "sqlite://main.db".into(),
        }
    }
}
