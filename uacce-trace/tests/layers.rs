//! The layers of `uacce-trace/src` hold: every `crate::…` path (a `use` or
//! inline) of every module is read, and the test fails when a module
//! imports a higher layer or another top-level module of its own layer
//! (so there can be no import cycle between top-level modules), or when a
//! command module imports another command module. The layer order is
//! `uacce_trace::LAYERS` (lib.rs), nowhere else.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Crate-root names that are not modules, and where they live.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("status", "logger"),
    ("LAYERS", "lib"),
    ("test_skip", "lib"),
];

fn layer_of(top: &str) -> Option<usize> {
    uacce_trace::LAYERS.iter().position(|l| l.contains(&top))
}

/// Source text without comments (doc comments name paths they do not use).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = match line.find("//") {
            // Not a `//` inside a string literal on the same line (a URL).
            Some(i) if line[..i].matches('"').count() % 2 == 0 => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let start = i;
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(s[start..i].to_string()));
        } else if s[i..].starts_with("::") {
            out.push(Tok::Colons);
            i += 2;
        } else {
            out.push(match c {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                _ => Tok::Other,
            });
            // A path ends at anything else (`;`, `(`, `!`, `<`, …).
            if !matches!(c, '{' | '}' | ',') {
                break;
            }
            i += 1;
        }
        if out.len() > 4000 {
            break;
        }
    }
    out
}

/// The paths of one use tree starting at `toks[*at]`, each prefixed by
/// `prefix`; at most the first two segments matter.
fn tree(toks: &[Tok], at: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match toks.get(*at) {
            Some(Tok::Ident(id)) => {
                *at += 1;
                if id == "as" {
                    // `x as y`: skip the alias.
                    *at += 1;
                    continue;
                }
                path.push(id.clone());
                if toks.get(*at) == Some(&Tok::Colons) {
                    *at += 1;
                    continue;
                }
                out.push(path);
                return;
            }
            Some(Tok::Open) => {
                *at += 1;
                loop {
                    match toks.get(*at) {
                        Some(Tok::Close) => {
                            *at += 1;
                            return;
                        }
                        Some(Tok::Comma) => *at += 1,
                        None | Some(Tok::Other) => return,
                        Some(_) => tree(toks, at, path.clone(), out),
                    }
                }
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// Every `crate::` path in `code` (without the `crate` segment).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c == '$' || c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let toks = tokens(&code[i + "crate::".len()..]);
        let mut at = 0;
        tree(&toks, &mut at, Vec::new(), &mut out);
    }
    out.retain(|p| !p.is_empty());
    out
}

/// `src/a/b.rs` → `["a", "b"]`; `src/a/mod.rs` → `["a"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The command modules: the files and folders in `src/commands`.
fn command_modules(src: &Path) -> BTreeSet<String> {
    fs::read_dir(src.join("commands"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    e.path()
                        .with_extension("")
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .filter(|n| n != "mod")
                .collect()
        })
        .unwrap_or_default()
}

/// What is wrong with `module` importing `path`, if anything.
fn violation(module: &[String], path: &[String], commands: &BTreeSet<String>) -> Option<String> {
    let from = module.first()?;
    let mut to = path.first()?.as_str();
    if let Some((_, home)) = ROOT_ITEMS.iter().find(|(name, _)| *name == to) {
        to = home;
    }
    if to == "lib" || from == to {
        // Within one top-level module: only command modules are checked.
        if from == "commands" && to == "commands" {
            let (Some(a), Some(b)) = (module.get(1), path.get(1)) else {
                return None;
            };
            if a != b && commands.contains(a) && commands.contains(b) {
                return Some(format!(
                    "command module `commands::{a}` imports command module `commands::{b}`"
                ));
            }
        }
        return None;
    }
    let (Some(lf), Some(lt)) = (layer_of(from), layer_of(to)) else {
        return Some(format!(
            "`{from}` or `{to}` is in no layer of uacce_trace::LAYERS"
        ));
    };
    if lt > lf {
        Some(format!(
            "`{from}` (layer {lf}) imports the higher layer `{to}` (layer {lt})"
        ))
    } else if lt == lf {
        Some(format!("`{from}` imports `{to}` of its own layer"))
    } else {
        None
    }
}

#[test]
fn imports_follow_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files in {}",
        files.len(),
        src.display()
    );
    let commands = command_modules(&src);
    assert!(commands.contains("record") && commands.contains("trace"));
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let module = module_of(&src, file);
        if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
            continue;
        }
        let Ok(text) = fs::read_to_string(file) else {
            problems.push(format!("{}: unreadable", file.display()));
            continue;
        };
        let code = strip_comments(&text);
        let mut paths = crate_paths(&code);
        // `super::x` in a file directly below `commands` names a sibling.
        if module.len() == 2 && module[0] == "commands" {
            for (i, _) in code.match_indices("super::") {
                let toks = tokens(&code[i + "super::".len()..]);
                let mut at = 0;
                let mut found = Vec::new();
                tree(&toks, &mut at, vec!["commands".to_string()], &mut found);
                paths.extend(found);
            }
        }
        for path in paths {
            checked += 1;
            if let Some(why) = violation(&module, &path, &commands) {
                problems.push(format!(
                    "{}: crate::{}: {why}",
                    file.strip_prefix(&src).unwrap_or(file).display(),
                    path.join("::")
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate:: paths found: the reader is broken"
    );
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layer violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_nested_and_inline_paths() {
    let code = strip_comments(
        "use crate::{\n    commands::{self, record::{a, b}},\n    ingest::x as y,\n};\n\
         // crate::cli::hidden\n\
         let v = crate::commands::trace::dropped_text(&l); $crate::logger::emit(\"//\");\n",
    );
    let paths: Vec<String> = crate_paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "commands::self",
            "commands::record::a",
            "commands::record::b",
            "ingest::x",
            "commands::trace::dropped_text",
        ]
    );
    let commands: BTreeSet<String> = ["record", "trace"].map(String::from).into();
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert!(violation(&m("commands::record"), &m("commands::trace::x"), &commands).is_some());
    assert!(violation(
        &m("commands::record"),
        &m("commands::dropped_text"),
        &commands
    )
    .is_none());
    assert!(violation(&m("ingest::source"), &m("formats::RunMeta"), &commands).is_some());
    assert!(violation(&m("formats"), &m("ingest::run::RunMeta"), &commands).is_none());
    assert!(violation(&m("commands::trace"), &m("tui::x"), &commands).is_some());
    assert!(violation(&m("tui::runner"), &m("status"), &commands).is_none());
}
