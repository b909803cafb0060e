//! Build script: binds `spank.h` with bindgen and reads the installed Slurm's version, so the
//! plugin is always built for the Slurm whose headers are on the build host (Slurm refuses a
//! plugin whose `plugin_version` differs from its own major.minor).
//!
//! `SLURM_INCLUDE_DIR` overrides the header directory (default `/usr/include`; the headers are
//! `<dir>/slurm/spank.h` and `<dir>/slurm/slurm_version.h`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    let include_dir = env::var_os("SLURM_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    let spank_h = include_dir.join("slurm/spank.h");
    let version_h = include_dir.join("slurm/slurm_version.h");
    println!("cargo:rerun-if-changed={}", spank_h.display());
    println!("cargo:rerun-if-changed={}", version_h.display());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let version = read_slurm_version(&version_h);
    fs::write(
        out_dir.join("slurm_version.rs"),
        format!(
            "/// `SLURM_VERSION_NUMBER` from `{}`.\npub const SLURM_VERSION_NUMBER: u32 = {version:#x};\n",
            version_h.display()
        ),
    )
    .expect("write slurm_version.rs");

    let bindings = bindgen::Builder::default()
        .header(spank_h.to_string_lossy())
        .clang_arg(format!("-I{}", include_dir.display()))
        .allowlist_function("spank_.*")
        .allowlist_function("slurm_error")
        .allowlist_function("slurm_info")
        .allowlist_function("slurm_verbose")
        .allowlist_function("slurm_debug")
        .allowlist_type("spank_.*")
        .allowlist_var("ESPANK_.*")
        .allowlist_var("SPANK_OPTION_MAXLEN")
        .rustified_enum("spank_context")
        .constified_enum_module("spank_item")
        .generate_comments(false)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over {} failed: {e}", spank_h.display()));
    bindings
        .write_to_file(out_dir.join("spank_bindings.rs"))
        .expect("write spank_bindings.rs");

    // Export only what slurmd's plugin loader looks up; everything else stays local, like
    // pyxis's version script. Only the cdylib gets it (the rlib feeds unit tests).
    let script = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("spank-gha.version");
    println!("cargo:rerun-if-changed={}", script.display());
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
}

/// Reads `SLURM_VERSION_NUMBER` (or, failing that, the MAJOR/MINOR/MICRO defines) from
/// `slurm_version.h`.
fn read_slurm_version(path: &Path) -> u32 {
    let text = fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} (set SLURM_INCLUDE_DIR): {e}",
            path.display()
        )
    });
    let define = |name: &str| -> Option<String> {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("#define") && words.next() == Some(name))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
    };
    let parse = |s: &str| -> Option<u32> {
        let s = s.trim_matches(|c| c == '(' || c == ')' || c == '"');
        match s.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        }
    };
    if let Some(v) = define("SLURM_VERSION_NUMBER").as_deref().and_then(parse) {
        return v;
    }
    let part = |name: &str| define(name).as_deref().and_then(parse);
    match (
        part("SLURM_VERSION_MAJOR_NUM"),
        part("SLURM_VERSION_MINOR_NUM"),
    ) {
        (Some(major), Some(minor)) => {
            (major << 16) | (minor << 8) | part("SLURM_VERSION_MICRO_NUM").unwrap_or(0)
        }
        _ => panic!(
            "{} defines neither SLURM_VERSION_NUMBER nor SLURM_VERSION_MAJOR_NUM/MINOR_NUM",
            path.display()
        ),
    }
}
