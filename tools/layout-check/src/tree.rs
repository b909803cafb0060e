//! Loads a crate's module tree from its root file, the way rustc finds modules: `mod x;` is
//! `x.rs` or `x/mod.rs` beside (or under) the declaring file, `#[path]` overrides that, and an
//! inline `mod x { .. }` is a module in the same file. Test code (`#[cfg(test)]`) is left out:
//! the layout rules are about the code that ships.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use syn::{Attribute, Item};

/// One module of a crate.
pub struct Module {
    /// Names from the crate root (`[]` for the root, `["store", "runners"]`).
    pub path: Vec<String>,
    /// The file its items are in.
    pub file: PathBuf,
    /// Its own items; child modules among them are skipped by every check.
    pub items: Vec<Item>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// Does it `use super::*` (so bare paths may name its siblings)?
    pub globs_parent: bool,
}

/// A crate: its modules (index 0 is the root) and the files they came from.
pub struct Crate {
    pub name: String,
    pub modules: Vec<Module>,
    pub files: Vec<PathBuf>,
}

impl Crate {
    /// Loads the crate whose root file is `root`.
    pub fn load(name: &str, root: &Path) -> Result<Crate> {
        let mut krate = Crate {
            name: name.to_owned(),
            modules: Vec::new(),
            files: Vec::new(),
        };
        let dir = root.parent().unwrap_or(Path::new(".")).to_owned();
        krate.load_file(root, &dir, Vec::new(), None)?;
        Ok(krate)
    }

    fn load_file(
        &mut self,
        file: &Path,
        child_dir: &Path,
        path: Vec<String>,
        parent: Option<usize>,
    ) -> Result<usize> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed =
            syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
        self.files.push(file.to_owned());
        self.add_module(file, child_dir, path, parent, parsed.items)
    }

    fn add_module(
        &mut self,
        file: &Path,
        child_dir: &Path,
        path: Vec<String>,
        parent: Option<usize>,
        items: Vec<Item>,
    ) -> Result<usize> {
        let index = self.modules.len();
        self.modules.push(Module {
            path: path.clone(),
            file: file.to_owned(),
            items: Vec::new(),
            parent,
            children: Vec::new(),
            globs_parent: globs_parent(&items),
        });
        if let Some(parent) = parent {
            self.modules[parent].children.push(index);
        }
        for item in &items {
            let Item::Mod(m) = item else { continue };
            if is_test_only(&m.attrs) {
                continue;
            }
            let name = m.ident.to_string();
            let mut child_path = path.clone();
            child_path.push(name.clone());
            match &m.content {
                Some((_, inline)) => {
                    let dir = child_dir.join(&name);
                    self.add_module(file, &dir, child_path, Some(index), inline.clone())?;
                }
                None => {
                    let (child_file, dir) = find_module_file(file, child_dir, &name, &m.attrs)?;
                    self.load_file(&child_file, &dir, child_path, Some(index))?;
                }
            }
        }
        self.modules[index].items = items;
        Ok(index)
    }

    /// `a::b::c` of module `index` (`crate` for the root).
    pub fn display_path(&self, index: usize) -> String {
        let path = &self.modules[index].path;
        if path.is_empty() {
            "crate".into()
        } else {
            path.join("::")
        }
    }

    /// Is `ancestor` the module `index` or one of its ancestors?
    pub fn is_within(&self, index: usize, ancestor: usize) -> bool {
        let mut at = Some(index);
        while let Some(i) = at {
            if i == ancestor {
                return true;
            }
            at = self.modules[i].parent;
        }
        false
    }
}

/// The file of `mod name;` declared in `declaring` (whose children live in `dir`), and the
/// directory that file's own children live in.
fn find_module_file(
    declaring: &Path,
    dir: &Path,
    name: &str,
    attrs: &[Attribute],
) -> Result<(PathBuf, PathBuf)> {
    if let Some(custom) = path_attribute(attrs) {
        // `#[path]` is relative to the declaring file's directory.
        let file = declaring
            .parent()
            .map_or_else(|| PathBuf::from(&custom), |d| d.join(&custom));
        let child_dir = file.with_extension("");
        return Ok((file, child_dir));
    }
    let flat = dir.join(format!("{name}.rs"));
    if flat.is_file() {
        return Ok((flat, dir.join(name)));
    }
    let nested = dir.join(name).join("mod.rs");
    if nested.is_file() {
        return Ok((nested, dir.join(name)));
    }
    bail!(
        "module {name}: neither {} nor {} exists",
        flat.display(),
        nested.display()
    )
}

fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| {
        let syn::Meta::NameValue(nv) = &attr.meta else {
            return None;
        };
        if !nv.path.is_ident("path") {
            return None;
        }
        match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        }
    })
}

/// `#[cfg(test)]`, `#[cfg(all(test, ..))]` or `#[test]`: code that only tests compile.
pub fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        if attr.path().is_ident("test") {
            return true;
        }
        if !attr.path().is_ident("cfg") {
            return false;
        }
        let syn::Meta::List(list) = &attr.meta else {
            return false;
        };
        let tokens = list.tokens.to_string();
        // `not(test)` is code that ships.
        tokens
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|word| word == "test")
            && !tokens.contains("not")
    })
}

fn globs_parent(items: &[Item]) -> bool {
    items.iter().any(|item| match item {
        Item::Use(u) => {
            let text = quote_use(&u.tree);
            text == "super::*"
        }
        _ => false,
    })
}

fn quote_use(tree: &syn::UseTree) -> String {
    match tree {
        syn::UseTree::Path(p) => format!("{}::{}", p.ident, quote_use(&p.tree)),
        syn::UseTree::Glob(_) => "*".into(),
        syn::UseTree::Name(n) => n.ident.to_string(),
        syn::UseTree::Rename(r) => r.ident.to_string(),
        syn::UseTree::Group(_) => "{..}".into(),
    }
}

/// The text of a file's `//!` comments (and `#![doc = ".."]`).
pub fn inner_doc(file: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(file) else {
        return String::new();
    };
    let Ok(parsed) = syn::parse_file(&text) else {
        return String::new();
    };
    doc_text(&parsed.attrs)
}

/// The text of `doc` attributes (`///` or `//!` comments).
pub fn doc_text(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
