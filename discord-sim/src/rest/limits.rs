//! Discord's REST limits as the simulator enforces them: per-route buckets kept per
//! top-level resource, the global limit per bot token (or per address without one),
//! the invalid-request counter and Cloudflare's ban past it.
//!
//! Every request that Discord would have refused for a limit is answered as Discord
//! does (429 with its headers and body) and recorded as a [`Violation`], so tests
//! count from here, never from what a client says about itself.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::routes::{Auth, Classified};

/// A per-route limit: `limit` requests per `period`, per top-level resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    /// Requests allowed per window.
    pub limit: u32,
    /// Length of the window, from its first request.
    pub period: Duration,
}

impl BucketSpec {
    /// `limit` per `period_ms` milliseconds.
    pub const fn per_ms(limit: u32, period_ms: u64) -> Self {
        Self {
            limit,
            period: Duration::from_millis(period_ms),
        }
    }
}

/// The REST limits the simulator enforces. The defaults are Discord's; tests use
/// small values to reach them quickly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestLimits {
    /// Requests per second per bot token, over any one-second window (Discord's
    /// default is 50). Interaction callbacks do not count.
    pub global_per_second: u32,
    /// `POST /channels/{id}/messages`, per channel: 5 per 5 s.
    pub messages: BucketSpec,
    /// `PUT`/`DELETE /guilds/{id}/members/{id}/roles/{id}`, per guild: 10 per 10 s.
    pub member_roles: BucketSpec,
    /// Webhook executes and edits, per webhook id + token: 5 per 2 s.
    pub webhooks: BucketSpec,
    /// 401, 403 and non-shared 429 answers allowed per [`invalid_window`](Self::invalid_window)
    /// before the simulated Cloudflare ban (Discord: 10,000 per 10 minutes).
    pub invalid_limit: u32,
    /// The invalid-request counter's sliding window.
    pub invalid_window: Duration,
    /// How long the ban lasts (about an hour, as reported).
    pub ban: Duration,
    /// Gateway op 8 for all members of a guild: one per this long per guild (30 s).
    pub members_request_interval: Duration,
    /// Channels the bot may not post in: every request there answers 403 (Missing
    /// Permissions), which counts as an invalid request.
    pub forbidden_channels: Vec<u64>,
    /// Bot tokens accepted on REST besides [`SimConfig::token`](crate::SimConfig::token)
    /// (one proxy serving several bots). Each has its own global limit and buckets.
    pub extra_tokens: Vec<String>,
}

impl Default for RestLimits {
    fn default() -> Self {
        Self {
            global_per_second: 50,
            messages: BucketSpec::per_ms(5, 5_000),
            member_roles: BucketSpec::per_ms(10, 10_000),
            webhooks: BucketSpec::per_ms(5, 2_000),
            invalid_limit: 10_000,
            invalid_window: Duration::from_secs(600),
            ban: Duration::from_secs(3600),
            members_request_interval: Duration::from_secs(30),
            forbidden_channels: Vec::new(),
            extra_tokens: Vec::new(),
        }
    }
}

/// The global limit's window.
pub(crate) const GLOBAL_WINDOW: Duration = Duration::from_secs(1);

/// A request Discord would have refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// Over the global limit.
    Global,
    /// Over a route bucket.
    Bucket,
    /// Sent while the address was banned.
    Banned,
}

/// A failure injected on requests whose path starts with a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestFault {
    /// Answer with this status (and a Discord-style JSON error).
    Status(u16),
    /// Never answer (until the simulator shuts down).
    Hang,
    /// A 429 with `X-RateLimit-Scope: shared` (a limit shared by every user of the
    /// resource), retry after this long. Not an invalid request.
    SharedLimit(Duration),
}

#[derive(Debug)]
pub(crate) struct FaultRule {
    pub prefix: String,
    pub fault: RestFault,
    pub left: usize,
}

#[derive(Debug)]
struct Window {
    end: Instant,
    end_wall: SystemTime,
    count: u32,
}

/// Limit state behind the simulator's lock.
#[derive(Debug, Default)]
pub(crate) struct RestState {
    windows: HashMap<(String, &'static str, String), Window>,
    global: HashMap<String, VecDeque<Instant>>,
    invalid: VecDeque<Instant>,
    banned_until: Option<Instant>,
    pub faults: Vec<FaultRule>,
    pub bans: u64,
}

/// What the limiter decided about a request.
pub(crate) enum Verdict {
    /// Answer with this (refused, or a fault), recording the violation if any.
    Answer(Response, Option<Violation>),
    /// Never answer.
    Hang,
    /// Handle it; add these rate-limit headers to the answer.
    Pass(HeaderMap),
}

impl RestState {
    /// Decides about one request from `identity` (`bot:<token>` or `ip`).
    pub(crate) fn admit(
        &mut self,
        limits: &RestLimits,
        class: &Classified,
        path: &str,
        identity: Result<&str, ()>,
        now: Instant,
    ) -> Verdict {
        if self.banned_until.is_some_and(|until| now < until) {
            let page = "<html><body>error code: 1015 (You are being rate limited; Cloudflare)</body></html>";
            let response = (StatusCode::TOO_MANY_REQUESTS, page).into_response();
            return Verdict::Answer(response, Some(Violation::Banned));
        }
        if let Some(rule) = self
            .faults
            .iter_mut()
            .find(|r| r.left > 0 && path.starts_with(&r.prefix))
        {
            rule.left -= 1;
            return match rule.fault {
                RestFault::Hang => Verdict::Hang,
                RestFault::Status(status) => {
                    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                    let body = json!({"message": status.to_string(), "code": 0});
                    Verdict::Answer((status, axum::Json(body)).into_response(), None)
                }
                RestFault::SharedLimit(after) => {
                    let mut headers = HeaderMap::new();
                    put(&mut headers, "x-ratelimit-scope", "shared".to_owned());
                    Verdict::Answer(too_many(headers, after, false), None)
                }
            };
        }
        let identity = match (identity, class.auth) {
            (Ok(identity), Auth::PathToken) => identity,
            (Ok(identity), Auth::Bot) if identity != "ip" => identity,
            _ => {
                let body = json!({"message": "401: Unauthorized", "code": 0});
                let response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                return Verdict::Answer(response, None);
            }
        };
        if class.global {
            let sent = self.global.entry(identity.to_owned()).or_default();
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= GLOBAL_WINDOW)
            {
                sent.pop_front();
            }
            if sent.len() >= limits.global_per_second as usize {
                let after = GLOBAL_WINDOW - now.duration_since(sent[0]);
                let mut headers = HeaderMap::new();
                put(&mut headers, "x-ratelimit-global", "true".to_owned());
                put(&mut headers, "x-ratelimit-scope", "global".to_owned());
                return Verdict::Answer(too_many(headers, after, true), Some(Violation::Global));
            }
            sent.push_back(now);
        }
        let mut headers = HeaderMap::new();
        if let Some((hash, spec)) = class.bucket {
            let key = (identity.to_owned(), hash, class.major.clone());
            let window = self.windows.entry(key).or_insert(Window {
                end: now,
                end_wall: SystemTime::now(),
                count: 0,
            });
            if now >= window.end {
                *window = Window {
                    end: now + spec.period,
                    end_wall: SystemTime::now() + spec.period,
                    count: 0,
                };
            }
            let reset_after = window.end - now;
            let full = window.count >= spec.limit;
            if !full {
                window.count += 1;
            }
            put(&mut headers, "x-ratelimit-limit", spec.limit.to_string());
            put(
                &mut headers,
                "x-ratelimit-remaining",
                (spec.limit - window.count).to_string(),
            );
            put(
                &mut headers,
                "x-ratelimit-reset",
                ceil_secs(epoch(window.end_wall)),
            );
            put(
                &mut headers,
                "x-ratelimit-reset-after",
                ceil_secs(reset_after),
            );
            put(&mut headers, "x-ratelimit-bucket", hash.to_owned());
            if full {
                put(&mut headers, "x-ratelimit-scope", "user".to_owned());
                return Verdict::Answer(
                    too_many(headers, reset_after, false),
                    Some(Violation::Bucket),
                );
            }
        }
        if class
            .channel
            .is_some_and(|c| limits.forbidden_channels.contains(&c))
        {
            let body = json!({"message": "Missing Permissions", "code": 50013});
            let mut response = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
            response.headers_mut().extend(headers);
            return Verdict::Answer(response, None);
        }
        Verdict::Pass(headers)
    }

    /// Counts an answer towards the invalid-request limit (401, 403, and 429 unless
    /// its scope is `shared`) and bans past the limit. Returns whether it counted.
    pub(crate) fn count_answer(
        &mut self,
        limits: &RestLimits,
        status: u16,
        scope: Option<&str>,
        now: Instant,
    ) -> bool {
        let invalid = matches!(status, 401 | 403) || (status == 429 && scope != Some("shared"));
        if invalid {
            self.invalid.push_back(now);
        }
        self.expire_invalid(limits, now);
        if invalid
            && self.invalid.len() > limits.invalid_limit as usize
            && self.banned_until.is_none()
        {
            self.banned_until = Some(now + limits.ban);
            self.bans += 1;
            tracing::warn!(invalid = self.invalid.len(), "simulated Cloudflare ban");
        }
        invalid
    }

    fn expire_invalid(&mut self, limits: &RestLimits, now: Instant) {
        while self
            .invalid
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limits.invalid_window)
        {
            self.invalid.pop_front();
        }
    }

    /// Invalid requests in the current window.
    pub(crate) fn invalid_in_window(&mut self, limits: &RestLimits) -> usize {
        self.expire_invalid(limits, Instant::now());
        self.invalid.len()
    }

    /// Whether the address is banned now.
    pub(crate) fn banned(&self) -> bool {
        self.banned_until
            .is_some_and(|until| Instant::now() < until)
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: String) {
    headers.insert(name, HeaderValue::from_str(&value).expect("ASCII header"));
}

fn epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Seconds with millisecond precision, rounded up: a client that waits until then
/// is never early.
fn ceil_secs(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Discord's 429: `Retry-After` (whole seconds, rounded up) and the JSON body.
fn too_many(mut headers: HeaderMap, after: Duration, global: bool) -> Response {
    put(
        &mut headers,
        "retry-after",
        after.as_secs_f64().ceil().max(1.0).to_string(),
    );
    let retry_after = (after.as_nanos().div_ceil(1_000_000) as f64) / 1000.0;
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": global,
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    response.headers_mut().extend(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_to_the_millisecond() {
        assert_eq!(ceil_secs(Duration::from_nanos(1_500_000_001)), "1.501");
        assert_eq!(ceil_secs(Duration::from_millis(250)), "0.250");
        assert_eq!(ceil_secs(Duration::ZERO), "0.000");
    }
}
