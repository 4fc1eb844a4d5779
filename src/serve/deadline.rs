//! A total deadline for a request's body: a client that trickles its body a byte at a time
//! keeps a connection (and a slot under `server.max_connections`) only this long, however
//! often it sends. (A per-chunk timeout is reset by every byte, so it never fires.)

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use hyper::body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// The error a body past its deadline ends with; readers map it to `408`.
#[derive(Debug, thiserror::Error)]
#[error("request body timed out")]
pub struct BodyTimedOut;

/// `req` with a body that fails once `limit` has passed since now (the head was just read).
/// GET and HEAD carry no body we read, so they are left as they are (no timer per hit).
pub fn with_body_deadline(req: Request, limit: Duration) -> Request {
    if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
        return req;
    }
    req.map(|body| Body::new(Deadline { body, sleep: Box::pin(tokio::time::sleep(limit)) }))
}

struct Deadline {
    body: Body,
    sleep: Pin<Box<Sleep>>,
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
