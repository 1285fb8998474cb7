//! The chat contract, shared by the chat server and the terminal client.
//! Its wire form is fixed by shared/DESIGN.md section 4.

use wsduplex::ErrorObjectOwned;

/// Chat rooms: join one under a nick, talk, invite others.
#[wsduplex::service(namespace = "chat", callback = ChatEvents)]
pub trait Chat {
    /// Joins `room` as `nick` (moving out of the current room, if any) and
    /// returns the room's nicks, sorted, the caller included.
    async fn join(&self, room: String, nick: String) -> Result<Vec<String>, ChatError>;

    /// Says `text` to everyone in the caller's room, the caller included.
    #[oneway]
    async fn say(&self, text: String) -> Result<(), ChatError>;

    /// Asks `nick` to come to the caller's room and returns their answer; on
    /// `true` they are moved there.
    async fn invite(&self, nick: String) -> Result<bool, ChatError>;

    /// Leaves the current room (the nick stays held).
    async fn leave(&self) -> Result<(), ChatError>;
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
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// 1001: another connection holds the nick.
    #[error("nick already taken: {0}")]
    NickTaken(String),
    /// 1002: the caller is in no room.
    #[error("not in a room")]
    NotInRoom,
    /// 1003: nobody holds the nick.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// The callback to another user failed (timed out, or they left).
    #[error(transparent)]
    Callback(#[from] wsduplex::Error),
}

impl From<ChatError> for ErrorObjectOwned {
    fn from(error: ChatError) -> Self {
        let message = error.to_string();
        match error {
            ChatError::NickTaken(nick) => ErrorObjectOwned::owned(1001, message, Some(nick)),
            ChatError::NotInRoom => ErrorObjectOwned::owned(1002, message, None::<()>),
            ChatError::NoSuchUser(nick) => ErrorObjectOwned::owned(1003, message, Some(nick)),
            ChatError::Callback(e) => e.into(),
        }
    }
}
