//! `flytewasm render TASK`: the object a task would create, as YAML.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::executor::metadata::{self, Execution};
use crate::executor::{TaskRequest, prepare};
use crate::task_file;

#[derive(Debug, clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let template = task_file::read(&args.task)?;
    let config = args.host.config()?;
    let runtime = super::runtime(&config.runtime)?;
    let registry = super::load_registry(&runtime, &args.host)?;
    let plugin = registry.resolve(&template.r#type, template.task_type_version)?;

    let id = template.id.clone().unwrap_or_default();
    let namespace = args.namespace.clone().unwrap_or_else(|| {
        if id.project.is_empty() || id.domain.is_empty() {
            "default".to_owned()
        } else {
            format!("{}-{}", id.project, id.domain)
        }
    });
    let execution = Execution {
        project: id.project.clone(),
        domain: id.domain.clone(),
        name: args.execution.clone().unwrap_or_else(new_execution_name),
        node_id: args.node_id.clone(),
        retry_attempt: args.attempt,
    };
    let labels = metadata::propeller_labels(&execution, &template, args.interruptible);
    // Propeller's layout: inputs beside the node, outputs per attempt.
    let data = args.data_prefix.trim_end_matches('/');
    let node_data = format!(
        "{data}/metadata/{}-{}-{}/{}/data",
        execution.project, execution.domain, execution.name, execution.node_id
    );
    let mut request = TaskRequest {
        template,
        execution,
        namespace,
        name: args.name.clone(),
        labels,
        service_account: args.service_account.clone(),
        interruptible: args.interruptible,
        max_attempts: args.max_attempts,
        input_prefix: node_data.clone(),
        output_prefix: format!("{node_data}/{}", args.attempt),
        ..Default::default()
    };
    request.raw_output_prefix = format!("{data}/raw/{}", request.object_name(plugin));
    let prepared = prepare(plugin, &config, &request, SystemTime::now())?;
    print!("{}", super::output::yaml(&prepared.object));
    Ok(())
}

/// A fresh execution name in Flyte's style: a letter and 19 more characters.
fn new_execution_name() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let seed = format!("{nanos}-{}", std::process::id());
    let hash = metadata::generated_name(&[&seed, &seed, &seed, &seed], 0);
    format!("a{}{}", &hash[1..], &nanos.to_string()[..12]).chars().take(20).collect()
}
