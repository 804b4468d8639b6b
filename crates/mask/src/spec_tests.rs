//! Unit tests of the mask catalog: parsing, validation, type fit.

use super::*;

fn parse(src: &str) -> Result<MaskSpec, MaskError> {
    let table: Table = toml::from_str(src).expect("test TOML is valid");
    MaskSpec::from_toml(&table)
}

fn ok(src: &str) -> MaskSpec {
    parse(src).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str) -> MaskError {
    match parse(src) {
        Ok(spec) => panic!("{src} should be rejected, got {spec}"),
        Err(e) => e,
    }
}

#[test]
fn parses_every_kind() {
    let cases = [
        (
            r#"mask = "partial""#,
            MaskKind::Partial {
                keep_first: 0,
                keep_last: 0,
                mask_char: '*',
                keep_length: true,
            },
        ),
        (
            r#"mask = "partial"
            keep_first = 1
            keep_last = 4
            mask_char = "•"
            keep_length = false"#,
            MaskKind::Partial {
                keep_first: 1,
                keep_last: 4,
                mask_char: '•',
                keep_length: false,
            },
        ),
        (r#"mask = "citizen_id""#, MaskKind::CitizenId),
        (
            r#"mask = "social_insurance_code""#,
            MaskKind::SocialInsuranceCode,
        ),
        (r#"mask = "health_card""#, MaskKind::HealthCard),
        (r#"mask = "phone""#, MaskKind::Phone),
        (r#"mask = "email""#, MaskKind::Email),
        (r#"mask = "initials""#, MaskKind::Initials),
        (r#"mask = "year""#, MaskKind::Year),
        (r#"mask = "month""#, MaskKind::Month),
        (r#"mask = "age_band""#, MaskKind::AgeBand { width: 10 }),
        (
            r#"mask = "age_band"
            width = 5"#,
            MaskKind::AgeBand { width: 5 },
        ),
        (
            r#"mask = "round"
            digits = -3"#,
            MaskKind::Round { digits: -3 },
        ),
        (
            r#"mask = "bucket"
            width = 1000"#,
            MaskKind::Bucket {
                width: NumericLiteral::parse_positive("1000").unwrap(),
            },
        ),
        (
            r#"mask = "bucket"
            width = "0.50""#,
            MaskKind::Bucket {
                width: NumericLiteral::parse_positive("0.5").unwrap(),
            },
        ),
        (
            r#"mask = "bucket"
            width = 0.25"#,
            MaskKind::Bucket {
                width: NumericLiteral::parse_positive("0.25").unwrap(),
            },
        ),
        (r#"mask = "null""#, MaskKind::Null),
        (
            r#"mask = "constant"
            value = "Ẩn danh""#,
            MaskKind::Constant {
                value: "Ẩn danh".into(),
            },
        ),
        (
            r#"mask = "constant"
            value = 0"#,
            MaskKind::Constant { value: "0".into() },
        ),
        (
            r#"mask = "constant"
            value = 1900-01-01"#,
            MaskKind::Constant {
                value: "1900-01-01".into(),
            },
        ),
        (
            r#"mask = "pseudonym"
            key = "k2026-01""#,
            MaskKind::Pseudonym {
                key: "k2026-01".into(),
            },
        ),
        (
            r#"mask = "pseudonym_digits"
            key = "main_key""#,
            MaskKind::PseudonymDigits {
                key: "main_key".into(),
            },
        ),
    ];
    for (src, kind) in cases {
        assert_eq!(ok(src).kind, kind, "{src}");
    }
    let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
    assert_eq!(names.join(", "), KIND_NAMES);
}

#[test]
fn display_is_compact_and_escaped() {
    let show = |src: &str| ok(src).to_string();
    assert_eq!(
        show("mask = \"partial\"\nkeep_last = 4"),
        "partial(keep_first=0, keep_last=4, mask_char='*')"
    );
    assert_eq!(
        show("mask = \"partial\"\nkeep_first = 2\nmask_char = \"x\"\nkeep_length = false"),
        "partial(keep_first=2, keep_last=0, mask_char='x', keep_length=false)"
    );
    assert_eq!(show("mask = \"citizen_id\""), "citizen_id");
    assert_eq!(show("mask = \"age_band\""), "age_band(width=10)");
    assert_eq!(show("mask = \"round\"\ndigits = -3"), "round(digits=-3)");
    assert_eq!(
        show("mask = \"bucket\"\nwidth = \"0.5\""),
        "bucket(width=0.5)"
    );
    assert_eq!(
        show("mask = \"pseudonym\"\nkey = \"k1\""),
        "pseudonym(key=k1)"
    );
    assert_eq!(
        show("mask = \"constant\"\nvalue = \"a\\nb\\\"\""),
        "constant(value=\"a\\nb\\\"\")"
    );
}

#[test]
fn kind_errors() {
    assert!(matches!(
        err("keep_last = 4"),
        MaskError::MissingKind { .. }
    ));
    assert!(matches!(err("mask = 4"), MaskError::KindNotString { .. }));
    let e = err(r#"mask = "Partial""#);
    assert!(matches!(e, MaskError::UnknownKind { .. }));
    assert!(e.to_string().contains("partial, citizen_id"), "{e}");
}

#[test]
fn unknown_params_name_the_allowed_ones() {
    let e = err("mask = \"partial\"\nkeep_end = 4");
    assert_eq!(
        e.to_string(),
        "unknown parameter \"keep_end\" for mask `partial`; allowed: keep_first, keep_last, keep_before, keep_after, mask_char, keep_length"
    );
    let e = err("mask = \"citizen_id\"\nkeep_last = 2");
    assert!(e.to_string().contains("takes no parameters"), "{e}");
    let e = err("mask = \"round\"\nwidth = 2");
    assert!(e.to_string().ends_with("allowed: digits"), "{e}");
}

#[test]
fn parameter_errors() {
    let type_err = |src: &str, param: &str| match err(src) {
        MaskError::ParamType { param: p, .. } => assert_eq!(p, param, "{src}"),
        other => panic!("{src}: {other}"),
    };
    type_err("mask = \"partial\"\nkeep_last = \"4\"", "keep_last");
    type_err("mask = \"partial\"\nkeep_first = 1.0", "keep_first");
    type_err("mask = \"partial\"\nkeep_length = 1", "keep_length");
    type_err("mask = \"partial\"\nmask_char = 42", "mask_char");
    type_err("mask = \"age_band\"\nwidth = \"10\"", "width");
    type_err("mask = \"round\"\ndigits = true", "digits");
    type_err("mask = \"bucket\"\nwidth = true", "width");
    type_err("mask = \"constant\"\nvalue = [1]", "value");
    type_err("mask = \"pseudonym\"\nkey = 1", "key");

    let missing = |src: &str, param: &str| match err(src) {
        MaskError::MissingParam { param: p, .. } => assert_eq!(p, param, "{src}"),
        other => panic!("{src}: {other}"),
    };
    missing("mask = \"round\"", "digits");
    missing("mask = \"bucket\"", "width");
    missing("mask = \"constant\"", "value");
    missing("mask = \"pseudonym\"", "key");
    missing("mask = \"pseudonym_digits\"", "key");

    let range = |src: &str| match err(src) {
        e @ MaskError::OutOfRange { .. } => e.to_string(),
        other => panic!("{src}: {other}"),
    };
    assert!(range("mask = \"partial\"\nkeep_last = -1").contains("0..="));
    range("mask = \"partial\"\nkeep_first = 4294967296");
    assert!(range("mask = \"age_band\"\nwidth = 0").contains("1..=100"));
    range("mask = \"age_band\"\nwidth = 101");
    assert!(range("mask = \"round\"\ndigits = 13").contains("-12..=12"));
    range("mask = \"round\"\ndigits = -13");

    for width in [
        "0",
        "-5",
        "\"0.0\"",
        "\"1e3\"",
        "\"1,000\"",
        "\" 5\"",
        "nan",
        "inf",
        "-0.5",
    ] {
        let src = format!("mask = \"bucket\"\nwidth = {width}");
        assert!(
            matches!(
                err(&src),
                MaskError::InvalidDecimal { .. } | MaskError::ParamType { .. }
            ),
            "{src}"
        );
    }
}

#[test]
fn mask_char_rules() {
    for good in ["*", "x", "X", "#", "•", "×", "█", "0"] {
        ok(&format!("mask = \"partial\"\nmask_char = \"{good}\""));
    }
    for bad in [
        "", "**", "'", "\\\"", "\\\\", "`", " ", "\\t", "\\n", "\\r", "\\u0000", "\\u0007",
        "\\u00a0", "\\u200b", "\\u202e", "\\ufeff", "\\u0301", "\\u0085", "'--",
    ] {
        let src = format!("mask = \"partial\"\nmask_char = \"{bad}\"");
        assert!(
            matches!(err(&src), MaskError::InvalidMaskChar { .. }),
            "{src}"
        );
    }
    let e = err("mask = \"partial\"\nmask_char = \"'\"");
    assert!(e.to_string().contains("quotes"), "{e}");
    assert!(MaskSpec::new(MaskKind::Partial {
        keep_first: 0,
        keep_last: 0,
        mask_char: '\\',
        keep_length: true
    })
    .is_err());
}

#[test]
fn key_ids() {
    ok("mask = \"pseudonym\"\nkey = \"A-z_09\"");
    ok(&format!(
        "mask = \"pseudonym\"\nkey = \"{}\"",
        "k".repeat(64)
    ));
    for bad in [
        String::new(),
        "k".repeat(65),
        "k 1".into(),
        "k.1".into(),
        "k'1".into(),
        "k\\\\1".into(),
        "khóa".into(),
        "k\\u0000".into(),
        "'; DROP TABLE x; --".into(),
    ] {
        for kind in ["pseudonym", "pseudonym_digits"] {
            let src = format!("mask = \"{kind}\"\nkey = \"{bad}\"");
            assert!(matches!(err(&src), MaskError::InvalidKeyId { .. }), "{src}");
        }
    }
}

#[test]
fn constants_accept_anything_but_nul() {
    for value in [
        "'; DROP TABLE x; --",
        "a\\\\b",
        "O''Brien",
        "Nguyễn Văn An",
        "",
        "$$",
    ] {
        ok(&format!("mask = \"constant\"\nvalue = \"{value}\""));
    }
    assert_eq!(
        err("mask = \"constant\"\nvalue = \"a\\u0000b\""),
        MaskError::ConstantNul
    );
    assert!(MaskSpec::new(MaskKind::Constant { value: "\0".into() }).is_err());
}

#[test]
fn hostile_values_never_survive_into_a_spec() {
    let hostile = [
        "'; DROP TABLE x; --",
        "'",
        "\\'",
        "\\",
        "\0",
        "$$; SELECT 1; $$",
        "1; SELECT pg_sleep(10)",
        "1.5'",
        "Nguyễn",
        "\u{202e}*",
    ];
    let table = |pairs: &[(&str, Value)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Table>()
    };
    let s = |v: &str| Value::String(v.to_string());
    for h in hostile {
        for t in [
            table(&[("mask", s(h))]),
            table(&[("mask", s("partial")), ("mask_char", s(h))]),
            table(&[("mask", s("bucket")), ("width", s(h))]),
            table(&[("mask", s("pseudonym")), ("key", s(h))]),
            table(&[("mask", s("pseudonym_digits")), ("key", s(h))]),
            table(&[("mask", s("partial")), (h, Value::Integer(1))]),
        ] {
            let e = MaskSpec::from_toml(&t).expect_err(h);
            let msg = e.to_string();
            assert!(!msg.contains(['\0', '\n', '\r']), "{msg}");
        }
        // Constants may hold anything but NUL; they stay inert data here.
        let constant = MaskSpec::from_toml(&table(&[("mask", s("constant")), ("value", s(h))]));
        assert_eq!(constant.is_ok(), !h.contains('\0'), "{h:?}");
    }
}

#[test]
fn type_acceptance() {
    let accepts = |src: &str, types: &[&str]| {
        let spec = ok(src);
        for t in types {
            spec.check_type(t)
                .unwrap_or_else(|e| panic!("{spec} on {t}: {e}"));
        }
    };
    let text = [
        "text",
        "varchar",
        "character varying(50)",
        "char(15)",
        "bpchar",
    ];
    let dates = [
        "date",
        "timestamp",
        "timestamptz",
        "timestamp(3) with time zone",
    ];
    let numbers = [
        "integer",
        "int4",
        "bigint",
        "smallint",
        "numeric",
        "numeric(12,2)",
        "money",
        "real",
        "double precision",
    ];
    for kind in [
        "partial",
        "citizen_id",
        "social_insurance_code",
        "health_card",
        "phone",
        "email",
        "initials",
    ] {
        accepts(&format!("mask = \"{kind}\""), &text);
    }
    accepts("mask = \"pseudonym\"\nkey = \"k1\"", &text);
    accepts("mask = \"pseudonym_digits\"\nkey = \"k1\"", &text);
    for kind in ["year", "month", "age_band"] {
        accepts(&format!("mask = \"{kind}\""), &dates);
    }
    accepts("mask = \"round\"\ndigits = -3", &numbers);
    accepts("mask = \"bucket\"\nwidth = 1000", &numbers);
    let anything = [
        &text[..],
        &dates,
        &numbers,
        &["uuid", "jsonb", "text[]", "whatever"],
    ]
    .concat();
    accepts("mask = \"null\"", &anything);
    let unknown = ["uuid", "jsonb", "text[]", "whatever"];
    accepts(
        "mask = \"constant\"\nvalue = \"x\"",
        &[&text[..], &unknown].concat(),
    );
    accepts(
        "mask = \"constant\"\nvalue = 0",
        &[&numbers[..], &unknown].concat(),
    );
    accepts("mask = \"constant\"\nvalue = 1900-01-01", &dates);
}

#[test]
fn type_rejection() {
    let rejects = |src: &str, t: &str| match ok(src).check_type(t) {
        Err(e @ MaskError::TypeMismatch { .. }) => e.to_string(),
        other => panic!("{src} on {t}: {other:?}"),
    };
    let e = rejects("mask = \"initials\"", "date");
    assert!(e.contains("accepts text types"), "{e}");
    let e = rejects("mask = \"year\"", "text");
    assert!(e.contains("date, timestamp"), "{e}");
    rejects("mask = \"month\"", "integer");
    rejects("mask = \"age_band\"", "varchar(10)");
    rejects("mask = \"round\"\ndigits = -2", "text");
    rejects("mask = \"bucket\"\nwidth = 10", "date");
    rejects("mask = \"partial\"\nkeep_last = 4", "integer");
    rejects("mask = \"citizen_id\"", "bigint");
    rejects("mask = \"email\"", "timestamptz");
    rejects("mask = \"pseudonym\"\nkey = \"k\"", "bigint");
    let e = ok("mask = \"partial\"").check_type("uuid").unwrap_err();
    assert!(matches!(e, MaskError::UnsupportedType { .. }), "{e}");
}

#[test]
fn masks_that_would_hide_nothing_are_rejected() {
    let hides_nothing = |src: &str, t: &str| {
        assert!(
            matches!(ok(src).check_type(t), Err(MaskError::HidesNothing { .. })),
            "{src} on {t}"
        )
    };
    let fine = |src: &str, t: &str| {
        ok(src)
            .check_type(t)
            .unwrap_or_else(|e| panic!("{src} on {t}: {e}"))
    };
    let partial = "mask = \"partial\"\nkeep_first = 4\nkeep_last = 8";
    hides_nothing(partial, "char(12)");
    hides_nothing(partial, "varchar(10)");
    fine(partial, "char(13)");
    fine(partial, "text");
    hides_nothing("mask = \"partial\"\nkeep_last = 1", "char");
    fine("mask = \"partial\"", "char");
    hides_nothing(
        "mask = \"partial\"\nkeep_first = 4294967295\nkeep_last = 4294967295",
        "varchar(10485760)",
    );

    hides_nothing("mask = \"round\"\ndigits = 0", "integer");
    hides_nothing("mask = \"round\"\ndigits = 2", "numeric(12,2)");
    fine("mask = \"round\"\ndigits = 1", "numeric(12,2)");
    fine("mask = \"round\"\ndigits = 2", "numeric");
    fine("mask = \"round\"\ndigits = 2", "double precision");
    fine("mask = \"round\"\ndigits = -1", "bigint");

    hides_nothing("mask = \"bucket\"\nwidth = 1", "integer");
    hides_nothing("mask = \"bucket\"\nwidth = \"0.01\"", "numeric(12,2)");
    fine("mask = \"bucket\"\nwidth = \"0.05\"", "numeric(12,2)");
    fine("mask = \"bucket\"\nwidth = 2", "smallint");
    fine("mask = \"bucket\"\nwidth = \"0.5\"", "real");
    hides_nothing("mask = \"bucket\"\nwidth = 100", "numeric(10,-2)");
    fine("mask = \"bucket\"\nwidth = 1000", "numeric(10,-2)");
    assert!(matches!(
        ok("mask = \"bucket\"\nwidth = \"0.5\"").check_type("integer"),
        Err(MaskError::FinerThanColumn {
            max_fraction: 0,
            ..
        })
    ));
    assert!(matches!(
        ok("mask = \"bucket\"\nwidth = \"0.005\"").check_type("numeric(12,2)"),
        Err(MaskError::FinerThanColumn {
            max_fraction: 2,
            ..
        })
    ));
}

#[test]
fn identifier_shortcuts_need_room_for_the_identifier() {
    for (kind, needed) in [
        ("citizen_id", 12),
        ("social_insurance_code", 10),
        ("health_card", 15),
        ("phone", 10),
    ] {
        let spec = ok(&format!("mask = \"{kind}\""));
        assert_eq!(spec.kind.fixed_length(), Some(needed));
        spec.check_type(&format!("char({needed})")).unwrap();
        spec.check_type(&format!("varchar({})", needed + 5))
            .unwrap();
        match spec.check_type(&format!("char({})", needed - 1)) {
            Err(MaskError::TooShort {
                needed: n, length, ..
            }) => {
                assert_eq!((n, length), (needed, needed - 1))
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[test]
fn specs_built_in_code_are_validated_too() {
    assert!(MaskSpec::new(MaskKind::AgeBand { width: 0 }).is_err());
    assert!(MaskSpec::new(MaskKind::Round { digits: 40 }).is_err());
    assert!(MaskSpec::new(MaskKind::Pseudonym { key: "a b".into() }).is_err());
    assert!(MaskSpec::new(MaskKind::Email).is_ok());
}

#[test]
fn partial_around_separators() {
    match ok("mask = \"partial\"\nkeep_after = \" \"\nkeep_first = 1").kind {
        MaskKind::PartialAround {
            keep_before: None,
            keep_after: Some(after),
            keep_first: 1,
            ..
        } => assert_eq!(after, " "),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok("mask = \"partial\"\nkeep_before = \"@\"\nkeep_length = false").to_string(),
        "partial(keep_before=\"@\", keep_last=0, mask_char='*', keep_length=false)"
    );
    assert!(matches!(
        err("mask = \"partial\"\nkeep_before = \"@\"\nkeep_first = 2"),
        MaskError::Conflict { .. }
    ));
    assert!(matches!(
        err("mask = \"partial\"\nkeep_after = \"@\"\nkeep_last = 2"),
        MaskError::Conflict { .. }
    ));
    for bad in ["", "\\u0000", "\\n", "\\\\", "abcdefghijklmnopq"] {
        let src = format!("mask = \"partial\"\nkeep_after = \"{bad}\"");
        assert!(
            matches!(err(&src), MaskError::InvalidSeparator { .. }),
            "{src}"
        );
    }
    assert!(matches!(
        err("mask = \"partial\"\nkeep_after = 1"),
        MaskError::ParamType { .. }
    ));
    ok("mask = \"partial\"\nkeep_before = \"'; DROP TABLE x\"");
}

#[test]
fn email_domain_is_a_text_mask() {
    let spec = ok("mask = \"email_domain\"");
    assert_eq!(spec.kind, MaskKind::EmailDomain);
    spec.check_type("varchar(40)").unwrap();
    assert!(spec.check_type("date").is_err());
    assert!(matches!(
        err("mask = \"email_domain\"\nkeep = 1"),
        MaskError::UnknownParam { .. }
    ));
}
