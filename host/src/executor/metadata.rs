//! Flyte's naming and metadata rules (propeller `utils` and the k8s
//! PluginManager's `addObjectMetadata`), so objects look the same as those
//! made by a plugin compiled into propeller.

use std::collections::BTreeMap;

use data_encoding::{Encoding, Specification};
use flytewasm_proto::flyteidl::core::{Secret, TaskTemplate};

/// The finalizer Flyte puts on objects it must clean up.
pub const FINALIZER: &str = "flyte.org/finalizer-k8s";
/// Annotations recording which plugin build created an object.
pub const PLUGIN_ANNOTATION: &str = "flytewasm.io/plugin";
pub const DIGEST_ANNOTATION: &str = "flytewasm.io/plugin-digest";
/// Default length of generated names.
pub const DEFAULT_NAME_LENGTH: usize = 50;

/// Flyte's `FixedLengthUniqueIDForParts`: the parts joined with `-`, or when
/// that is longer than `max_len`, `f` + base32(fnv32a(joined)).
pub fn generated_name(parts: &[&str], max_len: usize) -> String {
    let joined = parts.join("-");
    if joined.len() <= max_len {
        return joined;
    }
    format!(
        "f{}",
        flyte_base32().encode(&fnv32a(joined.as_bytes()).to_be_bytes())
    )
}

fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Base32 with Flyte's lower-case alphabet and no padding.
fn flyte_base32() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz123456");
    spec.encoding().expect("a valid base32 alphabet")
}

/// Make `name` a valid DNS-1123 subdomain the way propeller does:
/// camelCase → kebab, lower case, invalid characters dropped, ends trimmed,
/// and names over 253 characters truncated with a hash suffix.
pub fn dns1123_name(name: &str) -> String {
    if is_dns1123(name) {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            out.push('-');
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
            out.push(c);
        } else if c == '_' {
            out.push('-');
        }
    }
    let mut out = out.trim_matches(|c| c == '-' || c == '.').to_owned();
    if out.len() > 253 {
        let hash = flyte_base32().encode(&fnv32a(name.as_bytes()).to_be_bytes());
        out.truncate(253 - 21);
        out = format!("{}-{hash:0<20}", out.trim_end_matches(['-', '.']));
    }
    out
}

/// Whether `name` is a DNS-1123 subdomain (what most object names must be).
pub fn is_dns1123(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Kubernetes label value: at most 63 characters of `[A-Za-z0-9_.-]`,
/// starting and ending alphanumeric.
pub fn label_value(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut cleaned = cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    cleaned.truncate(63);
    cleaned
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The identity of one task execution attempt.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Execution {
    pub project: String,
    pub domain: String,
    pub name: String,
    pub node_id: String,
    pub retry_attempt: u32,
}

/// The labels propeller puts on a task's objects (from the workflow CR and
/// the node), for front-ends that run tasks without propeller.
pub fn propeller_labels(
    execution: &Execution,
    template: &TaskTemplate,
    interruptible: bool,
) -> BTreeMap<String, String> {
    let task_name = template
        .id
        .as_ref()
        .map(|id| id.name.as_str())
        .unwrap_or_default();
    let mut labels = BTreeMap::from([
        ("execution-id".to_owned(), label_value(&execution.name)),
        ("project".to_owned(), label_value(&execution.project)),
        ("domain".to_owned(), label_value(&execution.domain)),
        ("node-id".to_owned(), label_value(&execution.node_id)),
        ("interruptible".to_owned(), interruptible.to_string()),
    ]);
    if !task_name.is_empty() {
        labels.insert("task-name".to_owned(), label_value(task_name));
    }
    labels.retain(|_, v| !v.is_empty());
    labels
}

/// Labels and annotations the k8s PluginManager derives from the task's
/// secrets (for Flyte's secret-injection webhook) and run-as identity.
pub fn security_metadata(
    template: &TaskTemplate,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    let Some(security) = &template.security_context else {
        return (labels, annotations);
    };
    if !security.secrets.is_empty() {
        labels.insert("inject-flyte-secrets".to_owned(), "true".to_owned());
    }
    for (i, secret) in security.secrets.iter().enumerate() {
        let encoded = data_encoding::BASE32_NOPAD.encode(secret_text(secret).as_bytes());
        annotations.insert(format!("flyte.secrets/s{i}"), encoded);
    }
    if let Some(identity) = security
        .run_as
        .as_ref()
        .map(|r| r.execution_identity.as_str())
        .filter(|i| !i.is_empty())
    {
        labels.insert("execution-identity".to_owned(), label_value(identity));
    }
    (labels, annotations)
}

/// A Secret in protobuf text format, as the webhook decodes it.
fn secret_text(secret: &Secret) -> String {
    let mut fields = Vec::new();
    let mut field = |name: &str, value: &str| {
        if !value.is_empty() {
            fields.push(format!("{name}:{value:?}"));
        }
    };
    field("group", &secret.group);
    field("group_version", &secret.group_version);
    field("key", &secret.key);
    field("env_var", &secret.env_var);
    if secret.mount_requirement != 0 {
        let requirement = match secret.mount_requirement {
            1 => "ENV_VAR",
            2 => "FILE",
            _ => "ANY",
        };
        fields.push(format!("mount_requirement:{requirement}"));
    }
    fields.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_the_parts_joined() {
        assert_eq!(generated_name(&["exec", "n0", "0"], 50), "exec-n0-0");
    }

    #[test]
    fn long_names_are_hashed_to_eight_characters() {
        let long = "a".repeat(60);
        let name = generated_name(&[&long, "n0", "0"], 50);
        assert_eq!(name.len(), 8);
        assert!(name.starts_with('f'));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || ('1'..='6').contains(&c))
        );
        assert_eq!(name, generated_name(&[&long, "n0", "0"], 50), "stable");
    }

    #[test]
    fn fnv32a_matches_the_reference_values() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn names_are_made_dns1123() {
        assert_eq!(dns1123_name("ok-name.1"), "ok-name.1");
        assert_eq!(dns1123_name("MyTask_Name-"), "my-task-name");
        assert!(dns1123_name(&"x".repeat(300)).len() <= 253);
    }

    #[test]
    fn label_values_are_cut_to_63_characters() {
        assert_eq!(label_value("my.module.task"), "my.module.task");
        assert_eq!(label_value("a b/c"), "a-b-c");
        assert_eq!(label_value(&"y".repeat(80)).len(), 63);
    }
}
