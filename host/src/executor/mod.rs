//! The lifecycle engine's building blocks. For now: turning a task into the
//! exact object the host sends to the API server.

pub mod drive;
pub mod lifecycle;
pub mod metadata;
pub mod object;

pub use lifecycle::{Engine, EngineError, Phase, PhaseEvent, TaskState};
pub use object::{PreparedObject, TaskRequest, prepare};
