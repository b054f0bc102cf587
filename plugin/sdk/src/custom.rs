//! `TaskTemplate.custom` (a `google.protobuf.Struct`) into typed messages.
//!
//! flytekit writes a task's plugin config with `MessageToDict`: proto3 JSON
//! names (camelCase), default values omitted, and every number a double.
//! Flyte's Go plugins read it back with jsonpb and `AllowUnknownFields`. The
//! generated flyteidl types (and our own `proto/` messages) implement the
//! proto3 JSON mapping, so reading `custom` is: Struct → JSON → message.

use serde::de::DeserializeOwned;

use crate::PluginError;
use crate::flyteidl::core::TaskTemplate;
use flytewasm_proto::well_known::{Struct, Value as PbValue, value::Kind};

/// Read `template.custom` into `T`. A missing `custom` or a field of the
/// wrong type is a bad task, and the message says which.
pub fn from_template<T: DeserializeOwned>(template: &TaskTemplate) -> Result<T, PluginError> {
    let custom = template.custom.as_ref().ok_or_else(|| {
        PluginError::bad_task(format!(
            "task type `{}` needs its configuration in TaskTemplate.custom, and it is empty",
            template.r#type
        ))
    })?;
    from_struct(custom)
}

/// Read a protobuf Struct into `T` with the proto3 JSON mapping.
pub fn from_struct<T: DeserializeOwned>(value: &Struct) -> Result<T, PluginError> {
    deserialize_naming_the_field(struct_to_json(value))
}

/// A protobuf Struct as JSON. Whole numbers become JSON integers, so integer
/// fields of the target message accept them (a Struct only has doubles).
pub fn struct_to_json(value: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        value
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), value_to_json(value)))
            .collect(),
    )
}

fn value_to_json(value: &PbValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                J::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(J::Number)
                    .unwrap_or(J::Null)
            }
        }
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => J::Array(list.values.iter().map(value_to_json).collect()),
    }
}

/// Deserialize, naming the path of the first field that does not fit
/// (e.g. `custom.sparkConf: invalid type: integer, expected a string`).
fn deserialize_naming_the_field<T: DeserializeOwned>(
    json: serde_json::Value,
) -> Result<T, PluginError> {
    serde_path_to_error::deserialize(json).map_err(|err| {
        let path = err.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        PluginError::bad_task(format!("TaskTemplate.custom{at}: {}", err.inner()))
    })
}
