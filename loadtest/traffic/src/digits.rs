//! Numbers as text: ASCII and Persian digits, grouped amounts, hex.

pub(crate) fn push_ascii(out: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.push_str(std::str::from_utf8(&buf[start..]).expect("digits"));
}

const FA_DIGITS: [char; 10] = ['۰', '۱', '۲', '۳', '۴', '۵', '۶', '۷', '۸', '۹'];

/// `n` in Persian digits, zero-padded to `width`.
pub(crate) fn push_fa(out: &mut String, n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut len = 0;
    let mut n = n;
    loop {
        buf[len] = (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while len < width.min(20) {
        buf[len] = 0;
        len += 1;
    }
    for k in (0..len).rev() {
        out.push(FA_DIGITS[buf[k] as usize]);
    }
}

/// An amount in Persian digits with the Arabic thousands separator:
/// ۱۲٬۵۰۰٬۰۰۰.
pub(crate) fn push_fa_grouped(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    let mut len = 0;
    let mut n = n;
    loop {
        buf[len] = (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for k in (0..len).rev() {
        out.push(FA_DIGITS[buf[k] as usize]);
        if k > 0 && k % 3 == 0 {
            out.push('٬');
        }
    }
}

pub(crate) fn push_persian_digits(out: &mut String, ascii: &str) {
    for c in ascii.chars() {
        match c {
            '0'..='9' => out.push(FA_DIGITS[(c as u8 - b'0') as usize]),
            other => out.push(other),
        }
    }
}

pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8; 64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (k, b) in bytes.iter().take(32).enumerate() {
        out[2 * k] = HEX[(b >> 4) as usize];
        out[2 * k + 1] = HEX[(b & 15) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_amounts() {
        let mut s = String::new();
        push_fa_grouped(&mut s, 12_500_000);
        assert_eq!(s, "۱۲٬۵۰۰٬۰۰۰");
    }
}
