//! The layers of xtask, bottom to top, and a test that keeps them: a module
//! may import (`crate::…`) only from layers below its own, commands import
//! no other command, and the module graph has no cycle.
//!
//! ```text
//! base        processes, files, paths, cache folder, Arch
//! toolchain   apt, setup (Needs, stock kernels), release builds
//! kernel      the test kernel: build and cache
//! qemu        the patched QEMU (SVA test accelerator): build and cache
//! vm          the guest harness: image, /init, QEMU, console protocol
//! commands    vm_test, soak, demo, bench, smoke, sva (scenarios on vm), prom
//!             (the dashboard and rules against a real Prometheus), dist
//! test        every tier
//! ```

/// Top-level modules by layer, lowest first; modules on one line are peers
/// that must not import each other.
#[cfg(test)]
const LAYERS: &[&[&str]] = &[
    &["base"],
    &["toolchain"],
    &["kernel", "qemu"],
    &["vm"],
    &[
        "vm_test", "soak", "demo", "bench", "smoke", "sva", "prom", "dist",
    ],
    &["test"],
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use super::LAYERS;

    /// Modules outside the layering: the test helper shared with
    /// uacce-trace, and this file.
    const IGNORED: &[&str] = &["test_skip", "layers"];

    /// The top-level module a file under `src/` belongs to.
    fn module_of(rel: &Path) -> Option<String> {
        let first = rel.components().next()?.as_os_str().to_str()?;
        Some(first.trim_end_matches(".rs").to_owned())
    }

    /// Every top-level module named after `crate::` in `text`, comments
    /// left out (`use crate::{a, b::c}` names `a` and `b`).
    fn imports(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for item in group[..end].split(',') {
                        let name: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            out.insert(name);
                        }
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            }
        }
        out
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Module -> the other top-level modules it imports.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let rel = file.strip_prefix(&src).expect("under src");
            // The binaries' roots and the guest workload are their own crates.
            if rel == Path::new("main.rs") || rel.starts_with("bin") || rel.starts_with("workload")
            {
                continue;
            }
            let Some(module) = module_of(rel) else {
                continue;
            };
            if IGNORED.contains(&module.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read");
            let deps = graph.entry(module.clone()).or_default();
            for dep in imports(&text) {
                if dep != module && !IGNORED.contains(&dep.as_str()) {
                    deps.insert(dep);
                }
            }
        }
        graph
    }

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// Upward imports, imports between peers, and modules in no layer.
    fn violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
        let mut bad = Vec::new();
        for (module, deps) in graph {
            let Some(own) = layer_of(module) else {
                bad.push(format!("{module} is in no layer of layers.rs"));
                continue;
            };
            for dep in deps {
                match layer_of(dep) {
                    Some(l) if l < own => {}
                    Some(l) if l == own => bad.push(format!("{module} imports its peer {dep}")),
                    Some(_) => bad.push(format!("{module} imports {dep}, a layer above it")),
                    None => bad.push(format!("{module} imports {dep}, which is in no layer")),
                }
            }
        }
        bad
    }

    /// A cycle in `graph`, if there is one.
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| n == node) {
                let mut found = path[at..].to_vec();
                found.push(node.to_owned());
                return Some(found);
            }
            if done.contains(node) {
                return None;
            }
            path.push(node.to_owned());
            for dep in graph.get(node).into_iter().flatten() {
                if let Some(c) = visit(dep, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(node.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn imports_go_down_the_layers_only() {
        let graph = graph();
        assert!(
            graph.contains_key("vm") && graph.contains_key("base"),
            "{graph:?}"
        );
        let bad = violations(&graph);
        assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
        assert_eq!(cycle(&graph), None);
    }

    #[test]
    fn the_checks_catch_what_they_should() {
        assert_eq!(
            imports("use crate::{base, vm::guest};\n// crate::demo\nlet x = crate::kernel::f();"),
            ["base", "kernel", "vm"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        let g: BTreeMap<String, BTreeSet<String>> = [
            ("base", vec!["vm"]),
            ("vm", vec!["base"]),
            ("soak", vec!["demo"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        let bad = violations(&g);
        assert!(
            bad.iter().any(|b| b == "base imports vm, a layer above it"),
            "{bad:?}"
        );
        assert!(
            bad.iter().any(|b| b == "soak imports its peer demo"),
            "{bad:?}"
        );
        assert!(cycle(&g).is_some());
    }
}
