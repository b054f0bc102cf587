//! What `render` and `run` share: the task file and how it is executed.

use std::path::PathBuf;

use flytewasm_proto::flyteidl::core::TaskTemplate;

use crate::executor::TaskRequest;
use crate::executor::metadata::{self, Execution};
use crate::runtime::Plugin;

#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    /// A TaskTemplate or TaskSpec, as protobuf (`.pb`) or protobuf JSON (`.json`).
    pub task: PathBuf,
    #[command(flatten)]
    pub host: super::HostArgs,
    /// Namespace of the object (default: `<project>-<domain>` of the task, else `default`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Object name (default: generated from the execution, node and attempt, as Flyte does).
    #[arg(long)]
    pub name: Option<String>,
    /// Execution name used for the generated name and labels (default: a new random one).
    #[arg(long)]
    pub execution: Option<String>,
    #[arg(long, default_value = "n0")]
    pub node_id: String,
    #[arg(long, default_value_t = 0)]
    pub attempt: u32,
    /// Run the task on interruptible nodes.
    #[arg(long)]
    pub interruptible: bool,
    #[arg(long, default_value = "")]
    pub service_account: String,
    #[arg(long, default_value_t = 1)]
    pub max_attempts: u32,
    /// Blob store prefix for the task's inputs, outputs and raw data.
    #[arg(long, default_value = "s3://flyte-data")]
    pub data_prefix: String,
    /// Extra annotation for the object, KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_parser = key_value)]
    pub annotations: Vec<(String, String)>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

impl TaskArgs {
    /// The request propeller would make for this task.
    pub fn request(&self, template: TaskTemplate, plugin: &Plugin) -> TaskRequest {
        let id = template.id.clone().unwrap_or_default();
        let namespace = self.namespace.clone().unwrap_or_else(|| {
            if id.project.is_empty() || id.domain.is_empty() {
                "default".to_owned()
            } else {
                format!("{}-{}", id.project, id.domain)
            }
        });
        let execution = Execution {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: self.execution.clone().unwrap_or_else(new_execution_name),
            node_id: self.node_id.clone(),
            retry_attempt: self.attempt,
        };
        let labels = metadata::propeller_labels(&execution, &template, self.interruptible);
        // Propeller's layout: inputs beside the node, outputs per attempt.
        let data = self.data_prefix.trim_end_matches('/');
        let node_data = format!(
            "{data}/metadata/{}-{}-{}/{}/data",
            execution.project, execution.domain, execution.name, execution.node_id
        );
        let mut request = TaskRequest {
            template,
            execution,
            namespace,
            name: self.name.clone(),
            labels,
            annotations: self.annotations.iter().cloned().collect(),
            service_account: self.service_account.clone(),
            interruptible: self.interruptible,
            max_attempts: self.max_attempts,
            input_prefix: node_data.clone(),
            output_prefix: format!("{node_data}/{}", self.attempt),
            ..Default::default()
        };
        request.raw_output_prefix = format!("{data}/raw/{}", request.object_name(plugin));
        request
    }
}

/// A fresh execution name in Flyte's style: a letter and 19 more characters.
fn new_execution_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    format!("a{:019x}", nanos ^ (u64::from(std::process::id()) << 40))
}
