//! cofferdam: a disposable, static, nearly indestructible front for a shop's launch.
//!
//! Data flows one way: [`config`] → [`build`] → `dist/` + [`manifest`] → [`serve`] and
//! [`collect`] → `collected/` ([`record`]; with [`replicate`] also a JetStream stream) →
//! [`import`]. [`check`] and [`rehearse`] measure the built site before the day.

pub mod build;
pub mod chart;
pub mod check;
pub mod cmd;
pub mod collect;
pub mod config;
pub mod decimal;
pub mod import;
mod json;
mod logthrottle;
pub mod manifest;
pub mod payment;
pub mod record;
pub mod rehearse;
pub mod replicate;
pub mod serve;
pub mod suggest;
mod text;
