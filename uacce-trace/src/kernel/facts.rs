//! What the running kernel offers, behind a trait ([`KernelFacts`]) so the
//! planner and `doctor` run on recorded facts too: [`LiveFacts`] asks the
//! kernel (vmlinux BTF read and parsed once, shared with the loader),
//! [`Recorder`] writes down every answer another source gives, and
//! [`Recorded`] replays them (`doctor --dump-facts`, the tests' facts of
//! each supported kernel in `tests/data/facts/`).
//!
//! Reads the kernel only through `kernel::system`, the BTF reader and the
//! loader's trial loads; knows nothing of planning.

use std::{cell::RefCell, collections::BTreeMap, path::PathBuf};

use aya::Btf as AyaBtf;
use serde::{Deserialize, Serialize};

use crate::kernel::{
    attach::{self, SourceError, OBJECT},
    btf::Btf,
    plan::SymbolFacts,
    system,
};

/// The questions the planner, the offset resolver and `doctor` ask about a
/// kernel. Every answer is plain data, so it can be recorded and replayed.
pub trait KernelFacts {
    /// `uname -r`.
    fn release(&self) -> String;
    /// Whether this process may load and attach programs, else why not.
    fn privileges(&self) -> Result<(), String>;
    /// The number of types in the kernel's BTF, or why it is unusable.
    fn btf(&self) -> Result<usize, String>;
    /// Byte offset of member `path` (dotted) of `struct name`, from BTF.
    fn member_offset(&self, name: &str, path: &str) -> Option<u32>;
    /// Parameter count of function `name`, if it is a FUNC in BTF.
    fn func_params(&self, name: &str) -> Option<usize>;
    /// Value of enumerator `name`, from BTF.
    fn enum_value(&self, name: &str) -> Option<i64>;
    /// Where tracefs is mounted, if it is.
    fn tracefs(&self) -> Option<String>;
    /// The tracefs `format` file of tracepoint `category:name`.
    fn tracepoint_format(&self, tracepoint: &str) -> Option<String>;
    /// Whether kprobes can be attached, else why not.
    fn kprobes(&self) -> Result<(), String>;
    /// kallsyms, `available_filter_functions` and blacklist facts of
    /// `names` (`in_btf` left to [`KernelFacts::func_params`]).
    fn symbols(&self, names: &[&str]) -> BTreeMap<String, SymbolFacts>;
    /// Whether fentry programs load (tried on `target`), else why not.
    fn fentry(&self, target: Option<&str>) -> Result<(), String>;
    /// Whether BPF ring buffers are supported, else why not.
    fn ring_buffer(&self) -> Result<(), String>;
}

/// The running kernel.
pub struct LiveFacts {
    btf: Result<Btf, String>,
    /// aya's view of the same BTF (it attaches fentry programs with it),
    /// parsed from the same bytes.
    aya_btf: Option<AyaBtf>,
    tracefs: Option<PathBuf>,
    debugfs: Option<PathBuf>,
    privileges: Result<(), String>,
}

impl LiveFacts {
    /// Read vmlinux BTF once and find tracefs and debugfs (mounting them
    /// where needed and allowed).
    pub fn new() -> LiveFacts {
        let path = system::btf_path();
        let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()));
        let aya_btf = data
            .as_ref()
            .ok()
            .and_then(|d| AyaBtf::parse(d, aya::Endianness::default()).ok());
        let btf = data.and_then(|d| Btf::parse(d).map_err(|e| e.to_string()));
        LiveFacts {
            btf,
            aya_btf,
            tracefs: system::tracefs(),
            debugfs: system::debugfs(),
            privileges: system::check_privileges(),
        }
    }

    /// The parsed BTF, if readable.
    pub fn btf_reader(&self) -> Option<&Btf> {
        self.btf.as_ref().ok()
    }

    /// aya's parse of the same BTF, for attaching fentry programs.
    pub fn aya_btf(&self) -> Option<&AyaBtf> {
        self.aya_btf.as_ref()
    }
}

impl Default for LiveFacts {
    fn default() -> Self {
        LiveFacts::new()
    }
}

impl KernelFacts for LiveFacts {
    fn release(&self) -> String {
        system::kernel_release()
    }

    fn privileges(&self) -> Result<(), String> {
        self.privileges.clone()
    }

    fn btf(&self) -> Result<usize, String> {
        self.btf
            .as_ref()
            .map(|b| b.last_type_id() as usize)
            .map_err(Clone::clone)
    }

    fn member_offset(&self, name: &str, path: &str) -> Option<u32> {
        self.btf_reader()?
            .member(name, path)
            .map(|m| m.offset_bytes)
    }

    fn func_params(&self, name: &str) -> Option<usize> {
        self.btf_reader()?.func(name).map(|f| f.params.len())
    }

    fn enum_value(&self, name: &str) -> Option<i64> {
        self.btf_reader()?.enum_value(name)
    }

    fn tracefs(&self) -> Option<String> {
        self.tracefs.as_ref().map(|p| p.display().to_string())
    }

    fn tracepoint_format(&self, tracepoint: &str) -> Option<String> {
        system::tracepoint_format(self.tracefs.as_deref()?, tracepoint)
    }

    fn kprobes(&self) -> Result<(), String> {
        system::kprobe_support()
    }

    fn symbols(&self, names: &[&str]) -> BTreeMap<String, SymbolFacts> {
        system::symbol_facts(names, self.tracefs.as_deref(), self.debugfs.as_deref())
    }

    fn fentry(&self, target: Option<&str>) -> Result<(), String> {
        self.privileged()?;
        attach::probe_fentry(self.aya_btf(), target)
    }

    fn ring_buffer(&self) -> Result<(), String> {
        self.privileged()?;
        attach::probe_ring_buffer()
    }
}

impl LiveFacts {
    /// The trial loads need the object and privileges.
    fn privileged(&self) -> Result<(), String> {
        if OBJECT.is_empty() {
            return Err(SourceError::StubObject.to_string());
        }
        self.privileges
            .as_ref()
            .map_err(|_| "unknown: needs root or CAP_BPF+CAP_PERFMON to probe".to_string())
            .copied()
    }
}

/// Every answer a [`KernelFacts`] gave, by question: written by
/// [`Recorder`], replayed as a [`KernelFacts`] itself (questions never
/// asked answer "absent").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub release: String,
    pub privileges: Result<(), String>,
    pub btf: Result<usize, String>,
    /// `struct.path` -> offset.
    pub members: BTreeMap<String, Option<u32>>,
    pub func_params: BTreeMap<String, Option<usize>>,
    pub enum_values: BTreeMap<String, Option<i64>>,
    pub tracefs: Option<String>,
    pub tracepoint_formats: BTreeMap<String, Option<String>>,
    pub kprobes: Result<(), String>,
    pub symbols: BTreeMap<String, SymbolFacts>,
    pub fentry: Result<(), String>,
    pub ring_buffer: Result<(), String>,
}

impl Default for Recorded {
    fn default() -> Self {
        let none = || Err("not recorded".to_string());
        Recorded {
            release: String::new(),
            privileges: none(),
            btf: Err("not recorded".into()),
            members: BTreeMap::new(),
            func_params: BTreeMap::new(),
            enum_values: BTreeMap::new(),
            tracefs: None,
            tracepoint_formats: BTreeMap::new(),
            kprobes: none(),
            symbols: BTreeMap::new(),
            fentry: none(),
            ring_buffer: none(),
        }
    }
}

impl KernelFacts for Recorded {
    fn release(&self) -> String {
        self.release.clone()
    }

    fn privileges(&self) -> Result<(), String> {
        self.privileges.clone()
    }

    fn btf(&self) -> Result<usize, String> {
        self.btf.clone()
    }

    fn member_offset(&self, name: &str, path: &str) -> Option<u32> {
        self.members
            .get(&format!("{name}.{path}"))
            .copied()
            .flatten()
    }

    fn func_params(&self, name: &str) -> Option<usize> {
        self.func_params.get(name).copied().flatten()
    }

    fn enum_value(&self, name: &str) -> Option<i64> {
        self.enum_values.get(name).copied().flatten()
    }

    fn tracefs(&self) -> Option<String> {
        self.tracefs.clone()
    }

    fn tracepoint_format(&self, tracepoint: &str) -> Option<String> {
        self.tracepoint_formats.get(tracepoint).cloned().flatten()
    }

    fn kprobes(&self) -> Result<(), String> {
        self.kprobes.clone()
    }

    fn symbols(&self, names: &[&str]) -> BTreeMap<String, SymbolFacts> {
        names
            .iter()
            .map(|&n| {
                let facts = self.symbols.get(n).cloned().unwrap_or(SymbolFacts {
                    in_btf: false,
                    in_kallsyms: false,
                    traceable: self.tracefs.as_ref().map(|_| false),
                    blacklisted: false,
                });
                (n.to_string(), facts)
            })
            .collect()
    }

    fn fentry(&self, _target: Option<&str>) -> Result<(), String> {
        self.fentry.clone()
    }

    fn ring_buffer(&self) -> Result<(), String> {
        self.ring_buffer.clone()
    }
}

impl Recorded {
    /// Parse a recording (`doctor --dump-facts`).
    pub fn from_json(text: &str) -> Result<Recorded, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The recording as pretty JSON (sorted keys: maps are ordered).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Asks `inner` and writes every answer down.
pub struct Recorder<'a> {
    inner: &'a dyn KernelFacts,
    log: RefCell<Recorded>,
}

impl<'a> Recorder<'a> {
    pub fn new(inner: &'a dyn KernelFacts) -> Recorder<'a> {
        Recorder {
            inner,
            log: RefCell::new(Recorded::default()),
        }
    }

    /// Everything asked so far.
    pub fn into_recorded(self) -> Recorded {
        self.log.into_inner()
    }
}

impl KernelFacts for Recorder<'_> {
    fn release(&self) -> String {
        let v = self.inner.release();
        self.log.borrow_mut().release = v.clone();
        v
    }

    fn privileges(&self) -> Result<(), String> {
        let v = self.inner.privileges();
        self.log.borrow_mut().privileges = v.clone();
        v
    }

    fn btf(&self) -> Result<usize, String> {
        let v = self.inner.btf();
        self.log.borrow_mut().btf = v.clone();
        v
    }

    fn member_offset(&self, name: &str, path: &str) -> Option<u32> {
        let v = self.inner.member_offset(name, path);
        self.log
            .borrow_mut()
            .members
            .insert(format!("{name}.{path}"), v);
        v
    }

    fn func_params(&self, name: &str) -> Option<usize> {
        let v = self.inner.func_params(name);
        self.log.borrow_mut().func_params.insert(name.into(), v);
        v
    }

    fn enum_value(&self, name: &str) -> Option<i64> {
        let v = self.inner.enum_value(name);
        self.log.borrow_mut().enum_values.insert(name.into(), v);
        v
    }

    fn tracefs(&self) -> Option<String> {
        let v = self.inner.tracefs();
        self.log.borrow_mut().tracefs = v.clone();
        v
    }

    fn tracepoint_format(&self, tracepoint: &str) -> Option<String> {
        let v = self.inner.tracepoint_format(tracepoint);
        self.log
            .borrow_mut()
            .tracepoint_formats
            .insert(tracepoint.into(), v.clone());
        v
    }

    fn kprobes(&self) -> Result<(), String> {
        let v = self.inner.kprobes();
        self.log.borrow_mut().kprobes = v.clone();
        v
    }

    fn symbols(&self, names: &[&str]) -> BTreeMap<String, SymbolFacts> {
        let v = self.inner.symbols(names);
        self.log.borrow_mut().symbols.extend(v.clone());
        v
    }

    fn fentry(&self, target: Option<&str>) -> Result<(), String> {
        let v = self.inner.fentry(target);
        self.log.borrow_mut().fentry = v.clone();
        v
    }

    fn ring_buffer(&self) -> Result<(), String> {
        let v = self.inner.ring_buffer();
        self.log.borrow_mut().ring_buffer = v.clone();
        v
    }
}

/// The recorded facts of the supported kernels (`tests/data/facts/*.json`,
/// written by `doctor --dump-facts` in each kernel's VM), by file stem.
/// Every `cargo xtask vm-test` main VM leaves them as `facts` in its log
/// folder (`<cache>/vm/…`): copy that file over the kernel's to refresh it.
#[cfg(test)]
pub(crate) fn fixtures() -> Vec<(String, Recorded)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/facts");
    let mut out: Vec<(String, Recorded)> = std::fs::read_dir(&dir)
        .expect("tests/data/facts exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("facts file readable");
            let facts =
                Recorded::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            (stem.unwrap_or_default(), facts)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_replay_what_was_recorded() {
        let fixtures = fixtures();
        assert!(!fixtures.is_empty());
        for (name, facts) in fixtures {
            // Replaying through a recorder records the same facts again.
            let recorder = Recorder::new(&facts);
            let _ = crate::kernel::inspect::inspect(
                &recorder,
                crate::kernel::plan::HookPreference::Auto,
            );
            let again = recorder.into_recorded();
            assert_eq!(again, facts, "{name}");
            assert_eq!(
                Recorded::from_json(&again.to_json()).ok(),
                Some(again),
                "{name}"
            );
        }
    }
}
