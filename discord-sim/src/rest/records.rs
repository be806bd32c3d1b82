//! What the REST side received and answered, for tests to count, and the
//! middleware that enforces the limits on every API request.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::App;
use super::limits::{GLOBAL_WINDOW, RestFault, Verdict, Violation};
use super::routes::classify;
use crate::Simulator;

/// One REST request the simulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRecord {
    /// When it arrived.
    pub at: Instant,
    /// HTTP method.
    pub method: String,
    /// Path after `/api/v10`.
    pub path: String,
    /// Route template (`/channels/:id/messages`), `unknown` for other routes.
    pub route: &'static str,
    /// The bot token it was sent with (`None`: no `Authorization`).
    pub bot: Option<String>,
    /// Whether the global limit applied to it (not to interaction callbacks).
    pub global: bool,
    /// The status answered.
    pub status: u16,
    /// The limit it broke, if Discord would have refused it for one.
    pub violation: Option<Violation>,
    /// Whether the answer counted as an invalid request (401, 403, non-shared 429).
    pub invalid: bool,
}

/// Counts kept even when records are not (the binary).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RestCounts {
    pub requests: u64,
    pub violations: u64,
}

/// Enforces the limits, then records the request and its answer.
pub(crate) async fn enforce(State(app): State<App>, request: Request, next: Next) -> Response {
    let now = Instant::now();
    let config = &app.shared.config;
    let limits = &config.rest_limits;
    let method = request.method().clone();
    let path = request
        .uri()
        .path()
        .strip_prefix("/api/v10")
        .unwrap_or(request.uri().path())
        .to_owned();
    let class = classify(limits, &method, &path);
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bot ").unwrap_or(v).to_owned());
    let identity = match &presented {
        None => Ok("ip".to_owned()),
        Some(token) if config.token_matches(token) || limits.extra_tokens.contains(token) => {
            Ok(format!("bot:{token}"))
        }
        Some(_) => Err(()),
    };
    let verdict = app.shared.lock().rest.admit(
        limits,
        &class,
        &path,
        identity.as_deref().map_err(|_| ()),
        now,
    );
    let (response, violation) = match verdict {
        Verdict::Hang => {
            // Recorded now, as status 0: the answer never comes.
            {
                let mut st = app.shared.lock();
                st.rest_counts.requests += 1;
                if config.record_sent {
                    st.rest_records.push(RestRecord {
                        at: now,
                        method: method.to_string(),
                        path,
                        route: class.template,
                        bot: presented,
                        global: class.global,
                        status: 0,
                        violation: None,
                        invalid: false,
                    });
                }
            }
            app.cancel.cancelled().await;
            return Response::default();
        }
        Verdict::Answer(response, violation) => (response, violation),
        Verdict::Pass(headers) => {
            let mut response = next.run(request).await;
            response.headers_mut().extend(headers);
            (response, None)
        }
    };
    let status = response.status().as_u16();
    let scope = response
        .headers()
        .get("x-ratelimit-scope")
        .and_then(|v| v.to_str().ok());
    let mut st = app.shared.lock();
    let invalid = st.rest.count_answer(limits, status, scope, now);
    st.rest_counts.requests += 1;
    if violation.is_some() {
        st.rest_counts.violations += 1;
    }
    if config.record_sent {
        st.rest_records.push(RestRecord {
            at: now,
            method: method.to_string(),
            path,
            route: class.template,
            bot: presented,
            global: class.global,
            status,
            violation,
            invalid,
        });
    }
    response
}

impl Simulator {
    /// Every REST request received, in arrival order (empty when
    /// [`SimConfig::record_sent`](crate::SimConfig::record_sent) is off).
    pub fn rest_requests(&self) -> Vec<RestRecord> {
        self.shared().lock().rest_records.clone()
    }

    /// REST requests received so far (counted even without records).
    pub fn rest_request_count(&self) -> u64 {
        self.shared().lock().rest_counts.requests
    }

    /// Requests Discord would have refused for a limit (global, bucket, or during a
    /// ban), counted even without records.
    pub fn rest_violations(&self) -> u64 {
        self.shared().lock().rest_counts.violations
    }

    /// Invalid requests (401, 403, non-shared 429) in the current sliding window.
    pub fn rest_invalid_requests(&self) -> usize {
        let shared = self.shared();
        let mut st = shared.lock();
        st.rest.invalid_in_window(&shared.config.rest_limits)
    }

    /// Whether the simulated Cloudflare ban is in force.
    pub fn rest_banned(&self) -> bool {
        self.shared().lock().rest.banned()
    }

    /// Times the simulated Cloudflare ban started.
    pub fn rest_bans(&self) -> u64 {
        self.shared().lock().rest.bans
    }

    /// Messages created (or returned again for a repeated nonce), in order.
    pub fn messages(&self) -> Vec<super::MessageRecord> {
        self.shared().lock().messages.clone()
    }

    /// Member roles added and removed, in order.
    pub fn role_changes(&self) -> Vec<super::RoleChange> {
        self.shared().lock().role_changes.clone()
    }

    /// Makes the next `times` REST requests whose path (after `/api/v10`) starts
    /// with `prefix` fail with `fault`.
    pub fn inject_rest_fault(&self, prefix: &str, fault: RestFault, times: usize) {
        self.shared()
            .lock()
            .rest
            .faults
            .push(super::limits::FaultRule {
                prefix: prefix.to_owned(),
                fault,
                left: times,
            });
    }

    /// Ends every injected fault: an outage a test holds for a time, then lifts.
    pub fn clear_rest_faults(&self) {
        self.shared().lock().rest.faults.clear();
    }
}

/// The most requests counted against the global limit that `bot` (a token; `None`
/// for requests without one) sent in any window of `window`, from `records`.
pub fn busiest_window(records: &[RestRecord], bot: Option<&str>, window: Duration) -> usize {
    // Records are kept in the order answers left, not arrival order.
    let mut times: Vec<Instant> = records
        .iter()
        .filter(|r| r.global && r.bot.as_deref() == bot)
        .map(|r| r.at)
        .collect();
    times.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// [`busiest_window`] over Discord's one-second global window.
pub fn busiest_second(records: &[RestRecord], bot: Option<&str>) -> usize {
    busiest_window(records, bot, GLOBAL_WINDOW)
}
