//! The `serve` process: both protocols' services over gRPC on one port
//! (Flyte 1's agent services and Flyte 2's connector services), and `/healthz`,
//! `/readyz`, `/metrics` over HTTP. On shutdown, readiness turns off first
//! and calls in flight are drained before the process exits.
//!
//! Readiness tells the truth: not ready while calls cannot be served — no
//! plugin loaded, a plugin with every call slot taken, the API server not
//! answering — so Kubernetes stops routing to a frozen replica. gRPC health
//! (`grpc.health.v1`, tonic-health) reports the same, for the whole server
//! and for each protocol's task service.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use flytewasm_proto::flyteidl::service::agent_metadata_service_server::AgentMetadataServiceServer;
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentServiceServer;
use flytewasm_proto::flyteidl2::connector::async_connector_service_server::AsyncConnectorServiceServer;
use flytewasm_proto::flyteidl2::connector::connector_metadata_service_server::ConnectorMetadataServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::agent::AgentService;
use crate::connector::ConnectorService;
use crate::registry::PluginStatus;
use crate::task_service::TaskService;

/// Serve until `shutdown` completes, then drain.
pub async fn serve(
    service: Arc<TaskService>,
    grpc: TcpListener,
    http: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let health = Arc::new(Health {
        service: service.clone(),
        stopping: AtomicBool::new(false),
        cluster_error: Mutex::new(None),
    });
    let (reporter, grpc_health) = tonic_health::server::health_reporter();
    // Not serving until the first look says otherwise.
    set_health(&reporter, ServingStatus::NotServing).await;
    let watching = tokio::spawn(watch_health(health.clone(), reporter.clone()));
    let (stop, stopped) = watch::channel(false);
    let stopping = health.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining calls in flight");
        stopping.stopping.store(true, Ordering::SeqCst);
        set_health(&reporter, ServingStatus::NotServing).await;
        let _ = stop.send(true);
    });

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let grpc = builder
        .add_service(grpc_health)
        .add_service(AsyncAgentServiceServer::new(AgentService::new(
            service.clone(),
        )))
        .add_service(AgentMetadataServiceServer::new(AgentService::new(
            service.clone(),
        )))
        .add_service(AsyncConnectorServiceServer::new(ConnectorService::new(
            service.clone(),
        )))
        .add_service(ConnectorMetadataServiceServer::new(ConnectorService::new(
            service,
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), wait(stopped.clone()));

    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/plugins", get(plugins))
        .with_state(health);
    let http = axum::serve(http, app).with_graceful_shutdown(wait(stopped));

    let (grpc, http) = tokio::join!(grpc, http);
    watching.abort();
    grpc?;
    http?;
    Ok(())
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

struct Health {
    service: Arc<TaskService>,
    stopping: AtomicBool,
    /// The API server's last answer to the probe: None while it answers.
    cluster_error: Mutex<Option<String>>,
}

/// How often the cluster is probed and gRPC health refreshed.
const HEALTH_PERIOD: Duration = Duration::from_secs(1);

impl Health {
    /// Why calls cannot be served now, if they cannot.
    fn not_ready(&self) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        let registry = self.service.plugins().current();
        let plugins = registry.plugins();
        if plugins.is_empty() {
            return Some("no plugins loaded".into());
        }
        if let Some(error) = self.cluster_error.lock().unwrap().clone() {
            return Some(format!("the cluster is not answering: {error}"));
        }
        let saturated: Vec<&str> = plugins
            .iter()
            .filter(|p| p.saturated())
            .map(|p| p.id())
            .collect();
        if !saturated.is_empty() {
            return Some(format!(
                "every call slot of plugin {} is taken: calls are being refused",
                saturated.join(", ")
            ));
        }
        None
    }
}

/// gRPC health for the whole server and for each protocol's task service.
async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    type Agent = AsyncAgentServiceServer<AgentService>;
    type Connector = AsyncConnectorServiceServer<ConnectorService>;
    reporter.set_service_status("", status).await;
    match status {
        ServingStatus::Serving => {
            reporter.set_serving::<Agent>().await;
            reporter.set_serving::<Connector>().await;
        }
        _ => {
            reporter.set_not_serving::<Agent>().await;
            reporter.set_not_serving::<Connector>().await;
        }
    }
}

/// Probe the cluster and keep gRPC health in step with readiness.
async fn watch_health(health: Arc<Health>, reporter: tonic_health::server::HealthReporter) {
    let mut last = Some(ServingStatus::NotServing);
    loop {
        let probe = tokio::time::timeout(
            HEALTH_PERIOD * 3,
            health.service.executor().cluster().reachable(),
        )
        .await;
        *health.cluster_error.lock().unwrap() = match probe {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some("no answer within 3 s".into()),
        };
        let status = match health.not_ready() {
            None => ServingStatus::Serving,
            Some(_) => ServingStatus::NotServing,
        };
        if last != Some(status) {
            set_health(&reporter, status).await;
            last = Some(status);
        }
        tokio::time::sleep(HEALTH_PERIOD).await;
    }
}

/// 200 while calls can be served, else 503 with the reason.
async fn ready(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    match health.not_ready() {
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        None => (
            StatusCode::OK,
            format!(
                "ready: {} plugins\n",
                health.service.plugins().current().plugins().len()
            ),
        ),
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> ([(&'static str, &'static str); 1], String) {
    let service = &health.service;
    let cluster = service.executor().cluster();
    service.metrics().held(
        cluster.cached_objects(),
        cluster.open_watches(),
        service.tasks().tracked(),
    );
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.service.metrics().encode(),
    )
}

/// Every plugin file and version, as `flytewasm plugins` shows them (by
/// file name: where the host keeps its files is not the caller's business).
async fn plugins(State(health): State<Arc<Health>>) -> axum::Json<Vec<PluginStatus>> {
    axum::Json(health.service.plugins().current().status())
}
