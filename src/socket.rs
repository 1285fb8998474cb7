//! A WebSocket connection after its handshake (RFC 6455 framing), built on
//! tungstenite's frame types, that holds no buffer while it is idle.
//!
//! tokio-tungstenite allocates its read buffer up front, so every idle
//! connection carries it. Here small reads go through a buffer on the stack
//! and only what arrives is kept; a large frame is read straight into a
//! buffer of its own size; the write buffer exists only until it is flushed.
//! An idle connection holds its socket and a few words of state.

use std::io::{self, Cursor};
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

/// Reads of up to this many bytes go through the stack, so nothing is held
/// on the heap while waiting.
const STACK_READ: usize = 8 * 1024;

/// The most a large frame's buffer grows ahead of the data that arrives.
const LARGE_READ: usize = 64 * 1024;

/// Past this many bytes waiting to be written, `poll_ready` flushes first and
/// reading pauses (a peer that sends pings but never reads cannot pile up pongs).
const WRITE_HIGH_WATER: usize = 64 * 1024;

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
    /// Encoded frames not yet written; unallocated when empty.
    write: Vec<u8>,
    written: usize,
    state: State,
    /// Source of masks for frames a client sends.
    mask_state: u64,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Socket<Io> {
    /// Wraps a connection whose handshake is done; `pre_read` holds bytes that
    /// arrived with the handshake.
    pub(crate) fn new(io: Io, role: Role, max_message: usize, pre_read: &[u8]) -> Self {
        use std::hash::{BuildHasher, RandomState};
        Socket {
            io,
            role,
            max_message,
            read: BytesMut::from(pre_read),
            awaiting: 0,
            fragments: None,
            write: Vec::new(),
            written: 0,
            state: State::Open,
            // Masks only need to be unpredictable to third parties (RFC 6455 section 10.3).
            mask_state: RandomState::new().hash_one(0u8) | 1,
        }
    }

    /// The next complete frame in the read buffer, unmasked, or `None` when
    /// more bytes are needed. A header that breaks a rule is refused as soon
    /// as it arrives, before its payload is waited for.
    fn next_frame(&mut self) -> Result<Option<(FrameHeader, BytesMut)>, WsError> {
        let mut cursor = Cursor::new(&self.read[..]);
        let Some((header, length)) = FrameHeader::parse(&mut cursor)? else { return Ok(None) };
        let header_len = cursor.position() as usize;
        let length = match usize::try_from(length) {
            Ok(length) if length <= self.max_message => length,
            _ => {
                let size = usize::try_from(length).unwrap_or(usize::MAX);
                return Err(CapacityError::MessageTooLong { size, max_size: self.max_message }.into());
            }
        };
        self.check_header(&header, length)?;
        if self.read.len() < header_len + length {
            self.awaiting = header_len + length;
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
                let size = fragments.data.len() + payload.len();
                if size > self.max_message {
                    return Err(CapacityError::MessageTooLong { size, max_size: self.max_message }.into());
                }
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
                    if self.state == State::Open {
                        self.encode(OpCode::Control(Control::Pong), &payload);
                    }
                    Ok(Some(Message::Ping(payload.freeze())))
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
                let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_allowed() {
                    return Err(ProtocolError::InvalidCloseSequence.into());
                }
                let reason = Utf8Bytes::try_from(payload.slice(2..)).map_err(|e| WsError::Utf8(e.to_string()))?;
                Some(CloseFrame { code, reason })
            }
        };
        match self.state {
            State::Open => {
                // Answer with the same code (RFC 6455 section 5.5.1).
                let echo: &[u8] = if payload.len() >= 2 { &payload[..2] } else { &[] };
                self.encode(OpCode::Control(Control::Close), echo);
                self.state = State::CloseReceived;
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
        if missing > STACK_READ {
            self.read.reserve(missing.min(LARGE_READ));
            return tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read);
        }
        // Uninitialized: zeroing 8 KiB for every read would cost more than the read.
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut buf = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let filled = buf.filled();
        self.read.extend_from_slice(filled);
        Poll::Ready(Ok(filled.len()))
    }

    /// Appends one frame to the write buffer, masked when this side is a client.
    fn encode(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = (self.role == Role::Client).then(|| self.next_mask());
        let header = FrameHeader { is_final: true, rsv1: false, rsv2: false, rsv3: false, opcode, mask };
        // Writing into a Vec cannot fail.
        let _ = header.format(payload.len() as u64, &mut self.write);
        let start = self.write.len();
        self.write.extend_from_slice(payload);
        if let Some(mask) = mask {
            apply_mask(&mut self.write[start..], mask);
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.mask_state = x;
        (x as u32).to_ne_bytes()
    }

    /// Writes out the write buffer, then lets go of it.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.write.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        if self.write.capacity() > 0 {
            self.write = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }
}

/// A complete data message, its text checked for UTF-8.
fn complete(text: bool, data: Bytes) -> Result<Message, WsError> {
    if text {
        Utf8Bytes::try_from(data).map(Message::Text).map_err(|e| WsError::Utf8(e.to_string()))
    } else {
        Ok(Message::Binary(data))
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
            // Pongs and the close echo go out without waiting for a flush.
            if this.written < this.write.len() {
                match this.poll_write_out(cx) {
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                    // Woken when the socket takes more.
                    Poll::Pending if this.write.len() - this.written >= WRITE_HIGH_WATER => return Poll::Pending,
                    _ => {}
                }
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
        if this.write.len() - this.written >= WRITE_HIGH_WATER {
            ready!(this.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        let this = &mut *self;
        if this.state != State::Open {
            return Err(ProtocolError::SendAfterClosing.into());
        }
        match message {
            Message::Text(text) => this.encode(OpCode::Data(Data::Text), text.as_bytes()),
            Message::Binary(data) => this.encode(OpCode::Data(Data::Binary), &data),
            Message::Ping(data) => this.encode(OpCode::Control(Control::Ping), &data),
            Message::Pong(data) => this.encode(OpCode::Control(Control::Pong), &data),
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
                this.encode(OpCode::Control(Control::Close), &payload);
                this.state = State::CloseSent;
            }
            Message::Frame(_) => return Err(ProtocolError::InvalidOpcode(0).into()),
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        ready!(this.poll_write_out(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = &mut *self;
        if this.state == State::Open {
            this.encode(OpCode::Control(Control::Close), &[]);
            this.state = State::CloseSent;
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
    async fn a_peer_that_pings_but_never_reads_cannot_pile_up_pongs() {
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
                let _ = tokio::io::AsyncWriteExt::write_all(&mut b, &pings).await;
                b
            });
            // Drive the server until nothing moves any more, noting its largest write backlog.
            let (mut largest, mut idle) = (0, 0);
            while idle < 100 {
                match server.next().now_or_never() {
                    Some(Some(Ok(Message::Ping(_)))) => idle = 0,
                    Some(other) => panic!("unexpected {other:?}"),
                    None => {
                        idle += 1;
                        tokio::task::yield_now().await;
                    }
                }
                largest = largest.max(server.write.len() - server.written);
            }
            // Reading paused near the high-water mark instead of queueing 100,000 pongs
            // (one read's worth of pongs may land on top of it).
            assert!(largest >= WRITE_HIGH_WATER, "the backlog never reached the mark: {largest}");
            assert!(largest < WRITE_HIGH_WATER + 4096, "the backlog grew to {largest}");
            assert!(!writer.is_finished(), "the peer is held back too");
            writer.abort();
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
