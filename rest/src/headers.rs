//! What Discord's answers say about its limits: the `X-RateLimit-*` headers and a
//! 429's `retry_after`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use tokio::time::Instant;

/// A bucket's state as one answer reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketInfo {
    /// The opaque bucket id (`X-RateLimit-Bucket`).
    pub bucket: String,
    /// Requests per window (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Left in the window after this request (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Seconds until the window resets, from when Discord answered
    /// (`X-RateLimit-Reset-After`).
    pub reset_after: Duration,
    /// The reset as a Unix time (`X-RateLimit-Reset`), if sent.
    pub reset_at_unix: Option<Duration>,
}

/// Everything an answer says about limits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateLimitInfo {
    /// The route's bucket, when the answer names one.
    pub bucket: Option<BucketInfo>,
    /// `X-RateLimit-Scope` of a 429 (`user`, `global`, `shared`).
    pub scope: Option<String>,
    /// `X-RateLimit-Global: true`.
    pub global: bool,
    /// How long to wait, from a 429 (`retry_after` in the body, else `Retry-After`).
    pub retry_after: Option<Duration>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn seconds(s: &str) -> Option<Duration> {
    let v: f64 = s.parse().ok()?;
    Duration::try_from_secs_f64(v).ok()
}

impl RateLimitInfo {
    /// Reads an answer's headers and, for a 429, its body.
    pub fn read(status: u16, headers: &HeaderMap, body: &[u8]) -> Self {
        let bucket = (|| {
            Some(BucketInfo {
                bucket: header(headers, "x-ratelimit-bucket")?.to_owned(),
                limit: header(headers, "x-ratelimit-limit")?.parse().ok()?,
                remaining: header(headers, "x-ratelimit-remaining")?.parse().ok()?,
                reset_after: seconds(header(headers, "x-ratelimit-reset-after")?)?,
                reset_at_unix: header(headers, "x-ratelimit-reset").and_then(seconds),
            })
        })();
        let retry_after = (status == 429)
            .then(|| {
                serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("retry_after").and_then(|r| r.as_f64()))
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .or_else(|| header(headers, "retry-after").and_then(seconds))
            })
            .flatten();
        Self {
            bucket,
            scope: header(headers, "x-ratelimit-scope").map(str::to_owned),
            global: header(headers, "x-ratelimit-global").is_some_and(|v| v == "true"),
            retry_after,
        }
    }

    /// Whether the answer counts towards Discord's invalid-request limit: 401, 403,
    /// and 429 unless its scope is `shared`.
    pub fn is_invalid(&self, status: u16) -> bool {
        matches!(status, 401 | 403) || (status == 429 && self.scope.as_deref() != Some("shared"))
    }
}

impl BucketInfo {
    /// When the window resets, on this process's clock. `sent` and `answered` bound
    /// the moment Discord counted the request: `Reset-After` from either end gives
    /// the range the reset must be in, and the absolute `Reset` (exact when clocks
    /// agree) is used clamped to that range, so clock skew can only cost the range's
    /// width, never put a request before the reset.
    pub fn reset_instant(&self, sent: Instant, answered: Instant) -> Instant {
        let earliest = sent + self.reset_after;
        let latest = answered + self.reset_after;
        let Some(unix) = self.reset_at_unix else {
            return latest;
        };
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now = Instant::now();
        let absolute = match unix.checked_sub(now_unix) {
            Some(ahead) => now + ahead,
            None => now.checked_sub(now_unix - unix).unwrap_or(now),
        };
        absolute.clamp(earliest, latest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_429_body_says_how_long_and_the_scope_whether_it_counts() {
        let h = headers(&[("x-ratelimit-scope", "shared"), ("retry-after", "2")]);
        let info = RateLimitInfo::read(429, &h, br#"{"retry_after": 0.25, "global": false}"#);
        assert_eq!(info.retry_after, Some(Duration::from_millis(250)));
        assert!(!info.is_invalid(429), "a shared 429 is not invalid");
        let info = RateLimitInfo::read(429, &headers(&[("retry-after", "2")]), b"<html>");
        assert_eq!(info.retry_after, Some(Duration::from_secs(2)));
        assert!(info.is_invalid(429) && info.is_invalid(403) && !info.is_invalid(404));
    }

    #[test]
    fn the_reset_is_clamped_to_what_reset_after_allows() {
        let h = headers(&[
            ("x-ratelimit-bucket", "abc"),
            ("x-ratelimit-limit", "5"),
            ("x-ratelimit-remaining", "4"),
            ("x-ratelimit-reset-after", "1.000"),
            // Far in the future: a skewed clock.
            ("x-ratelimit-reset", "99999999999.000"),
        ]);
        let info = RateLimitInfo::read(200, &h, b"").bucket.unwrap();
        assert_eq!((info.limit, info.remaining), (5, 4));
        let sent = Instant::now();
        let answered = sent + Duration::from_millis(100);
        assert_eq!(
            info.reset_instant(sent, answered),
            answered + Duration::from_secs(1)
        );
    }
}
