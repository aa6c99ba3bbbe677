//! Secret references: parsing never panics, and whatever parses prints back to the same text
//! and parses again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psstd::reference::{parse_prefix, SecretRef};

fuzz_target!(|text: &str| {
    if let Ok(reference) = SecretRef::parse(text) {
        let printed = reference.to_string();
        assert_eq!(printed, text, "parsing is canonical");
        assert_eq!(SecretRef::parse(&printed).as_ref(), Ok(&reference));
        let _ = reference.without_key().to_string();
    }
    let _ = parse_prefix(text);
});
