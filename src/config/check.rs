//! `[check]`: the launch-readiness budgets used by `cofferdam check`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// Bytes over the wire (compressed) for one page of the landing path and its assets.
    pub page_weight_budget: u64,
    /// Requests one page of the landing path may make.
    pub request_budget: u32,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            page_weight_budget: 500 * 1024,
            request_budget: 15,
        }
    }
}
