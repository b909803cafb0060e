//! The timeline as a picture: a Gantt of the slots over time, one row per slot, each job's
//! cycle drawn in its stages' colours and the slot's idle time (freed → reused) in grey.
//! Plain SVG written by hand: no plotting dependency for one chart.

use std::fmt::Write as _;

use super::JobTimeline;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;
const ROW: f64 = 18.0;
const LEGEND: f64 = 60.0;

/// (label, colour, from, to) of each drawn stage.
type Piece = (
    &'static str,
    &'static str,
    fn(&JobTimeline) -> Option<(f64, f64)>,
);

const PIECES: &[Piece] = &[
    ("plugin: redeem", "#d62728", |j| {
        Some((j.slurm_start?, j.ticket_redeemed?))
    }),
    ("job script, runner start", "#ff7f0e", |j| {
        Some((j.ticket_redeemed?, j.runner_online?))
    }),
    ("GitHub assigns", "#bcbd22", |j| {
        Some((j.runner_online?, j.job_assigned?))
    }),
    ("the job", "#2ca02c", |j| {
        Some((j.job_assigned?, j.job_done?))
    }),
    ("runner exits", "#17becf", |j| {
        Some((j.job_done?, j.runner_exited?))
    }),
    ("epilog", "#9467bd", |j| {
        Some((j.runner_exited?, j.epilog_done?))
    }),
    ("slot idle (dispatcher, Slurm)", "#bbbbbb", |j| {
        Some((j.freed()?, j.slot_reused?))
    }),
];

/// The Gantt of `jobs` (those with a slot), titled `title`.
pub fn gantt(jobs: &[JobTimeline], title: &str) -> String {
    let placed: Vec<&JobTimeline> = jobs.iter().filter(|j| j.slot.is_some()).collect();
    let t0 = placed
        .iter()
        .filter_map(|j| j.queued.or(j.slurm_start))
        .fold(f64::INFINITY, f64::min);
    let t1 = placed
        .iter()
        .filter_map(|j| j.slot_reused.or(j.freed()).or(j.job_done))
        .fold(f64::NEG_INFINITY, f64::max);
    let slots = placed
        .iter()
        .filter_map(|j| j.slot)
        .max()
        .map_or(0, |s| s + 1);
    let height = TOP + ROW * slots as f64 + LEGEND;
    let span = if t1 > t0 { t1 - t0 } else { 1.0 };
    let x = |t: f64| LEFT + (t - t0) / span * (WIDTH - LEFT - 10.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="16" font-size="13">{}</text>"#,
        escape(title)
    );
    axis(&mut out, t0, span, slots, &x);
    for job in &placed {
        let y = TOP + ROW * job.slot.unwrap_or(0) as f64;
        for (_, colour, range) in PIECES {
            if let Some((from, to)) = range(job) {
                let w = (x(to) - x(from)).max(0.0);
                let _ = writeln!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{w:.2}" height="{:.1}" fill="{colour}"/>"#,
                    x(from),
                    y + 1.0,
                    ROW - 2.0
                );
            }
        }
    }
    legend(&mut out, TOP + ROW * slots as f64 + 20.0);
    out.push_str("</svg>\n");
    out
}

/// Slot labels and a tick every 10 s (every 60 s past 5 minutes).
fn axis(out: &mut String, t0: f64, span: f64, slots: usize, x: &dyn Fn(f64) -> f64) {
    for slot in 0..slots {
        let y = TOP + ROW * slot as f64 + ROW * 0.7;
        let _ = writeln!(out, r#"<text x="4" y="{y:.1}">slot {}</text>"#, slot + 1);
    }
    let bottom = TOP + ROW * slots as f64;
    let step = if span > 300.0 { 60.0 } else { 10.0 };
    let mut t = 0.0;
    while t <= span {
        let at = x(t0 + t);
        let _ = writeln!(
            out,
            r##"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{bottom:.1}" stroke="#eeeeee"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{t:.0} s</text>"##,
            bottom + 12.0
        );
        t += step;
    }
}

fn legend(out: &mut String, y: f64) {
    let mut at = LEFT;
    for (label, colour, _) in PIECES {
        let _ = writeln!(
            out,
            r#"<rect x="{at:.0}" y="{:.0}" width="12" height="12" fill="{colour}"/><text x="{:.0}" y="{:.0}">{label}</text>"#,
            y + 6.0,
            at + 16.0,
            y + 16.0
        );
        at += 16.0 + 7.0 * label.len() as f64 + 18.0;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_row_per_slot_and_every_stage() {
        let job = |slot, start: f64| JobTimeline {
            slot: Some(slot),
            slurm_start: Some(start),
            ticket_redeemed: Some(start + 0.1),
            runner_online: Some(start + 0.5),
            job_assigned: Some(start + 0.6),
            job_done: Some(start + 1.6),
            runner_exited: Some(start + 1.8),
            epilog_done: Some(start + 1.9),
            slot_reused: Some(start + 3.0),
            ..JobTimeline::default()
        };
        let svg = gantt(&[job(0, 0.0), job(1, 0.5)], "drain <1000>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("slot 2") && !svg.contains("slot 3"));
        assert!(svg.contains("drain &lt;1000&gt;"));
        // 7 stages × 2 jobs + 7 legend boxes.
        assert_eq!(svg.matches("<rect").count(), 21);
    }
}
