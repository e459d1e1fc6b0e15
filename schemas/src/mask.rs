//! Personal numbers shown to operators: national IDs, legal IDs and phone
//! numbers are never shown whole on an operator's screen (CLAUDE.md: they
//! are personal data). What is left is enough to tell two apart on a
//! call with the person who reads theirs out.

/// How many trailing digits stay visible.
const VISIBLE: usize = 4;

/// A run of at least this many digits is taken for a personal number: a
/// national code has 10, a legal ID 11, a mobile number 11, a landline 8.
const PERSONAL_DIGITS: usize = 8;

/// `id` with all but its last four characters replaced by `*`
/// (`0012345679` → `******5679`).
pub fn mask_id(id: &str) -> String {
    let n = id.chars().count();
    id.chars()
        .enumerate()
        .map(|(i, c)| if i + VISIBLE < n { '*' } else { c })
        .collect()
}

/// `text` with every run of eight or more ASCII or Persian digits masked
/// as [`mask_id`] masks an ID; everything else unchanged.
pub fn mask_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= PERSONAL_DIGITS {
            out.push_str(&mask_id(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || ('\u{06F0}'..='\u{06F9}').contains(&c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
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
    fn runs_of_eight_digits_or_more_are_masked_in_text() {
        assert_eq!(
            mask_digits("recipient 0012345679 has a bad check digit"),
            "recipient ******5679 has a bad check digit"
        );
        assert_eq!(mask_digits("call 09121234567."), "call *******4567.");
        assert_eq!(mask_digits("۰۰۱۲۳۴۵۶۷۹"), "******۵۶۷۹");
        // Short numbers (sizes, offsets, counts) stay.
        assert_eq!(
            mask_digits("body is 262144 bytes, line 7"),
            "body is 262144 bytes, line 7"
        );
        assert_eq!(mask_digits(""), "");
    }
}
