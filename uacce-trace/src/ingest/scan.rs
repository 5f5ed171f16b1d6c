//! The start-up PASID scan (docs/architecture.md, "Attribution"): processes
//! that bound a PASID before the tool started, found by walking the task
//! list in a BPF program (`kernel::scan`). Here: its records decoded into
//! owners, and its result for people and JSON. Never fatal: the result says
//! why the scan could not run.

use serde::Serialize;

use crate::{
    ingest::{attribution::PasidOwner, decode::decode_scan},
    kernel::{
        kconfig,
        scan::{self, RawScan},
    },
};

/// What the start-up PASID scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScanFound {
    /// Thread-group leaders visited.
    pub tasks: u32,
    /// The walk came back to its start (every process seen).
    pub complete: bool,
    /// Records lost (ring buffer full).
    pub lost: u32,
    /// Processes whose mm holds a PASID.
    pub owners: Vec<PasidOwner>,
}

/// The scan's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PasidScan {
    /// Where this kernel keeps an mm's PASID.
    pub pasid_field: &'static str,
    /// The tracepoint the scan program ran from.
    pub via: &'static str,
    #[serde(flatten, with = "scan_result")]
    pub result: Result<ScanFound, String>,
}

mod scan_result {
    use serde::{Serialize, Serializer};

    use super::ScanFound;

    #[derive(Serialize)]
    struct Repr<'a> {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        found: Option<&'a ScanFound>,
    }

    pub fn serialize<S: Serializer>(
        r: &Result<ScanFound, String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        Repr {
            ok: r.is_ok(),
            reason: r.as_ref().err().map(String::as_str),
            found: r.as_ref().ok(),
        }
        .serialize(s)
    }
}

impl PasidScan {
    /// A scan that did not run, and why.
    pub fn skipped(reason: &str) -> Self {
        PasidScan {
            pasid_field: "none",
            via: scan::tracepoint(),
            result: Err(reason.to_string()),
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        match &self.result {
            Ok(f) => {
                let owners: Vec<String> = f
                    .owners
                    .iter()
                    .map(|o| format!("pasid {} -> {}/{}", o.pasid, o.tgid, o.comm))
                    .collect();
                format!(
                    "{} processes scanned{}, {} with a PASID{}{}",
                    f.tasks,
                    if f.complete {
                        ""
                    } else {
                        " (list not complete)"
                    },
                    f.owners.len(),
                    if owners.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", owners.join(", "))
                    },
                    if f.lost > 0 {
                        format!(" ({} lost)", f.lost)
                    } else {
                        String::new()
                    }
                )
            }
            Err(why) => format!("not run: {why}"),
        }
    }
}

/// Decode what the scan program left: owners sorted by PASID; an
/// undecodable record is an owner not learnt, counted with the losses.
pub fn found(raw: &RawScan) -> ScanFound {
    let mut owners = Vec::new();
    let mut undecodable = 0u32;
    for record in &raw.records {
        match decode_scan(record) {
            Ok(owner) => owners.push(owner),
            Err(e) => {
                undecodable = undecodable.saturating_add(1);
                log::warn!("undecodable scan record: {e}");
            }
        }
    }
    owners.sort_by_key(|o| o.pasid);
    ScanFound {
        tasks: raw.state.visited,
        complete: raw.state.complete == 1,
        lost: raw.state.lost.saturating_add(undecodable),
        owners,
    }
}

/// Run the start-up PASID scan with its own instance of the object (its own
/// small ring buffer), so it works before, after or without a tracer.
pub fn scan_pasids(config: &kconfig::Resolved) -> PasidScan {
    let mut scan = PasidScan::skipped("");
    scan.pasid_field = config.pasid_location();
    scan.result = scan::run(config).map(|raw| found(&raw));
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_record_counts_as_lost() {
        let raw = RawScan {
            state: uacce_trace_common::ScanState {
                visited: 7,
                complete: 1,
                lost: 1,
                ..Default::default()
            },
            records: vec![vec![0u8; 3]],
        };
        let f = found(&raw);
        assert_eq!((f.tasks, f.complete, f.lost), (7, true, 2));
        assert!(f.owners.is_empty());
        let scan = PasidScan {
            pasid_field: "mm.pasid",
            via: scan::tracepoint(),
            result: Ok(f),
        };
        assert_eq!(
            scan.summary(),
            "7 processes scanned, 0 with a PASID (2 lost)"
        );
    }
}
