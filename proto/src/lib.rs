//! Protobuf types shared by the host and the guest SDK.
//!
//! - `flyteidl::*`: Flyte's own IDL (TaskTemplate, SparkJob, the agent
//!   messages), generated at build time from the pinned `flyteidl` release.
//! - `flyteidl2::*` (the `grpc` feature, for the host): Flyte 2's connector
//!   protocol and the messages it carries, from the pinned `flyteidl2`.
//! - `flytewasm::*`: our own custom-config schemas (`proto/flytewasm/`),
//!   shared with the Python SDK (e.g. `flytewasm::batchjob::v1::BatchJob`).
//! - Every message implements serde with the proto3 JSON mapping, so a
//!   `TaskTemplate.custom` Struct can be read into a typed config the way
//!   Flyte's Go plugins do (`camelCase` or `snake_case`, unknown keys ignored).

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/mod.rs"));
include!(concat!(env!("OUT_DIR"), "/own.rs"));

pub use pbjson_types as well_known;
