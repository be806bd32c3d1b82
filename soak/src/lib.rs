#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod audit;
mod count;
mod faults;
mod fleet;
mod report;
mod run;
mod schedule;
mod traffic;

pub use audit::{Answer, AnswerKey, Stored, parse_answer};
pub use count::{ConsumerEnd, Counts, DeadLetter, HandlerCount, Inputs, Window, count};
pub use faults::Done;
pub use report::render;
pub use run::{Outcome, Settings, run, schedule};
pub use schedule::{FAULT_SPACING, Fault, Planned, Role, plan};
pub use traffic::{Sent, SentRecord};
