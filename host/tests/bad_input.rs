//! Bad input from users cannot hurt anything: generated custom configs
//! (wrong types in Spark's fields, huge strings, deep nesting) and mangled
//! TaskTemplate protobufs go through the Spark plugin in the wasm runtime
//! and the host's object preparation. Never a panic or a trap: either an
//! object, or a bad task whose message names the field.
//!
//! `PROPTEST_CASES` sets the cases per property (proptest's default, 256,
//! in `just test`); `fuzz/` has the same properties for cargo-fuzz.

use flytewasm::config::HostConfig;
use flytewasm::executor::object::PrepareError;
use flytewasm::executor::{TaskRequest, prepare};
use flytewasm::runtime::{CallError, Plugin};
use flytewasm::testkit;
use flytewasm_proto::flyteidl::core::TaskTemplate;
use proptest::prelude::*;
use prost::Message;
use serde_json::{Map, Value, json};

fn spark() -> &'static Plugin {
    static PLUGIN: std::sync::OnceLock<Plugin> = std::sync::OnceLock::new();
    PLUGIN.get_or_init(|| testkit::plugin("spark"))
}

/// Spark's config fields (both spellings), and anything else.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "sparkConf",
            "spark_conf",
            "hadoopConf",
            "mainApplicationFile",
            "mainClass",
            "executorPath",
            "applicationType",
            "databricksConf",
            "databricksInstance",
            "driverPod",
            "executorPod",
            "primaryContainerName",
            "podSpec",
            "containers",
            "resources",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_.]{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        // Huge strings, up to 1 MB.
        (0usize..1 << 20).prop_map(|n| Value::from("é".repeat(n / 2))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A custom config: Spark's fields with values of any type.
fn custom() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(key(), value(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn request(template: TaskTemplate) -> TaskRequest {
    TaskRequest {
        template,
        ..testkit::spark_task("users", "t1")
    }
}

/// The property: an object, or a bad task naming the field; never a
/// crash, a deadline or an out-of-memory.
fn contained(result: Result<impl Sized, PrepareError>) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => Ok(()),
        Err(PrepareError::Plugin(err @ CallError::BadTask { .. })) => {
            let message = err.to_string();
            prop_assert!(
                message.contains("TaskTemplate"),
                "a refusal must name the field: {message}"
            );
            Ok(())
        }
        Err(PrepareError::TooLarge { .. }) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("not contained: {other}"))),
    }
}

proptest! {
    #[test]
    fn any_custom_config_is_built_or_refused_by_field(custom in custom()) {
        let mut template = testkit::spark_task("users", "t1").template;
        template.custom = Some(serde_json::from_value(Value::Object(custom)).unwrap());
        contained(prepare(spark(), &HostConfig::default(), &request(template), testkit::fixed_now()))?;
    }

    #[test]
    fn deep_nesting_is_built_or_refused_by_field(depth in 1usize..400, as_list in any::<bool>()) {
        let mut nested = json!("bottom");
        for _ in 0..depth {
            nested = if as_list { json!([nested]) } else { json!({ "k": nested }) };
        }
        let mut template = testkit::spark_task("users", "t1").template;
        template.custom = Some(
            serde_json::from_value(json!({ "mainApplicationFile": "local:///a.py", "sparkConf": nested }))
                .unwrap(),
        );
        contained(prepare(spark(), &HostConfig::default(), &request(template), testkit::fixed_now()))?;
    }

    #[test]
    fn mangled_protobufs_are_refused_or_contained(
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let mut template = testkit::spark_task("users", "t1").template;
        template.custom = Some(
            serde_json::from_value(json!({
                "mainApplicationFile": "local:///app.py",
                "sparkConf": { "spark.executor.instances": "4", "spark.driver.memory": "1g" },
                "hadoopConf": { "fs.s3a.path.style.access": "true" },
            }))
            .unwrap(),
        );
        let mut bytes = template.encode_to_vec();
        bytes.truncate(cut.index(bytes.len() + 1));
        for (at, byte) in flips {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
        }
        // Decoding refuses with a reason, or yields a template the host
        // and the plugin handle like any other.
        match TaskTemplate::decode(bytes.as_slice()) {
            Err(err) => prop_assert!(!err.to_string().is_empty()),
            Ok(template) => contained(prepare(
                spark(),
                &HostConfig::default(),
                &request(template),
                testkit::fixed_now(),
            ))?,
        }
    }
}
