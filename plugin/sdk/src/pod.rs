//! Pod specs from a task, with Flyte's rules (`flytek8s.ToK8sPodSpec` and
//! `UpdatePod`): the task's container or `k8sPod` target, resources,
//! template-argument rendering, environment decoration, and the platform's
//! tolerations, node selectors, affinity, scheduler, DNS and security
//! defaults, including the interruptible variants.
//!
//! ```ignore
//! let pod = pod::build(ctx, pod::Options::for_task(ctx))?;
//! let image = &pod.primary().image;
//! ```

use std::collections::BTreeMap;

use crate::custom::struct_to_json;
use crate::flyteidl::core::task_template::Target;
use crate::{PluginError, TaskContext, Value, extended_resources, pod_template, resources};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, NodeAffinity, NodeSelector, NodeSelectorTerm, PodSpec,
    ResourceRequirements, Toleration,
};

/// Options that differ between pods of one task (Spark's driver is never
/// interruptible, its executors follow the task; a Kubeflow role may ask for
/// its own resources).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub interruptible: bool,
    /// Resources that win, key by key, over the primary container's own.
    pub resources: Option<ResourceRequirements>,
}

impl Options {
    /// The task's own pod: interruptible when the task is.
    pub fn for_task(ctx: &TaskContext) -> Self {
        Options {
            interruptible: ctx.metadata.interruptible,
            resources: None,
        }
    }
}

/// A pod built for a task.
#[derive(Debug, Clone)]
pub struct TaskPod {
    pub spec: PodSpec,
    /// Labels and annotations from the task's `k8sPod.metadata`.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The container that runs the task's code.
    pub primary_container_name: String,
}

impl TaskPod {
    /// Labels for a pod template of this task: the platform's defaults, the
    /// task pod's own, then the execution's (later wins).
    pub fn template_labels(&self, ctx: &TaskContext) -> BTreeMap<String, String> {
        layered(
            &ctx.k8s_defaults.default_labels,
            &self.labels,
            &ctx.metadata.labels,
        )
    }

    /// Annotations for a pod template of this task, layered as the labels.
    pub fn template_annotations(&self, ctx: &TaskContext) -> BTreeMap<String, String> {
        layered(
            &ctx.k8s_defaults.default_annotations,
            &self.annotations,
            &ctx.metadata.annotations,
        )
    }

    /// The container that runs the task's code.
    pub fn primary(&self) -> &Container {
        self.spec
            .containers
            .iter()
            .find(|c| c.name == self.primary_container_name)
            .expect("build() checks the primary container exists")
    }
}

fn layered(
    platform: &BTreeMap<String, String>,
    pod: &BTreeMap<String, String>,
    execution: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut all = platform.clone();
    all.extend(pod.clone());
    all.extend(execution.iter().cloned());
    all
}

/// Build the pod spec for this task: its raw pod ([`raw_pod`]), Flyte's
/// configuration ([`configure`]), then the tolerations for configured
/// extended resources (Flyte's `ToK8sPodSpec`).
pub fn build(ctx: &TaskContext, options: Options) -> Result<TaskPod, PluginError> {
    let mut pod = configure(ctx, raw_pod(ctx)?, options)?;
    extended_resources::add_extended_resource_tolerations(&mut pod.spec, &ctx.k8s_defaults);
    Ok(pod)
}

/// Flyte's `ApplyFlytePodConfiguration` on a raw pod: the base PodTemplate,
/// rendered arguments, Flyte's environment, resources with the platform's
/// defaults and limits, the platform's pod defaults and the task's extended
/// resources. Plugins whose task carries its own pod (the pod plugin's
/// sidecar tasks) start here from that pod.
pub fn configure(
    ctx: &TaskContext,
    mut pod: TaskPod,
    options: Options,
) -> Result<TaskPod, PluginError> {
    if !pod
        .spec
        .containers
        .iter()
        .any(|c| c.name == pod.primary_container_name)
    {
        return Err(PluginError::bad_task(format!(
            "invalid TaskSpecification, primary container [{}] not defined",
            pod.primary_container_name
        )));
    }
    let defaults = &ctx.k8s_defaults;
    if let Some(template) = &defaults.base_pod_template {
        let primary_init = ctx.template_config("primary_init_container_name");
        pod_template::merge_under(&mut pod, template, primary_init)?;
    }
    for container in &mut pod.spec.containers {
        decorate_container(ctx, container);
        if let Some(res) = &mut container.resources {
            resources::name_gpus(res, defaults);
        }
        container.resources = if container.name == pod.primary_container_name {
            let own = container.resources.as_ref();
            let asked = match &options.resources {
                Some(overrides) => resources::merge(own, overrides),
                None => own.cloned().unwrap_or_default(),
            };
            Some(resources::with_platform_defaults(&asked, defaults))
        } else {
            container
                .resources
                .take()
                .map(|r| resources::clamped(r, defaults))
        };
    }
    for container in pod.spec.init_containers.iter_mut().flatten() {
        decorate_container(ctx, container);
        if let Some(mut res) = container.resources.take() {
            resources::name_gpus(&mut res, defaults);
            container.resources = Some(resources::clamped(res, defaults));
        }
    }
    apply_platform_defaults(ctx, &mut pod, options.interruptible);
    if let Some(extended) = &ctx.template.extended_resources {
        extended_resources::apply(
            &mut pod.spec,
            &pod.primary_container_name,
            extended,
            defaults,
        )?;
    }
    Ok(pod)
}

/// The pod as the task describes it, before Flyte's configuration
/// (Flyte's `BuildRawPod`): one container from a `container` target, or the
/// `k8sPod` target's pod spec with its metadata and the primary container
/// named by `config.primary_container_name`.
pub fn raw_pod(ctx: &TaskContext) -> Result<TaskPod, PluginError> {
    match &ctx.template.target {
        Some(Target::Container(container)) => {
            let name = ctx.metadata.generated_name.clone();
            let container = Container {
                name: name.clone(),
                image: Some(container.image.clone()).filter(|i| !i.is_empty()),
                command: Some(container.command.clone()).filter(|c| !c.is_empty()),
                args: Some(container.args.clone()).filter(|a| !a.is_empty()),
                env: Some(
                    container
                        .env
                        .iter()
                        .map(|kv| env(&kv.key, &kv.value))
                        .collect(),
                )
                .filter(|e: &Vec<EnvVar>| !e.is_empty()),
                resources: container
                    .resources
                    .as_ref()
                    .map(|r| {
                        resources::from_flyteidl(
                            r,
                            &ctx.k8s_defaults,
                            "TaskTemplate.container.resources",
                        )
                    })
                    .transpose()?,
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Default::default()
            };
            Ok(TaskPod {
                spec: PodSpec {
                    containers: vec![container],
                    ..Default::default()
                },
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                primary_container_name: name,
            })
        }
        Some(Target::K8sPod(k8s_pod)) => {
            let spec_struct = k8s_pod
                .pod_spec
                .as_ref()
                .ok_or_else(|| {
                    PluginError::bad_task(
                        "Pod tasks with task type version > 1 should specify their target as a K8sPod with a defined pod spec",
                    )
                })?;
            let spec: PodSpec = serde_path_to_error::deserialize(struct_to_json(spec_struct))
                .map_err(|err| {
                    PluginError::bad_task(format!(
                        "TaskTemplate.k8sPod.podSpec.{}: {}",
                        err.path(),
                        err.inner()
                    ))
                })?;
            let primary = ctx
                .template_config("primary_container_name")
                .unwrap_or_default()
                .to_owned();
            if primary.is_empty() {
                return Err(PluginError::bad_task(
                    "TaskTemplate.config.primary_container_name is required with a k8sPod target",
                ));
            }
            if !spec.containers.iter().any(|c| c.name == primary) {
                return Err(PluginError::bad_task(format!(
                    "TaskTemplate.k8sPod.podSpec has no container named `{primary}` (config.primary_container_name)"
                )));
            }
            let metadata = k8s_pod.metadata.clone().unwrap_or_default();
            Ok(TaskPod {
                spec,
                labels: metadata.labels.into_iter().collect(),
                annotations: metadata.annotations.into_iter().collect(),
                primary_container_name: primary,
            })
        }
        Some(_) => Err(PluginError::bad_task(format!(
            "task type `{}` needs a container or k8sPod target, and this task has a SQL target",
            ctx.template.r#type
        ))),
        None => Err(PluginError::bad_task(format!(
            "task type `{}` needs a container or k8sPod target, and TaskTemplate has neither",
            ctx.template.r#type
        ))),
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// Render `{{.input}}`-style arguments and add Flyte's environment.
fn decorate_container(ctx: &TaskContext, container: &mut Container) {
    let render = |items: &mut Option<Vec<String>>| {
        for item in items.iter_mut().flatten() {
            *item = render_arg(ctx, item);
        }
    };
    render(&mut container.command);
    render(&mut container.args);
    let env = container.env.get_or_insert_with(Vec::new);
    env.extend(flyte_env(ctx));
}

/// The environment Flyte adds to every container, in Flyte's order.
fn flyte_env(ctx: &TaskContext) -> Vec<EnvVar> {
    let id = &ctx.metadata.id;
    let mut vars = vec![
        env("FLYTE_INTERNAL_EXECUTION_ID", &id.name),
        env("FLYTE_INTERNAL_EXECUTION_PROJECT", &id.project),
        env("FLYTE_INTERNAL_EXECUTION_DOMAIN", &id.domain),
        env("FLYTE_ATTEMPT_NUMBER", &id.retry_attempt.to_string()),
    ];
    if let Some(url) = &ctx.metadata.console_url {
        vars.push(env("FLYTE_EXECUTION_URL", url));
    }
    if !id.task_name.is_empty() {
        vars.push(env("FLYTE_INTERNAL_TASK_PROJECT", &id.task_project));
        vars.push(env("FLYTE_INTERNAL_TASK_DOMAIN", &id.task_domain));
        vars.push(env("FLYTE_INTERNAL_TASK_NAME", &id.task_name));
        vars.push(env("FLYTE_INTERNAL_TASK_VERSION", &id.task_version));
    }
    vars.extend(ctx.metadata.environment.iter().map(|(k, v)| env(k, v)));
    vars.extend(
        ctx.k8s_defaults
            .default_env_vars
            .iter()
            .map(|(k, v)| env(k, v)),
    );
    vars.extend(
        ctx.k8s_defaults
            .default_env_vars_from_env
            .iter()
            .map(|(k, v)| env(k, v)),
    );
    vars
}

/// Flyte's container-argument templates, case-insensitive, `.` or `$`,
/// spaces allowed: `{{ .Input }}`, `{{.outputPrefix}}`... Unknown ones are
/// left as they are.
pub fn render_arg(ctx: &TaskContext, arg: &str) -> String {
    crate::template::replace_placeholders(arg, |name| {
        let name = name.strip_prefix('.').or_else(|| name.strip_prefix('$'))?;
        template_value(ctx, &name.to_ascii_lowercase())
    })
}

fn template_value(ctx: &TaskContext, name: &str) -> Option<String> {
    let raw = ctx.raw_output_prefix.trim_end_matches('/');
    Some(match name {
        "input" => format!("{}/inputs.pb", ctx.input_prefix.trim_end_matches('/')),
        "inputprefix" => ctx.input_prefix.clone(),
        "outputprefix" => ctx.output_prefix.clone(),
        "rawoutputdataprefix" => ctx.raw_output_prefix.clone(),
        "perretryuniquekey" => ctx.metadata.generated_name.clone(),
        "checkpointoutputprefix" => format!("{raw}/_flytecheckpoints"),
        // No previous attempt's checkpoint is known to the plugin; Flyte
        // renders an empty one as a quoted empty string.
        "prevcheckpointprefix" => "\"\"".to_owned(),
        "namespace" => ctx.metadata.namespace.clone(),
        _ => return None,
    })
}

/// Flyte's `UpdatePod`: the platform defaults, merged with what the pod sets.
fn apply_platform_defaults(ctx: &TaskContext, pod: &mut TaskPod, interruptible: bool) {
    let defaults = &ctx.k8s_defaults;
    let spec = &mut pod.spec;
    spec.restart_policy.get_or_insert_with(|| "Never".into());

    let mut tolerations: Vec<Toleration> = Vec::new();
    for name in resources::names(spec.containers.iter().filter_map(|c| c.resources.as_ref())) {
        tolerations.extend(
            defaults
                .resource_tolerations
                .get(&name)
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    if interruptible {
        tolerations.extend(defaults.interruptible_tolerations.iter().cloned());
    }
    tolerations.extend(defaults.default_tolerations.iter().cloned());
    tolerations.extend(spec.tolerations.take().into_iter().flatten());
    spec.tolerations = Some(tolerations).filter(|t| !t.is_empty());

    if spec
        .service_account_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        && !ctx.metadata.service_account.is_empty()
    {
        spec.service_account_name = Some(ctx.metadata.service_account.clone());
    }
    if spec
        .scheduler_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        && !defaults.scheduler_name.is_empty()
    {
        spec.scheduler_name = Some(defaults.scheduler_name.clone());
    }

    let mut selector = defaults.default_node_selector.clone();
    selector.extend(spec.node_selector.take().into_iter().flatten());
    if interruptible {
        selector.extend(defaults.interruptible_node_selector.clone());
    }
    spec.node_selector = Some(selector).filter(|s| !s.is_empty());

    if spec.affinity.is_none() {
        spec.affinity = defaults.default_affinity.clone();
    }
    let requirement = if interruptible {
        &defaults.interruptible_node_selector_requirement
    } else {
        &defaults.non_interruptible_node_selector_requirement
    };
    if let Some(requirement) = requirement {
        add_required_node_requirement(spec, requirement);
    }

    if spec.security_context.is_none() {
        spec.security_context = defaults.default_pod_security_context.clone();
    }
    if defaults.enable_host_networking_pod == Some(true) {
        spec.host_network = Some(true);
    }
    if spec.dns_config.is_none() {
        spec.dns_config = defaults.default_pod_dns_config.clone();
    }
    if let Some(security) = &defaults.default_security_context {
        let primary = pod.primary_container_name.clone();
        for container in spec.containers.iter_mut().filter(|c| c.name == primary) {
            container
                .security_context
                .get_or_insert_with(|| security.clone());
        }
    }
}

/// Append a requirement to every required node-affinity term (or add a term).
pub(crate) fn add_required_node_requirement(
    spec: &mut PodSpec,
    requirement: &k8s_openapi::api::core::v1::NodeSelectorRequirement,
) {
    let node = spec
        .affinity
        .get_or_insert_with(Affinity::default)
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: Vec::new(),
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_expressions
            .get_or_insert_with(Vec::new)
            .push(requirement.clone());
    }
}

/// Flyte's `MergeOverlayPodSpecOntoBase`: deep-merge `overlay` (a pod spec
/// as JSON) onto `base`. Maps merge, the overlay's scalars win, lists at pod
/// level are appended; overlay containers merge only into base containers
/// of the same name (others are dropped), their lists appended too.
pub fn merge_overlay(base: &PodSpec, overlay: &Value, field: &str) -> Result<PodSpec, PluginError> {
    let mut merged =
        serde_json::to_value(base).map_err(|e| PluginError::internal(e.to_string()))?;
    let Value::Object(overlay) = overlay else {
        return Err(PluginError::bad_task(format!("{field} must be an object")));
    };
    let Value::Object(target) = &mut merged else {
        unreachable!("a PodSpec serializes to an object")
    };
    for (key, value) in overlay {
        match key.as_str() {
            "containers" | "initContainers" => {
                let Some(Value::Array(base_containers)) = target.get_mut(key) else {
                    continue;
                };
                let Value::Array(overlay_containers) = value else {
                    return Err(PluginError::bad_task(format!(
                        "{field}.{key} must be a list"
                    )));
                };
                for overlay_container in overlay_containers {
                    let name = overlay_container.get("name");
                    if let Some(base_container) =
                        base_containers.iter_mut().find(|c| c.get("name") == name)
                    {
                        deep_merge(base_container, overlay_container);
                    }
                }
            }
            _ => deep_merge(target.entry(key.clone()).or_insert(Value::Null), value),
        }
    }
    serde_path_to_error::deserialize(merged)
        .map_err(|err| PluginError::bad_task(format!("{field}.{}: {}", err.path(), err.inner())))
}

/// Objects merge key by key, lists append, anything else is replaced.
pub(crate) fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                deep_merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (Value::Array(base), Value::Array(overlay)) => base.extend(overlay.iter().cloned()),
        (base, overlay) => *base = overlay.clone(),
    }
}
