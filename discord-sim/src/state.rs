//! Shared simulator state: sessions, dispatch logs and the records tests assert on.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, broadcast, mpsc};

use crate::config::SimConfig;

/// A dispatch the simulator logged (and sent, or will replay) on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Shard the session belongs to.
    pub shard: u32,
    /// Session the dispatch was logged on.
    pub session_id: String,
    /// Sequence number (`s`) of the dispatch.
    pub seq: u64,
    /// Event name (`t`).
    pub event: String,
    /// The `d` payload, byte-for-byte as written to the wire.
    pub d: Arc<str>,
    /// Guild the event is about, when the caller knew it (generated traffic always sets it
    /// for guild events).
    pub guild_id: Option<u64>,
}

impl Sent {
    /// `"{session_id}:{seq}"`: the natural de-duplication key of a Discord dispatch.
    pub fn msg_id(&self) -> String {
        format!("{}:{}", self.session_id, self.seq)
    }

    /// The full gateway frame for this dispatch (`d` inserted verbatim).
    pub fn frame(&self) -> String {
        let mut s = String::with_capacity(self.d.len() + self.event.len() + 40);
        s.push_str("{\"op\":0,\"s\":");
        s.push_str(&self.seq.to_string());
        s.push_str(",\"t\":\"");
        s.push_str(&self.event);
        s.push_str("\",\"d\":");
        s.push_str(&self.d);
        s.push('}');
        s
    }
}

/// One IDENTIFY the simulator accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyRecord {
    /// Monotonic receive time.
    pub at: Instant,
    /// Wall-clock receive time.
    pub wall: SystemTime,
    /// Shard that identified.
    pub shard: u32,
}

/// One RESUME the simulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRecord {
    /// Shard of the resumed session.
    pub shard: u32,
    /// Resumed session.
    pub session_id: String,
    /// Sequence number the client said it had.
    pub requested_seq: u64,
    /// Number of logged dispatches replayed (RESUMED itself not counted).
    pub replayed: usize,
}

/// A request the REST side received on an interaction or webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRecord {
    /// Interaction id (callback) or application id (webhook follow-up).
    pub interaction_id: String,
    /// Interaction token from the path.
    pub token: String,
    /// Raw request body.
    pub body: String,
    /// Which endpoint: `"callback"` or `"followup"`.
    pub kind: &'static str,
    /// When it arrived.
    pub received_at: SystemTime,
    /// The HTTP status the simulator answered (a second callback for one interaction
    /// gets 400 with Discord's code 40060, "already acknowledged").
    pub status: u16,
}

/// Something that happened on the gateway side, for tests to await instead of sleeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    /// A new session was created and READY queued.
    Identified {
        /// Shard of the session.
        shard: u32,
        /// New session id.
        session_id: String,
    },
    /// A session was resumed; the replay and RESUMED were queued.
    Resumed {
        /// Shard of the session.
        shard: u32,
        /// Resumed session id.
        session_id: String,
        /// Number of dispatches replayed.
        replayed: usize,
    },
    /// A RESUME was refused with op 9.
    ResumeRejected {
        /// Shard the client claimed (from its session, if known).
        shard: Option<u32>,
        /// Session id the client presented.
        session_id: String,
    },
    /// A connection that had identified or resumed went away.
    Disconnected {
        /// Shard of the connection.
        shard: u32,
        /// Close code (client's or ours); `None` when the TCP stream just ended.
        code: Option<u16>,
    },
}

/// Message from the simulator to a connection task.
#[derive(Debug)]
pub(crate) enum Out {
    /// A dispatch to write.
    Dispatch(Sent),
    /// A static control frame (op 7, op 9).
    Raw(&'static str),
    /// Close with this code.
    Close(u16),
    /// Any text frame, written as it is (see `Simulator::send_raw`).
    Text(String),
}

/// Handle on a live connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<Out>,
    /// Dispatches queued but not yet written.
    pub pending: Arc<AtomicUsize>,
    /// Notified whenever `pending` drops or the connection ends.
    pub drained: Arc<Notify>,
}

impl ConnHandle {
    pub(crate) fn send(&self, out: Out) {
        if matches!(out, Out::Dispatch(_)) {
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
        if self.tx.send(out).is_err() {
            self.pending.store(0, Ordering::Release);
            self.drained.notify_waiters();
        }
    }
}

/// One gateway session.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: String,
    pub shard: u32,
    pub next_seq: u64,
    pub log: VecDeque<Sent>,
    pub resumable: bool,
    pub conn: Option<ConnHandle>,
    /// READY or RESUMED queued on the current connection.
    pub ready: bool,
}

/// Mutable state behind the lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Current session id per shard.
    pub current: HashMap<u32, String>,
    pub sessions: HashMap<String, Session>,
    pub sent: Vec<Sent>,
    pub sent_count: u64,
    pub identifies: Vec<IdentifyRecord>,
    pub identify_violations: usize,
    pub resumes: Vec<ResumeRecord>,
    pub callbacks: Vec<CallbackRecord>,
    pub next_conn_id: u64,
    /// Transport compression each WebSocket connection asked for, in order.
    pub compressions: Vec<crate::compress::TransportCompression>,
    /// Gateway commands (op 3, 4, 8) clients sent, in order.
    pub commands: Vec<crate::commands::CommandRecord>,
    /// Last accepted request for all members, per guild (op 8's 30 s limit).
    pub member_requests: HashMap<u64, Instant>,
    /// REST limit state.
    pub rest: crate::rest::RestState,
    pub rest_counts: crate::rest::RestCounts,
    pub rest_records: Vec<crate::rest::RestRecord>,
    pub messages: Vec<crate::rest::MessageRecord>,
    pub role_changes: Vec<crate::rest::RoleChange>,
    /// Guilds whose members are kept (see `members.rs`).
    pub guilds: HashMap<u64, crate::members::SimGuild>,
}

/// State shared by the server, connections and [`Simulator`](crate::Simulator) handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    pub addr: SocketAddr,
    pub state: Mutex<State>,
    pub events: broadcast::Sender<SimEvent>,
    /// Notified on every session state change (READY/RESUMED queued, disconnects).
    pub changed: Notify,
    /// REST requests being answered now, and the most at once since the last reset.
    pub rest_in_flight: std::sync::atomic::AtomicUsize,
    pub rest_in_flight_max: std::sync::atomic::AtomicUsize,
    /// Set by `POST /sim/members/play`: a process outside the test (the demo) says
    /// its setup is done and member traffic may start.
    pub members_play: tokio::sync::watch::Sender<bool>,
}

/// Identifies of one bucket closer together than this count as a rate-limit violation.
/// Discord's window is 5 s; the 100 ms slack absorbs loopback jitter.
pub(crate) const IDENTIFY_WINDOW: Duration = Duration::from_millis(4_900);

impl Shared {
    pub(crate) fn new(config: SimConfig, addr: SocketAddr) -> Self {
        Self {
            config,
            addr,
            state: Mutex::new(State::default()),
            events: broadcast::channel(4096).0,
            changed: Notify::new(),
            rest_in_flight: Default::default(),
            rest_in_flight_max: Default::default(),
            members_play: tokio::sync::watch::Sender::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn emit(&self, event: SimEvent) {
        let _ = self.events.send(event);
        self.changed.notify_waiters();
    }

    pub(crate) fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Appends a dispatch to `session_id`'s log and queues it on its live connection.
    pub(crate) fn append(
        &self,
        st: &mut State,
        session_id: &str,
        event: &str,
        d: Arc<str>,
        guild_id: Option<u64>,
    ) -> Sent {
        let record = self.config.record_sent;
        let retained = self.config.retained_log.max(1);
        let session = st.sessions.get_mut(session_id).expect("session exists");
        let sent = Sent {
            shard: session.shard,
            session_id: session.id.clone(),
            seq: session.next_seq,
            event: event.to_owned(),
            d,
            guild_id,
        };
        session.next_seq += 1;
        if session.log.len() >= retained {
            session.log.pop_front();
        }
        session.log.push_back(sent.clone());
        if let Some(conn) = &session.conn {
            conn.send(Out::Dispatch(sent.clone()));
        }
        st.sent_count += 1;
        if record {
            st.sent.push(sent.clone());
        }
        sent
    }

    /// Records an identify and checks Discord's per-bucket rate limit.
    pub(crate) fn record_identify(&self, st: &mut State, shard: u32) {
        let now = Instant::now();
        let mc = self.config.max_concurrency.max(1);
        let bucket = shard % mc;
        let too_close = st
            .identifies
            .iter()
            .rev()
            .take_while(|r| now.duration_since(r.at) < IDENTIFY_WINDOW)
            .any(|r| r.shard % mc == bucket);
        if too_close {
            st.identify_violations += 1;
        }
        st.identifies.push(IdentifyRecord {
            at: now,
            wall: SystemTime::now(),
            shard,
        });
    }

    /// Detaches connection `conn_id` from its session. `end` makes the session
    /// non-resumable. Returns the shard when the connection belonged to a session.
    pub(crate) fn detach(&self, session_id: &str, conn_id: u64, end: bool) -> Option<u32> {
        let mut st = self.lock();
        let session = st.sessions.get_mut(session_id)?;
        if end {
            session.resumable = false;
        }
        if session.conn.as_ref().is_some_and(|c| c.id == conn_id) {
            session.conn = None;
            session.ready = false;
        }
        Some(session.shard)
    }

    /// Makes `session_id` unresumable at once (its connection may still be closing).
    pub(crate) fn end_session(&self, session_id: &str) {
        if let Some(session) = self.lock().sessions.get_mut(session_id) {
            session.resumable = false;
        }
    }

    /// The live connection of `shard`'s current session.
    pub(crate) fn live_conn(&self, shard: u32) -> Option<ConnHandle> {
        let st = self.lock();
        let id = st.current.get(&shard)?;
        st.sessions.get(id)?.conn.clone()
    }

    /// Whether `shard`'s current session is live and has been sent READY/RESUMED.
    pub(crate) fn is_ready(&self, shard: u32) -> bool {
        let st = self.lock();
        st.current
            .get(&shard)
            .and_then(|id| st.sessions.get(id))
            .is_some_and(|s| s.ready && s.conn.is_some())
    }

    /// Shards whose current session is live and ready.
    pub(crate) fn ready_shards(&self) -> Vec<u32> {
        let st = self.lock();
        let mut v: Vec<u32> = st
            .current
            .iter()
            .filter(|(_, id)| {
                st.sessions
                    .get(*id)
                    .is_some_and(|s| s.ready && s.conn.is_some())
            })
            .map(|(shard, _)| *shard)
            .collect();
        v.sort_unstable();
        v
    }
}

/// A fresh random 32-hex-digit session id.
pub(crate) fn new_session_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}
