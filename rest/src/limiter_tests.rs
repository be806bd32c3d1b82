//! The limiter across buckets: what a route's provisional bucket sent before its
//! bucket id was known.

use std::time::Duration;

use axum::http::Method;
use tokio::time::Instant;

use super::*;
use crate::headers::BucketInfo;
use crate::route::parse;

fn message_route(channel: u64) -> Route {
    parse(
        &Method::POST,
        &format!("/api/v10/channels/{channel}/messages"),
    )
    .unwrap()
}

fn answer_info(remaining: u32) -> RateLimitInfo {
    RateLimitInfo {
        bucket: Some(BucketInfo {
            bucket: "messages".into(),
            limit: 5,
            remaining,
            reset_after: Duration::from_secs(5),
            reset_at_unix: None,
        }),
        scope: None,
        global: false,
        retry_after: None,
    }
}

fn answer(info: &RateLimitInfo, sent: Instant) -> Answer<'_> {
    Answer {
        status: 200,
        info,
        sent,
        with_token: true,
    }
}

/// Permits granted at once for `channel`, up to `most`.
async fn granted_now(limiter: &Limiter, channel: u64, most: usize) -> Vec<Permit> {
    let mut permits = Vec::new();
    for _ in 0..most {
        match limiter
            .acquire("token", &message_route(channel), Instant::now())
            .await
        {
            Ok(permit) => permits.push(permit),
            Err(Refused::WaitBudget(_)) => break,
            Err(other) => panic!("{other:?}"),
        }
    }
    permits
}

#[tokio::test]
async fn a_request_in_flight_before_its_route_was_known_counts_in_its_bucket() {
    let limiter = Limiter::new(1000, Duration::from_secs(1), 10_000);
    let sent = Instant::now();
    // The route's bucket id is unknown: one request per channel goes to find out.
    let first = granted_now(&limiter, 1, 5).await;
    let second = granted_now(&limiter, 2, 5).await;
    assert_eq!(
        (first.len(), second.len()),
        (1, 1),
        "one at a time per channel"
    );
    let [first] = <[Permit; 1]>::try_from(first).unwrap();
    let [second] = <[Permit; 1]>::try_from(second).unwrap();

    // Channel 1's answer teaches the route's bucket id (5 per window): channel 2's
    // window already holds the request still in flight there.
    let info = answer_info(4);
    limiter.complete(first, Some(answer(&info, sent)));
    let more = granted_now(&limiter, 2, 10).await;
    assert_eq!(
        more.len(),
        4,
        "4 more, not 5: Discord counts the one in flight"
    );

    // Its answer, when it comes, is counted there once.
    let info = answer_info(4);
    limiter.complete(second, Some(answer(&info, sent)));
    assert!(granted_now(&limiter, 2, 1).await.is_empty());
    for permit in more {
        limiter.release(permit);
    }
    assert_eq!(granted_now(&limiter, 2, 10).await.len(), 4);
}
