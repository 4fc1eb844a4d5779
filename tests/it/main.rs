//! Integration tests: one binary, one module per phase, each speaking to the real pieces
//! (the built `cofferdam` binary, real HTTP on loopback, real databases).

mod support;

mod admin;
mod browser;
mod build;
mod check;
mod collect;
mod faults;
mod import;
mod limits;
mod media;
mod operator;
mod payments;
mod receipt;
mod recipes;
mod rehearse;
mod reload;
mod replicate;
mod serve;
mod shops;
