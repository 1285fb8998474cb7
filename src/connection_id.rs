//! [`ConnectionId`]: what names one connection across server nodes.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one connection, unique across server nodes: the node part is
/// random for each hub (so for each server process, and for each of several
/// nodes in one process), then a counter. A backplane routes by the node part.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    node: u64,
    sequence: u64,
}

/// A random node id, from the same CSPRNG as everything random in the crate.
pub(crate) fn random_node() -> u64 {
    rand::random()
}

impl ConnectionId {
    /// A fresh id on node `node`.
    pub(crate) fn on_node(node: u64) -> Self {
        static SEQUENCE: AtomicU64 = AtomicU64::new(1);
        ConnectionId { node, sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed) }
    }

    /// A fresh id on this process's own node (clients' connections, tests).
    pub(crate) fn next() -> Self {
        static NODE: OnceLock<u64> = OnceLock::new();
        Self::on_node(*NODE.get_or_init(random_node))
    }

    /// The node (the hub, or the process) that holds the connection.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// The counter part.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.node, self.sequence)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

/// The text of a [`ConnectionId`] was not `node-sequence`.
#[derive(Debug, thiserror::Error)]
#[error("not a connection id: {0:?}")]
pub struct ParseConnectionIdError(String);

impl FromStr for ConnectionId {
    type Err = ParseConnectionIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseConnectionIdError(text.to_owned());
        let (node, sequence) = text.split_once('-').ok_or_else(error)?;
        Ok(ConnectionId {
            node: u64::from_str_radix(node, 16).map_err(|_| error())?,
            sequence: sequence.parse().map_err(|_| error())?,
        })
    }
}

impl serde::Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_round_trip_through_text() {
        let a = ConnectionId::next();
        let b = ConnectionId::next();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<ConnectionId>().unwrap(), a);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<ConnectionId>(&json).unwrap(), b);
        assert!("nonsense".parse::<ConnectionId>().is_err());
        assert!("zz-1".parse::<ConnectionId>().is_err());
    }
}
