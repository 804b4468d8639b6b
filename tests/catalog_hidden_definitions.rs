//! Definitions in the catalog that name a denied column or a literal value stay
//! out of a restricted account's catalog: a partial exclusion constraint's
//! `WHERE` (printed by `pg_get_constraintdef`) names the column and the values it
//! is compared with, like a partial index's predicate.

#[path = "common/enforcement.rs"]
mod enforcement;

use enforcement::*;
use maskgate_testkit::register::{self, PROVINCIAL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_exclusion_constraints_are_not_listed() {
    let cluster = cluster();
    // `date_of_birth` is denied to the provincial officer.
    cluster
        .psql(
            "ALTER TABLE public.participant ADD CONSTRAINT mg_partial_exclusion \
             EXCLUDE USING btree (id WITH =) WHERE (date_of_birth > '1990-07-15')",
        )
        .expect("adding the constraint");
    let su = superuser(cluster).await;
    let oid = column(
        &su,
        "SELECT oid::text FROM pg_constraint WHERE conname = 'mg_partial_exclusion'",
    )
    .await[0]
        .clone()
        .expect("the constraint's oid");
    let proxy = register::start_proxy(cluster).await.expect("proxy starts");
    let officer = proxy
        .connect(PROVINCIAL, PASSWORD)
        .await
        .expect("the officer logs in");
    for sql in [
        "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint".to_owned(),
        format!("SELECT pg_get_constraintdef({oid})"),
        format!("SELECT pg_get_constraintdef(CAST({oid} AS oid), true)"),
        "SELECT conname FROM pg_constraint WHERE contype = 'x'".to_owned(),
    ] {
        for (protocol, outcome) in [
            ("simple", simple(&officer, &sql).await),
            ("extended", extended(&officer, &sql).await),
        ] {
            assert!(
                outcome.error.is_none(),
                "{protocol} {sql}: {:?}",
                outcome.error
            );
            for row in &outcome.rows {
                let text = row.values[0].as_deref().unwrap_or("");
                assert!(
                    !text.contains("1990-07-15") && !text.contains("date_of_birth"),
                    "{protocol} {sql}: the exclusion constraint's predicate is shown"
                );
                assert!(
                    !text.contains("mg_partial_exclusion"),
                    "{protocol} {sql}: the exclusion constraint is listed"
                );
            }
        }
    }
}
