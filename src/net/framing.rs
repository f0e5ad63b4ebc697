//! Message framing over the transports: newline-delimited JSON over TCP and TLS (at most
//! `MAX_RECV` bytes a line), one message per WebSocket message; and the writers that drain a
//! session's outgoing queue, flushing once it is empty so bursts go out in few writes.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::sessions::session::{self, Line, Outgoing, Source, SEND_QUEUE};
use crate::sessions::Sessions;

/// Newline framing over a byte stream (TCP, TLS), at most `max` bytes a line.
struct Lines<R> {
    r: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin + Send> Source for Lines<R> {
    fn next<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<Line>> + Send + 'a {
        read_line(&mut self.r, buf, self.max)
    }
}

/// Serves one newline-framed connection (TCP, SSL) until either side closes it.
pub(super) async fn lines<S>(
    sessions: Arc<Sessions>,
    stream: S,
    peer: SocketAddr,
    kind: &'static str,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(SEND_QUEUE);
    let write_task = tokio::spawn(writer(wr, rx));
    let source = Lines {
        r: BufReader::new(rd),
        max: sessions.max_recv(),
    };
    session::serve(sessions, source, tx, write_task, peer, kind).await
}

/// Serves one WebSocket connection (ws, wss; handshake done): one JSON-RPC message per text
/// (or binary) message, no newlines. The size limit is the WebSocket configuration's.
pub(super) async fn websocket<S>(
    sessions: Arc<Sessions>,
    ws: tokio_tungstenite::WebSocketStream<S>,
    peer: SocketAddr,
    kind: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(SEND_QUEUE);
    let write_task = tokio::spawn(ws_writer(sink, rx));
    session::serve(sessions, WsSource { stream }, tx, write_task, peer, kind).await
}

struct WsSource<S> {
    stream: futures::stream::SplitStream<tokio_tungstenite::WebSocketStream<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Source for WsSource<S> {
    fn next<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> impl std::future::Future<Output = std::io::Result<Line>> + Send + 'a {
        use tokio_tungstenite::tungstenite::{Error, Message};
        async move {
            buf.clear();
            loop {
                match self.stream.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(Line::Eof),
                    Some(Ok(Message::Text(t))) => {
                        buf.extend_from_slice(t.as_bytes());
                        return Ok(Line::Complete);
                    }
                    Some(Ok(Message::Binary(b))) => {
                        buf.extend_from_slice(&b);
                        return Ok(Line::Complete);
                    }
                    Some(Ok(_)) => {} // ping, pong: answered by the library
                    Some(Err(Error::Capacity(e))) => {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                    }
                    Some(Err(e)) => return Err(std::io::Error::other(e)),
                }
            }
        }
    }
}

async fn ws_writer<S>(
    mut sink: futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<S>,
        tokio_tungstenite::tungstenite::Message,
    >,
    mut rx: mpsc::Receiver<Outgoing>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    while let Some(msg) = rx.recv().await {
        match msg {
            Outgoing::Line(msg, charge) => {
                // A WebSocket message is one frame: a shared result is copied into it.
                let line = msg.into_string();
                // Queue without flushing while more is waiting, so bursts go out together.
                let sent = if rx.is_empty() {
                    sink.send(Message::text(line)).await
                } else {
                    sink.feed(Message::text(line)).await
                };
                // Written, or at least handed to the socket's own small buffer.
                drop(charge);
                if sent.is_err() {
                    break;
                }
            }
            Outgoing::Close => break,
        }
    }
    let _ = sink.flush().await;
    let _ = sink.close().await;
}

/// Reads up to a newline into `buf` (without it), never buffering more than `max` bytes.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut dropping = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, found) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !dropping {
            buf.extend_from_slice(chunk);
            if max > 0 && buf.len() > max {
                dropping = true;
                buf.clear();
            }
        }
        let used = found.unwrap_or(avail.len());
        r.consume(used);
        if found.is_some() {
            return Ok(if dropping {
                Line::Oversize
            } else {
                Line::Complete
            });
        }
    }
}

async fn writer<W: AsyncWrite + Unpin>(w: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut w = tokio::io::BufWriter::new(w);
    while let Some(msg) = rx.recv().await {
        match msg {
            Outgoing::Line(msg, charge) => {
                let mut failed = false;
                for part in msg.parts().into_iter().chain(["\n"]) {
                    if !part.is_empty() && w.write_all(part.as_bytes()).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                drop((msg, charge));
                if failed {
                    break;
                }
                // Flush once the queue is drained, so bursts go out in few writes.
                if rx.is_empty() && w.flush().await.is_err() {
                    break;
                }
            }
            Outgoing::Close => break,
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_limited_and_resynchronised() {
        let data: &[u8] = b"short\nthis line is far too long\nok\npartial";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Oversize
        );
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"ok");
        assert_eq!(read_line(&mut r, &mut buf, 10).await.unwrap(), Line::Eof);
    }
}
