//! A fake Confluent Schema Registry for tests: serves `GET /schemas/ids/{id}` from an
//! in-memory map over HTTP/1.1 (hyper) on loopback, with optional basic auth and a fault
//! switch that makes it answer 503 as a registry that is down would. Does I/O (a socket).
//!
//! Answers follow the real registry: `{"schema": "<text>"}` for a known id, 404 with
//! `{"error_code": 40403, "message": "Schema 7 not found"}` for an unknown one, 401 with
//! `error_code` 401 for missing or wrong credentials.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

struct Shared {
    schemas: Mutex<HashMap<u32, String>>,
    /// `Basic ...` the requests must carry, when auth is on.
    authorization: Option<String>,
    down: AtomicBool,
    requests: AtomicU64,
    /// Requests answered 503 because the registry was down.
    refused: AtomicU64,
}

/// A running fake registry; stops when dropped.
pub struct FakeSchemaRegistry {
    url: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSchemaRegistry {
    /// Starts a registry without auth.
    pub async fn start() -> io::Result<FakeSchemaRegistry> {
        Self::start_with_auth(None).await
    }

    /// Starts a registry that requires HTTP basic auth with `(user, password)`.
    pub async fn start_with_auth(auth: Option<(&str, &str)>) -> io::Result<FakeSchemaRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            schemas: Mutex::new(HashMap::new()),
            authorization: auth.map(|(user, password)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )
            }),
            down: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, shared.clone(), rx));
        Ok(FakeSchemaRegistry {
            url,
            shared,
            shutdown,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Registers `schema` (Avro schema JSON text) under `id`.
    pub fn register(&self, id: u32, schema: &str) {
        self.lock().insert(id, schema.to_string());
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 503 because the registry was down.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, String>> {
        self.shared
            .schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeSchemaRegistry {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, io::Error>(handle(&shared, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/vnd.schemaregistry.v1+json"
            .parse()
            .expect("valid header"),
    );
    response
}

fn handle(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if shared.down.load(Ordering::SeqCst) {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error_code": 50003, "message": "Error while forwarding the request to the leader"}),
        );
    }
    if let Some(expected) = &shared.authorization {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error_code": 401, "message": "Unauthorized"}),
            );
        }
    }
    let id = req
        .uri()
        .path()
        .strip_prefix("/schemas/ids/")
        .and_then(|id| id.parse::<u32>().ok());
    let Some(id) = id.filter(|_| req.method() == hyper::Method::GET) else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"error_code": 404, "message": "HTTP 404 Not Found"}),
        );
    };
    let schemas = shared.schemas.lock().unwrap_or_else(|e| e.into_inner());
    match schemas.get(&id) {
        Some(schema) => reply(StatusCode::OK, json!({"schema": schema})),
        None => reply(
            StatusCode::NOT_FOUND,
            json!({"error_code": 40403, "message": format!("Schema {id} not found")}),
        ),
    }
}
