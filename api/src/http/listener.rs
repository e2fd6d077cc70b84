//! The HTTP listener with limits on what one client can hold: a cap on concurrent
//! connections, a timeout on reading request headers, and one on the whole request (body
//! included, answer `408 request_timeout`). The handler is given each request's TCP peer
//! address, which the callback allowlists read.

use crate::error::ErrorCode;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::http::StatusCode;
use hyper::server::conn::Http;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// What one connection and one request may take.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout_ms: u64,
    /// Time a request may take, its body included, before `408 request_timeout`.
    pub request_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 4_096,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
        }
    }
}

fn request_timeout_answer(timeout_ms: u64) -> hyper::Response<hyper::Body> {
    let body = crate::error::Refusal::new(
        ErrorCode::RequestTimeout,
        format!("the request took longer than {timeout_ms} ms"),
    )
    .body();
    hyper::Response::builder()
        .status(StatusCode::REQUEST_TIMEOUT)
        .header("content-type", "application/json")
        .header("connection", "close")
        .body(hyper::Body::from(body.to_string()))
        .expect("a valid response")
}

/// Serves `handler` on `listener` until `shutdown` resolves, then lets the connections finish
/// their requests (each is asked to close after the one in flight) for at most 10 s.
pub async fn serve<Handler, Answer>(
    listener: TcpListener,
    handler: Handler,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()>,
) where
    Handler: Fn(SocketAddr, hyper::Request<hyper::Body>) -> Answer + Clone + Send + Sync + 'static,
    Answer: std::future::Future<Output = hyper::Response<hyper::Body>> + Send + 'static,
{
    assert!(limits.max_connections > 0);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_sender, stop_receiver) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before accept: wait a little.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let request_timeout = Duration::from_millis(limits.request_timeout_ms);
        let timeout_ms = limits.request_timeout_ms;
        let mut stop = stop_receiver.clone();
        let mut http = Http::new();
        http.http1_only(true)
            .http1_header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request: hyper::Request<hyper::Body>| {
                // Boxed: the router's future holds the state of its largest handler, and moving
                // it by value into the timeout and into hyper's slot for the request in flight
                // copied it several times per request (a profile found those copies at 6 % of
                // the request threads' time); a box moves as one pointer.
                let answer = Box::pin(handler(peer, request));
                async move {
                    match tokio::time::timeout(request_timeout, answer).await {
                        Ok(answer) => Ok::<_, Infallible>(answer),
                        Err(_) => Ok(request_timeout_answer(timeout_ms)),
                    }
                }
            });
            let connection = http.serve_connection(stream, service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(10), connection).await;
        });
    }
    let _ = stop_sender.send(true);
    // Every connection returns its permit when it ends: wait for all, within bounds.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(11), permits.acquire_many(all)).await;
}
