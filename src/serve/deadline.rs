//! A total deadline for a request's body: a client that trickles its body a byte at a time
//! keeps a connection (and a slot under `server.max_connections`) only this long, however
//! often it sends. (A per-chunk timeout is reset by every byte, so it never fires.)

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// The error a body past its deadline ends with; readers map it to `408`.
#[derive(Debug, thiserror::Error)]
#[error("request body timed out")]
pub struct BodyTimedOut;

/// `req` with its body as the handlers take it, failing once `limit` has passed since the
/// reader first had to wait for its bytes. Handlers read a body as soon as its head is in, so
/// that is the head's arrival, give or take microseconds; a body that came with its head (an
/// order post, as browsers send it) is read with no timer and no clock read. GET and HEAD
/// carry no body we read, so they get none either. The body is boxed once, deadline and all.
pub fn with_body_deadline(req: hyper::Request<Incoming>, limit: Duration) -> Request {
    if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
        return req.map(Body::new);
    }
    req.map(|body| Body::new(Deadline { body, limit, sleep: None }))
}

struct Deadline {
    body: Incoming,
    limit: Duration,
    /// Armed (`limit` from then) the first time the body has no bytes ready.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(sleep) = &mut this.sleep {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
            }
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Pending if this.sleep.is_none() => {
                let mut sleep = Box::pin(tokio::time::sleep(this.limit));
                // Polled once so that it wakes this task when it fires.
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
                }
                this.sleep = Some(sleep);
                Poll::Pending
            }
            frame => frame.map_err(axum::Error::new),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
