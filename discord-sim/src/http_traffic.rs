//! HTTP interactions traffic: the interactions Discord sends, a paced plan with
//! invalid probes mixed in for tests, and the simulator binary's endless stream of
//! `/ping` interactions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use crate::http_interactions::{HttpInteractions, HttpRecord, Signing, Verdict};
use crate::traffic::Pacer;

/// One interaction to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpInteraction {
    /// Its id.
    pub id: String,
    /// Its token (edits and follow-ups name it).
    pub token: String,
    /// Its type (1 PING, 2 command, 3 component, 4 autocomplete, 5 modal submit).
    pub kind: u8,
    /// The JSON body.
    pub body: String,
}

impl HttpInteraction {
    /// An application command `/name` in `guild`, ids and token drawn from `seed`.
    pub fn command(name: &str, guild: u64, seed: u64) -> Self {
        Self::build(2, guild, seed, |d| d["data"]["name"] = name.into())
    }

    /// An autocomplete request for `/name`.
    pub fn autocomplete(name: &str, guild: u64, seed: u64) -> Self {
        Self::build(4, guild, seed, |d| {
            d["data"]["name"] = name.into();
            d["data"]["options"] =
                serde_json::json!([{"name": "q", "type": 3, "value": "a", "focused": true}]);
        })
    }

    /// A button press with `custom_id`.
    pub fn component(custom_id: &str, guild: u64, seed: u64) -> Self {
        Self::build(3, guild, seed, |d| {
            d["data"] = serde_json::json!({"custom_id": custom_id, "component_type": 2});
        })
    }

    /// A PING, as Discord sends to check an endpoint.
    pub fn ping(seed: u64) -> Self {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let id = rng.random_range(1u64 << 60..1 << 62).to_string();
        let body = serde_json::json!({"id": id, "type": 1, "application_id": "1000000000000000001",
            "token": "ping", "version": 1})
        .to_string();
        Self {
            id,
            token: "ping".to_owned(),
            kind: 1,
            body,
        }
    }

    fn build(kind: u8, guild: u64, seed: u64, edit: impl FnOnce(&mut Value)) -> Self {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let mut d: Value =
            serde_json::from_str(&crate::fixtures::interaction_create(guild, &mut rng))
                .expect("the fixture is JSON");
        d["type"] = kind.into();
        edit(&mut d);
        Self {
            id: d["id"].as_str().unwrap_or_default().to_owned(),
            token: d["token"].as_str().unwrap_or_default().to_owned(),
            kind,
            body: d.to_string(),
        }
    }
}

/// Traffic for [`HttpInteractions::play`].
#[derive(Clone, Debug, Default)]
pub struct HttpPlan {
    /// Sent in order.
    pub interactions: Vec<HttpInteraction>,
    /// Requests per second (`None`: as fast as they go out).
    pub rate_per_second: Option<u32>,
    /// After every this many interactions, one more request with an invalid
    /// signature (a fresh interaction, each kind of [`Signing::INVALID`] in turn).
    pub invalid_every: Option<usize>,
}

impl HttpInteractions {
    /// Sends the plan's interactions (each on its own task, at the plan's rate, with
    /// invalid probes mixed in) and returns their records once every one is answered
    /// or given up on.
    pub async fn play(&self, plan: HttpPlan) -> Vec<HttpRecord> {
        let mut pacer = Pacer::new(plan.rate_per_second);
        let mut tasks = Vec::with_capacity(plan.interactions.len());
        for (i, interaction) in plan.interactions.into_iter().enumerate() {
            pacer.tick().await;
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                this.send(&interaction, Signing::Valid).await
            }));
            if plan
                .invalid_every
                .is_some_and(|k| k > 0 && (i + 1) % k == 0)
            {
                let this = self.clone();
                tasks.push(tokio::spawn(async move { this.probe().await }));
            }
        }
        let mut records = Vec::with_capacity(tasks.len());
        for task in tasks {
            records.push(task.await.expect("a request task never panics"));
        }
        records
    }

    /// One request with an invalid signature (the next kind in turn) for a fresh
    /// command interaction.
    pub async fn probe(&self) -> HttpRecord {
        let n = self.next_probe();
        let signing = Signing::INVALID[(n % Signing::INVALID.len() as u64) as usize];
        let guild = crate::config::synthetic_guild(0, 1, 0);
        let interaction = HttpInteraction::command("ping", guild, 0x5eed_0000 + n);
        self.send(&interaction, signing).await
    }
}

/// The simulator binary's HTTP interactions settings.
#[derive(Clone, Debug, clap::Args)]
pub struct HttpTrafficArgs {
    /// Interactions Endpoint URL to send HTTP interactions to
    /// (`http://host:port/interactions`). Default: none sent.
    #[arg(long, env = "SIM_INTERACTIONS_URL")]
    pub interactions_url: Option<String>,
    /// HTTP interactions (`/ping`) per second.
    #[arg(long, env = "SIM_INTERACTIONS_RATE", default_value_t = 20)]
    pub interactions_rate: u32,
    /// After every this many, one request with an invalid signature (0: none).
    #[arg(long, env = "SIM_INTERACTIONS_INVALID_EVERY", default_value_t = 50)]
    pub interactions_invalid_every: u64,
    /// Print the public key the simulator signs interactions with (hex) and exit.
    #[arg(long)]
    pub print_interactions_public_key: bool,
}

/// Sends `/ping` interactions to `args.interactions_url` for ever, at the rate, with
/// a probe after every `interactions_invalid_every`; logs what failed in Discord's
/// reading, and a summary every 10 s.
pub async fn play_forever(args: HttpTrafficArgs) {
    let Some(url) = args.interactions_url else {
        return;
    };
    // A process that runs for days keeps counts, not records.
    let discord = HttpInteractions::new(&url).unrecorded();
    let counts = std::sync::Arc::new(Counts::default());
    let guild = crate::config::synthetic_guild(0, 1, 0);
    let mut pacer = Pacer::new(Some(args.interactions_rate.max(1)));
    let mut report = tokio::time::interval(Duration::from_secs(10));
    report.tick().await;
    for n in 0u64.. {
        tokio::select! {
            biased;
            _ = report.tick() => counts.log(),
            () = pacer.tick() => {}
        }
        let (discord, counts) = (discord.clone(), counts.clone());
        let every = args.interactions_invalid_every;
        tokio::spawn(async move {
            let interaction = HttpInteraction::command("ping", guild, rand::random());
            counts.add(discord.send(&interaction, Signing::Valid).await);
            if every > 0 && (n + 1) % every == 0 {
                counts.add(discord.probe().await);
            }
        });
    }
}

#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn add(&self, record: HttpRecord) {
        let counter = match &record.verdict {
            Verdict::Answered => &self.answered,
            Verdict::Refused => &self.refused,
            Verdict::Failed(why) => {
                tracing::warn!(
                    interaction = record.interaction_id,
                    why,
                    "HTTP interaction failed"
                );
                &self.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn log(&self) {
        tracing::info!(
            answered = self.answered.load(Ordering::Relaxed),
            refused = self.refused.load(Ordering::Relaxed),
            failed = self.failed.load(Ordering::Relaxed),
            "HTTP interactions so far"
        );
    }
}
