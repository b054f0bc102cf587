//! Reading a task from a file: a `flyteidl.core.TaskTemplate` or the
//! `flyteidl.admin.TaskSpec` that `pyflyte serialize`/`package` write, as
//! protobuf (`.pb`) or protobuf JSON (`.json`).

use std::path::Path;

use flytewasm_proto::flyteidl::admin::TaskSpec;
use flytewasm_proto::flyteidl::core::TaskTemplate;
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum TaskFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is neither a TaskTemplate nor a TaskSpec protobuf: {reason}")]
    Protobuf { path: String, reason: String },
    #[error("{path} is not a TaskTemplate or TaskSpec in protobuf JSON: {reason}")]
    Json { path: String, reason: String },
    #[error("{path} holds a task with no type (TaskTemplate.type is empty)")]
    NoType { path: String },
}

pub fn read(path: &Path) -> Result<TaskTemplate, TaskFileError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TaskFileError::Read {
        path: name.clone(),
        source,
    })?;
    let is_json = path.extension().is_some_and(|e| e == "json") || bytes.first() == Some(&b'{');
    let template = if is_json {
        from_json(&bytes, &name)?
    } else {
        from_protobuf(&bytes, &name)?
    };
    if template.r#type.is_empty() {
        return Err(TaskFileError::NoType { path: name });
    }
    Ok(template)
}

/// A TaskSpec's field 1 is the template and a TaskTemplate's is its id, so
/// only one of the two reads ever makes sense: try the wrapper first.
fn from_protobuf(bytes: &[u8], path: &str) -> Result<TaskTemplate, TaskFileError> {
    if let Ok(TaskSpec {
        template: Some(template),
        ..
    }) = TaskSpec::decode(bytes)
        && !template.r#type.is_empty()
    {
        return Ok(template);
    }
    TaskTemplate::decode(bytes).map_err(|err| TaskFileError::Protobuf {
        path: path.into(),
        reason: err.to_string(),
    })
}

fn from_json(bytes: &[u8], path: &str) -> Result<TaskTemplate, TaskFileError> {
    let json_error = |err: serde_json::Error| TaskFileError::Json {
        path: path.into(),
        reason: err.to_string(),
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(json_error)?;
    if value.get("template").is_some() {
        let spec: TaskSpec = serde_json::from_value(value).map_err(json_error)?;
        return spec.template.ok_or_else(|| TaskFileError::Json {
            path: path.into(),
            reason: "no template".into(),
        });
    }
    serde_json::from_value(value).map_err(json_error)
}
