//! HTTP/1 plumbing shared by the peer RPCs and the admin commands: a body
//! that is either whole or streamed, and one client connection to a peer,
//! opened on first use and again after a failure.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// A request's or response's body: whole, or chunks from a channel (a
/// snapshot file, read as it is sent).
#[derive(Debug)]
pub(crate) enum Body {
    /// One buffer, sent once.
    Full(Option<Bytes>),
    /// Chunks until the sender is dropped; an error aborts the message.
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Some(bytes.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }
}

/// Reads a whole body of at most `max_bytes`.
///
/// # Errors
/// The connection's errors, and a body over the limit.
pub(crate) async fn read_body<B>(body: B, max_bytes: usize) -> Result<Bytes, std::io::Error>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    http_body_util::Limited::new(body, max_bytes)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(std::io::Error::other)
}

/// One HTTP/1 connection to `addr`, made when first needed and again
/// after any failure (a request cut off mid-way leaves the connection in
/// an unknown state).
#[derive(Debug)]
pub(crate) struct Conn {
    addr: String,
    /// The local address connections leave from, if not the kernel's
    /// choice.
    source: Option<std::net::IpAddr>,
    sender: Option<SendRequest<Body>>,
}

/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Conn {
    pub(crate) fn new(addr: impl Into<String>) -> Conn {
        Conn {
            addr: addr.into(),
            source: None,
            sender: None,
        }
    }

    /// Connections leave from `ip` (port chosen by the kernel), so that
    /// the peer sees the address this node serves on rather than
    /// whichever the route picks.
    pub(crate) fn leaving_from(mut self, ip: std::net::IpAddr) -> Conn {
        self.source = Some(ip);
        self
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Body>, std::io::Error> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, self.dial())
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(async move {
                // Ends when the connection closes or the sender is dropped.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }

    /// A TCP connection to `addr`, from `source` if one is set.
    async fn dial(&self) -> Result<tokio::net::TcpStream, std::io::Error> {
        let Some(source) = self.source else {
            return tokio::net::TcpStream::connect(&self.addr).await;
        };
        let mut last = std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: resolves to no address", self.addr),
        );
        for target in tokio::net::lookup_host(&self.addr).await? {
            if target.is_ipv4() != source.is_ipv4() {
                continue;
            }
            let socket = if source.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(std::net::SocketAddr::new(source, 0))?;
            match socket.connect(target).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends one request and reads its whole response (at most
    /// `max_bytes`), within `timeout` if one is given.
    ///
    /// # Errors
    /// Connection failures ([`std::io::ErrorKind::ConnectionRefused`] and
    /// the like: the peer is down) and timeouts; the connection is
    /// dropped after either.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
        max_bytes: usize,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, Bytes), std::io::Error> {
        let exchange = async {
            let host = self.addr.clone();
            let sender = self.connect().await?;
            sender.ready().await.map_err(std::io::Error::other)?;
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, host);
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let request = request.body(body).map_err(std::io::Error::other)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            let status = response.status();
            let bytes = read_body(response.into_body(), max_bytes).await?;
            Ok::<_, std::io::Error>((status, bytes))
        };
        let outcome = match timeout {
            Some(t) => tokio::time::timeout(t, exchange).await.unwrap_or_else(|_| {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request"))
            }),
            None => exchange.await,
        };
        if outcome.is_err() {
            self.sender = None;
        }
        outcome
    }
}
