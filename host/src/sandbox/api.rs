//! The sandbox's HTTP API: the Kubernetes REST paths the host (through
//! kube-rs) and kubectl use, answered from the [`Store`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Shared;
use super::control;
use super::deletion::{self, DeleteOptions};
use super::fields::{self, Writer};
use super::paging::ListRequest;
use super::store::{ApiError, Event, EventType, Kind, LabelSelector, Patch};

pub(super) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
        .with_state(shared)
}

/// Where a request points.
enum Target {
    Versions,
    Groups,
    Resources {
        group: String,
        version: String,
    },
    Collection {
        kind: Kind,
        namespace: Option<String>,
    },
    Object {
        kind: Kind,
        namespace: String,
        name: String,
        status: bool,
    },
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path().starts_with(control::PREFIX) {
        return match control::handle(&shared, &method, uri.path(), &body) {
            Ok((code, value)) => (code, axum::Json(value)).into_response(),
            Err(err) => error(err),
        };
    }
    let target = match parse(&shared, uri.path()) {
        Ok(target) => target,
        Err(err) => return error(err),
    };
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&method, &target) {
        (&Method::GET, Target::Collection { .. }) if watch => "watch",
        (&Method::GET, Target::Collection { .. }) => "list",
        (&Method::GET, _) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => {
            return error(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported"),
            ));
        }
    };
    let resource = match &target {
        Target::Collection { kind, .. } | Target::Object { kind, .. } => Some(kind.plural.as_str()),
        _ => None,
    };
    if let Some(err) = shared.faults.on_request(verb, resource) {
        return error(err);
    }
    let latency = shared.faults.delay(verb);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let store = &shared.store;
    let writer = |kind: &Kind, status: bool| Writer {
        manager: fields::manager(
            query.get("fieldManager").map(String::as_str),
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        ),
        api_version: kind.api_version(),
        status,
    };
    let ok = |value: Value| (StatusCode::OK, value);
    let result: Result<(StatusCode, Value), ApiError> = match (verb, target) {
        (_, Target::Versions) => Ok(ok(
            json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] }),
        )),
        (_, Target::Groups) => Ok(ok(groups(&shared))),
        (_, Target::Resources { group, version }) => Ok(ok(resources(&shared, &group, &version))),
        ("watch", Target::Collection { kind, namespace }) => {
            return watch_stream(shared.clone(), kind, namespace, &query);
        }
        ("list", Target::Collection { kind, namespace }) => {
            let selector = query.get("labelSelector").map_or("", String::as_str);
            ListRequest::new(&query, &headers)
                .and_then(|list| list.answer(store, &kind, namespace.as_deref(), selector))
                .map(ok)
        }
        ("create", Target::Collection { kind, namespace }) => json_body(&body)
            .and_then(|object| {
                shared.quotas.create(
                    store,
                    &kind,
                    namespace.as_deref().unwrap_or_default(),
                    object,
                    &writer(&kind, false),
                )
            })
            .inspect(|object| {
                if kind == crd_kind() {
                    register_crd(&shared, object);
                }
            })
            .map(|o| (StatusCode::CREATED, o)),
        (
            "get",
            Target::Object {
                kind,
                namespace,
                name,
                ..
            },
        ) => store.get(&kind, &namespace, &name).map(ok),
        (
            "update",
            Target::Object {
                kind,
                namespace,
                name,
                status,
            },
        ) => json_body(&body)
            .and_then(|object| {
                store.replace(&kind, &namespace, &name, object, &writer(&kind, status))
            })
            .map(ok),
        (
            "patch",
            Target::Object {
                kind,
                namespace,
                name,
                status,
            },
        ) => patch_body(&headers, &body)
            .and_then(|patch| store.patch(&kind, &namespace, &name, &patch, &writer(&kind, status)))
            .map(ok),
        (
            "delete",
            Target::Object {
                kind,
                namespace,
                name,
                status: false,
            },
        ) => DeleteOptions::from_request(&body, &query).and_then(|options| {
            let (object, gone) = store.delete(&kind, &namespace, &name, &options)?;
            if gone {
                return Ok(ok(deletion::deleted_answer(&kind, object)));
            }
            // kube-apiserver's one 202: dependents to delete, object waiting.
            let code = if options.accepted_status() {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((code, object))
        }),
        (verb, _) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on this path"),
        )),
    };
    match result {
        Ok((code, value)) => (code, axum::Json(value)).into_response(),
        Err(err) => error(err),
    }
}

fn parse(shared: &Shared, path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Ok(Target::Versions),
        ["apis"] => return Ok(Target::Groups),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the sandbox does not serve {path}"),
            ));
        }
    };
    let kind = |plural: &str| {
        shared.store.find_kind(group, version, plural).ok_or_else(|| {
            ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({group}/{version} {plural})"))
        })
    };
    match rest {
        [] => Ok(Target::Resources {
            group: group.into(),
            version: version.into(),
        }),
        [plural] => Ok(Target::Collection {
            kind: kind(plural)?,
            namespace: None,
        }),
        ["namespaces", ns, plural] => Ok(Target::Collection {
            kind: kind(plural)?,
            namespace: Some((*ns).into()),
        }),
        ["namespaces", ns, plural, name] => Ok(Target::Object {
            kind: kind(plural)?,
            namespace: (*ns).into(),
            name: (*name).into(),
            status: false,
        }),
        ["namespaces", ns, plural, name, "status"] => Ok(Target::Object {
            kind: kind(plural)?,
            namespace: (*ns).into(),
            name: (*name).into(),
            status: true,
        }),
        _ => Err(ApiError::new(
            404,
            "NotFound",
            format!("the sandbox does not serve {path}"),
        )),
    }
}

/// CustomResourceDefinitions (cluster-scoped): creating one serves its kind.
pub(super) fn crd_kind() -> Kind {
    Kind::new(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    )
}

fn register_crd(shared: &Shared, crd: &Value) {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    for version in spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] != false)
    {
        let version = version["name"].as_str().unwrap_or_default();
        let kind = Kind::new(
            &format!("{group}/{version}"),
            spec["names"]["kind"].as_str().unwrap_or_default(),
            spec["names"]["plural"].as_str().unwrap_or_default(),
        );
        tracing::info!(target: "sandbox", "[sandbox] now serving {} {}", kind.api_version(), kind.kind);
        shared.store.register(kind);
    }
}

fn groups(shared: &Shared) -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for kind in shared
        .store
        .kinds()
        .into_iter()
        .filter(|k| !k.group.is_empty())
    {
        let version = json!({ "groupVersion": kind.api_version(), "version": kind.version });
        match groups.iter_mut().find(|g| g["name"] == kind.group) {
            Some(group) => {
                if !group["versions"].as_array().unwrap().contains(&version) {
                    group["versions"].as_array_mut().unwrap().push(version);
                }
            }
            None => groups.push(
                json!({ "name": kind.group, "versions": [version], "preferredVersion": version }),
            ),
        }
    }
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn resources(shared: &Shared, group: &str, version: &str) -> Value {
    let verbs = [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    let mut resources = Vec::new();
    for kind in shared
        .store
        .kinds()
        .into_iter()
        .filter(|k| k.group == group && k.version == version)
    {
        resources.push(json!({ "name": kind.plural, "singularName": "", "namespaced": true, "kind": kind.kind, "verbs": verbs }));
        resources.push(json!({ "name": format!("{}/status", kind.plural), "singularName": "", "namespaced": true, "kind": kind.kind, "verbs": ["get", "patch", "update"] }));
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources })
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::new(400, "BadRequest", format!("the body is not JSON: {err}")))
}

fn patch_body(headers: &HeaderMap, body: &Bytes) -> Result<Patch, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match content_type.split(';').next().unwrap_or_default().trim() {
        // The sandbox treats a strategic merge patch as a JSON merge patch.
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            json_body(body).map(Patch::Merge)
        }
        "application/json-patch+json" => {
            serde_json::from_slice(body)
                .map(Patch::Json)
                .map_err(|err| {
                    ApiError::new(
                        400,
                        "BadRequest",
                        format!("the body is not a JSON patch: {err}"),
                    )
                })
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the sandbox does not accept {other:?} patches"),
        )),
    }
}

fn error(err: ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(err.status())).into_response()
}

/// A watch: replays events after the requested resourceVersion (or the
/// current objects when none), then streams changes, bookmarks, and ends on
/// timeout or when faults drop it. A version no longer kept is `410 Gone`.
fn watch_stream(
    shared: Arc<Shared>,
    kind: Kind,
    namespace: Option<String>,
    query: &HashMap<String, String>,
) -> Response {
    let since: Option<u64> = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let selector = match LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
    {
        Ok(selector) => selector,
        Err(err) => return error(err),
    };
    let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(64);

    tokio::spawn(async move {
        let mut tx = tx;
        let mut events = shared.store.subscribe();
        let mut drops = shared.faults.watch_drops();
        drops.borrow_and_update();
        let line = |value: Value| Bytes::from(format!("{value}\n"));
        let matching = |object: &Value| selector.matches(object);
        let mut last = match since {
            Some(since) => match shared
                .store
                .events_since(&kind, namespace.as_deref(), since)
            {
                Some(backlog) => {
                    // Awaited, not tried: a backlog longer than the
                    // channel is sent as the client reads it.
                    for event in backlog.iter().filter(|e| matching(&e.object)) {
                        if tx.send(line(event_json(event))).await.is_err() {
                            return;
                        }
                    }
                    backlog.last().map_or(since, |e| e.resource_version)
                }
                None => {
                    let gone =
                        ApiError::new(410, "Expired", format!("too old resource version: {since}"));
                    let _ = tx.try_send(line(json!({ "type": "ERROR", "object": gone.status() })));
                    return;
                }
            },
            None => {
                let (items, rv) = shared
                    .store
                    .list(&kind, namespace.as_deref(), "")
                    .unwrap_or_default();
                let items: Vec<Value> = items.into_iter().filter(|o| matching(o)).collect();
                for object in items {
                    let added = line(json!({ "type": "ADDED", "object": object }));
                    if tx.send(added).await.is_err() {
                        return;
                    }
                }
                rv
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(Duration::from_secs(1));
        loop {
            let next = tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => {
                        let wanted = event.kind_key == kind.key()
                            && event.resource_version > last
                            && namespace.as_deref().is_none_or(|ns| ns == event.namespace)
                            && (event.kind == EventType::Deleted || matching(&event.object));
                        if !wanted { continue; }
                        last = event.resource_version;
                        event_json(&event)
                    }
                    // A watcher that falls behind is ended; the client re-watches.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
                // A bookmark marks what this watch has delivered; claiming the
                // store's newest version could skip an event still queued here.
                _ = bookmark.tick(), if bookmarks => {
                    json!({ "type": "BOOKMARK", "object": { "kind": kind.kind, "apiVersion": kind.api_version(),
                            "metadata": { "resourceVersion": last.to_string() } } })
                }
                _ = drops.changed() => return,
                _ = &mut deadline => return,
            };
            if tx.send(line(next)).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(rx.map(Ok::<_, Infallible>));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a valid response")
}

fn event_json(event: &Event) -> Value {
    json!({ "type": event.kind.as_str(), "object": &*event.object })
}
