//! Which processes belong to `record -- COMMAND`: the command and every
//! process descended from it, decided from the kernel's own fork and exit
//! events ([`ProcEvent`]), which arrive in ring order with the other events.
//!
//! The kernel follows the tree itself (`uacce-trace-ebpf/src/proc.rs`): it
//! reports a fork only when the forking process is followed, and the child
//! is followed from that moment, before it first runs. So here:
//!
//! - the command (the root) is a member from the start;
//! - a fork makes its child a member at once, and its parent too (the
//!   kernel reports only forks of followed processes: a parent not known
//!   here lost its own fork record to a full ring);
//! - an exit does not end membership at once: the kernel reports it from
//!   `do_exit` before the process's files are closed, and closing them can
//!   still unpin pages in that process. A member that exited is dropped
//!   [`EXIT_GRACE_NS`] of event time later (a fork of the same pid by a
//!   member in between makes it a member again);
//! - an event of any other process is not the command's; but once the
//!   kernel said it lost process-tree records (`ProcEvent::lost`), such an
//!   event may belong to a member whose fork was lost: it is counted as
//!   unplaceable ([`ProcTree::proc_unplaceable`]) instead.
//!
//! Limitation: a pid reused by an unrelated process within
//! [`EXIT_GRACE_NS`] of a member's exit counts as the member (that needs
//! the whole pid space to wrap around within the grace time).

use std::collections::{HashMap, VecDeque};

use crate::ingest::event::{Event, ProcEvent, SummaryKind};

/// How long (event time) a member that exited stays a member, for the
/// events its exit still causes (files closed after the exit tracepoint).
pub const EXIT_GRACE_NS: u64 = 1_000_000_000;

/// What [`ProcTree::verdict`] says about an event's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The command or a descendant.
    Member,
    /// Another process.
    Other,
    /// Cannot be decided: the kernel lost process-tree records, so this
    /// process may be a member whose fork was not seen.
    Unplaceable,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    /// Event time of its exit, while in the grace time.
    exited_at: Option<u64>,
}

/// The command's process tree (see the module docs).
#[derive(Debug)]
pub struct ProcTree {
    /// The tracer itself: its events are never the command's.
    me: u32,
    members: HashMap<u32, Member>,
    /// Members that exited, oldest first: (exit time, tgid).
    exited: VecDeque<(u64, u32)>,
    /// Largest `ProcEvent::lost` seen.
    kernel_lost: u64,
    /// Events left out because their process could not be decided (the
    /// loss reason `proc_unplaceable`).
    pub proc_unplaceable: u64,
    /// Forks and exits of members seen.
    pub forks: u64,
    pub exits: u64,
}

impl ProcTree {
    /// `root`: the command's pid; `me`: the tracer's own pid.
    pub fn new(root: u32, me: u32) -> Self {
        let mut members = HashMap::new();
        members.insert(root, Member { exited_at: None });
        ProcTree {
            me,
            members,
            exited: VecDeque::new(),
            kernel_lost: 0,
            proc_unplaceable: 0,
            forks: 0,
            exits: 0,
        }
    }

    /// Take a fork or exit.
    pub fn observe(&mut self, ev: &ProcEvent) {
        self.kernel_lost = self.kernel_lost.max(ev.lost);
        self.expire(ev.ts_ns);
        match ev.parent {
            Some(parent) => {
                self.forks += 1;
                if parent != self.me {
                    self.members.insert(parent, Member { exited_at: None });
                }
                if ev.tgid != self.me {
                    self.members.insert(ev.tgid, Member { exited_at: None });
                }
            }
            None => {
                if let Some(m) = self.members.get_mut(&ev.tgid) {
                    self.exits += 1;
                    if m.exited_at.is_none() {
                        m.exited_at = Some(ev.ts_ns);
                        self.exited.push_back((ev.ts_ns, ev.tgid));
                    }
                }
            }
        }
    }

    /// Drop the members whose grace time ended before `now_ns`.
    fn expire(&mut self, now_ns: u64) {
        while let Some(&(at, tgid)) = self.exited.front() {
            if now_ns < at.saturating_add(EXIT_GRACE_NS) {
                break;
            }
            self.exited.pop_front();
            // Unless a fork made the pid a member again since.
            if self
                .members
                .get(&tgid)
                .is_some_and(|m| m.exited_at == Some(at))
            {
                self.members.remove(&tgid);
            }
        }
    }

    /// Does an event of process `tgid` at `ts_ns` belong to the command?
    /// Counts [`Verdict::Unplaceable`] answers.
    pub fn verdict(&mut self, tgid: u32, ts_ns: u64) -> Verdict {
        self.expire(ts_ns);
        if tgid == self.me {
            return Verdict::Other;
        }
        if self.members.contains_key(&tgid) {
            return Verdict::Member;
        }
        if self.kernel_lost > 0 {
            self.proc_unplaceable += 1;
            return Verdict::Unplaceable;
        }
        Verdict::Other
    }

    /// Members known now (exited ones in their grace time included).
    pub fn members(&self) -> usize {
        self.members.len()
    }
}

/// The process of an event, for the command filter: `None` for events of
/// no process (loss samples, the tree itself), `Some(None)` for an IO page
/// fault whose owner is unknown.
pub fn event_tgid(ev: &Event) -> Option<Option<u32>> {
    match ev {
        Event::Pin(p) => Some(Some(p.tgid)),
        Event::Iopf(f) => Some(f.tgid),
        Event::PinIoctl(i) => Some(Some(i.tgid)),
        Event::Pasid(p) => Some(Some(p.tgid)),
        Event::Queue(q) => Some(Some(q.tgid)),
        Event::Summary(s) if s.kind == SummaryKind::Iopf && s.tgid == 0 => Some(None),
        Event::Summary(s) => Some(Some(s.tgid)),
        Event::Request(r) => Some(Some(r.tgid)),
        Event::Loss(_) | Event::Proc(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 10;
    const ROOT: u32 = 100;

    fn fork(ts: u64, parent: u32, child: u32) -> ProcEvent {
        ProcEvent {
            ts_ns: ts,
            tgid: child,
            parent: Some(parent),
            tid: parent,
            comm: "sh".into(),
            lost: 0,
        }
    }

    fn exit(ts: u64, tgid: u32) -> ProcEvent {
        ProcEvent {
            ts_ns: ts,
            tgid,
            parent: None,
            tid: tgid,
            comm: "sh".into(),
            lost: 0,
        }
    }

    #[test]
    fn members_from_birth_to_after_exit() {
        let mut t = ProcTree::new(ROOT, ME);
        t.observe(&fork(1, ME, ROOT));
        assert_eq!(t.verdict(ROOT, 2), Verdict::Member);
        assert_eq!(t.verdict(ME, 2), Verdict::Other, "the tracer is never in");
        // A grandchild that lives and dies between two examinations.
        t.observe(&fork(3, ROOT, 101));
        t.observe(&fork(4, 101, 102));
        t.observe(&exit(5, 102));
        t.observe(&exit(6, 101));
        // Its events come after its exit in ring order: still members.
        assert_eq!(t.verdict(102, 7), Verdict::Member);
        assert_eq!(t.verdict(101, 7), Verdict::Member);
        assert_eq!(t.verdict(555, 7), Verdict::Other);
        // After the grace time the pids are free for others.
        assert_eq!(t.verdict(102, 6 + EXIT_GRACE_NS), Verdict::Other);
        assert_eq!(t.verdict(101, 6 + EXIT_GRACE_NS), Verdict::Other);
        assert_eq!(t.members(), 1);
        assert_eq!((t.forks, t.exits, t.proc_unplaceable), (3, 2, 0));
    }

    #[test]
    fn a_pid_reborn_in_the_tree_stays_in() {
        let mut t = ProcTree::new(ROOT, ME);
        t.observe(&fork(1, ROOT, 200));
        t.observe(&exit(2, 200));
        // The same pid, forked again by a member within the grace time.
        t.observe(&fork(3, ROOT, 200));
        assert_eq!(t.verdict(200, 2 + EXIT_GRACE_NS), Verdict::Member);
    }

    #[test]
    fn lost_records_make_strangers_unplaceable() {
        let mut t = ProcTree::new(ROOT, ME);
        // The fork of 300 was lost; 300's own fork tells us it is a member.
        let mut f = fork(5, 300, 301);
        f.lost = 1;
        assert_eq!(t.verdict(300, 4), Verdict::Other);
        t.observe(&f);
        assert_eq!(t.verdict(300, 6), Verdict::Member);
        assert_eq!(t.verdict(301, 6), Verdict::Member);
        // A process we cannot place any more.
        assert_eq!(t.verdict(999, 6), Verdict::Unplaceable);
        assert_eq!(t.proc_unplaceable, 1);
    }

    #[test]
    fn thread_exits_of_non_members_are_ignored() {
        let mut t = ProcTree::new(ROOT, ME);
        t.observe(&exit(1, 777));
        assert_eq!(t.exits, 0);
        assert_eq!(t.verdict(777, 2), Verdict::Other);
    }
}
