//! Request bodies a handler answered without reading: a refusal before the body extractor runs
//! (401, 403, 429, 503), or a handler that takes no body at all.
//!
//! hyper keeps a connection only when the request's body was read to its end; otherwise it
//! closes the connection after the answer, without saying so in the answer. A gateway that
//! pooled the connection then sends its next request into a closed socket, and a POST is not
//! resent: the client gets a 502 for a request the engine never saw. So the unread rest of a
//! body is read and discarded after the handler answers (up to [`DRAIN_LIMIT`] bytes arriving
//! within [`DRAIN_WAIT`], as nginx's lingering read does), and where that is not possible the
//! answer says `Connection: close`, so nobody reuses the connection.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// The most of an unread body read and discarded to keep its connection.
pub const DRAIN_LIMIT: usize = 64 * 1024;
/// How long the rest of an unread body may take to arrive.
pub const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// The middleware: gives the handler the body through [`Tracked`], then finishes it.
pub async fn finish_unread_body(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let left = Arc::new(Mutex::new(None));
    let tracked = Tracked {
        inner: Some(body),
        left: left.clone(),
    };
    let mut response = next
        .run(Request::from_parts(parts, Body::new(tracked)))
        .await;
    let unread = left.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(body) = unread {
        let drained = matches!(
            tokio::time::timeout(DRAIN_WAIT, axum::body::to_bytes(body, DRAIN_LIMIT)).await,
            Ok(Ok(_))
        );
        if !drained {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}

/// A request body that, dropped before its end, leaves the rest in `left` for the middleware.
struct Tracked {
    inner: Option<Body>,
    left: Arc<Mutex<Option<Body>>>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take().filter(|body| !body.is_end_stream()) {
            *self.left.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// An engine-like server: `/ignore` answers without reading its body (and says it was
    /// called through `called`), `/read` reads it.
    async fn server(called: Arc<tokio::sync::Notify>) -> std::net::SocketAddr {
        let app = Router::new()
            .route(
                "/ignore",
                post(move || async move {
                    called.notify_one();
                    "ignored"
                }),
            )
            .route("/read", post(|body: String| async move { body }))
            .layer(axum::middleware::from_fn(finish_unread_body));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    /// Reads one answer (headers, then a Content-Length body) off `stream`.
    async fn answer(stream: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed: {got:?}");
            got.push(byte[0]);
        }
        let head = String::from_utf8(got).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        head + std::str::from_utf8(&body).unwrap()
    }

    #[tokio::test]
    async fn a_body_arriving_after_the_handler_answered_keeps_the_connection_serving() {
        let called = Arc::new(tokio::sync::Notify::new());
        let address = server(called.clone()).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        // The head, and the body only once the handler has answered: the case hyper alone
        // closes the connection on, after an answer that does not say so.
        stream
            .write_all(b"POST /ignore HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\n")
            .await
            .unwrap();
        called.notified().await;
        stream.write_all(b"hello").await.unwrap();
        let said = answer(&mut stream).await;
        assert!(said.ends_with("ignored"), "{said}");
        assert!(!said.contains("connection: close"), "{said}");
        stream
            .write_all(b"POST /read HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        let second = answer(&mut stream).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        assert!(second.ends_with("\r\n\r\nok"), "{second}");
    }

    #[tokio::test]
    async fn a_body_too_large_to_discard_gets_connection_close() {
        let address = server(Arc::new(tokio::sync::Notify::new())).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /ignore HTTP/1.1\r\nHost: e\r\nContent-Length: {}\r\n\r\n",
            DRAIN_LIMIT * 4
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(&vec![b'x'; DRAIN_LIMIT * 2])
            .await
            .unwrap();
        let said = answer(&mut stream).await;
        assert!(said.contains("connection: close"), "{said}");
        assert!(said.ends_with("ignored"), "{said}");
    }
}
