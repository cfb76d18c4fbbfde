//! The borrowed body parsers (`protocol::messages::parse`) on arbitrary bytes. They are total:
//! `None` on malformed input, never a panic. Invariants: what they return is a NUL-free slice
//! of the input, at the position the format says.
#![no_main]

use lagoon::protocol::messages::parse::{ErrorFields, cstr, error_fields, parameter_status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // cstr: a NUL-free prefix, the NUL, the rest.
    match cstr(data) {
        Some((s, rest)) => {
            assert!(!s.contains(&0));
            assert_eq!(data[s.len()], 0);
            assert_eq!(s.len() + 1 + rest.len(), data.len());
            assert_eq!(rest, &data[s.len() + 1..]);
        }
        None => assert!(!data.contains(&0)),
    }

    // parameter_status: two C strings, both UTF-8.
    let ps = parameter_status(data);
    if let Some((name, value)) = ps {
        assert!(!name.contains('\0') && !value.contains('\0'));
        assert_eq!(&data[..name.len()], name.as_bytes());
        assert_eq!(data[name.len()], 0);
        let v = &data[name.len() + 1..];
        assert_eq!(&v[..value.len()], value.as_bytes());
        assert_eq!(v[value.len()], 0);
    } else if let Some((n, rest)) = cstr(data)
        && let Some((v, _)) = cstr(rest)
    {
        assert!(std::str::from_utf8(n).is_err() || std::str::from_utf8(v).is_err());
    }

    // error_fields, against a plain re-implementation of the field walk.
    assert_eq!(error_fields(data), model_error_fields(data));
    if let Some(f) = error_fields(data) {
        for s in [f.severity, f.code, f.message].into_iter().flatten() {
            assert!(!s.contains('\0'));
        }
    }
});

fn model_error_fields(body: &[u8]) -> Option<ErrorFields<'_>> {
    let mut f = ErrorFields::default();
    let mut i = 0;
    loop {
        let tag = *body.get(i)?;
        if tag == 0 {
            return Some(f);
        }
        let start = i + 1;
        let len = body.get(start..)?.iter().position(|&b| b == 0)?;
        let value = std::str::from_utf8(&body[start..start + len]).ok();
        match tag {
            b'V' => f.severity = value,
            b'S' if f.severity.is_none() => f.severity = value,
            b'C' => f.code = value,
            b'M' => f.message = value,
            _ => {}
        }
        i = start + len + 1;
    }
}
