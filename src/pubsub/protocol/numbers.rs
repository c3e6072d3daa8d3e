//! Range check of the numbers in published `data`, which is forwarded raw
//! into every delivery. JSON syntax allows any number, but strict parsers
//! (serde_json, Go's encoding/json) refuse one outside the range of an f64,
//! and JavaScript reads it as `Infinity`: such `data` must be refused before
//! it reaches subscribers.
//!
//! The input is already valid JSON (a `RawValue`), so one pass over its bytes
//! finds the number tokens outside strings. Only a token that could overflow
//! an f64, one with a positive exponent or more than
//! [`PLAIN_INTEGER_DIGITS`] integer digits, is parsed, by serde_json itself;
//! the common case (small numbers, `1.5`, `0.30000000000000004`, `1e-7`)
//! costs the scan alone.

/// Integer digits (before any `.` or exponent) a number without a positive
/// exponent may have and never need parsing: 10^15 is far below `f64::MAX`
/// (about 1.8e308). Fraction digits and negative exponents only make a
/// number smaller.
pub(super) const PLAIN_INTEGER_DIGITS: usize = 15;

/// The first number in `json` (valid JSON text) that strict parsers refuse
/// because it is not finite as an f64, e.g. `1e309` or `-1e309`. Big
/// integers that overflow u64/i64 but are finite as an f64
/// (`123456789012345678901234567890`) are accepted, as serde_json reads them.
pub(super) fn out_of_range_number(json: &str) -> Option<&str> {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i + 1),
            b'-' | b'0'..=b'9' => {
                let start = i;
                let (end, may_overflow) = number_end(bytes, i);
                i = end;
                // Token boundaries are ASCII, so slicing stays on chars.
                let token = json.get(start..end)?;
                if may_overflow && serde_json::from_str::<f64>(token).is_err() {
                    return Some(token);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Index just past the closing quote of a string whose contents start at
/// `i`. A backslash always escapes the next byte (`\"`, `\\`, `\u....`).
/// Eight bytes at a time: long strings are the bulk of most large `data`.
fn string_end(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    // The high bit of each zero byte of `v`. Exact up to the first zero byte
    // (a borrow can flag bytes above it), which is all that is used.
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            let w = u64::from_le_bytes(word);
            let hits = zero_bytes(w ^ QUOTES) | zero_bytes(w ^ BACKSLASHES);
            if hits == 0 {
                i += 8;
                continue;
            }
            // Little-endian: the lowest flagged byte is the first quote or
            // backslash.
            i += (hits.trailing_zeros() / 8) as usize;
        }
        match bytes[i] {
            b'"' => return i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    i
}

/// Index just past the number token starting at `i`, and whether it could be
/// out of range: a positive exponent, or more than [`PLAIN_INTEGER_DIGITS`]
/// integer digits.
fn number_end(bytes: &[u8], mut i: usize) -> (usize, bool) {
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut may_overflow = i - int_start > PLAIN_INTEGER_DIGITS;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        match bytes.get(i) {
            Some(b'-') => i += 1,
            Some(b'+') => {
                i += 1;
                may_overflow = true;
            }
            _ => may_overflow = true,
        }
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    (i, may_overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery embedding `data` raw, read back as a strict subscriber does.
    fn readable(data: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(&format!(r#"{{"data":{data}}}"#)).is_ok()
    }

    #[test]
    fn numbers_strict_parsers_read_are_accepted() {
        for data in [
            "1",
            "-0",
            "1.5",
            "0.30000000000000004",
            "1e308",
            "-1e308",
            "1.7976931348623157e308",
            "1E+308",
            "1e-7",
            "1e-400",
            "0.0000001e300",
            "123456789012345678901234567890",
            "-123456789012345678901234567890",
            "{\"a\":[1,2e10,{\"b\":-3.25E-3}],\"c\":true,\"d\":null,\"e\":false}",
            &"9".repeat(300),
        ] {
            assert_eq!(out_of_range_number(data), None, "{data}");
            assert!(readable(data), "{data}");
        }
    }

    #[test]
    fn numbers_out_of_the_range_of_an_f64_are_found() {
        for (data, number) in [
            ("1e309", "1e309"),
            ("-1e309", "-1e309"),
            ("1E+309", "1E+309"),
            ("0.5e999", "0.5e999"),
            (
                "{\"h\":555555555555555555E55555555555555555555550}",
                "555555555555555555E55555555555555555555550",
            ),
            ("[1,\"x\",{\"deep\":[2,-9e999]}]", "-9e999"),
            ("{\"1e999\":1e999}", "1e999"),
        ] {
            assert_eq!(out_of_range_number(data), Some(number), "{data}");
            assert!(!readable(data), "{data}: serde_json must refuse it too");
        }
        // 400 nines is about 1e400: out of range without any exponent.
        let nines = "9".repeat(400);
        assert_eq!(out_of_range_number(&nines), Some(nines.as_str()));
        assert!(!readable(&nines));
    }

    #[test]
    fn numbers_inside_strings_are_text() {
        for data in [
            "\"1e999\"",
            "\"price: 1e999 \\\" 1e999 \\\\\"",
            "{\"k\\\"1e999\":\"\\u00221e999\"}",
            "[\"\\\\\",1]",
            "\"é 1e999 ü\"",
        ] {
            assert_eq!(out_of_range_number(data), None, "{data}");
            assert!(readable(data), "{data}");
        }
        // After a string ending in an escaped backslash, numbers count again.
        assert_eq!(out_of_range_number("[\"\\\\\",1e999]"), Some("1e999"));
    }

    #[test]
    fn long_strings_end_at_their_closing_quote_at_any_offset() {
        // The string skip reads eight bytes at a time: put the escape and the
        // closing quote at every offset around those words.
        for len in 0..40 {
            for esc in 0..len {
                let mut text = "é".repeat(len / 2) + &"x".repeat(len % 2);
                text.insert_str(esc.min(text.len()) & !1, "\\\"1e999");
                let inside = format!("[\"{text}\"]");
                assert_eq!(out_of_range_number(&inside), None, "{inside}");
                let after = format!("[\"{text}\",-1e999]");
                assert_eq!(out_of_range_number(&after), Some("-1e999"), "{after}");
            }
        }
    }
}
