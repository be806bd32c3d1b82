//! The PostgreSQL store against a real PostgreSQL: it passes the suite every store
//! must pass (idempotent and ordered writes, unknown guilds created, history kept),
//! migrations apply once however many processes start at once, and rules that
//! could not be evaluated are refused when written, with a kind saying why.

use shardline_app::rules::{Condition, Rule, RuleErrorKind, add_rule};
use shardline_app::store::{GuildInfo, Store, Version};
use shardline_app::{DatabaseConfig, Db, PgStore};
use shardline_testkit::{PgServer, init_tracing};

async fn db(pg: &PgServer) -> Db {
    Db::connect(&DatabaseConfig::new(pg.url())).await.unwrap()
}

#[tokio::test]
async fn pg_store_passes_the_store_suite() {
    init_tracing();
    let pg = PgServer::start();
    shardline_app::store::conformance::run(&PgStore::new(db(&pg).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_when_processes_start_together() {
    init_tracing();
    let pg = PgServer::start();
    let config = DatabaseConfig::new(pg.url());
    let starts = (0..4).map(|_| {
        let config = config.clone();
        tokio::spawn(async move { Db::connect(&config).await.map(drop) })
    });
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let client = db(&pg).await.client().await.unwrap();
    let applied: i64 = client
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, files);
}

const GUILD: u64 = 900_000_000_000_000_001;
const ROLE: u64 = 900_000_000_000_000_002;
const OTHER_ROLE: u64 = 900_000_000_000_000_003;

async fn with_guild(pg: &PgServer) -> Db {
    let db = db(pg).await;
    let info = GuildInfo {
        id: GUILD,
        name: "rules".into(),
        roles: vec![GUILD, ROLE, OTHER_ROLE],
    };
    let at = Version {
        at: 1,
        ..Version::default()
    };
    PgStore::new(db.clone())
        .upsert_guild(&info, &at)
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn rules_that_cannot_be_evaluated_are_refused_when_written() {
    init_tracing();
    let pg = PgServer::start();
    let db = with_guild(&pg).await;
    let rule = |role, condition| Rule { role, condition };

    // The write path says why, as a kind.
    let refused = [
        (rule(12345, Condition::Verified), RuleErrorKind::UnknownRole),
        (
            rule(ROLE, Condition::HoldsRole(777)),
            RuleErrorKind::UnknownRole,
        ),
        (rule(GUILD, Condition::Verified), RuleErrorKind::Everyone),
    ];
    for (bad, kind) in refused {
        let error = add_rule(&db, GUILD, bad).await.unwrap_err();
        assert_eq!(error.kind(), kind, "{bad:?}: {error}");
    }
    let error = add_rule(&db, 42, rule(ROLE, Condition::Verified))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RuleErrorKind::UnknownGuild, "{error}");

    // A row written by hand is refused by the schema, naming the rule it breaks.
    let client = db.client().await.unwrap();
    let by_hand = [
        (
            "account_age",
            Some(-3),
            None,
            "rules_account_age_not_negative",
        ),
        ("account_age", None, None, "rules_fields_match_kind"),
        ("holds_role", None, Some(OTHER_ROLE as i64), "ok"),
        ("verified", Some(5), None, "rules_fields_match_kind"),
        ("karma", None, None, "rules_kind_known"),
        (
            "holds_role",
            None,
            Some(424_242),
            "rules_required_role_is_a_guild_role",
        ),
    ];
    for (kind, age, required, constraint) in by_hand {
        let result = client
            .execute(
                "INSERT INTO rules (guild_id, role_id, kind, min_account_age_days, required_role_id) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&(GUILD as i64), &(ROLE as i64), &kind, &age, &required],
            )
            .await;
        match (constraint, result) {
            ("ok", Ok(1)) => {}
            (want, Err(e)) => {
                let db_error = e.as_db_error().expect("refused by the server");
                assert_eq!(
                    db_error.constraint(),
                    Some(want),
                    "{kind} {age:?}: {db_error}"
                );
            }
            (want, Ok(n)) => panic!("{kind} {age:?} {required:?} written ({n}); want {want}"),
        }
    }
    let rules: i64 = client
        .query_one("SELECT count(*) FROM rules", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rules, 1, "only the valid row was written");

    // Valid rules through the write path.
    for good in [
        rule(ROLE, Condition::AccountAge { days: 30 }),
        rule(ROLE, Condition::Verified),
        rule(OTHER_ROLE, Condition::HoldsRole(ROLE)),
    ] {
        add_rule(&db, GUILD, good).await.unwrap();
    }
}
