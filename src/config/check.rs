//! `[check]`: the launch-readiness budgets used by `cofferdam check` and `cofferdam rehearse`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// Bytes over the wire (compressed) for one page of the landing path and its assets.
    pub page_weight_budget: u64,
    /// Requests one page of the landing path may make.
    pub request_budget: u32,
    /// Bytes one image file may weigh before `check` asks for a smaller one.
    pub image_budget: u64,
    /// The p99 latency (ms) a request of the landing path may take in `rehearse` before the
    /// load counts as more than this machine takes.
    pub latency_budget_ms: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            page_weight_budget: 500 * 1024,
            request_budget: 15,
            image_budget: 200 * 1024,
            latency_budget_ms: 200,
        }
    }
}
