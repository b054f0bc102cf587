//! A task's extended resources (`TaskTemplate.extended_resources`), applied
//! to its pod as Flyte does: a GPU accelerator becomes a required node
//! affinity and matching tolerations, shared memory a memory-backed
//! `emptyDir` mounted in the primary container.

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, NodeSelectorRequirement, PodSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::flyteidl::core::{
    ExtendedResources, GpuAccelerator, SharedMemory, gpu_accelerator::PartitionSizeValue,
};
use crate::{K8sDefaults, PluginError};

/// Apply `extended` to `spec`, whose primary container is `primary`.
pub fn apply(
    spec: &mut PodSpec,
    primary: &str,
    extended: &ExtendedResources,
    defaults: &K8sDefaults,
) -> Result<(), PluginError> {
    if let Some(gpu) = &extended.gpu_accelerator {
        apply_gpu(spec, gpu, defaults);
    }
    if let Some(memory) = &extended.shared_memory {
        apply_shared_memory(spec, primary, memory)?;
    }
    Ok(())
}

/// Flyte's `ApplyGPUNodeSelectors`: only pods with a GPU limit are steered.
fn apply_gpu(spec: &mut PodSpec, gpu: &GpuAccelerator, defaults: &K8sDefaults) {
    let requests_gpu = spec.containers.iter().any(|c| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|limits| limits.contains_key(defaults.gpu_resource_name()))
    });
    if !requests_gpu {
        return;
    }
    let device_label = defaults.gpu_device_node_label();
    if !gpu.device.is_empty() {
        crate::pod::add_required_node_requirement(
            spec,
            &requirement(device_label, "In", Some(&gpu.device)),
        );
        add_toleration(spec, equal_no_schedule(device_label, &gpu.device));
    }
    let partition_label = defaults.gpu_partition_size_node_label();
    match &gpu.partition_size_value {
        Some(PartitionSizeValue::PartitionSize(size)) => {
            crate::pod::add_required_node_requirement(
                spec,
                &requirement(partition_label, "In", Some(size)),
            );
            add_toleration(spec, equal_no_schedule(partition_label, size));
        }
        Some(PartitionSizeValue::Unpartitioned(true)) => {
            let unpartitioned = defaults
                .gpu_unpartitioned_node_selector_requirement
                .clone()
                .unwrap_or_else(|| requirement(partition_label, "DoesNotExist", None));
            crate::pod::add_required_node_requirement(spec, &unpartitioned);
            if let Some(toleration) = &defaults.gpu_unpartitioned_toleration {
                add_toleration(spec, toleration.clone());
            }
        }
        _ => {}
    }
}

fn requirement(key: &str, operator: &str, value: Option<&str>) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: value.map(|v| vec![v.to_owned()]),
    }
}

fn equal_no_schedule(key: &str, value: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        value: Some(value.into()),
        operator: Some("Equal".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }
}

/// Add a toleration unless the pod already has the same one.
pub fn add_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&toleration) {
        tolerations.push(toleration);
    }
}

/// Flyte's `AddTolerationsForExtendedResources`: an `Exists`/`NoSchedule`
/// toleration for each configured resource some container requests, unless
/// the pod has that very toleration (another one for the same key, say
/// `Equal` to a value, does not tolerate every taint of it).
pub fn add_extended_resource_tolerations(spec: &mut PodSpec, defaults: &K8sDefaults) {
    let requested = crate::resources::names(
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.resources.as_ref()),
    );
    for name in &defaults.add_tolerations_for_extended_resources {
        if requested.contains(name) {
            add_toleration(
                spec,
                Toleration {
                    key: Some(name.clone()),
                    operator: Some("Exists".into()),
                    effect: Some("NoSchedule".into()),
                    ..Default::default()
                },
            );
        }
    }
}

/// Flyte's `ApplySharedMemory`.
fn apply_shared_memory(
    spec: &mut PodSpec,
    primary: &str,
    memory: &SharedMemory,
) -> Result<(), PluginError> {
    let field = "TaskTemplate.extendedResources.sharedMemory";
    if memory.mount_path.is_empty() {
        return Err(PluginError::bad_task(format!(
            "{field}.mountPath is not set"
        )));
    }
    if memory.mount_name.is_empty() {
        return Err(PluginError::bad_task(format!(
            "{field}.mountName is not set"
        )));
    }
    let size_limit = if memory.size_limit.is_empty() {
        None
    } else if crate::resources::parse(&memory.size_limit).is_some() {
        Some(Quantity(memory.size_limit.clone()))
    } else {
        return Err(PluginError::bad_task(format!(
            "{field}.sizeLimit: `{}` is not a Kubernetes quantity",
            memory.size_limit
        )));
    };
    if spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == memory.mount_name)
    {
        return Err(PluginError::bad_task(format!(
            "{field}: the pod already has a volume named `{}`",
            memory.mount_name
        )));
    }
    let container = spec
        .containers
        .iter_mut()
        .find(|c| c.name == primary)
        .ok_or_else(|| PluginError::internal("the primary container is missing"))?;
    let clash = container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == memory.mount_name || m.mount_path == memory.mount_path);
    if clash {
        return Err(PluginError::bad_task(format!(
            "{field}: the primary container already mounts `{}` or `{}`",
            memory.mount_name, memory.mount_path
        )));
    }
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: memory.mount_name.clone(),
            mount_path: memory.mount_path.clone(),
            ..Default::default()
        });
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: memory.mount_name.clone(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit,
        }),
        ..Default::default()
    });
    Ok(())
}
