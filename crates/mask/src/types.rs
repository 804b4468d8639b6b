use std::fmt;

/// Groups of PostgreSQL column types that a mask kind treats alike.
///
/// Masks are checked against families rather than exact types so the policy
/// can declare `varchar(50)` while the catalog reports `character varying(50)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeFamily {
    /// `text`, `character varying(n)`, `character(n)`, `bpchar`.
    Text,
    /// `date`.
    Date,
    /// `timestamp` with or without time zone.
    Timestamp,
    /// `smallint`, `integer`, `bigint`.
    Integer,
    /// `numeric` / `decimal` and `money`; money has no declared scale.
    Numeric,
    /// `real`, `double precision`.
    Float,
    /// Any type at all, including ones this catalog does not know (arrays, uuid, jsonb…).
    Any,
}

impl TypeFamily {
    /// Human wording used in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            TypeFamily::Text => "text types (text, varchar(n), char(n))",
            TypeFamily::Date => "date",
            TypeFamily::Timestamp => "timestamp [with time zone]",
            TypeFamily::Integer => "integers (smallint, integer, bigint)",
            TypeFamily::Numeric => "numeric(p,s) and money",
            TypeFamily::Float => "real and double precision",
            TypeFamily::Any => "any type",
        }
    }
}

/// A column type understood well enough to decide whether a mask fits it.
///
/// Kept beside the family because the expression builder must cast results
/// back to the column's exact type, and `--live` compares declared types with
/// `format_type()` through [`PgType::canonical`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgType {
    pub family: TypeFamily,
    /// The spelling `format_type(atttypid, atttypmod)` prints for this type.
    pub canonical: String,
    /// Maximum length in characters of `character(n)` / `character varying(n)`.
    pub length: Option<u32>,
    /// `character(n)` / `bpchar`: blank-padded, trailing spaces are insignificant.
    pub blank_padded: bool,
    /// Declared precision of `numeric(p,s)`.
    pub precision: Option<u32>,
    /// Digits after the decimal point that the type keeps: `s` of `numeric(p,s)`,
    /// 0 for integers, `None` when unconstrained (numeric, money, floats).
    pub scale: Option<i32>,
}

impl fmt::Display for PgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// The family of a type name as written in a policy or printed by `format_type()`.
pub fn type_family(pg_type: &str) -> Option<TypeFamily> {
    parse_pg_type(pg_type).map(|t| t.family)
}

/// Parses a type name, normalizing aliases (`int4`, `varchar(50)`, `timestamptz`…).
///
/// Returns `None` for types no mask other than `null`/`constant` can handle,
/// and for anything malformed: quoted names (`"char"` is a different type),
/// arrays and domains are deliberately not guessed at.
pub fn parse_pg_type(pg_type: &str) -> Option<PgType> {
    if pg_type.contains(['"', '[', ']']) {
        return None;
    }
    let lower = pg_type.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix("pg_catalog.").unwrap_or(&lower);
    let (prefix, args, suffix) = match lower.find('(') {
        Some(open) => {
            let close = lower.find(')')?;
            if close < open || lower[close + 1..].contains(['(', ')']) {
                return None;
            }
            let args = lower[open + 1..close]
                .split(',')
                .map(|a| a.trim().parse::<i32>().ok())
                .collect::<Option<Vec<i32>>>()?;
            (
                words(&lower[..open]),
                Some(args),
                words(&lower[close + 1..]),
            )
        }
        None => (words(lower), None, String::new()),
    };
    let args = args.as_deref();
    let timestamp = |zone: &str| {
        let canonical = match args {
            None => format!("timestamp {zone}"),
            Some(&[p]) if (0..=6).contains(&p) => format!("timestamp({p}) {zone}"),
            _ => return None,
        };
        Some(simple(TypeFamily::Timestamp, canonical))
    };
    if !suffix.is_empty() {
        return match (prefix.as_str(), suffix.as_str()) {
            ("timestamp", "without time zone") => timestamp("without time zone"),
            ("timestamp", "with time zone") => timestamp("with time zone"),
            _ => None,
        };
    }
    let no_args = |family: TypeFamily, canonical: &str| match args {
        None => Some(simple(family, canonical.to_string())),
        Some(_) => None,
    };
    match prefix.as_str() {
        "text" => no_args(TypeFamily::Text, "text"),
        "varchar" | "character varying" => match args {
            None => no_args(TypeFamily::Text, "character varying"),
            Some(&[n]) if n >= 1 => Some(text(format!("character varying({n})"), n, false)),
            _ => None,
        },
        "char" | "character" | "bpchar" => match args {
            None if prefix == "bpchar" => Some(PgType {
                blank_padded: true,
                ..simple(TypeFamily::Text, "bpchar".to_string())
            }),
            None => Some(text("character(1)".to_string(), 1, true)),
            Some(&[n]) if n >= 1 => Some(text(format!("character({n})"), n, true)),
            _ => None,
        },
        "date" => no_args(TypeFamily::Date, "date"),
        "timestamp" => timestamp("without time zone"),
        "timestamptz" => timestamp("with time zone"),
        "timestamp without time zone" if args.is_none() => timestamp("without time zone"),
        "timestamp with time zone" if args.is_none() => timestamp("with time zone"),
        "smallint" | "int2" | "smallserial" | "serial2" => integer("smallint", args),
        "integer" | "int" | "int4" | "serial" | "serial4" => integer("integer", args),
        "bigint" | "int8" | "bigserial" | "serial8" => integer("bigint", args),
        "numeric" | "decimal" => {
            let (p, s) = match args {
                None => return no_args(TypeFamily::Numeric, "numeric"),
                Some(&[p]) => (p, 0),
                Some(&[p, s]) => (p, s),
                _ => return None,
            };
            if !(1..=1000).contains(&p) || !(-1000..=1000).contains(&s) {
                return None;
            }
            Some(PgType {
                precision: Some(p.unsigned_abs()),
                scale: Some(s),
                ..simple(TypeFamily::Numeric, format!("numeric({p},{s})"))
            })
        }
        "money" => no_args(TypeFamily::Numeric, "money"),
        "real" | "float4" => no_args(TypeFamily::Float, "real"),
        "double precision" | "float8" => no_args(TypeFamily::Float, "double precision"),
        "float" => match args {
            None => no_args(TypeFamily::Float, "double precision"),
            Some(&[n]) if (1..=24).contains(&n) => no_args_float("real"),
            Some(&[n]) if (25..=53).contains(&n) => no_args_float("double precision"),
            _ => None,
        },
        _ => None,
    }
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn simple(family: TypeFamily, canonical: String) -> PgType {
    PgType {
        family,
        canonical,
        length: None,
        blank_padded: false,
        precision: None,
        scale: None,
    }
}

fn text(canonical: String, length: i32, blank_padded: bool) -> PgType {
    PgType {
        length: Some(length.unsigned_abs()),
        blank_padded,
        ..simple(TypeFamily::Text, canonical)
    }
}

fn integer(canonical: &str, args: Option<&[i32]>) -> Option<PgType> {
    match args {
        None => Some(PgType {
            scale: Some(0),
            ..simple(TypeFamily::Integer, canonical.to_string())
        }),
        Some(_) => None,
    }
}

fn no_args_float(canonical: &str) -> Option<PgType> {
    Some(simple(TypeFamily::Float, canonical.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse_pg_type(s)
            .unwrap_or_else(|| panic!("{s} should parse"))
            .canonical
    }

    #[test]
    fn aliases_normalize_to_format_type_spelling() {
        let cases = [
            ("text", "text"),
            ("TEXT", "text"),
            ("pg_catalog.text", "text"),
            ("varchar", "character varying"),
            ("varchar(50)", "character varying(50)"),
            ("character varying ( 50 )", "character varying(50)"),
            ("char", "character(1)"),
            ("char(12)", "character(12)"),
            ("character(12)", "character(12)"),
            ("bpchar(12)", "character(12)"),
            ("bpchar", "bpchar"),
            ("date", "date"),
            ("timestamp", "timestamp without time zone"),
            ("timestamp without time zone", "timestamp without time zone"),
            ("timestamp(3)", "timestamp(3) without time zone"),
            ("timestamp(3) with time zone", "timestamp(3) with time zone"),
            ("timestamptz", "timestamp with time zone"),
            ("timestamp   with  time zone", "timestamp with time zone"),
            ("int", "integer"),
            ("int4", "integer"),
            ("serial", "integer"),
            ("int2", "smallint"),
            ("int8", "bigint"),
            ("bigserial", "bigint"),
            ("numeric", "numeric"),
            ("decimal(10,2)", "numeric(10,2)"),
            ("numeric(12, 2)", "numeric(12,2)"),
            ("numeric(12)", "numeric(12,0)"),
            ("money", "money"),
            ("float4", "real"),
            ("float", "double precision"),
            ("float(10)", "real"),
            ("float(53)", "double precision"),
            ("double precision", "double precision"),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(input), expected, "{input}");
        }
    }

    #[test]
    fn families_and_modifiers() {
        assert_eq!(type_family("character varying(50)"), Some(TypeFamily::Text));
        assert_eq!(type_family("date"), Some(TypeFamily::Date));
        assert_eq!(type_family("timestamptz"), Some(TypeFamily::Timestamp));
        assert_eq!(type_family("bigint"), Some(TypeFamily::Integer));
        assert_eq!(type_family("numeric(12,2)"), Some(TypeFamily::Numeric));
        assert_eq!(type_family("real"), Some(TypeFamily::Float));
        let c = parse_pg_type("char(12)").unwrap();
        assert_eq!((c.length, c.blank_padded), (Some(12), true));
        let v = parse_pg_type("varchar(50)").unwrap();
        assert_eq!((v.length, v.blank_padded), (Some(50), false));
        let n = parse_pg_type("numeric(12,2)").unwrap();
        assert_eq!((n.precision, n.scale), (Some(12), Some(2)));
        assert_eq!(parse_pg_type("integer").unwrap().scale, Some(0));
        assert_eq!(parse_pg_type("money").unwrap().scale, None);
    }

    #[test]
    fn unknown_or_malformed_types_are_not_guessed() {
        for t in [
            "",
            "\"char\"",
            "text[]",
            "uuid",
            "jsonb",
            "time",
            "interval",
            "citext",
            "varchar(0)",
            "varchar(-1)",
            "varchar(a)",
            "varchar(5",
            "varchar)5(",
            "char(1)(2)",
            "integer(4)",
            "text(3)",
            "numeric(0,0)",
            "numeric(1,2,3)",
            "timestamp(7)",
            "timestamp with time zone(3)",
            "date with time zone",
            "float(54)",
            "text; drop table x",
        ] {
            assert_eq!(parse_pg_type(t), None, "{t:?}");
        }
    }
}
