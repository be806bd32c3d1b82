//! What the interactions tests share: a real nats-server, the simulator (Discord's
//! REST side for edits and follow-ups, and its HTTP interactions client), the real
//! command worker with commands of known duration, and the service as a library or
//! as its binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use shardline_discord_sim::http_interactions::public_key_hex;
use shardline_discord_sim::{
    CallbackRecord, HttpInteraction, HttpInteractions, SimConfig, Simulator, synthetic_guild,
};
use shardline_interactions::Config;
use shardline_proto::payload::Interaction;
use shardline_proto::topology::{COMMAND_WORKER, COMMANDS, ConsumerSpec};
use shardline_testkit::{NatsServer, eventually, init_tracing};
use shardline_worker::commands::{self, CommandError, InteractionHandler, Reply};
use shardline_worker::{Context, Worker};
use tokio_util::sync::CancellationToken;

/// Long enough for anything a healthy stack does; a test failing on it is stuck.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The command consumer with room for every command the big test runs at once
/// (200 interactions a second, a third of them 2 s and a third 4 s long).
pub static WIDE_COMMANDS: ConsumerSpec = ConsumerSpec {
    max_ack_pending: 1000,
    ..COMMAND_WORKER
};

/// A command that answers `"<name> done"` after `Duration`.
pub struct Sleepy(pub Duration);

impl shardline_worker::commands::Command for Sleepy {
    async fn run(&self, interaction: &Interaction, _: &Context) -> Result<Reply, CommandError> {
        tokio::time::sleep(self.0).await;
        let name = match &interaction.data {
            Some(
                twilight_model::application::interaction::InteractionData::ApplicationCommand(data),
            ) => data.name.clone(),
            _ => "?".to_owned(),
        };
        Ok(Reply::Message(format!("{name} done")))
    }
}

/// The commands of the tests: `fast` (10 ms), `slow2` (2 s), `slow4` (4 s), `ping`.
pub fn test_commands() -> commands::Commands {
    commands::reference()
        .command("fast", Sleepy(Duration::from_millis(10)))
        .command("slow2", Sleepy(Duration::from_secs(2)))
        .command("slow4", Sleepy(Duration::from_secs(4)))
}

/// The simulator's application public key (hex).
pub fn public_key() -> String {
    public_key_hex(shardline_discord_sim::http_interactions::DEFAULT_KEY_SEED)
}

/// A guild id for the interactions.
pub fn guild() -> u64 {
    synthetic_guild(0, 1, 0)
}

/// `/name`, ids from `seed`.
pub fn command(name: &str, seed: u64) -> HttpInteraction {
    HttpInteraction::command(name, guild(), seed)
}

/// A nats-server and the simulator's REST side (Discord-like latency).
pub struct Base {
    pub nats: NatsServer,
    pub sim: Simulator,
    pub js: jetstream::Context,
}

impl Base {
    pub async fn start() -> Self {
        init_tracing();
        let nats = NatsServer::start();
        let sim = Simulator::start(SimConfig {
            shard_total: 1,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let js = jetstream::new(nats.client().await);
        Self { nats, sim, js }
    }

    /// Runs the real command worker (library) on `spec` with [`test_commands`] until
    /// `shutdown`.
    pub async fn worker(
        &self,
        spec: &'static ConsumerSpec,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.nats.client().await;
        let js = jetstream::new(client.clone());
        let http =
            commands::DiscordHttp::new(Some(&format!("http://{}", self.sim.http_base())), None);
        let handler = InteractionHandler::new(&js, http, test_commands())
            .await
            .unwrap();
        let worker = Worker::new(spec, commands::handlers(handler));
        tokio::spawn(async move { worker.run(client, shutdown).await.unwrap() })
    }

    /// Waits until `n` workers pull from the command consumer.
    pub async fn pulling(&self, n: usize) {
        eventually("the command worker pulling", PATIENCE, || async {
            let stream = self.js.get_stream_no_info(COMMANDS.name).await.ok()?;
            let info = stream.consumer_info(COMMAND_WORKER.durable).await.ok()?;
            (info.num_waiting >= n).then_some(())
        })
        .await;
    }

    /// The service as a library with `edit` applied to its default configuration.
    pub async fn service(
        &self,
        shutdown: CancellationToken,
        edit: impl FnOnce(&mut Config),
    ) -> shardline_interactions::Running {
        let mut config = Config::new(&public_key(), &self.nats.url());
        edit(&mut config);
        shardline_interactions::start(config, shutdown)
            .await
            .unwrap()
    }

    /// Messages ever stored in COMMANDS (its last sequence: a work queue deletes
    /// what was acknowledged).
    pub async fn stored(&self) -> u64 {
        let mut stream = self.js.get_stream(COMMANDS.name).await.unwrap();
        stream.info().await.unwrap().state.last_sequence
    }

    /// Edits and follow-ups received, by interaction token.
    pub fn completions(&self) -> HashMap<String, Vec<CallbackRecord>> {
        let mut by_token: HashMap<String, Vec<CallbackRecord>> = HashMap::new();
        for record in self.sim.interaction_callbacks() {
            by_token
                .entry(record.token.clone())
                .or_default()
                .push(record);
        }
        by_token
    }
}

/// The HTTP interactions client for a service at `addr`.
pub fn discord(addr: SocketAddr) -> HttpInteractions {
    HttpInteractions::new(&format!("http://{addr}/interactions"))
}

/// A free loopback port (for a binary that must be told its address).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `shardline-interactions` as a process, configured through its environment.
pub struct ServiceProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
}

impl ServiceProcess {
    pub fn start(nats: &NatsServer, key_file: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let (addr, metrics) = (free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_shardline-interactions"))
            .env("NATS_URL", nats.url())
            .env("DISCORD_PUBLIC_KEY_FILE", key_file)
            .env("LISTEN_ADDR", addr.to_string())
            .env("METRICS_ADDR", metrics.to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start shardline-interactions");
        Self {
            child,
            addr,
            metrics,
        }
    }

    /// Waits until `/readyz` answers 200 (NATS connected).
    pub async fn ready(&self) {
        let addr = self.addr;
        eventually("the service ready", PATIENCE, || async move {
            (get(addr, "/readyz").await?.0 == 200).then_some(())
        })
        .await;
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `addr`: status and body, `None` if nothing answers.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

/// The value of the series `name{label="value"}` in a Prometheus text page.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
