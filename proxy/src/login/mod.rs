//! Decisions taken at login beyond the password: lockouts after repeated
//! failures and the per-account session cap. Account validity, client address,
//! certificate and hours are the policy's (`maskgate_policy::Account::admit`).

pub mod lockout;
pub mod refusals;
pub mod sessions;

pub use lockout::{Attempt, Failed, LockoutPolicy, Lockouts, Refusal};
pub use refusals::{RefusalSummaries, Summary};
pub use sessions::{SessionCounts, SessionSlot};
