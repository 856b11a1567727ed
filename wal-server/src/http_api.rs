//! The HTTP listener: `GET /health` and `GET /metrics` on every server;
//! on a cluster node also the peer RPCs (`/raft/...`) and the admin API
//! (`/admin/...`).

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::cluster::http::{Body, read_body};
use crate::cluster::{admin, rpc};
use crate::info::Counters;
use crate::metrics;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub backend: Arc<Backend>,
    pub counters: Arc<Counters>,
}

/// Serves HTTP until `stop` says so, then waits for the requests in
/// flight.
pub(crate) async fn serve(listener: TcpListener, shared: Shared, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let mut stop = stop.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&shared, request).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response
}

async fn handle(shared: &Shared, request: hyper::Request<Incoming>) -> Response<Body> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let node = shared.backend.node();
    match (&method, path.as_str(), node) {
        (&Method::GET, "/health", _) => health(&shared.backend),
        (&Method::GET, "/metrics", _) => {
            let text = metrics::render(&shared.backend, &shared.counters);
            let mut response = reply(StatusCode::OK, text);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (&Method::POST, p, Some(node)) if p.starts_with("/raft/") => {
            match rpc::handle(node, p, request).await {
                Ok(bytes) => reply(StatusCode::OK, bytes),
                Err((status, text)) => reply(status, text),
            }
        }
        (_, p, Some(node)) if p.starts_with("/admin/") => {
            let body = match read_body(request.into_body(), admin::ADMIN_BYTES_MAX).await {
                Ok(body) => body,
                Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
            };
            match admin::handle(node, &method, p, &body).await {
                Ok(bytes) => reply(StatusCode::OK, bytes),
                Err((status, text)) => reply(status, text),
            }
        }
        (_, p, None) if p.starts_with("/raft/") || p.starts_with("/admin/") => reply(
            StatusCode::NOT_FOUND,
            "this server is a single-node store, not a cluster node\n",
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            format!("nothing at {method} {path}\n"),
        ),
    }
}

/// 200 when the server can serve: a single-node store always; a cluster
/// node when it knows a leader (itself or another). 503 otherwise.
fn health(backend: &Backend) -> Response<Body> {
    let Some(node) = backend.node() else {
        return reply(StatusCode::OK, "ok\n");
    };
    let m = node.raft_metrics();
    let text = format!(
        "node {} {:?} term {} leader {}\n",
        node.id(),
        m.state,
        m.current_term,
        m.current_leader.map_or("none".into(), |l| l.to_string())
    );
    let ok = m.running_state.is_ok() && m.current_leader.is_some();
    reply(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        text,
    )
}
