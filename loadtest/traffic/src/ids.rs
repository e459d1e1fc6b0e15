//! Recipients' IDs: the population of valid national codes and legal
//! national IDs, and the ways bad records get them wrong.

use karpoosheh_schemas::MailboxId;
use rand::rngs::SmallRng;
use rand::Rng;

use crate::digits::push_persian_digits;

/// Issuing-office prefixes (the first three digits of a national code).
const PERSON_PREFIXES: [u16; 48] = [
    1, 2, 3, 4, 5, 6, 7, 8, 11, 20, 25, 37, 38, 44, 55, 63, 92, 93, 94, 127, 128, 129, 136, 137,
    138, 159, 175, 176, 228, 229, 230, 246, 257, 274, 287, 322, 323, 342, 360, 386, 412, 439, 447,
    469, 496, 520, 612, 638,
];

/// Population index -> national code: an issuing office and a scrambled
/// serial, so IDs look issued rather than sequential.
pub(crate) fn person_id(k: u64) -> MailboxId {
    let p = PERSON_PREFIXES.len() as u64;
    let q = k / p;
    let serial = ((q % 1_000_000) * 738_227 + 104_729) % 1_000_000;
    let prefix = (PERSON_PREFIXES[(k % p) as usize] as u64 + 11 * (q / 1_000_000)) % 1000;
    let mut body = prefix * 1_000_000 + serial;
    loop {
        if let Some(id) = MailboxId::person_from_body(body as u32) {
            return id;
        }
        body = (body + 1) % 1_000_000_000;
    }
}

/// Population index -> legal national ID: mostly older `10…` IDs (all of
/// the largest companies), a fifth newer `140…` ones.
pub(crate) fn legal_id(k: u64) -> MailboxId {
    let mut body = if k % 5 == 4 {
        1_400_000_000 + ((k / 5) % 10_000_000 * 7_321_547 + 1_234_567) % 10_000_000
    } else {
        let q = (k / 5) * 4 + k % 5;
        1_000_000_000 + ((q % 100_000_000) * 36_912_743 + 5_550_123) % 100_000_000
    };
    loop {
        if let Some(id) = MailboxId::legal_from_body(body) {
            return id;
        }
        body = (body + 1) % 10_000_000_000;
    }
}

// ---- bad records ---------------------------------------------------------

/// Bad-check-digit: one digit mistyped or two neighbours swapped, as a
/// clerk would; sometimes in Persian digits.
pub(crate) fn typo_id(id: MailboxId, rng: &mut SmallRng, out: &mut String) {
    let good = id.to_string();
    let mut d = good.clone().into_bytes();
    let len = d.len();
    let mut found = false;
    for _ in 0..16 {
        d.copy_from_slice(good.as_bytes());
        if rng.random_bool(0.4) {
            let p = rng.random_range(0..len - 1);
            d.swap(p, p + 1);
        } else {
            let p = rng.random_range(0..len);
            d[p] = b'0' + (d[p] - b'0' + rng.random_range(1..10)) % 10;
        }
        if bad_check_digit(&d) {
            found = true;
            break;
        }
    }
    if !found {
        // The check digit itself: always caught, unless it makes the ID a
        // repeated digit.
        for delta in 1..10 {
            d.copy_from_slice(good.as_bytes());
            d[len - 1] = b'0' + (d[len - 1] - b'0' + delta) % 10;
            if bad_check_digit(&d) {
                break;
            }
        }
    }
    let s = std::str::from_utf8(&d).expect("digits");
    if rng.random_bool(0.2) {
        push_persian_digits(out, s);
    } else {
        out.push_str(s);
    }
}

fn bad_check_digit(d: &[u8]) -> bool {
    matches!(
        MailboxId::parse(std::str::from_utf8(d).unwrap_or("")),
        Err(karpoosheh_schemas::IdError::BadCheckDigit)
    )
}

/// Wrong length: a spreadsheet dropped the leading zeros of a national
/// code, or a digit was lost. (Always a natural person's 10-digit code, so
/// the result has 8 or 9 digits.)
pub(crate) fn short_id(id: MailboxId, rng: &mut SmallRng, out: &mut String) {
    let s = id.to_string();
    let trimmed = s.trim_start_matches('0');
    if trimmed.len() < s.len() && trimmed.len() >= 7 {
        out.push_str(trimmed);
    } else {
        let p = rng.random_range(0..s.len());
        out.push_str(&s[..p]);
        out.push_str(&s[p + 1..]);
    }
}

/// Invalid character: the ID as printed on the card, with dashes or spaces.
pub(crate) fn formatted_id(id: MailboxId, rng: &mut SmallRng, out: &mut String) {
    let s = id.to_string();
    let sep = if rng.random_bool(0.7) { '-' } else { ' ' };
    out.push_str(&s[..3]);
    out.push(sep);
    out.push_str(&s[3..s.len() - 1]);
    out.push(sep);
    out.push_str(&s[s.len() - 1..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_valid_and_distinct() {
        let mut seen = HashSet::new();
        for k in 0..50_000 {
            let p = person_id(k);
            assert_eq!(MailboxId::parse(&p.to_string()), Ok(p));
            assert!(seen.insert(p));
            let l = legal_id(k);
            assert_eq!(MailboxId::parse(&l.to_string()), Ok(l));
            assert!(seen.insert(l));
        }
    }
}
