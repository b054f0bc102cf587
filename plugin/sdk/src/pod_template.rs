//! Flyte's base PodTemplate (`MergeBasePodSpecOntoTemplate`): the platform's
//! pod, under the task's. The template's pod-level fields are the starting
//! point (the task's win, lists are appended); its containers named
//! `default` and `primary` (`default-init`, `primary-init`) are not run but
//! are templates for the task's containers: `default` under each, then
//! `primary` under the primary one. Its labels and annotations sit under
//! the task pod's. A template that is not a pod fails the task as a bad
//! task specification, as in Flyte.

use k8s_openapi::api::core::v1::PodSpec;

use crate::pod::{TaskPod, deep_merge};
use crate::{PluginError, Value};

/// Merge the PodTemplate `template` (a `PodTemplateSpec`: metadata, spec)
/// under `pod`. `primary_init` names the primary init container, if any.
pub fn merge_under(
    pod: &mut TaskPod,
    template: &Value,
    primary_init: Option<&str>,
) -> Result<(), PluginError> {
    let field = "the base PodTemplate";
    let base = &template["spec"];
    if !(base.is_object() || base.is_null()) {
        return Err(PluginError::bad_task(format!(
            "{field}: spec is not an object"
        )));
    }
    let mut task =
        serde_json::to_value(&pod.spec).map_err(|e| PluginError::internal(e.to_string()))?;
    let mut merged = base.clone();
    if merged.is_null() {
        merged = Value::Object(Default::default());
    }
    let templates = |key: &str| -> Vec<Value> { base[key].as_array().cloned().unwrap_or_default() };
    let named = |list: &[Value], name: &str| list.iter().find(|c| c["name"] == name).cloned();
    for (key, default, primary_name, primary) in [
        (
            "containers",
            "default",
            Some(pod.primary_container_name.as_str()),
            "primary",
        ),
        (
            "initContainers",
            "default-init",
            primary_init,
            "primary-init",
        ),
    ] {
        let list = templates(key);
        let (default, primary_template) = (named(&list, default), named(&list, primary));
        let containers: Vec<Value> = task[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|container| {
                let mut out = default
                    .clone()
                    .unwrap_or_else(|| Value::Object(Default::default()));
                if container["name"].as_str() == primary_name
                    && let Some(primary) = &primary_template
                {
                    deep_merge(&mut out, primary);
                }
                deep_merge(&mut out, container);
                out["name"] = container["name"].clone();
                out
            })
            .collect();
        // The template's other containers are not the task's: dropped, as Flyte does.
        merged.as_object_mut().unwrap().remove(key);
        if let Some(task) = task.as_object_mut() {
            task.remove(key);
        }
        if !containers.is_empty() {
            merged[key] = Value::Array(containers);
        }
    }
    deep_merge(&mut merged, &task);
    pod.spec = serde_path_to_error::deserialize::<_, PodSpec>(merged).map_err(|err| {
        PluginError::bad_task(format!("{field}: spec.{}: {}", err.path(), err.inner()))
    })?;

    for (key, into) in [
        ("labels", &mut pod.labels),
        ("annotations", &mut pod.annotations),
    ] {
        if let Some(from) = template["metadata"][key].as_object() {
            for (k, v) in from {
                if let Some(v) = v.as_str() {
                    into.entry(k.clone()).or_insert_with(|| v.to_owned());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn task_pod() -> TaskPod {
        TaskPod {
            spec: serde_json::from_value(json!({
                "containers": [
                    { "name": "main", "image": "task:1", "env": [{ "name": "A", "value": "task" }] },
                    { "name": "sidecar", "image": "side:1" },
                ],
                "tolerations": [{ "key": "task", "operator": "Exists" }],
            }))
            .unwrap(),
            labels: [("team".to_owned(), "task".to_owned())].into(),
            annotations: Default::default(),
            primary_container_name: "main".into(),
        }
    }

    #[test]
    fn the_template_sits_under_the_task() {
        let mut pod = task_pod();
        let template = json!({
            "metadata": { "labels": { "team": "platform", "cost-center": "ml" } },
            "spec": {
                "containers": [
                    { "name": "default", "image": "ignored", "env": [{ "name": "D", "value": "default" }],
                      "terminationMessagePath": "/dev/flyte" },
                    { "name": "primary", "volumeMounts": [{ "name": "cache", "mountPath": "/cache" }] },
                    { "name": "platform-agent", "image": "agent:1" },
                ],
                "volumes": [{ "name": "cache", "emptyDir": {} }],
                "tolerations": [{ "key": "platform", "operator": "Exists" }],
                "priorityClassName": "batch",
            },
        });
        merge_under(&mut pod, &template, None).unwrap();
        let spec = serde_json::to_value(&pod.spec).unwrap();
        let names: Vec<&str> = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["main", "sidecar"],
            "template containers are templates, not containers"
        );
        let main = &spec["containers"][0];
        assert_eq!(main["image"], "task:1", "the task's fields win");
        assert_eq!(
            main["env"],
            json!([{ "name": "D", "value": "default" }, { "name": "A", "value": "task" }])
        );
        assert_eq!(
            main["volumeMounts"][0]["name"], "cache",
            "`primary` reaches only the primary"
        );
        assert!(spec["containers"][1].get("volumeMounts").is_none());
        assert_eq!(
            spec["containers"][1]["terminationMessagePath"], "/dev/flyte",
            "`default` reaches every container"
        );
        assert_eq!(spec["priorityClassName"], "batch");
        assert_eq!(
            spec["tolerations"].as_array().unwrap().len(),
            2,
            "lists append"
        );
        assert_eq!(pod.labels["team"], "task");
        assert_eq!(pod.labels["cost-center"], "ml");
    }
}
