//! Metric names of the eligibility pipeline, fixed: the overview dashboard's
//! pipeline row uses them. Each stage's messages, handler time, lag and dead letters
//! are the worker runtime's series (`nats_consumer_*{consumer=...}`); these count
//! what the stages decided.

use shardline_proto::eligibility::CheckReason;

/// Eligibility checks asked for, by `reason` (`join`, `update`, `verify`, `resync`).
pub const CHECKS_REQUESTED: &str = "eligibility_checks_requested_total";
/// Checks evaluated, by `result`: `in_sync` (nothing to change), `sync_requested`,
/// `not_member` (the member left, or the guild is inactive or unknown).
pub const CHECKS_EVALUATED: &str = "eligibility_checks_evaluated_total";
/// Member role changes sent to Discord, by `action` (`add`, `remove`) and `result`:
/// `applied`, `member_gone` (404 Unknown Member), `unknown_role` (404 Unknown Role),
/// `forbidden` (403), `failed` (refused by the proxy, a timeout, a 5xx: retried).
pub const ROLE_CHANGES: &str = "eligibility_role_changes_total";

/// Every `reason` of [`CHECKS_REQUESTED`].
pub const REASONS: [&str; 4] = ["join", "update", "verify", "resync"];
/// Every `result` of [`CHECKS_EVALUATED`].
pub const CHECK_RESULTS: [&str; 3] = ["in_sync", "sync_requested", "not_member"];
/// Every `action` of [`ROLE_CHANGES`].
pub const ACTIONS: [&str; 2] = ["add", "remove"];
/// Every `result` of [`ROLE_CHANGES`].
pub const CHANGE_RESULTS: [&str; 5] = [
    "applied",
    "member_gone",
    "unknown_role",
    "forbidden",
    "failed",
];

/// The label of a check's reason.
pub fn reason_label(reason: CheckReason) -> &'static str {
    match reason {
        CheckReason::Join => "join",
        CheckReason::Update => "update",
        CheckReason::Verify => "verify",
        CheckReason::Resync => "resync",
    }
}

/// Registers every series at zero, so rates and alerts see each from the first scrape.
pub fn register() {
    for reason in REASONS {
        metrics::counter!(CHECKS_REQUESTED, "reason" => reason).increment(0);
    }
    for result in CHECK_RESULTS {
        metrics::counter!(CHECKS_EVALUATED, "result" => result).increment(0);
    }
    for action in ACTIONS {
        for result in CHANGE_RESULTS {
            metrics::counter!(ROLE_CHANGES, "action" => action, "result" => result).increment(0);
        }
    }
}

/// Counts a check asked for.
pub(crate) fn check_requested(reason: CheckReason) {
    checks_requested(reason, 1);
}

/// Counts `n` checks asked for.
pub(crate) fn checks_requested(reason: CheckReason, n: u64) {
    metrics::counter!(CHECKS_REQUESTED, "reason" => reason_label(reason)).increment(n);
}

/// Counts a check evaluated with `result` (one of [`CHECK_RESULTS`]).
pub(crate) fn check_evaluated(result: &'static str) {
    metrics::counter!(CHECKS_EVALUATED, "result" => result).increment(1);
}

/// Counts a role change sent with `result` (one of [`CHANGE_RESULTS`]).
pub(crate) fn role_change(add: bool, result: &'static str) {
    let action = if add { "add" } else { "remove" };
    metrics::counter!(ROLE_CHANGES, "action" => action, "result" => result).increment(1);
}
