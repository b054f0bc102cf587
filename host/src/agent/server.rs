//! The `serve` process: the agent services over gRPC, and `/healthz`,
//! `/readyz`, `/metrics` over HTTP. On shutdown, readiness turns off first
//! and calls in flight are drained before the process exits.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use flytewasm_proto::flyteidl::service::agent_metadata_service_server::AgentMetadataServiceServer;
use flytewasm_proto::flyteidl::service::async_agent_service_server::AsyncAgentServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::service::AgentService;
use crate::registry::PluginStatus;

/// Serve until `shutdown` completes, then drain.
pub async fn serve(
    service: AgentService,
    grpc: TcpListener,
    http: TcpListener,
    tls: Option<Identity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = Arc::new(service);
    let health = Arc::new(Health {
        service: service.clone(),
        stopping: AtomicBool::new(false),
    });
    let (stop, stopped) = watch::channel(false);
    let stopping = health.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining calls in flight");
        stopping.stopping.store(true, Ordering::SeqCst);
        let _ = stop.send(true);
    });

    let mut builder = Server::builder();
    if let Some(identity) = tls {
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let grpc = builder
        .add_service(AsyncAgentServiceServer::from_arc(service.clone()))
        .add_service(AgentMetadataServiceServer::from_arc(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), wait(stopped.clone()));

    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/plugins", get(plugins))
        .with_state(health);
    let http = axum::serve(http, app).with_graceful_shutdown(wait(stopped));

    let (grpc, http) = tokio::join!(grpc, http);
    grpc?;
    http?;
    Ok(())
}

async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

struct Health {
    service: Arc<AgentService>,
    stopping: AtomicBool,
}

/// Ready while serving at least one plugin and not shutting down.
async fn ready(State(health): State<Arc<Health>>) -> (StatusCode, String) {
    if health.stopping.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    let loaded = health.service.plugins().current().plugins().len();
    if loaded == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no plugins loaded\n".into(),
        )
    } else {
        (StatusCode::OK, format!("ready: {loaded} plugins\n"))
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.service.metrics().encode(),
    )
}

/// Every plugin file and version, as `flytewasm plugins` shows them.
async fn plugins(State(health): State<Arc<Health>>) -> axum::Json<Vec<PluginStatus>> {
    axum::Json(health.service.plugins().current().status())
}
