//! Guilds the simulator keeps members for: their roles, the members and the roles
//! each holds, as Discord would. A test adds a guild ([`Simulator::add_guild`]) and
//! plays member joins, updates and leaves through the gateway; the REST side's
//! member-role endpoints change the same records and, as Discord does, dispatch a
//! `GUILD_MEMBER_UPDATE` with the member's new roles. A test then compares the
//! final roles ([`Simulator::members`]) with what it expects.
//!
//! A change and its dispatch happen under one lock, so the dispatches of a member
//! are in the order its roles changed, whoever changed them (the test or a bot's
//! REST call).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::SeedableRng;
use serde_json::json;

use crate::config::shard_for_guild;
use crate::state::{Sent, Shared, State};
use crate::{Simulator, fixtures};

/// A guild whose members the simulator keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimGuild {
    /// Its roles (the `@everyone` role, whose id is the guild's, included).
    pub roles: BTreeSet<u64>,
    /// Roles above the bot's highest role: changing them answers 403.
    pub unmanageable: BTreeSet<u64>,
    /// Members and the roles each holds.
    pub members: BTreeMap<u64, BTreeSet<u64>>,
}

/// How the member-role endpoint answers a change of `role` on `user` in `guild`.
pub(crate) enum RoleAnswer {
    /// 204: done (or nothing to do); a dispatch if the roles changed.
    Done,
    /// 404 with Discord's code and message.
    NotFound(u32, &'static str),
    /// 403 Missing Permissions.
    Forbidden,
    /// The guild was never added: not modelled, every change is accepted.
    Unmodelled,
}

/// `d` of a member dispatch: the member object with its roles and the guild id.
pub(crate) fn member_payload(guild: u64, user: u64, roles: &BTreeSet<u64>) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(user);
    let mut member = fixtures::member(user, &mut rng);
    member["roles"] = json!(roles.iter().map(u64::to_string).collect::<Vec<_>>());
    member["guild_id"] = json!(guild.to_string());
    member.to_string()
}

/// Applies a REST role change to the records, dispatching the member's update.
pub(crate) fn change_role(
    shared: &Shared,
    st: &mut State,
    guild: u64,
    user: u64,
    role: u64,
    add: bool,
) -> RoleAnswer {
    let Some(g) = st.guilds.get_mut(&guild) else {
        return RoleAnswer::Unmodelled;
    };
    let Some(roles) = g.members.get_mut(&user) else {
        return RoleAnswer::NotFound(10007, "Unknown Member");
    };
    if !g.roles.contains(&role) {
        return RoleAnswer::NotFound(10011, "Unknown Role");
    }
    if g.unmanageable.contains(&role) || role == guild {
        return RoleAnswer::Forbidden;
    }
    let changed = if add {
        roles.insert(role)
    } else {
        roles.remove(&role)
    };
    if changed {
        let d = member_payload(guild, user, roles);
        append_to_guild(shared, st, guild, "GUILD_MEMBER_UPDATE", d);
    }
    RoleAnswer::Done
}

/// Appends a dispatch to the current session of the guild's shard, if it has one
/// (else, like Discord, the shard never hears of it).
fn append_to_guild(
    shared: &Shared,
    st: &mut State,
    guild: u64,
    event: &str,
    d: String,
) -> Option<Sent> {
    let shard = shard_for_guild(guild, shared.config.shard_total);
    let session = st.current.get(&shard)?.clone();
    Some(shared.append(st, &session, event, Arc::from(d), Some(guild)))
}

impl Simulator {
    /// Waits while `shard`'s live connection is too far behind, as
    /// [`dispatch`](Self::dispatch) does.
    async fn backpressure(&self, shard: u32) {
        while let Some(conn) = self.shared().live_conn(shard) {
            let notified = conn.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if conn.pending.load(Ordering::Acquire) <= crate::BACKPRESSURE_FRAMES {
                break;
            }
            notified.await;
        }
    }

    /// Changes the records of `guild` with `change` and dispatches what it returns
    /// (`event`, `d`) on the guild's shard, under one lock.
    ///
    /// # Panics
    ///
    /// If the guild's shard never had a session.
    async fn member_event(
        &self,
        guild: u64,
        change: impl FnOnce(&mut SimGuild) -> Option<(&'static str, String)>,
    ) -> Option<Sent> {
        let shard = shard_for_guild(guild, self.config().shard_total);
        self.backpressure(shard).await;
        let shared = self.shared();
        let mut st = shared.lock();
        assert!(
            st.current.contains_key(&shard),
            "shard {shard} of guild {guild} never had a session"
        );
        let (event, d) = change(st.guilds.entry(guild).or_default())?;
        append_to_guild(shared, &mut st, guild, event, d)
    }

    /// Adds `guild` with `roles` (its `@everyone` role, the guild's own id, is added),
    /// of which the bot may not manage `unmanageable` (above its highest role: 403),
    /// and dispatches its `GUILD_CREATE` (a join: it is not in READY).
    ///
    /// # Panics
    ///
    /// If the guild's shard never had a session.
    pub async fn add_guild(&self, guild: u64, roles: &[u64], unmanageable: &[u64]) -> Sent {
        self.member_event(guild, |g| {
            g.roles = roles.iter().copied().chain([guild]).collect();
            g.unmanageable = unmanageable.iter().copied().collect();
            let mut d: serde_json::Value =
                serde_json::from_str(&fixtures::guild_create(guild, 0, 1, 0)).expect("fixture");
            let everyone = d["roles"][0].clone();
            d["roles"] = g
                .roles
                .iter()
                .map(|&id| {
                    let mut role = everyone.clone();
                    role["id"] = json!(id.to_string());
                    role["name"] = json!(if id == guild {
                        "@everyone".to_owned()
                    } else {
                        format!("role-{id}")
                    });
                    role
                })
                .collect();
            Some(("GUILD_CREATE", d.to_string()))
        })
        .await
        .expect("dispatched")
    }

    /// `user` joins `guild` holding `roles`: recorded and dispatched
    /// (`GUILD_MEMBER_ADD`).
    ///
    /// # Panics
    ///
    /// If the guild's shard never had a session.
    pub async fn member_join(&self, guild: u64, user: u64, roles: &[u64]) -> Sent {
        self.member_event(guild, |g| {
            let roles: BTreeSet<u64> = roles.iter().copied().collect();
            let d = member_payload(guild, user, &roles);
            g.members.insert(user, roles);
            Some(("GUILD_MEMBER_ADD", d))
        })
        .await
        .expect("dispatched")
    }

    /// A moderator adds `add` and removes `remove` from a member's roles: recorded and
    /// dispatched (`GUILD_MEMBER_UPDATE` with every role the member holds). `None` if
    /// the user is not a member.
    ///
    /// # Panics
    ///
    /// If the guild's shard never had a session.
    pub async fn member_update(
        &self,
        guild: u64,
        user: u64,
        add: &[u64],
        remove: &[u64],
    ) -> Option<Sent> {
        self.member_event(guild, |g| {
            let roles = g.members.get_mut(&user)?;
            roles.extend(add);
            roles.retain(|r| !remove.contains(r));
            Some(("GUILD_MEMBER_UPDATE", member_payload(guild, user, roles)))
        })
        .await
    }

    /// `user` leaves `guild` (Discord drops their roles): recorded and dispatched
    /// (`GUILD_MEMBER_REMOVE`). `None` if the user is not a member.
    ///
    /// # Panics
    ///
    /// If the guild's shard never had a session.
    pub async fn member_leave(&self, guild: u64, user: u64) -> Option<Sent> {
        self.member_event(guild, |g| {
            g.members.remove(&user)?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(user);
            let d = json!({"guild_id": guild.to_string(), "user": fixtures::user(user, &mut rng)});
            Some(("GUILD_MEMBER_REMOVE", d.to_string()))
        })
        .await
    }

    /// Resolves once `POST /sim/members/play` was received (at once if it was).
    pub async fn members_play(&self) {
        let mut play = self.shared().members_play.subscribe();
        let _ = play.wait_for(|play| *play).await;
    }

    /// The roles `user` holds in `guild` now; `None` if not a member.
    pub fn member_roles(&self, guild: u64, user: u64) -> Option<Vec<u64>> {
        let st = self.shared().lock();
        let roles = st.guilds.get(&guild)?.members.get(&user)?;
        Some(roles.iter().copied().collect())
    }

    /// Every member of `guild` and the roles each holds now.
    pub fn members(&self, guild: u64) -> BTreeMap<u64, Vec<u64>> {
        let st = self.shared().lock();
        st.guilds
            .get(&guild)
            .map(|g| {
                g.members
                    .iter()
                    .map(|(user, roles)| (*user, roles.iter().copied().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }
}
