//! The commands: each parses its arguments, calls the library, and renders what it returns.

pub mod import;
pub mod stats;
