//! The synthetic register matches the example classification column for
//! column, and loads into a real cluster with the data the generators describe.

use std::collections::BTreeMap;

use maskgate_testkit::{register, PgCluster};

/// `format_type()` spelling of a type as the classification writes it.
fn format_type(declared: &str) -> String {
    if let Some(rest) = declared.strip_prefix("varchar") {
        format!("character varying{rest}")
    } else if let Some(rest) = declared.strip_prefix("char(") {
        format!("character({rest}")
    } else {
        declared.to_string()
    }
}

fn classification() -> BTreeMap<String, BTreeMap<String, String>> {
    let files = register::example_policy_files().unwrap();
    let text = &files
        .iter()
        .find(|(name, _)| name == "classification.toml")
        .unwrap()
        .1;
    let doc: toml::Table = text.parse().unwrap();
    doc["tables"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(table, spec)| {
            let columns = spec["columns"]
                .as_table()
                .unwrap()
                .iter()
                .map(|(column, c)| (column.clone(), format_type(c["type"].as_str().unwrap())))
                .collect();
            (table.clone(), columns)
        })
        .collect()
}

#[test]
fn loaded_register_has_exactly_the_classified_columns_and_the_generated_rows() {
    let cluster = PgCluster::start().unwrap();
    register::load(&cluster).unwrap();
    // Loading twice replaces the tables rather than failing.
    register::load(&cluster).unwrap();

    for (table, columns) in classification() {
        let (schema, name) = table.split_once('.').unwrap();
        let actual = cluster
            .psql(&format!(
                "SELECT attname || ':' || format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = '{schema}.{name}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ))
            .unwrap();
        let actual: BTreeMap<String, String> = actual
            .lines()
            .map(|l| {
                let (c, t) = l.split_once(':').unwrap();
                (c.to_string(), t.to_string())
            })
            .collect();
        assert_eq!(actual, columns, "{table}");
    }

    let count = |sql: &str| cluster.psql(sql).unwrap().parse::<usize>().unwrap();
    assert_eq!(
        count("SELECT count(*) FROM participant"),
        register::PARTICIPANTS as usize
    );
    assert_eq!(
        count("SELECT count(*) FROM employer"),
        register::EMPLOYERS as usize
    );
    assert_eq!(
        count("SELECT count(*) FROM contribution"),
        register::contributions().count()
    );
    assert_eq!(
        count("SELECT count(*) FROM health_card"),
        register::PARTICIPANTS as usize
    );
    assert_eq!(
        count("SELECT count(*) FROM benefit_claim"),
        register::benefit_claims().count()
    );
    assert!(count("SELECT count(*) FROM benefit_claim WHERE status = 'draft'") > 0);
    assert!(count("SELECT count(DISTINCT province_code) FROM participant") >= 3);
    assert_eq!(
        count(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'participant' \
             AND (indexdef LIKE '%(citizen_id)%' OR indexdef LIKE '%(social_insurance_code)%')"
        ),
        2
    );
    assert!(count("SELECT count(*) FROM pg_stats WHERE tablename = 'participant'") > 0);

    // The normalized tables: children with only the participant's id.
    assert_eq!(
        count("SELECT count(*) FROM province"),
        register::PROVINCE_COUNT
    );
    assert_eq!(
        count("SELECT count(*) FROM \"TheBHYT\" t JOIN participant p ON p.id = t.nguoi_id"),
        register::PARTICIPANTS as usize
    );
    assert_eq!(
        count("SELECT count(*) FROM benefit_payment"),
        register::benefit_payments().count()
    );
    let card = register::the_bhyt().nth(41).unwrap();
    assert_eq!(
        cluster
            .psql(&format!(
                "SELECT \"số thẻ\" || '|' || \"nơi đăng ký\" FROM \"TheBHYT\" WHERE nguoi_id = {}",
                card.nguoi_id
            ))
            .unwrap(),
        format!("{}|{}", card.so_the, card.noi_dang_ky)
    );

    let p = register::participant(1234);
    let row = cluster
        .psql(
            "SELECT citizen_id, full_name, date_of_birth, phone, province_code \
             FROM participant WHERE id = 1234",
        )
        .unwrap();
    assert_eq!(
        row,
        format!(
            "{}|{}|{}|{}|{}",
            p.citizen_id,
            p.full_name,
            p.date_of_birth,
            p.phone.unwrap(),
            p.province_code
        )
    );
    let c = register::contributions().nth(7).unwrap();
    let row = cluster
        .psql(&format!(
            "SELECT salary_base, amount, paid_on FROM contribution WHERE id = {}",
            c.id
        ))
        .unwrap();
    assert_eq!(row, format!("{}|{}|{}", c.salary_base, c.amount, c.paid_on));
}
