//! Which module depends on which, and the import cycles among siblings.
//!
//! Module A depends on its sibling B when any non-test code in A's subtree names a path into
//! B's subtree: `use crate::b::..`, `super::b::..`, an expression path such as
//! `crate::b::f()`, or a bare `b::..` in a module that does `use super::*`. A module and its
//! own ancestors are not siblings: a child that uses its parent's items is how Rust modules
//! share a parent's types, so only cycles between siblings count.

use std::collections::{BTreeMap, BTreeSet};

use syn::visit::Visit;

use crate::tree::{is_test_only, Crate};

/// One dependency between siblings, with the first place that shows it.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub example: String,
}

/// The sibling dependencies of a crate, grouped by parent module.
pub struct Graph {
    /// parent module → (from, to) → first example.
    pub groups: BTreeMap<usize, BTreeMap<(usize, usize), String>>,
}

/// A set of sibling modules that depend on each other in a circle.
pub struct Cycle {
    pub parent: usize,
    pub members: Vec<usize>,
    pub edges: Vec<Edge>,
}

impl Graph {
    pub fn build(krate: &Crate) -> Graph {
        let mut groups: BTreeMap<usize, BTreeMap<(usize, usize), String>> = BTreeMap::new();
        for (index, module) in krate.modules.iter().enumerate() {
            let mut paths = PathCollector::default();
            for item in &module.items {
                if !matches!(item, syn::Item::Mod(_)) {
                    paths.visit_item(item);
                }
            }
            for (segments, line) in paths.found {
                let Some(target) = resolve(krate, index, &segments) else {
                    continue;
                };
                if let Some((parent, a, b)) = siblings_between(krate, index, target) {
                    let example = format!(
                        "{}:{} names {}",
                        module.file.display(),
                        line,
                        segments.join("::")
                    );
                    groups
                        .entry(parent)
                        .or_default()
                        .entry((a, b))
                        .or_insert(example);
                }
            }
        }
        Graph { groups }
    }

    /// Every set of siblings that depend on each other in a circle (Tarjan's strongly
    /// connected components of more than one module).
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut cycles = Vec::new();
        for (&parent, edges) in &self.groups {
            for members in strongly_connected(edges) {
                let set: BTreeSet<usize> = members.iter().copied().collect();
                let inside = edges
                    .iter()
                    .filter(|((a, b), _)| set.contains(a) && set.contains(b))
                    .map(|(&(from, to), example)| Edge {
                        from,
                        to,
                        example: example.clone(),
                    })
                    .collect();
                cycles.push(Cycle {
                    parent,
                    members,
                    edges: inside,
                });
            }
        }
        cycles
    }
}

/// Paths named by non-test code, with the line each appears on.
#[derive(Default)]
struct PathCollector {
    found: Vec<(Vec<String>, usize)>,
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if is_test_only(&item.attrs) {
            return;
        }
        let line = item.use_token.span.start().line;
        let mut prefix = Vec::new();
        flatten_use(&item.tree, &mut prefix, line, &mut self.found);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            let line = path
                .segments
                .first()
                .map_or(0, |s| s.ident.span().start().line);
            self.found.push((segments, line));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        // Modules are visited as modules of their own (test modules not at all).
        let _ = item;
    }
}

fn flatten_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    line: usize,
    out: &mut Vec<(Vec<String>, usize)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, line, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            if n.ident != "self" {
                path.push(n.ident.to_string());
            }
            out.push((path, line));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((path, line));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), line)),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                flatten_use(tree, prefix, line, out);
            }
        }
    }
}

/// The module a path in module `from` leads into, if it leads into this crate.
fn resolve(krate: &Crate, from: usize, segments: &[String]) -> Option<usize> {
    let first = segments.first()?;
    let (mut at, rest) = match first.as_str() {
        "crate" => (0, &segments[1..]),
        "self" => (from, &segments[1..]),
        "super" => {
            let mut at = from;
            let mut rest = segments;
            while rest.first().is_some_and(|s| s == "super") {
                at = krate.modules[at].parent?;
                rest = &rest[1..];
            }
            (at, rest)
        }
        name => {
            let module = &krate.modules[from];
            let is_child = module
                .children
                .iter()
                .any(|&c| krate.modules[c].path.last() == Some(&name.to_owned()));
            // A bare path only reaches a sibling through `use super::*`.
            match module.parent {
                Some(parent) if module.globs_parent && !is_child => (parent, segments),
                _ => return None,
            }
        }
    };
    for segment in rest {
        let next = krate.modules[at]
            .children
            .iter()
            .copied()
            .find(|&c| krate.modules[c].path.last() == Some(segment));
        match next {
            Some(child) => at = child,
            None => break,
        }
    }
    Some(at)
}

/// For a reference from `from` to `to`: their closest common ancestor and the two children of
/// it that lead to each, unless one contains the other.
fn siblings_between(krate: &Crate, from: usize, to: usize) -> Option<(usize, usize, usize)> {
    if krate.is_within(from, to) || krate.is_within(to, from) {
        return None;
    }
    let chain = |mut i: usize| {
        let mut chain = vec![i];
        while let Some(p) = krate.modules[i].parent {
            chain.push(p);
            i = p;
        }
        chain.reverse();
        chain
    };
    let (a, b) = (chain(from), chain(to));
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    Some((a[common - 1], a[common], b[common]))
}

/// Tarjan's algorithm over one sibling group; components of two or more modules.
fn strongly_connected(edges: &BTreeMap<(usize, usize), String>) -> Vec<Vec<usize>> {
    let mut nodes: BTreeSet<usize> = BTreeSet::new();
    for &(a, b) in edges.keys() {
        nodes.insert(a);
        nodes.insert(b);
    }
    let mut state = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in nodes {
        if !state.index.contains_key(&node) {
            state.visit(node);
        }
    }
    state.found
}

struct Tarjan<'a> {
    edges: &'a BTreeMap<(usize, usize), String>,
    index: BTreeMap<usize, usize>,
    low: BTreeMap<usize, usize>,
    stack: Vec<usize>,
    on_stack: BTreeSet<usize>,
    next: usize,
    found: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, node: usize) {
        self.index.insert(node, self.next);
        self.low.insert(node, self.next);
        self.next += 1;
        self.stack.push(node);
        self.on_stack.insert(node);
        let successors: Vec<usize> = self
            .edges
            .keys()
            .filter(|(a, _)| *a == node)
            .map(|&(_, b)| b)
            .collect();
        for next in successors {
            if !self.index.contains_key(&next) {
                self.visit(next);
                let low = self.low[&node].min(self.low[&next]);
                self.low.insert(node, low);
            } else if self.on_stack.contains(&next) {
                let low = self.low[&node].min(self.index[&next]);
                self.low.insert(node, low);
            }
        }
        if self.low[&node] == self.index[&node] {
            let mut component = Vec::new();
            while let Some(top) = self.stack.pop() {
                self.on_stack.remove(&top);
                component.push(top);
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                self.found.push(component);
            }
        }
    }
}
