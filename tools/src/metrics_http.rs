//! The `serve --metrics` endpoint: a deliberately tiny HTTP/1.x responder for Prometheus
//! scrapes. `GET /metrics` answers the node's metrics in the Prometheus text format, its gauges
//! refreshed first; any other request gets a 4xx. Bounded in every way a scraper (or anyone
//! else who can reach the port) could push: a request head of at most [`MAX_HEAD`] bytes, the
//! whole exchange under [`EXCHANGE_TIMEOUT`], at most [`MAX_SCRAPES`] at once (more are
//! closed at once), one request per connection.

use std::sync::Arc;
use std::time::Duration;

use net_mesh_node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Largest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest a scrape may take, from accept to the last byte written.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes answered at once.
pub const MAX_SCRAPES: usize = 8;

/// The Prometheus text format's content type.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers scrapes on `listener` until `stop` fires.
pub async fn serve(listener: TcpListener, node: Arc<Node>, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                // Out of descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue;
        };
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(EXCHANGE_TIMEOUT, answer(stream, &node)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("metrics: {e}"),
                Err(_) => tracing::debug!("metrics: a scrape timed out"),
            }
        });
    }
}

async fn answer(mut stream: TcpStream, node: &Arc<Node>) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let (status, content_type, body) = match request_line(&head) {
        Some(("GET", "/metrics")) => {
            let n = Arc::clone(node);
            match tokio::task::spawn_blocking(move || n.render_metrics()).await {
                Ok(text) => ("200 OK", METRICS_TYPE, text),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "rendering the metrics failed\n".to_string(),
                ),
            }
        }
        Some(("GET", _)) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
        Some(_) => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
        None => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads until the end of the request head (a blank line), the peer's end of stream, or
/// [`MAX_HEAD`] bytes (an error).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(head);
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

/// The method and path of a request head's first line, if it is an HTTP/1.x request line.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse_and_junk_does_not() {
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"POST / HTTP/1.1\r\n"), Some(("POST", "/")));
        assert_eq!(request_line(b"GET /metrics\r\n"), None);
        assert_eq!(request_line(b"GET /metrics SPDY/3\r\n"), None);
        assert_eq!(request_line(b"\xff\xfe\r\n"), None);
        assert_eq!(request_line(b""), None);
    }
}
