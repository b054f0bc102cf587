//! Task → SparkApplication (Flyte's `spark.go` BuildResource).

use std::collections::BTreeMap;

use flytewasm_plugin_sdk::custom::struct_to_json;
use flytewasm_plugin_sdk::flyteidl::core::K8sPod;
use flytewasm_plugin_sdk::flyteidl::plugins::{SparkJob, spark_application};
use flytewasm_plugin_sdk::pod::{self, TaskPod};
use flytewasm_plugin_sdk::prelude::*;
use k8s_openapi::api::core::v1::EnvVar;

use crate::config::SparkConfig;

pub fn build(ctx: &TaskContext) -> Result<Value, PluginError> {
    let job: SparkJob = ctx.custom()?;
    if job.main_application_file.is_empty() && job.main_class.is_empty() {
        return Err(PluginError::bad_task(
            "TaskTemplate.custom: either mainApplicationFile or mainClass must be set",
        ));
    }
    let config: SparkConfig = ctx.plugin_config()?;
    let conf = spark_conf(ctx, &job, &config);

    // The driver never runs on interruptible nodes; executors follow the task.
    let driver = role_pod(ctx, false, job.driver_pod.as_ref(), "driverPod")?;
    let executor = role_pod(
        ctx,
        ctx.metadata.interruptible,
        job.executor_pod.as_ref(),
        "executorPod",
    )?;

    let mut driver_spec = spark_pod_spec(ctx, &driver, job.driver_pod.as_ref());
    put_int(&mut driver_spec, "cores", conf.get("spark.driver.cores"));
    put_str(&mut driver_spec, "memory", conf.get("spark.driver.memory"));
    let mut executor_spec = spark_pod_spec(ctx, &executor, job.executor_pod.as_ref());
    put_int(
        &mut executor_spec,
        "cores",
        conf.get("spark.executor.cores"),
    );
    put_int(
        &mut executor_spec,
        "instances",
        conf.get("spark.executor.instances"),
    );
    put_str(
        &mut executor_spec,
        "memory",
        conf.get("spark.executor.memory"),
    );

    let executor_primary = executor.primary();
    let mut spec = json!({
        "type": application_type(job.application_type),
        "mode": "cluster",
        "image": executor_primary.image,
        "arguments": executor_primary.args.clone().unwrap_or_default(),
        "sparkConf": conf,
        "hadoopConf": job.hadoop_conf.iter().collect::<BTreeMap<_, _>>(),
        "driver": driver_spec,
        "executor": executor_spec,
        "restartPolicy": { "type": "OnFailure", "onSubmissionFailureRetries": 14 },
    });
    if let Some(scheduler) = conf.get("spark.batchScheduler") {
        spec["batchScheduler"] = json!(scheduler);
    }
    if !job.main_application_file.is_empty() {
        spec["mainApplicationFile"] = json!(job.main_application_file);
    }
    if !job.main_class.is_empty() {
        spec["mainClass"] = json!(job.main_class);
    }
    Ok(json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {},
        "spec": spec,
    }))
}

fn application_type(t: i32) -> &'static str {
    match spark_application::Type::try_from(t) {
        Ok(spark_application::Type::Java) => "Java",
        Ok(spark_application::Type::Scala) => "Scala",
        Ok(spark_application::Type::R) => "R",
        _ => "Python",
    }
}

/// Flyte's `getSparkConfig`: platform defaults, the interpreter, the task's
/// conf with feature flags expanded, core limits, and Flyte's bookkeeping.
pub fn spark_conf(
    ctx: &TaskContext,
    job: &SparkJob,
    config: &SparkConfig,
) -> BTreeMap<String, String> {
    let mut conf = config.spark_config_default.clone();
    if !job.executor_path.is_empty() {
        conf.insert("spark.pyspark.python".into(), job.executor_path.clone());
        conf.insert(
            "spark.pyspark.driver.python".into(),
            job.executor_path.clone(),
        );
    }
    let user_conf: BTreeMap<_, _> = job.spark_conf.iter().collect();
    for (key, value) in user_conf {
        let feature = feature_name(key)
            .filter(|_| value.trim().eq_ignore_ascii_case("true"))
            .and_then(|name| config.features.iter().find(|f| f.name == name));
        match feature {
            Some(feature) => conf.extend(feature.spark_config.clone()),
            None => {
                conf.insert(key.clone(), value.clone());
            }
        }
    }
    for role in ["driver", "executor"] {
        let limit = format!("spark.kubernetes.{role}.limit.cores");
        if !conf.contains_key(&limit) {
            let cores = conf
                .get(&format!("spark.kubernetes.{role}.request.cores"))
                .or_else(|| conf.get(&format!("spark.{role}.cores")))
                .cloned();
            if let Some(cores) = cores {
                conf.insert(limit, cores);
            }
        }
    }
    conf.insert(
        "spark.kubernetes.executor.podNamePrefix".into(),
        ctx.metadata.generated_name.clone(),
    );
    conf.insert(
        "spark.kubernetes.driverEnv.FLYTE_START_TIME".into(),
        ctx.now_millis().to_string(),
    );
    conf
}

/// The `<name>` of `spark.flyte.<name>.enabled` / `spark.flyteorg.<name>.enabled`
/// (Flyte matches `^spark.((flyteorg)|(flyte)).(.+).enabled$`, dots unescaped).
fn feature_name(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("spark")?;
    let rest = rest.get(1..)?;
    let rest = rest
        .strip_prefix("flyteorg")
        .or_else(|| rest.strip_prefix("flyte"))?;
    let rest = rest.get(1..)?;
    let name = rest.strip_suffix("enabled")?;
    let name = &name[..name.len().checked_sub(1)?];
    (!name.is_empty()).then_some(name)
}

/// The pod for one role: Flyte's pod, then the role's overlay if any.
///
/// flytekit names the overlay's primary container `primary` while a
/// container-target task's container is named after the object; flytekit
/// means the overlay's primary to be the task's, so it is merged into the
/// task's primary container.
fn role_pod(
    ctx: &TaskContext,
    interruptible: bool,
    role: Option<&K8sPod>,
    field: &str,
) -> Result<TaskPod, PluginError> {
    let mut pod = pod::build(
        ctx,
        pod::Options {
            interruptible,
            ..Default::default()
        },
    )?;
    let Some(role) = role else { return Ok(pod) };
    let role_primary = role.primary_container_name.as_str();
    let renames_primary =
        !role_primary.is_empty() && !pod.spec.containers.iter().any(|c| c.name == role_primary);
    if let Some(overlay) = &role.pod_spec {
        let mut overlay = struct_to_json(overlay);
        if renames_primary {
            for container in overlay["containers"].as_array_mut().into_iter().flatten() {
                if container["name"] == role_primary {
                    container["name"] = json!(pod.primary_container_name);
                }
            }
        }
        pod.spec = pod::merge_overlay(
            &pod.spec,
            &overlay,
            &format!("TaskTemplate.custom.{field}.podSpec"),
        )?;
    }
    if !role_primary.is_empty() && !renames_primary {
        pod.primary_container_name = role_primary.to_owned();
    }
    Ok(pod)
}

/// A spark-operator `SparkPodSpec` (driver or executor) from a built pod.
fn spark_pod_spec(ctx: &TaskContext, pod: &TaskPod, role: Option<&K8sPod>) -> Value {
    let role_meta = role.and_then(|r| r.metadata.clone()).unwrap_or_default();
    let mut annotations = pod.template_annotations(ctx);
    annotations.extend(role_meta.annotations.into_iter());
    let mut labels = pod.template_labels(ctx);
    labels.extend(role_meta.labels.into_iter());

    let primary = pod.primary();
    let mut env = primary.env.clone().unwrap_or_default();
    env.push(EnvVar {
        name: "FLYTE_MAX_ATTEMPTS".into(),
        value: Some(ctx.metadata.max_attempts.to_string()),
        ..Default::default()
    });
    let spec = &pod.spec;
    let service_account = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "spark".into());

    let mut out = json!({
        "image": primary.image,
        "env": env,
        "annotations": annotations,
        "labels": labels,
        "serviceAccount": service_account,
    });
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            out[key] = value;
        }
    };
    put("affinity", json!(spec.affinity));
    put("tolerations", json!(spec.tolerations));
    put("nodeSelector", json!(spec.node_selector));
    put("schedulerName", json!(spec.scheduler_name));
    put("podSecurityContext", json!(spec.security_context));
    put("securityContext", json!(primary.security_context));
    put("dnsConfig", json!(spec.dns_config));
    put("hostNetwork", json!(spec.host_network));
    put(
        "priorityClassName",
        json!(spec.priority_class_name.clone().filter(|p| !p.is_empty())),
    );
    out
}

/// Spark's integer settings (cores, instances) go in only when they parse
/// and are not zero, as in Flyte.
fn put_int(spec: &mut Value, key: &str, value: Option<&String>) {
    if let Some(n) = value
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|n| *n != 0)
    {
        spec[key] = json!(n);
    }
}

fn put_str(spec: &mut Value, key: &str, value: Option<&String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        spec[key] = json!(v);
    }
}

#[cfg(test)]
mod tests {
    use super::feature_name;

    #[test]
    fn feature_flags_are_recognised_like_flytes_regex() {
        assert_eq!(
            feature_name("spark.flyte.feature1.enabled"),
            Some("feature1")
        );
        assert_eq!(
            feature_name("spark.flyteorg.feature2.enabled"),
            Some("feature2")
        );
        assert_eq!(feature_name("spark.flyte.a.b.enabled"), Some("a.b"));
        assert_eq!(feature_name("spark.executor.cores"), None);
        assert_eq!(feature_name("spark.flyte..enabled"), None);
    }
}
