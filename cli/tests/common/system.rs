//! A running Shardline to point `status` at: the Discord simulator, a real gateway
//! (twilight-gateway, in this process) and optionally the event worker, on a
//! single nats-server or the 3-node cluster.

use shardline_discord_sim::{SimConfig, Simulator};
use shardline_gateway::Config;
use shardline_jetstream::NatsAuth;
use shardline_proto::topology::{CONSUMERS, EVENT_WORKER};
use shardline_worker::{Context, Handler, Handlers, Outcome, Worker};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Two shards, every one identifying at once.
pub const SHARDS: u32 = 2;

/// A gateway and its simulator.
pub struct System {
    pub sim: Simulator,
    gateway: Option<(
        CancellationToken,
        JoinHandle<Result<(), shardline_gateway::Error>>,
    )>,
    worker: Option<(
        CancellationToken,
        JoinHandle<Result<(), shardline_worker::Error>>,
    )>,
    nats_url: String,
    auth: NatsAuth,
}

/// Accepts every event.
pub struct Accept;

impl Handler for Accept {
    type Payload = serde_json::Value;

    async fn handle(&self, _: serde_json::Value, _: &Context) -> Outcome {
        Outcome::Success
    }
}

impl System {
    /// Starts the simulator and a gateway on `nats_url` as `auth` with `replicas`,
    /// declares every consumer (as the operator's `topology apply` would) and waits
    /// for both shards to be READY.
    pub async fn start(
        nats_url: &str,
        auth: NatsAuth,
        replicas: usize,
        operator: async_nats::Client,
    ) -> Self {
        let sim = Simulator::start(SimConfig {
            shard_total: SHARDS,
            max_concurrency: 16,
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let mut config =
            Config::for_gateway(&sim.config().token, &sim.gateway_url(), SHARDS, nats_url);
        config.max_concurrency = Some(16);
        config.nats_auth = auth.clone();
        config.stream_replicas = replicas;
        let stop = CancellationToken::new();
        let gateway = tokio::spawn(shardline_gateway::run(config, stop.clone()));
        for shard in 0..SHARDS {
            sim.wait_ready(shard).await;
        }
        let js = async_nats::jetstream::new(operator);
        shardline_testkit::eventually(
            "the gateway's streams",
            std::time::Duration::from_secs(60),
            || {
                let js = js.clone();
                async move { js.get_stream("DEAD_LETTER").await.ok().map(|_| ()) }
            },
        )
        .await;
        for consumer in &CONSUMERS {
            shardline_jetstream::reconcile_consumer(&js, consumer)
                .await
                .expect("consumer");
        }
        Self {
            sim,
            gateway: Some((stop, gateway)),
            worker: None,
            nats_url: nats_url.to_owned(),
            auth,
        }
    }

    /// Starts the event worker (every event accepted).
    pub async fn start_worker(&mut self) {
        let client = shardline_jetstream::connect(&shardline_jetstream::ConnectOptions {
            url: self.nats_url.clone(),
            name: "test-event-worker".to_owned(),
            auth: NatsAuth::default(),
        })
        .await
        .expect("worker connects");
        let stop = CancellationToken::new();
        let handlers = Handlers::new().on("events.>", Accept);
        let worker = tokio::spawn(Worker::new(&EVENT_WORKER, handlers).run(client, stop.clone()));
        self.worker = Some((stop, worker));
    }

    /// Stops the event worker.
    pub async fn stop_worker(&mut self) {
        if let Some((stop, worker)) = self.worker.take() {
            stop.cancel();
            worker.await.expect("worker task").expect("worker ran");
        }
    }

    /// Stops the gateway cleanly (sessions stored).
    pub async fn stop_gateway(&mut self) {
        if let Some((stop, gateway)) = self.gateway.take() {
            stop.cancel();
            gateway.await.expect("gateway task").expect("gateway ran");
        }
    }

    /// Sends `n` MESSAGE_CREATE on every shard.
    pub async fn traffic(&self, n: u32) {
        for i in 0..n {
            for shard in 0..SHARDS {
                let guild = self.sim.guilds(shard)[0];
                self.sim
                    .dispatch(
                        shard,
                        "MESSAGE_CREATE",
                        &format!(r#"{{"guild_id":"{guild}","content":"m{i}"}}"#),
                    )
                    .await;
            }
        }
    }

    /// The credentials the gateway uses (for a test that wants to know).
    pub fn auth(&self) -> &NatsAuth {
        &self.auth
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for stop in [
            self.gateway.as_ref().map(|g| &g.0),
            self.worker.as_ref().map(|w| &w.0),
        ]
        .into_iter()
        .flatten()
        {
            stop.cancel();
        }
    }
}
