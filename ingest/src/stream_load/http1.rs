//! A minimal HTTP/1.1 client for requests with a body that honours `Expect: 100-continue`:
//! it writes the head, waits for `100 Continue` or a final response, and only then writes
//! the body. Does I/O (TCP).
//!
//! Why not reqwest/hyper for the body-carrying requests: they send `Expect` but stream the
//! body immediately. The FE answers 307 and the BE answers header-phase failures (size
//! limits, label conflicts, auth) without reading the body and then close the connection;
//! a large body written anyway ends in a reset that can hide the reply, turning a definite
//! "too large" into an ambiguous transport error (spec §1.3). A zero-length probe would
//! avoid the FE case but not the BE's header-phase replies, so the client waits for
//! `100 Continue` itself: a body is only written after the server asked for it (or, as
//! curl does, after `expect_timeout` without any answer).

use std::time::Duration;

use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body kept (StarRocks replies are a few hundred bytes).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// No usable response; `body_sent` says whether any body byte was written.
#[derive(Debug, Clone)]
pub(crate) struct TransportError {
    pub body_sent: bool,
    pub message: String,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub expect: Duration,
    pub total: Duration,
}

/// Sends one request (`Connection: close`) and reads the final response.
pub(crate) async fn send(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
    expect_continue: bool,
    timeouts: Timeouts,
) -> Result<Response, TransportError> {
    let mut body_sent = false;
    let result = tokio::time::timeout(
        timeouts.total,
        exchange(
            method,
            url,
            headers,
            body,
            expect_continue,
            timeouts,
            &mut body_sent,
        ),
    )
    .await;
    match result {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(message)) => Err(TransportError { body_sent, message }),
        Err(_) => Err(TransportError {
            body_sent,
            message: format!("no response within {:?}", timeouts.total),
        }),
    }
}

async fn exchange(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
    expect_continue: bool,
    timeouts: Timeouts,
    body_sent: &mut bool,
) -> Result<Response, String> {
    if url.scheme() != "http" {
        return Err(format!("unsupported scheme {} in {url}", url.scheme()));
    }
    let host = url.host_str().ok_or_else(|| format!("no host in {url}"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    // IPv6 literals come bracketed (`[::1]`); the Host header keeps the brackets.
    let address = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect((address, port)))
        .await
        .map_err(|_| format!("connect to {host}:{port} timed out"))?
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if expect_continue {
        head.push_str("Expect: 100-continue\r\n");
    }
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    conn.write(head.as_bytes()).await?;
    if body.is_empty() {
        return conn.read_final().await;
    }
    if expect_continue {
        match tokio::time::timeout(timeouts.expect, conn.read_head()).await {
            // Final answer before the body (307, header-phase failure): never send it.
            Ok(Ok((status, headers))) if status >= 200 => {
                return conn.finish(status, headers).await;
            }
            Ok(Ok(_continue)) => {}
            Ok(Err(e)) => return Err(e),
            // No interim answer: send the body anyway, as curl does.
            Err(_) => {}
        }
    }
    *body_sent = true;
    if let Err(e) = conn.write(body).await {
        // The server may have answered and closed before reading everything.
        return match conn.read_final().await {
            Ok(response) => Ok(response),
            Err(_) => Err(e),
        };
    }
    conn.read_final().await
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.stream.flush().await.map_err(|e| format!("write: {e}"))
    }

    /// Reads more bytes; `Ok(false)` at EOF.
    async fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if self.buf.len() + n > MAX_RESPONSE_BYTES {
            return Err("response too large".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Reads one response head (interim or final), removing it from the buffer.
    async fn read_head(&mut self) -> Result<(u16, Vec<(String, String)>), String> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..len);
                    return Ok((status, headers));
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill().await? {
                        return Err("connection closed before a response".into());
                    }
                }
                Err(e) => return Err(format!("malformed response: {e}")),
            }
        }
    }

    /// Skips interim (1xx) responses and reads the final one.
    async fn read_final(&mut self) -> Result<Response, String> {
        loop {
            let (status, headers) = self.read_head().await?;
            if status >= 200 {
                return self.finish(status, headers).await;
            }
        }
    }

    /// Reads the body of a final response.
    async fn finish(
        &mut self,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> Result<Response, String> {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            self.read_chunked().await?
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad content-length {len}"))?;
            if len > MAX_RESPONSE_BYTES {
                return Err("response too large".into());
            }
            while self.buf.len() < len {
                if !self.fill().await? {
                    return Err("connection closed inside the response body".into());
                }
            }
            self.buf.drain(..len).collect()
        } else {
            while self.fill().await? {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            if !self.fill().await? {
                return Err("connection closed inside a chunked body".into());
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_RESPONSE_BYTES {
                return Err("response too large".into());
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await? {
                    return Err("connection closed inside a chunked body".into());
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            expect: Duration::from_secs(2),
            total: Duration::from_secs(5),
        }
    }

    /// A one-connection server running `script` on the accepted socket.
    async fn serve<F, Fut>(script: F) -> Url
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            script(s).await;
        });
        Url::parse(&format!("http://{addr}/api/d/t/_stream_load")).unwrap()
    }

    async fn read_head(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            buf.push(b[0]);
        }
        String::from_utf8(buf).unwrap()
    }

    #[tokio::test]
    async fn final_answer_before_continue_means_no_body() {
        let url = serve(|mut s| async move {
            let head = read_head(&mut s).await;
            assert!(head.contains("Expect: 100-continue"));
            s.write_all(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://be/x\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            // Anything the client sent after the head would show up here.
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "body was sent: {} bytes", rest.len());
        })
        .await;
        let r = send("PUT", &url, &[], &[b'x'; 100_000], true, timeouts())
            .await
            .unwrap();
        assert_eq!(r.status, 307);
        assert_eq!(r.header("location"), Some("http://be/x"));
    }

    #[tokio::test]
    async fn continue_then_body_then_chunked_reply() {
        let url = serve(|mut s| async move {
            read_head(&mut s).await;
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
            let mut body = [0u8; 5];
            s.read_exact(&mut body).await.unwrap();
            assert_eq!(&body, b"hello");
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .await
                .unwrap();
        })
        .await;
        let r = send(
            "PUT",
            &url,
            &[("label".into(), "l".into())],
            b"hello",
            true,
            timeouts(),
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    }

    #[tokio::test]
    async fn no_continue_sends_body_after_the_wait_and_reset_is_ambiguous() {
        let url = serve(|mut s| async move {
            read_head(&mut s).await;
            let mut body = [0u8; 3];
            s.read_exact(&mut body).await.unwrap();
            drop(s);
        })
        .await;
        let mut t = timeouts();
        t.expect = Duration::from_millis(100);
        let e = send("PUT", &url, &[], b"abc", true, t).await.unwrap_err();
        assert!(e.body_sent, "{e:?}");
    }

    #[tokio::test]
    async fn refused_connection_is_not_ambiguous() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/x")).unwrap();
        let e = send("PUT", &url, &[], b"abc", true, timeouts())
            .await
            .unwrap_err();
        assert!(!e.body_sent);
    }
}
