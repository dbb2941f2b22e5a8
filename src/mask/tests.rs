//! Unit tests of the masking module: RowDescription parsing, plans, strategies and the masker.

use std::collections::BTreeSet;

use bytes::{BufMut, BytesMut};

use super::*;
use crate::policy::{MaskRule, MaskStrategy, RuleSet};
use crate::sql::{ColumnRef, ColumnSource, OutputColumn, TableName};

use crate::test_frames::data_row;

const KEY: &[u8] = b"test-key";

fn masks(toml: &str) -> Vec<MaskRule> {
    let text = format!(
        "[roles.agent]\nmembers = [\"agent-*\"]\n[roles.dba]\nmembers = [\"alice\"]\n\
         [[rules]]\nid = \"r\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n{toml}"
    );
    let (set, _) = RuleSet::parse(&[("r.toml".to_owned(), text)]).expect("rules parse");
    set.masks().to_vec()
}

fn agent() -> Vec<String> {
    vec!["agent".to_owned()]
}

fn col(table: &str, column: &str) -> ColumnRef {
    ColumnRef {
        table: TableName {
            schema: "public".to_owned(),
            name: table.to_owned(),
        },
        column: column.to_owned(),
    }
}

fn out_col(name: &str, wildcard: bool, sources: Vec<ColumnSource>) -> OutputColumn {
    OutputColumn {
        name: name.to_owned(),
        wildcard,
        sources: sources.into_iter().collect::<BTreeSet<_>>(),
    }
}

/// (name, table oid, attnum, format)
fn row_description(fields: &[(&str, u32, i16, i16)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(fields.len() as i16);
    for (name, oid, att, fmt) in fields {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_u32(*oid);
        b.put_i16(*att);
        b.put_u32(25);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i16(*fmt);
    }
    b.to_vec()
}

/// Parses a whole DataRow frame back into its fields, checking every length.
fn parse_frame(frame: &[u8]) -> Vec<Option<Vec<u8>>> {
    assert_eq!(frame[0], b'D');
    let len = i32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 1, "frame length patched");
    let body = &frame[5..];
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut rest = &body[2..];
    let mut out = Vec::new();
    for _ in 0..n {
        let l = i32::from_be_bytes(rest[..4].try_into().unwrap());
        rest = &rest[4..];
        if l == -1 {
            out.push(None);
        } else {
            out.push(Some(rest[..l as usize].to_vec()));
            rest = &rest[l as usize..];
        }
    }
    assert!(rest.is_empty());
    out
}

fn mask_one(strategy: &MaskStrategy, format: i16, value: Option<&[u8]>) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    write_value(strategy, format, value, KEY, &mut out).unwrap();
    let len = i32::from_be_bytes(out[..4].try_into().unwrap());
    if len == -1 {
        assert_eq!(out.len(), 4);
        None
    } else {
        assert_eq!(len as usize, out.len() - 4);
        Some(out[4..].to_vec())
    }
}

fn mask_str(strategy: &MaskStrategy, value: &str) -> String {
    String::from_utf8(mask_one(strategy, 0, Some(value.as_bytes())).unwrap()).unwrap()
}

// === RowDescription ===

#[test]
fn row_description_parses_fields() {
    let body = row_description(&[
        ("id", 16384, 1, 0),
        ("ssn", 16384, 3, 1),
        ("?column?", 0, 0, 0),
    ]);
    let view = RowDescriptionView::parse(&body).unwrap();
    assert_eq!(view.len(), 3);
    let f = view.fields()[1];
    assert_eq!(f.name, b"ssn");
    assert_eq!(
        (f.table_oid, f.attnum, f.type_oid, f.type_size, f.format),
        (16384, 3, 25, -1, 1)
    );
    assert_eq!(view.fields()[2].table_oid, 0);
    assert!(RowDescriptionView::parse(&[0, 0]).unwrap().is_empty());
}

#[test]
fn row_description_every_truncation_is_an_error() {
    let body = row_description(&[("id", 16384, 1, 0), ("ssn", 16384, 3, 1)]);
    for n in 0..body.len() {
        assert_eq!(
            RowDescriptionView::parse(&body[..n]),
            Err(Error::RowDescription),
            "{n}"
        );
    }
    let mut trailing = body.clone();
    trailing.push(0);
    assert_eq!(
        RowDescriptionView::parse(&trailing),
        Err(Error::RowDescription)
    );
    assert_eq!(
        RowDescriptionView::parse(&[0xff, 0xff]),
        Err(Error::RowDescription)
    );
}

// === plans ===

const SSN_NULL: &str =
    "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"people.ssn\"]\nstrategy = \"null\"\n";
const EMAIL: &str =
    "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.email\"]\nstrategy = \"email\"\n";

fn people_resolve(oid: u32, att: i16) -> Option<Resolved> {
    let c = match (oid, att) {
        (100, 1) => col("people", "id"),
        (100, 2) => col("people", "ssn"),
        (100, 3) => col("people", "email"),
        (200, 1) => col("orders", "id"),
        _ => return None,
    };
    Some(Resolved {
        sources: std::sync::Arc::from(vec![ColumnSource::Column(c)]),
        derived: false,
    })
}

#[test]
fn plan_direct_columns_first_rule_wins() {
    let masks = masks(&format!(
        "{SSN_NULL}{EMAIL}[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.*\"]\nstrategy = \"hash\"\n"
    ));
    let body = row_description(&[("id", 200, 1, 0), ("ssn", 100, 2, 0), ("email", 100, 3, 1)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let p = plan(&view, people_resolve, None, &masks[..2], &agent());
    assert_eq!(p.len(), 3);
    assert!(p.columns()[0].is_none());
    let ssn = p.columns()[1].as_ref().unwrap();
    assert_eq!(
        (ssn.strategy.clone(), ssn.rule_index, ssn.reason),
        (MaskStrategy::Null, 0, MaskReason::Direct)
    );
    let email = p.columns()[2].as_ref().unwrap();
    assert_eq!(
        (email.strategy.clone(), email.format, email.rule_index),
        // A text value is the same bytes in binary format: masked as text.
        (MaskStrategy::Email, 0, 1)
    );
    // With the catch-all third rule, orders.id is masked by it; ssn still by the first.
    let p = plan(&view, people_resolve, None, &masks, &agent());
    assert_eq!(p.columns()[0].as_ref().unwrap().rule_index, 2);
    assert_eq!(p.columns()[1].as_ref().unwrap().rule_index, 0);
}

#[test]
fn plan_no_applicable_rule_is_empty() {
    let masks = masks(SSN_NULL);
    let body = row_description(&[("ssn", 100, 2, 0), ("x", 0, 0, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let p = plan(&view, people_resolve, None, &masks, &["dba".to_owned()]);
    assert!(p.is_empty());
    assert_eq!(p.len(), 2);
    let p = plan(&view, people_resolve, None, &[], &agent());
    assert!(p.is_empty());
}

#[test]
fn plan_computed_column_through_lineage() {
    let masks = masks(SSN_NULL);
    // SELECT id, upper(ssn), 1 FROM people
    let body = row_description(&[("id", 100, 1, 0), ("upper", 0, 0, 0), ("?column?", 0, 0, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let lineage = vec![
        out_col("id", false, vec![ColumnSource::Column(col("people", "id"))]),
        out_col(
            "upper",
            false,
            vec![ColumnSource::Column(col("people", "ssn"))],
        ),
        out_col("?column?", false, vec![]),
    ];
    let p = plan(&view, people_resolve, Some(&lineage), &masks, &agent());
    assert!(p.columns()[0].is_none());
    assert_eq!(p.columns()[1].as_ref().unwrap().reason, MaskReason::Lineage);
    assert!(p.columns()[2].is_none(), "a constant is not masked");
}

#[test]
fn plan_whole_row_source() {
    let masks = masks(SSN_NULL);
    // SELECT row_to_json(p) FROM people p / SELECT row_to_json(o) FROM orders o
    let body = row_description(&[("row_to_json", 0, 0, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let people = TableName {
        schema: "public".to_owned(),
        name: "people".to_owned(),
    };
    let orders = TableName {
        schema: "public".to_owned(),
        name: "orders".to_owned(),
    };
    let lineage = vec![out_col(
        "row_to_json",
        false,
        vec![ColumnSource::WholeRow(people)],
    )];
    let p = plan(&view, people_resolve, Some(&lineage), &masks, &agent());
    assert_eq!(p.columns()[0].as_ref().unwrap().reason, MaskReason::Lineage);
    let lineage = vec![out_col(
        "row_to_json",
        false,
        vec![ColumnSource::WholeRow(orders.clone())],
    )];
    assert!(plan(&view, people_resolve, Some(&lineage), &masks, &agent()).is_empty());
    // Column globs with wildcards: `*.e?ail*` could match a column of any table.
    let wild = self::masks(
        "[[masks]]\nroles = [\"agent\"]\ncolumns = [\"*.e?ail*\"]\nstrategy = \"email\"\n",
    );
    let lineage = vec![out_col(
        "row_to_json",
        false,
        vec![ColumnSource::WholeRow(orders)],
    )];
    assert!(!plan(&view, people_resolve, Some(&lineage), &wild, &agent()).is_empty());
}

#[test]
fn plan_fails_closed_when_positions_are_unreliable() {
    let masks = masks(SSN_NULL);
    // SELECT *, upper(ssn) FROM people: a wildcard, so positions cannot be trusted.
    let body = row_description(&[("id", 100, 1, 0), ("ssn", 100, 2, 0), ("upper", 0, 0, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let people = TableName {
        schema: "public".to_owned(),
        name: "people".to_owned(),
    };
    let lineage = vec![
        out_col("*", true, vec![ColumnSource::WholeRow(people)]),
        out_col(
            "upper",
            false,
            vec![ColumnSource::Column(col("people", "ssn"))],
        ),
    ];
    let p = plan(&view, people_resolve, Some(&lineage), &masks, &agent());
    assert!(p.columns()[0].is_none(), "resolved and unmasked");
    assert_eq!(p.columns()[1].as_ref().unwrap().reason, MaskReason::Direct);
    assert_eq!(p.columns()[2].as_ref().unwrap().reason, MaskReason::Unknown);
    // An OID the catalog cannot resolve, with no lineage at all: masked.
    let body = row_description(&[("x", 999, 1, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let p = plan(&view, people_resolve, None, &masks, &agent());
    assert_eq!(p.columns()[0].as_ref().unwrap().reason, MaskReason::Unknown);
    // Statement reading nothing masked: unexplained fields stay.
    let lineage = vec![out_col(
        "*",
        true,
        vec![ColumnSource::Column(col("orders", "id"))],
    )];
    assert!(plan(&view, people_resolve, Some(&lineage), &masks, &agent()).is_empty());
}

// === strategies ===

#[test]
fn strategies_on_text() {
    let redact = MaskStrategy::Redact {
        text: "XX".to_owned(),
    };
    assert_eq!(mask_str(&redact, "123-45-6789"), "XX");
    let partial = MaskStrategy::Partial {
        keep_first: 1,
        keep_last: 4,
        text: "***".to_owned(),
    };
    assert_eq!(mask_str(&partial, "123-45-6789"), "1***6789");
    assert_eq!(
        mask_str(&partial, "12345"),
        "***",
        "too short to hide anything"
    );
    let last2 = MaskStrategy::Partial {
        keep_first: 0,
        keep_last: 2,
        text: "…".to_owned(),
    };
    assert_eq!(mask_str(&last2, "Zoë Ærø"), "…rø", "characters, not bytes");
    let first2 = MaskStrategy::Partial {
        keep_first: 2,
        keep_last: 0,
        text: "*".to_owned(),
    };
    assert_eq!(mask_str(&first2, "日本語テキスト"), "日本*");
    assert_eq!(
        mask_str(&MaskStrategy::Email, "jane.doe@example.com"),
        "***@example.com"
    );
    assert_eq!(mask_str(&MaskStrategy::Email, "not an address"), "***");
    assert_eq!(mask_one(&MaskStrategy::Null, 0, Some(b"x")), None);
}

#[test]
fn hash_is_keyed_and_deterministic() {
    let a = mask_str(&MaskStrategy::Hash, "123-45-6789");
    assert_eq!(a.len(), HASH_HEX_LEN);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a, mask_str(&MaskStrategy::Hash, "123-45-6789"));
    assert_ne!(a, mask_str(&MaskStrategy::Hash, "123-45-6780"));
    let mut other = BytesMut::new();
    write_value(
        &MaskStrategy::Hash,
        0,
        Some(b"123-45-6789"),
        b"other",
        &mut other,
    )
    .unwrap();
    assert_ne!(&other[4..], a.as_bytes());
}

#[test]
fn fake_keeps_shape() {
    let v = "AB-1234 xy@é";
    let f = mask_str(&MaskStrategy::Fake, v);
    assert_eq!(f, mask_str(&MaskStrategy::Fake, v));
    assert_ne!(f, v);
    assert_eq!(f.chars().count(), v.chars().count());
    for (a, b) in v.chars().zip(f.chars()) {
        assert_eq!(a.is_numeric(), b.is_ascii_digit());
        assert_eq!(a.is_uppercase(), b.is_ascii_uppercase());
        assert_eq!(a.is_lowercase(), b.is_ascii_lowercase());
        if a.is_alphanumeric() {
            assert!(b.is_ascii_alphanumeric(), "{a} → {b}");
        } else {
            assert_eq!(a, b);
        }
    }
    let long = "9".repeat(100);
    assert_eq!(mask_str(&MaskStrategy::Fake, &long).len(), 100);
}

#[test]
fn binary_null_and_invalid_utf8() {
    let all = [
        MaskStrategy::Redact {
            text: "***".to_owned(),
        },
        MaskStrategy::Partial {
            keep_first: 1,
            keep_last: 1,
            text: "*".to_owned(),
        },
        MaskStrategy::Hash,
        MaskStrategy::Null,
        MaskStrategy::Email,
        MaskStrategy::Fake,
    ];
    for s in &all {
        assert_eq!(
            mask_one(s, 1, Some(b"\x00\x01\x02\x03")),
            None,
            "binary → NULL: {s:?}"
        );
        assert_eq!(mask_one(s, 0, None), None, "NULL stays NULL: {s:?}");
        let masked = mask_one(s, 0, Some(b"ab\xffcd"));
        if let Some(m) = masked {
            assert!(
                !m.windows(2).any(|w| w == b"ab" || w == b"cd"),
                "{s:?} leaked {m:?}"
            );
        }
    }
    assert_eq!(mask_one(&all[1], 0, Some(b"ab\xffcd")), Some(b"*".to_vec()));
    assert_eq!(mask_one(&all[4], 0, Some(b"a@\xff")), Some(b"***".to_vec()));
}

// === the masker ===

fn ssn_plan(format: i16) -> MaskPlan {
    MaskPlan::from_columns(vec![
        None,
        Some(ColumnMask {
            strategy: MaskStrategy::Partial {
                keep_first: 0,
                keep_last: 4,
                text: "***-**-".to_owned(),
            },
            format,
            rule_index: 0,
            reason: MaskReason::Direct,
            constant: false,
        }),
        None,
    ])
}

#[test]
fn untouched_rows_write_nothing() {
    let plan = ssn_plan(0);
    let mut out = BytesMut::new();
    let row = data_row(&[Some(b"1"), None, Some(b"Jane")]);
    assert_eq!(apply(&row, &plan, KEY, &mut out), Ok(Applied::Untouched));
    assert!(out.is_empty());
    let empty = MaskPlan::from_columns(vec![None; 3]);
    assert!(empty.is_empty());
    let row = data_row(&[Some(b"1"), Some(b"123-45-6789"), Some(b"Jane")]);
    assert_eq!(apply(&row, &empty, KEY, &mut out), Ok(Applied::Untouched));
    assert!(out.is_empty());
}

#[test]
fn rewritten_rows_reparse() {
    let plan = ssn_plan(0);
    let mut out = BytesMut::new();
    out.put_slice(b"prefix");
    let row = data_row(&[Some(b"1"), Some(b"123-45-6789"), None]);
    assert_eq!(apply(&row, &plan, KEY, &mut out), Ok(Applied::Rewritten));
    assert_eq!(&out[..6], b"prefix", "appends, never clears");
    let fields = parse_frame(&out[6..]);
    assert_eq!(
        fields,
        vec![Some(b"1".to_vec()), Some(b"***-**-6789".to_vec()), None]
    );
    // The buffer is reused: a second row is appended after the first.
    out.clear();
    let row = data_row(&[Some(b""), Some(b"987-65-4321"), Some(b"Bob")]);
    assert_eq!(
        apply(&row, &ssn_plan(1), KEY, &mut out),
        Ok(Applied::Rewritten)
    );
    assert_eq!(
        parse_frame(&out),
        vec![Some(vec![]), None, Some(b"Bob".to_vec())]
    );
}

#[test]
fn malformed_rows_are_errors() {
    let plan = ssn_plan(0);
    let mut out = BytesMut::new();
    let row = data_row(&[Some(b"1"), Some(b"123-45-6789"), Some(b"Jane")]);
    for n in 0..row.len() {
        let r = apply(&row[..n], &plan, KEY, &mut out);
        assert!(r.is_err(), "truncated at {n}: {r:?}");
        assert!(out.is_empty());
    }
    let mut trailing = row.clone();
    trailing.push(0);
    assert_eq!(apply(&trailing, &plan, KEY, &mut out), Err(Error::DataRow));
    let two = data_row(&[Some(b"1"), Some(b"2")]);
    assert_eq!(
        apply(&two, &plan, KEY, &mut out),
        Err(Error::FieldCount {
            expected: 3,
            found: 2
        })
    );
    let mut bad_len = data_row(&[Some(b"1"), None, None]);
    bad_len[9..13].copy_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(apply(&bad_len, &plan, KEY, &mut out), Err(Error::DataRow));
    // Every byte flipped to every interesting value: errors or rows, never a panic.
    for i in 0..row.len() {
        for b in [0x00, 0x7f, 0x80, 0xff] {
            let mut m = row.clone();
            m[i] = b;
            out.clear();
            if let Ok(Applied::Rewritten) = apply(&m, &plan, KEY, &mut out) {
                parse_frame(&out);
            }
        }
    }
}

#[test]
fn fake_hides_non_ascii_letters() {
    let f = mask_str(&MaskStrategy::Fake, "José Ünal ٣");
    assert!(f.is_ascii(), "{f}");
    assert_eq!(f.chars().count(), "José Ünal ٣".chars().count());
    assert!(f.chars().nth(5).unwrap().is_ascii_uppercase());
    assert!(f.chars().nth(10).unwrap().is_ascii_digit());
}

#[test]
fn resolved_fields_ignore_lineage() {
    let masks = masks(SSN_NULL);
    // SELECT id FROM people JOIN orders USING (id): without a catalog the lineage is both whole rows.
    let body = row_description(&[("id", 100, 1, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let people = TableName {
        schema: "public".to_owned(),
        name: "people".to_owned(),
    };
    let lineage = vec![out_col("id", false, vec![ColumnSource::WholeRow(people)])];
    assert!(plan(&view, people_resolve, Some(&lineage), &masks, &agent()).is_empty());
}

#[test]
fn masked_columns_of_other_types_become_null_in_either_format() {
    let masks = masks(SSN_NULL.replace("\"null\"", "\"partial\"").as_str());
    for format in [0, 1] {
        let mut body = row_description(&[("id", 100, 1, 0), ("ssn", 100, 2, format)]);
        // Make the ssn field an int4: a text mask would corrupt it for the driver.
        let at = body.len() - 12;
        body[at..at + 4].copy_from_slice(&23u32.to_be_bytes());
        let view = RowDescriptionView::parse(&body).unwrap();
        let p = plan(&view, people_resolve, None, &masks, &agent());
        assert_eq!(
            p.columns()[1].as_ref().unwrap().strategy,
            MaskStrategy::Null
        );
        let mut out = BytesMut::new();
        let row = data_row(&[Some(b"1"), Some(b"\x00\x00\x00\x07")]);
        assert_eq!(apply(&row, &p, KEY, &mut out), Ok(Applied::Rewritten));
        assert_eq!(parse_frame(&out)[1], None);
    }
}

#[test]
fn lineage_uses_the_first_rule_not_the_first_source() {
    // Rule 0 masks people.ssn, rule 1 masks *.email; `email || ssn` sorts email first.
    let masks = masks(&format!("{SSN_NULL}{EMAIL}"));
    let body = row_description(&[("?column?", 0, 0, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let lineage = vec![out_col(
        "?column?",
        false,
        vec![
            ColumnSource::Column(col("people", "email")),
            ColumnSource::Column(col("people", "ssn")),
        ],
    )];
    let p = plan(&view, people_resolve, Some(&lineage), &masks, &agent());
    assert_eq!(p.columns()[0].as_ref().unwrap().rule_index, 0);
    assert_eq!(
        p.columns()[0].as_ref().unwrap().strategy,
        MaskStrategy::Null
    );
}

#[test]
fn computed_values_become_one_constant_text_null_included() {
    // `reverse(ssn)` under a partial rule: keeping its last 4 would show ssn's first digits.
    let masks = masks(SSN_NULL.replace("\"null\"", "\"partial\"").as_str());
    let body = row_description(&[("reverse", 0, 0, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let lineage = vec![out_col(
        "reverse",
        false,
        vec![ColumnSource::Column(col("people", "ssn"))],
    )];
    let p = plan(&view, people_resolve, Some(&lineage), &masks, &agent());
    let m = p.columns()[0].as_ref().unwrap();
    assert!(m.constant);
    assert_eq!(
        m.strategy,
        MaskStrategy::Redact {
            text: "***".to_owned()
        }
    );
    for value in [Some(&b"9876-54-321"[..]), None] {
        let mut out = BytesMut::new();
        let row = data_row(&[value]);
        assert_eq!(apply(&row, &p, KEY, &mut out), Ok(Applied::Rewritten));
        assert_eq!(
            parse_frame(&out)[0].as_deref(),
            Some(&b"***"[..]),
            "{value:?}"
        );
    }
    // A view's column is computed too, even though the catalog resolves it.
    let view_resolve = |_, _| {
        Some(Resolved {
            sources: std::sync::Arc::from(vec![ColumnSource::Column(col("people", "ssn"))]),
            derived: true,
        })
    };
    let body = row_description(&[("national_id", 300, 1, 0)]);
    let view = RowDescriptionView::parse(&body).unwrap();
    let p = plan(&view, view_resolve, None, &masks, &agent());
    assert!(p.columns()[0].as_ref().unwrap().constant);
}

// === content detectors ===

/// Detectors for `agent`: card and secret redacted as `[card]`, e-mail by hash.
fn detectors() -> std::sync::Arc<Detectors> {
    let text = "[roles.agent]\nmembers = [\"agent-*\"]\n\
         [[rules]]\nid = \"r\"\nroles = [\"agent\"]\nclasses = [\"read\"]\naction = \"allow\"\n\
         [[detectors]]\nroles = [\"agent\"]\nkinds = [\"card\", \"secret\"]\nstrategy = \"redact\"\ntext = \"[card]\"\n\
         [[detectors]]\nroles = [\"agent\"]\nkinds = [\"email\"]\nstrategy = \"hash\"\n";
    let (set, _) = RuleSet::parse(&[("r.toml".to_owned(), text.to_owned())]).expect("rules parse");
    Detectors::for_roles(set.detectors(), &agent()).expect("applies")
}

#[test]
fn detectors_make_a_plan_non_empty() {
    let plan = MaskPlan::from_columns(vec![None; 2]);
    assert!(plan.is_empty());
    let plan = plan.with_detectors(Some(detectors()));
    assert!(!plan.is_empty());
    assert!(plan.detectors().is_some());
    assert!(
        MaskPlan::from_columns(vec![None])
            .with_detectors(None)
            .is_empty()
    );
}

#[test]
fn detectors_mask_hits_in_unmasked_columns() {
    let plan = ssn_plan(0).with_detectors(Some(detectors()));
    let mut out = BytesMut::new();
    // No hit anywhere: untouched, nothing written.
    let row = data_row(&[Some(b"4111111111111112"), None, Some(b"Jane")]);
    assert_eq!(apply(&row, &plan, KEY, &mut out), Ok(Applied::Untouched));
    assert!(out.is_empty());
    // A hit in the first column, one in the third; the masked column keeps its own strategy
    // (a card number in it is not the detectors' business).
    let row = data_row(&[
        Some(b"paid by 4111 1111 1111 1111"),
        Some(b"4111111111111111"),
        Some(b"mail jane@example.com"),
    ]);
    assert_eq!(
        apply(&row, &plan, KEY, &mut out),
        Ok(Applied::Detected {
            rule: 0,
            kind: crate::policy::DetectorKind::Card
        })
    );
    let fields = parse_frame(&out);
    assert_eq!(fields[0].as_deref(), Some(&b"[card]"[..]));
    assert_eq!(fields[1].as_deref(), Some(&b"***-**-1111"[..]));
    let hashed = fields[2].as_ref().unwrap();
    assert_eq!(hashed.len(), HASH_HEX_LEN);
    // Only the second column hits: the first is copied as it was.
    out.clear();
    let row = data_row(&[Some(b"Jane"), None, Some(b"jane@example.com")]);
    assert_eq!(
        apply(&row, &plan, KEY, &mut out),
        Ok(Applied::Detected {
            rule: 1,
            kind: crate::policy::DetectorKind::Email
        })
    );
    let fields = parse_frame(&out);
    assert_eq!(fields[0].as_deref(), Some(&b"Jane"[..]));
    assert_eq!(fields[1], None);
    assert_ne!(fields[2].as_deref(), Some(&b"jane@example.com"[..]));
    // A masked column alone still reports a plain rewrite.
    out.clear();
    let row = data_row(&[Some(b"1"), Some(b"123-45-6789"), None]);
    assert_eq!(apply(&row, &plan, KEY, &mut out), Ok(Applied::Rewritten));
    assert!(Applied::Rewritten.is_rewritten() && !Applied::Untouched.is_rewritten());
}

#[test]
fn detector_hits_are_text_in_text_columns_and_null_in_others() {
    // SELECT note, n FROM t with binary results: `note` is text (the same bytes in binary), `n`
    // is an int4, whose hit could only be nulled.
    let mut body = row_description(&[("note", 300, 1, 1), ("n", 300, 2, 1)]);
    let at = body.len() - 12;
    body[at..at + 4].copy_from_slice(&23u32.to_be_bytes());
    let view = RowDescriptionView::parse(&body).unwrap();
    let p = plan(&view, |_, _| None, None, &[], &agent()).with_detectors(Some(detectors()));
    assert_eq!((p.format(0), p.format(1)), (0, 1));
    let mut out = BytesMut::new();
    let row = data_row(&[Some(b"AKIAIOSFODNN7EXAMPLE"), Some(b"\x00\x00\x00\x07")]);
    assert!(matches!(
        apply(&row, &p, KEY, &mut out),
        Ok(Applied::Detected { .. })
    ));
    assert_eq!(
        parse_frame(&out),
        vec![Some(b"[card]".to_vec()), Some(b"\x00\x00\x00\x07".to_vec())]
    );
}

#[test]
fn malformed_rows_with_detectors_are_errors_never_panics() {
    let plan = MaskPlan::from_columns(vec![None; 3]).with_detectors(Some(detectors()));
    let mut out = BytesMut::new();
    let row = data_row(&[Some(b"1"), Some(b"4111111111111111"), Some(b"Jane")]);
    for n in 0..row.len() {
        assert!(
            apply(&row[..n], &plan, KEY, &mut out).is_err(),
            "truncated at {n}"
        );
        assert!(out.is_empty());
    }
    for i in 0..row.len() {
        for b in [0x00, 0x7f, 0x80, 0xff] {
            let mut m = row.clone();
            m[i] = b;
            out.clear();
            if let Ok(applied) = apply(&m, &plan, KEY, &mut out)
                && applied.is_rewritten()
            {
                let fields = parse_frame(&out);
                assert!(!fields.iter().flatten().any(|f| f == b"4111111111111111"));
            }
        }
    }
}

#[test]
fn partial_keeps_characters_not_bytes_ascii_or_not() {
    let strategy = MaskStrategy::Partial {
        keep_first: 2,
        keep_last: 3,
        text: "*".to_owned(),
    };
    for (value, expected) in [
        ("123-45-6789", "12*789"),
        ("12345", "*"),
        ("", "*"),
        ("ééabcdéé", "éé*déé"),
        ("ab€cdefg€", "ab*fg€"),
    ] {
        let mut out = BytesMut::new();
        write_value(
            &strategy,
            FORMAT_TEXT,
            Some(value.as_bytes()),
            KEY,
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[4..], expected.as_bytes(), "{value}");
    }
}
