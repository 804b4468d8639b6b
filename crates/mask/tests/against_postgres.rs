//! Every mask kind run by a real PostgreSQL: expected outputs, types, NULLs,
//! properties over generated register data, hostile parameters, and how the
//! pseudonym keys travel.

use std::collections::BTreeSet;
use std::io::Write;

use maskgate_mask::{
    parse_pg_type, MaskError, MaskKind, MaskSpec, PgType, PseudonymKeys, TypeFamily,
};
use maskgate_testkit::PgCluster;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

/// 32 fixed bytes, so failures are reproducible.
const SECRET_B64: &str = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=";
const OTHER_B64: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn key_file() -> (tempfile::NamedTempFile, PseudonymKeys) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "current = \"v1\"\n[keys.v1]\nsecret = \"{SECRET_B64}\"\n[keys.k2026-01]\nsecret = \"{OTHER_B64}\"\n"
    )
    .unwrap();
    let keys = PseudonymKeys::load(file.path()).unwrap();
    (file, keys)
}

async fn connect(options: Option<&str>) -> Client {
    let pg = PgCluster::shared();
    let mut config: Config = pg.url().parse().unwrap();
    if let Some(options) = options {
        config.options(options);
    }
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A session as the proxy opens it: key pads in the startup options.
async fn keyed(keys: &PseudonymKeys) -> Client {
    let client = connect(Some(&keys.upstream_options())).await;
    client
        .batch_execute("SET TimeZone = 'Asia/Ho_Chi_Minh'")
        .await
        .unwrap();
    client
}

async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e:?}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

async fn one(client: &Client, sql: &str) -> Option<String> {
    let mut all = rows(client, sql).await;
    assert_eq!(all.len(), 1, "{sql}");
    all.remove(0).remove(0)
}

async fn fresh_schema(client: &Client, name: &str) {
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}; SET search_path = {name}"
        ))
        .await
        .unwrap();
}

fn spec(src: &str) -> MaskSpec {
    let table: toml::Table = toml::from_str(src).unwrap();
    MaskSpec::from_toml(&table).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn ty(name: &str) -> PgType {
    parse_pg_type(name).unwrap()
}

/// The same expression after a round trip through sqlparser, which the
/// statement rewriter uses to embed it.
fn reparsed(expr: &str) -> String {
    let mut parser = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(expr)
        .unwrap_or_else(|e| panic!("sqlparser rejects {expr}: {e}"));
    let parsed = parser
        .parse_expr()
        .unwrap_or_else(|e| panic!("sqlparser rejects {expr}: {e}"));
    assert_eq!(
        parser.peek_token().token,
        sqlparser::tokenizer::Token::EOF,
        "sqlparser stops early in {expr}"
    );
    parsed.to_string()
}

const COLUMNS: &[(&str, &str)] = &[
    ("t_text", "text"),
    ("t_varchar", "varchar(40)"),
    ("t_char", "char(20)"),
    ("t_date", "date"),
    ("t_ts", "timestamp"),
    ("t_tstz", "timestamptz"),
    ("t_int4", "int4"),
    ("t_int8", "int8"),
    ("t_numeric", "numeric(12,2)"),
    ("t_float8", "float8"),
];

#[tokio::test]
async fn every_kind_on_every_accepted_type_keeps_types_and_nulls() {
    let (_file, keys) = key_file();
    let client = keyed(&keys).await;
    fresh_schema(&client, "mask_sweep").await;
    let columns: Vec<String> = COLUMNS.iter().map(|(c, t)| format!("{c} {t}")).collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, {});
             INSERT INTO t VALUES
               (1, 'Nguyễn Văn An', 'đặng thị hồng', '001203004567', '1985-03-17',
                '1985-03-17 08:30:00', '1985-03-17 08:30:00+07', 123456, -9876543210,
                1234.56, 3.14159),
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
               (3, '', 'A', 'DN4010123456789', '2000-02-29', '2000-02-29 23:59:59',
                '2000-02-29 23:59:59+00', -7, 0, -0.01, -2.5)",
            columns.join(", ")
        ))
        .await
        .unwrap();

    let kinds = [
        "mask = \"partial\"\nkeep_first = 1\nkeep_last = 2",
        "mask = \"partial\"\nkeep_last = 3\nkeep_length = false\nmask_char = \"•\"",
        "mask = \"citizen_id\"",
        "mask = \"social_insurance_code\"",
        "mask = \"health_card\"",
        "mask = \"phone\"",
        "mask = \"email\"",
        "mask = \"email_domain\"",
        "mask = \"partial\"\nkeep_after = \" \"",
        "mask = \"partial\"\nkeep_before = \"@\"\nkeep_last = 2\nkeep_length = false",
        "mask = \"initials\"",
        "mask = \"year\"",
        "mask = \"month\"",
        "mask = \"age_band\"",
        "mask = \"age_band\"\nwidth = 1",
        "mask = \"round\"\ndigits = -2",
        "mask = \"round\"\ndigits = 1",
        "mask = \"bucket\"\nwidth = 1000",
        "mask = \"bucket\"\nwidth = \"0.5\"",
        "mask = \"null\"",
        "mask = \"pseudonym\"\nkey = \"v1\"",
        "mask = \"pseudonym_digits\"\nkey = \"k2026-01\"",
    ];
    let mut checked = 0;
    for (column, type_name) in COLUMNS {
        let ty = ty(type_name);
        let constant = match ty.family {
            TypeFamily::Text => "mask = \"constant\"\nvalue = \"Ẩn danh\"",
            TypeFamily::Date => "mask = \"constant\"\nvalue = 1900-01-01",
            TypeFamily::Timestamp => "mask = \"constant\"\nvalue = \"1900-01-01 00:00:00\"",
            TypeFamily::Integer => "mask = \"constant\"\nvalue = 0",
            _ => "mask = \"constant\"\nvalue = \"0.5\"",
        };
        for src in kinds.iter().copied().chain([constant]) {
            let spec = spec(src);
            if spec.check_type(type_name).is_err() {
                continue;
            }
            let expr = spec
                .sql_expr(&format!("\"{column}\""), &ty, &keys)
                .unwrap_or_else(|e| panic!("{spec} on {type_name}: {e}"));
            let select = |e: &str| format!("SELECT id, ({e})::text FROM t ORDER BY id");
            let got = rows(&client, &select(&expr)).await;
            assert_eq!(
                got[1][1], None,
                "{spec} on {type_name}: NULL must stay NULL"
            );
            if !matches!(spec.kind, MaskKind::Null) {
                assert!(got[0][1].is_some(), "{spec} on {type_name}");
            }
            assert_eq!(
                rows(&client, &select(&reparsed(&expr))).await,
                got,
                "{spec} on {type_name} after sqlparser"
            );
            client
                .batch_execute(&format!(
                    "CREATE OR REPLACE TEMP VIEW v AS SELECT {expr} AS m FROM t"
                ))
                .await
                .unwrap();
            let typed = one(
                &client,
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = 'v'::regclass AND attname = 'm'",
            )
            .await;
            client.batch_execute("DROP VIEW v").await.unwrap();
            assert_eq!(
                typed.as_deref(),
                Some(spec.output_type(&ty).as_str()),
                "{spec} on {type_name}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} combinations ran");
}

/// `(kind, type, input SQL, expected text)`; `None` is NULL.
type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

#[tokio::test]
async fn expected_outputs() {
    let (_file, keys) = key_file();
    let client = keyed(&keys).await;
    let token = |v: &str| keys.token("v1", v).unwrap();
    let digits = |v: &str| keys.digits("v1", v).unwrap();
    let pseudo_cid = token("001203004567");
    let digits_cid = digits("001203004567");
    let token_abc = token("ABC");
    let cases: Vec<Case> = vec![
        (
            "mask = \"partial\"\nkeep_last = 4",
            "text",
            "'Nguyễn Văn An'",
            Some("*********n An"),
        ),
        (
            "mask = \"partial\"\nkeep_first = 1\nkeep_last = 1\nmask_char = \"•\"",
            "varchar(40)",
            "'Trần Thị Bích'",
            Some("T•••••••••••h"),
        ),
        (
            "mask = \"partial\"\nkeep_first = 2\nkeep_last = 2",
            "text",
            "'abc'",
            Some("***"),
        ),
        (
            "mask = \"partial\"\nkeep_first = 2\nkeep_last = 2",
            "text",
            "'abcd'",
            Some("****"),
        ),
        (
            "mask = \"partial\"\nkeep_first = 2\nkeep_last = 2",
            "text",
            "'abcde'",
            Some("ab*de"),
        ),
        (
            "mask = \"partial\"\nkeep_first = 2\nkeep_last = 2",
            "text",
            "''",
            Some(""),
        ),
        (
            "mask = \"partial\"\nkeep_first = 1\nkeep_length = false",
            "text",
            "'Nguyễn'",
            Some("N****"),
        ),
        (
            "mask = \"partial\"\nkeep_first = 1\nkeep_length = false",
            "text",
            "'A'",
            Some("****"),
        ),
        (
            "mask = \"partial\"\nkeep_last = 2",
            "char(20)",
            "'Lê Văn Tám'",
            Some("********ám"),
        ),
        ("mask = \"partial\"\nkeep_last = 2", "text", "NULL", None),
        (
            "mask = \"citizen_id\"",
            "text",
            "'001203004567'",
            Some("********4567"),
        ),
        (
            "mask = \"citizen_id\"",
            "char(12)",
            "'001203004567'",
            Some("********4567"),
        ),
        (
            "mask = \"citizen_id\"",
            "varchar(20)",
            "'12345'",
            Some("*****"),
        ),
        (
            "mask = \"citizen_id\"",
            "text",
            "'00120300456X'",
            Some("************"),
        ),
        (
            "mask = \"citizen_id\"",
            "text",
            "' 001203004567'",
            Some("*************"),
        ),
        ("mask = \"citizen_id\"", "text", "NULL", None),
        (
            "mask = \"social_insurance_code\"",
            "text",
            "'0123456789'",
            Some("******6789"),
        ),
        (
            "mask = \"social_insurance_code\"",
            "text",
            "'012345678'",
            Some("*********"),
        ),
        (
            "mask = \"health_card\"",
            "char(15)",
            "'DN4010123456789'",
            Some("DN*01**********"),
        ),
        (
            "mask = \"health_card\"",
            "text",
            "'dn4790123456789'",
            Some("dn*79**********"),
        ),
        (
            "mask = \"health_card\"",
            "text",
            "'DN40101234'",
            Some("**********"),
        ),
        (
            "mask = \"phone\"",
            "varchar(15)",
            "'0912345678'",
            Some("*******678"),
        ),
        (
            "mask = \"phone\"",
            "text",
            "'+84912345678'",
            Some("************"),
        ),
        (
            "mask = \"email\"",
            "text",
            "'an.nguyen@example.vn'",
            Some("a********@example.vn"),
        ),
        (
            "mask = \"email\"",
            "text",
            "'đức@bhxh.gov.vn'",
            Some("đ**@bhxh.gov.vn"),
        ),
        ("mask = \"email\"", "text", "'a@b.vn'", Some("*@b.vn")),
        (
            "mask = \"email\"",
            "text",
            "'no-at-sign'",
            Some("**********"),
        ),
        ("mask = \"email\"", "text", "'a@b@c'", Some("*****")),
        (
            "mask = \"email_domain\"",
            "text",
            "'an.nguyen@gmail.com'",
            Some("***@gmail.com"),
        ),
        (
            "mask = \"email_domain\"",
            "varchar(40)",
            "'đặng.thị.hồng@bhxh.gov.vn'",
            Some("***@bhxh.gov.vn"),
        ),
        ("mask = \"email_domain\"", "text", "'a@b@c'", Some("*****")),
        (
            "mask = \"email_domain\"",
            "text",
            "'không-có'",
            Some("********"),
        ),
        ("mask = \"email_domain\"", "text", "NULL", None),
        (
            "mask = \"partial\"\nkeep_after = \" \"",
            "text",
            "'Nguyễn Văn An'",
            Some("********** An"),
        ),
        (
            "mask = \"partial\"\nkeep_after = \" \"\nkeep_first = 1",
            "text",
            "'Trần Thị Bích Ngọc'",
            Some("T************ Ngọc"),
        ),
        (
            "mask = \"partial\"\nkeep_after = \" \"",
            "text",
            "'Ánh'",
            Some("***"),
        ),
        (
            "mask = \"partial\"\nkeep_before = \"-\"",
            "varchar(20)",
            "'HN-01-2345'",
            Some("HN-*******"),
        ),
        (
            "mask = \"partial\"\nkeep_before = \"-\"\nkeep_after = \"-\"",
            "text",
            "'HN-01-2345'",
            Some("HN-**-2345"),
        ),
        (
            "mask = \"partial\"\nkeep_before = \"@\"\nkeep_length = false\nmask_char = \"•\"",
            "text",
            "'đức@bhxh.gov.vn'",
            Some("đức@••••"),
        ),
        (
            "mask = \"partial\"\nkeep_before = \"-\"\nkeep_after = \"-\"",
            "text",
            "'a-b'",
            Some("***"),
        ),
        (
            "mask = \"partial\"\nkeep_before = \" \"",
            "char(12)",
            "'Lê Minh'",
            Some("Lê ****"),
        ),
        (
            "mask = \"partial\"\nkeep_after = \"/\"",
            "text",
            "NULL",
            None,
        ),
        (
            "mask = \"initials\"",
            "text",
            "'Nguyễn Văn An'",
            Some("N. V. A."),
        ),
        (
            "mask = \"initials\"",
            "varchar(40)",
            "'  đặng thị   hồng '",
            Some("Đ. T. H."),
        ),
        ("mask = \"initials\"", "char(20)", "'Ánh'", Some("Á.")),
        ("mask = \"initials\"", "text", "''", Some("")),
        ("mask = \"initials\"", "text", "NULL", None),
        (
            "mask = \"year\"",
            "date",
            "'1990-07-15'",
            Some("1990-01-01"),
        ),
        (
            "mask = \"month\"",
            "date",
            "'1990-07-15'",
            Some("1990-07-01"),
        ),
        (
            "mask = \"year\"",
            "timestamp",
            "'1990-07-15 13:45:00'",
            Some("1990-01-01 00:00:00"),
        ),
        (
            "mask = \"month\"",
            "timestamp(3)",
            "'1990-07-15 13:45:00.123'",
            Some("1990-07-01 00:00:00"),
        ),
        (
            "mask = \"year\"",
            "timestamptz",
            "'1990-07-15 13:45:00+07'",
            Some("1990-01-01 00:00:00+07"),
        ),
        (
            "mask = \"month\"",
            "timestamptz",
            "'1990-07-01 02:00:00+09'",
            Some("1990-07-01 00:00:00+07"),
        ),
        ("mask = \"year\"", "date", "NULL", None),
        (
            "mask = \"age_band\"",
            "date",
            "current_date - interval '35 years 2 days'",
            Some("30-39"),
        ),
        (
            "mask = \"age_band\"\nwidth = 5",
            "timestamp",
            "current_date - interval '35 years 2 days'",
            Some("35-39"),
        ),
        (
            "mask = \"age_band\"\nwidth = 1",
            "timestamptz",
            "current_date - interval '35 years 2 days'",
            Some("35"),
        ),
        (
            "mask = \"age_band\"",
            "date",
            "current_date - interval '9 years'",
            Some("0-9"),
        ),
        ("mask = \"age_band\"", "date", "NULL", None),
        (
            "mask = \"round\"\ndigits = -3",
            "int4",
            "123456",
            Some("123000"),
        ),
        (
            "mask = \"round\"\ndigits = -3",
            "int8",
            "-987654321",
            Some("-987654000"),
        ),
        (
            "mask = \"round\"\ndigits = 0",
            "numeric(12,2)",
            "1234.56",
            Some("1235.00"),
        ),
        (
            "mask = \"round\"\ndigits = 1",
            "float8",
            "3.14159",
            Some("3.1"),
        ),
        ("mask = \"round\"\ndigits = -1", "int2", "NULL", None),
        (
            "mask = \"bucket\"\nwidth = 1000",
            "int4",
            "123456",
            Some("123000"),
        ),
        (
            "mask = \"bucket\"\nwidth = 1000",
            "numeric(12,2)",
            "-1234.56",
            Some("-2000.00"),
        ),
        (
            "mask = \"bucket\"\nwidth = \"0.5\"",
            "numeric(12,2)",
            "1234.56",
            Some("1234.50"),
        ),
        (
            "mask = \"bucket\"\nwidth = 0.25",
            "float8",
            "3.14159",
            Some("3"),
        ),
        (
            "mask = \"bucket\"\nwidth = 1000000",
            "money",
            "'12345678.90'",
            Some("$12,000,000.00"),
        ),
        ("mask = \"bucket\"\nwidth = 10", "int8", "NULL", None),
        ("mask = \"null\"", "text", "'x'", None),
        ("mask = \"null\"", "date", "'2000-01-01'", None),
        (
            "mask = \"constant\"\nvalue = \"Ẩn danh\"",
            "text",
            "'Nguyễn Văn An'",
            Some("Ẩn danh"),
        ),
        (
            "mask = \"constant\"\nvalue = 0",
            "numeric(12,2)",
            "1234.56",
            Some("0.00"),
        ),
        (
            "mask = \"constant\"\nvalue = 1900-01-01",
            "date",
            "'1990-07-15'",
            Some("1900-01-01"),
        ),
        ("mask = \"constant\"\nvalue = \"x\"", "text", "NULL", None),
        (
            "mask = \"pseudonym\"\nkey = \"v1\"",
            "text",
            "'001203004567'",
            Some(pseudo_cid.as_str()),
        ),
        (
            "mask = \"pseudonym\"\nkey = \"v1\"",
            "char(12)",
            "'001203004567'",
            Some(pseudo_cid.as_str()),
        ),
        (
            "mask = \"pseudonym\"\nkey = \"v1\"",
            "varchar(12)",
            "'001203004567'",
            Some(pseudo_cid.as_str()),
        ),
        ("mask = \"pseudonym\"\nkey = \"v1\"", "text", "NULL", None),
        (
            "mask = \"pseudonym_digits\"\nkey = \"v1\"",
            "text",
            "'001203004567'",
            Some(digits_cid.as_str()),
        ),
        (
            "mask = \"pseudonym_digits\"\nkey = \"v1\"",
            "char(12)",
            "'001203004567'",
            Some(digits_cid.as_str()),
        ),
        (
            "mask = \"pseudonym_digits\"\nkey = \"v1\"",
            "text",
            "'ABC'",
            Some(token_abc.as_str()),
        ),
        (
            "mask = \"pseudonym_digits\"\nkey = \"v1\"",
            "varchar(12)",
            "'ABC'",
            Some(&token_abc[..12]),
        ),
        (
            "mask = \"pseudonym_digits\"\nkey = \"v1\"",
            "text",
            "NULL",
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (src, type_name, input, expected) in cases {
        let spec = spec(src);
        let ty = ty(type_name);
        let expr = spec.sql_expr("s.c", &ty, &keys).unwrap();
        let sql = format!(
            "SELECT ({expr})::text FROM (SELECT ({input})::{} AS c) s",
            ty.canonical
        );
        let got = one(&client, &sql).await;
        if got.as_deref() != expected {
            failures.push(format!(
                "{spec} on {type_name} of {input}: got {got:?}, expected {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(digits_cid.len(), 12);
    assert!(digits_cid.bytes().all(|b| b.is_ascii_digit()));
}

#[tokio::test]
async fn sql_pseudonyms_are_hmac_sha256() {
    use hmac::{Hmac, Mac};
    let (_file, keys) = key_file();
    let client = keyed(&keys).await;
    let expr = spec("mask = \"pseudonym\"\nkey = \"v1\"")
        .sql_expr("c", &ty("text"), &keys)
        .unwrap();
    let secret = [
        0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
        0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
        0x67, 0x89,
    ];
    for value in ["001203004567", "Nguyễn Văn An", "", "x'y"] {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(value.as_bytes());
        let full: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sql = format!(
            "SELECT {expr} FROM (SELECT {}::text AS c) s",
            maskgate_mask::quote_literal(value).unwrap()
        );
        assert_eq!(
            one(&client, &sql).await.unwrap(),
            format!("v1:{}", &full[..32]),
            "{value}"
        );
    }
}

/// A small deterministic generator: the data only has to be varied.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn citizen_ids(n: usize) -> Vec<String> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let province = rng.next() % 96 + 1;
        let id = format!(
            "{province:03}{}{:08}",
            rng.next() % 4,
            rng.next() % 100_000_000
        );
        if seen.insert(id.clone()) {
            out.push(id);
        }
    }
    out
}

fn names(n: usize) -> Vec<String> {
    let mut rng = XorShift(42);
    let family = [
        "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
        "Hồ", "Ngô", "Dương", "Lý",
    ];
    let middle = [
        "Văn", "Thị", "Hữu", "Đức", "Ngọc", "Minh", "Thanh", "Quốc", "Xuân",
    ];
    let given = [
        "An", "Bình", "Cường", "Dũng", "Hạnh", "Hương", "Khánh", "Linh", "Nga", "Phúc", "Quyên",
        "Sơn", "Tâm", "Thảo", "Uyên", "Yến", "Ánh", "Ý",
    ];
    (0..n)
        .map(|_| {
            format!(
                "{} {} {}",
                rng.pick(&family),
                rng.pick(&middle),
                rng.pick(&given)
            )
        })
        .collect()
}

fn values_list(values: &[String]) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("({i}, {})", maskgate_mask::quote_literal(v).unwrap()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn properties_over_generated_register_data() {
    const N: usize = 3000;
    let (_file, keys) = key_file();
    let client = keyed(&keys).await;
    fresh_schema(&client, "mask_props").await;
    let cids = citizen_ids(N);
    let people = names(N);
    // b: two thirds of a's IDs (some twice), plus IDs a does not have.
    let extra = citizen_ids(N + 1000)[N..].to_vec();
    let mut b_ids: Vec<String> = cids.iter().step_by(3).cloned().collect();
    b_ids.extend(cids.iter().skip(1).step_by(3).cloned());
    b_ids.extend(cids.iter().step_by(7).cloned());
    b_ids.extend(extra);
    client
        .batch_execute(&format!(
            "CREATE TABLE a (id int, cid text, name varchar(60));
             CREATE TABLE b (id int, cid char(12));
             CREATE TEMP TABLE n (id int, name text);
             INSERT INTO a (id, cid) VALUES {};
             INSERT INTO n VALUES {};
             UPDATE a SET name = n.name FROM n WHERE n.id = a.id;
             INSERT INTO b VALUES {};",
            values_list(&cids),
            values_list(&people),
            values_list(&b_ids)
        ))
        .await
        .unwrap();

    let text = ty("text");
    let chr = ty("char(12)");
    let cid_mask = spec("mask = \"citizen_id\"")
        .sql_expr("a.cid", &text, &keys)
        .unwrap();
    let name_mask = spec("mask = \"partial\"\nkeep_first = 1\nkeep_last = 1")
        .sql_expr("a.name", &ty("varchar(60)"), &keys)
        .unwrap();
    let pseudo = spec("mask = \"pseudonym\"\nkey = \"v1\"");
    let pa = pseudo.sql_expr("a.cid", &text, &keys).unwrap();
    let pb = pseudo.sql_expr("b.cid", &chr, &keys).unwrap();
    let digits = spec("mask = \"pseudonym_digits\"\nkey = \"v1\"");
    let da = digits.sql_expr("a.cid", &text, &keys).unwrap();
    let db = digits.sql_expr("b.cid", &chr, &keys).unwrap();

    // Deterministic: the same in a new session.
    let all = format!("SELECT a.id, {cid_mask}, {name_mask}, {pa}, {da} FROM a ORDER BY a.id");
    let first = rows(&client, &all).await;
    let other = keyed(&keys).await;
    other
        .batch_execute("SET search_path = mask_props")
        .await
        .unwrap();
    assert_eq!(rows(&other, &all).await, first);
    assert_eq!(first.len(), N);

    for (i, row) in first.iter().enumerate() {
        let cid = &cids[i];
        let masked = row[1].as_deref().unwrap();
        assert_eq!(masked, format!("********{}", &cid[8..]));
        assert!(!masked.contains(&cid[..8]));
        let name: Vec<char> = people[i].chars().collect();
        let masked_name: Vec<char> = row[2].as_deref().unwrap().chars().collect();
        assert_eq!(masked_name.len(), name.len(), "{}", people[i]);
        assert_eq!(masked_name[0], name[0]);
        assert_eq!(masked_name[name.len() - 1], name[name.len() - 1]);
        assert!(masked_name[1..name.len() - 1].iter().all(|&c| c == '*'));
        assert_eq!(row[3], keys.token("v1", cid), "SQL and local tokens agree");
        assert_eq!(row[4], keys.digits("v1", cid));
    }
    let distinct = one(
        &client,
        &format!("SELECT count(DISTINCT {pa}) = count(DISTINCT a.cid) AND count(DISTINCT {da}) = count(DISTINCT a.cid) FROM a"),
    )
    .await;
    assert_eq!(distinct.as_deref(), Some("t"));

    // Joins on pseudonyms pair exactly the rows that joins on raw values pair,
    // across a text and a char(12) column.
    let raw = "SELECT a.id, b.id FROM a JOIN b ON a.cid = b.cid::text";
    for (left, right) in [(&pa, &pb), (&da, &db)] {
        let masked = format!("SELECT a.id, b.id FROM a JOIN b ON {left} = {right}");
        let counts = rows(
            &client,
            &format!(
                "SELECT (SELECT count(*) FROM ({raw}) r), (SELECT count(*) FROM ({masked}) m),
                        (SELECT count(*) FROM (({raw}) EXCEPT ({masked})) x),
                        (SELECT count(*) FROM (({masked}) EXCEPT ({raw})) y)"
            ),
        )
        .await;
        let counts: Vec<i64> = counts[0]
            .iter()
            .map(|c| c.as_deref().unwrap().parse().unwrap())
            .collect();
        assert!(counts[0] > 2000, "{counts:?}");
        assert_eq!(counts[1..], [counts[0], 0, 0], "{left}");
    }
}

#[tokio::test]
async fn hostile_parameters_are_refused_or_stay_literals() {
    let (_file, keys) = key_file();
    let client = keyed(&keys).await;
    fresh_schema(&client, "mask_hostile").await;
    client
        .batch_execute("CREATE TABLE x (c text); INSERT INTO x VALUES ('kept')")
        .await
        .unwrap();

    for bad in [
        "mask = \"partial\"\nmask_char = \"'\"",
        "mask = \"partial\"\nmask_char = \"\\\\\"",
        "mask = \"partial\"\nmask_char = \"'; DROP TABLE x; --\"",
        "mask = \"pseudonym\"\nkey = \"v1'; DROP TABLE x; --\"",
        "mask = \"pseudonym_digits\"\nkey = \"v1')::text; DROP TABLE x; --\"",
        "mask = \"bucket\"\nwidth = \"1; DROP TABLE x\"",
        "mask = \"round\"\ndigits = \"1; DROP TABLE x\"",
    ] {
        let table: toml::Table = toml::from_str(bad).unwrap();
        assert!(MaskSpec::from_toml(&table).is_err(), "{bad}");
    }
    let text = ty("text");
    assert!(matches!(
        spec("mask = \"null\"").sql_expr("c); DROP TABLE x; --", &text, &keys),
        Err(MaskError::InvalidColumnRef { .. })
    ));

    let hostile = [
        "'; DROP TABLE x; --",
        "\\'; DROP TABLE x; --",
        "\\\\'); DROP TABLE x; --",
        "$$; DROP TABLE x; $$",
        "x\" ; DROP TABLE x; --",
        "/* */'' ; DROP TABLE x",
    ];
    for scs in ["on", "off"] {
        client
            .batch_execute(&format!(
                "SET standard_conforming_strings = {scs}; SET escape_string_warning = off"
            ))
            .await
            .unwrap();
        for value in hostile {
            let constant = MaskSpec::new(MaskKind::Constant {
                value: value.to_string(),
            })
            .unwrap();
            let expr = constant.sql_expr("x.c", &text, &keys).unwrap();
            assert_eq!(
                one(&client, &format!("SELECT {expr} FROM x"))
                    .await
                    .as_deref(),
                Some(value),
                "standard_conforming_strings = {scs}"
            );
        }
        let mask = spec("mask = \"partial\"\nkeep_first = 1\nmask_char = \"’\"")
            .sql_expr("x.c", &text, &keys)
            .unwrap();
        assert_eq!(
            one(&client, &format!("SELECT {mask} FROM x"))
                .await
                .as_deref(),
            Some("k’’’")
        );
    }
    assert_eq!(
        one(&client, "SELECT c FROM x").await.as_deref(),
        Some("kept"),
        "table x survived"
    );
}

#[tokio::test]
async fn key_material_travels_only_in_startup_options() {
    let (_file, keys) = key_file();
    let options = keys.upstream_options();
    let pads: Vec<String> = options
        .split(' ')
        .filter_map(|part| part.split_once('=').map(|(_, hex)| hex.to_string()))
        .collect();
    assert_eq!(pads.len(), 4);

    let session = keyed(&keys).await;
    session
        .batch_execute("SET log_statement = 'all'; SET log_min_duration_statement = 0")
        .await
        .unwrap();
    let pid = one(&session, "SELECT pg_backend_pid()").await.unwrap();
    let expr = spec("mask = \"pseudonym\"\nkey = \"v1\"")
        .sql_expr("c", &ty("text"), &keys)
        .unwrap();
    let statement = format!("SELECT {expr} FROM (VALUES ('001203004567')) s(c)");
    let token = one(&session, &statement).await;
    assert_eq!(token, keys.token("v1", "001203004567"));

    let observer = connect(None).await;
    let seen = one(
        &observer,
        &format!("SELECT query FROM pg_stat_activity WHERE pid = {pid}"),
    )
    .await
    .unwrap();
    assert!(seen.contains("current_setting"), "{seen}");
    let log = PgCluster::shared()
        .log_path()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default());
    for pad in &pads {
        assert!(!statement.contains(pad.as_str()));
        assert!(!seen.contains(pad.as_str()));
        if let Some(log) = &log {
            assert!(!log.contains(pad.as_str()), "pad in the server log");
        }
    }
    if let Some(log) = &log {
        assert!(log.contains("current_setting('maskgate.pk_7631_o')"));
    }

    // The session itself can read them: statement analysis must refuse
    // SHOW / current_setting / pg_settings on maskgate.* for restricted users.
    let shown = one(&session, "SHOW maskgate.pk_7631_i").await.unwrap();
    assert!(pads.contains(&shown));

    // Without the settings the expression fails instead of masking weakly.
    let bare = connect(None).await;
    let err = bare.simple_query(&statement).await.unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("unrecognized configuration parameter")),
        "{err:?}"
    );
}

#[tokio::test]
async fn key_files_from_disk() {
    let (file, keys) = key_file();
    assert!(keys.contains("v1") && keys.contains("k2026-01"));
    assert_eq!(keys.current(), Some("v1"));
    assert!(!format!("{keys:?}").contains(SECRET_B64));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            PseudonymKeys::load(file.path()),
            Err(MaskError::KeyFilePermissions { .. })
        ));
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
        PseudonymKeys::load(file.path()).unwrap();
    }
    let missing = file.path().with_extension("missing");
    assert!(matches!(
        PseudonymKeys::load(&missing),
        Err(MaskError::KeyFileRead { .. })
    ));
}
