//! Label controls of `serve` (`--labels`, `--max-series`): which labels the
//! per-process metric families carry, the cgroup/container label's value,
//! and the cap on distinct label sets per family. Pure: no file, socket or
//! clock; the cgroup paths come in from `kernel::system::task_cgroup`.
//!
//! # Labels
//!
//! `--labels` picks among `pid`, `comm`, `device` (IOPF families only) and
//! `cgroup` (the task's cgroup v2 path, container ids shortened:
//! [`cgroup_label`]); the default, `pid,comm,device`, is what `serve`
//! exported before the option existed. A label left out aggregates: the
//! series that then share their label values are merged, counters summed
//! and histograms merged bucket by bucket (exact: the model's histograms
//! are merged before they are cut into `le` buckets). The `op` label of the
//! request families (`--op`) always stays.
//!
//! # Bounded cardinality
//!
//! Each metric family holds at most `--max-series` distinct label sets
//! ([`DEFAULT_MAX_SERIES`]). A label set is admitted the first time a
//! scrape sees it while the family has room, and keeps its series while
//! it exists; one that finds the family full is folded, for as long as it
//! exists, into the family's overflow series, whose every label is
//! [`OVERFLOW`], and `uacce_trace_series_folded_total` counts it once.
//! Folding is sticky on purpose: a series that moved between its own
//! labels and the overflow series would count its history twice in
//! `rate()`. A label set that disappears (its processes aged out) frees
//! its place; the overflow series may then go down, which `rate()` reads
//! as a counter reset.

use std::collections::{BTreeSet, HashMap, HashSet};

/// Label sets per metric family unless `--max-series` says otherwise.
pub const DEFAULT_MAX_SERIES: usize = 1000;

/// Every label value of a family's overflow series.
pub const OVERFLOW: &str = "[other]";

/// Which labels the per-process families carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelSet {
    pub pid: bool,
    pub comm: bool,
    pub device: bool,
    pub cgroup: bool,
}

impl Default for LabelSet {
    /// `pid,comm,device`: what `serve` exported before `--labels`.
    fn default() -> Self {
        LabelSet {
            pid: true,
            comm: true,
            device: true,
            cgroup: false,
        }
    }
}

/// The names `--labels` accepts, in the order the labels are written.
pub const LABEL_NAMES: [&str; 4] = ["pid", "comm", "device", "cgroup"];

impl LabelSet {
    /// Parse `--labels`: a comma-separated list of [`LABEL_NAMES`], each
    /// at most once, at least one.
    pub fn parse(s: &str) -> Result<LabelSet, String> {
        let mut set = LabelSet {
            pid: false,
            comm: false,
            device: false,
            cgroup: false,
        };
        for name in s.split(',').map(str::trim) {
            let slot = match name {
                "pid" => &mut set.pid,
                "comm" => &mut set.comm,
                "device" => &mut set.device,
                "cgroup" => &mut set.cgroup,
                "" => return Err("an empty label name (use e.g. pid,comm,device)".into()),
                other => {
                    return Err(format!(
                        "unknown label {other:?}: choose among {}",
                        LABEL_NAMES.join(", ")
                    ))
                }
            };
            if *slot {
                return Err(format!("label {name} given twice"));
            }
            *slot = true;
        }
        Ok(set)
    }

    /// The chosen labels, comma-separated (the inverse of [`Self::parse`]).
    pub fn names(&self) -> String {
        let on = [self.pid, self.comm, self.device, self.cgroup];
        LABEL_NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The label values of one series of a family; `None`: not a label of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub pid: Option<String>,
    pub comm: Option<String>,
    pub device: Option<String>,
    pub cgroup: Option<String>,
    pub op: Option<String>,
}

impl Key {
    /// The overflow series of the family this key belongs to: the same
    /// labels, each [`OVERFLOW`].
    pub fn overflow(&self) -> Key {
        let o = |v: &Option<String>| v.as_ref().map(|_| OVERFLOW.to_string());
        Key {
            pid: o(&self.pid),
            comm: o(&self.comm),
            device: o(&self.device),
            cgroup: o(&self.cgroup),
            op: o(&self.op),
        }
    }

    /// `name="value"` pairs, comma-separated, values escaped with `escape`,
    /// in the order pid, comm, device, cgroup, op.
    pub fn render(&self, escape: impl Fn(&str) -> String) -> String {
        let pairs = [
            ("pid", &self.pid),
            ("comm", &self.comm),
            ("device", &self.device),
            ("cgroup", &self.cgroup),
            ("op", &self.op),
        ];
        pairs
            .iter()
            .filter_map(|(n, v)| v.as_ref().map(|v| format!("{n}=\"{}\"", escape(v))))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, Default)]
struct Family {
    admitted: HashSet<Key>,
    folded: HashSet<Key>,
}

/// The per-family cap on label sets (module docs); lives as long as the
/// server, consulted on every scrape.
#[derive(Debug)]
pub struct SeriesCap {
    max: usize,
    families: HashMap<&'static str, Family>,
    folded_total: u64,
}

impl SeriesCap {
    /// At most `max` label sets per family (at least 1).
    pub fn new(max: usize) -> SeriesCap {
        SeriesCap {
            max: max.max(1),
            families: HashMap::new(),
            folded_total: 0,
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Label sets folded into an overflow series so far (each counted once
    /// per stay).
    pub fn folded_total(&self) -> u64 {
        self.folded_total
    }

    /// Where each of `current` (the label sets `family` has in this
    /// scrape) goes: itself, or the family's overflow series. Label sets
    /// no longer current free their places first.
    pub fn place(&mut self, family: &'static str, current: &BTreeSet<Key>) -> HashMap<Key, Key> {
        let fam = self.families.entry(family).or_default();
        fam.admitted.retain(|k| current.contains(k));
        fam.folded.retain(|k| current.contains(k));
        let mut out = HashMap::with_capacity(current.len());
        for k in current {
            let to = if fam.admitted.contains(k) {
                k.clone()
            } else if fam.folded.contains(k) {
                k.overflow()
            } else if fam.admitted.len() < self.max {
                fam.admitted.insert(k.clone());
                k.clone()
            } else {
                fam.folded.insert(k.clone());
                self.folded_total += 1;
                k.overflow()
            };
            out.insert(k.clone(), to);
        }
        out
    }
}

/// Hex digits of a container id that the cgroup label keeps (Docker's
/// short id).
pub const SHORT_ID: usize = 12;

/// The cgroup label of a task's cgroup v2 path (the `0::` line of
/// `/proc/PID/cgroup`): a recognisable container scope becomes
/// `RUNTIME-SHORTID` (`docker-`, `containerd-`, `crio-`, `podman-`; the
/// first [`SHORT_ID`] hex digits of the 64 of the id), a Kubernetes pod
/// without a container in the path `pod-UID`; any other path stays as it
/// is (`/system.slice/nginx.service`, `/` for kernel threads).
pub fn cgroup_label(path: &str) -> String {
    let path = path.trim();
    // The innermost component that names a container wins.
    for comp in path.rsplit('/') {
        let stem = comp.strip_suffix(".scope").unwrap_or(comp);
        let known = [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "crio"),
            ("libpod-", "podman"),
        ];
        for (prefix, runtime) in known {
            if let Some(id) = stem.strip_prefix(prefix) {
                if is_container_id(id) {
                    return format!("{runtime}-{}", &id[..SHORT_ID]);
                }
            }
        }
        // cgroupfs drivers: /docker/ID, /kubepods/burstable/podUID/ID.
        if is_container_id(stem) {
            let runtime = if path.starts_with("/docker/") {
                "docker"
            } else if path.contains("kubepods") {
                "container"
            } else {
                continue;
            };
            return format!("{runtime}-{}", &stem[..SHORT_ID]);
        }
    }
    // A pod-level cgroup: kubepods-…-pod<UID>.slice or kubepods/…/pod<UID>.
    if path.contains("kubepods") {
        for comp in path.rsplit('/') {
            let stem = comp.strip_suffix(".slice").unwrap_or(comp);
            if let Some(i) = stem.rfind("pod") {
                let uid = &stem[i + 3..];
                if !uid.is_empty()
                    && uid
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == '_' || c == '-')
                {
                    return format!("pod-{}", uid.replace('_', "-"));
                }
            }
        }
    }
    path.to_string()
}

/// 64 lower-case hex digits (a Docker/OCI container id).
fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    #[test]
    fn labels_parse_and_print() {
        assert_eq!(LabelSet::parse("pid,comm,device"), Ok(LabelSet::default()));
        assert_eq!(LabelSet::default().names(), "pid,comm,device");
        let s = LabelSet::parse("cgroup, comm").unwrap_or_default();
        assert!(s.comm && s.cgroup && !s.pid && !s.device);
        assert_eq!(s.names(), "comm,cgroup");
        assert!(LabelSet::parse("pid,pid").is_err());
        assert!(LabelSet::parse("").is_err());
        assert!(LabelSet::parse("pid,").is_err());
        let e = LabelSet::parse("container").unwrap_err();
        assert!(e.contains("pid, comm, device, cgroup"), "{e}");
    }

    #[test]
    fn container_scopes_are_shortened() {
        let short = &ID[..12];
        for (path, want) in [
            (format!("/system.slice/docker-{ID}.scope"), format!("docker-{short}")),
            (format!("/docker/{ID}"), format!("docker-{short}")),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_1111_2222_3333_444455556666.slice/cri-containerd-{ID}.scope"
                ),
                format!("containerd-{short}"),
            ),
            (
                format!("/kubepods.slice/kubepods-pod1234.slice/crio-{ID}.scope"),
                format!("crio-{short}"),
            ),
            (
                format!("/kubepods/burstable/pod0a1b2c3d-1111-2222-3333-444455556666/{ID}"),
                format!("container-{short}"),
            ),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
                format!("podman-{short}"),
            ),
            (format!("/machine.slice/libpod-{ID}.scope"), format!("podman-{short}")),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_1111_2222_3333_444455556666.slice".into(),
                "pod-0a1b2c3d-1111-2222-3333-444455556666".into(),
            ),
            ("/system.slice/nginx.service".into(), "/system.slice/nginx.service".into()),
            ("/".into(), "/".into()),
            // Not an id: 63 digits, upper case, a plain directory of that length.
            (format!("/system.slice/docker-{}.scope", &ID[1..]), format!("/system.slice/docker-{}.scope", &ID[1..])),
            (format!("/srv/{ID}"), format!("/srv/{ID}")),
        ] {
            assert_eq!(cgroup_label(&path), want, "{path}");
        }
    }

    fn key(pid: &str) -> Key {
        Key {
            pid: Some(pid.into()),
            comm: Some("zip".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_cap_admits_first_come_and_folding_is_sticky() {
        let mut cap = SeriesCap::new(2);
        let set = |ks: &[&str]| ks.iter().map(|k| key(k)).collect::<BTreeSet<_>>();
        let m = cap.place("f", &set(&["1", "2", "3"]));
        assert_eq!(m[&key("1")], key("1"));
        assert_eq!(m[&key("2")], key("2"));
        let over = m[&key("3")].clone();
        assert_eq!(
            over.render(str::to_string),
            r#"pid="[other]",comm="[other]""#
        );
        assert_eq!(cap.folded_total(), 1);
        // Same sets again: nothing new is folded.
        let _ = cap.place("f", &set(&["1", "2", "3"]));
        assert_eq!(cap.folded_total(), 1);
        // 1 goes away: its place is free, but 3 stays folded; 4 takes it.
        let m = cap.place("f", &set(&["2", "3", "4"]));
        assert_eq!(m[&key("3")], over);
        assert_eq!(m[&key("4")], key("4"));
        assert_eq!(cap.folded_total(), 1);
        // Another family has its own room.
        let m = cap.place("g", &set(&["3"]));
        assert_eq!(m[&key("3")], key("3"));
        // 3 leaves and comes back: folded again (the family is full), counted again.
        let _ = cap.place("f", &set(&["2", "4"]));
        let m = cap.place("f", &set(&["2", "3", "4"]));
        assert_eq!(m[&key("3")], over);
        assert_eq!(cap.folded_total(), 2);
    }
}
