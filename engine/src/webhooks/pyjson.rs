//! Webhook bodies serialised byte for byte as Python's `json.dumps` writes them with its
//! defaults: `", "` and `": "` separators, every character outside printable ASCII escaped as
//! `\uXXXX` (UTF-16 surrogate pairs beyond the BMP, lowercase hex, DEL included), floats as
//! `repr(float)` writes them (`1e-05`, `1e+16`, `1.0`), keys in the order they are written.
//!
//! Why: receivers written from the Operations Runbook verify a delivery by parsing the body and
//! re-serialising it with `json.dumps` before the HMAC. A body already in that form survives
//! the round trip unchanged, so the signature over the exact bytes sent is the signature they
//! compute. This is formatting only; the HMAC is the `hmac` crate's.

use serde::Serialize;
use serde_json::ser::Formatter;
use std::io::{self, Write};

/// A [`serde_json`] formatter writing what Python's `json.dumps(obj)` writes.
#[derive(Debug, Default, Clone, Copy)]
pub struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    /// serde_json escapes quotes, backslashes and C0 controls itself (as Python does, with
    /// `\u00XX` in lowercase); what reaches here unescaped is printable ASCII, DEL and
    /// non-ASCII, of which Python (`ensure_ascii=True`) escapes all but the first.
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (at, ch) in fragment.char_indices() {
            if (' '..='~').contains(&ch) {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..at])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = at + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
}

/// `repr(value)` as Python writes a finite float: the shortest digits that round-trip (Rust's
/// `{:e}` finds the same ones), positional for decimal exponents -4 to 15, scientific with a
/// signed two-digit exponent otherwise. (JSON has no NaN or infinity; serde_json never asks.)
fn python_float(value: f64) -> String {
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a decimal exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (whole, fraction) = digits.split_at(point as usize);
            format!("{whole}.{fraction}")
        };
        format!("{sign}{text}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.abs())
    }
}

/// `value` as `json.dumps(value)` would write it.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut serializer)?;
    // Only ASCII is ever written (every other character is escaped).
    Ok(String::from_utf8(out).expect("the formatter writes ASCII only"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators_and_nesting_are_pythons() {
        let value = json!({"a": [1, 2, {"b": null}], "c": {}, "d": [], "e": true});
        assert_eq!(
            to_string(&value).unwrap(),
            r#"{"a": [1, 2, {"b": null}], "c": {}, "d": [], "e": true}"#
        );
    }

    #[test]
    fn non_ascii_is_escaped_with_surrogate_pairs_and_controls_as_python_does() {
        let value = json!("é ✓ 😀 \u{7f} \u{1} \n\t\"\\ /");
        assert_eq!(
            to_string(&value).unwrap(),
            r#""\u00e9 \u2713 \ud83d\ude00 \u007f \u0001 \n\t\"\\ /""#
        );
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        for (value, python) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.5e300, "1.5e+300"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (0.0, "0.0"),
        ] {
            assert_eq!(python_float(value), python, "{value}");
        }
    }
}
