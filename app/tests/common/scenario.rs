//! The end-to-end scenario: guilds with eligibility rules, members joining,
//! moderators changing a base role, members leaving and rejoining, and `/verify`,
//! played through the simulator's gateway; and what the rules then say every
//! member must hold, to compare with the simulator and the database.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardline_app::Db;
use shardline_app::rules::{Condition, DISCORD_EPOCH_MS, Rule, add_rule};
use shardline_discord_sim::{Pacer, Simulator};
use shardline_testkit::eventually;

use super::PATIENCE;

/// Days in the account-age rule.
pub const VETERAN_DAYS: u32 = 365;

/// One guild of the scenario and its roles.
#[derive(Clone, Copy, Debug)]
pub struct Guild {
    /// Its id.
    pub id: u64,
    /// The shard it is on.
    pub shard: u32,
    /// A role moderators give (not managed by the rules).
    pub base: u64,
    /// Granted to accounts older than [`VETERAN_DAYS`].
    pub veteran: u64,
    /// Granted to members who ran `/verify`.
    pub verified: u64,
    /// Granted to members holding `base`.
    pub perk: u64,
}

impl Guild {
    /// The guild's rules.
    pub fn rules(&self) -> [Rule; 3] {
        [
            Rule {
                role: self.veteran,
                condition: Condition::AccountAge { days: VETERAN_DAYS },
            },
            Rule {
                role: self.verified,
                condition: Condition::Verified,
            },
            Rule {
                role: self.perk,
                condition: Condition::HoldsRole(self.base),
            },
        ]
    }

    /// The roles the rules manage.
    pub fn managed(&self) -> BTreeSet<u64> {
        BTreeSet::from([self.veteran, self.verified, self.perk])
    }
}

/// The `index`-th member's user id in guild number `g`: an old account (two years)
/// for even indexes, a young one (twenty days) for odd ones.
pub fn user(g: usize, index: usize) -> u64 {
    static START: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    let now = *START.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap());
    let days = if index.is_multiple_of(2) { 730 } else { 20 };
    let created = now - Duration::from_secs(days * 86_400);
    let ms = created.as_millis() as u64 - DISCORD_EPOCH_MS - index as u64;
    (ms << 22) | ((g as u64) << 12) | (index as u64 & 0xfff)
}

/// What happens to the `index`-th member of a guild.
#[derive(Clone, Copy, Debug)]
pub struct Fate {
    pub joins_with_base: bool,
    pub given_base: bool,
    pub loses_base: bool,
    pub renamed: bool,
    pub leaves: bool,
    pub rejoins: bool,
    pub verifies: bool,
}

impl Fate {
    pub fn of(index: usize) -> Self {
        let leaves = index.is_multiple_of(9);
        let rejoins = index.is_multiple_of(27);
        Self {
            joins_with_base: index.is_multiple_of(5),
            given_base: index.is_multiple_of(7),
            loses_base: index.is_multiple_of(10),
            renamed: index.is_multiple_of(11),
            leaves,
            rejoins,
            verifies: index % 13 == 1 && (!leaves || rejoins),
        }
    }

    /// In the guild at the end.
    pub fn present(&self) -> bool {
        !self.leaves || self.rejoins
    }

    /// Holds the base role at the end (a rejoin starts without roles).
    pub fn has_base(&self) -> bool {
        !self.rejoins && (self.joins_with_base || self.given_base) && !self.loses_base
    }
}

/// What a present member must hold at the end, and the managed part of it.
pub fn expected_roles(guild: &Guild, g: usize, index: usize) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let fate = Fate::of(index);
    let mut managed = BTreeSet::new();
    if index.is_multiple_of(2) {
        managed.insert(guild.veteran);
    }
    if fate.verifies {
        managed.insert(guild.verified);
    }
    let mut all = managed.clone();
    if fate.has_base() {
        all.insert(guild.base);
        managed.insert(guild.perk);
        all.insert(guild.perk);
    }
    let _ = g;
    (all, managed)
}

/// Two guilds, one per shard.
pub fn guilds(sim: &Simulator) -> Vec<Guild> {
    (0..2u32)
        .map(|shard| {
            let id = sim.guild_for_shard(shard, 0);
            Guild {
                id,
                shard,
                base: id + 1,
                veteran: id + 2,
                verified: id + 3,
                perk: id + 4,
            }
        })
        .collect()
}

/// Adds the guilds (their GUILD_CREATE through the gateway) and, once the event
/// worker recorded their roles, their rules.
pub async fn set_up(sim: &Simulator, db: &Db, guilds: &[Guild]) {
    for guild in guilds {
        let roles = [guild.base, guild.veteran, guild.verified, guild.perk];
        sim.add_guild(guild.id, &roles, &[]).await;
    }
    for guild in guilds {
        eventually("the guild's roles recorded", PATIENCE, || async {
            let client = db.client().await.ok()?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM guild_roles WHERE guild_id = $1",
                    &[&(guild.id as i64)],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 5).then_some(())
        })
        .await;
        for rule in guild.rules() {
            add_rule(db, guild.id, rule).await.unwrap();
        }
    }
}

/// An INTERACTION_CREATE for `/verify` by `user` (holding `roles`) in `guild`.
pub fn verify_interaction(guild: u64, user: u64, roles: &[u64], seed: u64) -> String {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut d: serde_json::Value = serde_json::from_str(
        &shardline_discord_sim::fixtures::interaction_create(guild, &mut rng),
    )
    .unwrap();
    d["data"]["name"] = "verify".into();
    d["member"]["user"]["id"] = user.to_string().into();
    d["member"]["roles"] = roles
        .iter()
        .map(|r| serde_json::Value::from(r.to_string()))
        .collect();
    d.to_string()
}

/// Plays every member's fate in every guild at `rate` dispatches a second, phase by
/// phase (joins, moderator changes, leaves, rejoins, `/verify`), guilds interleaved.
/// Returns how many dispatches it played.
pub async fn play(sim: &Simulator, guilds: &[Guild], members: usize, rate: u32) -> usize {
    let mut pacer = Pacer::new(Some(rate));
    let mut played = 0;
    for phase in 0..5 {
        for index in 0..members {
            for (g, guild) in guilds.iter().enumerate() {
                let fate = Fate::of(index);
                let user = user(g, index);
                let done = match phase {
                    0 => {
                        let roles: &[u64] = if fate.joins_with_base {
                            &[guild.base]
                        } else {
                            &[]
                        };
                        pacer.tick().await;
                        sim.member_join(guild.id, user, roles).await;
                        true
                    }
                    1 if fate.given_base || fate.loses_base || fate.renamed => {
                        let add: &[u64] = if fate.given_base { &[guild.base] } else { &[] };
                        let remove: &[u64] = if fate.loses_base { &[guild.base] } else { &[] };
                        pacer.tick().await;
                        sim.member_update(guild.id, user, add, remove)
                            .await
                            .is_some()
                    }
                    2 if fate.leaves => {
                        pacer.tick().await;
                        sim.member_leave(guild.id, user).await.is_some()
                    }
                    3 if fate.rejoins => {
                        pacer.tick().await;
                        sim.member_join(guild.id, user, &[]).await;
                        true
                    }
                    4 if fate.verifies => {
                        let roles = sim.member_roles(guild.id, user).unwrap_or_default();
                        let d = verify_interaction(guild.id, user, &roles, user);
                        pacer.tick().await;
                        sim.dispatch(guild.shard, "INTERACTION_CREATE", &d).await;
                        true
                    }
                    _ => false,
                };
                played += usize::from(done);
            }
        }
    }
    played
}

/// Every difference between what the simulator's members hold and what the rules
/// say, one line each (empty when they agree).
pub fn role_differences(sim: &Simulator, guilds: &[Guild], members: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for (g, guild) in guilds.iter().enumerate() {
        let held = sim.members(guild.id);
        let mut want: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for index in 0..members {
            if Fate::of(index).present() {
                let (all, _) = expected_roles(guild, g, index);
                want.insert(user(g, index), all.into_iter().collect());
            }
        }
        if held.len() != want.len() {
            problems.push(format!(
                "guild {}: {} members, want {}",
                guild.id,
                held.len(),
                want.len()
            ));
        }
        for (user, roles) in &want {
            if held.get(user) != Some(roles) {
                problems.push(format!(
                    "guild {} user {user}: holds {:?}, want {roles:?}",
                    guild.id,
                    held.get(user)
                ));
            }
        }
    }
    problems
}

/// Every difference between the database and what happened, one line each.
pub async fn record_differences(
    db: &Db,
    sim: &Simulator,
    guilds: &[Guild],
    members: usize,
) -> Vec<String> {
    let client = db.client().await.unwrap();
    let mut problems = Vec::new();
    for (g, guild) in guilds.iter().enumerate() {
        let row = client
            .query_one(
                "SELECT name, active, available FROM guilds WHERE guild_id = $1",
                &[&(guild.id as i64)],
            )
            .await
            .unwrap();
        let (name, active, available): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        if name != format!("Guild {}", guild.id) || !active || !available {
            problems.push(format!(
                "guild {}: {name:?} active {active} available {available}",
                guild.id
            ));
        }
        let rows = client
            .query(
                "SELECT user_id, present, roles, verified, desired_roles, applied_roles \
                 FROM members WHERE guild_id = $1",
                &[&(guild.id as i64)],
            )
            .await
            .unwrap();
        if rows.len() != members {
            problems.push(format!(
                "guild {}: {} member records, want {members}",
                guild.id,
                rows.len()
            ));
        }
        let by_user: BTreeMap<u64, &tokio_postgres::Row> = rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r))
            .collect();
        for index in 0..members {
            let user = user(g, index);
            let fate = Fate::of(index);
            let Some(row) = by_user.get(&user) else {
                problems.push(format!("guild {} user {user}: no record", guild.id));
                continue;
            };
            let ids = |col: usize| -> Option<Vec<u64>> {
                row.get::<_, Option<Vec<i64>>>(col)
                    .map(|v| v.into_iter().map(|r| r as u64).collect())
            };
            let present: bool = row.get(1);
            let verified: bool = row.get(3);
            let roles = ids(2).unwrap_or_default();
            if present != fate.present() {
                problems.push(format!("guild {} user {user}: present {present}", guild.id));
            }
            if !fate.present() {
                if !roles.is_empty() {
                    problems.push(format!(
                        "guild {} user {user}: left holding {roles:?}",
                        guild.id
                    ));
                }
                continue;
            }
            let (_, managed) = expected_roles(guild, g, index);
            let managed: Vec<u64> = managed.into_iter().collect();
            let held = sim.member_roles(guild.id, user).unwrap_or_default();
            // Never synced (nothing to change since joining): what Discord reports is
            // what the bot goes by.
            let managed_set = guild.managed();
            let applied = ids(5).unwrap_or_else(|| {
                roles
                    .iter()
                    .copied()
                    .filter(|r| managed_set.contains(r))
                    .collect()
            });
            let checks = [
                (
                    "roles (as Discord reports)",
                    Some(roles.clone()),
                    Some(held),
                ),
                ("desired", ids(4), Some(managed.clone())),
                ("applied", Some(applied), Some(managed)),
            ];
            for (what, got, want) in checks {
                if got != want {
                    problems.push(format!(
                        "guild {} user {user}: {what} {got:?}, want {want:?}",
                        guild.id
                    ));
                }
            }
            if verified != fate.verifies {
                problems.push(format!(
                    "guild {} user {user}: verified {verified}",
                    guild.id
                ));
            }
        }
    }
    problems
}
