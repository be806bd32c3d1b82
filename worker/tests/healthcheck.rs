//! `shardline-healthcheck`, the images' container healthcheck, against a worker's
//! real `/healthz`.

use std::process::Command;

fn healthcheck(metrics_addr: Option<&str>) -> bool {
    healthcheck_with("METRICS_ADDR", metrics_addr)
}

/// With `addr` in `variable` (METRICS_ADDR, or the REST proxy's REST_LISTEN).
fn healthcheck_with(variable: &str, addr: Option<&str>) -> bool {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardline-healthcheck"));
    command.env_remove("METRICS_ADDR").env_remove("REST_LISTEN");
    if let Some(addr) = addr {
        command.env(variable, addr);
    }
    command.status().unwrap().success()
}

#[tokio::test]
async fn healthy_only_when_healthz_answers_200() {
    let handle = shardline_worker::metrics::builder()
        .unwrap()
        .build_recorder()
        .handle();
    let addr = shardline_worker::health::serve_with("0.0.0.0:0".parse().unwrap(), handle)
        .await
        .unwrap();
    let served = format!("0.0.0.0:{}", addr.port());
    let proxy = served.clone();
    assert!(
        tokio::task::spawn_blocking(move || healthcheck(Some(&served)))
            .await
            .unwrap()
    );
    // The REST proxy serves /healthz on REST_LISTEN.
    assert!(
        tokio::task::spawn_blocking(move || healthcheck_with("REST_LISTEN", Some(&proxy)))
            .await
            .unwrap()
    );

    // Nothing listens on a port just released.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap().to_string();
    drop(free);
    assert!(!healthcheck(Some(&closed)));
    assert!(!healthcheck(None), "no METRICS_ADDR: nothing to ask");
}
