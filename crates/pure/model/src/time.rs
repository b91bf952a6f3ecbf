//! RFC 3339 timestamps as Kubernetes reads them (`metav1.Time`): checked, never produced here
//! (drivers format the times they pass in).

/// Why `s` is not an RFC 3339 date-time (`2026-11-26T15:08:55Z`, fractions of a second and
/// `+hh:mm` offsets allowed), or `None` if it is one.
pub fn rfc3339_problem(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let shape = "must be an RFC 3339 time such as 2026-11-26T15:08:55Z";
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return Some(shape);
    }
    if b[16] != b':' {
        return Some(shape);
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return Some(shape);
    };
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Some("a fraction of a second needs at least one digit after the '.'");
        }
        rest = &frac[n..];
    }
    match rest {
        b"Z" => {}
        [b'+' | b'-', h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            if (h1 - b'0') * 10 + (h2 - b'0') > 23 || (m1 - b'0') * 10 + (m2 - b'0') > 59 {
                return Some("the UTC offset must be at most +23:59");
            }
        }
        _ => return Some("must end in Z (UTC) or a +hh:mm / -hh:mm offset"),
    }
    if !(1..=12).contains(&month) {
        return Some("the month must be 01 to 12");
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days {
        return Some("the day does not exist in that month");
    }
    if hour > 23 {
        return Some("the hour must be 00 to 23");
    }
    if minute > 59 {
        return Some("the minute must be 00 to 59");
    }
    if second > 59 {
        return Some("the second must be 00 to 59");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::rfc3339_problem;

    #[test]
    fn kubernetes_times_pass() {
        for ok in [
            "2026-11-26T15:08:55Z",
            "2024-02-29T00:00:00Z",
            "2026-11-26T15:08:55.123456Z",
            "2026-11-26T15:08:55+09:00",
            "2026-11-26T15:08:55.5-05:30",
        ] {
            assert_eq!(rfc3339_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn broken_times_say_what_is_wrong() {
        for (bad, why) in [
            ("2024-01-01T12:99:00Z", "minute"),
            ("2023-02-29T00:00:00Z", "day"),
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-11-26T24:00:00Z", "hour"),
            ("2026-11-26T15:08:60Z", "second"),
            ("2026-11-26 15:08:55Z", "RFC 3339"),
            ("2026-11-26T15:08:55", "Z"),
            ("2026-11-26T15:08:55.Z", "fraction"),
            ("2026-11-26T15:08:55+25:00", "offset"),
            ("yesterday", "RFC 3339"),
            ("", "RFC 3339"),
            ("２０２６-11-26T15:08:55Z", "RFC 3339"),
        ] {
            let p = rfc3339_problem(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(p.contains(why), "{bad:?}: {p}");
        }
    }
}
