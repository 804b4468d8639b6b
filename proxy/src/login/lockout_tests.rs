use super::*;

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

fn lockouts(max_failures: u32) -> Lockouts {
    Lockouts::new(LockoutPolicy {
        max_failures,
        window: Duration::from_secs(60),
        duration: Duration::from_secs(300),
        max_failures_per_address: 0,
        max_tracked_names: 1000,
        max_tracked_addresses: 1000,
    })
}

/// One failed attempt; whether it locked the name.
fn fail(l: &Lockouts, login: &str, known: bool, now: Instant) -> bool {
    l.begin(login, known, HOME, now)
        .expect("the attempt may be checked")
        .failed(now)
        .locked
}

#[test]
fn locks_after_the_threshold_and_unlocks_after_the_duration() {
    let l = lockouts(3);
    let t0 = Instant::now();
    assert!(!fail(&l, "alice", true, t0));
    assert!(!fail(&l, "alice", true, t0));
    assert!(l.check("alice", HOME, t0).is_ok());
    assert!(fail(&l, "alice", true, t0));
    assert_eq!(
        l.check("alice", HOME, t0),
        Err(Refusal::Locked(Duration::from_secs(300)))
    );
    assert!(l.begin("alice", true, HOME, t0).is_err());
    assert!(l.check("bob", HOME, t0).is_ok());
    assert_eq!(l.locked_count(t0), 1);
    let later = t0 + Duration::from_secs(301);
    assert!(l.check("alice", HOME, later).is_ok());
    assert!(l.begin("alice", true, HOME, later).is_ok());
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let l = lockouts(2);
    let t0 = Instant::now();
    assert!(!fail(&l, "alice", true, t0));
    assert!(!fail(&l, "alice", true, t0 + Duration::from_secs(61)));
    assert!(l.check("alice", HOME, t0 + Duration::from_secs(61)).is_ok());
}

#[test]
fn parallel_proofs_get_no_more_checks_than_the_threshold() {
    let l = lockouts(3);
    let t0 = Instant::now();
    // Many exchanges reach their proof at once: only three may be checked.
    let attempts: Vec<_> = (0..10)
        .filter_map(|_| l.begin("alice", true, HOME, t0).ok())
        .collect();
    assert_eq!(attempts.len(), 3);
    let locked: Vec<bool> = attempts.into_iter().map(|a| a.failed(t0).locked).collect();
    assert_eq!(locked, [false, false, true]);
    assert!(matches!(
        l.begin("alice", true, HOME, t0),
        Err(Refusal::Locked(_))
    ));
}

#[test]
fn a_success_never_lifts_a_lock_in_force() {
    let l = lockouts(2);
    let t0 = Instant::now();
    // A right proof checked before the lock, admitted after it.
    let right = l.begin("alice", true, HOME, t0).unwrap();
    assert!(!fail(&l, "alice", true, t0));
    right.passed();
    // The failures reach the threshold anyway.
    assert!(fail(&l, "alice", true, t0));
    l.record_success("alice", t0);
    assert!(matches!(
        l.check("alice", HOME, t0),
        Err(Refusal::Locked(_))
    ));
    // Outside a lock a success clears the count.
    let l = lockouts(2);
    assert!(!fail(&l, "bob", true, t0));
    l.record_success("bob", t0);
    assert!(!fail(&l, "bob", true, t0));
}

#[test]
fn an_attempt_dropped_without_an_outcome_counts_as_failed() {
    let l = lockouts(2);
    let t0 = Instant::now();
    drop(l.begin("alice", true, HOME, t0).unwrap());
    drop(l.begin("alice", true, HOME, t0).unwrap());
    assert!(matches!(
        l.check("alice", HOME, t0),
        Err(Refusal::Locked(_))
    ));
}

#[test]
fn zero_disables_lockouts() {
    let off = lockouts(0);
    let t0 = Instant::now();
    for _ in 0..100 {
        assert!(!fail(&off, "alice", true, t0));
    }
    assert!(off.check("alice", HOME, t0).is_ok());
    assert_eq!(off.tracked().0, 0);
}

#[test]
fn invented_names_stay_within_capacity_and_never_unlock_an_account() {
    let l = lockouts(2);
    let t0 = Instant::now();
    assert!(!fail(&l, "alice", true, t0));
    assert!(fail(&l, "alice", true, t0));
    for i in 0..5000 {
        fail(&l, &format!("nobody{i}"), false, t0);
    }
    let (names, _) = l.tracked();
    assert!(names <= 1001, "{names} names tracked");
    assert!(matches!(
        l.check("alice", HOME, t0),
        Err(Refusal::Locked(_))
    ));
    // Stale invented names make room before fresh ones are forgotten.
    let later = t0 + Duration::from_secs(400);
    fail(&l, "late", false, later);
    assert!(l.check("alice", HOME, later).is_ok());
}

#[test]
fn accounts_are_pruned_once_stale() {
    let l = lockouts(5);
    let t0 = Instant::now();
    for i in 0..PRUNE_ACCOUNTS_ABOVE {
        fail(&l, &format!("acct{i}"), true, t0);
    }
    let later = t0 + Duration::from_secs(120);
    fail(&l, "fresh", true, later);
    assert!(l.tracked().0 < 10, "{:?}", l.tracked());
}

#[test]
fn addresses_that_fail_too_often_are_refused_for_the_window() {
    let l = Lockouts::new(LockoutPolicy {
        max_failures_per_address: 3,
        max_tracked_names: 1000,
        max_tracked_addresses: 1000,
        ..LockoutPolicy::default()
    });
    let t0 = Instant::now();
    for i in 0..3 {
        fail(&l, &format!("guess{i}"), false, t0);
    }
    assert!(matches!(
        l.check("anyone", HOME, t0),
        Err(Refusal::Address(_))
    ));
    assert!(matches!(
        l.begin("anyone", true, HOME, t0),
        Err(Refusal::Address(_))
    ));
    let elsewhere: IpAddr = "10.0.0.2".parse().unwrap();
    assert!(l.check("anyone", elsewhere, t0).is_ok());
    // One IPv6 /64 is one address.
    let a: IpAddr = "2001:db8::1".parse().unwrap();
    let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
    for i in 0..3 {
        l.begin(&format!("v6guess{i}"), false, a, t0)
            .unwrap()
            .failed(t0);
    }
    assert!(l.check("x", b, t0).is_err());
    let after = t0 + LockoutPolicy::default().window;
    assert!(l.check("anyone", HOME, after).is_ok());
}
