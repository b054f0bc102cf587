//! Container resources with Flyte's rules: flyteidl `Resources` into
//! Kubernetes requirements, per-key overrides, and the platform's defaults
//! and limits (`flytek8s.ApplyResourceOverrides` with assign-if-unset).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::flyteidl::core::{self, resources::ResourceName};
use crate::{K8sDefaults, PluginError};

type Map = BTreeMap<String, Quantity>;

/// flyteidl resources → Kubernetes requirements, under Kubernetes names
/// (`GPU` becomes the platform's GPU resource name). STORAGE and UNKNOWN are
/// dropped and zero quantities ignored, as Flyte does; `field` names the
/// source in errors.
pub fn from_flyteidl(
    res: &core::Resources,
    defaults: &K8sDefaults,
    field: &str,
) -> Result<ResourceRequirements, PluginError> {
    let to_map = |entries: &[core::resources::ResourceEntry], what: &str| {
        let mut map = Map::new();
        for entry in entries {
            let name = match ResourceName::try_from(entry.name) {
                Ok(ResourceName::Cpu) => "cpu",
                Ok(ResourceName::Memory) => "memory",
                Ok(ResourceName::Gpu) => defaults.gpu_resource_name(),
                Ok(ResourceName::EphemeralStorage) => "ephemeral-storage",
                _ => continue,
            };
            let value = parse(&entry.value).ok_or_else(|| {
                PluginError::bad_task(format!(
                    "{field}.{what}: `{}` is not a Kubernetes quantity (resource {name})",
                    entry.value
                ))
            })?;
            if value != 0.0 {
                map.insert(name.to_owned(), Quantity(entry.value.clone()));
            }
        }
        Ok(map)
    };
    Ok(ResourceRequirements {
        requests: Some(to_map(&res.requests, "requests")?).filter(|m| !m.is_empty()),
        limits: Some(to_map(&res.limits, "limits")?).filter(|m| !m.is_empty()),
        ..Default::default()
    })
}

/// Flyte's `SanitizeGPUResourceRequirements`: a container's `gpu` (as
/// flytekit writes pod templates) is the platform's GPU resource.
pub fn name_gpus(res: &mut ResourceRequirements, defaults: &K8sDefaults) {
    for map in [&mut res.requests, &mut res.limits].into_iter().flatten() {
        if let Some(quantity) = map.remove("gpu") {
            map.insert(defaults.gpu_resource_name().to_owned(), quantity);
        }
    }
}

/// `overrides` win key by key over `base`, requests and limits apart.
pub fn merge(
    base: Option<&ResourceRequirements>,
    overrides: &ResourceRequirements,
) -> ResourceRequirements {
    let mut merged = base.cloned().unwrap_or_default();
    let extend = |into: &mut Option<Map>, from: &Option<Map>| {
        if let Some(from) = from {
            into.get_or_insert_with(Map::new).extend(from.clone());
        }
    };
    extend(&mut merged.requests, &overrides.requests);
    extend(&mut merged.limits, &overrides.limits);
    merged
}

/// The primary container's resources once the platform has had its say:
/// a missing request takes the limit, a missing limit the request; CPU and
/// memory with neither take the platform default; then everything is held
/// to the platform's limits.
pub fn with_platform_defaults(
    res: &ResourceRequirements,
    defaults: &K8sDefaults,
) -> ResourceRequirements {
    let mut requests = res.requests.clone().unwrap_or_default();
    let mut limits = res.limits.clone().unwrap_or_default();
    let names: Vec<String> = requests.keys().chain(limits.keys()).cloned().collect();
    for name in names {
        if let Some(limit) = limits.get(&name).cloned() {
            requests.entry(name.clone()).or_insert(limit);
        }
        if let Some(request) = requests.get(&name).cloned() {
            limits.entry(name).or_insert(request);
        }
    }
    for (name, default) in [
        ("cpu", defaults.default_cpu()),
        ("memory", defaults.default_memory()),
    ] {
        if !requests.contains_key(name) {
            requests.insert(name.into(), Quantity(default.clone()));
            limits.insert(name.into(), Quantity(default));
        }
    }
    clamped(
        ResourceRequirements {
            requests: Some(requests),
            limits: Some(limits),
            ..Default::default()
        },
        defaults,
    )
}

/// Held to the platform's limits (`task-resources.limits`), requests to
/// their limits: what a secondary or init container gets.
pub fn clamped(mut res: ResourceRequirements, defaults: &K8sDefaults) -> ResourceRequirements {
    for map in [&mut res.requests, &mut res.limits].into_iter().flatten() {
        for (name, quantity) in map.iter_mut() {
            let Some(ceiling) = defaults.task_resources.limits.get(name) else {
                continue;
            };
            if let (Some(value), Some(max)) = (parse(&quantity.0), parse(&ceiling.0))
                && value > max
            {
                *quantity = ceiling.clone();
            }
        }
    }
    // A request above its limit would be refused by the API server: lowered.
    if let (Some(requests), Some(limits)) = (&mut res.requests, &res.limits) {
        for (name, request) in requests.iter_mut() {
            if let Some(limit) = limits.get(name)
                && let (Some(r), Some(l)) = (parse(&request.0), parse(&limit.0))
                && r > l
            {
                *request = limit.clone();
            }
        }
    }
    res
}

/// Every resource name any of these requirements asks for.
pub fn names<'a>(all: impl IntoIterator<Item = &'a ResourceRequirements>) -> Vec<String> {
    let mut names: Vec<String> = all
        .into_iter()
        .flat_map(|r| {
            r.requests
                .iter()
                .chain(r.limits.iter())
                .flat_map(|m| m.keys().cloned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A Kubernetes quantity (`500m`, `2`, `1.5Gi`, `1e3`, `4k`) as a number of
/// base units; `None` when it is not one.
pub fn parse(quantity: &str) -> Option<f64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let exponent = exponent.strip_prefix(['e', 'E'])?;
            10f64.powi(exponent.parse().ok()?)
        }
    };
    Some(number * scale).filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn quantities_parse_with_every_suffix() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("1.5k"), Some(1500.0));
        assert_eq!(parse("lots"), None);
        assert_eq!(parse("-1"), None);
    }

    #[test]
    fn unset_cpu_and_memory_take_the_platform_default_and_limits_mirror_requests() {
        let defaults = K8sDefaults::default();
        let res = ResourceRequirements {
            limits: Some([("nvidia.com/gpu".to_owned(), q("1"))].into()),
            ..Default::default()
        };
        let res = with_platform_defaults(&res, &defaults);
        let requests = res.requests.unwrap();
        assert_eq!(requests["cpu"], q("1000m"));
        assert_eq!(requests["memory"], q("1024Mi"));
        assert_eq!(requests["nvidia.com/gpu"], q("1"));
        assert_eq!(res.limits.unwrap()["cpu"], q("1000m"));
    }

    #[test]
    fn platform_limits_clamp() {
        let mut defaults = K8sDefaults::default();
        defaults.task_resources.limits.insert("cpu".into(), q("2"));
        let res = ResourceRequirements {
            requests: Some([("cpu".to_owned(), q("3"))].into()),
            ..Default::default()
        };
        let res = with_platform_defaults(&res, &defaults);
        assert_eq!(res.requests.unwrap()["cpu"], q("2"));
        assert_eq!(res.limits.unwrap()["cpu"], q("2"));
    }

    #[test]
    fn a_request_above_its_limit_is_lowered() {
        let res = ResourceRequirements {
            requests: Some([("cpu".to_owned(), q("8"))].into()),
            limits: Some([("cpu".to_owned(), q("4"))].into()),
            ..Default::default()
        };
        let res = with_platform_defaults(&res, &K8sDefaults::default());
        assert_eq!(res.requests.unwrap()["cpu"], q("4"));
    }

    #[test]
    fn an_override_wins_per_key() {
        let base = ResourceRequirements {
            requests: Some([("cpu".to_owned(), q("1")), ("memory".to_owned(), q("1Gi"))].into()),
            ..Default::default()
        };
        let over = ResourceRequirements {
            requests: Some([("cpu".to_owned(), q("4"))].into()),
            ..Default::default()
        };
        let merged = merge(Some(&base), &over).requests.unwrap();
        assert_eq!(
            (merged["cpu"].clone(), merged["memory"].clone()),
            (q("4"), q("1Gi"))
        );
    }
}
