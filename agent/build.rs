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
//!
//! A release link also gets `psstd.order` (next to this file) as lld's symbol ordering file: the
//! functions that psstd's start, its idle loop, a cached read and a first AWS read run, which the
//! linker then packs at the start of `.text`, so that the kernel maps fewer of the binary's pages
//! (RSS 11.4 → 6.7 MB idle, 18.4 → 10.5 MB after the first AWS read; BENCHMARKS.md, "A symbol
//! ordering file").
//! `bench/order/gen` regenerates the file from a profile and `bench/order/check` says how many of
//! its symbols a binary still defines: a name whose hash changed with the compiler or a
//! dependency is skipped by lld, so a stale file builds the same binary with less of the gain.
//! It is used only when the linker takes it (probed: rustc's default lld does, GNU ld does not)
//! in a native linux-gnu release build; `PSSTD_ORDER=0` at build time leaves the link unordered.

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
    symbol_ordering(&target, &host);
}

/// Hands `psstd.order` to the linker of a native linux-gnu release build, if the linker takes it.
fn symbol_ordering(target: &str, host: &str) {
    println!("cargo:rerun-if-env-changed=PSSTD_ORDER");
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let order = dir.join("psstd.order");
    println!("cargo:rerun-if-changed={}", order.display());
    let wanted = std::env::var("PSSTD_ORDER").map_or(true, |v| v != "0");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let Some(path) = order.to_str() else { return };
    // `-Wl,` splits its argument at commas.
    if !(wanted && release && target == host && target.ends_with("-linux-gnu"))
        || path.contains(',')
        || !order.is_file()
    {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={path}"),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ];
    if linker_takes(&args, target) {
        for arg in args {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    } else {
        println!("cargo:warning=psstd.order not used: the linker does not take --symbol-ordering-file (lld does)");
    }
}

/// Whether an empty program links with `link_args` added, by the rustc, linker and flags this
/// build uses: rustc's default linker on x86_64 Linux is lld, GNU ld refuses
/// `--symbol-ordering-file` (a `linker` setting or `-C link-arg=-fuse-ld=...` picks another).
fn linker_takes(link_args: &[String], target: &str) -> bool {
    use std::io::Write;
    let (Some(rustc), Some(out_dir)) = (std::env::var_os("RUSTC"), std::env::var_os("OUT_DIR"))
    else {
        return false;
    };
    let mut command = std::process::Command::new(rustc);
    command
        .args(["--crate-type=bin", "--crate-name=order_probe"])
        .arg(format!("--target={target}"))
        .arg("-o")
        .arg(std::path::Path::new(&out_dir).join("order_probe"));
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        command.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        command
            .arg("-C")
            .arg(format!("linker={}", linker.to_string_lossy()));
    }
    for arg in link_args {
        command.arg("-C").arg(format!("link-arg={arg}"));
    }
    let child = command
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let wrote = child
        .stdin
        .take()
        .is_some_and(|mut stdin| stdin.write_all(b"fn main() {}\n").is_ok());
    child.wait().is_ok_and(|status| status.success()) && wrote
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
