//! The suite every [`Store`] must pass: run it from a test against an empty store.
//!
//! ```no_run
//! # async fn check() {
//! shardline_app::store::conformance::run(&shardline_app::store::InMemoryStore::new()).await;
//! # }
//! ```

use super::{GuildInfo, GuildState, MemberState, Store, Version};

fn at(at: i64, session: &str, sequence: i64) -> Version {
    Version {
        at,
        session: Some(session.to_owned()),
        sequence,
    }
}

async fn member<S: Store>(store: &S, guild: u64, user: u64) -> MemberState {
    store
        .member(guild, user)
        .await
        .expect("read member")
        .expect("member recorded")
}

async fn guild<S: Store>(store: &S, guild: u64) -> GuildState {
    store
        .guild(guild)
        .await
        .expect("read guild")
        .expect("guild recorded")
}

/// Runs every case against `store`, which must be empty; panics on the first
/// failure, naming it.
///
/// # Panics
///
/// When `store` breaks a rule of [`Store`], or fails.
pub async fn run<S: Store>(store: &S) {
    unknown_guild_is_created(store).await;
    stale_update_changes_nothing(store).await;
    redelivery_changes_nothing(store).await;
    stale_join_after_leave_changes_nothing(store).await;
    guild_leave_keeps_history(store).await;
    sessions_are_ordered_by_read_time(store).await;
}

async fn unknown_guild_is_created<S: Store>(store: &S) {
    let (g, u) = (1_000_001, 2_000_001);
    assert_eq!(store.guild(g).await.unwrap(), None);
    store
        .member_updated(g, u, &[5, 3, 5], &at(10, "s", 1))
        .await
        .unwrap();
    let created = guild(store, g).await;
    assert!(created.active && created.available, "{created:?}");
    let m = member(store, g, u).await;
    assert!(m.present);
    assert_eq!(m.roles, [3, 5], "roles sorted, without duplicates");
    // The guild's own create names it later.
    let info = GuildInfo {
        id: g,
        name: "named".into(),
        roles: vec![g, 3],
    };
    store.upsert_guild(&info, &at(20, "s", 2)).await.unwrap();
    assert_eq!(guild(store, g).await.name, "named");
}

async fn stale_update_changes_nothing<S: Store>(store: &S) {
    let (g, u) = (1_000_002, 2_000_002);
    store
        .member_joined(g, u, &[], &at(10, "s", 5))
        .await
        .unwrap();
    store
        .member_updated(g, u, &[7], &at(30, "s", 9))
        .await
        .unwrap();
    // Sequence 7 was read before 9: delivered late, it must not win.
    store
        .member_updated(g, u, &[8], &at(20, "s", 7))
        .await
        .unwrap();
    assert_eq!(member(store, g, u).await.roles, [7], "stale update ignored");
}

async fn redelivery_changes_nothing<S: Store>(store: &S) {
    let (g, u) = (1_000_003, 2_000_003);
    let first = at(10, "s", 1);
    store.member_joined(g, u, &[1], &first).await.unwrap();
    store.member_left(g, u, &at(11, "s", 2)).await.unwrap();
    // The join again (a redelivery): the member stays gone.
    store.member_joined(g, u, &[1], &first).await.unwrap();
    let m = member(store, g, u).await;
    assert!(!m.present && m.roles.is_empty(), "{m:?}");
}

async fn stale_join_after_leave_changes_nothing<S: Store>(store: &S) {
    let (g, u) = (1_000_004, 2_000_004);
    store.member_left(g, u, &at(50, "s", 8)).await.unwrap();
    store
        .member_joined(g, u, &[2], &at(40, "s", 4))
        .await
        .unwrap();
    assert!(!member(store, g, u).await.present, "the leave is newer");
    // A later join (a new session after a reconnect) brings the member back.
    store
        .member_joined(g, u, &[2], &at(60, "t", 1))
        .await
        .unwrap();
    assert!(member(store, g, u).await.present);
}

async fn guild_leave_keeps_history<S: Store>(store: &S) {
    let (g, u) = (1_000_005, 2_000_005);
    let info = GuildInfo {
        id: g,
        name: "g".into(),
        roles: vec![g],
    };
    store.upsert_guild(&info, &at(10, "s", 1)).await.unwrap();
    store
        .member_joined(g, u, &[], &at(11, "s", 2))
        .await
        .unwrap();
    store.guild_unavailable(g, &at(12, "s", 3)).await.unwrap();
    let out = guild(store, g).await;
    assert!(
        out.active && !out.available,
        "an outage is not a leave: {out:?}"
    );
    store.guild_left(g, &at(13, "s", 4)).await.unwrap();
    // A stale availability must not bring it back.
    store.upsert_guild(&info, &at(12, "s", 3)).await.unwrap();
    let left = guild(store, g).await;
    assert!(!left.active, "left, and stays left: {left:?}");
    assert_eq!(left.name, "g", "history kept");
    assert!(member(store, g, u).await.present, "member records kept");
    // Added back later.
    store.upsert_guild(&info, &at(99, "u", 1)).await.unwrap();
    assert!(guild(store, g).await.active);
}

async fn sessions_are_ordered_by_read_time<S: Store>(store: &S) {
    let (g, u) = (1_000_006, 2_000_006);
    store
        .member_updated(g, u, &[1], &at(100, "old", 900))
        .await
        .unwrap();
    // A new session's sequence is small, but it was read later.
    store
        .member_updated(g, u, &[2], &at(200, "new", 3))
        .await
        .unwrap();
    store
        .member_updated(g, u, &[3], &at(150, "old", 901))
        .await
        .unwrap();
    assert_eq!(member(store, g, u).await.roles, [2]);
    // Without a session (a message published by hand), the time alone decides.
    let by_hand = Version {
        at: 300,
        session: None,
        sequence: 0,
    };
    store.member_updated(g, u, &[4], &by_hand).await.unwrap();
    assert_eq!(member(store, g, u).await.roles, [4]);
}
