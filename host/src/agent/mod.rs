//! Flyte's agent protocol (reference/flyte-facts.md §5): how unmodified
//! Flyte hands a task type to flytewasm over gRPC.

mod request;
mod resource;
pub mod resource_meta;
mod server;
mod service;
mod signing;

pub use crate::metrics::Metrics;
pub use request::{BadRequest, task_request};
pub use resource::resource;
pub use resource_meta::MetaError;
pub use resource_meta::{decode as decode_meta, encode as encode_meta};
pub use server::serve;
pub use service::AgentService;
pub use signing::MetaKeys;
