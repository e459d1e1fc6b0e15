//! Personal data shown to operators: national IDs, legal IDs, phone
//! numbers and e-mail addresses are never shown whole on an operator's
//! screen (they are personal data). What is left is enough to tell two
//! apart on a call with the person who reads theirs out.
//!
//! [`mask_personal`] errs on the side of masking: any group of seven or
//! more digits (Latin, Arabic-Indic or Persian), counted across the
//! separators people write numbers with (`0912 123 4567`,
//! `+98-912-123-4567`, `(021) 8812 3456`), keeps only its last four; a
//! national ID whose leading zeros were lost has seven. A date written
//! `YYYY-MM-DD` (or with `/`) is left whole and never joined to a number
//! beside it. Sizes and offsets of seven digits or more are masked too:
//! the price of never missing a number that is someone's.

/// How many trailing digits stay visible.
const VISIBLE: usize = 4;

/// A group of at least this many digits is taken for a personal number.
const PERSONAL_DIGITS: usize = 7;

/// What may stand between the digits of one written number (at most two
/// in a row: `) `).
const SEPARATORS: &[char] = &[' ', '\u{a0}', '-', '.', '(', ')', '+', '/'];

/// `id` with all but its last four characters replaced by `*`
/// (`0012345679` → `******5679`).
pub fn mask_id(id: &str) -> String {
    let n = id.chars().count();
    id.chars()
        .enumerate()
        .map(|(i, c)| if i + VISIBLE < n { '*' } else { c })
        .collect()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
        || ('\u{0660}'..='\u{0669}').contains(&c)
        || ('\u{06F0}'..='\u{06F9}').contains(&c)
}

/// `text` with every e-mail address's local part and every personal-looking
/// number masked (see the module documentation); everything else
/// unchanged.
pub fn mask_personal(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    mask_emails(&mut chars);
    mask_numbers(&mut chars);
    chars.into_iter().collect()
}

/// `local@domain.tld` → `*****@domain.tld`.
fn mask_emails(chars: &mut [char]) {
    let local = |c: char| c.is_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c);
    let domain = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    for at in 0..chars.len() {
        if chars[at] != '@' {
            continue;
        }
        let mut start = at;
        while start > 0 && local(chars[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < chars.len() && domain(chars[end]) {
            end += 1;
        }
        let host = &chars[at + 1..end];
        let dotted = host.iter().position(|&c| c == '.').is_some_and(|i| i > 0);
        if start < at && dotted {
            chars[start..at].iter_mut().for_each(|c| *c = '*');
        }
    }
}

fn mask_numbers(chars: &mut [char]) {
    // Maximal runs of digits: [start, end).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if is_digit(chars[i]) {
            let start = i;
            while i < chars.len() && is_digit(chars[i]) {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    // Runs that make up a date (YYYY-MM-DD, YYYY/MM/DD) stand alone.
    let mut date = vec![false; runs.len()];
    for k in 0..runs.len().saturating_sub(2) {
        let (a, b, c) = (runs[k], runs[k + 1], runs[k + 2]);
        let sep = chars[a.1];
        if a.1 - a.0 == 4
            && b.1 - b.0 == 2
            && c.1 - c.0 == 2
            && (sep == '-' || sep == '/')
            && b.0 == a.1 + 1
            && c.0 == b.1 + 1
            && chars[b.1] == sep
        {
            date[k] = true;
            date[k + 1] = true;
            date[k + 2] = true;
        }
    }
    let joined = |x: (usize, usize), y: (usize, usize), chars: &[char]| {
        let gap = &chars[x.1..y.0];
        !gap.is_empty() && gap.len() <= 2 && gap.iter().all(|c| SEPARATORS.contains(c))
    };
    let mut k = 0;
    while k < runs.len() {
        let mut last = k;
        if !date[k] {
            while last + 1 < runs.len()
                && !date[last + 1]
                && joined(runs[last], runs[last + 1], chars)
            {
                last += 1;
            }
        }
        let digits: usize = runs[k..=last].iter().map(|r| r.1 - r.0).sum();
        if !date[k] && digits >= PERSONAL_DIGITS {
            let mut hide = digits - VISIBLE;
            for r in &runs[k..=last] {
                for c in &mut chars[r.0..r.1] {
                    if hide == 0 {
                        break;
                    }
                    *c = '*';
                    hide -= 1;
                }
            }
        }
        k = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_last_four_digits() {
        assert_eq!(mask_id("0012345679"), "******5679");
        assert_eq!(mask_id("10100000007"), "*******0007");
        assert_eq!(mask_id("123"), "123");
    }

    #[test]
    fn numbers_as_people_write_them_are_masked() {
        let cases = [
            (
                "recipient 0012345679 has a bad check digit",
                "recipient ******5679 has a bad check digit",
            ),
            ("call 09121234567.", "call *******4567."),
            ("0912 123 4567", "**** *** 4567"),
            ("+98-912-123-4567", "+**-***-***-4567"),
            ("(021) 8812 3456", "(***) **** 3456"),
            ("001-234567-9", "***-***567-9"),
            // A national ID whose leading zeros a spreadsheet dropped.
            ("ID 1234567", "ID ***4567"),
            ("۰۰۱۲۳۴۵۶۷۹", "******۵۶۷۹"),
            ("٠٠١٢٣٤٥٦٧٩", "******٥٦٧٩"),
        ];
        for (text, want) in cases {
            assert_eq!(mask_personal(text), want, "{text}");
        }
    }

    #[test]
    fn e_mail_addresses_lose_their_local_part() {
        assert_eq!(
            mask_personal("mailto:ali.rezaei+tax@example.co.ir bounced"),
            format!("mailto:{}@example.co.ir bounced", "*".repeat(14))
        );
        assert_eq!(mask_personal("a@b"), "a@b", "no domain with a dot");
        assert_eq!(mask_personal("@example.com"), "@example.com");
    }

    #[test]
    fn dates_times_and_short_numbers_stay() {
        for text in [
            "expires_at 2026-10-23T20:29:59+00:00 is already past",
            "legal outcome   SERVED (art. 29) at 2026-12-07 05:27:14 UTC",
            "round 1 (retry 2) 2026/12/07 05:27:14",
            "body is 262144 bytes, line 7",
            "",
        ] {
            assert_eq!(mask_personal(text), text);
        }
    }
}
