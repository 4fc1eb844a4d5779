//! Large media from disk: the file is opened per request and read in chunks as the client
//! takes them, so a slow viewer of a video holds one chunk of memory, not the whole file.

use axum::body::{Body, HttpBody};
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::io::{self, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

const CHUNK: usize = 64 * 1024;

/// A response whose headers are ready and whose body is bytes `start..start + count` of a file.
pub struct Pending {
    pub response: Response,
    pub path: PathBuf,
    /// The file's size at start-up, which the headers (ETag, lengths) were built for.
    pub len: u64,
    pub start: u64,
    pub count: u64,
}

impl Pending {
    /// Opens the file; fails when it is gone or no longer the file we loaded (a rebuild replaced
    /// it before a reload), so the caller can still answer with a status instead of a cut body.
    pub async fn open(self) -> Result<Response, (PathBuf, io::Error)> {
        let Pending { mut response, path, len, start, count } = self;
        let opened = async {
            let mut file = tokio::fs::File::open(&path).await?;
            let now = file.metadata().await?.len();
            if now != len {
                return Err(io::Error::other(format!("size changed from {len} to {now} bytes since start-up")));
            }
            file.seek(SeekFrom::Start(start)).await?;
            Ok(file)
        };
        match opened.await {
            Ok(file) => {
                *response.body_mut() =
                    Body::new(FileBody { file, remaining: count, buf: vec![0; count.min(CHUNK as u64) as usize] });
                Ok(response)
            }
            Err(e) => Err((path, e)),
        }
    }
}

struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    /// Reused across polls: `tokio::fs::File` may answer `Pending` several times per chunk.
    buf: Vec<u8>,
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(this.buf.len() as u64) as usize;
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            // Truncated under us: an error makes hyper cut the connection rather than send
            // fewer bytes than the Content-Length it already announced.
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while streaming"))))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(read.filled());
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
