//! Borrowed parsers for message bodies the proxy must look into. Bodies come from peers: every
//! function is total (returns `None` on malformed input) and never panics.

/// Splits a NUL-terminated string off the front of `b`.
pub fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    Some((&b[..nul], &b[nul + 1..]))
}

/// The fields of an ErrorResponse / NoticeResponse we care about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: Option<&'a str>,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
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
