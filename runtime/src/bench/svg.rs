//! The bench report as an SVG chart: one panel per metric, one bar per subject (the median),
//! a line from min to max and a tick at p95, and the conditions written underneath.
//!
//! Written by hand: a chart of a few bars is a few dozen elements, not worth a plotting
//! crate and its font stack.

use std::fmt::Write as _;

use super::report::{BenchReport, SubjectResult};
use super::stats::Summary;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 150.0;
const BAR: f64 = 18.0;
const GAP: f64 = 8.0;
const PANEL_TOP: f64 = 44.0;
const PANEL_BOTTOM: f64 = 30.0;

/// Colour per subject, by name (others cycle through the rest).
fn colour(name: &str, index: usize) -> &'static str {
    match name {
        "hull-process" => "#1f77b4",
        "hull-vm" => "#ff7f0e",
        "crun" => "#2ca02c",
        "runc" => "#9467bd",
        "qemu-microvm" => "#d62728",
        _ => ["#8c564b", "#e377c2", "#7f7f7f", "#17becf"][index % 4],
    }
}

/// Escapes text for XML content and attribute values.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

struct Panel<'a> {
    title: &'static str,
    unit: &'static str,
    rows: Vec<(&'a SubjectResult, Summary)>,
}

/// Renders the report as a standalone SVG document.
pub fn render(report: &BenchReport) -> String {
    type Get = fn(&SubjectResult) -> Option<Summary>;
    let metrics: [(&str, &str, Get); 5] = [
        ("Start latency: spawn to first output", "ms", |s| {
            s.start_latency_ms
        }),
        ("End-to-end run --rm", "ms", |s| s.end_to_end_ms),
        ("Teardown: last output to exit", "ms", |s| s.teardown_ms),
        (
            "Host memory per container (PSS, all its host processes)",
            "MiB",
            |s| {
                let kib = s.density.as_ref()?.pss_kib?;
                Some(Summary {
                    median: kib.median / 1024.0,
                    p95: kib.p95 / 1024.0,
                    min: kib.min / 1024.0,
                    max: kib.max / 1024.0,
                    mean: kib.mean / 1024.0,
                    n: kib.n,
                })
            },
        ),
        ("Density: time to start each container", "ms", |s| {
            s.density.as_ref()?.start_each_ms
        }),
    ];
    let panels: Vec<Panel> = metrics
        .into_iter()
        .map(|(title, unit, get)| Panel {
            title,
            unit,
            rows: report
                .subjects
                .iter()
                .filter_map(|s| Some((s, get(s)?)))
                .collect(),
        })
        .filter(|p| !p.rows.is_empty())
        .collect();
    let unavailable: Vec<&SubjectResult> =
        report.subjects.iter().filter(|s| !s.available).collect();

    let mut body = String::new();
    let mut y = 70.0;
    for panel in &panels {
        y = draw_panel(&mut body, panel, report, y);
    }
    if panels.is_empty() {
        let _ = writeln!(
            body,
            r#"<text x="20" y="{:.0}" class="note">No subject could be measured.</text>"#,
            y + 10.0
        );
        y += 30.0;
    }
    // Conditions and subjects that were not measured, underneath.
    let env = &report.environment;
    let mut notes = vec![
        format!(
            "Host {}: Linux {}, {}, {} CPUs, {} MiB; KVM {}; cgroup {}{}",
            env.hostname,
            env.kernel,
            env.cpu_model,
            env.cpus,
            env.memory_mib,
            super::report::wire_name(&env.kvm),
            super::report::wire_name(&env.cgroup_version),
            if env.nested_harness {
                "; inside the nested harness (emulated CPU)"
            } else {
                ""
            }
        ),
        format!(
            "Image {} `{}`; {} runs + {} warm-up per subject, interleaved; density {} containers; taken {}, load {:.2}",
            report.settings.image,
            report.settings.command.join(" "),
            report.settings.runs,
            report.settings.warmup,
            report.settings.density,
            env.started_at,
            env.load_average[0]
        ),
        "Bar = median, line = min to max, tick = p95.".to_string(),
    ];
    if let Some(outer) = &env.outer_host {
        notes.insert(
            0,
            format!("Ran inside the nested harness (QEMU/TCG, emulated AMD-V) on {outer}"),
        );
    }
    for s in &report.subjects {
        for note in &s.notes {
            notes.push(format!("{}: {note}", s.name));
        }
    }
    for s in &unavailable {
        let reason = s.unavailable_reason.as_deref().unwrap_or("unknown");
        notes.push(format!("{}: not measured: {reason}", s.name));
    }
    y += 10.0;
    for note in &notes {
        for (i, line) in wrap(note, NOTE_CHARS).iter().enumerate() {
            let indent = if i == 0 { 20.0 } else { 36.0 };
            let _ = writeln!(
                body,
                r#"<text x="{indent:.0}" y="{y:.0}" class="note">{}</text>"#,
                esc(line)
            );
            y += 16.0;
        }
    }
    let height = y + 10.0;

    let mut svg = String::new();
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        svg,
        "<style>.title{{font-size:20px;font-weight:bold}} .panel{{font-size:14px;font-weight:bold}} \
         .label{{font-size:12px}} .value{{font-size:11px;fill:#333}} .axis{{font-size:10px;fill:#666}} \
         .note{{font-size:11px;fill:#444}}</style>"
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="20" y="32" class="title">hull bench: what each isolation model costs {}</text>"#,
        esc(&match &env.outer_host {
            Some(outer) => format!(
                "inside the nested harness on {}",
                outer.split_whitespace().next().unwrap_or("?")
            ),
            None => format!("on {}", env.hostname),
        })
    );
    // Legend.
    let mut x = 20.0;
    for (i, s) in report.subjects.iter().enumerate() {
        let label = format!(
            "{} ({}){}",
            s.name,
            s.isolation,
            if s.available { "" } else { ": not measured" }
        );
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.0}" y="44" width="12" height="12" fill="{}" opacity="{}"/><text x="{:.0}" y="54" class="label">{}</text>"#,
            colour(&s.name, i),
            if s.available { "1" } else { "0.3" },
            x + 16.0,
            esc(&label)
        );
        x += 24.0 + label.len() as f64 * 6.6;
    }
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

/// Draws one panel starting at `top`; returns the y below it.
fn draw_panel(out: &mut String, panel: &Panel, report: &BenchReport, top: f64) -> f64 {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = panel
        .rows
        .iter()
        .map(|(_, s)| s.max)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let step = nice_step(max, 5.0);
    let axis_max = (max / step).ceil() * step;
    let scale = |v: f64| LEFT + v / axis_max * plot_w;
    let rows_h = panel.rows.len() as f64 * (BAR + GAP);
    let _ = writeln!(
        out,
        r#"<text x="20" y="{:.0}" class="panel">{} ({})</text>"#,
        top + 20.0,
        esc(panel.title),
        panel.unit
    );
    let plot_top = top + PANEL_TOP - 14.0;
    // Grid and axis labels.
    let mut tick = 0.0;
    while tick <= axis_max * 1.0001 {
        let x = scale(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{plot_top:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text>"##,
            plot_top + rows_h,
            plot_top + rows_h + 12.0,
            tick_label(tick, step)
        );
        tick += step;
    }
    for (i, (subject, s)) in panel.rows.iter().enumerate() {
        let y = plot_top + i as f64 * (BAR + GAP) + GAP / 2.0;
        let index = report
            .subjects
            .iter()
            .position(|x| x.name == subject.name)
            .unwrap_or(i);
        let c = colour(&subject.name, index);
        let mid = y + BAR / 2.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.0}" y="{:.1}" class="label" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            mid + 4.0,
            esc(&format!("{} ({})", subject.name, subject.isolation))
        );
        let _ = writeln!(
            out,
            r#"<rect x="{LEFT:.1}" y="{y:.1}" width="{:.1}" height="{BAR:.0}" fill="{c}" opacity="0.85"/>"#,
            (scale(s.median) - LEFT).max(1.0)
        );
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="#222" stroke-width="1.5"/>"##,
            scale(s.min),
            scale(s.max)
        );
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#222" stroke-width="2"/>"##,
            scale(s.p95),
            y + 2.0,
            y + BAR - 2.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" class="value">{} {} (p95 {})</text>"#,
            scale(s.max).max(scale(s.median)) + 6.0,
            mid + 4.0,
            trim_number(s.median),
            panel.unit,
            trim_number(s.p95)
        );
    }
    plot_top + rows_h + PANEL_BOTTOM
}

/// Characters per line of a note (11px text across the chart's width).
const NOTE_CHARS: usize = 150;

/// Splits `text` into lines of at most `width` characters at spaces (at most 6 lines; a
/// longer note is cut with an ellipsis, it came from an error message and the JSON has it).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > 6 {
        lines.truncate(6);
        lines[5].push_str(" ...");
    }
    lines
}

/// An axis label with no more decimals than the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

/// A number with a sensible amount of decimals for a label.
fn trim_number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn notes_wrap_at_spaces() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("", 5), Vec::<String>::new());
        assert_eq!(wrap(&"w ".repeat(100), 3).len(), 6);
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_step(0.3, 5.0), 0.1);
    }
}
