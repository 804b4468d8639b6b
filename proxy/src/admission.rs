//! Who gets a file descriptor and a task: connections that have not logged in
//! have a budget of their own, in total and per client address, apart from the
//! sessions of authenticated clients, so strangers who never log in cannot take
//! the service away from those who do.
//!
//! When every place is taken, a new connection takes the place of the oldest one
//! that has not sent its startup packet (or of the oldest of the address holding
//! the most places), so strangers cannot fill the budget with silence. A connection
//! beyond its address's budget, or with no place to take, is told so (`53300`) by
//! a small, also bounded, set of refusal tasks; beyond those it is closed at once. The budgets are fitted
//! to the process's open-file limit at start (see [`FdBudget::plan`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

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
    refusing: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    pending: Arc<Mutex<Pending>>,
}

/// The connections logging in. Ids grow with time, so the smallest is the oldest.
#[derive(Default)]
struct Pending {
    next: u64,
    /// Each connection's client address.
    places: BTreeMap<u64, u128>,
    /// Those that have not sent their startup packet yet.
    silent: BTreeSet<u64>,
    per_address: HashMap<u128, BTreeSet<u64>>,
    /// How to tell each connection that it lost its place.
    evict: HashMap<u64, CancellationToken>,
}

impl Pending {
    fn count(&self, key: u128) -> usize {
        self.per_address.get(&key).map_or(0, BTreeSet::len)
    }

    /// The place to give up for a newcomer from `key` when every place is taken:
    /// the oldest connection that has not sent its startup packet, or else the
    /// oldest of the address holding the most places, if it holds more than the
    /// newcomer's address would.
    fn victim(&self, key: u128) -> Option<u64> {
        if let Some(&id) = self.silent.first() {
            return Some(id);
        }
        let newcomer = self.count(key) + 1;
        let (_, ids) = self.per_address.iter().max_by_key(|(_, ids)| ids.len())?;
        (ids.len() > newcomer)
            .then(|| ids.first().copied())
            .flatten()
    }

    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        let key = self.places.remove(&id)?;
        self.silent.remove(&id);
        if let Some(ids) = self.per_address.get_mut(&key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.per_address.remove(&key);
            }
        }
        self.evict.remove(&id)
    }
}

/// A connection's place among those logging in.
pub struct PendingPermit {
    pending: Arc<Mutex<Pending>>,
    id: u64,
    evicted: CancellationToken,
}

impl PendingPermit {
    /// The client sent its startup packet: it is no longer the first to give up
    /// its place when the budget is full.
    pub fn startup_received(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.silent.remove(&self.id);
    }

    /// Resolves when the place was given to a newer connection.
    pub async fn evicted(&self) {
        self.evicted.cancelled().await
    }
}

impl Admission {
    pub fn new(budgets: Budgets) -> Self {
        Admission {
            refusing: Arc::new(Semaphore::new(budgets.refusing)),
            sessions: Arc::new(Semaphore::new(budgets.sessions)),
            pending: Arc::new(Mutex::new(Pending::default())),
            budgets,
        }
    }

    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    /// Decides about a connection from `addr` that was just accepted. When every
    /// pending place is taken, one is given up for it (see [`Pending::victim`]):
    /// connections that say nothing cannot keep real clients out.
    pub fn admit(&self, addr: IpAddr) -> Admit {
        let key = address_key(addr);
        let refuse = || match self.refusing.clone().try_acquire_owned() {
            Ok(permit) => Admit::Refuse(permit),
            Err(_) => Admit::Close,
        };
        let mut pending = self.pending.lock().expect("admission lock");
        if pending.count(key) >= self.budgets.pending_per_address {
            return refuse();
        }
        if pending.places.len() >= self.budgets.pending {
            let Some(victim) = pending.victim(key) else {
                return refuse();
            };
            if let Some(token) = pending.remove(victim) {
                token.cancel();
            }
        }
        let id = pending.next;
        pending.next += 1;
        let evicted = CancellationToken::new();
        pending.places.insert(id, key);
        pending.silent.insert(id);
        pending.per_address.entry(key).or_default().insert(id);
        pending.evict.insert(id, evicted.clone());
        Admit::Login(PendingPermit {
            pending: self.pending.clone(),
            id,
            evicted,
        })
    }

    /// A session slot for a client that authenticated; `None` when all are taken.
    pub fn session(&self) -> Option<OwnedSemaphorePermit> {
        self.sessions.clone().try_acquire_owned().ok()
    }

    /// Connections logging in now.
    pub fn pending(&self) -> usize {
        self.pending.lock().expect("admission lock").places.len()
    }
}

impl Drop for PendingPermit {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(self.id);
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
        let login = |admit: Admit| match admit {
            Admit::Login(permit) => {
                permit.startup_received();
                permit
            }
            _ => panic!("a place was expected"),
        };
        let first = login(admission.admit(a));
        let _second = login(admission.admit(a));
        let refused = admission.admit(a);
        assert!(matches!(refused, Admit::Refuse(_)));
        // The one refusal slot is taken: the next one is closed at once.
        assert!(matches!(admission.admit(a), Admit::Close));
        drop(refused);
        let _other = login(admission.admit(b));
        assert_eq!(admission.pending(), 3);
        // Full, and b would hold as many places as a: no place is given up.
        assert!(matches!(admission.admit(b), Admit::Refuse(_)));
        drop(first);
        assert!(matches!(admission.admit(a), Admit::Login(_)));
        assert!(admission.session().is_some());
    }

    #[tokio::test]
    async fn a_full_budget_gives_up_silent_connections_first_then_the_largest_holder() {
        let admission = Admission::new(Budgets {
            sessions: 1,
            pending: 4,
            pending_per_address: 3,
            refusing: 1,
            admin: 1,
        });
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let place = |admit: Admit| match admit {
            Admit::Login(permit) => permit,
            _ => panic!("a place was expected"),
        };
        // A stranger: three silent connections; a client that sent its startup packet.
        let silent: Vec<_> = (0..3).map(|_| place(admission.admit(ip(1)))).collect();
        let talking = place(admission.admit(ip(2)));
        talking.startup_received();
        // Full: newcomers take the stranger's places, oldest first.
        let newcomer = place(admission.admit(ip(3)));
        newcomer.startup_received();
        tokio::time::timeout(std::time::Duration::from_secs(1), silent[0].evicted())
            .await
            .expect("the oldest silent connection gave up its place");
        assert_eq!(admission.pending(), 4);
        let _more: Vec<_> = (0..2)
            .map(|n| {
                let p = place(admission.admit(ip(4 + n)));
                p.startup_received();
                p
            })
            .collect();
        // No silent one is left and no address holds more than a newcomer's would.
        assert!(matches!(admission.admit(ip(9)), Admit::Refuse(_)));
        assert_eq!(admission.pending(), 4);
        drop(silent);
        assert_eq!(
            admission.pending(),
            4,
            "evicted places were already given up"
        );
    }

    #[test]
    fn the_largest_holder_gives_up_a_place_to_an_address_with_fewer() {
        let admission = Admission::new(Budgets {
            sessions: 1,
            pending: 4,
            pending_per_address: 4,
            refusing: 1,
            admin: 1,
        });
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let held: Vec<_> = (0..4)
            .map(|_| match admission.admit(ip(1)) {
                Admit::Login(p) => {
                    p.startup_received();
                    p
                }
                _ => panic!("a place was expected"),
            })
            .collect();
        assert!(matches!(admission.admit(ip(2)), Admit::Login(_)));
        assert!(held[0].evicted.is_cancelled());
        assert!(!held[1].evicted.is_cancelled());
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
