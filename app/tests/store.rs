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

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (scripts/install-tools installs it)");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA (`name`.pem) and, signed by it, a certificate for 127.0.0.1 (server.pem,
/// server.key), in `dir`.
fn certificates(dir: &std::path::Path, name: &str) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{name}.key");
    let ca_pem = format!("{name}.pem");
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca"];
    ca.extend(key);
    ca.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    csr.extend(key);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let sign = [
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ];
    openssl(dir, &sign);
}

#[tokio::test]
async fn tls_to_postgres_encrypts_and_verifies_with_the_given_ca() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path(), "ca");
    // Another CA that did not sign the server's certificate.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path(), "other");
    let pg = PgServer::start_with_tls(
        &dir.path().join("server.pem"),
        &dir.path().join("server.key"),
    );
    let url = format!("{}?sslmode=require", pg.url());
    let encrypted = |config: DatabaseConfig| async move {
        let db = Db::connect(&config).await?;
        let client = db.client().await?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(shardline_app::DbError::from)?;
        Ok::<bool, shardline_app::DbError>(row.get(0))
    };

    // Encrypted without a CA (as libpq's sslmode=require), and verified with it.
    assert!(encrypted(DatabaseConfig::new(&url)).await.unwrap());
    let verified = DatabaseConfig {
        ca_file: Some(dir.path().join("ca.pem")),
        ..DatabaseConfig::new(&url)
    };
    assert!(encrypted(verified).await.unwrap());
    // A server whose certificate the given CA did not sign is refused.
    let wrong = DatabaseConfig {
        ca_file: Some(other.path().join("other.pem")),
        timeout: std::time::Duration::from_secs(2),
        ..DatabaseConfig::new(&url)
    };
    let error = encrypted(wrong).await.unwrap_err();
    assert_eq!(
        error.kind(),
        shardline_app::DbErrorKind::Unavailable,
        "{error}"
    );
    // Without sslmode, the default (prefer) uses TLS where the server offers it.
    assert!(encrypted(DatabaseConfig::new(pg.url())).await.unwrap());
    // A CA file that holds no certificate is a settings error, found before connecting.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let bad = DatabaseConfig {
        ca_file: Some(empty),
        ..DatabaseConfig::new(&url)
    };
    assert!(bad.validate().is_err());
}
