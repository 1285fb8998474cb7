//! A WebSocket connection after its handshake (RFC 6455 framing), built on
//! tungstenite's frame types, that holds no buffer while it is idle.
//!
//! tokio-tungstenite allocates its read buffer up front, so every idle
//! connection carries it. Here small reads go through a buffer on the stack
//! and only what arrives is kept; a large frame is read straight into a
//! buffer of its own size. PendingWrite frames go out with vectored writes: a
//! payload over 4 KiB is written from the message's own bytes (a broadcast's
//! payload is shared by every recipient, never copied per socket; only a
//! client's frames, which must be masked, are copied), and smaller frames are
//! copied together into 8 KiB buffers, which costs less than a slice each.
//! An idle connection holds its socket and a few words.
//!
//! Reading never waits for writing: a ping is answered by one owed pong
//! (a newer ping replaces it, RFC 6455 section 5.5.3), written at the next
//! frame boundary, so a peer that pings and never reads cannot grow memory.
//! The socket reports what it saw ([`Activity`]) for the driver's liveness checks.

use std::collections::VecDeque;
use std::io::{self, Cursor, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, FrameHeader, Utf8Bytes};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Largest message accepted by default, on either end: 10 MiB.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 << 20;

/// Reads of up to this many bytes go through the stack, so nothing is held
/// on the heap while waiting.
const STACK_READ: usize = 8 * 1024;

/// The most a large frame's buffer grows ahead of the data that arrives.
const LARGE_READ: usize = 64 * 1024;

/// Past this many bytes waiting to be written, `poll_ready` says wait: the
/// socket holds at most this much, plus one message, of what the driver hands it.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;

/// The most buffers one vectored write takes.
const MAX_SLICES: usize = 64;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Payloads up to this size are copied into the queue, many frames to a
/// buffer: one slice of a vectored write costs more than copying them.
/// Larger ones are written from the message's own bytes.
const INLINE_PAYLOAD: usize = 4 * 1024;

/// The size of a buffer of small frames.
const SMALL_FRAMES: usize = 8 * 1024;

/// Whether a close code may appear in a close frame (RFC 6455 section 7.4 and
/// IANA's registry: 1012 to 1014 are registered, 1004 to 1006 and 1015 never sent).
pub(crate) fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// What the socket saw since the driver last asked: evidence that the peer
/// is alive, for the keep-alive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Activity {
    /// Bytes arrived from the peer (part of a frame counts).
    pub read: bool,
    /// Bytes that had been waiting for room in the socket left: the peer is
    /// taking what we send.
    pub drained: bool,
    /// The last byte of a ping we sent left.
    pub ping_flushed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// The peer sent a close frame; ours (the echo) is queued.
    CloseReceived,
    /// Both close frames have crossed.
    Closed,
}

/// A fragmented message being reassembled.
struct Fragments {
    text: bool,
    data: BytesMut,
}

/// What a queued chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Data frames.
    Data,
    Ping,
    Pong,
    Close,
}

/// Frames waiting to be written, ending on a frame boundary: small frames
/// copied together into `head` (one buffer, and one slice of a vectored
/// write, for many of them), or one frame whose header is `head` and whose
/// large payload is shared with the message's other holders (a broadcast's
/// other recipients), never copied.
struct PendingWrite {
    head: Vec<u8>,
    payload: Bytes,
    /// Bytes of `head` and `payload` already written.
    written: usize,
    kind: Kind,
}

impl PendingWrite {
    fn len(&self) -> usize {
        self.head.len() + self.payload.len()
    }

    /// The unwritten parts, as buffers for a vectored write.
    fn unwritten(&self) -> [&[u8]; 2] {
        match self.written.checked_sub(self.head.len()) {
            None => [&self.head[self.written..], &self.payload],
            Some(into_payload) => [&[], &self.payload[into_payload..]],
        }
    }
}

/// One WebSocket connection, after the HTTP upgrade.
pub(crate) struct Socket<Io> {
    io: Io,
    role: Role,
    max_message: usize,
    /// Bytes read and not yet framed; unallocated when empty.
    read: BytesMut,
    /// The full length (header and payload) of a frame whose header has arrived.
    awaiting: usize,
    fragments: Option<Fragments>,
    /// Frames not yet written, in order; unallocated when empty.
    write: VecDeque<PendingWrite>,
    /// Unwritten bytes in `write`.
    write_bytes: usize,
    /// The pong owed for the latest ping, written at the next frame boundary.
    pong_owed: Option<Bytes>,
    /// Our keep-alive ping, written at the next frame boundary.
    ping_wanted: Option<Bytes>,
    /// The last write found no room in the socket.
    write_blocked: bool,
    activity: Activity,
    state: State,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Socket<Io> {
    /// Wraps a connection whose handshake is done; `pre_read` holds bytes that
    /// arrived with the handshake.
    pub(crate) fn new(io: Io, role: Role, max_message: usize, pre_read: &[u8]) -> Self {
        Socket {
            io,
            role,
            max_message,
            read: BytesMut::from(pre_read),
            awaiting: 0,
            fragments: None,
            write: VecDeque::new(),
            write_bytes: 0,
            pong_owed: None,
            ping_wanted: None,
            write_blocked: false,
            activity: Activity::default(),
            state: State::Open,
        }
    }

    /// What happened since the last call (see [`Activity`]).
    pub(crate) fn take_activity(&mut self) -> Activity {
        std::mem::take(&mut self.activity)
    }

    /// Bytes waiting to be written.
    #[cfg(test)]
    pub(crate) fn unwritten(&self) -> usize {
        self.write_bytes
    }

    /// The next complete frame in the read buffer, unmasked, or `None` when
    /// more bytes are needed. A header that breaks a rule, or would take a
    /// message past the size limit, is refused as soon as it arrives, before
    /// its payload is waited for.
    fn next_frame(&mut self) -> Result<Option<(FrameHeader, BytesMut)>, WsError> {
        let mut cursor = Cursor::new(&self.read[..]);
        let Some((header, length)) = FrameHeader::parse(&mut cursor)? else { return Ok(None) };
        let header_len = cursor.position() as usize;
        // A continuation counts with the fragments before it: the bound is on the message.
        let before = match (&self.fragments, header.opcode) {
            (Some(fragments), OpCode::Data(Data::Continue)) => fragments.data.len(),
            _ => 0,
        };
        let length = match usize::try_from(length) {
            Ok(length) if length.saturating_add(before) <= self.max_message => length,
            _ => {
                let size = usize::try_from(length).unwrap_or(usize::MAX).saturating_add(before);
                return Err(CapacityError::MessageTooLong { size, max_size: self.max_message }.into());
            }
        };
        self.check_header(&header, length)?;
        // Cannot overflow unless the limit is near usize::MAX; then it is too long too.
        let Some(total) = header_len.checked_add(length) else {
            return Err(CapacityError::MessageTooLong { size: usize::MAX, max_size: self.max_message }.into());
        };
        if self.read.len() < total {
            self.awaiting = total;
            return Ok(None);
        }
        self.awaiting = 0;
        self.read.advance(header_len);
        let mut payload = self.read.split_to(length);
        if self.read.is_empty() {
            // Let go of the allocation: the payload keeps what it needs.
            self.read = BytesMut::new();
        }
        if let Some(mask) = header.mask {
            apply_mask(&mut payload, mask);
        }
        Ok(Some((header, payload)))
    }

    /// The rules a frame header alone can break (RFC 6455 sections 5.1 to 5.5).
    fn check_header(&self, header: &FrameHeader, length: usize) -> Result<(), WsError> {
        match (self.role, header.mask) {
            (Role::Server, None) => return Err(ProtocolError::UnmaskedFrameFromClient.into()),
            (Role::Client, Some(_)) => return Err(ProtocolError::MaskedFrameFromServer.into()),
            _ => {}
        }
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(ProtocolError::NonZeroReservedBits.into());
        }
        match header.opcode {
            OpCode::Control(Control::Reserved(code)) => Err(ProtocolError::UnknownControlFrameType(code).into()),
            OpCode::Data(Data::Reserved(code)) => Err(ProtocolError::UnknownDataFrameType(code).into()),
            OpCode::Control(_) if !header.is_final => Err(ProtocolError::FragmentedControlFrame.into()),
            OpCode::Control(_) if length > 125 => Err(ProtocolError::ControlFrameTooBig.into()),
            _ => Ok(()),
        }
    }

    /// Applies one frame; returns the message it completes, if any.
    fn on_frame(&mut self, header: FrameHeader, payload: BytesMut) -> Result<Option<Message>, WsError> {
        match header.opcode {
            OpCode::Data(Data::Continue) => {
                let Some(fragments) = &mut self.fragments else {
                    return Err(ProtocolError::UnexpectedContinueFrame.into());
                };
                fragments.data.extend_from_slice(&payload);
                if !header.is_final {
                    return Ok(None);
                }
                let Some(Fragments { text, data }) = self.fragments.take() else { return Ok(None) };
                complete(text, data.freeze()).map(Some)
            }
            OpCode::Data(kind @ (Data::Text | Data::Binary)) => {
                if self.fragments.is_some() {
                    return Err(ProtocolError::ExpectedFragment(kind).into());
                }
                let text = kind == Data::Text;
                if header.is_final {
                    return complete(text, payload.freeze()).map(Some);
                }
                self.fragments = Some(Fragments { text, data: payload });
                Ok(None)
            }
            OpCode::Data(Data::Reserved(code)) => Err(ProtocolError::UnknownDataFrameType(code).into()),
            OpCode::Control(control) => match control {
                Control::Ping => {
                    let payload = payload.freeze();
                    if self.state == State::Open {
                        // Only the latest ping needs an answer.
                        self.pong_owed = Some(payload.clone());
                    }
                    Ok(Some(Message::Ping(payload)))
                }
                Control::Pong => Ok(Some(Message::Pong(payload.freeze()))),
                Control::Close => self.on_close(payload.freeze()).map(Some),
                Control::Reserved(code) => Err(ProtocolError::UnknownControlFrameType(code).into()),
            },
        }
    }

    fn on_close(&mut self, payload: Bytes) -> Result<Message, WsError> {
        let frame = match payload.len() {
            0 => None,
            1 => return Err(ProtocolError::InvalidCloseSequence.into()),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !close_code_allowed(code) {
                    return Err(ProtocolError::InvalidCloseSequence.into());
                }
                let reason = Utf8Bytes::try_from(payload.slice(2..)).map_err(|e| WsError::Utf8(e.to_string()))?;
                Some(CloseFrame { code: CloseCode::from(code), reason })
            }
        };
        match self.state {
            State::Open => {
                // Answer with the same code (RFC 6455 section 5.5.1).
                let echo = if payload.len() >= 2 { payload.slice(..2) } else { Bytes::new() };
                self.queue_close(echo, State::CloseReceived);
            }
            State::CloseSent => self.state = State::Closed,
            State::CloseReceived | State::Closed => {}
        }
        Ok(Message::Close(frame))
    }

    /// Reads more bytes: straight into the frame's buffer when a large frame
    /// is arriving (growing it as data comes, not as the header promises),
    /// else through the stack. `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let missing = self.awaiting.saturating_sub(self.read.len());
        let read = if missing > STACK_READ {
            self.read.reserve(missing.min(LARGE_READ));
            // No further than the frame: the frames after it must not share
            // (and so keep alive) its large buffer.
            let mut frame = bytes::BufMut::limit(&mut self.read, missing);
            ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut frame))?
        } else {
            // Uninitialized: zeroing 8 KiB for every read would cost more than the read.
            let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
            let mut buf = ReadBuf::uninit(&mut stack);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let filled = buf.filled();
            self.read.extend_from_slice(filled);
            filled.len()
        };
        if read > 0 {
            self.activity.read = true;
        }
        Poll::Ready(Ok(read))
    }

    /// Queues one frame, masked (a copy) when this side is a client. A small
    /// data frame joins the small frames queued before it.
    fn push(&mut self, kind: Kind, opcode: OpCode, payload: Bytes) {
        if payload.len() > INLINE_PAYLOAD {
            let mask = (self.role == Role::Client).then(mask);
            let mut head = Vec::with_capacity(MAX_HEADER);
            write_header(&mut head, opcode, payload.len(), mask);
            let payload = match mask {
                Some(mask) => {
                    let mut masked = BytesMut::from(&payload[..]);
                    apply_mask(&mut masked, mask);
                    masked.freeze()
                }
                None => payload,
            };
            self.write_bytes += head.len() + payload.len();
            self.write.push_back(PendingWrite { head, payload, written: 0, kind });
            return;
        }
        // Into the last buffer while it has room: buffers never grow, so
        // never hold twice what they carry.
        let size = MAX_HEADER + payload.len();
        let fits = |last: &PendingWrite| last.head.capacity() - last.head.len() >= size;
        let joins = kind == Kind::Data
            && self.write.back().is_some_and(|last| last.kind == Kind::Data && last.payload.is_empty() && fits(last));
        if !joins {
            let head = Vec::with_capacity(if kind == Kind::Data { size.max(SMALL_FRAMES) } else { size });
            self.write.push_back(PendingWrite { head, payload: Bytes::new(), written: 0, kind });
        }
        let mask = (self.role == Role::Client).then(mask);
        if let Some(last) = self.write.back_mut() {
            let before = last.head.len();
            write_frame(&mut last.head, opcode, &payload, mask);
            self.write_bytes += last.head.len() - before;
        }
    }

    /// Queues our close frame, after which nothing else goes out: pings and
    /// pongs not yet queued are dropped.
    fn queue_close(&mut self, payload: Bytes, state: State) {
        self.pong_owed = None;
        self.ping_wanted = None;
        self.push(Kind::Close, OpCode::Control(Control::Close), payload);
        self.state = state;
    }

    /// Puts an owed pong, then a wanted ping, at the head of the queue, if
    /// no frame is half written there. Each replaces one of its kind that
    /// has not started to leave, so at most one of each waits.
    fn queue_control_frames(&mut self) {
        if self.write.front().is_some_and(|frame| frame.written > 0) {
            return;
        }
        let wanted =
            [(Kind::Ping, Control::Ping, self.ping_wanted.take()), (Kind::Pong, Control::Pong, self.pong_owed.take())];
        for (kind, control, payload) in wanted {
            let Some(payload) = payload else { continue };
            let mut head = Vec::with_capacity(MAX_HEADER + payload.len());
            write_frame(&mut head, OpCode::Control(control), &payload, (self.role == Role::Client).then(mask));
            let frame = PendingWrite { head, payload: Bytes::new(), written: 0, kind };
            self.write_bytes += frame.len();
            let waiting = self.write.iter().take(2).position(|queued| queued.kind == kind);
            match waiting.and_then(|at| self.write.get_mut(at)) {
                Some(queued) => self.write_bytes -= std::mem::replace(queued, frame).len(),
                None => self.write.push_front(frame),
            }
        }
    }

    /// Writes out everything queued, then flushes the stream and lets go of the queue.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            self.queue_control_frames();
            if self.write.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for part in self.write.iter().flat_map(PendingWrite::unwritten) {
                if count == MAX_SLICES {
                    break;
                }
                if !part.is_empty() {
                    slices[count] = IoSlice::new(part);
                    count += 1;
                }
            }
            let written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(result) => result?,
                Poll::Pending => {
                    self.write_blocked = true;
                    return Poll::Pending;
                }
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if std::mem::take(&mut self.write_blocked) {
                self.activity.drained = true;
            }
            self.advance(written);
        }
        if self.write.capacity() > 0 {
            self.write = VecDeque::new();
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Marks `written` bytes as gone, dropping the frames they finish.
    fn advance(&mut self, mut written: usize) {
        self.write_bytes -= written;
        while written > 0 {
            let Some(frame) = self.write.front_mut() else { return };
            let left = frame.len() - frame.written;
            if written < left {
                frame.written += written;
                return;
            }
            written -= left;
            if frame.kind == Kind::Ping {
                self.activity.ping_flushed = true;
            }
            self.write.pop_front();
        }
    }

    fn has_unwritten(&self) -> bool {
        !self.write.is_empty() || self.pong_owed.is_some() || self.ping_wanted.is_some()
    }
}

/// A fresh mask from a CSPRNG (RFC 6455 section 5.3: masks must not be
/// predictable, or a page could poison a proxy's cache).
fn mask() -> [u8; 4] {
    rand::random()
}

/// A complete data message, its text checked for UTF-8.
fn complete(text: bool, data: Bytes) -> Result<Message, WsError> {
    if text {
        Utf8Bytes::try_from(data).map(Message::Text).map_err(|e| WsError::Utf8(e.to_string()))
    } else {
        Ok(Message::Binary(data))
    }
}

/// Appends a frame header to `out`.
fn write_header(out: &mut Vec<u8>, opcode: OpCode, length: usize, mask: Option<[u8; 4]>) {
    let header = FrameHeader { is_final: true, rsv1: false, rsv2: false, rsv3: false, opcode, mask };
    // Writing into a Vec cannot fail.
    let _ = header.format(length as u64, out);
}

/// Appends a whole frame to `out`, its payload masked when `mask` is given.
fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
    write_header(out, opcode, payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

/// XORs `buf` with the 4-byte mask, eight bytes at a time.
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let (chunks, rest) = buf.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ wide).to_ne_bytes();
    }
    // The rest starts at a multiple of 8, so the mask lines up from its first byte.
    for (byte, m) in rest.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Stream for Socket<Io> {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.state == State::Closed {
                return Poll::Ready(None);
            }
            // Pongs and the close echo go out as the socket takes them; reading never waits for that.
            if this.has_unwritten()
                && let Poll::Ready(Err(e)) = this.poll_write_out(cx)
            {
                return Poll::Ready(Some(Err(e.into())));
            }
            match this.next_frame() {
                Ok(Some((header, payload))) => match this.on_frame(header, payload) {
                    Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                    Ok(None) => continue,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            match ready!(this.poll_fill(cx)) {
                Ok(0) => {
                    this.state = State::Closed;
                    return Poll::Ready(None);
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Socket<Io> {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        if this.write_bytes >= WRITE_HIGH_WATER {
            if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
                return Poll::Ready(Err(e.into()));
            }
            if this.write_bytes >= WRITE_HIGH_WATER {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        let this = &mut *self;
        if this.state != State::Open {
            return Err(ProtocolError::SendAfterClosing.into());
        }
        match message {
            Message::Text(text) => this.push(Kind::Data, OpCode::Data(Data::Text), text.into()),
            Message::Binary(data) => this.push(Kind::Data, OpCode::Data(Data::Binary), data),
            // Control frames skip the queue (at the next frame boundary).
            Message::Ping(data) => this.ping_wanted = Some(data),
            Message::Pong(data) => this.pong_owed = Some(data),
            Message::Close(frame) => {
                let mut payload = Vec::new();
                if let Some(frame) = frame {
                    payload.extend_from_slice(&u16::from(frame.code).to_be_bytes());
                    // A control frame carries at most 125 bytes; cut the reason on a character boundary.
                    let reason = frame.reason.as_str();
                    let mut end = reason.len().min(123);
                    while !reason.is_char_boundary(end) {
                        end -= 1;
                    }
                    payload.extend_from_slice(&reason.as_bytes()[..end]);
                }
                this.queue_close(payload.into(), State::CloseSent);
            }
            Message::Frame(_) => return Err(ProtocolError::InvalidOpcode(0).into()),
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.poll_write_out(cx).map_err(WsError::from)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        if this.state == State::Open {
            this.queue_close(Bytes::new(), State::CloseSent);
        }
        ready!(this.poll_write_out(cx))?;
        ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::DuplexStream;
    use tokio_tungstenite::WebSocketStream;

    const MAX: usize = 1 << 20;

    /// Every await in these tests is bounded: a hang fails instead of stalling.
    async fn within<F: std::future::Future>(future: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(10), future).await.expect("timed out")
    }

    fn pair() -> (Socket<DuplexStream>, Socket<DuplexStream>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        (Socket::new(a, Role::Server, MAX, &[]), Socket::new(b, Role::Client, MAX, &[]))
    }

    async fn with_tungstenite_client() -> (Socket<DuplexStream>, WebSocketStream<DuplexStream>) {
        // Room for the largest test message, so one side can send before the other reads.
        let (a, b) = tokio::io::duplex(1 << 20);
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (Socket::new(a, Role::Server, MAX, &[]), client)
    }

    #[tokio::test]
    async fn messages_cross_both_ways_and_leave_no_buffer_behind() {
        within(async {
            let (mut server, mut client) = pair();
            client.send(Message::Text("hello".into())).await.unwrap();
            assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("hello".into()));
            server.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
            assert_eq!(client.next().await.unwrap().unwrap(), Message::Binary(vec![1, 2, 3].into()));
            for socket in [&server, &client] {
                assert_eq!(socket.read.capacity(), 0);
                assert_eq!(socket.write.capacity(), 0);
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_tungstenite_client_talks_to_it_large_and_small() {
        within(async {
            let (mut server, mut client) = with_tungstenite_client().await;
            let large = "x".repeat(200_000);
            client.send(Message::Text(large.clone().into())).await.unwrap();
            client.send(Message::Text("small".into())).await.unwrap();
            assert_eq!(server.next().await.unwrap().unwrap(), Message::Text(large.clone().into()));
            assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("small".into()));
            server.send(Message::Text(large.clone().into())).await.unwrap();
            assert_eq!(client.next().await.unwrap().unwrap(), Message::Text(large.into()));
        })
        .await;
    }

    #[tokio::test]
    async fn fragments_are_reassembled_around_control_frames() {
        within(async {
            let (mut server, mut client) = with_tungstenite_client().await;
            let parts = [
                (false, OpCode::Data(Data::Text), "frag"),
                (false, OpCode::Control(Control::Ping), "p"),
                (false, OpCode::Data(Data::Continue), "men"),
                (true, OpCode::Data(Data::Continue), "ted"),
            ];
            for (last, opcode, text) in parts {
                let is_final = last || matches!(opcode, OpCode::Control(_));
                let header = FrameHeader { is_final, opcode, mask: Some([1, 2, 3, 4]), ..FrameHeader::default() };
                let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::from_payload(header, text.into());
                client.send(Message::Frame(frame)).await.unwrap();
            }
            assert_eq!(server.next().await.unwrap().unwrap(), Message::Ping("p".into()));
            assert_eq!(server.next().await.unwrap().unwrap(), Message::Text("fragmented".into()));
            // The ping was answered.
            assert_eq!(client.next().await.unwrap().unwrap(), Message::Pong("p".into()));
        })
        .await;
    }

    #[tokio::test]
    async fn the_close_handshake_echoes_the_code() {
        within(async {
            let (mut server, mut client) = with_tungstenite_client().await;
            let frame = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
            client.send(Message::Close(Some(frame.clone()))).await.unwrap();
            assert_eq!(server.next().await.unwrap().unwrap(), Message::Close(Some(frame)));
            server.close().await.unwrap();
            match client.next().await {
                Some(Ok(Message::Close(Some(echo)))) => assert_eq!(echo.code, CloseCode::Normal),
                other => panic!("expected the echo, got {other:?}"),
            }
        })
        .await;
    }

    #[tokio::test]
    async fn closing_first_waits_for_the_peer() {
        within(async {
            let (mut server, mut client) = with_tungstenite_client().await;
            server.send(Message::Close(Some(CloseFrame { code: CloseCode::Again, reason: "".into() }))).await.unwrap();
            // tungstenite answers while it reads, and reads until the server hangs up.
            let client_side = tokio::spawn(async move {
                let first = client.next().await;
                while client.next().await.is_some() {}
                first
            });
            assert!(matches!(server.next().await, Some(Ok(Message::Close(_)))));
            assert!(server.next().await.is_none());
            drop(server);
            assert!(matches!(within(client_side).await.unwrap(), Some(Ok(Message::Close(_)))));
        })
        .await;
    }

    async fn server_error_for(frames: &[(FrameHeader, &[u8])]) -> WsError {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut server = Socket::new(a, Role::Server, 1024, &[]);
        let mut bytes = Vec::new();
        for (header, payload) in frames {
            header.format(payload.len() as u64, &mut bytes).unwrap();
            let start = bytes.len();
            bytes.extend_from_slice(payload);
            if let Some(mask) = header.mask {
                apply_mask(&mut bytes[start..], mask);
            }
        }
        tokio::io::AsyncWriteExt::write_all(&mut b, &bytes).await.unwrap();
        loop {
            match server.next().await {
                Some(Err(e)) => return e,
                Some(Ok(_)) => continue,
                None => panic!("no error"),
            }
        }
    }

    fn masked(opcode: OpCode) -> FrameHeader {
        FrameHeader { opcode, mask: Some([9, 8, 7, 6]), ..FrameHeader::default() }
    }

    #[tokio::test]
    async fn peers_breaking_the_rules_get_the_matching_error() {
        within(async {
            let text = OpCode::Data(Data::Text);
            let e = server_error_for(&[(FrameHeader { opcode: text, ..FrameHeader::default() }, b"x")]).await;
            assert!(matches!(e, WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)), "{e}");
            let e = server_error_for(&[(masked(text), &[0xff, 0xfe])]).await;
            assert!(matches!(e, WsError::Utf8(_)), "{e}");
            let e = server_error_for(&[(masked(text), &[b'a'; 2000])]).await;
            assert!(matches!(e, WsError::Capacity(_)), "{e}");
            let e = server_error_for(&[(masked(OpCode::Data(Data::Continue)), b"x")]).await;
            assert!(matches!(e, WsError::Protocol(ProtocolError::UnexpectedContinueFrame)), "{e}");
            let e = server_error_for(&[(FrameHeader { rsv1: true, ..masked(text) }, b"x")]).await;
            assert!(matches!(e, WsError::Protocol(ProtocolError::NonZeroReservedBits)), "{e}");
            let e =
                server_error_for(&[(FrameHeader { is_final: false, ..masked(OpCode::Control(Control::Ping)) }, b"")])
                    .await;
            assert!(matches!(e, WsError::Protocol(ProtocolError::FragmentedControlFrame)), "{e}");
            let e = server_error_for(&[(masked(OpCode::Control(Control::Ping)), &[0; 126])]).await;
            assert!(matches!(e, WsError::Protocol(ProtocolError::ControlFrameTooBig)), "{e}");
            let e = server_error_for(&[(masked(OpCode::Control(Control::Close)), &[3, 0xe7])]).await;
            assert!(matches!(e, WsError::Protocol(ProtocolError::InvalidCloseSequence)), "{e}");
            let half = FrameHeader { is_final: false, ..masked(text) };
            let e =
                server_error_for(&[(half.clone(), &[b'a'; 600]), (masked(OpCode::Data(Data::Continue)), &[b'a'; 600])])
                    .await;
            assert!(matches!(e, WsError::Capacity(_)), "{e}");
            let e = server_error_for(&[(half, b"a"), (masked(text), b"b")]).await;
            assert!(matches!(e, WsError::Protocol(ProtocolError::ExpectedFragment(_))), "{e}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_peer_that_pings_and_never_reads_is_still_read_and_owed_one_pong() {
        within(async {
            use futures_util::FutureExt;
            let (a, mut b) = tokio::io::duplex(4096);
            let mut server = Socket::new(a, Role::Server, MAX, &[]);
            let mut pings = Vec::new();
            let header = masked(OpCode::Control(Control::Ping));
            for _ in 0..100_000 {
                header.format(0, &mut pings).unwrap();
            }
            // The peer writes and writes, and never reads what comes back.
            let writer = tokio::spawn(async move {
                tokio::io::AsyncWriteExt::write_all(&mut b, &pings).await.unwrap();
                b
            });
            let (mut seen, mut largest) = (0, 0);
            while seen < 100_000 {
                match server.next().now_or_never() {
                    Some(Some(Ok(Message::Ping(_)))) => seen += 1,
                    Some(other) => panic!("unexpected {other:?}"),
                    None => tokio::task::yield_now().await,
                }
                largest = largest.max(server.unwritten());
            }
            // Every ping was read although none of the pongs could be written:
            // reading never waits for writing, and only the latest pong is owed.
            let _peer = within(writer).await.unwrap();
            assert!(largest <= 2, "the write backlog grew to {largest}");
            assert!(server.pong_owed.is_some() || server.unwritten() > 0, "a pong is still owed");
        })
        .await;
    }

    #[tokio::test]
    async fn a_fragmented_message_is_bounded_by_the_limit_not_twice_it() {
        within(async {
            // 600 bytes, then a continuation that announces 600 more but never
            // sends them: the header alone crosses the 1024-byte limit.
            let (a, mut b) = tokio::io::duplex(64 * 1024);
            let mut server = Socket::new(a, Role::Server, 1024, &[]);
            let mut bytes = Vec::new();
            let first = FrameHeader { is_final: false, ..masked(OpCode::Data(Data::Text)) };
            first.format(600, &mut bytes).unwrap();
            let start = bytes.len();
            bytes.extend_from_slice(&[b'a'; 600]);
            apply_mask(&mut bytes[start..], [9, 8, 7, 6]);
            masked(OpCode::Data(Data::Continue)).format(600, &mut bytes).unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut b, &bytes).await.unwrap();
            match server.next().await {
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                    assert_eq!((size, max_size), (1200, 1024));
                }
                other => panic!("expected the limit at the continuation's header, got {other:?}"),
            }
            assert!(server.read.len() <= 600 + 2 * MAX_HEADER, "buffered {} bytes", server.read.len());
        })
        .await;
    }

    #[tokio::test]
    async fn registered_close_codes_are_accepted_and_echoed() {
        within(async {
            for code in [1012, 1013, 1014, 3000, 4999] {
                let (mut server, mut client) = with_tungstenite_client().await;
                let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
                client.send(Message::Close(Some(frame))).await.unwrap();
                match server.next().await {
                    Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), code),
                    other => panic!("expected close {code}, got {other:?}"),
                }
                server.close().await.unwrap();
                match client.next().await {
                    Some(Ok(Message::Close(Some(echo)))) => assert_eq!(u16::from(echo.code), code),
                    other => panic!("expected the echo of {code}, got {other:?}"),
                }
            }
            for code in [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
                assert!(!close_code_allowed(code), "{code}");
            }
        })
        .await;
    }

    /// The masks of `frames` frames sent by a new client socket, read off the wire.
    async fn masks_of_a_client(frames: usize) -> Vec<[u8; 4]> {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut client = Socket::new(a, Role::Client, MAX, &[]);
        for _ in 0..frames {
            client.feed(Message::Text("m".into())).await.unwrap();
        }
        client.flush().await.unwrap();
        let mut wire = vec![0; frames * 7];
        tokio::io::AsyncReadExt::read_exact(&mut b, &mut wire).await.unwrap();
        let mut cursor = Cursor::new(&wire[..]);
        (0..frames)
            .map(|_| {
                let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
                cursor.set_position(cursor.position() + length);
                header.mask.expect("a client masks every frame")
            })
            .collect()
    }

    /// The length of the shortest linear feedback shift register that makes
    /// `bits` (Berlekamp-Massey over GF(2)): about half the length for random
    /// bits, at most the state size for a linear generator such as xorshift.
    fn linear_complexity(bits: &[u8]) -> usize {
        let n = bits.len();
        let (mut c, mut b) = (vec![0u8; n + 1], vec![0u8; n + 1]);
        (c[0], b[0]) = (1, 1);
        let (mut l, mut m) = (0usize, -1isize);
        for i in 0..n {
            let d = (1..=l).fold(bits[i], |d, j| d ^ (c[j] & bits[i - j]));
            if d == 1 {
                let t = c.clone();
                let shift = (i as isize - m) as usize;
                for j in 0..=n - shift {
                    c[j + shift] ^= b[j];
                }
                if 2 * l <= i {
                    (l, m, b) = (i + 1 - l, i as isize, t);
                }
            }
        }
        l
    }

    #[tokio::test]
    async fn client_masks_are_unpredictable() {
        within(async {
            // Clients started at the same instant share no masks.
            let mut firsts = std::collections::HashSet::new();
            for _ in 0..64 {
                firsts.insert(masks_of_a_client(1).await[0]);
            }
            assert!(firsts.len() >= 63, "clients started together repeat masks: {} distinct of 64", firsts.len());
            // One client's masks: balanced bits, and no short linear recurrence
            // in any bit of them (a linear generator such as xorshift64 gives
            // each bit one of at most its 64 bits of state; random bits need
            // about half their length).
            let masks = masks_of_a_client(1024).await;
            let ones: u32 = masks.iter().map(|mask| u32::from_ne_bytes(*mask).count_ones()).sum();
            assert!((15_800..=16_968).contains(&ones), "{ones} ones in 32,768 bits");
            for bit in [0, 7, 13, 31] {
                let bits: Vec<u8> = masks.iter().map(|mask| (u32::from_le_bytes(*mask) >> bit) as u8 & 1).collect();
                let complexity = linear_complexity(&bits);
                assert!((496..=528).contains(&complexity), "bit {bit}: linear complexity {complexity} of 1,024");
            }
        })
        .await;
    }

    #[test]
    fn linear_complexity_tells_a_linear_generator_from_random_bits() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let bits: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x & 1) as u8
            })
            .collect();
        assert!(linear_complexity(&bits) <= 64);
        let random: Vec<u8> = (0..1024).map(|_| rand::random::<bool>() as u8).collect();
        assert!(linear_complexity(&random) > 480);
    }

    #[tokio::test]
    async fn a_large_frame_shares_its_buffer_with_no_frame_after_it() {
        within(async {
            let (server, mut client) = with_tungstenite_client().await;
            let mut server = server;
            // One write: a large frame, and a small one right behind it.
            let large = "l".repeat(100_000);
            client.feed(Message::Text(large.clone().into())).await.unwrap();
            client.feed(Message::Text("small".into())).await.unwrap();
            client.flush().await.unwrap();
            let Some(Ok(Message::Text(first))) = server.next().await else { panic!("no large frame") };
            let Some(Ok(Message::Text(second))) = server.next().await else { panic!("no small frame") };
            assert_eq!((first.len(), second.as_str()), (large.len(), "small"));
            // Read into the same buffer, the small frame's bytes would sit just
            // after the large one's (behind its 6-byte header), keeping it alive.
            let end_of_first = first.as_str().as_ptr() as usize + first.len();
            assert_ne!(
                second.as_str().as_ptr() as usize,
                end_of_first + 6,
                "the small frame shares the large one's buffer"
            );
        })
        .await;
    }

    /// A stream that takes every write whole and counts the calls.
    #[derive(Default)]
    struct CountingWrites {
        calls: usize,
        bytes: usize,
    }

    impl AsyncRead for CountingWrites {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for CountingWrites {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.calls += 1;
            self.bytes += buf.len();
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let total = bufs.iter().map(|buf| buf.len()).sum();
            self.calls += 1;
            self.bytes += total;
            Poll::Ready(Ok(total))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_large_frame_and_the_small_ones_around_it_leave_in_one_write() {
        within(async {
            let mut server = Socket::new(CountingWrites::default(), Role::Server, MAX, &[]);
            for text in ["a", "b"] {
                server.feed(Message::Text(text.into())).await.unwrap();
            }
            server.feed(Message::Text("x".repeat(10_000).into())).await.unwrap();
            server.feed(Message::Text("c".into())).await.unwrap();
            server.flush().await.unwrap();
            // The two small frames in one buffer, the large frame's header and
            // shared payload, and the last small frame: one vectored write.
            assert_eq!((server.io.calls, server.io.bytes), (1, 3 + 3 + 4 + 10_000 + 3));
        })
        .await;
    }

    #[tokio::test]
    async fn frames_are_written_from_the_messages_own_bytes() {
        within(async {
            let (a, mut b) = tokio::io::duplex(1 << 20);
            let mut server = Socket::new(a, Role::Server, MAX, &[]);
            let shared = Utf8Bytes::from("x".repeat(100_000));
            server.start_send_unpin(Message::Text(shared.clone())).unwrap();
            let queued = server.write.front().unwrap();
            assert_eq!(queued.payload.as_ptr(), shared.as_bytes().as_ptr(), "the payload was copied");
            server.flush().await.unwrap();
            let mut wire = vec![0; 10 + 100_000];
            tokio::io::AsyncReadExt::read_exact(&mut b, &mut wire).await.unwrap();
            assert_eq!(wire[..2], [0x81, 127]);
            assert_eq!(wire[2..10], 100_000u64.to_be_bytes());
            assert!(wire[10..].iter().all(|&byte| byte == b'x'));
        })
        .await;
    }

    #[test]
    fn masking_twice_restores_the_bytes() {
        let original: Vec<u8> = (0..=255).cycle().take(1037).collect();
        let mut data = original.clone();
        apply_mask(&mut data, [0xde, 0xad, 0xbe, 0xef]);
        assert_ne!(data, original);
        assert_eq!(data[5], original[5] ^ 0xad);
        apply_mask(&mut data, [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(data, original);
    }
}
