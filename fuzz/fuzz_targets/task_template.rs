//! Any bytes as a TaskTemplate protobuf, through the host's object
//! preparation and the Spark plugin in the wasm runtime: decoding refuses
//! with a reason, or the task is built, or it is refused as a bad task
//! naming the field. A trap, a deadline, running out of memory or a host
//! panic is a finding.
//!
//!     just build-plugins
//!     cargo +nightly fuzz run task_template   # from the repository root

#![no_main]

use std::sync::OnceLock;

use flytewasm::config::HostConfig;
use flytewasm::executor::object::PrepareError;
use flytewasm::executor::{TaskRequest, prepare};
use flytewasm::runtime::{CallError, Plugin};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::core::TaskTemplate;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn spark() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| testkit::plugin("spark"))
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(template) = TaskTemplate::decode(bytes) else {
        return;
    };
    let request = TaskRequest {
        template,
        ..testkit::spark_task("users", "t1")
    };
    match prepare(spark(), &HostConfig::default(), &request, testkit::fixed_now()) {
        Ok(_) | Err(PrepareError::TooLarge { .. }) => {}
        Err(PrepareError::Plugin(err @ CallError::BadTask { .. })) => {
            assert!(err.to_string().contains("TaskTemplate"), "unnamed refusal: {err}");
        }
        Err(other) => panic!("not contained: {other}"),
    }
});
