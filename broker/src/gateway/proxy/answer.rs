//! The upstream's answer as the agent gets it: a small answer of stated size
//! is read whole and sent as one sized body (hyper writes it with the
//! headers, with no stream to poll); any other is streamed. The revocation
//! check covers the read as it covers a stream, and an answer cut while it
//! is read ends in a transfer error as a streamed one would (after a
//! revocation with nothing of it: hyper sends the head with the first
//! bytes, so the connection closes with no answer). Never a refusal: the
//! upstream has acted on the request, and an SDK that renews its token
//! after a `401` would send it again.

use std::pin::Pin;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use futures_util::{Stream, StreamExt as _};

use super::Call;
use crate::gateway::spend_call::Answered;

/// The answer to send: `small` is its size when [`buffered`] said to read it
/// whole; `body` is the upstream's, ended early by a revocation.
pub(super) async fn send(
    upstream: &str,
    small: Option<usize>,
    mut body: Answer,
    call: Call,
    status: StatusCode,
    headers: HeaderMap,
) -> Response {
    if let Some(size) = small {
        let mut whole = Vec::with_capacity(size);
        let mut failed = false;
        while let Some(c) = body.next().await {
            match c {
                Ok(c) => whole.extend_from_slice(&c),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            call.sent(whole.len());
            let mut r = Response::new(Body::from(whole));
            *r.status_mut() = status;
            *r.headers_mut() = headers;
            r.extensions_mut().insert(Answered);
            // The call ends here, its answer read whole: its record is written now.
            drop(call);
            return r;
        }
        // After a revocation nothing of the answer reaches the agent; a
        // broken answer gives what was read, as a stream would have.
        let read = if call.cut.load(Ordering::SeqCst) {
            Vec::new()
        } else {
            tracing::warn!(upstream = %upstream, "the upstream's answer broke off");
            whole
        };
        let broken = std::io::Error::other("the answer was cut off");
        let rest = futures_util::stream::iter([Ok(Bytes::from(read)), Err(broken)]);
        return streamed(Box::pin(rest), call, status, headers);
    }
    streamed(body, call, status, headers)
}

/// Answers up to this size (bytes) with a `Content-Length` are read whole.
const BUFFERED_MAX: u64 = 64 * 1024;

/// The answer's body, as the agent gets it.
pub(super) type Answer = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The size of an answer read whole: it has a body, of a stated size (not
/// chunked) no larger than [`BUFFERED_MAX`].
pub(super) fn buffered(head: bool, status: StatusCode, headers: &HeaderMap) -> Option<usize> {
    let no_body = head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let sized = !no_body && !headers.contains_key(header::TRANSFER_ENCODING);
    size.filter(|n| sized && *n <= BUFFERED_MAX)
        .and_then(|n| usize::try_from(n).ok())
}

/// The answer streamed to the agent; the closure owns the call: its record is
/// written when the body has been streamed, or dropped.
fn streamed(body: Answer, call: Call, status: StatusCode, headers: HeaderMap) -> Response {
    let stream = body.map(move |c| {
        if let Ok(c) = &c {
            call.sent(c.len());
        }
        c
    });
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r.extensions_mut().insert(Answered);
    r
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn sized(n: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_str(n).unwrap_or(HeaderValue::from_static("x")),
        );
        h
    }

    #[test]
    fn only_a_small_answer_of_stated_size_with_a_body_is_read_whole() {
        assert_eq!(buffered(false, StatusCode::OK, &sized("12")), Some(12));
        assert_eq!(
            buffered(false, StatusCode::OK, &sized("65536")),
            Some(65536)
        );
        assert_eq!(buffered(false, StatusCode::OK, &sized("65537")), None);
        assert_eq!(buffered(false, StatusCode::OK, &sized("-1")), None);
        assert_eq!(buffered(false, StatusCode::OK, &HeaderMap::new()), None);
        assert_eq!(buffered(true, StatusCode::OK, &sized("12")), None);
        assert_eq!(buffered(false, StatusCode::NO_CONTENT, &sized("0")), None);
        assert_eq!(
            buffered(false, StatusCode::NOT_MODIFIED, &sized("12")),
            None
        );
        let mut chunked = sized("12");
        chunked.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert_eq!(buffered(false, StatusCode::OK, &chunked), None);
    }
}
