//! The embedded sandbox's Kubernetes semantics, through kube-rs over HTTP:
//! what the host relies on must behave as an API server does.

use std::time::Duration;

use flytewasm::sandbox::{Sandbox, SandboxConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

async fn sandbox() -> (Sandbox, kube::Client) {
    let config = SandboxConfig {
        step: Duration::from_millis(50),
        event_history: 5,
        ..Default::default()
    };
    let sandbox = Sandbox::start(config).await.unwrap();
    let client = sandbox.client().unwrap();
    (sandbox, client)
}

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "labels": labels }, "data": { "k": "v" } }))
    .unwrap()
}

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn a_stale_write_is_a_conflict_and_a_duplicate_create_already_exists() {
    let (_sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    let created = maps
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    let (code, reason) = api_code(
        maps.create(&PostParams::default(), &config_map("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let mut fresh = created.clone();
    fresh.data = Some([("k".to_owned(), "new".to_owned())].into());
    let updated = maps
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    // Writing again from the old version is refused.
    let (code, reason) = api_code(
        maps.replace("a", &PostParams::default(), &fresh)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn merge_and_json_patches_apply() {
    let (_sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    maps.create(&PostParams::default(), &config_map("p", json!({})))
        .await
        .unwrap();
    let merged = maps
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "m": "1" } })),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap()["m"], "1");
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{ "op": "add", "path": "/data/j", "value": "2" }])).unwrap();
    let patched = maps
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["j"], "2");
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{ "op": "remove", "path": "/data/missing" }])).unwrap();
    let (code, _) = api_code(
        maps.patch("p", &PatchParams::default(), &Patch::<()>::Json(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
}

#[tokio::test]
async fn lists_filter_by_label_selector() {
    let (_sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    for (name, team) in [("x", "ml"), ("y", "data"), ("z", "ml")] {
        maps.create(
            &PostParams::default(),
            &config_map(name, json!({ "team": team })),
        )
        .await
        .unwrap();
    }
    let names = |list: kube::api::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|m| m.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(
            maps.list(&ListParams::default().labels("team=ml"))
                .await
                .unwrap()
        ),
        ["x", "z"]
    );
    assert_eq!(
        names(
            maps.list(&ListParams::default().labels("team!=ml"))
                .await
                .unwrap()
        ),
        ["y"]
    );
    assert_eq!(
        names(
            maps.list(&ListParams::default().labels("!team"))
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_removed() {
    let (_sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    let mut map = config_map("f", json!({}));
    map.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    maps.create(&PostParams::default(), &map).await.unwrap();
    maps.delete("f", &Default::default()).await.unwrap();
    let held = maps.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    maps.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    assert!(
        maps.get_opt("f").await.unwrap().is_none(),
        "gone once its finalizers are"
    );
}

#[tokio::test]
async fn watches_resume_from_a_version_send_bookmarks_and_refuse_expired_versions() {
    let (_sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    let first = maps
        .create(&PostParams::default(), &config_map("w1", json!({})))
        .await
        .unwrap();
    maps.create(&PostParams::default(), &config_map("w2", json!({})))
        .await
        .unwrap();
    let since = first.metadata.resource_version.unwrap();

    let params = WatchParams::default().timeout(2);
    let events: Vec<WatchEvent<ConfigMap>> = maps
        .watch(&params, &since)
        .await
        .unwrap()
        .take(2)
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(&events[0], WatchEvent::Added(m) if m.metadata.name.as_deref() == Some("w2")),
        "{events:?}"
    );
    assert!(matches!(&events[1], WatchEvent::Bookmark(_)), "{events:?}");

    // This sandbox keeps 5 events: after 10 more, version `since` is gone.
    for i in 0..10 {
        maps.patch(
            "w2",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "i": i.to_string() } })),
        )
        .await
        .unwrap();
    }
    let too_old = maps
        .watch(&params, &since)
        .await
        .unwrap()
        .boxed()
        .next()
        .await;
    assert!(
        matches!(&too_old, Some(Ok(WatchEvent::Error(e))) if e.code == 410),
        "{too_old:?}"
    );
}

#[tokio::test]
async fn the_kubelet_simulator_runs_a_pod_to_completion() {
    let (_sandbox, client) = sandbox().await;
    let pods: Api<Pod> = Api::namespaced(client, "ns");
    let pod: Pod = serde_json::from_value(
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" },
        "spec": { "containers": [{ "name": "main", "image": "busybox" }] } }),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut phase = String::new();
    for _ in 0..100 {
        phase = pods
            .get("p")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        if phase == "Succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(phase, "Succeeded");
}

#[tokio::test]
async fn injected_faults_answer_with_kubernetes_status_bodies() {
    let (sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    sandbox.faults().fail_next("list", 500, 1);
    let (code, reason) = api_code(maps.list(&Default::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    assert!(
        maps.list(&Default::default()).await.is_ok(),
        "only the next request fails"
    );
    assert_eq!(sandbox.faults().requests("list"), 2);
}
