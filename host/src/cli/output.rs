//! Objects printed as YAML that every Kubernetes tool reads back the same.
//!
//! kubectl and many libraries parse YAML 1.1, where a plain `on`, `yes` or
//! `n` is a boolean; serde_yaml only quotes what is ambiguous in YAML 1.2,
//! so `spark.foo: on` would come back as `true`. Here every string value is
//! written in double quotes (JSON string syntax, valid YAML), and keys are
//! quoted unless they are plainly safe.

use serde_json::Value;

pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_list(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key_text(key));
        out.push(':');
        write_child(out, value, indent + 2, false);
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        write_child(out, item, indent + 2, true);
    }
}

/// A value after `key:` or `-`: inline when scalar or empty, else on the
/// following lines (a map inside a list starts on the dash's line).
fn write_child(out: &mut String, value: &Value, indent: usize, in_list: bool) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            if in_list {
                out.push(' ');
                let mut nested = String::new();
                write_map(&mut nested, map, indent);
                out.push_str(nested.trim_start());
            } else {
                out.push('\n');
                write_map(out, map, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_list(out, items, if in_list { indent } else { indent - 2 });
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // JSON's string, number, bool and null syntax is YAML too.
        other => other.to_string(),
    }
}

fn key_text(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && key.starts_with(|c: char| c.is_ascii_alphabetic())
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "yes" | "n" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_a_yaml_parser() {
        let value = json!({
            "on": "on", "spark.conf": { "a": "yes", "b": "012", "c": "" },
            "list": [ { "name": "x", "value": "n" }, "plain", 3, [1, 2], {} ],
            "empty": [], "flag": true, "none": null, "n": 1.5,
        });
        let text = yaml(&value);
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
        assert!(text.contains("a: \"yes\""), "{text}");
        assert!(text.contains("\"on\": \"on\""), "{text}");
    }
}
