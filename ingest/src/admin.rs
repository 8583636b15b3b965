//! The admin HTTP endpoint of the long-running services (`firn ingest`, `firn relay`):
//! Prometheus `/metrics` (OpenMetrics text), `/livez` and `/readyz`. Does I/O (binds a
//! TCP listener and serves HTTP/1.1 on it until dropped).
//!
//! `/livez` answers 200 while the process's main loop is alive; `/readyz` answers 200 once the
//! service has its assignment and resume positions and is moving data, 503 before that and
//! after it started draining. Both bodies are one word so a human with curl can read them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::IngestError;

/// Liveness and readiness as the service reports them.
#[derive(Debug)]
pub struct Health {
    live: AtomicBool,
    ready: AtomicBool,
}

impl Health {
    /// Live, not yet ready.
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            live: AtomicBool::new(true),
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }
}

/// A running admin endpoint; stops serving when dropped.
pub struct AdminServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl AdminServer {
    /// Binds `listen` (`host:port`; port 0 picks a free one) and serves the registry and the
    /// health flags on it.
    pub async fn start(
        listen: &str,
        registry: Arc<Registry>,
        health: Arc<Health>,
    ) -> Result<AdminServer, IngestError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|err| IngestError::Invalid(format!("admin.listen `{listen}`: {err}")))?;
        let local_addr = listener
            .local_addr()
            .map_err(|err| IngestError::Invalid(format!("admin.listen `{listen}`: {err}")))?;
        let (shutdown, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stopped.changed() => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let registry = registry.clone();
                let health = health.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let response = respond(&request, &registry, &health);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    // A client that hangs up mid-response is its own problem.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        tracing::info!(%local_addr, "admin endpoint: /metrics /livez /readyz");
        Ok(AdminServer {
            local_addr,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn respond(
    request: &Request<Incoming>,
    registry: &Registry,
    health: &Health,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response parts are valid"),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
            }
        }
        "/livez" if health.is_live() => text(StatusCode::OK, "live\n"),
        "/livez" => text(StatusCode::SERVICE_UNAVAILABLE, "dead\n"),
        "/readyz" if health.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /livez, /readyz\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}
