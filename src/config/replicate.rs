//! `[collect.replicate]`: every record also goes to a NATS JetStream stream, and stock caps are
//! held once for all nodes in JetStream's key-value store.
//!
//! ```toml
//! [collect.replicate]
//! servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]
//! stream = "COFFERDAM"     # subjects COFFERDAM.{node}; stock in the bucket COFFERDAM_stock
//! replicas = 3
//! ack = "replicated"       # or "local": 303 after the local fsync, a shipper sends the log behind
//! timeout_ms = 3000        # how long a post waits for the stream before it is refused (503)
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicateConfig {
    /// NATS server URLs (any of the cluster's; the client learns the others).
    pub servers: Vec<String>,
    /// The JetStream stream, created with `replicas` copies if it does not exist.
    pub stream: String,
    pub replicas: usize,
    pub ack: AckPolicy,
    /// How long a post (replicated) or a shipped batch (local) waits for the stream's acknowledgement.
    pub timeout_ms: u64,
    /// Units of a capped SKU reserved from the shared pool ahead of demand, per node. 0 reserves
    /// exactly what each batch of posts needs: no node ever holds stock another could sell.
    pub stock_block: u64,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        ReplicateConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream: "COFFERDAM".into(),
            replicas: 3,
            ack: AckPolicy::Replicated,
            timeout_ms: 3000,
            stock_block: 0,
        }
    }
}

/// When a post is answered `303`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    /// Once the record is fsynced locally and the stream has acknowledged it.
    Replicated,
    /// Once the record is fsynced locally; the stream gets it shortly after.
    Local,
}

impl ReplicateConfig {
    /// The subject this node's records are published on.
    pub fn subject(&self, node: &str) -> String {
        format!("{}.{node}", self.stream)
    }

    /// The key-value bucket holding the stock caps shared by every node.
    pub fn stock_bucket(&self) -> String {
        format!("{}_stock", self.stream)
    }

    /// Semantic checks; the error is (key under `collect.replicate`, message).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.servers.is_empty() {
            return Err(("servers", "needs at least one URL, e.g. [\"nats://127.0.0.1:4222\"]".into()));
        }
        if let Some(bad) = self.servers.iter().find(|s| !s.starts_with("nats://") && !s.starts_with("tls://")) {
            return Err(("servers", format!("{bad:?} is not a NATS URL (nats://HOST:PORT or tls://HOST:PORT)")));
        }
        if !super::valid_name(&self.stream) {
            return Err((
                "stream",
                format!("{:?} is not a valid stream name (letters, digits, `_` and `-`)", self.stream),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(("replicas", format!("{} is not 1..=5 (JetStream keeps at most 5 copies)", self.replicas)));
        }
        if self.timeout_ms == 0 {
            return Err(("timeout_ms", "must be above 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AckPolicy, Config};
    use std::path::Path;

    fn parse(src: &str) -> Result<Config, String> {
        Config::parse(src, Path::new("cofferdam.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn replicate_section_parses_with_defaults() {
        let c = parse("[collect.replicate]\nservers = [\"nats://10.0.0.1:4222\"]\nack = \"local\"\n").unwrap();
        let r = c.collect.replicate.unwrap();
        assert_eq!((r.stream.as_str(), r.replicas, r.ack), ("COFFERDAM", 3, AckPolicy::Local));
        assert_eq!(r.subject("n1"), "COFFERDAM.n1");
        assert!(parse("").unwrap().collect.replicate.is_none(), "no section, no replication");
    }

    #[test]
    fn bad_replicate_settings_name_key_and_line() {
        let err = parse("[collect.replicate]\nstream = \"A.B\"\n").unwrap_err();
        assert!(err.starts_with("cofferdam.toml:2: collect.replicate.stream:"), "{err}");
        let err = parse("[collect.replicate]\nreplicas = 7\n").unwrap_err();
        assert!(err.contains("collect.replicate.replicas") && err.contains("1..=5"), "{err}");
        let err = parse("[collect.replicate]\nack = \"fast\"\n").unwrap_err();
        assert!(err.starts_with("cofferdam.toml:2:") && err.contains("replicated"), "{err}");
        let err = parse("[collect]\nstock_share = 0.5\n[collect.replicate]\n").unwrap_err();
        assert!(err.contains("collect.stock_share") && err.contains("shared cap"), "{err}");
        let err = parse("[collect.replicate]\nservers = [\"http://x:4222\"]\n").unwrap_err();
        assert!(err.contains("not a NATS URL"), "{err}");
    }
}
