//! The envelope as the agencies' systems write it: the wire structs
//! (numbers sometimes written as strings), Python's `json.dumps` style,
//! and the malformed JSON of bad records.

use std::io;

use rand::rngs::SmallRng;
use rand::Rng;
use serde::{Serialize, Serializer};

/// A number, or (in bad records) the same number written as a string.
#[derive(Clone, Copy)]
pub(crate) enum Num {
    U(u64),
    S(&'static str),
}

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Num::U(n) => s.serialize_u64(n),
            Num::S(t) => s.serialize_str(t),
        }
    }
}

#[derive(Serialize, Clone, Copy)]
pub(crate) struct AttOut<'a> {
    pub(crate) name: &'a str,
    pub(crate) media_type: &'a str,
    pub(crate) size: Num,
    pub(crate) sha256: &'a str,
}

impl<'a> AttOut<'a> {
    pub(crate) const EMPTY: AttOut<'static> = AttOut {
        name: "",
        media_type: "",
        size: Num::U(0),
        sha256: "",
    };

    pub(crate) const FALLBACK: AttOut<'static> = AttOut {
        name: "پیوست.pdf",
        media_type: "application/pdf",
        size: Num::U(245_760),
        sha256: "5f2b3c0e6a1d9c4e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49382716051a2b3c4d5e",
    };
}

#[derive(Serialize)]
pub(crate) struct WireOut<'a> {
    pub(crate) schema_version: Num,
    pub(crate) agency: &'a str,
    pub(crate) reference: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recipient: Option<&'a str>,
    pub(crate) kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<&'a str>,
    pub(crate) body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attachments: Option<&'a [AttOut<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min_access_level: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) life_event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sent_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) batch_id: Option<&'a str>,
}

/// Writes JSON the way Python's `json.dumps` does with its defaults:
/// every non-ASCII character as `\uXXXX` (surrogate pairs above U+FFFF,
/// lowercase hex) and `", "` / `": "` separators.
pub(crate) struct PythonAscii;

impl serde_json::ser::Formatter for PythonAscii {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] < 0x80 {
                i += 1;
                continue;
            }
            if start < i {
                w.write_all(&bytes[start..i])?;
            }
            let ch = fragment[i..].chars().next().expect("a char starts here");
            let mut units = [0u16; 2];
            let mut buf = [0u8; 12];
            let mut n = 0;
            for &u in ch.encode_utf16(&mut units).iter() {
                buf[n] = b'\\';
                buf[n + 1] = b'u';
                buf[n + 2] = HEX[(u >> 12) as usize & 15];
                buf[n + 3] = HEX[(u >> 8) as usize & 15];
                buf[n + 4] = HEX[(u >> 4) as usize & 15];
                buf[n + 5] = HEX[u as usize & 15];
                n += 6;
            }
            w.write_all(&buf[..n])?;
            i += ch.len_utf8();
            start = i;
        }
        if start < bytes.len() {
            w.write_all(&bytes[start..])?;
        }
        Ok(())
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Malformed JSON: a record cut short by a producer bug (at a character
/// boundary, so it stays UTF-8), a trailing comma from a hand-made
/// serializer, or two messages in one record.
pub(crate) fn malform(out: &mut Vec<u8>, rng: &mut SmallRng) {
    match rng.random::<f64>() {
        x if x < 0.6 => {
            let mut cut = rng.random_range(out.len() / 4..out.len() - 1);
            while cut > 1 && (out[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            out.truncate(cut);
        }
        x if x < 0.8 => {
            let last = out.len() - 1;
            out.insert(last, b',');
        }
        _ => {
            // No newline between them: records must stay one NDJSON line.
            out.extend_from_within(..);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_formatter_escapes_like_python() {
        let mut out = Vec::new();
        let v = serde_json::json!({"a": "سلام\u{200c}ها 😀\n", "b": [1, 2]});
        v.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonAscii,
        ))
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a": "\u0633\u0644\u0627\u0645\u200c\u0647\u0627 \ud83d\ude00\n", "b": [1, 2]}"#
        );
    }
}
