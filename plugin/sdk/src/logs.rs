//! Log links, configured and rendered the way Flyte does (`logs.LogConfig`
//! and `tasklog` templates): Kubernetes dashboard, CloudWatch, Stackdriver,
//! any number of URI templates, and dynamic links a task opts into with
//! `config["link_type"]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{PhaseContext, TaskLog, Value};

/// One family of log links (Flyte's `logs.LogConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct LogConfig {
    pub kubernetes_enabled: bool,
    pub kubernetes_url: String,
    pub kubernetes_template_uri: String,
    pub cloudwatch_enabled: bool,
    pub cloudwatch_region: String,
    pub cloudwatch_log_group: String,
    pub cloudwatch_template_uri: String,
    pub stackdriver_enabled: bool,
    pub gcp_project: String,
    pub stackdriver_logresourcename: String,
    pub stackdriver_template_uri: String,
    pub templates: Vec<LogTemplate>,
    /// Links a task turns on by name in `TaskTemplate.config["link_type"]`.
    pub dynamic_log_links: BTreeMap<String, LogTemplate>,
}

/// A named set of URI templates (Flyte's `tasklog.TemplateLogPlugin`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogTemplate {
    pub display_name: String,
    pub template_uris: Vec<String>,
    pub show_while_pending: bool,
}

/// The values templates may use, as `{{ .name }}`.
#[derive(Debug, Clone, Default)]
pub struct LogInput {
    /// Appended to each link's display name, e.g. "(Driver Logs)".
    pub log_name: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub namespace: String,
    pub container_name: String,
    pub container_id: String,
    pub hostname: String,
    pub node_name: String,
    /// Unix seconds; 0 when unknown.
    pub pod_unix_start_time: i64,
    pub pod_unix_finish_time: i64,
    pub pod_rfc3339_start_time: String,
    pub pod_rfc3339_finish_time: String,
    pub generated_name: String,
    pub task_id: Option<crate::TaskExecutionId>,
    /// `TaskTemplate.config`, for dynamic links (`{{ .taskConfig.key }}`).
    pub task_config: BTreeMap<String, String>,
    /// A plugin's own variables (Ray's `rayJobID`, `rayClusterName`), matched
    /// case-insensitively like the built-in ones; the built-ins win.
    pub extra: BTreeMap<String, String>,
}

impl LogInput {
    /// The task's own values, which every plugin passes: its generated name,
    /// execution id and `TaskTemplate.config`.
    pub fn for_task(ctx: &PhaseContext) -> Self {
        LogInput {
            generated_name: ctx.metadata.generated_name.clone(),
            task_id: Some(ctx.metadata.id.clone()),
            task_config: ctx
                .template
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    /// Timed as Flyte times an object's links: from its `creationTimestamp`
    /// (the RFC 3339 text as written) to `now` (Unix seconds).
    pub fn running_since(self, created: &Value, now: i64) -> Self {
        LogInput {
            pod_unix_start_time: crate::time::unix_seconds(created).unwrap_or(0),
            pod_rfc3339_start_time: created.as_str().unwrap_or_default().into(),
            pod_unix_finish_time: now,
            pod_rfc3339_finish_time: crate::time::rfc3339(now),
            ..self
        }
    }
}

impl LogConfig {
    /// Flyte's default `plugins.logs`: pod logs in a local Kubernetes dashboard.
    pub fn flyte_default() -> Self {
        LogConfig {
            kubernetes_enabled: true,
            kubernetes_template_uri:
                "http://localhost:30082/#!/log/{{ .namespace }}/{{ .podName }}/pod?namespace={{ .namespace }}".into(),
            ..Default::default()
        }
    }

    /// Every link this configuration produces for `input`, in Flyte's order:
    /// Kubernetes, CloudWatch, Stackdriver, templates, then the dynamic links
    /// the task asked for.
    pub fn links(&self, input: &LogInput) -> Vec<TaskLog> {
        let mut plugins = Vec::new();
        if self.kubernetes_enabled {
            let uri = if self.kubernetes_template_uri.is_empty() {
                format!(
                    "{}/#!/log/{{{{ .namespace }}}}/{{{{ .podName }}}}/pod?namespace={{{{ .namespace }}}}",
                    self.kubernetes_url
                )
            } else {
                self.kubernetes_template_uri.clone()
            };
            plugins.push(LogTemplate::single("Kubernetes Logs", uri));
        }
        if self.cloudwatch_enabled {
            let uri = if self.cloudwatch_template_uri.is_empty() {
                format!(
                    "https://console.aws.amazon.com/cloudwatch/home?region={}#logEventViewer:group={};stream=var.log.containers.{{{{ .podName }}}}_{{{{ .namespace }}}}_{{{{ .containerName }}}}-{{{{ .containerId }}}}.log",
                    self.cloudwatch_region, self.cloudwatch_log_group
                )
            } else {
                self.cloudwatch_template_uri.clone()
            };
            plugins.push(LogTemplate::single("Cloudwatch Logs", uri));
        }
        if self.stackdriver_enabled {
            let uri = if self.stackdriver_template_uri.is_empty() {
                format!(
                    "https://console.cloud.google.com/logs/viewer?project={p}&angularJsUrl=%2Flogs%2Fviewer%3Fproject%3D{p}&resource={r}&advancedFilter=resource.labels.pod_name%3D{{{{ .podName }}}}",
                    p = self.gcp_project,
                    r = self.stackdriver_logresourcename
                )
            } else {
                self.stackdriver_template_uri.clone()
            };
            plugins.push(LogTemplate::single("Stackdriver Logs", uri));
        }
        plugins.extend(self.templates.iter().cloned());

        let mut links: Vec<TaskLog> = plugins.iter().flat_map(|p| p.links(input)).collect();
        if let Some(wanted) = input.task_config.get("link_type") {
            for name in wanted.split(',').map(str::trim) {
                if let Some(plugin) = self.dynamic_log_links.get(name) {
                    links.extend(plugin.links(input));
                }
            }
        }
        links
    }
}

impl LogTemplate {
    fn single(display_name: &str, uri: String) -> Self {
        LogTemplate {
            display_name: display_name.into(),
            template_uris: vec![uri],
            show_while_pending: false,
        }
    }

    /// One link per URI template, named display name + `input.log_name`.
    pub fn links(&self, input: &LogInput) -> Vec<TaskLog> {
        self.template_uris
            .iter()
            .map(|uri| TaskLog {
                name: format!("{}{}", self.display_name, input.log_name),
                uri: render_template(uri, input),
                show_while_pending: self.show_while_pending,
            })
            .collect()
    }
}

/// Replace `{{ .var }}` (or `{{ $var }}`) placeholders, spaces optional,
/// names case-insensitive. Unknown variables and empty values are left as
/// they are, as Flyte does.
pub fn render_template(template: &str, input: &LogInput) -> String {
    crate::template::replace_placeholders(template, |name| {
        name.strip_prefix('.')
            .or_else(|| name.strip_prefix('$'))
            .and_then(|name| variable(name, input))
            .filter(|value| !value.is_empty())
    })
}

fn variable(name: &str, input: &LogInput) -> Option<String> {
    // `taskConfig.` is matched as Flyte does, its key exactly.
    if let Some(key) = name.strip_prefix("taskConfig.") {
        return input.task_config.get(key).cloned();
    }
    let id = input.task_id.as_ref();
    let id_field = |field: fn(&crate::TaskExecutionId) -> String| id.map(field).unwrap_or_default();
    Some(match name.to_ascii_lowercase().as_str() {
        "logname" => input.log_name.clone(),
        "podname" => input.pod_name.clone(),
        "poduid" => input.pod_uid.clone(),
        "namespace" => input.namespace.clone(),
        "containername" => input.container_name.clone(),
        "containerid" => input
            .container_id
            .split_once("://")
            .map_or(&*input.container_id, |(_, id)| id)
            .to_owned(),
        "hostname" => input.hostname.clone(),
        "nodename" => input.node_name.clone(),
        "podunixstarttime" => input.pod_unix_start_time.to_string(),
        "podunixfinishtime" => input.pod_unix_finish_time.to_string(),
        "podrfc3339starttime" => input.pod_rfc3339_start_time.clone(),
        "podrfc3339finishtime" => input.pod_rfc3339_finish_time.clone(),
        "generatedname" => input.generated_name.clone(),
        "taskid" => id_field(|id| id.task_name.clone()),
        "taskversion" => id_field(|id| id.task_version.clone()),
        "taskproject" => id_field(|id| id.task_project.clone()),
        "taskdomain" => id_field(|id| id.task_domain.clone()),
        "taskretryattempt" => id_field(|id| id.retry_attempt.to_string()),
        "nodeid" => id_field(|id| id.node_id.clone()),
        "executionname" => id_field(|id| id.name.clone()),
        "executionproject" => id_field(|id| id.project.clone()),
        "executiondomain" => id_field(|id| id.domain.clone()),
        _ => {
            return input
                .extra
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LogInput {
        LogInput {
            pod_name: "p".into(),
            namespace: "ns".into(),
            ..Default::default()
        }
    }

    #[test]
    fn placeholders_with_or_without_spaces_are_rendered() {
        assert_eq!(
            render_template("a/{{.podName}}/{{ .namespace }}", &input()),
            "a/p/ns"
        );
    }

    #[test]
    fn unknown_and_empty_placeholders_stay() {
        assert_eq!(
            render_template("{{ .nope }}-{{ .hostname }}", &input()),
            "{{ .nope }}-{{ .hostname }}"
        );
    }

    #[test]
    fn names_are_case_insensitive_and_plugins_add_their_own() {
        let input = LogInput {
            extra: [("rayJobID".to_owned(), "job-1".to_owned())].into(),
            ..input()
        };
        assert_eq!(
            render_template(
                "{{ .PodName }}/{{ $namespace }}/{{.rayjobid}}/{{ .rayClusterName }}",
                &input
            ),
            "p/ns/job-1/{{ .rayClusterName }}"
        );
    }

    #[test]
    fn kubernetes_links_use_the_dashboard_url() {
        let config = LogConfig {
            kubernetes_enabled: true,
            kubernetes_url: "k8s.com".into(),
            ..Default::default()
        };
        let links = config.links(&LogInput {
            log_name: "(x)".into(),
            ..input()
        });
        assert_eq!(links[0].uri, "k8s.com/#!/log/ns/p/pod?namespace=ns");
        assert_eq!(links[0].name, "Kubernetes Logs(x)");
    }
}
