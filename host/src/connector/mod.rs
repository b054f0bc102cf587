//! Flyte 2's connector protocol (`flyteidl2.connector`,
//! reference/flyte2-connector.md §2): how Flyte 2's executor
//! (`connector-service`) hands a task type to flytewasm. A translation onto
//! `TaskService`, beside Flyte 1's `agent` on the same port.

mod service;

pub use service::ConnectorService;
