//! Where a started server listens, as a value: `serve --ready-file PATH` writes it once both
//! listeners are bound, so a program that starts `serve` on port 0 (`rehearse`, a supervisor,
//! a test) reads the addresses back with this same type instead of parsing a log line.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listening {
    /// The public listener (`server.listen`).
    pub public: SocketAddr,
    /// The admin listener (`server.admin`): /healthz and /metrics.
    pub admin: SocketAddr,
}

impl Listening {
    /// Writes `path` whole or not at all (a reader polling for it never sees half a file).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec(self).expect("two addresses serialize"))?;
        std::fs::rename(&partial, path)
    }

    /// The addresses in `path`, once a server has written it.
    pub fn read(path: &Path) -> Option<Listening> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}
