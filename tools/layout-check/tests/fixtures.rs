//! Runs `layout-check` on small workspaces written here, one rule broken at a time, so each
//! rule is shown to catch what it is for (and to pass what it should pass).

use std::path::Path;
use std::process::Command;

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// A one-crate workspace with `files` under `app/`; returns (exit code, stdout).
fn check(files: &[(&str, &str)], extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("Cargo.toml", "[workspace]\nmembers = [\"app\"]\n"),
            ("app/Cargo.toml", "[package]\nname = \"app\"\n"),
        ],
    );
    let files: Vec<(String, &str)> = files
        .iter()
        .map(|(p, t)| (format!("app/{p}"), *t))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    write(dir.path(), &files);
    let out = Command::new(env!("CARGO_BIN_EXE_layout-check"))
        .arg("--root")
        .arg(dir.path())
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn long_fn(name: &str, lines: usize) -> String {
    format!(
        "pub fn {name}() {{\n{}}}\n",
        "    let _ = 1;\n".repeat(lines - 2)
    )
}

#[test]
fn a_clean_crate_passes() {
    let (code, out) = check(
        &[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            ("src/a.rs", "use crate::b::f;\npub fn g() { f() }\n"),
            ("src/b.rs", "pub fn f() {}\n"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 import cycles"), "{out}");
}

#[test]
fn a_cycle_between_siblings_fails_naming_both_and_where() {
    let (code, out) = check(
        &[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            ("src/a.rs", "use crate::b::f;\npub fn g() { f() }\n"),
            ("src/b.rs", "pub fn f() { super::a::g() }\n"),
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("import cycle among the children of crate: a, b"),
        "{out}"
    );
    assert!(out.contains("b.rs:1 names super::a::g"), "{out}");
}

#[test]
fn a_cycle_between_nested_subtrees_counts_but_parent_and_child_do_not() {
    // store::x uses its parent (allowed); api::h and store::y use each other (a cycle of
    // the top-level modules api and store).
    let (code, out) = check(
        &[
            ("src/lib.rs", "mod api;\nmod store;\n"),
            ("src/api/mod.rs", "mod h;\n"),
            ("src/api/h.rs", "pub fn h() { crate::store::y::y() }\n"),
            (
                "src/store/mod.rs",
                "pub mod x;\npub mod y;\npub fn s() { x::x() }\n",
            ),
            ("src/store/x.rs", "pub fn x() { super::s() }\n"),
            ("src/store/y.rs", "use crate::api;\npub fn y() {}\n"),
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("children of crate: api, store"), "{out}");
    assert!(out.contains("1 import cycles"), "{out}");
}

#[test]
fn test_modules_do_not_count() {
    let (code, out) = check(
        &[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            ("src/a.rs", "use crate::b::f;\npub fn g() { f() }\n"),
            (
                "src/b.rs",
                &format!(
                    "pub fn f() {{}}\n#[cfg(test)]\nmod tests {{\n    use crate::a::g;\n{}}}\n",
                    long_fn("t", 200)
                ),
            ),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn long_functions_fail_unless_their_doc_says_why() {
    let (code, out) = check(&[("src/lib.rs", &long_fn("big", 81))], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fn big is 81 lines"), "{out}");
    let (code, out) = check(&[("src/lib.rs", &long_fn("fits", 80))], &[]);
    assert_eq!(code, 0, "{out}");
    let excused = format!(
        "/// One table; long because it lists every code.\n{}",
        long_fn("big", 90)
    );
    let (code, out) = check(&[("src/lib.rs", &excused)], &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn long_files_fail_unless_their_inner_doc_says_why() {
    let body: String = (0..70).map(|i| long_fn(&format!("f{i}"), 10)).collect();
    let (code, out) = check(&[("src/lib.rs", &body)], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("700 lines without tests"), "{out}");
    let excused = format!("//! Generated tables: long because each is one list.\n{body}");
    let (code, out) = check(&[("src/lib.rs", &excused)], &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_missing_module_file_is_an_error_not_a_pass() {
    let (code, _) = check(&[("src/lib.rs", "mod gone;\n")], &[]);
    assert_eq!(code, 2);
}
