//! Flyte's task semantics, once for every front-end: building a task's
//! object ([`object`], with its K8sPod's `{{.Inputs.x}}` from [`input_args`]), the steps of its lifecycle ([`lifecycle`]), what
//! travels with the object ([`carried`]) and what is kept apart from it
//! ([`records`]), the durable task state machine ([`tasks`]) with its
//! janitor, and `run`'s driver over it ([`drive`]).

pub mod carried;
pub mod drive;
pub mod input_args;
mod janitor;
pub mod lifecycle;
pub mod metadata;
pub mod object;
pub mod pod_templates;
pub mod records;
pub mod tasks;

pub use lifecycle::{ErrorKind, Executor, ExecutorError, Phase, PhaseEvent, TaskError, TaskState};
pub use object::{PreparedObject, TaskRequest, prepare};
pub use tasks::{EndWrites, TaskTicket, Tasks};
