//! `flytewasm run` as a process: exit codes, and Ctrl-C (SIGINT) aborting
//! the task, against `flytewasm sandbox` running as a separate process and
//! reached through a kubeconfig, as a real cluster would be.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use flytewasm::testkit;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use prost::Message;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flytewasm"));
    command.env(
        "FLYTEWASM_CACHE_DIR",
        testkit::workspace_dir().join("target/flytewasm-cache"),
    );
    command
}

fn plugins() -> String {
    testkit::component_path("spark")
        .parent()
        .unwrap()
        .display()
        .to_string()
}

fn spark_task(dir: &Path) -> PathBuf {
    let path = dir.join("spark.pb");
    std::fs::write(&path, testkit::spark_task("", "").template.encode_to_vec()).unwrap();
    path
}

fn run_in_sandbox(task: &Path, outcome: &str) -> Output {
    bin()
        .args([
            "run",
            "--sandbox",
            "--sandbox-step-ms",
            "100",
            "--plugins",
            &plugins(),
        ])
        .args([
            "--annotation",
            &format!("sandbox.flytewasm.io/outcome={outcome}"),
        ])
        .arg(task)
        .output()
        .unwrap()
}

#[test]
fn a_succeeding_task_exits_0_and_a_failing_one_exits_1_with_flytes_error() {
    let dir = tempfile::tempdir().unwrap();
    let task = spark_task(dir.path());
    let ok = run_in_sandbox(&task, "succeed");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for phase in [
        "QUEUED",
        "INITIALIZING",
        "RUNNING",
        "SUCCEEDED",
        "log: Kubernetes Logs(Driver Logs)",
    ] {
        assert!(stdout.contains(phase), "{phase} missing in:\n{stdout}");
    }
    assert!(
        String::from_utf8_lossy(&ok.stderr).contains("[sandbox]"),
        "sandbox output says it is the sandbox"
    );

    let failed = run_in_sandbox(&task, "fail");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("task failed: [DownstreamSystemError] Spark Job Failed with Error"),
        "{stderr}"
    );
}

#[test]
fn json_output_is_one_line_per_phase_change() {
    let dir = tempfile::tempdir().unwrap();
    let output = bin()
        .args([
            "run",
            "--sandbox",
            "--sandbox-step-ms",
            "50",
            "--output",
            "json",
            "--plugins",
            &plugins(),
        ])
        .arg(spark_task(dir.path()))
        .output()
        .unwrap();
    assert!(output.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(events.first().unwrap()["phase"], "QUEUED");
    assert_eq!(events.last().unwrap()["phase"], "SUCCEEDED");
    assert!(
        events
            .iter()
            .all(|e| e["occurredAt"].is_string() && e["version"].is_number())
    );
}

/// `flytewasm sandbox` in its own process; stopped when dropped.
struct SandboxProcess {
    child: Child,
    kubeconfig: PathBuf,
}

impl SandboxProcess {
    fn start(dir: &Path) -> Self {
        let kubeconfig = dir.join("kubeconfig");
        let child = bin()
            .args([
                "sandbox",
                "--port",
                "0",
                "--step-ms",
                "100",
                "--plugins",
                &plugins(),
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !kubeconfig.exists() {
            assert!(
                // Generous: it compiles the plugins first, on a shared machine.
                started.elapsed() < Duration::from_secs(120),
                "the sandbox did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        SandboxProcess { child, kubeconfig }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ctrl_c_aborts_the_task_and_its_object_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = SandboxProcess::start(dir.path());
    let mut run = bin()
        .args([
            "run",
            "--plugins",
            &plugins(),
            "--namespace",
            "tests",
            "--name",
            "interrupted",
        ])
        .args(["--annotation", "sandbox.flytewasm.io/outcome=run-forever"])
        .arg(spark_task(dir.path()))
        .env("KUBECONFIG", &sandbox.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(run.stdout.take().unwrap()).lines();
    for line in stdout.by_ref() {
        if line.unwrap().contains("RUNNING") {
            break;
        }
    }
    let drain = std::thread::spawn(move || stdout.count());
    let status = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = run.wait_with_output().unwrap();
    drain.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("task aborted; its object is gone"),
        "{stderr}"
    );

    // Seen from outside, through the same kubeconfig.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&sandbox.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("sparkoperator.k8s.io", "v1beta2", "SparkApplication"),
            "sparkapplications",
        );
        let apps: Api<DynamicObject> = Api::namespaced_with(client, "tests", &resource);
        assert!(
            apps.get_opt("interrupted").await.unwrap().is_none(),
            "the aborted object is gone"
        );
    });
}

/// A `batch_job` task (our own operator plugin), queued with Kueue or not.
fn batch_task(dir: &Path, custom: serde_json::Value) -> PathBuf {
    let mut template = testkit::spark_task("", "").template;
    template.r#type = "batch_job".into();
    template.custom = Some(serde_json::from_value(custom).unwrap());
    let path = dir.join("batch.pb");
    std::fs::write(&path, template.encode_to_vec()).unwrap();
    path
}

#[test]
fn a_queued_batch_job_waits_for_admission_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let task = batch_task(
        dir.path(),
        serde_json::json!({ "parallelism": 2, "completions": 2, "kueue": { "queueName": "team-a" } }),
    );
    let run = run_in_sandbox(&task, "succeed");
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let waiting = out.find("WAITING_FOR_RESOURCES").expect(&out);
    let running = out.find("RUNNING").expect(&out);
    let succeeded = out.find("SUCCEEDED").expect(&out);
    assert!(waiting < running && running < succeeded, "{out}");
    assert!(out.contains("waiting for Kueue"), "{out}");
}

#[test]
fn a_batch_job_out_of_retries_fails_with_backoff_limit_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let task = batch_task(dir.path(), serde_json::json!({ "backoffLimit": 1 }));
    let run = run_in_sandbox(&task, "fail");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("task failed: [BackoffLimitExceeded]"), "{err}");
}
