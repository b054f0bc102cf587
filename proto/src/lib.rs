//! Protobuf types shared by the host and the guest SDK.
//!
//! - `flyteidl::*`: Flyte's own IDL (TaskTemplate, SparkJob, the agent
//!   messages), generated at build time from the pinned `flyteidl` release.
//! - Every message implements serde with the proto3 JSON mapping, so a
//!   `TaskTemplate.custom` Struct can be read into a typed config the way
//!   Flyte's Go plugins do (`camelCase` or `snake_case`, unknown keys ignored).

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/mod.rs"));

pub use pbjson_types as well_known;
