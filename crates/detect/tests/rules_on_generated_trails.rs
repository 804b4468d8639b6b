//! Each rule fires on its case in a generated month of records and stays silent on
//! the normal clerks and analyst; reading the trail back after a restart rebuilds
//! the windows, and alerts already in the trail are not raised twice.

mod gen;

use std::collections::BTreeSet;

use maskgate_detect::{Alert, Detector, Fingerprinter, Rule, Settings};
use time::UtcOffset;

fn settings() -> Settings {
    let mut s = Settings::default();
    s.thresholds.stale_days = 14;
    s
}

fn detector() -> Detector {
    let mut d = Detector::new(settings(), UtcOffset::UTC);
    let canary = Fingerprinter::new(&gen::KEY).print(gen::CANARY);
    d.set_canaries([canary.k]);
    d.set_accounts(gen::accounts());
    d
}

fn run(lines: &[Vec<u8>]) -> Vec<Alert> {
    let mut d = detector();
    let mut alerts = Vec::new();
    for line in lines {
        alerts.extend(d.ingest_line(line));
    }
    alerts.extend(d.tick(gen::end()));
    alerts
}

fn fired(alerts: &[Alert], who: &str) -> BTreeSet<Rule> {
    alerts
        .iter()
        .filter(|a| a.account.as_deref() == Some(who) || a.client.as_deref() == Some(who))
        .map(|a| a.rule)
        .collect()
}

#[test]
fn each_rule_fires_on_its_case_and_not_on_normal_accounts() {
    let lines = gen::scenario();
    assert!(lines.len() > 40_000, "{}", lines.len());
    let alerts = run(lines);
    for who in gen::NORMAL {
        assert_eq!(
            fired(&alerts, who),
            BTreeSet::new(),
            "false positive on {who}: {alerts:#?}"
        );
    }
    let expect = [
        ("harvester1", Rule::Enumeration),
        ("shared1", Rule::AccountSharing),
        ("night1", Rule::OffHours),
        ("canary1", Rule::Canary),
        ("analyst2", Rule::VolumeSpike),
        ("prober1", Rule::Probing),
        ("10.9.9.9", Rule::LoginBurst),
        ("stale1", Rule::StaleAccount),
    ];
    for (who, rule) in expect {
        assert!(
            fired(&alerts, who).contains(&rule),
            "{rule} did not fire on {who}: {:?}",
            fired(&alerts, who)
        );
    }
    let harvest = alerts
        .iter()
        .find(|a| a.rule == Rule::Enumeration && a.account.as_deref() == Some("harvester1"))
        .unwrap();
    assert!(harvest.evidence.count >= 20 && !harvest.evidence.records.is_empty());
    assert!(harvest.evidence.window_start.is_some());
    // No alert carries a looked-up value.
    let json = serde_json::to_string(&alerts).unwrap();
    assert!(
        !json.contains(gen::CANARY) && !json.contains("079200"),
        "{json}"
    );
}

#[test]
fn a_restart_mid_incident_loses_no_window_and_repeats_no_alert() {
    let lines = gen::scenario();
    // The harvester's hour starts at line `cut - 2000`; cut inside it.
    let first_harvest = lines
        .iter()
        .position(|l| {
            String::from_utf8_lossy(l).contains("\"user\":\"harvester1\"")
                && String::from_utf8_lossy(l).contains("T13:")
        })
        .unwrap();
    let cut = first_harvest + 2 * 250;
    // A second process reads the trail back, then goes on live.
    let mut after = detector();
    after.begin_replay();
    for line in &lines[..cut] {
        after.ingest_line(line);
    }
    after.end_replay();
    let mut alerts = Vec::new();
    for line in &lines[cut..] {
        alerts.extend(after.ingest_line(line));
    }
    let enumeration: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule == Rule::Enumeration && a.account.as_deref() == Some("harvester1"))
        .collect();
    assert_eq!(enumeration.len(), 1, "{enumeration:#?}");
    // Counting started before the restart: the alert comes no later than without one.
    let straight = run(lines);
    let first = straight
        .iter()
        .find(|a| a.rule == Rule::Enumeration && a.account.as_deref() == Some("harvester1"))
        .unwrap();
    assert_eq!(enumeration[0].id, first.id);

    // An alert already in the trail is not raised again by a replay.
    let mut with_alert: Vec<Vec<u8>> = lines.to_vec();
    let seq = with_alert.len() + 1;
    let record = format!(
        "{{\"seq\":{seq},\"time\":\"2026-12-01T23:30:00Z\",\"kind\":\"alert\",\"prev\":\"{}\",{}",
        "0".repeat(64),
        &String::from_utf8(first.to_json()).unwrap()[1..]
    );
    with_alert.push(record.into_bytes());
    let mut replayed = detector();
    replayed.begin_replay();
    for line in &with_alert {
        replayed.ingest_line(line);
    }
    let pending = replayed.end_replay();
    assert!(pending.iter().all(|a| a.id != first.id), "{pending:#?}");
}
