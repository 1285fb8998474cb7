//! The chat contract, shared by the chat server and the terminal client.
//! Its wire form is fixed by docs/chat-contract.md.

/// Chat rooms: join one under a nick, talk, invite others.
#[wsduplex::service(namespace = "chat", callback = ChatEvents)]
pub trait Chat {
    /// Joins `room` as `nick` (moving out of the current room, if any) and
    /// returns the room's nicks, sorted, the caller included.
    #[errors(NickTaken, Callback)]
    async fn join(&self, room: String, nick: String) -> Result<Vec<String>, ChatError>;

    /// Says `text` to everyone in the caller's room, the caller included.
    #[oneway]
    #[errors(NotInRoom, Callback)]
    async fn say(&self, text: String) -> Result<(), ChatError>;

    /// Asks `nick` to come to the caller's room and returns their answer; on
    /// `true` they are moved there.
    #[errors(NickTaken, NotInRoom, NoSuchUser, Callback)]
    async fn invite(&self, nick: String) -> Result<bool, ChatError>;

    /// Leaves the current room (the nick stays held).
    #[errors(NotInRoom, Callback)]
    async fn leave(&self) -> Result<(), ChatError>;

    /// Disconnects `nick` (close code 1008); their room hears `chat.left`.
    /// Only for an admin: anyone else is refused with -32030.
    #[authorize(role = "admin")]
    #[errors(NoSuchUser, Callback)]
    async fn kick(&self, nick: String) -> Result<(), ChatError>;
}

/// What the chat server tells a client.
#[wsduplex::callback(namespace = "chat")]
pub trait ChatEvents {
    /// `nick` joined `room`.
    #[oneway]
    async fn joined(&self, room: String, nick: String);

    /// `nick` left `room` (or disconnected).
    #[oneway]
    async fn left(&self, room: String, nick: String);

    /// `from` said `text` in `room`.
    #[oneway]
    async fn message(&self, room: String, from: String, text: String);

    /// `from` invites this client to `room`; the answer is whether it accepts.
    async fn invited(&self, from: String, room: String) -> bool;
}

/// The chat service's errors, with their wire codes.
#[derive(Debug, thiserror::Error, wsduplex::RpcError)]
pub enum ChatError {
    /// Another connection holds the nick; `data` is the nick.
    #[error("nick already taken: {0}")]
    #[rpc(code = 1001)]
    NickTaken(String),
    /// The caller is in no room.
    #[error("not in a room")]
    #[rpc(code = 1002)]
    NotInRoom,
    /// Nobody holds the nick; `data` is the nick.
    #[error("no such user: {0}")]
    #[rpc(code = 1003)]
    NoSuchUser(String),
    /// A call this one depends on failed: a callback to another user (timed
    /// out, or they left), a room change told to the room, or the rooms' store.
    #[error(transparent)]
    #[rpc(transparent)]
    Callback(#[from] wsduplex::Error),
}
