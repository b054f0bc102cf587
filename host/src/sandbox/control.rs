//! The control endpoint: [`Faults`](super::Faults) over HTTP, for tests
//! that run `flytewasm sandbox` as another process.
//!
//! `POST /sandbox.flytewasm.io/v1/faults` with any subset of
//! `{"clear": true, "failNext": [{"verb": "create", "code": 503, "times": 3}],
//! "latencyMs": 200, "writeLatencyMs": 2000, "dropWatches": true}`
//! (applied in that order; `times` defaults to 1; a failure with
//! `"resource": "sparkapplications"` meets only that resource) answers the state that
//! `GET` on the same path answers: `{"requests": {verb: count},
//! "errorsServed": {"verb code": count}, "latencyMs", "writeLatencyMs",
//! "failNext": [...still pending]}`. These requests are not counted and
//! never meet faults or latency.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::faults::VERBS;
use super::store::ApiError;

pub const PREFIX: &str = "/sandbox.flytewasm.io/";
const FAULTS: &str = "/sandbox.flytewasm.io/v1/faults";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Request {
    #[serde(default)]
    clear: bool,
    #[serde(default)]
    fail_next: Vec<Failure>,
    latency_ms: Option<u64>,
    write_latency_ms: Option<u64>,
    #[serde(default)]
    drop_watches: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Failure {
    verb: String,
    /// Only on this resource (plural).
    resource: Option<String>,
    code: u16,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

pub(super) fn handle(
    shared: &Shared,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    if path.trim_end_matches('/') != FAULTS {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("the sandbox has no control endpoint {path} (there is {FAULTS})"),
        ));
    }
    match *method {
        Method::GET => Ok((StatusCode::OK, state(shared))),
        Method::POST => {
            let bad = |message: String| ApiError::new(400, "BadRequest", message);
            let request: Request = serde_json::from_slice(body)
                .map_err(|err| bad(format!("not a faults request: {err}")))?;
            // Check it all before changing anything.
            let mut failures = Vec::new();
            for failure in &request.fail_next {
                let verb = VERBS.iter().find(|v| **v == failure.verb).ok_or_else(|| {
                    bad(format!(
                        "unknown verb {:?} (one of {VERBS:?})",
                        failure.verb
                    ))
                })?;
                if !(400..=599).contains(&failure.code) {
                    return Err(bad(format!(
                        "code {} is not an HTTP error code",
                        failure.code
                    )));
                }
                failures.push((*verb, failure.resource.clone(), failure.code, failure.times));
            }
            let faults = &shared.faults;
            if request.clear {
                faults.clear();
            }
            if let Some(ms) = request.latency_ms {
                faults.set_latency(Duration::from_millis(ms));
            }
            if let Some(ms) = request.write_latency_ms {
                faults.set_write_latency(Duration::from_millis(ms));
            }
            for (verb, resource, code, times) in failures {
                match resource {
                    Some(resource) => faults.fail_next_on(verb, &resource, code, times),
                    None => faults.fail_next(verb, code, times),
                }
            }
            if request.drop_watches {
                faults.drop_watches();
            }
            Ok((StatusCode::OK, state(shared)))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {FAULTS} (GET or POST)"),
        )),
    }
}

fn state(shared: &Shared) -> Value {
    let faults = &shared.faults;
    let pending: Vec<Value> = faults
        .pending()
        .into_iter()
        .map(|(verb, resource, code, times)| {
            // As it was asked: `resource` only when the fault has one.
            let mut fault = json!({ "verb": verb, "code": code, "times": times });
            if let Some(resource) = resource {
                fault["resource"] = json!(resource);
            }
            fault
        })
        .collect();
    json!({
        "requests": faults.request_counts(),
        "errorsServed": faults.errors_served(),
        "latencyMs": faults.latency().as_millis() as u64,
        "writeLatencyMs": faults.write_latency().as_millis() as u64,
        "failNext": pending,
    })
}
