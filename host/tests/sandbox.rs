//! The embedded sandbox's Kubernetes semantics, through kube-rs over HTTP:
//! what the host relies on must behave as an API server does.

use std::time::Duration;

use flytewasm::sandbox::{Sandbox, SandboxConfig};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
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
async fn lists_come_in_pages_and_as_metadata_only() {
    let (_sandbox, client) = sandbox().await;
    for (namespace, name, team) in [
        ("a", "m0", "ml"),
        ("a", "m1", "data"),
        ("a", "m2", "ml"),
        ("b", "m3", "ml"),
        ("b", "m4", "ml"),
    ] {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        maps.create(
            &PostParams::default(),
            &config_map(name, json!({ "team": team })),
        )
        .await
        .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let names = |items: Vec<ConfigMap>| -> Vec<String> {
        items
            .into_iter()
            .map(|m| m.metadata.name.unwrap())
            .collect()
    };

    // Pages of two, across namespaces, selected: a token while more remain.
    let paged = ListParams::default().labels("team=ml").limit(2);
    let first = all.list(&paged).await.unwrap();
    assert_eq!(names(first.items), ["m0", "m2"]);
    let token = first.metadata.continue_.expect("more remain");
    let second = all
        .list(&paged.clone().continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(second.items), ["m3", "m4"]);
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));
    assert_eq!(
        second.metadata.resource_version, first.metadata.resource_version,
        "every page reports the first page's version, which a watch resumes from"
    );

    // Metadata only, as kube-rs's list_metadata asks for it.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    let metadata = maps.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metadata.items.len(), 3);
    let item = &metadata.items[0];
    assert_eq!(item.metadata.labels.as_ref().unwrap()["team"], "ml");
    assert_eq!(item.types.as_ref().unwrap().kind, "PartialObjectMetadata");

    // A token not ours is a 400; one older than the kept events, a 410.
    let (code, _) = api_code(
        all.list(&paged.clone().continue_token("not-a-token"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
    let writes: Api<ConfigMap> = Api::namespaced(client, "c");
    for i in 0..6 {
        let map = config_map(&format!("later-{i}"), json!({}));
        writes.create(&PostParams::default(), &map).await.unwrap();
    }
    let (code, reason) = api_code(all.list(&paged.continue_token(&token)).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (410, "Expired"));
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

/// A watch resumed from a version replays every kept event after it,
/// however many: more than its stream buffers, read as the client reads.
#[tokio::test]
async fn a_watch_replays_a_backlog_longer_than_its_buffer() {
    let config = SandboxConfig {
        event_history: 1000,
        ..Default::default()
    };
    let sandbox = Sandbox::start(config).await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(sandbox.client().unwrap(), "ns");
    let since = maps
        .create(&PostParams::default(), &config_map("start", json!({})))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let backlog = 300;
    for i in 0..backlog {
        let map = config_map(&format!("m{i}"), json!({}));
        maps.create(&PostParams::default(), &map).await.unwrap();
    }
    let added = maps
        .watch(&WatchParams::default().timeout(5), &since)
        .await
        .unwrap()
        .take(backlog)
        .filter(|e| futures::future::ready(matches!(e, Ok(WatchEvent::Added(_)))))
        .count()
        .await;
    assert_eq!(added, backlog);
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

// --- Deletion propagation, the garbage collector and Job pods ---

const OUTCOME: &str = "sandbox.flytewasm.io/outcome";

/// Poll until `check` answers (5 s at most).
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..250 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn job(name: &str, parallelism: i32) -> Job {
    serde_json::from_value(json!({ "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "annotations": { OUTCOME: "run-forever" } },
        "spec": { "parallelism": parallelism, "template": {
            "metadata": { "labels": { "app": "demo" } },
            "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "busybox" }] } } } }))
    .unwrap()
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items
}

/// A running Job and its pods, once the Job controller has made them.
async fn running_job(
    client: &kube::Client,
    name: &str,
    parallelism: usize,
) -> (Api<Job>, Api<Pod>, Job, Vec<Pod>) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "ns");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns");
    let created = jobs
        .create(&PostParams::default(), &job(name, parallelism as i32))
        .await
        .unwrap();
    let made = until("the job's pods", async || {
        let made = job_pods(&pods, name).await;
        (made.len() == parallelism).then_some(made)
    })
    .await;
    (jobs, pods, created, made)
}

/// An object's controller reference, `[apiVersion, kind, name, uid]`,
/// checked to block its owner's deletion as a controller's does.
fn controller(meta: &ObjectMeta) -> [String; 4] {
    let owner = &meta.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true)),
        "{owner:?}"
    );
    let owner = owner.clone();
    [owner.api_version, owner.kind, owner.name, owner.uid]
}

fn finalizers(meta: &ObjectMeta) -> Vec<String> {
    meta.finalizers.clone().unwrap_or_default()
}

#[tokio::test]
async fn a_job_creates_its_pods_from_the_template_and_owns_them() {
    let (_sandbox, client) = sandbox().await;
    let (_, pods, job, made) = running_job(&client, "train", 2).await;
    let uid = job.metadata.uid.clone().unwrap();
    for pod in &made {
        let meta = &pod.metadata;
        let name = meta.name.as_deref().unwrap();
        let suffix = name.strip_prefix("train-").unwrap();
        assert!(
            suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_lowercase()),
            "{name}"
        );
        let labels = meta.labels.clone().unwrap();
        assert_eq!(labels["job-name"], "train");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "train");
        assert_eq!(labels["controller-uid"], uid);
        assert_eq!(labels["app"], "demo", "the template's labels");
        assert_eq!(meta.annotations.clone().unwrap()[OUTCOME], "run-forever");
        assert_eq!(controller(meta), ["batch/v1", "Job", "train", &uid]);
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some("busybox")
        );
    }
    // The kubelet simulator runs them, and a run-forever Job's pods stay running.
    let name = made[0].metadata.name.clone().unwrap();
    until("the pod running", async || {
        let phase = pods.get(&name).await.unwrap().status?.phase?;
        (phase == "Running").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let phase = pods.get(&name).await.unwrap().status.unwrap().phase;
    assert_eq!(phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn a_background_deletion_deletes_the_jobs_pods() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, _, _) = running_job(&client, "bg", 2).await;
    let answer = jobs
        .delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    // Gone at once: answered with a success Status naming it.
    let status = answer.right().expect("a Status");
    let details = status.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("bg", "batch", "jobs")
    );
    assert!(jobs.get_opt("bg").await.unwrap().is_none());
    until("the pods collected", async || {
        job_pods(&pods, "bg").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_deleted_without_a_policy_orphans_its_pods() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, _, made) = running_job(&client, "orphans", 2).await;
    let answer = jobs
        .delete("orphans", &DeleteParams::default())
        .await
        .unwrap();
    let marked = answer.left().expect("not deleted at once: the Job itself");
    assert_eq!(finalizers(&marked.metadata), ["orphan"]);
    assert!(marked.metadata.deletion_timestamp.is_some());
    until("the Job gone", async || {
        jobs.get_opt("orphans")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // Orphaned, not collected: still there, owned by no one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = job_pods(&pods, "orphans").await;
    assert_eq!(left.len(), made.len());
    for pod in left {
        assert_eq!(pod.metadata.owner_references, None, "{:?}", pod.metadata);
    }
}

#[tokio::test]
async fn without_a_garbage_collector_an_orphan_deletion_waits_forever() {
    let sandbox = Sandbox::start(SandboxConfig {
        step: Duration::from_millis(50),
        garbage_collector: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = sandbox.client().unwrap();
    let (jobs, pods, _, _) = running_job(&client, "stuck", 1).await;
    jobs.delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stuck = jobs.get("stuck").await.unwrap();
    assert_eq!(finalizers(&stuck.metadata), ["orphan"]);
    assert!(stuck.metadata.deletion_timestamp.is_some());
    let pod = &job_pods(&pods, "stuck").await[0];
    assert!(
        pod.metadata.owner_references.is_some(),
        "nobody orphaned the pod"
    );
}

#[tokio::test]
async fn a_foreground_deletion_waits_for_the_jobs_pods() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, _, made) = running_job(&client, "fg", 2).await;
    // One pod is held by a finalizer, so the Job must wait for it.
    let held = made[0].metadata.name.clone().unwrap();
    pods.patch(
        &held,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": ["example.com/hold"] } })),
    )
    .await
    .unwrap();
    let answer = jobs
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    let marked = answer.left().unwrap();
    assert_eq!(finalizers(&marked.metadata), ["foregroundDeletion"]);
    until("the free pod collected", async || {
        (job_pods(&pods, "fg").await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = jobs.get("fg").await.unwrap();
    assert_eq!(finalizers(&waiting.metadata), ["foregroundDeletion"]);
    let pod = pods.get(&held).await.unwrap();
    assert!(
        pod.metadata.deletion_timestamp.is_some(),
        "the held pod is being deleted"
    );

    pods.patch(
        &held,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    until("the Job gone after its pods", async || {
        jobs.get_opt("fg").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(job_pods(&pods, "fg").await.is_empty());
}

#[tokio::test]
async fn the_garbage_collector_leaves_objects_whose_owner_kind_is_not_served() {
    let (_sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    let owner = maps
        .create(&PostParams::default(), &config_map("owner", json!({})))
        .await
        .unwrap();
    let reference = |api_version: &str, kind: &str, name: &str, uid: &str| json!({ "apiVersion": api_version, "kind": kind, "name": name, "uid": uid });
    let mut flyte = config_map("of-a-workflow", json!({}));
    flyte.metadata.owner_references = Some(vec![
        serde_json::from_value(reference(
            "flyte.lyft.com/v1alpha1",
            "FlyteWorkflow",
            "wf",
            "no-such-uid",
        ))
        .unwrap(),
    ]);
    maps.create(&PostParams::default(), &flyte).await.unwrap();
    let mut dependent = config_map("dependent", json!({}));
    dependent.metadata.owner_references = Some(vec![
        serde_json::from_value(reference(
            "v1",
            "ConfigMap",
            "owner",
            owner.metadata.uid.as_deref().unwrap(),
        ))
        .unwrap(),
    ]);
    maps.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    // The default for ConfigMaps is Background: the dependent goes too.
    maps.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    until("the dependent collected", async || {
        maps.get_opt("dependent")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        maps.get_opt("of-a-workflow").await.unwrap().is_some(),
        "an owner the sandbox cannot look up is not taken for gone"
    );
}

/// A ConfigMap owned by `owners` (name, uid, blockOwnerDeletion).
fn owned_map(name: &str, owners: &[(&str, &str, bool)]) -> ConfigMap {
    let mut map = config_map(name, json!({ "owned": "yes" }));
    let references = owners
        .iter()
        .map(|(owner, uid, block)| {
            serde_json::from_value(json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "name": owner, "uid": uid, "blockOwnerDeletion": block }))
            .unwrap()
        })
        .collect();
    map.metadata.owner_references = Some(references);
    map
}

#[tokio::test]
async fn the_garbage_collector_still_collects_among_thousands_of_objects() {
    let (_sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    let create = async |map: ConfigMap| {
        let created = maps.create(&PostParams::default(), &map).await.unwrap();
        created.metadata.uid.unwrap()
    };
    let background = create(config_map("background", json!({}))).await;
    let orphaning = create(config_map("orphaning", json!({}))).await;
    let foreground = create(config_map("foreground", json!({}))).await;

    // 3,000 objects, a tenth of them owned by each owner in turn.
    let owners = [
        ("background", background.as_str()),
        ("orphaning", orphaning.as_str()),
    ];
    let started = std::time::Instant::now();
    for i in 0..3_000 {
        let name = format!("map-{i}");
        let map = match i % 20 {
            0 | 10 => {
                let (owner, uid) = owners[i % 20 / 10];
                owned_map(&name, &[(owner, uid, false)])
            }
            _ => config_map(&name, json!({})),
        };
        create(map).await;
    }
    println!(
        "3,000 creates with the garbage collector on: {:.1?}",
        started.elapsed()
    );
    // A chain under the foreground owner: middle, then leaf, held by a finalizer.
    let middle = create(owned_map("middle", &[("foreground", &foreground, true)])).await;
    let mut leaf = owned_map("leaf", &[("middle", &middle, true)]);
    leaf.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    create(leaf).await;

    let owned = async |owner: &str, uid: &str| -> usize {
        let all = maps.list(&ListParams::default()).await.unwrap().items;
        all.iter()
            .filter(|m| m.metadata.name.as_deref() != Some(owner))
            .filter(|m| {
                let references = m.metadata.owner_references.iter().flatten();
                references.map(|r| r.uid.as_str()).any(|u| u == uid)
            })
            .count()
    };
    assert_eq!(owned("background", &background).await, 150);
    assert_eq!(owned("orphaning", &orphaning).await, 150);

    let started = std::time::Instant::now();
    maps.delete("background", &DeleteParams::background())
        .await
        .unwrap();
    maps.delete("orphaning", &DeleteParams::orphan())
        .await
        .unwrap();
    maps.delete("foreground", &DeleteParams::foreground())
        .await
        .unwrap();
    until("the background owner's dependents collected", async || {
        let left = maps
            .list(&ListParams::default().labels("owned=yes"))
            .await
            .unwrap();
        // The orphans and the held chain remain.
        (left.items.len() == 150 + 2).then_some(())
    })
    .await;
    until("the orphaning owner gone", async || {
        maps.get_opt("orphaning")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        owned("orphaning", &orphaning).await,
        0,
        "orphaned, not kept"
    );
    println!(
        "the owners' dependents handled in {:.1?}",
        started.elapsed()
    );

    // The chain goes bottom up: the middle waits in the foreground for the
    // held leaf, and the owner for the middle.
    until("the middle deleted in the foreground", async || {
        let middle = maps.get("middle").await.unwrap();
        (finalizers(&middle.metadata) == ["foregroundDeletion"]).then_some(())
    })
    .await;
    let leaf = maps.get("leaf").await.unwrap();
    assert!(leaf.metadata.deletion_timestamp.is_some());
    let owner = maps.get("foreground").await.unwrap();
    assert_eq!(finalizers(&owner.metadata), ["foregroundDeletion"]);
    maps.patch(
        "leaf",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    until("the chain and its owner gone", async || {
        let mut gone = true;
        for name in ["leaf", "middle", "foreground"] {
            gone &= maps.get_opt(name).await.unwrap().is_none();
        }
        gone.then_some(())
    })
    .await;
    let left = maps.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 3_000 - 150, "only the collected ones went");
}

#[tokio::test]
async fn once_an_owner_kind_is_served_its_missing_owners_count_as_gone() {
    let (sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    let mut dependent = config_map("dependent", json!({}));
    dependent.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({ "apiVersion": "example.com/v1", "kind": "Widget",
            "name": "w", "uid": "no-such-uid" }))
        .unwrap(),
    ]);
    maps.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(maps.get_opt("dependent").await.unwrap().is_some());
    sandbox.register(flytewasm::sandbox::Kind::new(
        "example.com/v1",
        "Widget",
        "widgets",
    ));
    // The collector looks again at its next pass, which any change starts.
    maps.create(&PostParams::default(), &config_map("other", json!({})))
        .await
        .unwrap();
    until("the dependent collected", async || {
        maps.get_opt("dependent")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

// --- Raw HTTP: the query form of DeleteOptions and the control endpoint ---

async fn http(
    sandbox: &Sandbox,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", sandbox.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn delete_options_come_from_the_query_or_the_body_and_a_later_delete_can_change_them() {
    let sandbox = Sandbox::start(SandboxConfig {
        garbage_collector: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(sandbox.client().unwrap(), "ns");
    maps.create(&PostParams::default(), &config_map("d", json!({})))
        .await
        .unwrap();
    let path = "/api/v1/namespaces/ns/configmaps/d";
    let (code, object) = http(
        &sandbox,
        "DELETE",
        &format!("{path}?propagationPolicy=Foreground"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        object["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert_eq!(object["metadata"]["deletionGracePeriodSeconds"], 0);
    // The deprecated field, in the body: orphan instead.
    let (code, object) = http(
        &sandbox,
        "DELETE",
        path,
        Some(json!({ "orphanDependents": true })),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(object["metadata"]["finalizers"], json!(["orphan"]));
    let (code, status) = http(
        &sandbox,
        "DELETE",
        &format!("{path}?propagationPolicy=Sideways"),
        None,
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")));
    // A precondition on another uid is a conflict.
    let (code, _) = http(
        &sandbox,
        "DELETE",
        path,
        Some(json!({ "preconditions": { "uid": "other" } })),
    )
    .await;
    assert_eq!(code, 409);
    // Background drops the GC finalizers: nothing else holds it, so it goes.
    let (code, _) = http(
        &sandbox,
        "DELETE",
        path,
        Some(json!({ "propagationPolicy": "Background" })),
    )
    .await;
    assert_eq!(code, 200);
    assert!(maps.get_opt("d").await.unwrap().is_none());
}

#[tokio::test]
async fn the_control_endpoint_drives_faults_from_another_process() {
    let (sandbox, client) = sandbox().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    let faults = "/sandbox.flytewasm.io/v1/faults";
    let (code, state) = http(
        &sandbox,
        "POST",
        faults,
        Some(json!({ "failNext": [{ "verb": "create", "code": 500, "times": 1 }], "latencyMs": 100, "writeLatencyMs": 300 })),
    )
    .await;
    assert_eq!(code, 200, "{state}");
    assert_eq!(state["latencyMs"], 100);
    assert_eq!(state["writeLatencyMs"], 300);
    assert_eq!(
        state["failNext"],
        json!([{ "verb": "create", "code": 500, "times": 1 }])
    );

    let (code, _) = api_code(
        maps.create(&PostParams::default(), &config_map("c", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 500);
    let started_write = std::time::Instant::now();
    maps.create(&PostParams::default(), &config_map("c", json!({})))
        .await
        .unwrap();
    assert!(
        started_write.elapsed() >= Duration::from_millis(400),
        "a write waits for both latencies"
    );
    let started_read = std::time::Instant::now();
    maps.get("c").await.unwrap();
    let read = started_read.elapsed();
    assert!(
        read >= Duration::from_millis(100) && read < Duration::from_millis(400),
        "a read waits for the latency only: {read:?}"
    );
    // The control endpoint itself is never delayed nor counted.
    let asked = std::time::Instant::now();
    http(&sandbox, "POST", faults, Some(json!({ "latencyMs": 5000 }))).await;
    let (code, state) = http(&sandbox, "GET", faults, None).await;
    assert_eq!(code, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        state["requests"],
        json!({ "create": 2, "get": 1 }),
        "{state}"
    );
    assert_eq!(state["errorsServed"], json!({ "create 500": 1 }));
    http(&sandbox, "POST", faults, Some(json!({ "latencyMs": 0 }))).await;

    // Dropping watches ends an open watch.
    let mut watch = maps
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    http(
        &sandbox,
        "POST",
        faults,
        Some(json!({ "dropWatches": true })),
    )
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while watch.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch ended");

    let (code, state) = http(&sandbox, "POST", faults, Some(json!({ "clear": true }))).await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            state["latencyMs"].as_u64(),
            state["writeLatencyMs"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(sandbox.faults().write_latency(), Duration::ZERO);
    let (code, status) = http(
        &sandbox,
        "POST",
        faults,
        Some(json!({ "failNext": [{ "verb": "explode", "code": 500 }] })),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    assert!(
        sandbox.faults().pending().is_empty(),
        "a bad request changes nothing"
    );
}

// --- ResourceQuota ---

#[tokio::test]
async fn a_quota_on_spark_applications_refuses_the_third_with_kubernetes_message() {
    let (_sandbox, client) = sandbox().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "ns");
    let resource = "count/sparkapplications.sparkoperator.k8s.io";
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": { "name": "spark-quota" }, "spec": { "hard": { resource: "2" } } }))
            .unwrap(),
        )
        .await
        .unwrap();
    let gvk = GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication");
    let apps: Api<DynamicObject> = Api::namespaced_with(
        client,
        "ns",
        &ApiResource::from_gvk_with_plural(&gvk, "sparkapplications"),
    );
    let app = |name: &str| -> DynamicObject {
        serde_json::from_value(
            json!({ "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": { "name": name, "annotations": { OUTCOME: "run-forever" } }, "spec": {} }),
        )
        .unwrap()
    };
    for name in ["app-1", "app-2"] {
        apps.create(&PostParams::default(), &app(name))
            .await
            .unwrap();
    }
    let err = apps
        .create(&PostParams::default(), &app("app-3"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        format!(
            "sparkapplications.sparkoperator.k8s.io \"app-3\" is forbidden: exceeded quota: spark-quota, requested: {resource}=1, used: {resource}=2, limited: {resource}=2"
        )
    );
    let used = |quota: &ResourceQuota| {
        let status = quota.status.clone().unwrap_or_default();
        let get = |map: Option<std::collections::BTreeMap<String, Quantity>>| {
            map.and_then(|m| m.get(resource).map(|q| q.0.clone()))
        };
        (get(status.hard), get(status.used))
    };
    until("the quota's status", async || {
        let quota = quotas.get("spark-quota").await.unwrap();
        (used(&quota) == (Some("2".into()), Some("2".into()))).then_some(())
    })
    .await;

    apps.delete("app-1", &DeleteParams::default())
        .await
        .unwrap();
    apps.create(&PostParams::default(), &app("app-3"))
        .await
        .expect("room again after a delete");
    until(
        "the quota's status after the delete and create",
        async || {
            let quota = quotas.get("spark-quota").await.unwrap();
            (used(&quota).1 == Some("2".into())).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_quota_on_a_core_kind_names_it_without_a_group() {
    let (_sandbox, client) = sandbox().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "ns");
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": { "name": "q" }, "spec": { "hard": { "count/configmaps": "1", "configmaps": "1" } } }))
            .unwrap(),
        )
        .await
        .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client, "ns");
    maps.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .unwrap();
    let err = maps
        .create(&PostParams::default(), &config_map("b", json!({})))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "configmaps \"b\" is forbidden: exceeded quota: q, requested: configmaps=1,count/configmaps=1, used: configmaps=1,count/configmaps=1, limited: configmaps=1,count/configmaps=1"
    );
    // Other namespaces are not limited.
    let elsewhere: Api<ConfigMap> = Api::namespaced(maps.clone().into_client(), "other");
    elsewhere
        .create(&PostParams::default(), &config_map("b", json!({})))
        .await
        .unwrap();
}

// --- managedFields ---

#[tokio::test]
async fn writes_record_managed_fields_per_manager_and_subresource() {
    let (sandbox, _) = sandbox().await;
    sandbox.register(flytewasm::sandbox::Kind::new(
        "example.com/v1",
        "Widget",
        "widgets",
    ));
    let mut config = kube::Config::new(sandbox.url().parse().unwrap());
    config.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static("flytewasm-test/1.2 (linux)"),
    ));
    let client = kube::Client::try_from(config).unwrap();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client,
        "ns",
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    );
    let widget: DynamicObject =
        serde_json::from_value(json!({ "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": { "name": "w", "labels": { "team": "ml" } }, "spec": { "size": 1 } }))
        .unwrap();
    let created = widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    let entries = |object: &DynamicObject| -> Vec<serde_json::Value> {
        serde_json::to_value(&object.metadata.managed_fields)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let first = entries(&created);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        first[0]["manager"], "flytewasm-test",
        "the User-Agent's first token"
    );
    assert_eq!(first[0]["operation"], "Update");
    assert_eq!(first[0]["apiVersion"], "example.com/v1");
    assert_eq!(first[0]["fieldsType"], "FieldsV1");
    assert!(first[0]["time"].is_string());
    assert_eq!(
        first[0]["fieldsV1"],
        json!({ "f:metadata": { "f:labels": { "f:team": {} } }, "f:spec": { "f:size": {} } })
    );
    assert!(first[0].get("subresource").is_none());

    // A status write is its own entry; a named field manager wins over the User-Agent.
    let status = widgets
        .patch_status(
            "w",
            &PatchParams {
                field_manager: Some("widget-operator".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({ "status": { "ready": true } })),
        )
        .await
        .unwrap();
    let after = entries(&status);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[1]["manager"], "widget-operator");
    assert_eq!(after[1]["subresource"], "status");
    assert_eq!(
        after[1]["fieldsV1"],
        json!({ "f:status": { "f:ready": {} } })
    );

    // The same manager again: one entry, owning more fields.
    let patched = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "color": "red" } })),
        )
        .await
        .unwrap();
    let again = entries(&patched);
    assert_eq!(again.len(), 2);
    assert_eq!(
        again[0]["fieldsV1"]["f:spec"],
        json!({ "f:size": {}, "f:color": {} })
    );

    // Clients cannot rewrite them, only clear them.
    let forged = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "managedFields": [{ "manager": "forged", "operation": "Update" }] } })),
        )
        .await
        .unwrap();
    assert_eq!(entries(&forged), again);
    let cleared = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "managedFields": [] } })),
        )
        .await
        .unwrap();
    assert!(
        entries(&cleared).is_empty(),
        "{:?}",
        cleared.metadata.managed_fields
    );
}

// --- Kubeflow training operator ---

/// Create a training job of `kind` with these replica types and counts,
/// its containers named as the operator wants, and this `runPolicy`:
/// the jobs' and pods' APIs, and the job.
async fn create_training_job(
    client: &kube::Client,
    kind: &str,
    name: &str,
    replicas: &[(&str, i64)],
    annotations: serde_json::Value,
    run_policy: serde_json::Value,
) -> (Api<DynamicObject>, Api<Pod>, DynamicObject) {
    let (plural, specs_field, container) = match kind {
        "PyTorchJob" => ("pytorchjobs", "pytorchReplicaSpecs", "pytorch"),
        "TFJob" => ("tfjobs", "tfReplicaSpecs", "tensorflow"),
        _ => ("mpijobs", "mpiReplicaSpecs", "mpi"),
    };
    let gvk = GroupVersionKind::gvk("kubeflow.org", "v1", kind);
    let jobs = Api::namespaced_with(
        client.clone(),
        "ns",
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    );
    let specs: serde_json::Map<String, serde_json::Value> = replicas
        .iter()
        .map(|(rtype, n)| {
            let spec = json!({ "replicas": n, "restartPolicy": "OnFailure", "template": {
                "metadata": { "labels": { "app": "demo" } },
                "spec": { "containers": [{ "name": container, "image": "busybox" }] } } });
            (rtype.to_string(), spec)
        })
        .collect();
    let mut spec = json!({ specs_field: specs });
    if !run_policy.is_null() {
        spec["runPolicy"] = run_policy;
    }
    let job = json!({ "apiVersion": "kubeflow.org/v1", "kind": kind,
                      "metadata": { "name": name, "annotations": annotations }, "spec": spec });
    let job: DynamicObject = serde_json::from_value(job).unwrap();
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    (jobs, Api::namespaced(client.clone(), "ns"), created)
}

/// `"<type> <status> <reason>"` for each condition, in order.
fn conditions(job: &DynamicObject) -> Vec<String> {
    job.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
            format!("{} {} {}", text("type"), text("status"), text("reason"))
        })
        .collect()
}

/// The job once its condition `kind` is True.
async fn until_condition(jobs: &Api<DynamicObject>, name: &str, kind: &str) -> DynamicObject {
    until(&format!("{name}: {kind}"), async || {
        let job = jobs.get(name).await.unwrap();
        let current = job.data["status"]["conditions"].as_array().cloned();
        let found = current
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind && c["status"] == "True");
        found.then_some(job)
    })
    .await
}

async fn training_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    let selector = format!("training.kubeflow.org/job-name={job}");
    let mut made = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    made.sort_by_key(|p| p.metadata.name.clone());
    made
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn a_pytorch_job_runs_its_replica_pods_and_succeeds() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, created) = create_training_job(
        &client,
        "PyTorchJob",
        "pt",
        &[("Master", 1), ("Worker", 2)],
        json!({}),
        json!(null),
    )
    .await;
    let uid = created.metadata.uid.clone().unwrap();
    let done = until_condition(&jobs, "pt", "Succeeded").await;
    assert_eq!(
        conditions(&done),
        [
            "Created True PyTorchJobCreated",
            "Running False PyTorchJobRunning",
            "Succeeded True PyTorchJobSucceeded"
        ]
    );
    let status = &done.data["status"];
    assert_eq!(
        status["conditions"][0]["message"],
        "PyTorchJob pt is created."
    );
    for field in ["startTime", "completionTime", "lastReconcileTime"] {
        assert!(status[field].is_string(), "{field}: {status}");
    }
    for condition in status["conditions"].as_array().unwrap() {
        assert!(condition["lastTransitionTime"].is_string(), "{condition}");
        assert!(condition["lastUpdateTime"].is_string(), "{condition}");
    }
    assert_eq!(
        status["replicaStatuses"],
        json!({ "Master": { "succeeded": 1 }, "Worker": { "succeeded": 2 } })
    );

    let made = training_pods(&pods, "pt").await;
    assert_eq!(names(&made), ["pt-master-0", "pt-worker-0", "pt-worker-1"]);
    for pod in &made {
        let meta = &pod.metadata;
        let labels = meta.labels.clone().unwrap();
        let pod_name = meta.name.as_deref().unwrap();
        let (rtype, index) = pod_name
            .strip_prefix("pt-")
            .unwrap()
            .rsplit_once('-')
            .unwrap();
        assert_eq!(labels["training.kubeflow.org/replica-type"], rtype);
        assert_eq!(labels["training.kubeflow.org/replica-index"], index);
        assert_eq!(
            labels["training.kubeflow.org/operator-name"],
            "pytorchjob-controller"
        );
        assert_eq!(labels["app"], "demo", "the template's labels");
        assert_eq!(
            controller(meta),
            ["kubeflow.org/v1", "PyTorchJob", "pt", &uid]
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].name, "pytorch");
        assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
    }
}

#[tokio::test]
async fn a_failing_tf_job_ends_failed() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, _) = create_training_job(
        &client,
        "TFJob",
        "tf",
        &[("Chief", 1), ("PS", 1), ("Worker", 2)],
        json!({ OUTCOME: "fail" }),
        json!(null),
    )
    .await;
    let failed = until_condition(&jobs, "tf", "Failed").await;
    assert_eq!(
        conditions(&failed),
        [
            "Created True TFJobCreated",
            "Running False TFJobRunning",
            "Failed True TFJobFailed"
        ]
    );
    assert_eq!(
        failed.data["status"]["conditions"][2]["message"],
        "TFJob tf is failed because 1 Worker replica(s) failed."
    );
    assert_eq!(
        names(&training_pods(&pods, "tf").await),
        ["tf-chief-0", "tf-ps-0", "tf-worker-0", "tf-worker-1"]
    );
}

#[tokio::test]
async fn an_mpi_job_creates_its_launcher_and_workers() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, _) = create_training_job(
        &client,
        "MPIJob",
        "mpi",
        &[("Launcher", 1), ("Worker", 2)],
        json!({ OUTCOME: "run-forever" }),
        json!(null),
    )
    .await;
    let made = until("the MPIJob's pods", async || {
        let made = training_pods(&pods, "mpi").await;
        (made.len() == 3).then_some(made)
    })
    .await;
    assert_eq!(
        names(&made),
        ["mpi-launcher", "mpi-worker-0", "mpi-worker-1"]
    );
    let launcher = made[0].metadata.labels.clone().unwrap();
    assert_eq!(launcher["training.kubeflow.org/replica-type"], "launcher");
    assert_eq!(
        launcher["training.kubeflow.org/operator-name"],
        "mpijob-controller"
    );
    // run-forever: still running a while later, replicas active.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = jobs.get("mpi").await.unwrap();
    assert_eq!(
        conditions(&job),
        ["Created True MPIJobCreated", "Running True MPIJobRunning"]
    );
    assert_eq!(
        job.data["status"]["replicaStatuses"],
        json!({ "Launcher": { "active": 1 }, "Worker": { "active": 2 } })
    );
}

#[tokio::test]
async fn a_restarting_training_job_runs_again_then_succeeds() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, _, _) = create_training_job(
        &client,
        "PyTorchJob",
        "again",
        &[("Master", 1), ("Worker", 1)],
        json!({ OUTCOME: "restart", "sandbox.flytewasm.io/step-ms": "200" }),
        json!(null),
    )
    .await;
    let restarting = until_condition(&jobs, "again", "Restarting").await;
    // Restarting replaces Running, as the operator's setCondition does.
    assert_eq!(
        conditions(&restarting),
        [
            "Created True PyTorchJobCreated",
            "Restarting True PyTorchJobRestarting"
        ]
    );
    let done = until_condition(&jobs, "again", "Succeeded").await;
    assert_eq!(
        conditions(&done),
        [
            "Created True PyTorchJobCreated",
            "Running False PyTorchJobRunning",
            "Succeeded True PyTorchJobSucceeded"
        ]
    );
}

#[tokio::test]
async fn a_suspended_training_job_makes_no_pods() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, _) = create_training_job(
        &client,
        "PyTorchJob",
        "held",
        &[("Master", 1)],
        json!({}),
        json!({ "suspend": true }),
    )
    .await;
    until_condition(&jobs, "held", "Suspended").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = jobs.get("held").await.unwrap();
    assert_eq!(
        conditions(&job),
        [
            "Created True PyTorchJobCreated",
            "Suspended True PyTorchJobSuspended"
        ]
    );
    assert!(job.data["status"]["startTime"].is_null());
    assert!(training_pods(&pods, "held").await.is_empty());
}

#[tokio::test]
async fn a_background_deletion_deletes_a_training_jobs_pods() {
    let (_sandbox, client) = sandbox().await;
    let (jobs, pods, _) = create_training_job(
        &client,
        "PyTorchJob",
        "gone",
        &[("Master", 1), ("Worker", 2)],
        json!({ OUTCOME: "run-forever" }),
        json!(null),
    )
    .await;
    until("the job's pods", async || {
        (training_pods(&pods, "gone").await.len() == 3).then_some(())
    })
    .await;
    jobs.delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    assert!(jobs.get_opt("gone").await.unwrap().is_none());
    until("the pods collected", async || {
        training_pods(&pods, "gone").await.is_empty().then_some(())
    })
    .await;
}
