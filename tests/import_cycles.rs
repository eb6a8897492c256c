//! No two modules of one crate may import each other, directly or round a cycle: a loop
//! means neither module can be understood, tested or moved without the other, and it is
//! how a "lower" module (configuration, the OpenAPI document) quietly grows a dependency on
//! the code built on top of it. The fix is to move the shared item into a module both can
//! import, or to reach it through the crate root's re-export.
//!
//! Each file under `crates/*/src` and `xtask/src` is a module (`lib.rs`/`main.rs` = the
//! root, `foo.rs` or `foo/mod.rs` = `foo`, `foo/bar.rs` = `foo::bar`). File A depends on
//! module B when A names B through a path: `use crate::b::…` or `crate::b::…` anywhere in
//! code, `super::…`, `self::…`, `use child::…` for a child module A declares, or a path
//! through a name A imported (`use crate::routes;` then `routes::auth::token` names
//! `routes::auth`). A path resolves to the deepest module that has a file. Not counted:
//! paths that resolve to the crate root (its re-exports are the sanctioned way in), `mod x;`
//! declarations, a parent calling into a child in code (`auth::configure(…)`: how a
//! module tree is assembled), comments and string literals, `#[cfg(test)]` items, and
//! references within one file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// A module's path below its crate root: `[]` is the root, `["auth", "password"]` is
/// `auth::password`.
type ModPath = Vec<String>;

/// Where a dependency between two modules is first written.
#[derive(Debug, Clone)]
struct Site {
    file: String,
    line: usize,
    text: String,
}

/// One crate's modules (with their files) and the dependencies between them.
#[derive(Debug, Default)]
struct CrateGraph {
    name: String,
    modules: BTreeMap<ModPath, String>,
    edges: BTreeMap<(ModPath, ModPath), Site>,
    /// Items the crate root defines itself (not re-exports).
    root_defines: BTreeSet<String>,
    /// The root's child modules that its own code names in a path: what it builds from.
    root_builds_from: BTreeSet<String>,
    /// Every use of an item straight from the crate root: (module, item, where).
    root_uses: Vec<(ModPath, String, Site)>,
}

#[test]
fn no_import_cycles_between_modules_of_one_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut src_dirs: Vec<(String, String)> = fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| root.join("crates").join(name).join("src").is_dir())
        .map(|name| (name.clone(), format!("crates/{name}/src")))
        .collect();
    src_dirs.push(("xtask".to_owned(), "xtask/src".to_owned()));
    src_dirs.sort();

    let mut report = String::new();
    let mut edge_count = 0;
    for (name, src) in &src_dirs {
        let mut files = Vec::new();
        collect_sources(&root, &root.join(src), &mut files);
        assert!(!files.is_empty(), "no Rust sources found under {src}");
        let graph = crate_graph(name, src, &files);
        assert!(
            graph.modules.contains_key(&ModPath::new()),
            "{src} has no lib.rs or main.rs"
        );
        edge_count += graph.edges.len();
        report.push_str(&describe_cycles(&graph));
        report.push_str(&describe_root_loops(&graph));
    }
    // The scan must see the imports that certainly exist, or it would pass by seeing nothing.
    assert!(
        src_dirs.len() >= 6 && edge_count >= 20,
        "the scan found only {edge_count} imports in {} crates; is it reading the sources?",
        src_dirs.len()
    );
    assert!(
        report.is_empty(),
        "modules of one crate import each other in a cycle, or through the crate root; break \
         each one by moving the shared item into a module both can import (or importing it \
         through the crate root's re-export of it):\n\n{report}"
    );
}

/// Every `.rs` file below `dir`, as (path relative to the workspace root, contents).
fn collect_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_sources(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy();
            let contents = fs::read_to_string(&path).unwrap();
            out.push((relative.replace('\\', "/"), contents));
        }
    }
}

/// The module a file under `src_dir` defines, or `None` for files that are not modules of
/// the crate (`src/bin/…` are crates of their own).
fn module_of(src_dir: &str, file: &str) -> Option<ModPath> {
    let relative = file.strip_prefix(src_dir)?.trim_start_matches('/');
    let relative = relative.strip_suffix(".rs")?;
    let mut parts: ModPath = relative.split('/').map(str::to_owned).collect();
    if parts.first().is_some_and(|first| first == "bin") {
        return None;
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return Some(ModPath::new());
    }
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// Builds the module graph of one crate from its source files: (path, contents), paths
/// starting with `src_dir`.
fn crate_graph(name: &str, src_dir: &str, files: &[(String, String)]) -> CrateGraph {
    let mut graph = CrateGraph {
        name: name.to_owned(),
        ..CrateGraph::default()
    };
    let parsed: Vec<(ModPath, &String, Vec<Tok>)> = files
        .iter()
        .filter_map(|(file, source)| {
            let module = module_of(src_dir, file)?;
            Some((module, file, drop_test_items(tokenize(&strip(source)))))
        })
        .collect();
    for (module, file, _) in &parsed {
        graph
            .modules
            .entry(module.clone())
            .or_insert_with(|| (*file).clone());
    }
    for (module, _, tokens) in parsed.iter().filter(|(module, ..)| module.is_empty()) {
        let mut depth = 0usize;
        for (i, tok) in tokens.iter().enumerate() {
            if tok.is_punct('{') {
                depth += 1;
            } else if tok.is_punct('}') {
                depth = depth.saturating_sub(1);
            }
            let next = tokens.get(i + 1);
            if depth == 0
                && [
                    "fn", "struct", "enum", "trait", "type", "const", "static", "union",
                ]
                .iter()
                .any(|keyword| tok.is_ident(keyword))
                && let Some(name) = next.and_then(Tok::ident)
            {
                graph.root_defines.insert(name.to_owned());
            }
            if let Some(name) = tok.ident()
                && next.is_some_and(|t| t.kind == Kind::Sep)
                && graph.modules.contains_key(&vec![name.to_owned()])
                && *module != vec![name.to_owned()]
            {
                graph.root_builds_from.insert(name.to_owned());
            }
        }
    }
    for (module, file, tokens) in &parsed {
        for (path, line, text) in references(module, tokens) {
            let Some(target) = deepest_module(&graph.modules, &path) else {
                continue;
            };
            let site = Site {
                file: (*file).clone(),
                line,
                text,
            };
            if target.is_empty() && !module.is_empty() {
                if let Some(item) = path.first() {
                    graph.root_uses.push((module.clone(), item.clone(), site));
                }
                continue;
            }
            if target.is_empty() || target == *module {
                continue; // the crate root's re-exports, or the file itself
            }
            graph
                .edges
                .entry((module.clone(), target))
                .and_modify(|known| {
                    if site.line < known.line {
                        *known = site.clone();
                    }
                })
                .or_insert(site);
        }
    }
    graph
}

/// The longest prefix of `path` that is a module with a file (the root, `[]`, always is).
fn deepest_module(modules: &BTreeMap<ModPath, String>, path: &[String]) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .map(|len| path[..len].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

/// A token of source that has had its comments and literals blanked out.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    Lifetime,
    Number,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    line: usize,
}

impl Tok {
    fn ident(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ident(name) => Some(name),
            _ => None,
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        self.ident() == Some(word)
    }

    fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `source` with comments, string literals and char literals replaced by spaces (newlines
/// kept, so line numbers still hold).
fn strip(source: &str) -> String {
    let c: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            // Block comments nest.
            let mut depth = 0;
            while i < c.len() {
                let opens = c[i] == '/' && at(i + 1) == '*';
                let closes = c[i] == '*' && at(i + 1) == '/';
                if opens || closes {
                    depth += if opens { 1 } else { -1 };
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if (ch.is_alphabetic() || ch == '_') && (i == 0 || !is_ident_char(c[i - 1])) {
            // A raw string (`r"…"`, `r#"…"#`, `br"…"`, `cr"…"`), a prefixed string (`b"…"`,
            // `c"…"`), or a plain identifier.
            let mut j = i;
            if ch == 'b' || ch == 'c' {
                j += 1;
            }
            let mut hashes = 0;
            let mut k = j + 1;
            if at(j) == 'r' {
                while at(k) == '#' {
                    hashes += 1;
                    k += 1;
                }
            }
            if at(j) == 'r' && at(k) == '"' {
                let closes_at = |e: usize| c[e] == '"' && (1..=hashes).all(|h| at(e + h) == '#');
                let mut end = k + 1;
                while end < c.len() && !closes_at(end) {
                    end += 1;
                }
                let end = (end + 1 + hashes).min(c.len());
                for &skipped in &c[i..end] {
                    blank(&mut out, skipped);
                }
                i = end;
            } else if j > i && at(j) == '"' {
                out.push(' ');
                i = j; // the string itself is blanked by the branch below
            } else {
                while i < c.len() && is_ident_char(c[i]) {
                    out.push(c[i]);
                    i += 1;
                }
            }
        } else if ch == '"' {
            blank(&mut out, ch);
            i += 1;
            while i < c.len() {
                let inner = c[i];
                if inner == '\\' {
                    blank(&mut out, inner);
                    if i + 1 < c.len() {
                        blank(&mut out, c[i + 1]);
                    }
                    i += 2;
                    continue;
                }
                blank(&mut out, inner);
                i += 1;
                if inner == '"' {
                    break;
                }
            }
        } else if ch == '\'' && (at(i + 1) == '\\' || (at(i + 1) != '\0' && at(i + 2) == '\'')) {
            // A char literal: `'x'`, `'\n'`, `'\u{1F600}'` (a lifetime `'a` is left alone).
            let mut end = if at(i + 1) == '\\' { i + 3 } else { i + 2 };
            while end < c.len() && c[end] != '\'' {
                end += 1;
            }
            let end = (end + 1).min(c.len());
            for &skipped in &c[i..end] {
                blank(&mut out, skipped);
            }
            i = end;
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out
}

fn tokenize(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if is_ident_char(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let kind = if ch.is_ascii_digit() {
                Kind::Number
            } else {
                Kind::Ident(c[start..i].iter().collect())
            };
            tokens.push(Tok { kind, line });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            tokens.push(Tok {
                kind: Kind::Sep,
                line,
            });
            i += 2;
        } else if ch == '\'' && c.get(i + 1).is_some_and(|&next| is_ident_char(next)) {
            i += 1;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            tokens.push(Tok {
                kind: Kind::Lifetime,
                line,
            });
        } else {
            tokens.push(Tok {
                kind: Kind::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// Does `tokens[i..]` start with the attribute `#[cfg(test)]` (or `#![cfg(test)]`)? Returns
/// the index after it.
fn cfg_test_at(tokens: &[Tok], i: usize) -> Option<usize> {
    let mut j = i;
    if !tokens.get(j)?.is_punct('#') {
        return None;
    }
    j += 1;
    if tokens.get(j)?.is_punct('!') {
        j += 1;
    }
    let expected = ["[", "cfg", "(", "test", ")", "]"];
    for word in expected {
        let tok = tokens.get(j)?;
        let matches = match &tok.kind {
            Kind::Ident(name) => name == word,
            Kind::Punct(p) => word.len() == 1 && word.starts_with(*p),
            _ => false,
        };
        if !matches {
            return None;
        }
        j += 1;
    }
    Some(j)
}

/// Index after the bracketed group opening at `tokens[i]` (`(`, `[` or `{`).
fn skip_group(tokens: &[Tok], i: usize) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < tokens.len() {
        match tokens[j].kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// `tokens` without the items under `#[cfg(test)]` (a whole file for `#![cfg(test)]`).
fn drop_test_items(tokens: Vec<Tok>) -> Vec<Tok> {
    if tokens.first().is_some_and(|t| t.is_punct('#'))
        && tokens.get(1).is_some_and(|t| t.is_punct('!'))
        && cfg_test_at(&tokens, 0).is_some()
    {
        return Vec::new();
    }
    let mut kept = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let Some(mut j) = cfg_test_at(&tokens, i) else {
            kept.push(tokens[i].clone());
            i += 1;
            continue;
        };
        // Further attributes of the same item.
        while tokens.get(j).is_some_and(|t| t.is_punct('#')) {
            j = skip_group(&tokens, j + 1);
        }
        // The item: up to its `;`, or through its `{ … }` body.
        let is_use = tokens.get(j).is_some_and(|t| t.is_ident("use"));
        while j < tokens.len() {
            match tokens[j].kind {
                Kind::Punct(';') => {
                    j += 1;
                    break;
                }
                Kind::Punct('{') if !is_use => {
                    j = skip_group(&tokens, j);
                    break;
                }
                Kind::Punct('(' | '[' | '{') => j = skip_group(&tokens, j),
                _ => j += 1,
            }
        }
        i = j;
    }
    kept
}

/// One imported name of a `use` declaration, with the tree expanded: `use a::{b, c::d as e}`
/// gives `a::b` (named `b`) and `a::c::d` (named `e`).
#[derive(Debug)]
struct UseLeaf {
    path: Vec<String>,
    /// The name it brings into scope (`None` for `*` and `as _`).
    name: Option<String>,
    line: usize,
}

fn parse_use_tree(tokens: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<UseLeaf>) {
    let mut path = prefix.to_vec();
    if tokens.get(*i).is_some_and(|t| t.kind == Kind::Sep) {
        *i += 1;
    }
    while let Some(tok) = tokens.get(*i) {
        let line = tok.line;
        if let Some(segment) = tok.ident() {
            path.push(segment.to_owned());
            *i += 1;
            if tokens.get(*i).is_some_and(|t| t.kind == Kind::Sep) {
                *i += 1;
                continue;
            }
            let mut name = Some(segment.to_owned());
            if tokens.get(*i).is_some_and(|t| t.is_ident("as")) {
                name = tokens
                    .get(*i + 1)
                    .and_then(Tok::ident)
                    .filter(|alias| *alias != "_")
                    .map(str::to_owned);
                *i += 2;
            }
            if segment == "self" {
                path.pop();
                if name.as_deref() == Some("self") {
                    name = path.last().cloned();
                }
            }
            out.push(UseLeaf { path, name, line });
            return;
        } else if tok.is_punct('*') {
            *i += 1;
            out.push(UseLeaf {
                path,
                name: None,
                line,
            });
            return;
        } else if tok.is_punct('{') {
            *i += 1;
            while let Some(inner) = tokens.get(*i) {
                if inner.is_punct('}') {
                    *i += 1;
                    break;
                }
                if inner.is_punct(',') {
                    *i += 1;
                    continue;
                }
                let before = *i;
                parse_use_tree(tokens, i, &path, out);
                if *i == before {
                    *i += 1; // unexpected token: never loop on it
                }
            }
            return;
        } else {
            return;
        }
    }
}

/// What one file's code refers to: (absolute module path, possibly ending in an item; line;
/// the path as written).
fn references(file_module: &[String], tokens: &[Tok]) -> Vec<(Vec<String>, usize, String)> {
    // The module each token is in: the file's, or an inline `mod name { … }` inside it.
    let mut scope_of: Vec<ModPath> = Vec::with_capacity(tokens.len());
    let mut children: BTreeMap<ModPath, BTreeSet<String>> = BTreeMap::new();
    let mut stack: Vec<(ModPath, usize)> = vec![(file_module.to_vec(), 0)];
    let mut depth = 0usize;
    for (i, tok) in tokens.iter().enumerate() {
        let current = stack.last().unwrap().0.clone();
        scope_of.push(current.clone());
        if tok.is_ident("mod")
            && let Some(name) = tokens.get(i + 1).and_then(Tok::ident)
        {
            children
                .entry(current.clone())
                .or_default()
                .insert(name.to_owned());
            if tokens.get(i + 2).is_some_and(|t| t.is_punct('{')) {
                let mut inner = current;
                inner.push(name.to_owned());
                stack.push((inner, depth + 1));
            }
        }
        if tok.is_punct('{') {
            depth += 1;
        } else if tok.is_punct('}') {
            if stack.len() > 1 && stack.last().unwrap().1 == depth {
                stack.pop();
            }
            depth = depth.saturating_sub(1);
        }
    }

    // `use` declarations: each imported name, and the token ranges they cover.
    let mut leaves: Vec<(ModPath, UseLeaf)> = Vec::new();
    let mut in_use = vec![false; tokens.len()];
    let mut i = 0;
    while i < tokens.len() {
        // (`impl Trait + use<'a>` is precise capturing, not an import.)
        if tokens[i].is_ident("use") && !tokens.get(i + 1).is_some_and(|t| t.is_punct('<')) {
            let start = i;
            i += 1;
            let mut found = Vec::new();
            parse_use_tree(tokens, &mut i, &[], &mut found);
            while i < tokens.len() && !tokens[i].is_punct(';') {
                i += 1;
            }
            in_use[start..(i + 1).min(tokens.len())].fill(true);
            leaves.extend(
                found
                    .into_iter()
                    .map(|leaf| (scope_of[start].clone(), leaf)),
            );
        }
        i += 1;
    }

    // Names imported from this crate (`use crate::routes;` makes `routes` mean `crate::routes`).
    // Twice, so that a `use` through another imported name resolves whatever their order.
    let mut aliases: BTreeMap<(ModPath, String), Vec<String>> = BTreeMap::new();
    for _ in 0..2 {
        for (scope, leaf) in &leaves {
            if let Some(name) = &leaf.name
                && let Some(target) = resolve(&leaf.path, scope, &children, &aliases, true)
            {
                aliases.insert((scope.clone(), name.clone()), target);
            }
        }
    }

    let mut found = Vec::new();
    for (scope, leaf) in &leaves {
        if let Some(target) = resolve(&leaf.path, scope, &children, &aliases, true) {
            found.push((target, leaf.line, leaf.path.join("::")));
        }
    }
    // Paths in code: `a::b::c` not preceded by `::` (or `.` for a method, `$` for a macro
    // variable). A single name is skipped: if it is imported, its `use` already counted.
    for i in 0..tokens.len() {
        if in_use[i] || tokens[i].ident().is_none() {
            continue;
        }
        if i > 0 {
            let before = &tokens[i - 1];
            if before.kind == Kind::Sep || before.is_punct('.') || before.is_punct('$') {
                continue;
            }
        }
        let mut path = vec![tokens[i].ident().unwrap().to_owned()];
        let mut j = i + 1;
        while tokens.get(j).is_some_and(|t| t.kind == Kind::Sep)
            && let Some(segment) = tokens.get(j + 1).and_then(Tok::ident)
        {
            path.push(segment.to_owned());
            j += 2;
        }
        if path.len() < 2 {
            continue;
        }
        if let Some(target) = resolve(&path, &scope_of[i], &children, &aliases, false) {
            found.push((target, tokens[i].line, path.join("::")));
        }
    }
    found
}

/// The absolute path `path`, written in module `scope`, stands for; `None` when it leads
/// outside the crate (another crate, `std`, a local name).
///
/// A path starting with a child module's name counts only in a `use` declaration: in code,
/// a parent calling into its children (`auth::configure(…)`, with `auth` using the parent's
/// types) is how a module tree is put together, not a loop to break.
fn resolve(
    path: &[String],
    scope: &[String],
    children: &BTreeMap<ModPath, BTreeSet<String>>,
    aliases: &BTreeMap<(ModPath, String), Vec<String>>,
    in_use: bool,
) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut absolute: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => scope.to_vec(),
        "super" => {
            let mut base = scope.to_vec();
            base.pop()?;
            let mut rest = rest;
            while rest.first().is_some_and(|segment| segment == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            return Some(base);
        }
        name => {
            if let Some(target) = aliases.get(&(scope.to_vec(), name.to_owned())) {
                target.clone()
            } else if in_use && children.get(scope).is_some_and(|c| c.contains(name)) {
                let mut child = scope.to_vec();
                child.push(name.to_owned());
                child
            } else {
                return None;
            }
        }
    };
    absolute.extend(rest.iter().cloned());
    Some(absolute)
}

/// Each use of an item the crate root defines by a module the root builds from: a loop
/// through `lib.rs` that the module graph does not show, since the root's re-exports are the
/// sanctioned way in. Empty when there is none.
fn describe_root_loops(graph: &CrateGraph) -> String {
    let mut out = String::new();
    for (module, item, site) in &graph.root_uses {
        if graph.root_defines.contains(item) && graph.root_builds_from.contains(&module[0]) {
            writeln!(
                out,
                "{}: {} -> crate::{item}, which the crate root defines and builds from {}: \
                 {}:{}  `{}`",
                graph.name,
                display(module),
                module[0],
                site.file,
                site.line,
                site.text
            )
            .unwrap();
        }
    }
    out
}

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// Every cycle of modules in `graph`, one paragraph per tangle (strongly connected set of
/// modules), empty when there is none.
fn describe_cycles(graph: &CrateGraph) -> String {
    let mut next: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (from, to) in graph.edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let reach = |start: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(module) = todo.pop() {
            for &target in next.get(&module).into_iter().flatten() {
                if seen.insert(target.clone()) {
                    todo.push(target.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        graph.modules.keys().map(|m| (m, reach(m))).collect();

    let mut report = String::new();
    let mut placed: BTreeSet<&ModPath> = BTreeSet::new();
    for module in graph.modules.keys() {
        if placed.contains(module) || !reachable[module].contains(module) {
            continue;
        }
        let tangle: Vec<&ModPath> = graph
            .modules
            .keys()
            .filter(|other| reachable[module].contains(*other) && reachable[other].contains(module))
            .collect();
        placed.extend(tangle.iter().copied());
        let cycles = elementary_cycles(&tangle, &next);
        if tangle.len() > 2 {
            let names: Vec<String> = tangle.iter().map(|m| display(m)).collect();
            let _ = writeln!(
                report,
                "{}: {} modules depend on each other ({}), in {} cycle(s):",
                graph.name,
                tangle.len(),
                names.join(", "),
                cycles.len()
            );
        }
        for cycle in cycles {
            let names: Vec<String> = cycle.iter().map(|m| display(m)).collect();
            let _ = writeln!(
                report,
                "{}: {} -> {}",
                graph.name,
                names.join(" -> "),
                names[0]
            );
            for (k, from) in cycle.iter().enumerate() {
                let to = cycle[(k + 1) % cycle.len()];
                let site = &graph.edges[&((*from).clone(), to.clone())];
                let _ = writeln!(
                    report,
                    "    {} -> {}: {}:{}  `{}`",
                    display(from),
                    display(to),
                    site.file,
                    site.line,
                    site.text
                );
            }
        }
        report.push('\n');
    }
    report
}

/// The simple cycles within one tangle, each once, starting from its least module.
fn elementary_cycles<'a>(
    tangle: &[&'a ModPath],
    next: &BTreeMap<&ModPath, Vec<&'a ModPath>>,
) -> Vec<Vec<&'a ModPath>> {
    fn walk<'a>(
        path: &mut Vec<&'a ModPath>,
        tangle: &[&'a ModPath],
        next: &BTreeMap<&ModPath, Vec<&'a ModPath>>,
        cycles: &mut Vec<Vec<&'a ModPath>>,
    ) {
        let start = path[0];
        let last = *path.last().unwrap();
        for &target in next.get(last).into_iter().flatten() {
            if target == start {
                cycles.push(path.clone());
            } else if target > start && tangle.contains(&target) && !path.contains(&target) {
                path.push(target);
                walk(path, tangle, next, cycles);
                path.pop();
            }
        }
    }
    let mut cycles = Vec::new();
    for &start in tangle {
        walk(&mut vec![start], tangle, next, &mut cycles);
    }
    cycles.sort_by_key(Vec::len);
    cycles
}

/// A crate from in-memory sources: (path under `src/`, contents).
fn graph_of(files: &[(&str, &str)]) -> CrateGraph {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(path, source)| (format!("src/{path}"), (*source).to_owned()))
        .collect();
    crate_graph("demo", "src", &files)
}

fn edge_names(graph: &CrateGraph) -> Vec<String> {
    graph
        .edges
        .keys()
        .map(|(from, to)| format!("{} -> {}", display(from), display(to)))
        .collect()
}

#[test]
fn a_cycle_is_found_with_the_lines_that_make_it() {
    let graph = graph_of(&[
        ("lib.rs", "pub mod config;\npub mod auth;\npub mod db;\n"),
        (
            "config.rs",
            "pub struct Settings;\nfn hasher() {\n    let _ = crate::auth::Hasher::new();\n}\n",
        ),
        (
            "auth/mod.rs",
            "mod hash;\npub use hash::Hasher;\nuse crate::{db::Pool, config};\n",
        ),
        ("auth/hash.rs", "use super::super::config::Settings;\n"),
        ("db.rs", "pub struct Pool;\n"),
    ]);
    assert_eq!(
        edge_names(&graph),
        [
            "auth -> auth::hash",
            "auth -> config",
            "auth -> db",
            "auth::hash -> config",
            "config -> auth",
        ]
    );
    let report = describe_cycles(&graph);
    assert!(
        report.contains("demo: 3 modules depend on each other (auth, auth::hash, config)"),
        "{report}"
    );
    assert!(
        report.contains("demo: auth -> config -> auth\n"),
        "{report}"
    );
    assert!(
        report.contains("demo: auth -> auth::hash -> config -> auth\n"),
        "{report}"
    );
    assert!(
        report.contains("config -> auth: src/config.rs:3  `crate::auth::Hasher::new`"),
        "{report}"
    );
    assert!(
        report
            .contains("auth::hash -> config: src/auth/hash.rs:1  `super::super::config::Settings`"),
        "{report}"
    );
    assert!(!report.contains("db"), "{report}");
}

#[test]
fn imports_through_the_crate_root_do_not_count() {
    let graph = graph_of(&[
        (
            "lib.rs",
            "mod a;\nmod b;\npub use a::Alpha;\npub use b::Beta;\n",
        ),
        ("a.rs", "use crate::Beta;\npub struct Alpha(Beta);\n"),
        (
            "b.rs",
            "pub struct Beta;\nfn f() -> crate::Alpha { todo!() }\n",
        ),
    ]);
    assert_eq!(edge_names(&graph), ["crate -> a", "crate -> b"]);
    assert_eq!(describe_cycles(&graph), "");
}

#[test]
fn comments_strings_tests_and_declarations_do_not_count() {
    let graph = graph_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            concat!(
                "//! See [`crate::b::Thing`].\n",
                "/* use crate::b; /* nested */ crate::b::x */\n",
                "const T: &str = \"use crate::b::Thing;\";\n",
                "const R: &str = r#\"crate::b::y \"quoted\" \"#;\n",
                "const C: char = '\"';\n",
                "fn f<'a>(s: &'a str) -> &'a str { s }\n",
                "pub struct Thing;\n",
                "#[cfg(test)]\n",
                "use crate::b::Thing as _;\n",
                "#[cfg(test)]\n",
                "mod tests {\n    use super::*;\n    fn g() { crate::b::h(); }\n}\n",
            ),
        ),
        (
            "b.rs",
            "pub fn h<'a>(s: &'a str) -> impl Sized + use<'a> {\n    let _ = crate::a::Thing;\n    s\n}\n",
        ),
    ]);
    assert_eq!(edge_names(&graph), ["b -> a"]);
    assert_eq!(describe_cycles(&graph), "");
}

#[test]
fn paths_through_an_imported_module_name_count() {
    let graph = graph_of(&[
        ("lib.rs", "mod docs;\nmod routes;\n"),
        (
            "docs.rs",
            "use crate::routes;\n#[api(paths(routes::auth::token))]\npub struct Doc;\n",
        ),
        ("routes/mod.rs", "pub mod auth;\n"),
        (
            "routes/auth.rs",
            "use crate::docs::Doc;\npub fn token() {}\n",
        ),
    ]);
    assert_eq!(
        edge_names(&graph),
        [
            "docs -> routes",
            "docs -> routes::auth",
            "routes::auth -> docs"
        ]
    );
    let report = describe_cycles(&graph);
    assert!(
        report.contains("demo: docs -> routes::auth -> docs\n"),
        "{report}"
    );
    assert!(
        report.contains("docs -> routes::auth: src/docs.rs:2  `routes::auth::token`"),
        "{report}"
    );
}

#[test]
fn an_item_the_crate_root_builds_from_a_module_may_not_be_imported_by_it() {
    let graph = graph_of(&[
        (
            "lib.rs",
            concat!(
                "mod auth;\nmod error;\nmod plain;\npub use error::Error;\n",
                "use auth::Service;\npub struct Services(Service);\npub fn blocking() {}\n",
            ),
        ),
        (
            "auth.rs",
            "use crate::{Error, blocking};\npub struct Service;\n",
        ),
        ("error.rs", "pub struct Error;\n"),
        ("plain.rs", "fn f() { crate::blocking(); }\n"),
    ]);
    assert_eq!(describe_cycles(&graph), "");
    let report = describe_root_loops(&graph);
    assert_eq!(
        report,
        "demo: auth -> crate::blocking, which the crate root defines and builds from auth: \
         src/auth.rs:1  `crate::blocking`\n"
    );
}
