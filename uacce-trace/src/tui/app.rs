//! The state of the `top` screen and its one way to change: key →
//! [`Msg`] ([`key_to_msg`]) → [`App::update`], which returns an [`Effect`]
//! for the runner (quit, change the interval). Data arrives the same way
//! ([`Msg::Data`] on every tick).
//!
//! No I/O, no clock, no terminal: `App::new` only stores what it is given,
//! so tests drive it with synthetic data and keys.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::feed::{ProcRow, TopData};
use crate::model::ProcId;

/// Interval steps of `+`/`-`.
pub const INTERVAL_STEPS_NS: [u64; 7] = [
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Rows moved by PageUp/PageDown.
pub const PAGE_ROWS: usize = 10;

/// Where the events come from (shown in the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// Tracing this machine, with this many hooks attached; `summary`:
    /// pins, unpins and pin ioctls counted in the kernel (`--summary`).
    Live { hooks: usize, summary: bool },
    /// Replaying a raw recording.
    Replay { name: String, realtime: bool },
}

/// Fixed facts about the run, known before the first tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    /// Kernel release (of the traced machine).
    pub kernel: String,
    /// Hook plan in one line.
    pub plan: String,
    pub source: SourceKind,
    /// A problem that does not stop tracing (e.g. no IOPF hook on this kernel).
    pub warning: Option<String>,
}

/// The tool's own cost in the kernel, from BPF run-time statistics.
#[derive(Clone, Debug, PartialEq)]
pub enum CostState {
    /// Not measured for this source (replay).
    NotApplicable,
    /// Statistics could not be enabled; why.
    Unavailable(String),
    /// Enabled, no interval measured yet.
    Measuring,
    /// Over the last interval.
    Known {
        /// Average run time per program run; `None` without runs.
        ns_per_run: Option<f64>,
        /// Program runs per second.
        runs_per_s: f64,
        /// Run time as a share of one CPU, in percent.
        cpu_pct: f64,
    },
}

/// Columns of the process table, also the sort keys, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Pid,
    Comm,
    Device,
    IopfRate,
    IopfTotal,
    P50,
    P99,
    P999,
    Max,
    Pinned,
    PinRate,
    InPinned,
    /// `uacce_ctrl`/mempinfd pin ioctls.
    CtlRate,
    CtlErrors,
    CtlPages,
    /// Requests (`--op`).
    OpRate,
    OpP99,
    OpP999,
    OpTailFaulted,
}

/// Columns that are shown only when some process has their data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// Always shown.
    Base,
    /// `uacce_ctrl`/mempinfd pin and unpin ioctls.
    Ioctls,
    /// Requests (`--op`).
    Requests,
}

impl Column {
    /// Every column in table order.
    pub const ALL: [Column; 19] = [
        Column::Pid,
        Column::Comm,
        Column::Device,
        Column::IopfRate,
        Column::IopfTotal,
        Column::P50,
        Column::P99,
        Column::P999,
        Column::Max,
        Column::Pinned,
        Column::PinRate,
        Column::InPinned,
        Column::CtlRate,
        Column::CtlErrors,
        Column::CtlPages,
        Column::OpRate,
        Column::OpP99,
        Column::OpP999,
        Column::OpTailFaulted,
    ];

    /// The group the column belongs to.
    pub const fn group(self) -> Group {
        match self {
            Column::CtlRate | Column::CtlErrors | Column::CtlPages => Group::Ioctls,
            Column::OpRate | Column::OpP99 | Column::OpP999 | Column::OpTailFaulted => {
                Group::Requests
            }
            _ => Group::Base,
        }
    }

    /// Header text.
    pub const fn title(self) -> &'static str {
        match self {
            Column::Pid => "PID",
            Column::Comm => "COMM",
            Column::Device => "DEV",
            Column::IopfRate => "IOPF/s",
            Column::IopfTotal => "TOTAL",
            Column::P50 => "p50",
            Column::P99 => "p99",
            Column::P999 => "p99.9",
            Column::Max => "max",
            Column::Pinned => "PINNED",
            Column::PinRate => "PIN/s",
            Column::InPinned => "INPIN",
            Column::CtlRate => "CTL/s",
            Column::CtlErrors => "CTLERR",
            Column::CtlPages => "CTLPG",
            Column::OpRate => "OPS/s",
            Column::OpP99 => "OPp99",
            Column::OpP999 => "OPp99.9",
            Column::OpTailFaulted => "TAIL%F",
        }
    }

    /// What the column means (help screen).
    pub const fn meaning(self) -> &'static str {
        match self {
            Column::Pid => "process id (- for the [unattrib:PASID] and [other] rows)",
            Column::Comm => "command name",
            Column::Device => "devices that faulted for the process (+N: more)",
            Column::IopfRate => "IO page faults per second, last interval",
            Column::IopfTotal => "IO page faults since the start",
            Column::P50 | Column::P99 | Column::P999 | Column::Max => {
                "IOPF latency, report to response, since the start"
            }
            Column::Pinned => "pages pinned now",
            Column::PinRate => "pin_user_pages* calls per second, last interval",
            Column::InPinned => "faults inside ranges pinned at the time (should be 0)",
            Column::CtlRate | Column::CtlErrors | Column::CtlPages => {
                "uacce_ctrl pin+unpin ioctls/s, failed, pages pinned"
            }
            Column::OpRate | Column::OpP99 | Column::OpP999 => {
                "requests (--op)/s, latency p99, p99.9 (entry to return)"
            }
            Column::OpTailFaulted => "% of the slowest 1 % of requests with an IOPF inside",
        }
    }

    /// Text columns sort ascending first, numbers descending.
    pub const fn descending_first(self) -> bool {
        !matches!(self, Column::Pid | Column::Comm | Column::Device)
    }

    /// The next column (`by` 1) or the previous one (-1) among `among`.
    fn step(self, by: isize, among: &[Column]) -> Column {
        let Some(cur) = among.iter().position(|&c| c == self) else {
            return among.first().copied().unwrap_or(self);
        };
        let n = among.len() as isize;
        among[(cur as isize + by).rem_euclid(n) as usize]
    }

    /// A latency column: processes without its samples sort last.
    fn is_latency(self) -> bool {
        matches!(self, Column::P50 | Column::P99 | Column::P999 | Column::Max)
            || matches!(self, Column::OpP99 | Column::OpP999 | Column::OpTailFaulted)
    }
}

/// What the drill-down shows below the process's summary lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// IOPF and pin call latency, sparklines, fault regions, pinned ranges.
    Faults,
    /// Requests (`--op`) per op: faulted and clean latency histograms.
    Requests,
    /// `uacce_ctrl`/mempinfd ioctls: latency histogram, counts.
    Ioctls,
}

impl Section {
    /// Its name on the drill-down's tab line.
    pub const fn title(self) -> &'static str {
        match self {
            Section::Faults => "faults & pins",
            Section::Requests => "requests",
            Section::Ioctls => "uacce_ctrl",
        }
    }

    /// The sections `row` has data for, in tab order.
    pub fn available(row: &ProcRow) -> Vec<Section> {
        let mut out = vec![Section::Faults];
        if row.ops.is_some() {
            out.push(Section::Requests);
        }
        if row.ioctl_calls > 0 {
            out.push(Section::Ioctls);
        }
        out
    }
}

/// What the keys do right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The process table.
    Table,
    /// Choosing the sort column.
    Sort,
    /// Typing a filter.
    Filter,
    /// One process in detail.
    Detail,
}

/// Everything that changes the state.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    /// New data (every tick).
    Data(Box<TopData>),
    /// New cost measurement (every tick, live).
    Cost(CostState),
    /// The replay reached the end of the recording.
    SourceFinished,
    /// The source failed; the last data stays on screen.
    SourceFailed(String),
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    /// Drill down into the selected process.
    Open,
    /// The drill-down's next (`true`) or previous section.
    Section(bool),
    /// Back from the drill-down.
    Back,
    TogglePause,
    LongerInterval,
    ShorterInterval,
    ToggleHelp,
    /// Open/close the losses panel (every loss reason and its count).
    ToggleLosses,
    SortMode,
    SortNext,
    SortPrev,
    SortReverse,
    SortDone,
    FilterMode,
    FilterInput(char),
    FilterBackspace,
    FilterAccept,
    FilterCancel,
    ClearFilter,
}

/// What the runner has to do after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    Quit,
    /// Tick (and close intervals) every this many ns from now on.
    SetInterval(u64),
}

/// The screen state. See the module docs.
#[derive(Clone, Debug)]
pub struct App {
    info: SourceInfo,
    shown: Option<Box<TopData>>,
    /// Data that arrived while paused.
    pending: Option<Box<TopData>>,
    cost: CostState,
    mode: Mode,
    help: bool,
    losses: bool,
    sort: Column,
    descending: bool,
    filter: String,
    selected: Option<ProcId>,
    detail: Option<ProcId>,
    section: Section,
    paused: bool,
    interval_ns: u64,
    finished: bool,
    error: Option<String>,
}

impl App {
    /// A fresh screen: sorted by IOPF/s, nothing shown yet. No I/O.
    pub fn new(info: SourceInfo, interval_ns: u64) -> App {
        let cost = match info.source {
            SourceKind::Live { .. } => CostState::Measuring,
            SourceKind::Replay { .. } => CostState::NotApplicable,
        };
        App {
            info,
            shown: None,
            pending: None,
            cost,
            mode: Mode::Table,
            help: false,
            losses: false,
            sort: Column::IopfRate,
            descending: true,
            filter: String::new(),
            selected: None,
            detail: None,
            section: Section::Faults,
            paused: false,
            interval_ns: interval_ns.max(1),
            finished: false,
            error: None,
        }
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }
    /// The data on screen (frozen while paused).
    pub fn data(&self) -> Option<&TopData> {
        self.shown.as_deref()
    }
    pub fn cost(&self) -> &CostState {
        &self.cost
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn help(&self) -> bool {
        self.help
    }
    /// The losses panel is open.
    pub fn losses(&self) -> bool {
        self.losses
    }
    pub fn sort(&self) -> (Column, bool) {
        (self.sort, self.descending)
    }
    pub fn filter(&self) -> &str {
        &self.filter
    }
    pub fn selected(&self) -> Option<ProcId> {
        self.selected
    }
    pub fn paused(&self) -> bool {
        self.paused
    }
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }
    pub fn finished(&self) -> bool {
        self.finished
    }
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// The process of the drill-down.
    pub fn detail(&self) -> Option<ProcId> {
        self.detail
    }

    /// The drill-down's section: the one chosen, where the process has
    /// data for it, else [`Section::Faults`].
    pub fn section(&self) -> Section {
        match self.detail_row() {
            Some(r) if Section::available(r).contains(&self.section) => self.section,
            _ => Section::Faults,
        }
    }

    /// The column groups some process has data for (shown, and sortable).
    pub fn groups(&self) -> Vec<Group> {
        let mut g = vec![Group::Base];
        if let Some(d) = self.data() {
            if d.has_ioctls() {
                g.push(Group::Ioctls);
            }
            if d.has_requests() {
                g.push(Group::Requests);
            }
        }
        g
    }

    /// The columns of the shown groups, in table order.
    pub fn columns(&self) -> Vec<Column> {
        let groups = self.groups();
        Column::ALL
            .into_iter()
            .filter(|c| groups.contains(&c.group()))
            .collect()
    }

    /// The row of the drill-down, if that process is still shown.
    pub fn detail_row(&self) -> Option<&ProcRow> {
        let id = self.detail?;
        self.data()?.rows.iter().find(|r| r.proc_id == id)
    }

    /// Rows that pass the filter, in sort order.
    pub fn visible_rows(&self) -> Vec<&ProcRow> {
        let Some(data) = self.data() else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&ProcRow> = data
            .rows
            .iter()
            .filter(|r| needle.is_empty() || matches_filter(r, &needle))
            .collect();
        let (col, desc) = (self.sort, self.descending);
        let latency = col.is_latency();
        let op = matches!(col.group(), Group::Requests);
        rows.sort_by(|a, b| {
            // Without faults (requests) there is no latency: last either way.
            let no_data = |r: &ProcRow| {
                latency
                    && if op {
                        r.ops.is_none()
                    } else {
                        r.iopf.count == 0
                    }
            };
            let o = compare(a, b, col);
            let o = if desc { o.reverse() } else { o };
            no_data(a)
                .cmp(&no_data(b))
                .then(o)
                .then_with(|| a.proc_id.cmp(&b.proc_id))
        });
        rows
    }

    /// Index of the selection among the visible rows.
    pub fn selected_index(&self, rows: &[&ProcRow]) -> Option<usize> {
        let id = self.selected?;
        rows.iter().position(|r| r.proc_id == id)
    }

    fn fix_selection(&mut self) {
        let first = {
            let rows = self.visible_rows();
            if self.selected_index(&rows).is_some() {
                return;
            }
            rows.first().map(|r| r.proc_id)
        };
        self.selected = first;
    }

    fn move_selection(&mut self, by: isize) {
        let target = {
            let rows = self.visible_rows();
            if rows.is_empty() {
                return;
            }
            let cur = self.selected_index(&rows).unwrap_or(0) as isize;
            let i = (cur + by).clamp(0, rows.len() as isize - 1) as usize;
            rows[i].proc_id
        };
        self.selected = Some(target);
        if self.mode == Mode::Detail {
            self.detail = Some(target);
        }
    }

    /// Apply one message.
    pub fn update(&mut self, msg: Msg) -> Effect {
        match msg {
            Msg::Data(d) => {
                if self.paused {
                    self.pending = Some(d);
                } else {
                    self.shown = Some(d);
                    self.fix_selection();
                }
            }
            Msg::Cost(c) => {
                if !self.paused {
                    self.cost = c;
                }
            }
            Msg::SourceFinished => self.finished = true,
            Msg::SourceFailed(e) => self.error = Some(e),
            Msg::Quit => return Effect::Quit,
            Msg::Up => self.move_selection(-1),
            Msg::Down => self.move_selection(1),
            Msg::PageUp => self.move_selection(-(PAGE_ROWS as isize)),
            Msg::PageDown => self.move_selection(PAGE_ROWS as isize),
            Msg::First => self.move_selection(isize::MIN / 2),
            Msg::Last => self.move_selection(isize::MAX / 2),
            Msg::Open => {
                if let Some(id) = self.selected {
                    self.detail = Some(id);
                    self.mode = Mode::Detail;
                }
            }
            Msg::Section(next) => {
                let Some(row) = self.detail_row() else {
                    return Effect::None;
                };
                let all = Section::available(row);
                let cur = all.iter().position(|&s| s == self.section()).unwrap_or(0) as isize;
                let n = all.len() as isize;
                self.section = all[(cur + if next { 1 } else { -1 }).rem_euclid(n) as usize];
            }
            Msg::Back => {
                self.mode = Mode::Table;
                self.fix_selection();
            }
            Msg::TogglePause => {
                self.paused = !self.paused;
                if !self.paused {
                    if let Some(d) = self.pending.take() {
                        self.shown = Some(d);
                        self.fix_selection();
                    }
                }
            }
            Msg::LongerInterval => {
                let next = INTERVAL_STEPS_NS
                    .iter()
                    .copied()
                    .find(|&s| s > self.interval_ns);
                if let Some(n) = next {
                    self.interval_ns = n;
                    return Effect::SetInterval(n);
                }
            }
            Msg::ShorterInterval => {
                let next = INTERVAL_STEPS_NS
                    .iter()
                    .rev()
                    .copied()
                    .find(|&s| s < self.interval_ns);
                if let Some(n) = next {
                    self.interval_ns = n;
                    return Effect::SetInterval(n);
                }
            }
            Msg::ToggleHelp => self.help = !self.help,
            Msg::ToggleLosses => self.losses = !self.losses,
            Msg::SortMode => self.mode = Mode::Sort,
            Msg::SortNext | Msg::SortPrev => {
                let among = self.columns();
                self.sort = self
                    .sort
                    .step(if msg == Msg::SortNext { 1 } else { -1 }, &among);
                self.descending = self.sort.descending_first();
            }
            Msg::SortReverse => self.descending = !self.descending,
            Msg::SortDone => self.mode = Mode::Table,
            Msg::FilterMode => self.mode = Mode::Filter,
            Msg::FilterInput(c) => {
                self.filter.push(c);
                self.fix_selection();
            }
            Msg::FilterBackspace => {
                self.filter.pop();
                self.fix_selection();
            }
            Msg::FilterAccept => self.mode = Mode::Table,
            Msg::FilterCancel => {
                self.filter.clear();
                self.mode = Mode::Table;
                self.fix_selection();
            }
            Msg::ClearFilter => {
                self.filter.clear();
                self.fix_selection();
            }
        }
        Effect::None
    }
}

fn matches_filter(r: &ProcRow, needle_lower: &str) -> bool {
    r.comm.to_lowercase().contains(needle_lower)
        || r.pid_text().contains(needle_lower)
        || r.devices
            .iter()
            .any(|d| d.to_lowercase().contains(needle_lower))
}

fn compare(a: &ProcRow, b: &ProcRow, col: Column) -> std::cmp::Ordering {
    let f = |x: f64, y: f64| x.total_cmp(&y);
    match col {
        Column::Pid => a.proc_id.cmp(&b.proc_id),
        Column::Comm => a.comm.cmp(&b.comm),
        Column::Device => a.devices.cmp(&b.devices),
        Column::IopfRate => f(a.iopf_per_s, b.iopf_per_s)
            .then(a.iopf_total.cmp(&b.iopf_total))
            .then(a.pinned_pages.cmp(&b.pinned_pages)),
        Column::IopfTotal => a.iopf_total.cmp(&b.iopf_total),
        Column::P50 => a.iopf.p50.cmp(&b.iopf.p50),
        Column::P99 => a.iopf.p99.cmp(&b.iopf.p99),
        Column::P999 => a.iopf.p999.cmp(&b.iopf.p999),
        Column::Max => a.iopf.max.cmp(&b.iopf.max),
        Column::Pinned => a.pinned_pages.cmp(&b.pinned_pages),
        Column::PinRate => {
            f(a.pin_calls_per_s, b.pin_calls_per_s).then(a.pin_calls_total.cmp(&b.pin_calls_total))
        }
        Column::InPinned => a.faults_in_pinned.cmp(&b.faults_in_pinned),
        Column::CtlRate => {
            f(a.ioctls_per_s, b.ioctls_per_s).then(a.ioctl_calls.cmp(&b.ioctl_calls))
        }
        Column::CtlErrors => a.ioctl_errors.cmp(&b.ioctl_errors),
        Column::CtlPages => a.ioctl_pages.cmp(&b.ioctl_pages),
        Column::OpRate => {
            let rate = |r: &ProcRow| r.ops.as_ref().map_or(0.0, |o| o.per_s);
            let count = |r: &ProcRow| r.ops.as_ref().map_or(0, |o| o.latency.count);
            f(rate(a), rate(b)).then(count(a).cmp(&count(b)))
        }
        Column::OpP99 | Column::OpP999 => {
            let v = |r: &ProcRow| {
                r.ops.as_ref().map_or(0, |o| {
                    if col == Column::OpP99 {
                        o.latency.p99
                    } else {
                        o.latency.p999
                    }
                })
            };
            v(a).cmp(&v(b))
        }
        Column::OpTailFaulted => {
            let share = |r: &ProcRow| {
                r.ops
                    .as_ref()
                    .and_then(|o| o.tail_p99())
                    .map_or(0.0, |t| t.share())
            };
            f(share(a), share(b))
        }
    }
}

/// The message a key means in the current state, if any.
pub fn key_to_msg(app: &App, key: KeyEvent) -> Option<Msg> {
    if key.kind != KeyEventKind::Press {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d')) {
        return Some(Msg::Quit);
    }
    if app.help {
        return Some(match key.code {
            KeyCode::Char('q') => Msg::Quit,
            _ => Msg::ToggleHelp,
        });
    }
    if app.losses {
        return Some(match key.code {
            KeyCode::Char('q') => Msg::Quit,
            _ => Msg::ToggleLosses,
        });
    }
    let common = |code: KeyCode| -> Option<Msg> {
        Some(match code {
            KeyCode::Char('q') => Msg::Quit,
            KeyCode::Char('j') | KeyCode::Down => Msg::Down,
            KeyCode::Char('k') | KeyCode::Up => Msg::Up,
            KeyCode::PageDown => Msg::PageDown,
            KeyCode::PageUp => Msg::PageUp,
            KeyCode::Char('g') | KeyCode::Home => Msg::First,
            KeyCode::Char('G') | KeyCode::End => Msg::Last,
            KeyCode::Char('p') | KeyCode::Char(' ') => Msg::TogglePause,
            KeyCode::Char('+') | KeyCode::Char('=') => Msg::LongerInterval,
            KeyCode::Char('-') | KeyCode::Char('_') => Msg::ShorterInterval,
            KeyCode::Char('?') | KeyCode::F(1) => Msg::ToggleHelp,
            KeyCode::Char('d') | KeyCode::Char('L') => Msg::ToggleLosses,
            _ => return None,
        })
    };
    match app.mode {
        Mode::Filter => Some(match key.code {
            KeyCode::Esc => Msg::FilterCancel,
            KeyCode::Enter => Msg::FilterAccept,
            KeyCode::Backspace => Msg::FilterBackspace,
            KeyCode::Down => Msg::Down,
            KeyCode::Up => Msg::Up,
            KeyCode::Char(c) if !ctrl => Msg::FilterInput(c),
            _ => return None,
        }),
        Mode::Sort => match key.code {
            KeyCode::Left | KeyCode::Char('h') | KeyCode::BackTab | KeyCode::Char('<') => {
                Some(Msg::SortPrev)
            }
            KeyCode::Right
            | KeyCode::Char('l')
            | KeyCode::Tab
            | KeyCode::Char('s')
            | KeyCode::Char('>') => Some(Msg::SortNext),
            KeyCode::Char('r') => Some(Msg::SortReverse),
            KeyCode::Enter | KeyCode::Esc => Some(Msg::SortDone),
            code => common(code),
        },
        Mode::Table => match key.code {
            KeyCode::Esc if !app.filter.is_empty() => Some(Msg::ClearFilter),
            KeyCode::Esc => Some(Msg::Quit),
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => Some(Msg::Open),
            KeyCode::Char('s') => Some(Msg::SortMode),
            KeyCode::Char('<') => Some(Msg::SortPrev),
            KeyCode::Char('>') => Some(Msg::SortNext),
            KeyCode::Char('r') => Some(Msg::SortReverse),
            KeyCode::Char('/') | KeyCode::Char('f') => Some(Msg::FilterMode),
            code => common(code),
        },
        Mode::Detail => match key.code {
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                Some(Msg::Back)
            }
            KeyCode::Tab | KeyCode::Char('t') => Some(Msg::Section(true)),
            KeyCode::BackTab | KeyCode::Char('T') => Some(Msg::Section(false)),
            code => common(code),
        },
    }
}
