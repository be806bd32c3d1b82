//! The throwaway PostgreSQL: it starts (as the `postgres` user when the tests run as
//! root), answers queries on its URL, survives a SIGKILL and restart with its data,
//! and is gone after drop.

use std::process::Command;

use shardline_testkit::{PgServer, pg_bin_dir};

fn psql(server: &PgServer, sql: &str) -> Result<String, String> {
    let psql = pg_bin_dir().map_or_else(|| "psql".into(), |d| d.join("psql"));
    let output = Command::new(psql)
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", &server.url(), "-c", sql])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap().trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn a_killed_server_restarts_with_its_data() {
    let mut server = PgServer::start();
    psql(
        &server,
        "CREATE TABLE t (v int); INSERT INTO t VALUES (41), (1)",
    )
    .unwrap();
    assert_eq!(psql(&server, "SELECT sum(v) FROM t").unwrap(), "42");

    server.kill();
    assert!(
        psql(&server, "SELECT 1").is_err(),
        "nothing answers while killed"
    );
    server.restart();
    assert_eq!(psql(&server, "SELECT sum(v) FROM t").unwrap(), "42");
    assert!(server.url().ends_with("/shardline"));
}

#[test]
fn two_servers_run_side_by_side() {
    let a = PgServer::start();
    let b = PgServer::start();
    assert_ne!(a.port(), b.port());
    psql(&a, "CREATE TABLE only_in_a (v int)").unwrap();
    assert!(psql(&b, "SELECT * FROM only_in_a").is_err());
}
