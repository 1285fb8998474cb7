//! Who is connected to the chat, under which nick, in which room: in this
//! process, or in Redis so that several chat servers share one set of rooms
//! and nicks (`chat --redis URL`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use wsduplex::ConnectionId;

use crate::chat_contract::ChatError;

/// A move into a room; the others hear about it afterwards.
pub struct Moved {
    /// The room and nick the connection left, if it was in one.
    pub left: Option<(String, String)>,
    /// The room and nick it joined, unless it was there already.
    pub joined: Option<(String, String)>,
    /// The room's nicks, sorted, the mover included.
    pub members: Vec<String>,
}

/// The chat's state, wherever it lives.
pub enum Rooms {
    Local(Mutex<Registry>),
    Shared(RedisRooms),
}

impl Rooms {
    pub fn local() -> Rooms {
        Rooms::Local(Mutex::default())
    }

    fn registry(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
        registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts connection `id` in `room` under `nick`, out of its previous room.
    /// With `existing`, only a connection still known under that nick moves
    /// (an invitee that left meanwhile is not brought back): else `NoSuchUser`.
    pub async fn enter(&self, id: ConnectionId, room: &str, nick: &str, existing: bool) -> Result<Moved, ChatError> {
        match self {
            Rooms::Local(registry) => Self::registry(registry).enter(id, room, nick, existing),
            Rooms::Shared(redis) => redis.enter(id, room, nick, existing).await,
        }
    }

    /// The caller's room and nick.
    pub async fn whereabouts(&self, id: ConnectionId) -> Result<(String, String), ChatError> {
        let found = match self {
            Rooms::Local(registry) => Self::registry(registry).whereabouts(id),
            Rooms::Shared(redis) => redis.whereabouts(id).await?,
        };
        match found {
            (Some(room), Some(nick)) => Ok((room, nick)),
            _ => Err(ChatError::NotInRoom),
        }
    }

    /// The live connection holding `nick`.
    pub async fn holder(&self, nick: &str) -> Result<Option<ConnectionId>, ChatError> {
        match self {
            Rooms::Local(registry) => Ok(Self::registry(registry).nicks.get(nick).copied()),
            Rooms::Shared(redis) => redis.holder(nick).await,
        }
    }

    /// The nick connection `id` holds.
    pub async fn nick_of(&self, id: ConnectionId) -> Result<Option<String>, ChatError> {
        match self {
            Rooms::Local(registry) => Ok(Self::registry(registry).members.get(&id).map(|m| m.nick.clone())),
            Rooms::Shared(redis) => Ok(redis.whereabouts(id).await?.1),
        }
    }

    /// Takes connection `id` out of its room (its nick stays held).
    pub async fn exit_room(&self, id: ConnectionId) -> Result<Option<(String, String)>, ChatError> {
        match self {
            Rooms::Local(registry) => Ok(Self::registry(registry).exit_room(id)),
            Rooms::Shared(redis) => redis.exit(id, false).await,
        }
    }

    /// Forgets a connection that closed, at once when the state is local:
    /// its nick is free again. Returns the room it left, if any.
    pub fn forget_here(&self, id: ConnectionId) -> Option<Option<(String, String)>> {
        match self {
            Rooms::Local(registry) => Some(Self::registry(registry).forget(id)),
            Rooms::Shared(_) => None,
        }
    }

    /// Forgets a connection that closed: its nick is free again.
    pub async fn forget(&self, id: ConnectionId) -> Result<Option<(String, String)>, ChatError> {
        match self {
            Rooms::Local(registry) => Ok(Self::registry(registry).forget(id)),
            Rooms::Shared(redis) => redis.exit(id, true).await,
        }
    }
}

/// The chat's state in this process.
#[derive(Default)]
pub struct Registry {
    nicks: HashMap<String, ConnectionId>,
    members: HashMap<ConnectionId, Member>,
    rooms: HashMap<String, BTreeSet<String>>,
}

struct Member {
    nick: String,
    room: Option<String>,
}

impl Registry {
    fn exit_room(&mut self, id: ConnectionId) -> Option<(String, String)> {
        let member = self.members.get_mut(&id)?;
        let room = member.room.take()?;
        if let Some(nicks) = self.rooms.get_mut(&room) {
            nicks.remove(&member.nick);
            if nicks.is_empty() {
                self.rooms.remove(&room);
            }
        }
        Some((room, member.nick.clone()))
    }

    fn enter(&mut self, id: ConnectionId, room: &str, nick: &str, existing: bool) -> Result<Moved, ChatError> {
        if existing && self.members.get(&id).is_none_or(|member| member.nick != nick) {
            return Err(ChatError::NoSuchUser(nick.to_owned()));
        }
        if self.nicks.get(nick).is_some_and(|holder| *holder != id) {
            return Err(ChatError::NickTaken(nick.to_owned()));
        }
        if let Some(member) = self.members.get(&id)
            && member.room.as_deref() == Some(room)
            && member.nick == nick
        {
            return Ok(Moved { left: None, joined: None, members: self.nicks_in(room) });
        }
        let left = self.exit_room(id);
        let old_nick = self.members.insert(id, Member { nick: nick.to_owned(), room: Some(room.to_owned()) });
        if let Some(old) = old_nick.filter(|old| old.nick != nick) {
            self.nicks.remove(&old.nick);
        }
        self.nicks.insert(nick.to_owned(), id);
        self.rooms.entry(room.to_owned()).or_default().insert(nick.to_owned());
        Ok(Moved { left, joined: Some((room.to_owned(), nick.to_owned())), members: self.nicks_in(room) })
    }

    fn nicks_in(&self, room: &str) -> Vec<String> {
        self.rooms.get(room).map(|nicks| nicks.iter().cloned().collect()).unwrap_or_default()
    }

    fn whereabouts(&self, id: ConnectionId) -> (Option<String>, Option<String>) {
        match self.members.get(&id) {
            Some(member) => (member.room.clone(), Some(member.nick.clone())),
            None => (None, None),
        }
    }

    fn forget(&mut self, id: ConnectionId) -> Option<(String, String)> {
        let left = self.exit_room(id);
        if let Some(member) = self.members.remove(&id) {
            self.nicks.remove(&member.nick);
        }
        left
    }
}

/// The chat's state in Redis, changed by Lua scripts so that each change is
/// atomic across servers. Keys: `chat:nick:NICK` → connection id;
/// `chat:member:ID` → hash of `nick` and `room`; `chat:room:ROOM` → set of
/// nicks; `chat:alive:NODE` → set while that server runs (a nick held by a
/// connection of a server that died is free again once its mark lapses).
/// The state lives as long as Redis keeps it: a Redis without persistence
/// that restarts forgets every room.
pub struct RedisRooms {
    redis: ConnectionManager,
    node: u64,
}

/// How long a server counts as alive without renewing its mark.
const ALIVE_FOR: Duration = Duration::from_secs(15);

/// Shared by the scripts: is the holder of a connection id alive?
const ALIVE: &str = r#"
local function alive(id)
  local node = string.match(id, "^(%x+)%-")
  return node ~= nil and redis.call('EXISTS', 'chat:alive:' .. node) == 1
end
"#;

const ENTER: &str = r#"
local id, room, nick, node, ttl, existing = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1'
-- The caller's server is alive: it is running this.
redis.call('SET', 'chat:alive:' .. node, 1, 'PX', ttl)
if existing and redis.call('HGET', 'chat:member:' .. id, 'nick') ~= nick then return {'gone'} end
local holder = redis.call('GET', 'chat:nick:' .. nick)
if holder and holder ~= id and alive(holder) then return {'taken'} end
if holder and holder ~= id then
  -- A server that died left this nick behind: free it.
  local stale = redis.call('HGET', 'chat:member:' .. holder, 'room')
  if stale then redis.call('SREM', 'chat:room:' .. stale, nick) end
  redis.call('DEL', 'chat:member:' .. holder)
end
local member = 'chat:member:' .. id
local old_nick = redis.call('HGET', member, 'nick')
local old_room = redis.call('HGET', member, 'room')
local result = {'moved', '', ''}
if old_room == room and old_nick == nick then
  result = {'same', '', ''}
else
  if old_room then
    redis.call('SREM', 'chat:room:' .. old_room, old_nick)
    result[2], result[3] = old_room, old_nick
  end
  if old_nick and old_nick ~= nick then redis.call('DEL', 'chat:nick:' .. old_nick) end
  redis.call('SET', 'chat:nick:' .. nick, id)
  redis.call('HSET', member, 'nick', nick, 'room', room)
  redis.call('SADD', 'chat:room:' .. room, nick)
end
for _, other in ipairs(redis.call('SMEMBERS', 'chat:room:' .. room)) do
  local other_holder = redis.call('GET', 'chat:nick:' .. other)
  if other_holder and (other_holder == id or alive(other_holder)) then
    table.insert(result, other)
  else
    redis.call('SREM', 'chat:room:' .. room, other)
  end
end
return result
"#;

const HOLDER: &str = r#"
local holder = redis.call('GET', 'chat:nick:' .. ARGV[1])
if holder and alive(holder) then return holder end
return false
"#;

const EXIT: &str = r#"
local id, forget = ARGV[1], ARGV[2] == '1'
local member = 'chat:member:' .. id
local nick = redis.call('HGET', member, 'nick')
local room = redis.call('HGET', member, 'room')
if room then
  redis.call('SREM', 'chat:room:' .. room, nick)
  redis.call('HDEL', member, 'room')
end
if forget then
  if nick and redis.call('GET', 'chat:nick:' .. nick) == id then redis.call('DEL', 'chat:nick:' .. nick) end
  redis.call('DEL', member)
end
if room then return {room, nick} end
return {}
"#;

/// The scripts, each with the `alive` function it may use; hashed once.
static SCRIPTS: LazyLock<[redis::Script; 3]> =
    LazyLock::new(|| [ENTER, HOLDER, EXIT].map(|body| redis::Script::new(&format!("{ALIVE}{body}"))));

impl RedisRooms {
    /// Connects, and marks server `node` alive for as long as this process runs.
    pub async fn connect(url: &str, node: u64) -> redis::RedisResult<RedisRooms> {
        let redis = redis::Client::open(url)?.get_connection_manager().await?;
        let rooms = RedisRooms { redis, node };
        rooms.mark_alive().await?;
        let beat = RedisRooms { redis: rooms.redis.clone(), node };
        tokio::spawn(async move {
            let mut every = tokio::time::interval(ALIVE_FOR / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = beat.mark_alive().await {
                    tracing::warn!(error = %e, "cannot mark this chat server alive in Redis");
                }
            }
        });
        Ok(rooms)
    }

    async fn mark_alive(&self) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(format!("chat:alive:{:016x}", self.node))
            .arg(1)
            .arg("PX")
            .arg(ALIVE_FOR.as_millis() as u64)
            .query_async(&mut self.redis.clone())
            .await
    }

    async fn enter(&self, id: ConnectionId, room: &str, nick: &str, existing: bool) -> Result<Moved, ChatError> {
        let reply: Vec<String> = SCRIPTS[0]
            .arg(id.to_string())
            .arg(room)
            .arg(nick)
            .arg(format!("{:016x}", self.node))
            .arg(ALIVE_FOR.as_millis() as u64)
            .arg(if existing { "1" } else { "0" })
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        let [status, left_room, left_nick, members @ ..] = reply.as_slice() else {
            return Err(match reply.first().map(String::as_str) {
                Some("gone") => ChatError::NoSuchUser(nick.to_owned()),
                // `{'taken'}`: another live connection holds the nick.
                _ => ChatError::NickTaken(nick.to_owned()),
            });
        };
        let mut members = members.to_vec();
        members.sort();
        let left = (!left_room.is_empty()).then(|| (left_room.clone(), left_nick.clone()));
        let joined = (status == "moved").then(|| (room.to_owned(), nick.to_owned()));
        Ok(Moved { left, joined, members })
    }

    async fn whereabouts(&self, id: ConnectionId) -> Result<(Option<String>, Option<String>), ChatError> {
        redis::cmd("HMGET")
            .arg(format!("chat:member:{id}"))
            .arg("room")
            .arg("nick")
            .query_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)
    }

    async fn holder(&self, nick: &str) -> Result<Option<ConnectionId>, ChatError> {
        let holder: Option<String> =
            SCRIPTS[1].arg(nick).invoke_async(&mut self.redis.clone()).await.map_err(unavailable)?;
        Ok(holder.and_then(|id| id.parse().ok()))
    }

    async fn exit(&self, id: ConnectionId, forget: bool) -> Result<Option<(String, String)>, ChatError> {
        let reply: Vec<String> = SCRIPTS[2]
            .arg(id.to_string())
            .arg(if forget { "1" } else { "0" })
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(match reply.as_slice() {
            [room, nick] => Some((room.clone(), nick.clone())),
            _ => None,
        })
    }
}

/// Redis is down: the caller gets a transport error (-32023).
fn unavailable(error: redis::RedisError) -> ChatError {
    tracing::warn!(error = %error, "the chat's Redis is unavailable");
    ChatError::Callback(wsduplex::Error::Transport(Box::new(error)))
}
