//! Series tags: the names of histograms in every output format. Pure; no
//! aya, tokio, ratatui, no clock.
//!
//! # Tag syntax
//!
//! ```text
//! KIND/PID/COMM/DEVICE          e.g.  iopf/1234/fio/0000:00:02.0
//!                                     pin/1234/fio/-
//!                                     iopf/-/[unattrib:5]/0000:00:02.0
//!                                     unpin/-/[other]/-
//! ```
//!
//! - `KIND`: `iopf`, `pin`, `unpin`, `uacce_ctrl`, or for requests
//!   (`--op`) `op`, `op_faulted`, `op_clean`;
//! - `PID`: the process's tgid in decimal, or `-` for the `[unattrib:PASID]`
//!   and `[other]` buckets;
//! - `COMM`: the command name; `DEVICE`: the device name (IOPFs), the op
//!   (requests, e.g. `op/1234/zip/wd_do_comp_sync`), `-` when there is none.
//!
//! COMM and DEVICE are sanitised: every character outside printable ASCII
//! and every `,` `/` `=` `"` `\` is replaced by `_`, and an empty value is
//! written `-`. A tag therefore never holds a comma, a space or a line
//! break (what the HdrHistogram log format forbids) and always splits into
//! exactly four fields at `/`.

use crate::model::{is_bucket_comm, Kind, ProcId, SeriesKey};

/// Replace what a tag field must not hold (see the module docs).
pub fn sanitize(s: &str) -> String {
    if s.is_empty() {
        return "-".to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, ',' | '/' | '=' | '"' | '\\') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The tag of a series.
pub fn tag(key: &SeriesKey) -> String {
    let pid = match key.proc_id {
        ProcId::Pid(p) => p.to_string(),
        ProcId::Unattributed(_) | ProcId::Other => "-".to_string(),
    };
    format!(
        "{}/{}/{}/{}",
        key.kind.name(),
        pid,
        sanitize(&key.comm),
        sanitize(&key.device)
    )
}

/// A tag split into its fields. Tags not in our syntax (from other tools)
/// keep `kind` `""` and everything else empty; they still compare by tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagInfo {
    /// The tag as written.
    pub tag: String,
    /// Kind name, `""` when the tag is not ours.
    pub kind: String,
    /// Process id, `None` for the buckets.
    pub pid: Option<u32>,
    /// Command name (sanitised form).
    pub comm: String,
    /// Device (sanitised form), `""` for none.
    pub device: String,
}

impl TagInfo {
    /// Fields of a series key, as a reader would see them again.
    pub fn of_key(key: &SeriesKey) -> TagInfo {
        parse(&tag(key))
    }

    /// The model kind, when the tag is ours.
    pub fn model_kind(&self) -> Option<Kind> {
        Kind::from_name(&self.kind)
    }

    /// True for `[unattrib:PASID]` and `[other]`.
    pub fn is_bucket(&self) -> bool {
        self.pid.is_none() && is_bucket_comm(&self.comm)
    }
}

/// Split a tag (see the module docs); never fails.
pub fn parse(tag: &str) -> TagInfo {
    let foreign = || TagInfo {
        tag: tag.to_string(),
        kind: String::new(),
        pid: None,
        comm: String::new(),
        device: String::new(),
    };
    let parts: Vec<&str> = tag.split('/').collect();
    let [kind, pid, comm, device] = parts.as_slice() else {
        return foreign();
    };
    if Kind::from_name(kind).is_none() {
        return foreign();
    }
    let pid = match *pid {
        "-" => None,
        p => match p.parse::<u32>() {
            Ok(p) => Some(p),
            Err(_) => return foreign(),
        },
    };
    TagInfo {
        tag: tag.to_string(),
        kind: (*kind).to_string(),
        pid,
        comm: (*comm).to_string(),
        device: if *device == "-" {
            String::new()
        } else {
            (*device).to_string()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OTHER_COMM;

    fn key(kind: Kind, proc_id: ProcId, comm: &str, device: &str) -> SeriesKey {
        SeriesKey {
            kind,
            proc_id,
            comm: comm.into(),
            device: device.into(),
        }
    }

    #[test]
    fn tags_are_free_of_commas_and_spaces() {
        let k = key(
            Kind::Iopf,
            ProcId::Pid(1234),
            "my job,1/x\u{e9}",
            "0000:00:02.0",
        );
        let t = tag(&k);
        assert_eq!(t, "iopf/1234/my_job_1_x_/0000:00:02.0");
        assert!(hdrhistogram::serialization::interval_log::Tag::new(&t).is_some());
        let info = parse(&t);
        assert_eq!(info.pid, Some(1234));
        assert_eq!(info.device, "0000:00:02.0");
        assert_eq!(info.model_kind(), Some(Kind::Iopf));
    }

    #[test]
    fn buckets_and_empty_fields() {
        let t = tag(&key(Kind::Unpin, ProcId::Other, OTHER_COMM, ""));
        assert_eq!(t, "unpin/-/[other]/-");
        let info = parse(&t);
        assert!(info.is_bucket());
        assert_eq!(info.device, "");
        assert_eq!(tag(&key(Kind::Pin, ProcId::Pid(1), "", "")), "pin/1/-/-");
    }

    #[test]
    fn foreign_tags_are_kept() {
        for t in ["A", "x/y/z/w", "iopf/abc/c/d", "iopf/1/c"] {
            let info = parse(t);
            assert_eq!((info.tag.as_str(), info.kind.as_str()), (t, ""));
        }
    }
}
