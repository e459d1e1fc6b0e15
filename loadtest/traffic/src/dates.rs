//! Dates: RFC 3339 in UTC or Tehran time, days to the Gregorian
//! calendar (Gregorian to Jalali is `karpoosheh_schemas::solar_hijri`).

use crate::digits::push_ascii;

pub(crate) const TEHRAN_OFFSET_SECS: i64 = karpoosheh_schemas::TEHRAN_UTC_OFFSET_SECS as i64;

/// RFC 3339 in UTC (`Z`) or Tehran time (`+03:30`), with microseconds if given.
pub(crate) fn push_rfc3339(out: &mut String, secs: i64, micros: Option<u32>, tehran: bool) {
    let local = if tehran {
        secs + TEHRAN_OFFSET_SECS
    } else {
        secs
    };
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let sod = local.rem_euclid(86_400) as u64;
    push_ascii(out, y as u64, 4);
    out.push('-');
    push_ascii(out, m as u64, 2);
    out.push('-');
    push_ascii(out, d as u64, 2);
    out.push('T');
    push_ascii(out, sod / 3600, 2);
    out.push(':');
    push_ascii(out, sod / 60 % 60, 2);
    out.push(':');
    push_ascii(out, sod % 60, 2);
    if let Some(us) = micros {
        out.push('.');
        push_ascii(out, us as u64, 6);
    }
    out.push_str(if tehran { "+03:30" } else { "Z" });
}

/// Days since 1970-01-01 -> proleptic Gregorian (y, m, d).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use karpoosheh_schemas::solar_hijri;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(solar_hijri(2024, 3, 20), (1403, 1, 1));
        assert_eq!(solar_hijri(2025, 3, 21), (1404, 1, 1));
        assert_eq!(solar_hijri(2026, 11, 23), (1405, 9, 2));
        let start = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let mut s = String::new();
        push_rfc3339(&mut s, start.timestamp(), Some(1234), true);
        assert_eq!(s, "2026-11-23T13:30:00.001234+03:30");
        s.clear();
        push_rfc3339(&mut s, start.timestamp(), None, false);
        assert_eq!(s, "2026-11-23T10:00:00Z");
    }
}
