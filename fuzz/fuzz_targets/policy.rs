//! Policy files: any text either loads or is rejected with an error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psstd::policy::Policy;

fuzz_target!(|text: &str| {
    let _ = Policy::from_toml(text, "fuzz");
});
