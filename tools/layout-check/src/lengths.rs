//! Long functions and long files, counting only code that ships (test modules and `#[test]`
//! functions are left out).
//!
//! A function may be longer than the limit when its own `///` says why ("long because ..."); a
//! file may be when its `//!` does. The reason then sits where the next reader looks first.

use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

use crate::tree::{doc_text, inner_doc, is_test_only};

/// The words that excuse a long function (in its `///`) or file (in its `//!`).
pub const EXCUSE: &str = "long because";

#[derive(Debug)]
pub struct LongFn {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub lines: usize,
}

/// Functions of `file` longer than `limit` lines, and the file's length without its tests.
pub fn measure(file: &Path, limit: usize) -> anyhow::Result<(Vec<LongFn>, usize)> {
    let text = std::fs::read_to_string(file)?;
    let parsed = syn::parse_file(&text)?;
    let mut visitor = FnLengths {
        file: file.to_owned(),
        limit,
        long: Vec::new(),
        test_lines: 0,
    };
    visitor.visit_file(&parsed);
    let total = text.lines().count();
    Ok((visitor.long, total.saturating_sub(visitor.test_lines)))
}

/// Is the file excused from the file-length limit by its `//!`?
pub fn file_excused(file: &Path) -> bool {
    inner_doc(file).to_lowercase().contains(EXCUSE)
}

struct FnLengths {
    file: PathBuf,
    limit: usize,
    long: Vec<LongFn>,
    /// Lines taken by test modules and test functions.
    test_lines: usize,
}

impl FnLengths {
    fn check(&mut self, attrs: &[syn::Attribute], sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        let lines = end.saturating_sub(start) + 1;
        if lines > self.limit && !doc_text(attrs).to_lowercase().contains(EXCUSE) {
            self.long.push(LongFn {
                file: self.file.clone(),
                line: start,
                name: sig.ident.to_string(),
                lines,
            });
        }
    }

    fn skip_test_item(&mut self, span: proc_macro2::Span) {
        self.test_lines += span.end().line.saturating_sub(span.start().line) + 1;
    }
}

impl<'ast> Visit<'ast> for FnLengths {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if is_test_only(&item.attrs) {
            self.skip_test_item(item.span());
        } else {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if is_test_only(&item.attrs) {
            self.skip_test_item(item.span());
            return;
        }
        self.check(&item.attrs, &item.sig, &item.block);
        // Functions nested in this one are part of its length already.
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if is_test_only(&item.attrs) {
            self.skip_test_item(item.span());
            return;
        }
        self.check(&item.attrs, &item.sig, &item.block);
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let Some(block) = &item.default {
            self.check(&item.attrs, &item.sig, block);
        }
    }
}
