//! One gateway WebSocket connection: HELLO, heartbeats, IDENTIFY, RESUME, dispatch writing
//! and the close handshake.
//!
//! The simulator does not enforce the heartbeat interval (a silent client is never closed
//! with 4009); it only answers heartbeats with op 11.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::compress::{Compressor, TransportCompression};
use crate::config::synthetic_guild;
use crate::fixtures::guild_create;
use crate::state::{ConnHandle, Out, ResumeRecord, Session, Shared, SimEvent, new_session_id};

const HEARTBEAT_ACK: &str = r#"{"op":11,"s":null,"t":null,"d":null}"#;
/// op 9, not resumable.
pub(crate) const INVALID_SESSION_FALSE: &str = r#"{"op":9,"d":false,"s":null,"t":null}"#;
/// op 9, resumable.
pub(crate) const INVALID_SESSION_TRUE: &str = r#"{"op":9,"d":true,"s":null,"t":null}"#;
/// op 7.
pub(crate) const RECONNECT: &str = r#"{"op":7,"d":null,"s":null,"t":null}"#;
/// Dispatches written per flush at most.
const BATCH: usize = 256;

/// Why the connection loop ended.
enum End {
    /// Transport error or EOF without a close frame.
    Dropped,
    /// The client sent a close frame.
    ClientClose(Option<CloseFrame>),
    /// We close with this code.
    ServerClose(u16),
}

/// Whether a close code we send ends the session (Discord's "new session needed" and
/// fatal codes).
fn code_ends_session(code: u16) -> bool {
    matches!(code, 4004 | 4007 | 4009 | 4010..=4014)
}

fn close_reason(code: u16) -> &'static str {
    match code {
        4000 => "Unknown error",
        4004 => "Authentication failed.",
        4005 => "Already authenticated.",
        4007 => "Invalid seq",
        4009 => "Session timed out",
        4010 => "Invalid shard",
        4011 => "Sharding required",
        1001 => "Going away",
        _ => "",
    }
}

struct Conn {
    shared: Arc<Shared>,
    handle: ConnHandle,
    comp: Compressor,
    session: Option<String>,
    shard: Option<u32>,
}

/// Runs one upgraded gateway connection to completion.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut ws: WebSocket,
    mode: TransportCompression,
    cancel: CancellationToken,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = shared.lock();
        st.next_conn_id += 1;
        st.next_conn_id
    };
    let handle = ConnHandle {
        id,
        tx,
        pending: Arc::new(AtomicUsize::new(0)),
        drained: Arc::new(Notify::new()),
    };
    let mut c = Conn {
        shared,
        handle,
        comp: Compressor::new(mode),
        session: None,
        shard: None,
    };
    let hello = format!(
        r#"{{"op":10,"d":{{"heartbeat_interval":{}}},"s":null,"t":null}}"#,
        c.shared.config.heartbeat_interval.as_millis()
    );
    let end = match c.write(&mut ws, hello).await {
        Err(e) => e,
        Ok(()) => loop {
            tokio::select! {
                _ = cancel.cancelled() => break End::ServerClose(1001),
                msg = ws.recv() => {
                    let text = match msg {
                        None | Some(Err(_)) => break End::Dropped,
                        Some(Ok(Message::Close(frame))) => break End::ClientClose(frame),
                        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                        Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                        Some(Ok(_)) => continue,
                    };
                    if let Err(end) = c.on_payload(&mut ws, &text).await {
                        break end;
                    }
                }
                out = rx.recv() => {
                    let Some(out) = out else { break End::Dropped };
                    if let Err(end) = c.on_out(&mut ws, out, &mut rx).await {
                        break end;
                    }
                }
            }
        },
    };
    c.finish(ws, end).await;
}

impl Conn {
    async fn write(&mut self, ws: &mut WebSocket, text: String) -> Result<(), End> {
        let msg = self.comp.message(text).map_err(|_| End::Dropped)?;
        ws.send(msg).await.map_err(|_| End::Dropped)
    }

    async fn on_payload(&mut self, ws: &mut WebSocket, text: &str) -> Result<(), End> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            // Discord: 4002 decode error.
            return Err(End::ServerClose(4002));
        };
        match v.get("op").and_then(Value::as_u64) {
            Some(1) => self.write(ws, HEARTBEAT_ACK.to_owned()).await,
            Some(2) => self.identify(&v["d"]),
            Some(6) => self.resume(ws, &v["d"]).await,
            Some(op @ (3 | 4 | 8)) => {
                let session = self.session.as_deref();
                crate::commands::record(&self.shared, session, self.shard, op as u8, &v["d"]);
                Ok(())
            }
            _ => Err(End::ServerClose(4001)),
        }
    }

    fn identify(&mut self, d: &Value) -> Result<(), End> {
        let cfg = &self.shared.config;
        let shard = d.get("shard").and_then(Value::as_array);
        let (id, total) = match shard.map(|a| (a.first(), a.get(1))) {
            Some((Some(id), Some(total))) => (
                id.as_u64().unwrap_or(u64::MAX),
                total.as_u64().unwrap_or(u64::MAX),
            ),
            _ => (0, 1),
        };
        if let Ok(id) = u32::try_from(id) {
            self.shard = Some(id);
        }
        if self.session.is_some() {
            return Err(End::ServerClose(4005));
        }
        let token = d.get("token").and_then(Value::as_str).unwrap_or("");
        if !cfg.token_matches(token) {
            return Err(End::ServerClose(4004));
        }
        if total != u64::from(cfg.shard_total) || id >= total {
            return Err(End::ServerClose(4010));
        }
        let shard = id as u32;
        let session_id = new_session_id();
        let guilds: Vec<u64> = (0..u64::from(cfg.guilds_per_shard))
            .map(|k| synthetic_guild(shard, cfg.shard_total, k))
            .collect();
        let ready = ready_payload(
            &self.shared.gateway_url(),
            &session_id,
            shard,
            cfg.shard_total,
            &guilds,
        );
        {
            let mut st = self.shared.lock();
            self.shared.record_identify(&mut st, shard);
            if let Some(old) = st.current.insert(shard, session_id.clone())
                && let Some(old) = st.sessions.get_mut(&old)
            {
                old.resumable = false;
            }
            st.sessions.insert(
                session_id.clone(),
                Session {
                    id: session_id.clone(),
                    shard,
                    next_seq: 1,
                    log: Default::default(),
                    resumable: true,
                    conn: Some(self.handle.clone()),
                    ready: true,
                },
            );
            self.shared
                .append(&mut st, &session_id, "READY", ready.into(), None);
            if cfg.lazy_load_guilds {
                for (i, g) in guilds.iter().enumerate() {
                    let d = guild_create(*g, 0, 0, 20 + i as u64);
                    self.shared
                        .append(&mut st, &session_id, "GUILD_CREATE", d.into(), Some(*g));
                }
            }
        }
        self.session = Some(session_id.clone());
        self.shared.emit(SimEvent::Identified { shard, session_id });
        Ok(())
    }

    async fn resume(&mut self, ws: &mut WebSocket, d: &Value) -> Result<(), End> {
        let token = d.get("token").and_then(Value::as_str).unwrap_or("");
        let session_id = d
            .get("session_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
        if !self.shared.config.token_matches(token) {
            return Err(End::ServerClose(4004));
        }
        if self.session.is_some() {
            return Err(End::ServerClose(4005));
        }
        let overlap = self.shared.config.replay_overlap;
        let accepted = {
            let mut st = self.shared.lock();
            let shard = st.sessions.get(&session_id).map(|s| s.shard);
            let ok = st.sessions.get(&session_id).is_some_and(|s| {
                let first = s.log.front().map_or(s.next_seq, |f| f.seq);
                s.resumable && seq < s.next_seq && first <= seq + 1
            });
            if let Some(shard) = shard {
                self.shard = Some(shard);
            }
            if ok {
                let s = st.sessions.get_mut(&session_id).expect("checked");
                let from = seq.saturating_sub(overlap) + 1;
                let mut replayed = 0;
                for sent in s.log.iter().filter(|f| f.seq >= from) {
                    self.handle.send(Out::Dispatch(sent.clone()));
                    replayed += 1;
                }
                s.conn = Some(self.handle.clone());
                s.ready = true;
                let shard = s.shard;
                st.resumes.push(ResumeRecord {
                    shard,
                    session_id: session_id.clone(),
                    requested_seq: seq,
                    replayed,
                });
                self.shared
                    .append(&mut st, &session_id, "RESUMED", Arc::from("{}"), None);
                Some((shard, replayed))
            } else {
                None
            }
        };
        match accepted {
            Some((shard, replayed)) => {
                self.session = Some(session_id.clone());
                self.shared.emit(SimEvent::Resumed {
                    shard,
                    session_id,
                    replayed,
                });
                Ok(())
            }
            None => {
                self.shared.emit(SimEvent::ResumeRejected {
                    shard: self.shard,
                    session_id,
                });
                self.write(ws, INVALID_SESSION_FALSE.to_owned()).await
            }
        }
    }

    async fn on_out(
        &mut self,
        ws: &mut WebSocket,
        first: Out,
        rx: &mut mpsc::UnboundedReceiver<Out>,
    ) -> Result<(), End> {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(out) = next.take() {
            let text = match out {
                Out::Dispatch(sent) => {
                    self.handle.pending.fetch_sub(1, Ordering::AcqRel);
                    sent.frame()
                }
                Out::Raw(raw) => raw.to_owned(),
                Out::Text(text) => text,
                Out::Close(code) => {
                    ws.flush().await.map_err(|_| End::Dropped)?;
                    return Err(End::ServerClose(code));
                }
            };
            let msg = self.comp.message(text).map_err(|_| End::Dropped)?;
            ws.feed(msg).await.map_err(|_| End::Dropped)?;
            n += 1;
            if n < BATCH {
                next = rx.try_recv().ok();
            }
        }
        ws.flush().await.map_err(|_| End::Dropped)?;
        self.handle.drained.notify_waiters();
        Ok(())
    }

    async fn finish(self, mut ws: WebSocket, end: End) {
        let (code, end_session) = match end {
            End::Dropped => (None, false),
            End::ClientClose(frame) => {
                let code = frame.as_ref().map(|f| f.code);
                // tungstenite queued the echo when it read the client's close; a send
                // now would fail without writing it, so flush, then let the client
                // drop the connection (bounded). Without the echo, twilight sees a
                // dropped connection and quietly reconnects.
                let _ = ws.flush().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(_)) = ws.recv().await {}
                })
                .await;
                (code, matches!(code, Some(1000 | 1001)))
            }
            End::ServerClose(code) => {
                // Discord ends the session when it decides to close, not when the
                // client answers: a client that reconnects before its close reply
                // has gone out must not resume a session we just ended.
                if code_ends_session(code)
                    && let Some(id) = &self.session
                {
                    self.shared.end_session(id);
                }
                let frame = CloseFrame {
                    code,
                    reason: close_reason(code).into(),
                };
                if ws.send(Message::Close(Some(frame))).await.is_ok() {
                    // Wait (bounded) for the client's close reply.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while let Some(Ok(m)) = ws.recv().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                }
                (Some(code), code_ends_session(code))
            }
        };
        drop(ws);
        let shard = match &self.session {
            Some(id) => self
                .shared
                .detach(id, self.handle.id, end_session)
                .or(self.shard),
            None => self.shard,
        };
        self.handle.pending.store(0, Ordering::Release);
        self.handle.drained.notify_waiters();
        if let Some(shard) = shard {
            self.shared.emit(SimEvent::Disconnected { shard, code });
        } else {
            self.shared.changed.notify_waiters();
        }
    }
}

/// READY `d` for a new session.
pub(crate) fn ready_payload(
    gateway_url: &str,
    session_id: &str,
    shard: u32,
    total: u32,
    guilds: &[u64],
) -> String {
    let guilds: Vec<Value> = guilds
        .iter()
        .map(|g| json!({"id": g.to_string(), "unavailable": true}))
        .collect();
    json!({
        "v": 10,
        "user": {
            "id": "1000000000000000001",
            "username": "shardline-sim",
            "discriminator": "0",
            "global_name": null,
            "avatar": null,
            "bot": true,
            "mfa_enabled": false,
            "verified": true,
            "flags": 0
        },
        "guilds": guilds,
        "session_id": session_id,
        "resume_gateway_url": gateway_url,
        "shard": [shard, total],
        "application": {"id": "1000000000000000001", "flags": 0}
    })
    .to_string()
}
