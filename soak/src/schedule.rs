//! The fault schedule: which part is killed when, drawn from a seed so a run can be
//! repeated exactly (`--seed`).

use std::fmt;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A worker binary the soak runs two of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `shardline-event-worker` (consumer `event-worker` on EVENTS).
    Event,
    /// `shardline-command-worker` (consumer `command-worker` on COMMANDS).
    Command,
    /// `shardline-eligibility-worker` (ELIGIBILITY checks).
    Eligibility,
    /// `shardline-sync-worker` (ELIGIBILITY syncs).
    Sync,
}

impl Role {
    /// Every role, in start order.
    pub const ALL: [Role; 4] = [Role::Event, Role::Command, Role::Eligibility, Role::Sync];

    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Role::Event => "shardline-event-worker",
            Role::Command => "shardline-command-worker",
            Role::Eligibility => "shardline-eligibility-worker",
            Role::Sync => "shardline-sync-worker",
        }
    }

    /// The NATS user of the shipped configuration it runs as (also its durable).
    pub fn user(self) -> &'static str {
        match self {
            Role::Event => "event-worker",
            Role::Command => "command-worker",
            Role::Eligibility => "eligibility-worker",
            Role::Sync => "sync-worker",
        }
    }
}

/// One fault: what is done to which part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGTERM a gateway process, wait for it to exit, start it again.
    GatewayTerm {
        /// Which gateway process (0 or 1).
        gateway: usize,
    },
    /// SIGKILL a gateway process and start it again.
    GatewayKill {
        /// Which gateway process.
        gateway: usize,
    },
    /// SIGKILL one worker process and start it again.
    WorkerKill {
        /// Which binary.
        role: Role,
        /// Which of its two processes.
        index: usize,
    },
    /// SIGKILL a NATS node and start it again, with its store or with an empty one
    /// (a replaced machine).
    NatsKill {
        /// Which node (0-2).
        node: usize,
        /// Whether the store survives.
        keep_store: bool,
    },
    /// SIGKILL PostgreSQL (the postmaster and every backend) and start it again.
    DatabaseKill,
}

impl Fault {
    /// The kinds every schedule contains at least once, in this order of kinds.
    const KINDS: usize = 6;

    fn draw(kind: usize, rng: &mut StdRng, gateways: usize) -> Fault {
        match kind {
            0 => Fault::GatewayTerm {
                gateway: rng.random_range(0..gateways),
            },
            1 => Fault::GatewayKill {
                gateway: rng.random_range(0..gateways),
            },
            2 => Fault::WorkerKill {
                role: Role::ALL[rng.random_range(0..Role::ALL.len())],
                index: rng.random_range(0..2),
            },
            3 => Fault::NatsKill {
                node: rng.random_range(0..3),
                keep_store: true,
            },
            4 => Fault::NatsKill {
                node: rng.random_range(0..3),
                keep_store: false,
            },
            _ => Fault::DatabaseKill,
        }
    }

    /// How long the part stays down before it is started again, drawn per fault.
    fn down_range_ms(&self) -> (u64, u64) {
        match self {
            Fault::GatewayTerm { .. } => (0, 1_000),
            Fault::GatewayKill { .. } | Fault::WorkerKill { .. } => (0, 3_000),
            Fault::NatsKill { .. } | Fault::DatabaseKill => (1_000, 5_000),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::GatewayTerm { gateway } => write!(f, "gateway-{gateway} SIGTERM"),
            Fault::GatewayKill { gateway } => write!(f, "gateway-{gateway} SIGKILL"),
            Fault::WorkerKill { role, index } => write!(f, "{}-{index} SIGKILL", role.user()),
            Fault::NatsKill {
                node,
                keep_store: true,
            } => write!(f, "nats-{node} SIGKILL, store kept"),
            Fault::NatsKill {
                node,
                keep_store: false,
            } => write!(f, "nats-{node} SIGKILL, store lost"),
            Fault::DatabaseKill => write!(f, "postgres SIGKILL"),
        }
    }
}

/// A fault with its planned start (from the start of traffic) and down time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When it starts, at the earliest (faults run one at a time: a fault whose
    /// predecessor is still recovering starts when it has).
    pub at: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long the part stays down.
    pub down: Duration,
}

/// Average time between faults.
pub const FAULT_SPACING: Duration = Duration::from_secs(15);
/// No fault starts before this much traffic (every part settled).
const QUIET_START: Duration = Duration::from_secs(8);
/// No fault starts in the last this much traffic, so the last one has recovered
/// before traffic ends.
const QUIET_END: Duration = Duration::from_secs(15);

/// The schedule of `seed` for a run of `duration` with `gateways` gateway
/// processes: one fault per [`FAULT_SPACING`] on average, every kind at least once
/// (when the run is long enough), at random times, in time order.
pub fn plan(seed: u64, duration: Duration, gateways: usize) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let Some(window) = duration.checked_sub(QUIET_START + QUIET_END) else {
        return Vec::new();
    };
    let count = (duration.as_secs() / FAULT_SPACING.as_secs()).max(Fault::KINDS as u64) as usize;
    let count = count.min((window.as_secs() / 2) as usize);
    let mut kinds: Vec<usize> = (0..count)
        .map(|i| {
            if i < Fault::KINDS {
                i
            } else {
                rng.random_range(0..Fault::KINDS)
            }
        })
        .collect();
    kinds.shuffle(&mut rng);
    let mut times: Vec<Duration> = (0..count)
        .map(|_| QUIET_START + window.mul_f64(rng.random::<f64>()))
        .collect();
    times.sort();
    times
        .into_iter()
        .zip(kinds)
        .map(|(at, kind)| {
            let fault = Fault::draw(kind, &mut rng, gateways);
            let (lo, hi) = fault.down_range_ms();
            Planned {
                at,
                fault,
                down: Duration::from_millis(rng.random_range(lo..=hi)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_and_another_seed_another() {
        let a = plan(7, Duration::from_secs(90), 2);
        assert_eq!(a, plan(7, Duration::from_secs(90), 2));
        assert_ne!(a, plan(8, Duration::from_secs(90), 2));
    }

    #[test]
    fn every_kind_is_in_a_short_run_and_times_stay_inside_the_quiet_margins() {
        for seed in 0..50 {
            let schedule = plan(seed, Duration::from_secs(90), 2);
            assert_eq!(schedule.len(), Fault::KINDS);
            let has = |f: fn(&Fault) -> bool| schedule.iter().any(|p| f(&p.fault));
            assert!(has(|f| matches!(f, Fault::GatewayTerm { .. })));
            assert!(has(|f| matches!(f, Fault::GatewayKill { .. })));
            assert!(has(|f| matches!(f, Fault::WorkerKill { .. })));
            assert!(has(|f| matches!(
                f,
                Fault::NatsKill {
                    keep_store: true,
                    ..
                }
            )));
            assert!(has(|f| matches!(
                f,
                Fault::NatsKill {
                    keep_store: false,
                    ..
                }
            )));
            assert!(has(|f| matches!(f, Fault::DatabaseKill)));
            assert!(schedule.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(
                schedule
                    .iter()
                    .all(|p| p.at >= QUIET_START && p.at <= Duration::from_secs(90) - QUIET_END)
            );
        }
    }

    #[test]
    fn a_long_run_has_one_fault_per_spacing() {
        assert_eq!(plan(1, Duration::from_secs(600), 2).len(), 40);
        assert!(plan(1, Duration::from_secs(20), 2).is_empty());
    }
}
