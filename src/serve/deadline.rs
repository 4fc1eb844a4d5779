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
use tokio::time::{Instant, Sleep};

/// The error a body past its deadline ends with; readers map it to `408`.
#[derive(Debug, thiserror::Error)]
#[error("request body timed out")]
pub struct BodyTimedOut;

/// `req` with a body that fails once `limit` has passed since now (the head was just read).
/// GET and HEAD carry no body we read, so they are left as they are (no timer per hit). The
/// timer is armed only when the reader has to wait for the body's bytes: a body that came
/// with its head (an order post, as browsers send it) is read without one.
pub fn with_body_deadline(req: Request, limit: Duration) -> Request {
    if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
        return req;
    }
    let deadline = Instant::now() + limit;
    req.map(|body| Body::new(Deadline { body, deadline, sleep: None }))
}

struct Deadline {
    body: Body,
    deadline: Instant,
    /// Armed (at `deadline`) the first time the body has no bytes ready.
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
                let mut sleep = Box::pin(tokio::time::sleep_until(this.deadline));
                // Polled once so that it wakes this task when it fires.
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
                }
                this.sleep = Some(sleep);
                Poll::Pending
            }
            frame => frame,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
