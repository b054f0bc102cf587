//! Flyte 1's agent protocol (reference/flyte-facts.md §5): how unmodified
//! Flyte 1 propeller (`agent-service` and `connector-service` alike) hands a
//! task type to flytewasm over gRPC. A translation onto `TaskService`.

mod service;

pub use service::AgentService;
