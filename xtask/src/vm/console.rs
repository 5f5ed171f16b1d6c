//! The console protocol of every guest `/init`: sections between markers
//! (written by `section` of `guest_lib.sh`, see [`super::guest`]) that
//! [`parse`] collects and verifies against the line and byte counts the
//! guest computed.
//!
//! ```text
//! @@UT-BOOTED <uname -r>
//! @@UT-BEGIN <name>
//! ...the file's lines...
//! @@UT-END <name> lines=<N> bytes=<M>
//! @@UT-DONE
//! ```
//!
//! Pure: no files, no processes. The scenarios (vm-test, soak, demo,
//! bench) check what the sections say.

use std::collections::BTreeMap;

use serde_json::Value;

use super::guest::{BEGIN, BOOTED, DONE, END};

/// One section of the console output.
#[derive(Debug, Default)]
pub struct Section {
    /// Its lines, without line ends.
    pub lines: Vec<String>,
    /// Why its content cannot be trusted (missing end marker, counts that
    /// do not match), if so.
    pub problem: Option<String>,
}

impl Section {
    /// The lines joined, each ended by a newline.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// What the guest printed.
#[derive(Debug, Default)]
pub struct Console {
    /// `uname -r` of the guest, once `/init` ran.
    pub booted: Option<String>,
    /// Whether the last marker was printed.
    pub done: bool,
    /// Sections by name.
    pub sections: BTreeMap<String, Section>,
}

impl Console {
    /// The section's lines, or none.
    pub fn lines(&self, name: &str) -> &[String] {
        self.sections.get(name).map_or(&[], |s| s.lines.as_slice())
    }

    /// `key=value` pairs of every line of a section (later keys win).
    pub fn pairs(&self, name: &str) -> BTreeMap<String, String> {
        self.lines(name).iter().flat_map(|l| kv(l)).collect()
    }
}

/// `a=1 b=2` into pairs.
pub fn kv(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A kernel log line such as `[   12.345678] ...`.
fn is_kernel_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((stamp, _)) = rest.split_once(']') else {
        return false;
    };
    let stamp = stamp.trim();
    !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// `lines=N bytes=M` of an end marker.
fn parse_counts(rest: &str) -> Option<(usize, usize)> {
    let mut lines = None;
    let mut bytes = None;
    for token in rest.split_whitespace() {
        if let Some(v) = token.strip_prefix("lines=") {
            lines = v.parse().ok();
        } else if let Some(v) = token.strip_prefix("bytes=") {
            bytes = v.parse().ok();
        }
    }
    Some((lines?, bytes?))
}

/// Whether `lines` match the guest's counts.
fn counts_match(lines: &[String], want: (usize, usize)) -> bool {
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    lines.len() == want.0 && bytes == want.1
}

/// Finishes a section at its end marker (`rest`: text after the name).
fn close(mut section: Section, rest: &str) -> Section {
    let Some(want) = parse_counts(rest) else {
        section.problem = Some(format!("end marker without counts: {rest:?}"));
        return section;
    };
    if counts_match(&section.lines, want) {
        return section;
    }
    // Kernel messages printed in between: drop them if that restores the
    // counts exactly.
    let kept: Vec<String> = section
        .lines
        .iter()
        .filter(|l| !is_kernel_line(l))
        .cloned()
        .collect();
    if counts_match(&kept, want) {
        section.lines = kept;
        return section;
    }
    let got: usize = section.lines.iter().map(|l| l.len() + 1).sum();
    section.problem = Some(format!(
        "garbled on the console: guest wrote {} lines / {} bytes, host read {} / {}",
        want.0,
        want.1,
        section.lines.len(),
        got
    ));
    section
}

/// Splits the console log into sections.
pub fn parse(log: &str) -> Console {
    let mut console = Console::default();
    let mut open: Option<(String, Section)> = None;
    for raw in log.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = line.strip_prefix(BEGIN).and_then(|r| r.strip_prefix(' ')) {
            if let Some((name, mut section)) = open.take() {
                section.problem = Some("no end marker".into());
                console.sections.insert(name, section);
            }
            open = Some((rest.trim().to_string(), Section::default()));
        } else if let Some(rest) = line.strip_prefix(END).and_then(|r| r.strip_prefix(' ')) {
            let (name, counts) = rest.split_once(' ').unwrap_or((rest, ""));
            match open.take() {
                Some((open_name, section)) if open_name == name => {
                    console.sections.insert(open_name, close(section, counts));
                }
                other => {
                    if let Some((open_name, mut section)) = other {
                        section.problem = Some(format!("ended by the marker of {name:?}"));
                        console.sections.insert(open_name, section);
                    }
                }
            }
        } else if let Some((_, section)) = open.as_mut() {
            section.lines.push(line.to_string());
        } else if let Some(at) = line.find(BOOTED) {
            console.booted = Some(line[at + BOOTED.len()..].trim().to_string());
        } else if line.trim() == DONE {
            console.done = true;
        }
    }
    if let Some((name, mut section)) = open {
        section.problem = Some("output ends inside it".into());
        console.sections.insert(name, section);
    }
    console
}

/// The lines of `section` that parse as JSON.
pub fn json_lines(console: &Console, section: &str) -> Vec<Value> {
    console
        .lines(section)
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A number field of a JSON record, written as a number, a decimal string
/// or a `0x` hex string (addresses).
pub fn u(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .or_else(|| s.parse().ok()),
        _ => None,
    }
}

/// A string field of a JSON record, `""` when absent.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The `nr_foll_pin_*` counters of a vmstat section: (acquired, released).
pub fn vmstat(console: &Console, name: &str) -> Option<(u64, u64)> {
    let mut acquired = None;
    let mut released = None;
    for line in console.lines(name) {
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("nr_foll_pin_acquired"), Some(v)) => acquired = Some(v),
            (Some("nr_foll_pin_released"), Some(v)) => released = Some(v),
            _ => {}
        }
    }
    Some((acquired?, released?))
}
