//! `sql::lexer::Lexer` and `sql::effects::scan_with` on arbitrary bytes, with
//! `standard_conforming_strings` on and off. They are total: never a panic, whatever the input.
//!
//! Invariants: tokens are in order, non-empty, inside the input, with only whitespace and
//! comments between them; each PREPARE's range starts with the keyword and, scanned on its
//! own, gives the same single PREPARE; a complete statement in front of the text changes
//! nothing but the offsets; `is_empty` means no flags and no names; names are non-empty.
#![no_main]

use lagoon::sql::effects::{Flags, scan_with};
use lagoon::sql::lexer::Lexer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for standard in [true, false] {
        let mut last = 0;
        for t in Lexer::with_standard_strings(data, standard) {
            assert!(last <= t.start && t.start < t.end && t.end <= data.len());
            assert!(
                Lexer::new(&data[last..t.start]).next().is_none(),
                "a token in a gap"
            );
            last = t.end;
        }

        let fx = scan_with(data, standard);
        if fx.is_empty() {
            assert!(fx.custom_settings.is_empty() && fx.prepares.is_empty());
            assert!(fx.deallocated.is_empty() && fx.executed.is_empty());
            assert!(!fx.reset_all && !fx.deallocate_all);
        }
        assert_eq!(fx.prepares.is_empty(), !fx.has(Flags::PREPARE));
        assert!(fx.deallocated.is_empty() || fx.has(Flags::DEALLOCATE));
        assert!(fx.executed.is_empty() || fx.has(Flags::EXECUTE));
        assert!(fx.custom_settings.is_empty() || fx.has(Flags::SETTINGS));
        for n in fx.custom_settings.iter() {
            assert!(n.contains(&b'.'));
        }
        for p in &fx.prepares {
            let text = &data[p.range.clone()];
            assert!(text.len() >= 7 && text[..7].eq_ignore_ascii_case(b"prepare"));
            let again = scan_with(text, standard);
            assert_eq!(again.prepares.len(), 1);
            assert_eq!(again.prepares[0].name, p.name);
            assert_eq!(again.prepares[0].range, 0..text.len());
        }

        let mut prefixed = b"SELECT 1;\n".to_vec();
        prefixed.extend_from_slice(data);
        let mut shifted = scan_with(&prefixed, standard);
        for p in &mut shifted.prepares {
            p.range = p.range.start - 10..p.range.end - 10;
        }
        assert_eq!(shifted, fx, "a statement in front changed the result");
    }
});
