//! Borrowed parsers for message bodies the proxy must look into. Bodies come from peers: every
//! function is total (returns `None` on malformed input) and never panics.

/// Splits a NUL-terminated string off the front of `b`. Through `CStr::from_bytes_until_nul`
/// for its word-at-a-time NUL search: this runs on every query text, several times per query,
/// and a byte loop cost 6% of the per-query statistics path on a 150-byte statement.
pub fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = std::ffi::CStr::from_bytes_until_nul(b).ok()?.count_bytes();
    Some((&b[..nul], &b[nul + 1..]))
}

/// The fields of an ErrorResponse / NoticeResponse we care about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: Option<&'a str>,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
}

impl ErrorFields<'_> {
    /// FATAL or PANIC: the server ends the session after this message.
    pub fn ends_session(&self) -> bool {
        matches!(self.severity, Some("FATAL" | "PANIC"))
    }
}

/// Parses an ErrorResponse/NoticeResponse body (`(type byte, cstring)* \0`).
pub fn error_fields(mut body: &[u8]) -> Option<ErrorFields<'_>> {
    let mut f = ErrorFields::default();
    loop {
        let (&tag, rest) = body.split_first()?;
        if tag == 0 {
            return Some(f);
        }
        let (value, rest) = cstr(rest)?;
        let value = std::str::from_utf8(value).ok();
        match tag {
            b'V' => f.severity = value,
            b'S' if f.severity.is_none() => f.severity = value,
            b'C' => f.code = value,
            b'M' => f.message = value,
            _ => {}
        }
        body = rest;
    }
}

/// Parses a ParameterStatus body into (name, value).
pub fn parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let (name, rest) = cstr(body)?;
    let (value, _) = cstr(rest)?;
    Some((
        std::str::from_utf8(name).ok()?,
        std::str::from_utf8(value).ok()?,
    ))
}

/// The column values of a DataRow body (None for SQL NULL).
pub fn data_row(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let (count, mut rest) = body.split_first_chunk::<2>()?;
    let count = i16::from_be_bytes(*count);
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?);
    for _ in 0..count {
        let (len, r) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            out.push(None);
            rest = r;
        } else {
            let len = usize::try_from(len).ok()?;
            if r.len() < len {
                return None;
            }
            out.push(Some(&r[..len]));
            rest = &r[len..];
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_are_none() {
        assert_eq!(error_fields(b""), None);
        assert_eq!(error_fields(b"Cabc"), None);
        assert_eq!(parameter_status(b"name"), None);
        assert_eq!(parameter_status(b"a\0b\0"), Some(("a", "b")));
        assert_eq!(data_row(b"\0"), None);
        assert_eq!(data_row(b"\0\x01\0\0\0\x05ab"), None);
        assert_eq!(
            data_row(b"\0\x02\0\0\0\x02ab\xff\xff\xff\xff"),
            Some(vec![Some(&b"ab"[..]), None])
        );
    }
}
/// Deterministic "no panic on random input" checks, the CI-sized cousin of `fuzz/` target
/// `messages`: the parsers are total over a few thousand generated bodies.
#[cfg(test)]
mod random_input_tests {
    use super::*;

    /// The generator must reach each interesting case (see the final assertion) at least this
    /// often, so that it cannot quietly stop exercising the code under test.
    const LOTS: usize = 30;

    use crate::test_rng::Rng;

    /// Field-structured bodies (type byte, C string) with random bytes, missing terminators
    /// and invalid UTF-8 mixed in.
    fn body(rng: &mut Rng) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..rng.below(6) {
            v.push(b"SVCMDH\0\xff"[rng.below(8)]);
            for _ in 0..rng.below(8) {
                // Mostly valid text; sometimes bad UTF-8 or an early NUL.
                v.push(b"ab09XYZ_ab09XYZ_\xc3\xa9\xff\0"[rng.below(20)]);
            }
            if rng.below(12) != 0 {
                v.push(0);
            }
        }
        if rng.below(3) != 0 {
            v.push(0);
        }
        if rng.below(5) == 0 {
            v = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
        }
        v
    }

    #[test]
    fn random_bodies_parse_without_panic() {
        let mut rng = Rng(0x94D0_49BB_1331_11EB);
        let (mut statuses, mut errors) = (0, 0);
        for _ in 0..5000 {
            let b = body(&mut rng);
            match cstr(&b) {
                Some((s, rest)) => {
                    assert!(!s.contains(&0));
                    assert_eq!(s.len() + 1 + rest.len(), b.len());
                    assert_eq!(b[s.len()], 0);
                }
                None => assert!(!b.contains(&0)),
            }
            if let Some((name, value)) = parameter_status(&b) {
                assert!(b.starts_with(name.as_bytes()));
                assert_eq!(b[name.len()], 0);
                assert!(b[name.len() + 1..].starts_with(value.as_bytes()));
                statuses += 1;
            }
            if let Some(f) = error_fields(&b) {
                // Only a body that ends its fields with a NUL type byte parses.
                assert!(b.contains(&0));
                for s in [f.severity, f.code, f.message].into_iter().flatten() {
                    assert!(!s.contains('\0'));
                }
                errors += usize::from(f.severity.is_some() && f.code.is_some());
            }
        }
        // The generator must keep reaching the parsed cases.
        assert!(statuses > LOTS && errors > LOTS, "{statuses} {errors}");
    }
}
