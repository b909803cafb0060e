//! `layout-check`: the layout rules of this workspace, checked rather than hoped for.
//!
//! For every crate of the workspace (each member's library and binaries; integration tests
//! are test code and left out) it reports
//! - import cycles between sibling modules (see `deps`),
//! - functions longer than `--max-fn-lines` (80) and files longer than `--max-file-lines`
//!   (600), test code not counted, unless their doc comment says why (see `lengths`),
//!
//! and exits 1 if it found any. `--graph` also prints every sibling dependency.
//!
//! ```text
//! cargo run -p layout-check -- [--root DIR] [--graph] [--max-fn-lines N] [--max-file-lines N]
//! ```

mod deps;
mod lengths;
mod tree;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::deps::Graph;
use crate::tree::Crate;

struct Options {
    root: PathBuf,
    graph: bool,
    max_fn_lines: usize,
    max_file_lines: usize,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("layout-check: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        root: PathBuf::from("."),
        graph: false,
        max_fn_lines: 80,
        max_file_lines: 600,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--root" => options.root = PathBuf::from(value("--root")?),
            "--graph" => options.graph = true,
            "--max-fn-lines" => options.max_fn_lines = value("--max-fn-lines")?.parse()?,
            "--max-file-lines" => options.max_file_lines = value("--max-file-lines")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

/// Checks every crate; true when nothing was found.
fn run() -> Result<bool> {
    let options = parse_options()?;
    let crates = workspace_crates(&options.root)?;
    let (mut cycles, mut long_fns, mut long_files, mut modules, mut files) = (0, 0, 0, 0, 0);
    for (name, root) in &crates {
        let krate = Crate::load(name, root)?;
        modules += krate.modules.len();
        files += krate.files.len();
        let graph = Graph::build(&krate);
        if options.graph {
            print_graph(&krate, &graph);
        }
        cycles += report_cycles(&krate, &graph);
        let (fns, long) = report_lengths(&krate, &options)?;
        long_fns += fns;
        long_files += long;
    }
    println!(
        "layout-check: {} crates, {modules} modules, {files} files: {cycles} import cycles, \
         {long_fns} functions over {} lines, {long_files} files over {} lines",
        crates.len(),
        options.max_fn_lines,
        options.max_file_lines
    );
    Ok(cycles + long_fns + long_files == 0)
}

/// (crate name, root file) of every library and binary of the workspace's members.
fn workspace_crates(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let manifest = read_toml(&root.join("Cargo.toml"))?;
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .context("Cargo.toml has no [workspace] members")?;
    let mut crates = Vec::new();
    for member in members.iter().filter_map(|m| m.as_str()) {
        let dir = root.join(member);
        let package = read_toml(&dir.join("Cargo.toml"))?;
        let name = package
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or(member)
            .to_owned();
        crates.extend(member_roots(&dir, &name, &package)?);
    }
    Ok(crates)
}

fn member_roots(dir: &Path, name: &str, package: &toml::Value) -> Result<Vec<(String, PathBuf)>> {
    let mut roots = Vec::new();
    for conventional in ["src/lib.rs", "src/main.rs"] {
        if dir.join(conventional).is_file() {
            roots.push((name.to_owned(), dir.join(conventional)));
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs") {
                roots.push((format!("{name} (bin {})", path.display()), path));
            }
        }
    }
    let bins = package.get("bin").and_then(|b| b.as_array());
    for bin in bins.into_iter().flatten() {
        if let Some(path) = bin.get("path").and_then(|p| p.as_str()) {
            let path = dir.join(path);
            if !roots.iter().any(|(_, p)| *p == path) {
                roots.push((format!("{name} (bin {})", path.display()), path));
            }
        }
    }
    roots.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(roots)
}

fn read_toml(path: &Path) -> Result<toml::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
}

fn print_graph(krate: &Crate, graph: &Graph) {
    println!("{}:", krate.name);
    for (&parent, edges) in &graph.groups {
        for &(from, to) in edges.keys() {
            println!(
                "  [{}] {} -> {}",
                krate.display_path(parent),
                krate.display_path(from),
                krate.display_path(to)
            );
        }
    }
}

fn report_cycles(krate: &Crate, graph: &Graph) -> usize {
    let cycles = graph.cycles();
    for cycle in &cycles {
        let names: Vec<String> = cycle
            .members
            .iter()
            .map(|&m| krate.display_path(m))
            .collect();
        println!(
            "{}: import cycle among the children of {}: {}",
            krate.name,
            krate.display_path(cycle.parent),
            names.join(", ")
        );
        for edge in &cycle.edges {
            println!(
                "    {} -> {} ({})",
                krate.display_path(edge.from),
                krate.display_path(edge.to),
                edge.example
            );
        }
    }
    cycles.len()
}

/// Prints long functions and files; returns how many of each.
fn report_lengths(krate: &Crate, options: &Options) -> Result<(usize, usize)> {
    let (mut fns, mut files) = (0, 0);
    for file in &krate.files {
        let (long, lines) = lengths::measure(file, options.max_fn_lines)
            .with_context(|| format!("cannot measure {}", file.display()))?;
        for f in &long {
            println!(
                "{}:{}: fn {} is {} lines (limit {}; a `///` saying \"{}\" excuses it)",
                f.file.display(),
                f.line,
                f.name,
                f.lines,
                options.max_fn_lines,
                lengths::EXCUSE
            );
        }
        fns += long.len();
        if lines > options.max_file_lines && !lengths::file_excused(file) {
            println!(
                "{}: {} lines without tests (limit {}; a `//!` saying \"{}\" excuses it)",
                file.display(),
                lines,
                options.max_file_lines,
                lengths::EXCUSE
            );
            files += 1;
        }
    }
    Ok((fns, files))
}
