//! Flyte's task semantics, once for every front-end: building a task's
//! object ([`object`]), the steps of its lifecycle ([`lifecycle`]), what
//! travels with the object ([`carried`]), the agent path's durable task
//! state machine ([`tasks`]) and the one-process driver of `run` ([`drive`]).

pub mod carried;
pub mod drive;
pub mod lifecycle;
pub mod metadata;
pub mod object;
pub mod tasks;

pub use lifecycle::{ErrorKind, Executor, ExecutorError, Phase, PhaseEvent, TaskError, TaskState};
pub use object::{PreparedObject, TaskRequest, prepare};
pub use tasks::{EndWrites, TaskTicket, Tasks};
