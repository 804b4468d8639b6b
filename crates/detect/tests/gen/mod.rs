//! Realistic generated audit trails: normal clerks and analysts over four weeks of
//! working days, then a day with a shared account, a harvesting script, an
//! off-hours login, a honeytoken read, a volume spike, probing, a failed-login
//! burst and an unused account. Lines are in the writer's exact layout.

#![allow(dead_code, clippy::too_many_arguments)]

use maskgate_detect::{AccountInfo, Fingerprinter};
use serde_json::{json, Value};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub const KEY: [u8; 32] = [7; 32];
pub const CANARY: &str = "079099000001";
/// Monday; four weeks of history, the incidents on the Tuesday after.
pub const START: OffsetDateTime = datetime!(2026-11-02 00:00 UTC);
pub const INCIDENT_DAY: i64 = 29;

pub const NORMAL: [&str; 6] = ["clerk1", "clerk2", "clerk3", "clerk4", "clerk5", "analyst1"];

/// A tiny deterministic generator (xorshift), so trails are the same every run.
pub struct Rng(u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub struct Gen {
    pub lines: Vec<(OffsetDateTime, Value)>,
    prints: Fingerprinter,
    session: u64,
    pub rng: Rng,
}

impl Gen {
    pub fn new() -> Gen {
        Gen {
            lines: Vec::new(),
            prints: Fingerprinter::new(&KEY),
            session: 0,
            rng: Rng(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Any record (`kind` in `v`).
    pub fn push(&mut self, t: OffsetDateTime, v: Value) {
        self.lines.push((t, v));
    }

    /// The fingerprint of a canonical key value.
    pub fn print(&self, key: &str) -> Value {
        serde_json::to_value(self.prints.print(key)).unwrap()
    }

    pub fn login(&mut self, t: OffsetDateTime, user: &str, ip: &str, roles: &[&str]) -> String {
        self.session += 1;
        let session = format!("s-{}", self.session);
        self.push(t, json!({"kind":"login","outcome":"admitted","session":session,"client":format!("{ip}:50000"),"user":user,"login":user,"roles":roles,"restricted":true,"database":"register","policy":"abc"}));
        session
    }

    pub fn refused(&mut self, t: OffsetDateTime, user: &str, ip: &str) {
        self.push(t, json!({"kind":"login","outcome":"refused","client":format!("{ip}:50000"),"user":user,"reason":"auth_failed","detail":"password authentication failed"}));
    }

    pub fn end_session(&mut self, t: OffsetDateTime, session: &str, user: &str, ip: &str) {
        self.push(t, json!({"kind":"session_end","session":session,"user":user,"client":format!("{ip}:50000"),"end":"client","duration_ms":1,"statements":0,"rows":0,"bytes":0}));
    }

    /// A lookup by key on the lookup-only table, and its end with `rows`.
    pub fn lookup(
        &mut self,
        t: OffsetDateTime,
        session: &str,
        stmt: u64,
        user: &str,
        ip: &str,
        key: &str,
        rows: u64,
    ) {
        let keys = vec![self.print(key)];
        self.lookup_with(t, (session, stmt), user, ip, (keys, 0), rows);
    }

    /// A lookup with these fingerprints and `unkeyed` keys that could not be read.
    pub fn lookup_with(
        &mut self,
        t: OffsetDateTime,
        (session, stmt): (&str, u64),
        user: &str,
        ip: &str,
        (keys, unkeyed): (Vec<Value>, u64),
        rows: u64,
    ) {
        self.push(t, json!({"kind":"statement","session":session,"stmt":stmt,"user":user,"client":format!("{ip}:50000"),"protocol":"extended","statement":"SELECT full_name, citizen_id FROM participant WHERE citizen_id = $1","class":"read","tables":[{"table":"public.participant","masked":["citizen_id:partial"],"pinned_by":["citizen_id"],"roles":["clerk"]}],"decision":"rewritten","sealed_values":1,"keys":keys,"unkeyed":unkeyed}));
        self.push(t + Duration::milliseconds(3), json!({"kind":"statement_end","session":session,"stmt":stmt,"outcome":"completed","rows":rows,"bytes":rows * 80,"duration_us":900}));
    }

    /// A read that is not a lookup, returning `rows`.
    pub fn read(
        &mut self,
        t: OffsetDateTime,
        session: &str,
        stmt: u64,
        user: &str,
        ip: &str,
        rows: u64,
    ) {
        self.push(t, json!({"kind":"statement","session":session,"stmt":stmt,"user":user,"client":format!("{ip}:50000"),"protocol":"simple","statement":"SELECT province_code, count(*) FROM contribution WHERE period = $L1 GROUP BY 1","class":"read","tables":[{"table":"public.contribution","roles":["analyst"]}],"decision":"rewritten","sealed_values":1}));
        self.push(t + Duration::milliseconds(40), json!({"kind":"statement_end","session":session,"stmt":stmt,"outcome":"completed","rows":rows,"bytes":rows * 60,"duration_us":40000}));
    }

    pub fn denied(&mut self, t: OffsetDateTime, session: &str, stmt: u64, user: &str, ip: &str) {
        self.push(t, json!({"kind":"statement","session":session,"stmt":stmt,"user":user,"client":format!("{ip}:50000"),"protocol":"simple","statement":"SELECT * FROM pg_shadow","class":"denied","decision":"denied","reason":"policy","sqlstate":"42501","message":"relation \"pg_shadow\" is not available to this account","sealed_values":0}));
    }

    fn random_key(&mut self) -> String {
        format!("0791{:08}", self.rng.below(100_000_000))
    }

    /// A clerk's working day: a login before 08:30, 20–40 lookups an hour until
    /// 16:00, one in twenty finding nothing.
    pub fn clerk_day(&mut self, day: OffsetDateTime, user: &str, ip: &str) {
        let login = day + Duration::hours(8) + Duration::minutes(self.rng.below(30) as i64);
        let s = self.login(login, user, ip, &["clerk"]);
        let mut stmt = 0;
        for hour in 8..16 {
            let n = 20 + self.rng.below(21);
            for _ in 0..n {
                stmt += 1;
                let t = day
                    + Duration::hours(hour)
                    + Duration::seconds(30 + self.rng.below(3500) as i64);
                let key = self.random_key();
                let rows = u64::from(self.rng.below(20) != 0);
                self.lookup(t.max(login), &s, stmt, user, ip, &key, rows);
            }
        }
        self.end_session(
            day + Duration::hours(16) + Duration::minutes(5),
            &s,
            user,
            ip,
        );
    }

    /// An analyst's day: ten aggregate reads an hour, 20–300 rows each.
    pub fn analyst_day(&mut self, day: OffsetDateTime, user: &str, ip: &str) {
        let login = day + Duration::hours(9);
        let s = self.login(login, user, ip, &["analyst"]);
        let mut stmt = 0;
        for hour in 9..17 {
            for i in 0..10 {
                stmt += 1;
                let t = day + Duration::hours(hour) + Duration::minutes(i * 5 + 1);
                let rows = 20 + self.rng.below(281);
                self.read(t, &s, stmt, user, ip, rows);
            }
        }
        self.end_session(
            day + Duration::hours(17) + Duration::minutes(5),
            &s,
            user,
            ip,
        );
    }

    /// Lines in time order, numbered, in the writer's layout.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.lines.sort_by_key(|(t, _)| *t);
        let mut out = Vec::with_capacity(self.lines.len());
        for (i, (t, v)) in self.lines.into_iter().enumerate() {
            let time = t
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let mut line = format!(
                "{{\"seq\":{},\"time\":\"{time}\",\"kind\":{},\"prev\":\"{}\"",
                i + 1,
                v["kind"],
                "0".repeat(64)
            );
            for (k, value) in v.as_object().unwrap() {
                if k != "kind" {
                    line.push_str(&format!(",{}:{}", Value::String(k.clone()), value));
                }
            }
            line.push('}');
            out.push(line.into_bytes());
        }
        out
    }
}

pub fn weekday(d: i64) -> bool {
    (START + Duration::days(d))
        .weekday()
        .number_days_from_monday()
        < 5
}

/// The whole scenario, generated once per test binary.
pub fn scenario() -> &'static [Vec<u8>] {
    static LINES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    LINES.get_or_init(generate)
}

fn generate() -> Vec<Vec<u8>> {
    let mut g = Gen::new();
    let history_users = [
        ("clerk1", "10.0.1.1"),
        ("clerk2", "10.0.1.2"),
        ("clerk3", "10.0.1.3"),
        ("clerk4", "10.0.1.4"),
        ("clerk5", "10.0.1.5"),
        ("shared1", "10.0.3.1"),
        ("harvester1", "10.0.4.1"),
        ("night1", "10.0.5.1"),
        ("canary1", "10.0.6.1"),
        ("prober1", "10.0.7.1"),
    ];
    for d in 0..=INCIDENT_DAY {
        if !weekday(d) {
            continue;
        }
        let day = START + Duration::days(d);
        for (user, ip) in history_users {
            let skip_today = d == INCIDENT_DAY && matches!(user, "harvester1" | "night1");
            if !skip_today {
                g.clerk_day(day, user, ip);
            }
        }
        g.analyst_day(day, "analyst1", "10.0.2.1");
        if d != INCIDENT_DAY {
            g.analyst_day(day, "analyst2", "10.0.2.2");
        }
    }
    let day = START + Duration::days(INCIDENT_DAY);
    // A lent account: a second session from another machine while the first is open.
    let s = g.login(
        day + Duration::hours(10),
        "shared1",
        "10.0.3.99",
        &["clerk"],
    );
    g.lookup(
        day + Duration::hours(10) + Duration::minutes(1),
        &s,
        1,
        "shared1",
        "10.0.3.99",
        "079100000042",
        1,
    );
    g.end_session(
        day + Duration::hours(10) + Duration::minutes(20),
        &s,
        "shared1",
        "10.0.3.99",
    );
    // A harvesting script: 5,000 sequential lookups in an hour.
    let s = g.login(
        day + Duration::hours(13),
        "harvester1",
        "10.0.4.1",
        &["clerk"],
    );
    for i in 0..5000u64 {
        let t = day + Duration::hours(13) + Duration::milliseconds((i * 700) as i64 + 10);
        g.lookup(
            t,
            &s,
            i + 1,
            "harvester1",
            "10.0.4.1",
            &format!("079200{:06}", i),
            u64::from(i % 3 != 0),
        );
    }
    g.end_session(day + Duration::hours(14), &s, "harvester1", "10.0.4.1");
    // An off-hours login.
    let s = g.login(
        day + Duration::hours(2) + Duration::minutes(30),
        "night1",
        "10.0.5.1",
        &["clerk"],
    );
    g.lookup(
        day + Duration::hours(2) + Duration::minutes(31),
        &s,
        1,
        "night1",
        "10.0.5.1",
        "079300000001",
        1,
    );
    g.end_session(
        day + Duration::hours(2) + Duration::minutes(40),
        &s,
        "night1",
        "10.0.5.1",
    );
    // A honeytoken read.
    let s = g.login(day + Duration::hours(17), "canary1", "10.0.6.1", &["clerk"]);
    g.lookup(
        day + Duration::hours(17) + Duration::minutes(2),
        &s,
        1,
        "canary1",
        "10.0.6.1",
        CANARY,
        1,
    );
    g.end_session(
        day + Duration::hours(17) + Duration::minutes(5),
        &s,
        "canary1",
        "10.0.6.1",
    );
    // A volume spike: an analyst reads 200,000 rows in an hour.
    let s = g.login(
        day + Duration::hours(9),
        "analyst2",
        "10.0.2.2",
        &["analyst"],
    );
    for i in 0..20u64 {
        g.read(
            day + Duration::hours(9) + Duration::minutes(i as i64 * 2 + 1),
            &s,
            i + 1,
            "analyst2",
            "10.0.2.2",
            10_000,
        );
    }
    g.end_session(day + Duration::hours(10), &s, "analyst2", "10.0.2.2");
    // Probing: denial after denial.
    let s = g.login(day + Duration::hours(18), "prober1", "10.0.7.1", &["clerk"]);
    for i in 0..30u64 {
        g.denied(
            day + Duration::hours(18) + Duration::seconds(i as i64 * 10 + 5),
            &s,
            i + 1,
            "prober1",
            "10.0.7.1",
        );
    }
    g.end_session(
        day + Duration::hours(18) + Duration::minutes(10),
        &s,
        "prober1",
        "10.0.7.1",
    );
    // Password guessing from one machine across several names.
    for i in 0..12 {
        let user = ["clerk1", "clerk2", "admin", "postgres"][i % 4];
        g.refused(
            day + Duration::hours(19) + Duration::seconds(i as i64 * 20),
            user,
            "10.9.9.9",
        );
    }
    g.finish()
}

/// The policy's accounts: every account has its own assignment; `stale1` never logs in.
pub fn accounts() -> Vec<AccountInfo> {
    let mut out: Vec<AccountInfo> = [
        "clerk1",
        "clerk2",
        "clerk3",
        "clerk4",
        "clerk5",
        "analyst1",
        "analyst2",
        "shared1",
        "harvester1",
        "night1",
        "canary1",
        "prober1",
        "stale1",
    ]
    .iter()
    .map(|login| AccountInfo {
        login: login.to_string(),
        roles: vec!["clerk".into()],
        valid_until: None,
        disabled: false,
        assignment: Some(format!("QĐ-{login}/2026")),
    })
    .collect();
    out.last_mut().unwrap().assignment = Some("QĐ-stale1/2026".into());
    out
}

/// The end of the incident day.
pub fn end() -> OffsetDateTime {
    START + Duration::days(INCIDENT_DAY) + Duration::hours(23)
}
