//! The Solar Hijri (Jalali) calendar, in which people in Iran read a
//! date: for texts sent to them (the engine's reminders) and for the
//! notices the load generator writes.

/// Tehran's offset from UTC, seconds: UTC+03:30 all year (Iran keeps no
/// summer time since 2022). Legal days, quotas and quiet hours turn at
/// Tehran's midnight.
pub const TEHRAN_UTC_OFFSET_SECS: i32 = 3 * 3600 + 30 * 60;

/// The Solar Hijri date `(year, month, day)` of a Gregorian date, by the
/// arithmetic 33-year cycle of Iranian software (jdf; the same as
/// Python's `jdatetime`). It agrees with the astronomical calendar for
/// this century's years.
pub fn solar_hijri(gy: i64, gm: u32, gd: u32) -> (i64, u32, u32) {
    const BEFORE_MONTH: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let gy2 = if gm > 2 { gy + 1 } else { gy };
    let mut days = 355_666 + 365 * gy + (gy2 + 3) / 4 - (gy2 + 99) / 100
        + (gy2 + 399) / 400
        + i64::from(gd)
        + BEFORE_MONTH[gm as usize - 1];
    let mut jy = -1595 + 33 * (days / 12_053);
    days %= 12_053;
    jy += 4 * (days / 1461);
    days %= 1461;
    if days > 365 {
        jy += (days - 1) / 365;
        days = (days - 1) % 365;
    }
    let (jm, jd) = if days < 186 {
        (1 + days / 31, 1 + days % 31)
    } else {
        (7 + (days - 186) / 30, 1 + (days - 186) % 30)
    };
    (jy, jm as u32, jd as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_those_of_an_independent_implementation() {
        // Expected values from Python's jdatetime 6.1
        // (jdatetime.date.fromgregorian): around Nowruz and month ends.
        for ((y, m, d), want) in [
            ((2026, 3, 21), (1405, 1, 1)),
            ((2026, 3, 20), (1404, 12, 29)),
            ((2026, 12, 7), (1405, 9, 16)),
            ((2025, 3, 21), (1404, 1, 1)),
            ((2024, 3, 20), (1403, 1, 1)),
            ((2028, 3, 20), (1407, 1, 1)),
            ((2029, 3, 20), (1408, 1, 1)),
            ((2026, 9, 22), (1405, 6, 31)),
            ((2026, 9, 23), (1405, 7, 1)),
            ((2030, 12, 31), (1409, 10, 10)),
            ((2027, 2, 19), (1405, 11, 30)),
        ] {
            assert_eq!(solar_hijri(y, m, d), want, "{y}-{m}-{d}");
        }
    }
}
