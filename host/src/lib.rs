//! The flytewasm host: runs Flyte backend plugins compiled to WebAssembly
//! components and does their Kubernetes calls.
//!
//! Modules, with dependencies pointing one way:
//! `cli` → `server` → (`agent`, `connector`) → `task_service` → `executor` →
//! (`runtime`, `cluster`); `registry` → `runtime`.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connector;
pub mod executor;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod task_file;
pub mod task_service;
/// Helpers for tests (built with the `testkit` feature, never shipped).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
