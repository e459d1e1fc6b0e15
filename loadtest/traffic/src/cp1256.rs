//! Windows-1256 (Arabic), as a legacy system writes it: the invalid-UTF-8
//! records.

/// Invalid UTF-8: a legacy system that writes Windows-1256 (Arabic).
pub(crate) fn to_windows_1256(text: &str, out: &mut Vec<u8>) {
    // U+0621..=U+064A; 0x3F ('?') where the code page has no character.
    const ARABIC: [u8; 42] = [
        0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
        0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD8, 0xD9, 0xDA, 0xDB, 0x3F, 0x3F, 0x3F, 0x3F,
        0x3F, 0xDC, 0xDD, 0xDE, 0xDF, 0xE1, 0xE3, 0xE4, 0xE5, 0xE6, 0xEC, 0xED,
    ];
    for ch in text.chars() {
        let b = match ch {
            c if c.is_ascii() => c as u8,
            '\u{0621}'..='\u{064A}' => ARABIC[ch as usize - 0x621],
            '\u{06F0}'..='\u{06F9}' => b'0' + (ch as u32 - 0x6F0) as u8,
            'پ' => 0x81,
            'چ' => 0x8D,
            'ژ' => 0x8E,
            'گ' => 0x90,
            'ک' => 0x98,
            'ی' => 0xED,
            '\u{200C}' => 0x9D,
            '،' => 0xA1,
            '؛' => 0xBA,
            '؟' => 0xBF,
            '«' => 0xAB,
            '»' => 0xBB,
            _ => b'?',
        };
        out.push(b);
    }
}
