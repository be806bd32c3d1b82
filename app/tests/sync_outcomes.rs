//! How the sync worker takes Discord's answers, through the REST proxy, with the
//! workers as processes:
//! - 403 (a role above the bot's): the other roles are applied, the sync is
//!   dead-lettered with the reason, and the role is not tried again for the next
//!   member (one invalid request, not one per member);
//! - 404 Unknown Member (the member left Discord's side first): done, not an error;
//! - the proxy refusing a change it cannot send within the worker's wait budget:
//!   Retry after the proxy's time, and every role arrives without breaking a limit;
//! - the pipeline's metrics are registered at zero and count what happened.

mod common;

use common::{Bin, Options, PATIENCE, Stack};
use shardline_app::PgStore;
use shardline_app::metrics as m;
use shardline_app::rules::{Condition, Rule, add_rule};
use shardline_app::store::{Store, Version};
use shardline_discord_sim::BucketSpec;
use shardline_proto::headers::DEAD_LETTER_REASON;
use shardline_testkit::eventually;

async fn every_series_at_zero(worker: &common::WorkerProc) {
    let text = eventually("the worker's metrics", PATIENCE, || async {
        worker.scrape().filter(|t| t.contains(m::ROLE_CHANGES))
    })
    .await;
    for action in m::ACTIONS {
        for result in m::CHANGE_RESULTS {
            let series = format!(
                r#"{}{{action="{action}",result="{result}"}}"#,
                m::ROLE_CHANGES
            );
            assert!(text.contains(&series), "{series} registered");
        }
    }
    for reason in m::REASONS {
        assert!(text.contains(&format!(r#"{}{{reason="{reason}"}}"#, m::CHECKS_REQUESTED)));
    }
    for result in m::CHECK_RESULTS {
        assert!(text.contains(&format!(r#"{}{{result="{result}"}}"#, m::CHECKS_EVALUATED)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_gone_and_refused_role_changes() {
    let mut stack = Stack::start(Options {
        shard_total: 1,
        // Three changes per guild every 3 s: later ones wait longer than the worker's
        // budget (500 ms) and are refused by the proxy.
        member_roles: BucketSpec::per_ms(3, 3_000),
        ..Options::default()
    })
    .await;
    stack.start_worker(Bin::Event);
    stack.start_worker(Bin::Eligibility);
    stack.start_worker_with(Bin::Sync, &[("DISCORD_MAX_WAIT_MS", "500")]);
    for bin in [Bin::Event, Bin::Eligibility, Bin::Sync] {
        every_series_at_zero(stack.worker(bin)).await;
    }

    let guild = stack.sim.guild_for_shard(0, 0);
    let (granted, above_bot) = (guild + 1, guild + 2);
    stack
        .sim
        .add_guild(guild, &[granted, above_bot], &[above_bot])
        .await;
    eventually("the guild recorded", PATIENCE, || async {
        PgStore::new(stack.db.clone())
            .guild(guild)
            .await
            .ok()?
            .filter(|g| g.name.starts_with("Guild"))
            .map(drop)
    })
    .await;
    for role in [granted, above_bot] {
        let rule = Rule {
            role,
            condition: Condition::AccountAge { days: 0 },
        };
        add_rule(&stack.db, guild, rule).await.unwrap();
    }

    // The first member: `granted` is applied, `above_bot` refused (403).
    let first = 5 << 22;
    stack.sim.member_join(guild, first, &[]).await;
    stack.until_idle().await;
    assert_eq!(stack.sim.member_roles(guild, first), Some(vec![granted]));
    assert_eq!(
        stack.dead_letters().await,
        1,
        "the refused sync is dead-lettered"
    );
    let dead = stack.js.get_stream("DEAD_LETTER").await.unwrap();
    let letter = dead.get_raw_message(1).await.unwrap();
    let reason = letter
        .headers
        .get(DEAD_LETTER_REASON)
        .unwrap()
        .as_str()
        .to_owned();
    assert!(
        reason.contains(&format!("role {above_bot}")) && reason.contains("403"),
        "{reason}"
    );

    // Six more members: `above_bot` is not tried again; `granted` for each, three at
    // a time, the rest refused by the proxy and retried after its time.
    let later: Vec<u64> = (6..12).map(|i| i << 22).collect();
    for &user in &later {
        stack.sim.member_join(guild, user, &[]).await;
    }
    // A member the database knows but Discord no longer has: 404 Unknown Member.
    let ghost = 99 << 22;
    let at = Version {
        at: 1,
        ..Version::default()
    };
    PgStore::new(stack.db.clone())
        .member_joined(guild, ghost, &[], &at)
        .await
        .unwrap();
    let check = shardline_proto::eligibility::Check {
        guild_id: twilight_model::id::Id::new(guild),
        user_id: twilight_model::id::Id::new(ghost),
        reason: shardline_proto::eligibility::CheckReason::Join,
    };
    stack
        .js
        .publish(
            shardline_proto::eligibility::check_subject(guild, ghost),
            serde_json::to_vec(&check).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    stack.until_idle().await;

    for &user in &later {
        assert_eq!(
            stack.sim.member_roles(guild, user),
            Some(vec![granted]),
            "{user}"
        );
    }
    let statuses: Vec<(u64, u16)> = stack
        .sim
        .role_changes()
        .iter()
        .map(|c| (c.role_id, c.status))
        .collect();
    let forbidden = statuses.iter().filter(|(_, s)| *s == 403).count();
    let gone = statuses.iter().filter(|(_, s)| *s == 404).count();
    println!("role changes at the simulator: {statuses:?}");
    assert_eq!(forbidden, 1, "the role above the bot's was tried once");
    assert_eq!(gone, 1, "the member Discord no longer has");
    assert_eq!(stack.sim.rest_violations(), 0, "no request broke a limit");
    assert_eq!(
        stack.dead_letters().await,
        1,
        "only the 403 was dead-lettered"
    );

    let sync = stack.worker(Bin::Sync);
    let value = |labels: &str| sync.metric(m::ROLE_CHANGES, labels).unwrap_or(-1.0);
    let refused = value(r#"action="add",result="failed""#);
    println!(
        "sync worker: applied {}, forbidden {}, member_gone {}, refused by the proxy and retried {refused}",
        value(r#"action="add",result="applied""#),
        value(r#"action="add",result="forbidden""#),
        value(r#"action="add",result="member_gone""#),
    );
    assert_eq!(value(r#"action="add",result="applied""#), 7.0);
    assert_eq!(value(r#"action="add",result="forbidden""#), 1.0);
    assert_eq!(value(r#"action="add",result="member_gone""#), 1.0);
    assert!(
        refused >= 1.0,
        "the proxy refused at least one change: {refused}"
    );
    let retries = sync
        .metric(
            "nats_consumer_messages_processed_total",
            r#"consumer="sync-worker",status="retry""#,
        )
        .unwrap();
    assert_eq!(retries, refused, "each refusal was a retry");
    let checks = stack
        .worker(Bin::Event)
        .metric(m::CHECKS_REQUESTED, r#"reason="join""#)
        .unwrap();
    assert_eq!(checks, 7.0, "one check asked per join");
    let evaluated = stack
        .worker(Bin::Eligibility)
        .metric(m::CHECKS_EVALUATED, r#"result="sync_requested""#)
        .unwrap();
    assert!(evaluated >= 8.0, "{evaluated}");
    stack.stop().await;
}
