//! Drawing the `top` screen: pure functions of the [`App`] state into a
//! ratatui frame (no I/O, no clock; the same state gives the same frame,
//! which the insta snapshots check).
//!
//! Layout, top to bottom: three header lines (source and kernel, hook plan,
//! events/drops/unanswered/cost), banners (error, replay finished, paused,
//! warning), the body (process table or drill-down) and one footer line
//! with the keys of the current mode; overlays: help (`?`) and the losses
//! panel (`d`: every loss reason, its count and what it means, below the
//! header so that `drops N` stays in view). `drops 0` only when every loss
//! reason is 0. Fits 80x24; wider terminals give the extra columns to COMM,
//! DEV and the numbers, taller ones to rows. The `uacce_ctrl` ioctl columns
//! and the request (`--op`) columns appear once some process has their
//! data; at 80 columns they take the place of the IOPF columns dropped first.
//!
//! The drill-down: the process's summary lines, then, when it has
//! requests or ioctls, a tab line and one section (`Tab`): faults & pins
//! (IOPF and pin call histograms, sparklines, fault regions, pinned
//! ranges), requests (per op: faulted and clean request histograms on one
//! grid, the faulted share of the tail; sparklines) or uacce_ctrl (ioctl
//! and pin call histograms, counts, sparklines).

use ratatui::{
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap},
    Frame,
};

use super::{
    app::{App, Column, CostState, Group, Mode, Section, SourceKind},
    feed::{OpDetail, ProcRow, Sample},
    fmt,
};
use crate::{
    ingest::losses::{Ledger, LossReason},
    model::ProcId,
};

const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().add_modifier(Modifier::DIM);
const SEP: &str = " · ";

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let banners = banners(app, usize::from(area.width));
    let [head, ban, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(banners.len() as u16),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(header(app)), head);
    f.render_widget(Paragraph::new(banners), ban);
    match app.mode() {
        Mode::Detail => detail(f, body, app),
        _ => table(f, body, app),
    }
    f.render_widget(
        Paragraph::new(footer(app)).style(Style::new().add_modifier(Modifier::REVERSED)),
        foot,
    );
    if app.losses() {
        // Below the header, whose third line says how much was lost.
        let below = Rect {
            y: area.y + head.height,
            height: area.height.saturating_sub(head.height),
            ..area
        };
        losses_panel(f, below, app);
    }
    if app.help() {
        help(f, area);
    }
}

fn header(app: &App) -> Vec<Line<'static>> {
    let info = app.info();
    let mut l1 = vec![Span::styled("uacce-trace", BOLD), Span::raw(SEP)];
    match &info.source {
        SourceKind::Live { hooks, summary } => l1.push(Span::raw(format!(
            "live, {hooks} hook{}{}",
            if *hooks == 1 { "" } else { "s" },
            // Fault regions come from the sampled IOPF groups only.
            if *summary {
                ", summary mode (counted in the kernel; fault regions sampled)"
            } else {
                ""
            }
        ))),
        SourceKind::Replay { name, realtime } => l1.push(Span::raw(format!(
            "replay {name}{}",
            if *realtime { "" } else { " (fast)" }
        ))),
    }
    if let Some(d) = app.data() {
        l1.push(Span::raw(format!(
            "{SEP}t+{}",
            fmt::elapsed(d.now_ns.saturating_sub(d.start_ns))
        )));
    }
    l1.push(Span::raw(format!(
        "{SEP}every {}",
        fmt::interval(app.interval_ns())
    )));
    l1.push(Span::raw(format!("{SEP}kernel {}", info.kernel)));
    let l2 = Line::from(vec![
        Span::styled("hooks ", DIM),
        Span::raw(if info.plan.is_empty() {
            "unknown".to_string()
        } else {
            info.plan.clone()
        }),
    ]);
    let (events, rate, dropped, unanswered) = app.data().map_or((0, 0.0, 0, 0), |d| {
        (
            d.events,
            d.events_per_s,
            d.losses.total(),
            d.losses.get(LossReason::IopfUnanswered),
        )
    });
    let mut l3 = vec![Span::raw(format!(
        "events {}/s ({}){SEP}",
        fmt::rate(rate),
        fmt::count(events)
    ))];
    if dropped > 0 {
        l3.push(Span::styled(
            format!("drops {} (incomplete, d: why)", fmt::count(dropped)),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    } else {
        l3.push(Span::raw("drops 0"));
    }
    l3.push(Span::raw(SEP));
    l3.push(Span::styled(
        format!("unanswered {}", fmt::count(unanswered)),
        if unanswered > 0 {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        },
    ));
    l3.push(Span::raw(SEP));
    l3.push(Span::raw(cost_text(app.cost())));
    vec![Line::from(l1), l2, Line::from(l3)]
}

fn cost_text(c: &CostState) -> String {
    match c {
        CostState::NotApplicable => "cost n/a (replay)".into(),
        CostState::Unavailable(why) => format!("cost n/a ({why})"),
        CostState::Measuring => "cost: measuring…".into(),
        CostState::Known {
            ns_per_run,
            runs_per_s,
            cpu_pct,
        } => match ns_per_run {
            Some(ns) => format!(
                "BPF {:.0} ns/run {}/s {:.2}% CPU",
                ns,
                fmt::rate(*runs_per_s),
                cpu_pct
            ),
            None => "BPF 0 runs".into(),
        },
    }
}

fn banners(app: &App, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let mut push = |text: String, style: Style| {
        for l in fmt::wrap(&text, width.saturating_sub(2), 3) {
            out.push(Line::styled(format!(" {l} "), style));
        }
    };
    if let Some(e) = app.error() {
        push(
            format!("error: {e}"),
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        );
    }
    if app.finished() {
        push(
            "replay finished — showing the final state; q quits".into(),
            Style::new().fg(Color::Black).bg(Color::Green),
        );
    }
    if app.paused() {
        push(
            "PAUSED — the screen is frozen, data keeps coming; p resumes".into(),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        );
    }
    if let Some(w) = &app.info().warning {
        push(format!("warning: {w}"), Style::new().fg(Color::Yellow));
    }
    out
}

fn footer(app: &App) -> Line<'static> {
    let iv = fmt::interval(app.interval_ns());
    let (col, desc) = app.sort();
    let text = match app.mode() {
        Mode::Table => {
            format!(
                " q quit  ↑↓ move  ⏎ open  s sort  / filter  p pause  +/- {iv}  d drops  ? help"
            )
        }
        Mode::Sort => format!(
            " SORT by {} {}  ←/→ or s: column  r: reverse  ⏎/Esc: done",
            col.title(),
            arrow(desc)
        ),
        Mode::Filter => format!(
            " FILTER /{}▏ ⏎ keep  Esc clear  (matches PID, COMM, device)",
            app.filter()
        ),
        Mode::Detail => {
            let tab = match app.detail_row() {
                Some(r) if Section::available(r).len() > 1 => "  Tab section",
                _ => "",
            };
            format!(
                " Esc back  ↑↓/jk other process{tab}  p pause  +/- {iv}  d drops  ? help  q quit"
            )
        }
    };
    Line::raw(text)
}

fn arrow(desc: bool) -> &'static str {
    if desc {
        "▼"
    } else {
        "▲"
    }
}

// ---- process table ------------------------------------------------------

/// Narrowest column widths, in [`Column::ALL`] order (the first 12 fill 80
/// columns with their 11 separating spaces).
const BASE_WIDTHS: [u16; 19] = [7, 8, 7, 6, 5, 5, 5, 5, 5, 6, 5, 5, 5, 6, 5, 5, 5, 7, 6];
/// Columns dropped first when the width is not there (at 80 columns the
/// ioctl and request columns push out the first of these).
const DROP_ORDER: [Column; 11] = [
    Column::P50,
    Column::Max,
    Column::PinRate,
    Column::IopfTotal,
    Column::P999,
    Column::CtlErrors,
    Column::CtlPages,
    Column::InPinned,
    Column::OpP999,
    Column::Device,
    Column::CtlRate,
];

/// The columns of `groups` shown at `width` and their widths.
pub fn columns(width: u16, groups: &[Group]) -> Vec<(Column, u16)> {
    let mut cols: Vec<(Column, u16)> = Column::ALL
        .into_iter()
        .zip(BASE_WIDTHS)
        .filter(|(c, _)| groups.contains(&c.group()))
        .collect();
    let total = |c: &[(Column, u16)]| -> u16 {
        c.iter().map(|x| x.1).sum::<u16>() + c.len().saturating_sub(1) as u16
    };
    for drop in DROP_ORDER {
        if total(&cols) <= width {
            break;
        }
        cols.retain(|c| c.0 != drop);
    }
    let mut extra = width.saturating_sub(total(&cols));
    let grow =
        |cols: &mut [(Column, u16)], extra: &mut u16, which: &dyn Fn(Column) -> bool, max| {
            for c in cols.iter_mut().filter(|c| which(c.0)) {
                let add = (*extra).min(max);
                c.1 += add;
                *extra -= add;
            }
        };
    grow(&mut cols, &mut extra, &|c| c == Column::Comm, 8);
    grow(&mut cols, &mut extra, &|c| c == Column::Device, 5);
    let numeric = |c: Column| !matches!(c, Column::Pid | Column::Comm | Column::Device);
    while extra > 0 && cols.iter().any(|c| numeric(c.0)) {
        grow(&mut cols, &mut extra, &numeric, 1);
    }
    cols
}

fn cell_text(r: &ProcRow, col: Column, width: u16, selected: bool) -> String {
    match col {
        Column::Pid => {
            let pid = r.pid_text();
            let w = usize::from(width);
            if selected && pid.len() < w {
                format!("▶{pid:>0$}", w - 1)
            } else {
                pid
            }
        }
        Column::Comm => fmt::fit(&r.comm, usize::from(width)),
        Column::Device => {
            let w = usize::from(width);
            let text = match r.devices.as_slice() {
                [] => "-".to_string(),
                [one] => fmt::device(one).to_string(),
                [first, rest @ ..] => {
                    let t = format!("{}+{}", fmt::device(first), rest.len());
                    if t.chars().count() <= w {
                        t
                    } else {
                        format!("{} devs", r.devices.len())
                    }
                }
            };
            fmt::fit(&text, w)
        }
        Column::IopfRate => fmt::rate(r.iopf_per_s),
        Column::IopfTotal => fmt::count(r.iopf_total),
        Column::P50 => fmt::lat(r.iopf.p50),
        Column::P99 => fmt::lat(r.iopf.p99),
        Column::P999 => fmt::lat(r.iopf.p999),
        Column::Max => fmt::lat(r.iopf.max),
        Column::Pinned => fmt::count(r.pinned_pages),
        Column::PinRate => fmt::rate(r.pin_calls_per_s),
        Column::InPinned => fmt::count(r.faults_in_pinned),
        Column::CtlRate | Column::CtlErrors | Column::CtlPages if r.ioctl_calls == 0 => "-".into(),
        Column::CtlRate => fmt::rate(r.ioctls_per_s),
        Column::CtlErrors => fmt::count(r.ioctl_errors),
        Column::CtlPages => fmt::count(r.ioctl_pages),
        Column::OpRate | Column::OpP99 | Column::OpP999 | Column::OpTailFaulted => {
            let Some(o) = &r.ops else {
                return "-".into();
            };
            match col {
                Column::OpRate => fmt::rate(o.per_s),
                Column::OpP99 => fmt::lat(o.latency.p99),
                Column::OpP999 => fmt::lat(o.latency.p999),
                _ => o
                    .tail_p99()
                    .map_or_else(|| "-".into(), |t| percent(t.share())),
            }
        }
    }
}

/// A share 0..1 as a whole percentage, `<1%` and `>99%` near the ends.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 0.0 && p < 0.5 {
        "<1%".into()
    } else if p < 100.0 && p > 99.5 {
        ">99%".into()
    } else {
        format!("{p:.0}%")
    }
}

fn is_text(col: Column) -> bool {
    matches!(col, Column::Comm | Column::Device)
}

fn status_line(app: &App, shown: usize, total: usize) -> Line<'static> {
    let (col, desc) = app.sort();
    let mut spans = vec![Span::raw(format!(
        "{shown} of {total} processes{SEP}sort {} {}",
        col.title(),
        arrow(desc)
    ))];
    if !app.filter().is_empty() || app.mode() == Mode::Filter {
        spans.push(Span::raw(SEP));
        spans.push(Span::styled(
            format!("filter \"{}\"", app.filter()),
            Style::new().fg(Color::Cyan),
        ));
    }
    Line::from(spans)
}

fn table(f: &mut Frame, area: Rect, app: &App) {
    let [status, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let total = app.data().map_or(0, |d| d.rows.len());
    let rows = app.visible_rows();
    f.render_widget(Paragraph::new(status_line(app, rows.len(), total)), status);
    let cols = columns(rest.width, &app.groups());
    let (sort_col, _) = app.sort();
    let header = Row::new(cols.iter().map(|&(c, _)| {
        let mut style = BOLD.add_modifier(Modifier::UNDERLINED);
        if c == sort_col {
            style = style.fg(Color::Cyan);
            if app.mode() == Mode::Sort {
                style = style.add_modifier(Modifier::REVERSED);
            }
        }
        let line = Line::styled(c.title(), style);
        Cell::from(if is_text(c) {
            line
        } else {
            line.alignment(Alignment::Right)
        })
    }));
    if rows.is_empty() {
        let msg = empty_message(app, total);
        let [h, m] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rest);
        f.render_widget(
            Table::new(
                Vec::<Row>::new(),
                cols.iter().map(|c| Constraint::Length(c.1)),
            )
            .header(header)
            .column_spacing(1),
            h,
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: false }), m);
        return;
    }
    let height = usize::from(rest.height.saturating_sub(1)).max(1);
    let sel = app.selected_index(&rows);
    let offset = sel.map_or(0, |s| s.saturating_sub(height - 1));
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, r)| {
            let selected = Some(i) == sel;
            let cells = cols.iter().map(|&(c, w)| {
                let line = Line::raw(cell_text(r, c, w, selected));
                let line = if c == Column::InPinned && r.faults_in_pinned > 0 {
                    line.style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
                } else {
                    line
                };
                Cell::from(if is_text(c) {
                    line
                } else {
                    line.alignment(Alignment::Right)
                })
            });
            let row = Row::new(cells);
            if selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    f.render_widget(
        Table::new(body, cols.iter().map(|c| Constraint::Length(c.1)))
            .header(header)
            .column_spacing(1),
        rest,
    );
}

fn empty_message(app: &App, total: usize) -> Vec<Line<'static>> {
    if total > 0 {
        return vec![
            Line::raw(""),
            Line::raw(format!(
                "  no process matches \"{}\" — Esc clears the filter",
                app.filter()
            )),
        ];
    }
    let why: &[&str] = match &app.info().source {
        SourceKind::Live { .. } => &[
            "IOPFs show up when an SVA device (uacce, idxd, AMD PPR) faults;",
            "pins when a process pins pages (io_uring, VFIO, RDMA, uacce_ctrl).",
        ],
        SourceKind::Replay { .. } => &["the recording has no IOPF or pin events up to here."],
    };
    let mut lines = vec![
        Line::raw(""),
        Line::styled("  no IOPFs or pins seen yet — still watching", BOLD),
        Line::raw(""),
    ];
    lines.extend(why.iter().map(|w| Line::raw(format!("  {w}"))));
    lines
}

// ---- drill-down -----------------------------------------------------------

fn detail(f: &mut Frame, area: Rect, app: &App) {
    let Some(r) = app.detail_row() else {
        let who = match app.detail() {
            Some(ProcId::Pid(p)) => format!("process {p}"),
            _ => "this process".into(),
        };
        f.render_widget(
            Paragraph::new(vec![
                Line::raw(""),
                Line::raw(format!(
                    "  {who} is no longer tracked (idle processes without pinned pages \
                     fold into [other]) — Esc goes back"
                )),
            ])
            .wrap(Wrap { trim: false }),
            area,
        );
        return;
    };
    let info = detail_info(r);
    let sections = Section::available(r);
    let tabs = if sections.len() > 1 { 1 } else { 0 };
    let [info_area, tab_area, body] = Layout::vertical([
        Constraint::Length(info.len() as u16),
        Constraint::Length(tabs),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(info), info_area);
    if tabs > 0 {
        f.render_widget(Paragraph::new(tab_line(&sections, app.section())), tab_area);
    }
    match app.section() {
        Section::Faults => faults_section(f, body, r),
        Section::Requests => requests_section(f, body, r),
        Section::Ioctls => ioctls_section(f, body, r),
    }
}

fn tab_line(sections: &[Section], current: Section) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, &s) in sections.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", DIM));
        }
        let text = format!(" {} ", s.title());
        spans.push(if s == current {
            Span::styled(text, BOLD.add_modifier(Modifier::REVERSED))
        } else {
            Span::raw(text)
        });
    }
    spans.push(Span::styled("  Tab: next section", DIM));
    Line::from(spans)
}

/// IOPF and pin call histograms, sparklines, fault regions, pinned ranges.
fn faults_section(f: &mut Frame, area: Rect, r: &ProcRow) {
    let d = &r.detail;
    // Histograms get the rows they need, lists (at least a title and
    // three rows) the rest.
    let room = usize::from(area.height.saturating_sub(2 + 4)).max(2);
    let needed = [&d.iopf_buckets, &d.pin_buckets]
        .iter()
        .map(|b| hist_rows(b, room - 1).len().min(room - 1))
        .max()
        .unwrap_or(0)
        .max(1)
        + 1;
    let [hists, sparks, lists] = Layout::vertical([
        Constraint::Length(needed as u16),
        Constraint::Length(2),
        Constraint::Min(0),
    ])
    .areas(area);
    side_by_side(
        f,
        hists,
        (
            format!("IOPF latency ({} faults)", fmt::count(d.iopf.count)),
            &d.iopf_buckets,
        ),
        pin_histogram(r),
    );
    sparklines(
        f,
        sparks,
        &[
            Spark::rate("IOPF/s", &d.history, Sample::iopf_per_s),
            Spark::lat("p99", &d.history, |x| x.iopf_p99_ns),
        ],
    );
    let [ll, lr] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(lists);
    f.render_widget(Paragraph::new(region_lines(r, ll.height)), ll);
    f.render_widget(Paragraph::new(range_lines(r, lr.height)), lr);
}

fn detail_info(r: &ProcRow) -> Vec<Line<'static>> {
    let d = &r.detail;
    let mut l1 = vec![Span::styled(
        match r.proc_id {
            ProcId::Pid(p) => format!("PID {p} {}", r.comm),
            _ => r.comm.clone(),
        },
        BOLD,
    )];
    if d.folded_processes > 0 {
        l1.push(Span::raw(format!(
            " ({} processes folded)",
            d.folded_processes
        )));
    }
    let devices = if r.devices.is_empty() {
        "none".to_string()
    } else {
        r.devices.join(", ")
    };
    l1.push(Span::raw(format!("{SEP}devices {devices}")));
    let pasids = if d.pasids.is_empty() {
        "none seen".to_string()
    } else {
        d.pasids
            .iter()
            .map(|p| {
                let mut s = p.pasid.to_string();
                if !p.devices.is_empty() {
                    let devs: Vec<&str> = p.devices.iter().map(|d| fmt::device(d)).collect();
                    s.push_str(&format!(" on {}", devs.join("+")));
                }
                if p.bound == Some(false) {
                    s.push_str(" (released)");
                }
                s
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    l1.push(Span::raw(format!("{SEP}PASIDs {pasids}")));
    let s = &r.iopf;
    let mut l2 = vec![Span::raw(format!(
        "IOPF {} ({}/s) p50 {} p99 {} p99.9 {} max {}{SEP}",
        fmt::count(s.count),
        fmt::rate(r.iopf_per_s),
        fmt::lat(s.p50),
        fmt::lat(s.p99),
        fmt::lat(s.p999),
        fmt::lat(s.max)
    ))];
    let inpin = format!("{} in pinned ranges", fmt::count(r.faults_in_pinned));
    l2.push(if r.faults_in_pinned > 0 {
        Span::styled(
            inpin,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::raw(inpin)
    });
    let lg = &d.ledger;
    let mut l3 = format!(
        "pin calls {} ({}/s",
        fmt::count(r.pin_calls_total),
        fmt::rate(r.pin_calls_per_s)
    );
    if lg.pin_errors > 0 {
        l3.push_str(&format!(", {} failed", fmt::count(lg.pin_errors)));
    }
    l3.push_str(&format!(
        "){SEP}pinned {} pages in {} ranges ({}){SEP}unpins {}",
        fmt::count(lg.pinned_pages),
        d.range_count,
        fmt::bytes(d.pinned_bytes),
        fmt::count(lg.unpin_calls)
    ));
    if r.ioctl_calls > 0 {
        l3.push_str(&format!(
            "{SEP}uacce_ctrl {} ({}/s",
            fmt::count(r.ioctl_calls),
            fmt::rate(r.ioctls_per_s)
        ));
        if r.ioctl_errors > 0 {
            l3.push_str(&format!(", {} failed", fmt::count(r.ioctl_errors)));
        }
        l3.push(')');
    }
    let mut lines = vec![Line::from(l1), Line::from(l2), Line::raw(l3)];
    if let Some(o) = &r.ops {
        let s = &o.latency;
        let mut l4 = vec![Span::raw(format!(
            "requests {} ({}/s) p99 {} p99.9 {}",
            fmt::count(s.count),
            fmt::rate(o.per_s),
            fmt::lat(s.p99),
            fmt::lat(s.p999),
        ))];
        if let Some(t) = o.tail_p99() {
            l4.push(Span::raw(SEP));
            l4.push(tail_span(
                format!("slowest 1 % {} faulted", percent(t.share())),
                t.share(),
            ));
        }
        lines.push(Line::from(l4));
    }
    lines
}

/// A faulted-tail text, yellow when most of the tail faulted.
fn tail_span(text: String, share: f64) -> Span<'static> {
    if share >= 0.5 {
        Span::styled(text, Style::new().fg(Color::Yellow))
    } else {
        Span::raw(text)
    }
}

/// Requests per op: two summary lines each and the histograms of its
/// faulted and clean requests on one grid; sparklines at the bottom.
fn requests_section(f: &mut Frame, area: Rect, r: &ProcRow) {
    let d = &r.detail;
    let [blocks, sparks] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(2)]).areas(area);
    sparklines(
        f,
        sparks,
        &[
            Spark::rate("OPS/s", &d.history, Sample::ops_per_s),
            Spark::lat("op p99", &d.history, |x| x.op_p99_ns),
        ],
    );
    // Each op needs its two lines, the histogram titles and a row.
    const MIN_BLOCK: u16 = 4;
    let fit = usize::from((blocks.height / MIN_BLOCK).max(1));
    let (shown, more) = if d.ops.len() > fit {
        (
            fit.saturating_sub(1).max(1),
            d.ops.len() - fit.saturating_sub(1).max(1),
        )
    } else {
        (d.ops.len(), 0)
    };
    let mut constraints: Vec<Constraint> = (0..shown).map(|_| Constraint::Fill(1)).collect();
    if more > 0 {
        constraints.push(Constraint::Length(1));
    }
    let areas = Layout::vertical(constraints).split(blocks);
    for (op, a) in d.ops.iter().zip(areas.iter()) {
        op_block(f, *a, op);
    }
    if more > 0 {
        if let Some(a) = areas.last() {
            f.render_widget(
                Paragraph::new(Line::styled(
                    format!("… {more} more ops with fewer requests"),
                    DIM,
                )),
                *a,
            );
        }
    }
}

/// The share of one tail: `k/n faulted (p%, CI lo–hi%)` (95 % Wilson;
/// `faulted ` is `what`).
fn tail_text(t: &crate::model::requests::TailShare, what: &str) -> String {
    let (lo, hi) = t.interval();
    format!(
        "{}/{} {what}({}, CI {:.0}–{:.0}%)",
        fmt::count(t.faulted),
        fmt::count(t.tail),
        percent(t.share()),
        lo * 100.0,
        hi * 100.0
    )
}

fn op_block(f: &mut Frame, area: Rect, op: &OpDetail) {
    let s = &op.stats.latency;
    let mut lines = vec![Line::from(vec![
        Span::styled(op.op.clone(), BOLD),
        Span::raw(format!(
            "{SEP}{} requests ({}/s) p50 {} p99 {} p99.9 {} max {}",
            fmt::count(s.count),
            fmt::rate(op.stats.per_s),
            fmt::lat(s.p50),
            fmt::lat(s.p99),
            fmt::lat(s.p999),
            fmt::lat(s.max)
        )),
    ])];
    let mut l2 = Vec::new();
    for (i, t) in op.stats.tails.iter().enumerate() {
        let text = if i == 0 {
            format!("slowest 1 %: {}", tail_text(t, "faulted "))
        } else {
            l2.push(Span::raw(SEP));
            format!("0.1 %: {}", tail_text(t, ""))
        };
        l2.push(tail_span(text, t.share()));
    }
    lines.push(Line::from(l2));
    let [text, hists] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(area);
    f.render_widget(Paragraph::new(lines), text);
    histogram_pair(
        f,
        hists,
        [
            (
                format!(
                    "with faults ({}, p99 {})",
                    fmt::count(op.faulted.count),
                    fmt::lat(op.faulted.p99)
                ),
                &op.faulted_buckets,
            ),
            (
                format!(
                    "without ({}, p99 {})",
                    fmt::count(op.clean.count),
                    fmt::lat(op.clean.p99)
                ),
                &op.clean_buckets,
            ),
        ],
    );
}

/// `uacce_ctrl`/mempinfd ioctls: counts, the ioctl and pin call
/// histograms, sparklines.
fn ioctls_section(f: &mut Frame, area: Rect, r: &ProcRow) {
    let d = &r.detail;
    let lg = &d.ledger;
    let [text, hists, sparks] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(2),
    ])
    .areas(area);
    let s = &d.ioctl;
    f.render_widget(
        Paragraph::new(vec![
            Line::raw(format!(
                "PIN {}{SEP}UNPIN {}{SEP}failed {}{SEP}pages pinned {}, released {}",
                fmt::count(lg.pin_ioctls),
                fmt::count(lg.unpin_ioctls),
                fmt::count(lg.ioctl_errors),
                fmt::count(lg.ioctl_pin_pages),
                fmt::count(lg.ioctl_unpin_pages),
            )),
            Line::raw(format!(
                "ioctl latency p50 {} p99 {} p99.9 {} max {}",
                fmt::lat(s.p50),
                fmt::lat(s.p99),
                fmt::lat(s.p999),
                fmt::lat(s.max)
            )),
        ]),
        text,
    );
    side_by_side(
        f,
        hists,
        (
            format!("uacce_ctrl ioctl latency ({} calls)", fmt::count(s.count)),
            &d.ioctl_buckets,
        ),
        pin_histogram(r),
    );
    sparklines(
        f,
        sparks,
        &[
            Spark::rate("CTL/s", &d.history, Sample::ioctls_per_s),
            Spark::rate("PIN/s", &d.history, Sample::pin_calls_per_s),
        ],
    );
}

/// The title and buckets of the pin call latency histogram.
fn pin_histogram(r: &ProcRow) -> (String, &[(u64, u64)]) {
    let d = &r.detail;
    (
        format!("pin call latency ({} calls)", fmt::count(d.pin.count)),
        &d.pin_buckets,
    )
}

/// Two histograms, each on its own grid, in the halves of `area`.
fn side_by_side(
    f: &mut Frame,
    area: Rect,
    left: (String, &[(u64, u64)]),
    right: (String, &[(u64, u64)]),
) {
    let [hl, hr] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    histogram(f, hl, &left.0, left.1);
    histogram(f, hr, &right.0, right.1);
}

/// Steps within a decade, finest first (log-linear: each decade split
/// linearly, then coarser when the rows do not fit).
const GRIDS: [&[u64]; 3] = [&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[1, 2, 5], &[1]];

/// Histogram rows `(from_ns, to_ns, count)` from HDR buckets
/// `(highest equivalent value, count)`, from the first to the last
/// non-empty row (empty ones between kept), at most `max_rows` rows when a
/// grid allows it.
pub fn hist_rows(buckets: &[(u64, u64)], max_rows: usize) -> Vec<(u64, u64, u64)> {
    if buckets.is_empty() {
        return Vec::new();
    }
    let mut best = Vec::new();
    for grid in GRIDS {
        let edges = grid_edges(grid);
        let mut rows: Vec<(u64, u64, u64)> = edges.windows(2).map(|w| (w[0], w[1], 0)).collect();
        for &(v, c) in buckets {
            let i = edges.partition_point(|&e| e <= v).saturating_sub(1);
            if let Some(r) = rows.get_mut(i.min(edges.len().saturating_sub(2))) {
                r.2 += c;
            }
        }
        let first = rows.iter().position(|r| r.2 > 0).unwrap_or(0);
        let last = rows.iter().rposition(|r| r.2 > 0).unwrap_or(0);
        best = rows[first..=last].to_vec();
        if best.len() <= max_rows {
            break;
        }
    }
    best
}

fn grid_edges(steps: &[u64]) -> Vec<u64> {
    let mut edges = vec![0];
    let mut decade = 1u64;
    loop {
        for &s in steps {
            match s.checked_mul(decade) {
                Some(e) if e > *edges.last().unwrap_or(&0) => edges.push(e),
                _ => {}
            }
        }
        match decade.checked_mul(10) {
            Some(d) if d <= 100_000_000_000_000 => decade = d,
            _ => break,
        }
    }
    edges.push(u64::MAX);
    edges
}

const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

fn bar(count: u64, max: u64, width: usize) -> String {
    if max == 0 || width == 0 {
        return String::new();
    }
    let eighths = ((count as u128 * width as u128 * 8) / max as u128) as usize;
    let eighths = if count > 0 { eighths.max(1) } else { 0 };
    let mut s = "█".repeat(eighths / 8);
    s.push_str(EIGHTHS[eighths % 8]);
    s
}

fn histogram(f: &mut Frame, area: Rect, title: &str, buckets: &[(u64, u64)]) {
    let mut lines = vec![Line::styled(title.to_string(), BOLD)];
    let rows = hist_rows(buckets, usize::from(area.height.saturating_sub(1)));
    if rows.is_empty() {
        lines.push(Line::styled("  none", DIM));
    }
    let skip = rows
        .len()
        .saturating_sub(usize::from(area.height.saturating_sub(1)));
    lines.extend(hist_lines(&rows[skip..], usize::from(area.width)));
    f.render_widget(Paragraph::new(lines), area);
}

/// One line per histogram row: its range, a bar scaled to the largest
/// row, the count.
fn hist_lines(rows: &[(u64, u64, u64)], width: usize) -> Vec<Line<'static>> {
    let label_w = 11;
    let count_w = 5;
    let bar_w = width.saturating_sub(label_w + count_w + 3);
    let max = rows.iter().map(|r| r.2).max().unwrap_or(0);
    rows.iter()
        .map(|&(lo, hi, c)| {
            let label = if hi == u64::MAX {
                format!("≥{}", fmt::grid(lo))
            } else {
                format!("{}-{}", fmt::grid(lo), fmt::grid(hi))
            };
            Line::from(vec![
                Span::styled(format!("{label:>label_w$} "), DIM),
                Span::styled(
                    format!("{:<bar_w$}", bar(c, max, bar_w)),
                    Style::new().fg(Color::Cyan),
                ),
                Span::raw(format!(" {:>count_w$}", fmt::count(c))),
            ])
        })
        .collect()
}

/// Two histograms side by side on one grid (the rows of their union), so
/// that the same row is the same latency on both sides; each side's bars
/// are scaled to its own largest row.
fn histogram_pair(f: &mut Frame, area: Rect, sides: [(String, &Vec<(u64, u64)>); 2]) {
    let union: Vec<(u64, u64)> = sides.iter().flat_map(|s| s.1.iter().copied()).collect();
    let room = usize::from(area.height.saturating_sub(1));
    let grid = hist_rows(&union, room);
    let skip = grid.len().saturating_sub(room);
    let halves =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).split(area);
    for ((title, buckets), half) in sides.iter().zip(halves.iter()) {
        let rows: Vec<(u64, u64, u64)> = grid
            .iter()
            .map(|&(lo, hi, _)| {
                let n = buckets
                    .iter()
                    .filter(|&&(v, _)| v >= lo && (v < hi || hi == u64::MAX))
                    .map(|&(_, c)| c)
                    .sum();
                (lo, hi, n)
            })
            .collect();
        let mut lines = vec![Line::styled(title.clone(), BOLD)];
        if buckets.is_empty() {
            lines.push(Line::styled("  none", DIM));
        } else {
            lines.extend(hist_lines(&rows[skip..], usize::from(half.width)));
        }
        f.render_widget(Paragraph::new(lines), *half);
    }
}

const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A one-line sparkline of `values` (oldest first), right-aligned in
/// `width` columns so that the right edge is "now"; any non-zero value
/// shows at least the lowest bar, zero shows nothing.
pub fn spark(values: &[u64], width: usize) -> String {
    let shown = &values[values.len().saturating_sub(width)..];
    let max = shown.iter().copied().max().unwrap_or(0);
    let mut out = " ".repeat(width - shown.len());
    for &v in shown {
        out.push(if v == 0 || max == 0 {
            ' '
        } else {
            let level = (u128::from(v) * 8).div_ceil(u128::from(max)).clamp(1, 8);
            LEVELS[level as usize - 1]
        });
    }
    out
}

/// One sparkline: a label, values oldest first, how to print one.
struct Spark {
    label: &'static str,
    values: Vec<u64>,
    show: fn(u64) -> String,
}

impl Spark {
    /// A rate per second of each interval.
    fn rate(label: &'static str, history: &[Sample], per_s: impl Fn(&Sample) -> f64) -> Spark {
        Spark {
            label,
            values: history.iter().map(|x| per_s(x).round() as u64).collect(),
            show: |v| fmt::rate(v as f64),
        }
    }

    /// A latency of each interval.
    fn lat(label: &'static str, history: &[Sample], ns: impl Fn(&Sample) -> u64) -> Spark {
        Spark {
            label,
            values: history.iter().map(ns).collect(),
            show: fmt::lat,
        }
    }
}

fn sparklines(f: &mut Frame, area: Rect, sparks: &[Spark]) {
    let label_w = 7usize;
    let tail_w = 22usize;
    let spark_w = usize::from(area.width).saturating_sub(label_w + tail_w + 2);
    let lines: Vec<Line> = sparks
        .iter()
        .map(|s| {
            let last = s.values.last().copied().unwrap_or(0);
            let max = s.values.iter().copied().max().unwrap_or(0);
            Line::from(vec![
                Span::styled(format!("{:<label_w$}", s.label), DIM),
                Span::styled(spark(&s.values, spark_w), Style::new().fg(Color::Magenta)),
                Span::raw(format!(
                    "  now {:>5} max {:>5}",
                    (s.show)(last),
                    (s.show)(max)
                )),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

fn region_lines(r: &ProcRow, height: u16) -> Vec<Line<'static>> {
    let d = &r.detail;
    let mut lines = vec![Line::styled(
        format!(
            "hottest fault regions ({} of {}){}",
            d.regions.len().min(usize::from(height.saturating_sub(1))),
            d.region_count,
            // Summary mode: only sampled groups have addresses.
            if d.faults_unplaced > 0 {
                format!(
                    ", sampled: {} faults unplaced",
                    fmt::count(d.faults_unplaced)
                )
            } else {
                String::new()
            }
        ),
        BOLD,
    )];
    if d.regions.is_empty() {
        lines.push(Line::styled("  none", DIM));
    }
    for g in d.regions.iter().take(usize::from(height.saturating_sub(1))) {
        let mut spans = vec![Span::raw(format!(
            "{:>14} {:>5} {:>6}",
            fmt::addr(g.start),
            fmt::bytes(g.end - g.start),
            fmt::count(g.faults)
        ))];
        if g.in_pinned > 0 {
            spans.push(Span::styled(
                format!(" {} pinned", fmt::count(g.in_pinned)),
                Style::new().fg(Color::Red),
            ));
        }
        lines.push(Line::from(spans));
    }
    lines
}

fn range_lines(r: &ProcRow, height: u16) -> Vec<Line<'static>> {
    let d = &r.detail;
    let room = usize::from(height.saturating_sub(1));
    let mut lines = vec![Line::styled(
        format!(
            "pinned ranges ({}, {})",
            d.range_count,
            fmt::bytes(d.pinned_bytes)
        ),
        BOLD,
    )];
    if d.ranges.is_empty() {
        let unknown = d.ledger.unknown_address_pages;
        lines.push(Line::styled(
            if unknown > 0 {
                format!("  {} pages at unknown addresses", fmt::count(unknown))
            } else {
                "  none".into()
            },
            DIM,
        ));
        return lines;
    }
    let more = d.range_count.saturating_sub(room);
    let take = if more > 0 {
        room.saturating_sub(1)
    } else {
        room
    };
    for &(s, e) in d.ranges.iter().take(take) {
        lines.push(Line::raw(format!(
            "{:>14} {:>5}",
            fmt::addr(s),
            fmt::bytes(e - s)
        )));
    }
    if more > 0 {
        lines.push(Line::styled(
            format!("  … {} more", d.range_count - take),
            DIM,
        ));
    }
    lines
}

// ---- help -----------------------------------------------------------------

fn help(f: &mut Frame, area: Rect) {
    let mut lines = vec![
        Line::styled("keys", BOLD),
        Line::raw("  ↑/↓ j/k  move        PgUp/PgDn g/G  page, first/last"),
        Line::raw("  ⏎ → l    details     Esc ← h        back (table: clear filter, quit)"),
        Line::raw("  s        sort mode: ←/→ or s column, r reverse, ⏎ done;  < > r direct"),
        Line::raw("  / f      filter (PID, COMM or device), ⏎ keep, Esc clear"),
        Line::raw("  p space  pause       + -            longer/shorter interval"),
        Line::raw("  d L      losses: every reason events were lost, with counts"),
        Line::raw("  ?        this help   q Ctrl-C       quit     Tab t  drill-down: next section"),
        Line::raw(""),
        Line::styled(
            "columns (CTL… once an ioctl is seen, OP… once a request)",
            BOLD,
        ),
    ];
    // Columns of one meaning share a line.
    let mut rows: Vec<(String, &str)> = Vec::new();
    for c in Column::ALL {
        match rows.last_mut() {
            Some((titles, meaning)) if *meaning == c.meaning() => {
                titles.push(' ');
                titles.push_str(c.title());
            }
            _ => rows.push((c.title().to_string(), c.meaning())),
        }
    }
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    for (titles, meaning) in rows {
        lines.push(Line::raw(format!("  {titles:<w$} {meaning}")));
    }
    overlay(f, area, lines, 84, " help — any key closes ");
}

/// The losses panel: every reason with its count and meaning, non-zero
/// reasons first (bold), then the zeros; what does not fit is summarised.
fn losses_panel(f: &mut Frame, area: Rect, app: &App) {
    let l = app.data().map_or_else(Ledger::new, |d| d.losses.clone());
    let mut lines = vec![Line::styled(
        format!(
            "{} lost in total{}",
            l.total(),
            if l.total() == 0 {
                " — nothing lost"
            } else {
                ""
            }
        ),
        BOLD,
    )];
    let row = |r: LossReason, n: u64| {
        let text = format!("{:>9} {:<28} {}", fmt::count(n), r.name(), r.describe());
        let style = match (n, r.is_loss()) {
            (0, _) => DIM,
            (_, true) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            (_, false) => Style::new(),
        };
        Line::styled(text, style)
    };
    let nonzero: Vec<_> = l.iter_nonzero().collect();
    let zero: Vec<_> = l.iter().filter(|&(_, n)| n == 0).collect();
    // Inside the borders.
    let room = usize::from(area.height.saturating_sub(2));
    for &(r, n) in &nonzero {
        lines.push(row(r, n));
    }
    let left = room.saturating_sub(lines.len());
    if zero.len() <= left {
        lines.extend(zero.iter().map(|&(r, n)| row(r, n)));
    } else if left > 0 {
        lines.extend(zero[..left - 1].iter().map(|&(r, n)| row(r, n)));
        lines.push(Line::styled(
            format!("  … and {} more reasons at 0", zero.len() - (left - 1)),
            DIM,
        ));
    }
    overlay(f, area, lines, 120, " losses by reason — any key closes ");
}

/// Draws `lines` in a bordered box titled `title`, centred in `area`, at
/// most `max_width` wide, over whatever was there.
fn overlay(f: &mut Frame, area: Rect, lines: Vec<Line<'static>>, max_width: u16, title: &str) {
    let w = area.width.min(max_width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        r,
    );
}
