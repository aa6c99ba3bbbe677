//! Links `psstd` with packed relative relocations (`-z pack-relative-relocs`, DT_RELR) when the
//! C library it is built against can load them (glibc 2.36 or later).
//!
//! A position-independent `psstd` carries ~84,000 relative relocations (vtables, string tables in
//! `.data.rel.ro`). As `.rela.dyn` entries they are 24 bytes each: 2 MB of the binary that the
//! dynamic loader reads, and keeps resident, at every start. Packed, they take ~24 KB; idle RSS
//! falls by ~2 MB (BENCHMARKS.md, "Memory"). The binary then needs glibc 2.36 or later where it
//! runs (the linker records the `GLIBC_ABI_DT_RELR` version, so an older loader refuses it with a
//! clear message instead of misreading it). `PSSTD_RELR=0` at build time leaves the relocations
//! unpacked, for a binary built on a newer system to run on an older glibc.

fn main() {
    println!("cargo:rerun-if-env-changed=PSSTD_RELR");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let wanted = std::env::var("PSSTD_RELR").map_or(true, |v| v != "0");
    // The C library this script runs on is the one the binary links against only in a native
    // build; a cross build keeps the default relocations.
    if wanted && target == host && target.ends_with("-linux-gnu") && host_glibc_has_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the running glibc is 2.36 or later (DT_RELR support).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn host_glibc_has_relr() -> bool {
    use std::ffi::{c_char, CStr};
    extern "C" {
        fn gnu_get_libc_version() -> *const c_char;
    }
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string such as "2.36".
    let version = unsafe { CStr::from_ptr(gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn host_glibc_has_relr() -> bool {
    false
}
