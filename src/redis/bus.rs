//! What travels between nodes on Redis: channel names, and the messages on
//! them. Every message names the node that sent it, so a node skips its own.
//!
//! A message is one header line of space-separated ASCII fields, then a body.
//! Names (groups, users, methods) have their length in the header and sit at
//! the start of the body, so they may hold any character; a fan-out's JSON
//! payload follows as it is, written once by the publishing node and handed
//! as the same bytes to every local recipient on the receiving one.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;

use crate::connection_id::ConnectionId;
use crate::hub::{Audience, Payload, Topic};

/// The channels of one hub, under a prefix.
#[derive(Clone, Debug)]
pub(crate) struct Channels {
    prefix: String,
}

impl Channels {
    pub(crate) fn new(prefix: &str) -> Self {
        Channels { prefix: prefix.to_owned() }
    }

    /// What every node hears: `all` and `all but` fan-outs.
    pub(crate) fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    /// What one node hears: messages to its connections, calls, replies, group changes.
    pub(crate) fn node(&self, node: u64) -> String {
        format!("{}:node:{node:016x}", self.prefix)
    }

    pub(crate) fn topic(&self, topic: &Topic) -> String {
        match topic {
            Topic::Group(name) => format!("{}:group:{name}", self.prefix),
            Topic::User(name) => format!("{}:user:{name}", self.prefix),
        }
    }

    /// Where a fan-out to `audience` goes.
    pub(crate) fn of(&self, audience: &Audience) -> String {
        match audience {
            Audience::All | Audience::AllExcept(_) => self.all(),
            Audience::Group(name) | Audience::GroupExcept(name, _) => self.topic(&Topic::Group(name.clone())),
            Audience::User(name) => self.topic(&Topic::User(name.clone())),
            Audience::Connection(id) => self.node(id.node()),
        }
    }
}

/// How a call on another node ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The result, as JSON.
    Result(String),
    /// The connection's error object, as JSON.
    Rpc(String),
    /// No such connection, or it closed before answering.
    Closed,
    /// It did not answer in time.
    Timeout,
}

/// One message on the bus.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// A fan-out: `payload` to `audience` on every node that has any of it.
    Fanout { origin: u64, audience: Audience, payload: Payload },
    /// Call `method` on connection `target`; answer `origin` with `call`.
    Call { origin: u64, call: u64, target: ConnectionId, timeout: Duration, method: String, params: String },
    /// Add `target` to `group` (or remove it); answer `origin` with `call`.
    Group { origin: u64, call: u64, target: ConnectionId, join: bool, group: String },
    /// The answer to call `call`.
    Reply { origin: u64, call: u64, outcome: Outcome },
    /// Close connection `target` with `code` and `reason`; answer `origin` with `call`.
    Close { origin: u64, call: u64, target: ConnectionId, code: u16, reason: String },
    /// The answer to group change or close `call`: whether it changed anything.
    Done { origin: u64, call: u64, changed: bool },
}

impl Message {
    /// The bytes to publish.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut header = String::new();
        let mut body: Vec<&[u8]> = Vec::new();
        let ids = |ids: &[ConnectionId]| {
            if ids.is_empty() {
                "-".to_owned()
            } else {
                ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            }
        };
        match self {
            Message::Fanout { origin, audience, payload } => {
                let (kind, name, except): (&str, &str, String) = match audience {
                    Audience::All => ("all", "", ids(&[])),
                    Audience::AllExcept(except) => ("all", "", ids(except)),
                    Audience::Group(name) => ("group", name, ids(&[])),
                    Audience::GroupExcept(name, except) => ("group", name, ids(except)),
                    Audience::User(name) => ("user", name, ids(&[])),
                    Audience::Connection(id) => ("conn", "", id.to_string()),
                };
                write!(header, "F {origin:x} {kind} {} {except}", name.len()).unwrap();
                body.push(name.as_bytes());
                body.push(payload.as_str().as_bytes());
            }
            Message::Call { origin, call, target, timeout, method, params } => {
                // Whole milliseconds: at least one, at most what fits.
                let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
                write!(header, "C {origin:x} {call} {target} {millis} {}", method.len()).unwrap();
                body.push(method.as_bytes());
                body.push(params.as_bytes());
            }
            Message::Group { origin, call, target, join, group } => {
                write!(header, "G {origin:x} {call} {target} {} {}", u8::from(*join), group.len()).unwrap();
                body.push(group.as_bytes());
            }
            Message::Reply { origin, call, outcome } => {
                let (status, text) = match outcome {
                    Outcome::Result(json) => ("ok", json.as_str()),
                    Outcome::Rpc(json) => ("rpc", json.as_str()),
                    Outcome::Closed => ("closed", ""),
                    Outcome::Timeout => ("timeout", ""),
                };
                write!(header, "R {origin:x} {call} {status}").unwrap();
                body.push(text.as_bytes());
            }
            Message::Close { origin, call, target, code, reason } => {
                write!(header, "X {origin:x} {call} {target} {code} {}", reason.len()).unwrap();
                body.push(reason.as_bytes());
            }
            Message::Done { origin, call, changed } => {
                write!(header, "J {origin:x} {call} {}", u8::from(*changed)).unwrap();
            }
        }
        let mut bytes = Vec::with_capacity(header.len() + 1 + body.iter().map(|b| b.len()).sum::<usize>());
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        for part in body {
            bytes.extend_from_slice(part);
        }
        bytes
    }

    /// The sending node, read from the header alone (to skip a node's own
    /// messages before copying them).
    pub(crate) fn origin_of(bytes: &[u8]) -> Option<u64> {
        // "K ORIGIN ...": the kind is one byte, the origin at most 16 hex digits.
        let rest = bytes.get(2..)?;
        let end = rest.iter().take(17).position(|&b| b == b' ' || b == b'\n')?;
        u64::from_str_radix(std::str::from_utf8(&rest[..end]).ok()?, 16).ok()
    }

    /// The node that sent it.
    pub(crate) fn origin(&self) -> u64 {
        match self {
            Message::Fanout { origin, .. }
            | Message::Call { origin, .. }
            | Message::Group { origin, .. }
            | Message::Reply { origin, .. }
            | Message::Close { origin, .. }
            | Message::Done { origin, .. } => *origin,
        }
    }

    /// Reads a message; `None` for anything malformed (another program on the
    /// channel, or a newer format): the bus is shared, so it never panics.
    pub(crate) fn decode(bytes: Bytes) -> Option<Message> {
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&bytes[..newline]).ok()?;
        let mut body = bytes.slice(newline + 1..);
        let mut fields = header.split(' ');
        let kind = fields.next()?;
        let origin = u64::from_str_radix(fields.next()?, 16).ok()?;
        let message = match kind {
            "F" => {
                let kind = fields.next()?;
                let name_len = fields.next()?.parse().ok()?;
                let except = fields.next()?;
                let name = take(&mut body, name_len)?;
                let except: Vec<ConnectionId> = match except {
                    "-" => Vec::new(),
                    list => list.split(',').map(str::parse).collect::<Result<_, _>>().ok()?,
                };
                let audience = match (kind, except.is_empty()) {
                    ("all", true) => Audience::All,
                    ("all", false) => Audience::AllExcept(except),
                    ("group", true) => Audience::Group(name.into()),
                    ("group", false) => Audience::GroupExcept(name.into(), except),
                    ("user", _) => Audience::User(name.into()),
                    ("conn", false) if except.len() == 1 => Audience::Connection(except[0]),
                    _ => return None,
                };
                // Served to sockets as text: checked once here, then shared.
                Message::Fanout { origin, audience, payload: Payload::from_utf8(body)? }
            }
            "C" => {
                let call = fields.next()?.parse().ok()?;
                let target = fields.next()?.parse().ok()?;
                let timeout = Duration::from_millis(fields.next()?.parse().ok()?);
                let method = take(&mut body, fields.next()?.parse().ok()?)?;
                let params = rest(body)?;
                Message::Call { origin, call, target, timeout, method, params }
            }
            "G" => {
                let call = fields.next()?.parse().ok()?;
                let target = fields.next()?.parse().ok()?;
                let join = match fields.next()? {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                };
                let group = take(&mut body, fields.next()?.parse().ok()?)?;
                Message::Group { origin, call, target, join, group }
            }
            "X" => {
                let call = fields.next()?.parse().ok()?;
                let target = fields.next()?.parse().ok()?;
                let code = fields.next()?.parse().ok()?;
                let reason = take(&mut body, fields.next()?.parse().ok()?)?;
                Message::Close { origin, call, target, code, reason }
            }
            "R" => {
                let call = fields.next()?.parse().ok()?;
                let status = fields.next()?;
                let text = rest(body)?;
                let outcome = match status {
                    "ok" => Outcome::Result(text),
                    "rpc" => Outcome::Rpc(text),
                    "closed" => Outcome::Closed,
                    "timeout" => Outcome::Timeout,
                    _ => return None,
                };
                Message::Reply { origin, call, outcome }
            }
            "J" => {
                let call = fields.next()?.parse().ok()?;
                let changed = fields.next()? == "1";
                Message::Done { origin, call, changed }
            }
            _ => return None,
        };
        fields.next().is_none().then_some(message)
    }
}

/// The first `len` bytes of `body` as text, taken off it.
fn take(body: &mut Bytes, len: usize) -> Option<String> {
    let text = String::from_utf8(body.get(..len)?.to_vec()).ok()?;
    *body = body.slice(len..);
    Some(text)
}

/// All of `body` as text.
fn rest(body: Bytes) -> Option<String> {
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(message: Message) {
        let bytes = message.encode();
        assert_eq!(Message::decode(Bytes::from(bytes)), Some(message));
    }

    fn id(text: &str) -> ConnectionId {
        text.parse().unwrap()
    }

    #[test]
    fn every_message_round_trips() {
        let payload =
            Payload::from(r#"{"jsonrpc":"2.0","method":"chat.message","params":{"text":"a b\nc"}}"#.to_owned());
        for audience in [
            Audience::All,
            Audience::AllExcept(vec![id("00000000000000aa-1"), id("ab-2")]),
            Audience::Group("room with spaces\nand a newline".into()),
            Audience::GroupExcept("r".into(), vec![id("1-3")]),
            Audience::User("ada".into()),
            Audience::Connection(id("ff-9")),
            Audience::Group("".into()),
        ] {
            round_trip(Message::Fanout { origin: 0xfeed, audience, payload: payload.clone() });
        }
        round_trip(Message::Call {
            origin: 1,
            call: 42,
            target: id("2-7"),
            timeout: Duration::from_millis(1500),
            method: "chat.invited".into(),
            params: r#"{"from":"ada","room":"den"}"#.into(),
        });
        round_trip(Message::Group { origin: 1, call: 43, target: id("2-7"), join: true, group: "dé n".into() });
        round_trip(Message::Group { origin: 1, call: 44, target: id("2-7"), join: false, group: "x".into() });
        for outcome in
            [Outcome::Result("true".into()), Outcome::Rpc(r#"{"code":1}"#.into()), Outcome::Closed, Outcome::Timeout]
        {
            round_trip(Message::Reply { origin: 2, call: 42, outcome });
        }
        round_trip(Message::Done { origin: 2, call: 43, changed: true });
        round_trip(Message::Close { origin: 3, call: 45, target: id("2-7"), code: 1008, reason: "kicked é".into() });
    }

    #[test]
    fn the_origin_is_read_from_the_header_alone() {
        let message = Message::Done { origin: 0xabc, call: 1, changed: true };
        assert_eq!(Message::origin_of(&message.encode()), Some(0xabc));
        // However long the header (here, many excluded ids).
        let except: Vec<ConnectionId> = (10..40).map(|n| id(&format!("fedcba9876543210-{n}"))).collect();
        let long = Message::Fanout {
            origin: u64::MAX,
            audience: Audience::GroupExcept("room".into(), except),
            payload: Payload::from("{}".to_owned()),
        };
        assert_eq!(Message::origin_of(&long.encode()), Some(u64::MAX));
        assert_eq!(Message::origin_of(b"junk"), None);
        assert_eq!(Message::origin_of(b""), None);
    }

    #[test]
    fn call_deadlines_travel_in_whole_milliseconds() {
        let call = |timeout| Message::Call {
            origin: 1,
            call: 2,
            target: id("3-4"),
            timeout,
            method: "m".into(),
            params: "[]".into(),
        };
        let Some(Message::Call { timeout, .. }) =
            Message::decode(Bytes::from(call(Duration::from_micros(10)).encode()))
        else {
            panic!()
        };
        assert_eq!(timeout, Duration::from_millis(1));
        let Some(Message::Call { timeout, .. }) = Message::decode(Bytes::from(call(Duration::MAX).encode())) else {
            panic!()
        };
        assert_eq!(timeout, Duration::from_millis(u64::MAX));
    }

    #[test]
    fn a_fanout_keeps_the_payload_bytes_it_arrived_in() {
        let message = Message::Fanout { origin: 3, audience: Audience::All, payload: Payload::from("{}".to_owned()) };
        let bytes = Bytes::from(message.encode());
        let Some(Message::Fanout { payload, .. }) = Message::decode(bytes.clone()) else { panic!() };
        // A slice of the received buffer, not a copy.
        assert_eq!(payload.as_str().as_ptr(), bytes[bytes.len() - 2..].as_ptr());
    }

    #[test]
    fn anything_else_is_ignored_not_a_panic() {
        for junk in [
            &b""[..],
            b"no newline",
            b"F zz all 0 -\n{}",
            b"F 1 all 99 -\nshort",
            b"F 1 conn 0 -\n{}",
            b"F 1 all 0 not-an-id\n{}",
            b"F 1 all 0 - extra\n{}",
            b"F 1 all 0 -\n\xff\xfe",
            b"C 1 x 1-1 10 3\nabc",
            b"C 1 5 1-1 10 300\nabc",
            b"G 1 5 1-1 2 1\nx",
            b"R 1 5 maybe\n",
            b"Q 1 5\n",
            b"\xff\n",
        ] {
            assert_eq!(Message::decode(Bytes::copy_from_slice(junk)), None, "{:?}", String::from_utf8_lossy(junk));
        }
    }

    #[test]
    fn channels_route_by_audience() {
        let channels = Channels::new("app");
        assert_eq!(channels.of(&Audience::AllExcept(vec![])), "app:all");
        assert_eq!(channels.of(&Audience::GroupExcept("den".into(), vec![])), "app:group:den");
        assert_eq!(channels.of(&Audience::User("ada".into())), "app:user:ada");
        assert_eq!(channels.of(&Audience::Connection(id("00000000000000ab-5"))), "app:node:00000000000000ab");
    }
}
