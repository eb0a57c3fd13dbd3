//! A `/ws` connection's sending side, written straight to the upgraded connection: a live
//! event's text frame (header and JSON) is encoded once when it is published
//! ([`text_frame`]) and the same bytes are written to every watcher, with no per-watcher
//! WebSocket library work (no message conversion, frame encoding, copy into a write buffer,
//! lock of a split sink): one lock of the connection's [`Wire`] and one write.
//!
//! Reading stays with tungstenite (limits, UTF-8 and protocol checks, the close codes), over
//! [`Duplex`]: the upgraded connection's reading half, and for its writes (a pong, the reply
//! to a client's close) the same [`Wire`], so that what tungstenite writes and the frames
//! written here never interleave inside a frame. Frames go out whole and in the order they
//! were queued; a sender waits until its frame is written (as a flush did), so a watcher that
//! does not read holds up only its own connection's subscriptions, which then fall behind
//! their debate's channel and catch up from the store. After a close frame nothing more is
//! written.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An unmasked (server) frame with FIN set: `first` is FIN and the opcode.
fn frame(first: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(first);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
    out.put_slice(payload);
    out.freeze()
}

/// A whole text message as one server frame.
pub fn text_frame(text: &str) -> Bytes {
    frame(0x81, text.as_bytes())
}

/// A close frame with `code` and `reason` (at most 123 bytes, cut by the caller).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    frame(0x88, &payload)
}

/// True when the whole frames in `bytes` (as tungstenite writes them) include a close frame.
fn has_close_frame(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 2 {
        if bytes[0] & 0x0F == 0x8 {
            return true;
        }
        let (header, len) = match bytes[1] & 0x7F {
            126 if bytes.len() >= 4 => (4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize),
            127 if bytes.len() >= 10 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&bytes[2..10]);
                (
                    10,
                    usize::try_from(u64::from_be_bytes(len)).unwrap_or(usize::MAX),
                )
            }
            126 | 127 => return false,
            len => (2, len as usize),
        };
        let masked: usize = if bytes[1] & 0x80 != 0 { 4 } else { 0 };
        let Some(rest) = bytes.get((header + masked).saturating_add(len)..) else {
            return false;
        };
        bytes = rest;
    }
    false
}

/// The connection was closed (a close frame went out) or broke; nothing more is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The sending side of one connection, shared by its session and its subscriptions.
pub struct Wire {
    state: Mutex<State>,
}

struct State {
    io: Writer,
    /// Frames not yet written; `offset` bytes of the first are.
    queue: VecDeque<Bytes>,
    offset: usize,
    /// Frames ever queued, and ever written whole: a frame is written once `written` reaches
    /// the count it was queued at.
    queued: u64,
    written: u64,
    /// A close frame is queued: nothing more goes out.
    closed: bool,
    failed: bool,
    /// Senders waiting for their frame; the connection's write readiness wakes only the last
    /// task that polled it, which wakes these once it has written what it could.
    waiting: Vec<Waker>,
}

impl State {
    /// Writes what is queued; ready once all of it is written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(front) = self.queue.front() {
            let n = ready!(self.io.as_mut().poll_write(cx, &front[self.offset..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.offset += n;
            if self.offset == front.len() {
                self.queue.pop_front();
                self.offset = 0;
                self.written += 1;
            }
        }
        self.io.as_mut().poll_flush(cx)
    }

    fn wake_all(&mut self) {
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }
}

impl Wire {
    pub fn new(io: impl AsyncWrite + Send + 'static) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                io: Box::pin(io),
                queue: VecDeque::new(),
                offset: 0,
                queued: 0,
                written: 0,
                closed: false,
                failed: false,
                waiting: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues whole frames; the count to wait for.
    fn queue(&self, frame: Bytes, closing: bool) -> Result<u64, Closed> {
        let mut state = self.lock();
        if state.closed || state.failed {
            return Err(Closed);
        }
        state.queue.push_back(frame);
        state.queued += 1;
        state.closed = closing;
        Ok(state.queued)
    }

    /// Writes one whole frame (or several, concatenated); resolves once it is written.
    pub fn send(&self, frame: Bytes) -> Sending<'_> {
        let target = self.queue(frame, false);
        Sending {
            wire: self,
            target,
            done: false,
        }
    }

    /// Writes a close frame; nothing is written after it.
    pub fn close(&self, frame: Bytes) -> Sending<'_> {
        let target = self.queue(frame, true);
        Sending {
            wire: self,
            target,
            done: false,
        }
    }

    /// Resolves once everything queued so far is written.
    pub async fn flush(&self) -> Result<(), Closed> {
        let target = self.lock().queued;
        std::future::poll_fn(|cx| self.poll_written(cx, target)).await
    }

    /// Ready once the first `target` frames are written.
    fn poll_written(&self, cx: &mut Context<'_>, target: u64) -> Poll<Result<(), Closed>> {
        let mut state = self.lock();
        if state.written >= target {
            // This task may be the one the connection would wake: hand on to the others.
            state.wake_all();
            return Poll::Ready(Ok(()));
        }
        if state.failed {
            return Poll::Ready(Err(Closed));
        }
        match state.poll_drain(cx) {
            Poll::Ready(result) => {
                if result.is_err() {
                    state.failed = true;
                    state.queue.clear();
                }
                state.wake_all();
                if state.written >= target {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(Closed))
                }
            }
            Poll::Pending if state.written >= target => {
                // Ours is out, the rest waits for the connection, which would wake this task:
                // one of the others takes over.
                state.wake_all();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                // Some of it went out and the rest waits for the connection: whoever is
                // woken writes on, and wakes the others.
                if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiting.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// A frame being written; dropping it leaves the frame queued.
pub struct Sending<'a> {
    wire: &'a Wire,
    target: Result<u64, Closed>,
    done: bool,
}

impl Future for Sending<'_> {
    type Output = Result<(), Closed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let target = self.target?;
        let result = ready!(self.wire.poll_written(cx, target));
        self.done = true;
        Poll::Ready(result)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        // This task may be the one the connection would wake: let the others poll again.
        if !self.done && self.target.is_ok() {
            self.wire.lock().wake_all();
        }
    }
}

/// What tungstenite reads and writes through: the connection's reading half, and the
/// [`Wire`] for its own writes (taken whole, as it writes whole frames).
pub struct Duplex<R> {
    read: R,
    wire: Arc<Wire>,
}

impl<R> Duplex<R> {
    pub fn new(read: R, wire: Arc<Wire>) -> Self {
        Self { read, wire }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Duplex<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for Duplex<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Nothing of tungstenite's is queued behind frames not yet out: over a connection the
        // client does not read, its writes wait, as they would on a full socket, and it keeps
        // only the newest pong pending. Taken at once, a client's ping flood would queue a
        // pong per ping without bound. (A broken or closed wire falls through to the refusal.)
        let pending = self.wire.lock().queued;
        if self.wire.poll_written(cx, pending).is_pending() {
            return Poll::Pending;
        }
        let closing = has_close_frame(buf);
        match self.wire.queue(Bytes::copy_from_slice(buf), closing) {
            Ok(target) => {
                // Out at once as far as the connection takes it: tungstenite does not always
                // flush after writing (its reply to a client's close, say).
                let _ = self.wire.poll_written(cx, target);
                Poll::Ready(Ok(buf.len()))
            }
            Err(Closed) => {
                let state = self.wire.lock();
                if state.closed && !state.failed {
                    // After our close frame (tungstenite answering the client's reply to it,
                    // say): nothing more goes out.
                    Poll::Ready(Ok(buf.len()))
                } else {
                    Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let target = self.wire.lock().queued;
        self.wire
            .poll_written(cx, target)
            .map_err(|Closed| io::ErrorKind::BrokenPipe.into())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let target = self.wire.lock().queued;
        ready!(self.wire.poll_written(cx, target))
            .map_err(|Closed| io::Error::from(io::ErrorKind::BrokenPipe))?;
        self.wire.lock().io.as_mut().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn frames_carry_their_length_in_the_form_rfc_6455_asks() {
        assert_eq!(&text_frame("hi")[..], b"\x81\x02hi");
        let medium = "x".repeat(300);
        let frame = text_frame(&medium);
        assert_eq!(&frame[..4], &[0x81, 126, 0x01, 0x2C]);
        assert_eq!(frame.len(), 4 + 300);
        let large = "y".repeat(70_000);
        let frame = text_frame(&large);
        assert_eq!(&frame[..2], &[0x81, 127]);
        assert_eq!(&frame[2..10], &70_000u64.to_be_bytes());
        assert_eq!(&close_frame(1008, "bye")[..], b"\x88\x05\x03\xF0bye");
    }

    #[test]
    fn a_close_frame_is_found_among_whole_frames() {
        let mut bytes = text_frame(&"z".repeat(200)).to_vec();
        bytes.extend_from_slice(b"\x8A\x00"); // a pong
        assert!(!has_close_frame(&bytes));
        bytes.extend_from_slice(&close_frame(1000, ""));
        assert!(has_close_frame(&bytes));
    }

    #[tokio::test]
    async fn a_client_that_never_reads_cannot_queue_pongs_without_bound() {
        use futures::FutureExt;
        use tokio::io::AsyncWriteExt;
        let (near, far) = tokio::io::duplex(16);
        let wire = Wire::new(near);
        let mut duplex = Duplex::new(tokio::io::empty(), wire.clone());
        let pong = b"\x8A\x04ping";
        // The first pong is taken (and part of it written); the client never reads.
        assert_eq!(duplex.write(pong).now_or_never().unwrap().unwrap(), 6);
        assert_eq!(
            duplex.write(&[0x8A; 32]).now_or_never().unwrap().unwrap(),
            32
        );
        for _ in 0..10_000 {
            assert!(
                duplex.write(pong).now_or_never().is_none(),
                "a write over a full wire waits"
            );
        }
        let queued = wire.lock().queue.len();
        assert!(queued <= 2, "{queued} frames queued");
        drop(far);
    }

    #[tokio::test]
    async fn frames_go_out_whole_in_order_and_nothing_after_the_close() {
        let (near, mut far) = tokio::io::duplex(16);
        let wire = Wire::new(near);
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let wire = wire.clone();
                tokio::spawn(async move {
                    for j in 0..20 {
                        let text = format!("{i}:{j}:{}", "p".repeat(40));
                        wire.send(text_frame(&text)).await.unwrap();
                    }
                })
            })
            .collect();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.unwrap();
            all
        });
        for writer in writers {
            writer.await.unwrap();
        }
        wire.close(close_frame(1001, "away")).await.unwrap();
        assert_eq!(wire.send(text_frame("late")).await, Err(Closed));
        std::future::poll_fn(|cx| wire.lock().io.as_mut().poll_shutdown(cx))
            .await
            .unwrap();
        let all = reader.await.unwrap();
        // Walk the frames: each whole, each writer's in its order, the close last.
        let mut next = [0usize; 4];
        let mut at = 0;
        let mut frames = 0;
        while at < all.len() {
            let len = (all[at + 1] & 0x7F) as usize;
            let payload = &all[at + 2..at + 2 + len];
            if all[at] == 0x88 {
                assert_eq!(at + 2 + len, all.len(), "the close frame is last");
            } else {
                assert_eq!(all[at], 0x81);
                let text = std::str::from_utf8(payload).unwrap();
                let mut parts = text.split(':');
                let i: usize = parts.next().unwrap().parse().unwrap();
                let j: usize = parts.next().unwrap().parse().unwrap();
                assert_eq!(j, next[i], "writer {i} in order");
                next[i] += 1;
                frames += 1;
            }
            at += 2 + len;
        }
        assert_eq!(frames, 80);
    }
}
