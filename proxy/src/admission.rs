//! Who gets a file descriptor and a task: connections that have not logged in
//! have a budget of their own, in total and per client address, apart from the
//! sessions of authenticated clients, so strangers who never log in cannot take
//! the service away from those who do.
//!
//! A connection beyond its budget is told so (`53300`) by a small, also bounded,
//! set of refusal tasks; beyond those it is closed at once. The budgets are fitted
//! to the process's open-file limit at start (see [`FdBudget::plan`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many connections of each kind may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Authenticated sessions (each also holds an upstream connection).
    pub sessions: usize,
    /// Connections still logging in.
    pub pending: usize,
    /// Connections still logging in from one client address (an IPv6 /64).
    pub pending_per_address: usize,
    /// Connections being told that there is no room.
    pub refusing: usize,
    /// Connections to the admin endpoint.
    pub admin: usize,
}

/// What to do with a new connection.
pub enum Admit {
    /// It may log in, holding this permit until it is a session or gone.
    Login(PendingPermit),
    /// No room: tell it so, holding this permit while doing it.
    Refuse(OwnedSemaphorePermit),
    /// No room even to refuse it: close it now.
    Close,
}

/// The admission state shared by the listener and the sessions.
pub struct Admission {
    budgets: Budgets,
    pending: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    per_address: Arc<Mutex<HashMap<u128, usize>>>,
}

/// A connection's place among those logging in.
pub struct PendingPermit {
    _permit: OwnedSemaphorePermit,
    per_address: Arc<Mutex<HashMap<u128, usize>>>,
    key: u128,
}

impl Admission {
    pub fn new(budgets: Budgets) -> Self {
        Admission {
            pending: Arc::new(Semaphore::new(budgets.pending)),
            refusing: Arc::new(Semaphore::new(budgets.refusing)),
            sessions: Arc::new(Semaphore::new(budgets.sessions)),
            per_address: Arc::new(Mutex::new(HashMap::new())),
            budgets,
        }
    }

    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    /// Decides about a connection from `addr` that was just accepted.
    pub fn admit(&self, addr: IpAddr) -> Admit {
        let key = address_key(addr);
        let refuse = || match self.refusing.clone().try_acquire_owned() {
            Ok(permit) => Admit::Refuse(permit),
            Err(_) => Admit::Close,
        };
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            return refuse();
        };
        let mut counts = self.per_address.lock().expect("admission lock");
        let count = counts.entry(key).or_insert(0);
        if *count >= self.budgets.pending_per_address {
            drop(counts);
            return refuse();
        }
        *count += 1;
        Admit::Login(PendingPermit {
            _permit: permit,
            per_address: self.per_address.clone(),
            key,
        })
    }

    /// A session slot for a client that authenticated; `None` when all are taken.
    pub fn session(&self) -> Option<OwnedSemaphorePermit> {
        self.sessions.clone().try_acquire_owned().ok()
    }

    /// Connections logging in now.
    pub fn pending(&self) -> usize {
        self.budgets.pending - self.pending.available_permits()
    }
}

impl Drop for PendingPermit {
    fn drop(&mut self) {
        let mut counts = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Addresses of one IPv6 /64 count as one client: a host usually holds a whole /64.
/// An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d` and counts
/// as its IPv4 address, not as part of `::ffff:0:0/64` with every other one.
pub fn address_key(addr: IpAddr) -> u128 {
    match addr.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

/// File descriptors the process needs besides its connections: standard streams,
/// listeners, the event loop, the policy watcher, audit segments, the log.
pub const BASE_FDS: u64 = 32;

/// The open-file limit and the budgets fitted to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft limit in force after start.
    pub limit: u64,
    /// Descriptors the configured budgets need.
    pub needed: u64,
    /// The budgets in force (the configured ones, or smaller to fit the limit).
    pub budgets: Budgets,
}

impl FdBudget {
    /// Descriptors `budgets` need with `upstream_spare` upstream connections that
    /// belong to no session (idle in the pool, the health probe).
    pub fn needed(budgets: &Budgets, upstream_spare: usize) -> u64 {
        BASE_FDS
            + 2 * budgets.sessions as u64
            + (budgets.pending + budgets.refusing + budgets.admin + upstream_spare) as u64
    }

    /// Fits `wanted` to an open-file limit of `limit`: when it is too low, the
    /// admin, pending and refusal budgets shrink to fixed shares of what is left and
    /// the sessions get the rest, so the process refuses cleanly at its limit
    /// instead of failing `accept` with EMFILE.
    pub fn plan(wanted: Budgets, upstream_spare: usize, limit: u64) -> FdBudget {
        let needed = Self::needed(&wanted, upstream_spare);
        if limit >= needed {
            return FdBudget {
                limit,
                needed,
                budgets: wanted,
            };
        }
        let spare = limit.saturating_sub(BASE_FDS + upstream_spare as u64) as usize;
        let admin = wanted.admin.min((spare / 16).max(1));
        let pending = wanted.pending.min((spare / 4).max(1));
        let refusing = wanted.refusing.min((spare / 16).max(1));
        let sessions = wanted
            .sessions
            .min((spare.saturating_sub(admin + pending + refusing) / 2).max(1));
        FdBudget {
            limit,
            needed,
            budgets: Budgets {
                sessions,
                pending,
                // One address may not take every place left.
                pending_per_address: wanted.pending_per_address.min((pending / 4).max(1)),
                refusing,
                admin,
            },
        }
    }
}

/// Raises the soft open-file limit towards the hard one (where allowed) and returns
/// the soft limit in force.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    /// Far more than any budget needs; some kernels refuse an infinite soft limit.
    const CEILING: u64 = 1 << 20;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    let target = hard.min(CEILING);
    if soft >= target {
        return Ok(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => {
            tracing::info!(from = soft, to = target, "open-file limit raised");
            Ok(target)
        }
        Err(e) => {
            tracing::warn!(error = %e, limit = soft, "cannot raise the open-file limit");
            Ok(soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets() -> Budgets {
        Budgets {
            sessions: 1000,
            pending: 256,
            pending_per_address: 32,
            refusing: 32,
            admin: 16,
        }
    }

    #[test]
    fn a_high_limit_keeps_the_configured_budgets() {
        let plan = FdBudget::plan(budgets(), 5, 100_000);
        assert_eq!(plan.budgets, budgets());
        assert_eq!(plan.needed, 32 + 2000 + 256 + 32 + 16 + 5);
    }

    #[test]
    fn a_low_limit_shrinks_the_budgets_to_fit() {
        for limit in [64, 128, 256, 1024, 2000] {
            let plan = FdBudget::plan(budgets(), 5, limit);
            let b = plan.budgets;
            assert!(b.sessions >= 1 && b.pending >= 1 && b.admin >= 1, "{b:?}");
            assert!(
                FdBudget::needed(&b, 5) <= limit.max(BASE_FDS + 5 + 5),
                "{limit}: {b:?}"
            );
            assert!(b.pending_per_address <= b.pending);
        }
    }

    #[test]
    fn pending_logins_are_bounded_in_total_and_per_address() {
        let admission = Admission::new(Budgets {
            sessions: 1,
            pending: 3,
            pending_per_address: 2,
            refusing: 1,
            admin: 1,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admission.admit(a);
        let second = admission.admit(a);
        assert!(matches!(first, Admit::Login(_)) && matches!(second, Admit::Login(_)));
        let refused = admission.admit(a);
        assert!(matches!(refused, Admit::Refuse(_)));
        // The one refusal slot is taken: the next one is closed at once.
        assert!(matches!(admission.admit(a), Admit::Close));
        drop(refused);
        let other = admission.admit(b);
        assert!(matches!(other, Admit::Login(_)));
        assert_eq!(admission.pending(), 3);
        assert!(matches!(admission.admit(b), Admit::Refuse(_)));
        drop(first);
        assert!(matches!(admission.admit(a), Admit::Login(_)));
        assert!(admission.session().is_some());
    }

    #[test]
    fn ipv4_clients_of_a_dual_stack_listener_are_told_apart() {
        let mapped =
            |v4: &str| IpAddr::V6(v4.parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped());
        assert_ne!(
            address_key(mapped("127.0.0.77")),
            address_key(mapped("127.0.0.1"))
        );
        assert_eq!(
            address_key(mapped("10.1.2.3")),
            address_key("10.1.2.3".parse().unwrap())
        );
        // A real IPv6 /64 still counts as one client.
        assert_eq!(
            address_key("2001:db8::1".parse().unwrap()),
            address_key("2001:db8::ffff:1".parse().unwrap())
        );
    }
}
