//! `{{.Inputs.x}}` in a K8sPod task's container commands and args, rendered
//! from the task's inputs as Flyte's pod builder renders them.
//!
//! Propeller renders a container target's args itself, with these same
//! inputs, before it calls an agent, so those arrive rendered and are left
//! alone: rendering them twice would reach into input values that happen to
//! look like a template. A K8sPod target's pod spec is left to the plugin,
//! and Flyte's plugins render it with the inputs; ours have no inputs, so
//! the host does it here, before the plugin sees the task. Flyte's other
//! placeholders (`{{.outputPrefix}}`...) are the plugin SDK's.
//!
//! As in Flyte: the match is case-insensitive (`{{ $inputs.x }}` too), a
//! name the inputs lack is an error, and no inputs at all leave the
//! templates as written (a serialized task given to `run` or `render`).

use std::sync::LazyLock;

use flytewasm_proto::flyteidl::core::task_template::Target;
use flytewasm_proto::flyteidl::core::{
    Literal, LiteralMap, TaskTemplate, literal, primitive, scalar,
};
use flytewasm_proto::well_known::Timestamp;
use regex::Regex;
use serde_json::Value;

/// An input template that cannot be rendered; the task can never run.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("input template [{template}]: {problem}")]
pub struct InputTemplateError {
    pub template: String,
    pub problem: String,
}

static INPUT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\{\{\s*[.$]inputs\.([^}\s]+)\s*\}\}").expect("a valid pattern")
});

/// Render the input templates of every container and init container of a
/// K8sPod target. Other targets, and a task without inputs, are unchanged.
pub fn render(
    template: &mut TaskTemplate,
    inputs: Option<&LiteralMap>,
) -> Result<(), InputTemplateError> {
    let (Some(inputs), Some(Target::K8sPod(pod))) = (inputs, &mut template.target) else {
        return Ok(());
    };
    let Some(spec) = &mut pod.pod_spec else {
        return Ok(());
    };
    let mut json = serde_json::to_value(&*spec).expect("a Struct is JSON");
    for list in ["containers", "initContainers"] {
        for container in json[list].as_array_mut().into_iter().flatten() {
            for field in ["command", "args"] {
                for item in container[field].as_array_mut().into_iter().flatten() {
                    if let Value::String(text) = item {
                        *text = render_text(text, inputs)?;
                    }
                }
            }
        }
    }
    *spec = serde_json::from_value(json).expect("JSON from a Struct is a Struct");
    Ok(())
}

fn render_text(text: &str, inputs: &LiteralMap) -> Result<String, InputTemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for found in INPUT.captures_iter(text) {
        let whole = found.get(0).expect("group 0 always matches");
        let name = &found[1];
        let failed = |problem: String| InputTemplateError {
            template: whole.as_str().to_owned(),
            problem,
        };
        let literal = inputs
            .literals
            .get(name)
            .ok_or_else(|| failed(format!("requested input is not found [{name}]")))?;
        let value = literal_text(literal).map_err(|why| {
            failed(format!(
                "failed to bind a value to inputName [{name}]: {why}"
            ))
        })?;
        out.push_str(&text[rest..whole.start()]);
        out.push_str(&value);
        rest = whole.end();
    }
    out.push_str(&text[rest..]);
    Ok(out)
}

/// A literal as Flyte writes it into an arg: primitives as Go prints them,
/// blobs and schemas as their URI, collections as `[a,b]`.
fn literal_text(literal: &Literal) -> Result<String, String> {
    match &literal.value {
        Some(literal::Value::Scalar(scalar)) => match &scalar.value {
            Some(scalar::Value::Primitive(p)) => Ok(match &p.value {
                Some(primitive::Value::Integer(n)) => n.to_string(),
                Some(primitive::Value::FloatValue(x)) => go_float(*x),
                Some(primitive::Value::StringValue(s)) => s.clone(),
                Some(primitive::Value::Boolean(b)) => b.to_string(),
                Some(primitive::Value::Datetime(t)) => datetime(t)?,
                // Go prints the protobuf message; this is its field form.
                Some(primitive::Value::Duration(d)) => match (d.seconds, d.nanos) {
                    (s, 0) => format!("seconds:{s}"),
                    (0, n) => format!("nanos:{n}"),
                    (s, n) => format!("seconds:{s} nanos:{n}"),
                },
                None => return Err("received an empty primitive".into()),
            }),
            Some(scalar::Value::Blob(blob)) => Ok(blob.uri.clone()),
            Some(scalar::Value::Schema(schema)) => Ok(schema.uri.clone()),
            Some(other) => Err(format!(
                "a {} input cannot be written into an arg",
                scalar_kind(other)
            )),
            None => Err("received an empty scalar".into()),
        },
        Some(literal::Value::Collection(items)) => {
            let items: Result<Vec<_>, _> = items.literals.iter().map(literal_text).collect();
            Ok(format!("[{}]", items?.join(",")))
        }
        Some(literal::Value::Map(_)) => Err("a map input cannot be written into an arg".into()),
        _ => Err("an offloaded or empty literal cannot be written into an arg".into()),
    }
}

fn scalar_kind(value: &scalar::Value) -> &'static str {
    match value {
        scalar::Value::Primitive(_) => "primitive",
        scalar::Value::Blob(_) => "blob",
        // Flyte renders msgpack binaries with Go's `%v` of the decoded
        // value; a Go-specific text, so refused here.
        scalar::Value::Binary(_) => "binary",
        scalar::Value::Schema(_) => "schema",
        scalar::Value::NoneType(_) => "none",
        scalar::Value::Error(_) => "error",
        scalar::Value::Generic(_) => "generic (struct)",
        scalar::Value::StructuredDataset(_) => "structured dataset",
        scalar::Value::Union(_) => "union",
    }
}

/// RFC 3339 in UTC with as many fraction digits as needed (Go's RFC3339Nano).
fn datetime(t: &Timestamp) -> Result<String, String> {
    let nanos =
        u32::try_from(t.nanos).map_err(|_| format!("invalid datetime nanos {}", t.nanos))?;
    let time = chrono::DateTime::from_timestamp(t.seconds, nanos)
        .ok_or_else(|| format!("datetime out of range: {} s", t.seconds))?;
    Ok(time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Go's `%v` of a float64: `%g` with the shortest digits that read back
/// the same, in exponent form (`1e+06`, `1e-05`) when the exponent is below
/// -4 or at least 6.
fn go_float(x: f64) -> String {
    if !x.is_finite() {
        return match x {
            x if x.is_nan() => "NaN".into(),
            x if x > 0.0 => "+Inf".into(),
            _ => "-Inf".into(),
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e6`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` writes an integer exponent");
    let (sign, mantissa) = mantissa
        .strip_prefix('-')
        .map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exp) {
        let (first, more) = digits.split_at(1);
        let dot = if more.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{more}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let point = (exp + 1) as usize;
    if digits.len() <= point {
        format!("{sign}{digits}{}", "0".repeat(point - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flytewasm_proto::flyteidl::core::{
        Blob, K8sPod, LiteralCollection, Primitive, Scalar, Void,
    };
    use serde_json::json;

    fn primitive(value: primitive::Value) -> Literal {
        Literal {
            value: Some(literal::Value::Scalar(Box::new(Scalar {
                value: Some(scalar::Value::Primitive(Primitive { value: Some(value) })),
            }))),
            ..Default::default()
        }
    }

    fn inputs(items: Vec<(&str, Literal)>) -> LiteralMap {
        LiteralMap {
            literals: items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    fn pod_task(spec: serde_json::Value) -> TaskTemplate {
        TaskTemplate {
            target: Some(Target::K8sPod(K8sPod {
                pod_spec: Some(serde_json::from_value(spec).unwrap()),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn strings(template: &TaskTemplate, list: &str, field: &str) -> Value {
        let Some(Target::K8sPod(pod)) = &template.target else {
            unreachable!()
        };
        serde_json::to_value(pod.pod_spec.as_ref().unwrap()).unwrap()[list][0][field].clone()
    }

    #[test]
    fn k8s_pod_commands_and_args_get_the_inputs() {
        let mut template = pod_task(json!({
            "containers": [{ "name": "primary",
                "command": ["train", "{{.Inputs.epochs}}"],
                "args": ["--lr={{ $inputs.lr }}", "{{.INPUTS.name}}/{{.Inputs.files}}", "{{.outputPrefix}}", "{{ .Inputs.x y }}"] }],
            "initContainers": [{ "name": "fetch", "args": ["{{.Inputs.data}}"] }],
        }));
        let files = Literal {
            value: Some(literal::Value::Collection(LiteralCollection {
                literals: vec![
                    primitive(primitive::Value::StringValue("a".into())),
                    primitive(primitive::Value::StringValue("b".into())),
                ],
            })),
            ..Default::default()
        };
        let data = Literal {
            value: Some(literal::Value::Scalar(Box::new(Scalar {
                value: Some(scalar::Value::Blob(Blob {
                    uri: "s3://bucket/data".into(),
                    ..Default::default()
                })),
            }))),
            ..Default::default()
        };
        let given = inputs(vec![
            ("epochs", primitive(primitive::Value::Integer(15))),
            ("lr", primitive(primitive::Value::FloatValue(0.001))),
            (
                "name",
                primitive(primitive::Value::StringValue("run".into())),
            ),
            ("files", files),
            ("data", data),
        ]);
        render(&mut template, Some(&given)).unwrap();
        assert_eq!(
            strings(&template, "containers", "command"),
            json!(["train", "15"])
        );
        // Other placeholders are the SDK's; a malformed one stays as written.
        assert_eq!(
            strings(&template, "containers", "args"),
            json!([
                "--lr=0.001",
                "run/[a,b]",
                "{{.outputPrefix}}",
                "{{ .Inputs.x y }}"
            ])
        );
        assert_eq!(
            strings(&template, "initContainers", "args"),
            json!(["s3://bucket/data"])
        );
    }

    #[test]
    fn a_missing_or_unwritable_input_names_the_template() {
        let mut template = pod_task(json!({ "containers": [{ "args": ["{{ .Inputs.lr }}"] }] }));
        let err = render(&mut template, Some(&inputs(vec![]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input template [{{ .Inputs.lr }}]: requested input is not found [lr]"
        );
        let none = Literal {
            value: Some(literal::Value::Scalar(Box::new(Scalar {
                value: Some(scalar::Value::NoneType(Void {})),
            }))),
            ..Default::default()
        };
        let err = render(&mut template, Some(&inputs(vec![("lr", none)]))).unwrap_err();
        assert!(
            err.to_string()
                .contains("failed to bind a value to inputName [lr]: a none input"),
            "{err}"
        );
    }

    #[test]
    fn container_targets_and_tasks_without_inputs_are_left_alone() {
        let spec = json!({ "containers": [{ "args": ["{{.Inputs.lr}}"] }] });
        let mut template = pod_task(spec.clone());
        render(&mut template, None).unwrap();
        assert_eq!(pod_task(spec), template);

        // Propeller rendered these already; a value that looks like a
        // template is not rendered again.
        let mut template = TaskTemplate {
            target: Some(Target::Container(
                flytewasm_proto::flyteidl::core::Container {
                    args: vec!["{{.Inputs.lr}}".into()],
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let before = template.clone();
        let given = inputs(vec![("lr", primitive(primitive::Value::Integer(1)))]);
        render(&mut template, Some(&given)).unwrap();
        assert_eq!(before, template);
    }

    #[test]
    fn primitives_are_written_as_go_prints_them() {
        let text = |v| literal_text(&primitive(v)).unwrap();
        for (x, go) in [
            (3.0, "3"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e21, "1e+21"),
            (0.0, "0"),
        ] {
            assert_eq!(text(primitive::Value::FloatValue(x)), go, "{x}");
        }
        assert_eq!(text(primitive::Value::Boolean(true)), "true");
        assert_eq!(
            text(primitive::Value::Datetime(Timestamp {
                seconds: -2208985139,
                nanos: 1
            })),
            "1900-01-01T01:01:01.000000001Z"
        );
        assert_eq!(
            text(primitive::Value::Datetime(Timestamp {
                seconds: 0,
                nanos: 0
            })),
            "1970-01-01T00:00:00Z"
        );
    }
}
