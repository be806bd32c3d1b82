//! The [`Simulator`] handle: start/stop, control API, dispatching and records.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::compress::TransportCompression;
use crate::config::{SimConfig, synthetic_guild};
use crate::connection::{INVALID_SESSION_FALSE, INVALID_SESSION_TRUE, RECONNECT};
use crate::fixtures::sample;
use crate::state::{CallbackRecord, IdentifyRecord, Out, ResumeRecord, Sent, Shared, SimEvent};
use crate::traffic::{Pacer, TrafficPlan};

/// A live connection more than this many dispatches behind makes [`Simulator::dispatch`] wait.
pub const BACKPRESSURE_FRAMES: usize = 4096;

/// A running simulated Discord (gateway + REST on one port).
///
/// Cheap to clone. Dropping the last handle, or [`shutdown`](Self::shutdown), stops the
/// server and closes every connection with 1001.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[derive(Deserialize)]
struct GuildRef {
    guild_id: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
}

fn guild_of(event: &str, d: &str) -> Option<u64> {
    let r: GuildRef = serde_json::from_str(d).ok()?;
    let v = if event.starts_with("GUILD_") && r.guild_id.is_none() {
        r.id?
    } else {
        r.guild_id?
    };
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1:config.port`.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let addr = SocketAddr::from(([127, 0, 0, 1], config.port));
        Self::bind(addr, config).await
    }

    /// Starts a simulator on `addr` (`config.port` is ignored).
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, addr));
        let cancel = CancellationToken::new();
        let app = crate::rest::router(shared.clone(), cancel.clone());
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "simulator server ended");
            }
        });
        tracing::debug!(%addr, "discord simulator listening");
        Ok(Simulator {
            inner: Arc::new(Inner {
                shared,
                cancel,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The configuration in force.
    pub fn config(&self) -> &SimConfig {
        &self.shared().config
    }

    /// Bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    /// `ws://127.0.0.1:PORT` (no trailing slash), for `ConfigBuilder::proxy_url`.
    pub fn gateway_url(&self) -> String {
        self.shared().gateway_url()
    }

    /// `127.0.0.1:PORT`, for twilight-http's `proxy(.., true)`.
    pub fn http_base(&self) -> String {
        self.addr().to_string()
    }

    /// Guild ids listed in `shard`'s READY.
    pub fn guilds(&self, shard: u32) -> Vec<u64> {
        let c = self.config();
        (0..u64::from(c.guilds_per_shard))
            .map(|k| synthetic_guild(shard, c.shard_total, k))
            .collect()
    }

    /// The `n`-th (0-based) synthetic guild id that maps to `shard` and is not in READY.
    pub fn guild_for_shard(&self, shard: u32, n: u64) -> u64 {
        let c = self.config();
        synthetic_guild(shard, c.shard_total, u64::from(c.guilds_per_shard) + n)
    }

    /// Resolves once `shard`'s current session is connected and has been sent READY or
    /// RESUMED.
    pub async fn wait_ready(&self, shard: u32) {
        loop {
            let notified = self.shared().changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared().is_ready(shard) {
                return;
            }
            notified.await;
        }
    }

    /// Shards whose current session is connected and ready, ascending.
    pub fn ready_shards(&self) -> Vec<u32> {
        self.shared().ready_shards()
    }

    /// Logs a dispatch on `shard`'s current session and sends it if connected (else it is
    /// replayed on RESUME). `d` goes on the wire byte-for-byte. `guild_id` of the record is
    /// read from `d` (`guild_id`, or `id` for GUILD_* events).
    ///
    /// Waits while the live connection is more than [`BACKPRESSURE_FRAMES`] behind.
    ///
    /// # Panics
    ///
    /// If the shard never had a session.
    pub async fn dispatch(&self, shard: u32, event: &str, d: &str) -> Sent {
        let guild = guild_of(event, d);
        self.dispatch_with(shard, event, Arc::from(d), guild).await
    }

    /// [`dispatch`](Self::dispatch) with an already shared payload and a known guild.
    ///
    /// # Panics
    ///
    /// If the shard never had a session.
    pub async fn dispatch_with(
        &self,
        shard: u32,
        event: &str,
        d: Arc<str>,
        guild_id: Option<u64>,
    ) -> Sent {
        while let Some(conn) = self.shared().live_conn(shard) {
            let notified = conn.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if conn.pending.load(Ordering::Acquire) <= BACKPRESSURE_FRAMES {
                break;
            }
            notified.await;
        }
        let shared = self.shared();
        let mut st = shared.lock();
        let session = st
            .current
            .get(&shard)
            .cloned()
            .unwrap_or_else(|| panic!("shard {shard} never had a session"));
        shared.append(&mut st, &session, event, d, guild_id)
    }

    /// Sends op 7 RECONNECT on `shard`'s live connection (the session stays resumable).
    pub fn send_reconnect(&self, shard: u32) {
        if let Some(conn) = self.shared().live_conn(shard) {
            conn.send(Out::Raw(RECONNECT));
        }
    }

    /// Sends op 9 INVALID_SESSION with `d = resumable`; `false` ends the session.
    pub fn invalidate_session(&self, shard: u32, resumable: bool) {
        let conn = {
            let mut st = self.shared().lock();
            let Some(id) = st.current.get(&shard).cloned() else {
                return;
            };
            let Some(session) = st.sessions.get_mut(&id) else {
                return;
            };
            if !resumable {
                session.resumable = false;
            }
            session.conn.clone()
        };
        if let Some(conn) = conn {
            conn.send(Out::Raw(if resumable {
                INVALID_SESSION_TRUE
            } else {
                INVALID_SESSION_FALSE
            }));
        }
    }

    /// Closes `shard`'s live connection with `code` (after the dispatches queued before).
    /// 4004, 4007, 4009 and 4010-4014 end the session; other codes keep it resumable.
    pub fn close(&self, shard: u32, code: u16) {
        if let Some(conn) = self.shared().live_conn(shard) {
            conn.send(Out::Close(code));
        }
    }

    /// Every dispatch ever logged (READY, lazy GUILD_CREATEs and RESUMED included), in order.
    /// Empty when [`SimConfig::record_sent`] is off.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared().lock().sent.clone()
    }

    /// Number of dispatches logged so far (counted even without `record_sent`).
    pub fn sent_count(&self) -> u64 {
        self.shared().lock().sent_count
    }

    /// Every accepted IDENTIFY.
    pub fn identifies(&self) -> Vec<IdentifyRecord> {
        self.shared().lock().identifies.clone()
    }

    /// IDENTIFYs that came less than 5 s after another one of the same bucket
    /// (`shard_id % max_concurrency`), i.e. Discord's identify rate limit broken.
    pub fn identify_rate_violations(&self) -> usize {
        self.shared().lock().identify_violations
    }

    /// The transport compression each WebSocket connection asked for, in order.
    pub fn connection_compressions(&self) -> Vec<TransportCompression> {
        self.shared().lock().compressions.clone()
    }

    /// Every RESUME accepted, in order.
    pub fn resumes(&self) -> Vec<ResumeRecord> {
        self.shared().lock().resumes.clone()
    }

    /// Subscribes to gateway events from now on.
    pub fn events(&self) -> broadcast::Receiver<SimEvent> {
        self.shared().events.subscribe()
    }

    /// Interaction callbacks and webhook requests received by the REST side.
    pub fn interaction_callbacks(&self) -> Vec<CallbackRecord> {
        self.shared().lock().callbacks.clone()
    }

    /// The most REST requests the simulator was answering at once since the last call
    /// (a client that sends one request at a time shows 1); resets the count.
    pub fn take_rest_concurrency(&self) -> usize {
        use std::sync::atomic::Ordering;
        let shared = self.shared();
        let now = shared.rest_in_flight.load(Ordering::Relaxed);
        shared.rest_in_flight_max.swap(now, Ordering::Relaxed)
    }

    /// Plays generated traffic and returns what was dispatched, in order. Shards are
    /// interleaved round-robin; every guild event uses one of the shard's READY guilds.
    ///
    /// # Panics
    ///
    /// If a shard of the plan never had a session.
    pub async fn play(&self, plan: TrafficPlan) -> Vec<Sent> {
        let mut rng = StdRng::seed_from_u64(plan.seed);
        let mut pacer = Pacer::new(plan.rate_per_second);
        let guilds: HashMap<u32, Vec<u64>> = plan
            .shards
            .iter()
            .map(|&s| {
                let mut g = self.guilds(s);
                if g.is_empty() {
                    g.push(self.guild_for_shard(s, 0));
                }
                (s, g)
            })
            .collect();
        let mut out = Vec::with_capacity(plan.events_per_shard * plan.shards.len());
        for _ in 0..plan.events_per_shard {
            for &shard in &plan.shards {
                pacer.tick().await;
                let event = plan.mix.pick(&mut rng).to_owned();
                let gs = &guilds[&shard];
                let guild = gs[rng.random_range(0..gs.len())];
                let d = sample(&event, guild, &mut rng);
                out.push(
                    self.dispatch_with(shard, &event, d.into(), Some(guild))
                        .await,
                );
            }
        }
        out
    }

    /// Stops the server: connections are closed with 1001 and the listener is released.
    pub async fn shutdown(self) {
        self.inner.cancel.cancel();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}
