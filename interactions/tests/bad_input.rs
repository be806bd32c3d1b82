//! Bad input, each with a clear status and nothing published: a body over the limit
//! (413), a signed body that is not JSON or not an interaction (400), an unknown
//! interaction type (400), a client too slow with its headers or its body (408), more
//! interactions waiting than allowed (503). Then every metric series is on
//! `/metrics`, and each outcome this test caused was counted.

mod common;

use std::time::Duration;

use shardline_discord_sim::Signing;
use shardline_interactions::metrics::{self as m, Outcome};
use shardline_interactions::signature::Rejection;
use shardline_testkit::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use common::{Base, PATIENCE, command, discord, get, sample};

/// Sends `head` (and nothing more) on a fresh connection and reads what comes back
/// until the server closes it.
async fn stall(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

fn outcome(page: &str, outcome: Outcome) -> f64 {
    let series = format!("{}{{outcome=\"{}\"}}", m::REQUESTS, outcome.as_str());
    sample(page, &series).unwrap_or_else(|| panic!("{series} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_and_reaches_nothing() {
    let base = Base::start().await;
    let shutdown = CancellationToken::new();
    let service = base
        .service(shutdown.clone(), |c| {
            c.max_body_bytes = 4096;
            c.header_read_timeout_ms = 300;
            c.body_read_timeout_ms = 300;
            c.max_pending = 2;
        })
        .await;
    let (addr, metrics) = (service.addr(), service.metrics_addr().unwrap());
    let before = get(metrics, "/metrics").await.unwrap().1;
    let http = discord(addr);

    // Slow clients: headers that never end, a body that never comes.
    let answer = stall(addr, "POST /interactions HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let head = "POST /interactions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"type\":";
    let answer = stall(addr, head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    // A connection that never sends a request is told so too; an idle keep-alive
    // connection is closed without a word (a 408 there could be read as the answer
    // to the client's next request).
    assert!(stall(addr, "").await.starts_with("HTTP/1.1 408"));
    let answer = stall(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer:?}");
    // Counted before the client below sends anything: its pool may open a connection
    // it never uses (while the last one is still on its way back to the pool), which
    // the service rightly times out, and counts, too.
    let slow = get(metrics, "/metrics").await.unwrap().1;
    assert_eq!(
        outcome(&slow, Outcome::TimedOut) - outcome(&before, Outcome::TimedOut),
        3.0,
        "three slow clients timed out"
    );

    let mut big = command("fast", 1);
    big.body = format!("{} {}", big.body, " ".repeat(5000));
    let record = http.send_raw(big.body.clone(), Signing::Valid).await;
    assert_eq!(record.status, Some(413), "{record:?}");

    let record = http.send_raw("this is not json", Signing::Valid).await;
    assert_eq!(record.status, Some(400), "{record:?}");
    let record = http.send_raw(r#"{"id":"1"}"#, Signing::Valid).await;
    assert_eq!(record.status, Some(400), "no type: {record:?}");
    let mut unknown = command("fast", 2);
    unknown.body = unknown.body.replace(r#""type":2"#, r#""type":99"#);
    assert!(unknown.body.contains(r#""type":99"#));
    let record = http.send_raw(unknown.body, Signing::Valid).await;
    assert_eq!(record.status, Some(400), "unknown type: {record:?}");

    assert_eq!(base.stored().await, 0, "nothing of it published");

    // Two interactions wait (no worker runs); a third finds no room.
    let waiting: Vec<_> = (10..12)
        .map(|seed| {
            let http = http.clone();
            tokio::spawn(async move { http.send(&command("fast", seed), Signing::Valid).await })
        })
        .collect();
    eventually("two interactions waiting", PATIENCE, || async {
        (base.stored().await == 2).then_some(())
    })
    .await;
    let record = http.send(&command("fast", 12), Signing::Valid).await;
    assert_eq!(record.status, Some(503), "{record:?}");
    for task in waiting {
        assert_eq!(task.await.unwrap().response_type, Some(5), "deferred");
    }

    // Every series registered at zero at start; each outcome here counted.
    for outcome in Outcome::ALL {
        let series = format!("{}{{outcome=\"{}\"}}", m::REQUESTS, outcome.as_str());
        assert!(sample(&before, &series).is_some(), "{series} at start");
    }
    for reason in Rejection::ALL {
        let series = format!(
            "{}{{reason=\"{}\"}}",
            m::SIGNATURE_REJECTIONS,
            reason.as_str()
        );
        assert!(sample(&before, &series).is_some(), "{series} at start");
    }
    for answer in ["used", "deferred"] {
        let series = format!("{}{{answer=\"{answer}\"}}", m::WORKER_OFFERS);
        assert!(sample(&before, &series).is_some(), "{series} at start");
    }
    assert!(sample(&before, m::PENDING).is_some());
    assert!(before.contains(&format!("{}_bucket", m::FIRST_RESPONSE_DURATION)));
    let after = eventually("the last outcomes counted", PATIENCE, || async {
        let page = get(metrics, "/metrics").await?.1;
        (outcome(&page, Outcome::Deferred) - outcome(&before, Outcome::Deferred) >= 2.0)
            .then_some(page)
    })
    .await;
    let grew = |o: Outcome| outcome(&after, o) - outcome(&before, o);
    assert_eq!(grew(Outcome::TooLarge), 1.0);
    assert_eq!(grew(Outcome::BadRequest), 3.0);
    assert!(grew(Outcome::TimedOut) >= 3.0);
    assert_eq!(grew(Outcome::Overloaded), 1.0);
    assert_eq!(grew(Outcome::Deferred), 2.0);
    let deferred_time = format!(
        "{}_count{{outcome=\"deferred\"}}",
        m::FIRST_RESPONSE_DURATION
    );
    assert!(sample(&after, &deferred_time).unwrap() >= 2.0);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), service.stopped())
        .await
        .expect("stops in bounded time");
}
