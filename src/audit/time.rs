//! RFC 3339 times for the auditor's tools: formatting record times and parsing `--since`.
//!
//! Only UTC is printed; offsets are accepted when parsing. Civil-date arithmetic follows the
//! proleptic Gregorian calendar (days from 1970-01-01), which is all RFC 3339 needs.

/// Formats microseconds since the Unix epoch as `2026-01-02T03:04:05.123456Z`.
pub fn format_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses `--since`: an RFC 3339 time (`2026-01-02T03:04:05Z`, fraction and offset optional, a
/// space allowed for `T`), a date (`2026-01-02`, midnight UTC), or Unix seconds. Returns
/// microseconds since the epoch.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_since(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad =
        || format!("`{s}` is not an RFC 3339 time (2026-01-02T03:04:05Z), a date or Unix seconds");
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1_000_000).ok_or_else(bad);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = s.get(r).ok_or_else(bad)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Ok(days * 86_400_000_000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut micros = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        // Keep microseconds; finer digits are dropped.
        let digits = &s[start..i.min(start + 6)];
        micros = digits.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(6 - digits.len() as u32);
    }
    let offset_secs = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return Err(bad()),
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    Ok(secs * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_micros(0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56.5Z, a leap day.
        assert_eq!(
            format_micros(1_709_210_096_500_000),
            "2024-02-29T12:34:56.500000Z"
        );
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_what_it_formats_and_the_other_forms() {
        for us in [0, 1_709_210_096_500_000, 4_102_444_800_000_001] {
            assert_eq!(parse_since(&format_micros(us)), Ok(us));
        }
        assert_eq!(parse_since("1709210096"), Ok(1_709_210_096_000_000));
        assert_eq!(parse_since("2024-02-29"), Ok(1_709_164_800_000_000));
        assert_eq!(
            parse_since("2024-02-29T14:34:56+02:00"),
            parse_since("2024-02-29T12:34:56Z")
        );
        assert_eq!(
            parse_since("2024-02-29 12:34:56.25z"),
            Ok(1_709_210_096_250_000)
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-02-29T12:34",
            "2024-02-29T12:34:56",
        ] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
