//! The live progress board: per label set, how many jobs wait for others, are queued on
//! GitHub, are running on a runner, and are done; plus the runner jobs Slurm holds. On a
//! terminal it is redrawn in place; otherwise a plain line is printed every few seconds.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::demo::tracker::Tally;

/// What the board shows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub elapsed: Duration,
    pub per_set: BTreeMap<String, Tally>,
    pub total: Tally,
    pub slurm_pending: usize,
    pub slurm_running: usize,
    pub runners_registered: usize,
}

pub struct Board {
    tty: bool,
    drawn_lines: usize,
    last_plain: Option<Instant>,
    plain_every: Duration,
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

impl Board {
    pub fn new() -> Board {
        Board {
            tty: std::io::stdout().is_terminal(),
            drawn_lines: 0,
            last_plain: None,
            plain_every: Duration::from_secs(5),
        }
    }

    /// Shows `frame`: redrawn in place on a terminal, a line at most every 5 s otherwise.
    pub fn show(&mut self, frame: &Frame) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            let lines = render_table(frame);
            if self.drawn_lines > 0 {
                // Back to the board's first line, then overwrite every line of it.
                let _ = write!(out, "\x1b[{}A", self.drawn_lines);
            }
            for line in &lines {
                let _ = writeln!(out, "\x1b[2K{line}");
            }
            self.drawn_lines = lines.len();
        } else {
            let due = self
                .last_plain
                .is_none_or(|at| at.elapsed() >= self.plain_every);
            if due {
                let _ = writeln!(out, "{}", render_line(frame));
                self.last_plain = Some(Instant::now());
            }
        }
        let _ = out.flush();
    }

    /// Shows the final frame once more (always, also when not a terminal).
    pub fn finish(&mut self, frame: &Frame) {
        if self.tty {
            self.show(frame);
        } else {
            println!("{}", render_line(frame));
        }
    }
}

fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width).checked_div(total).unwrap_or(0).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// The board as lines of a table.
pub fn render_table(frame: &Frame) -> Vec<String> {
    let mut lines = vec![
        format!(
            "elapsed {:>6.1} s   Slurm runner jobs: {} pending, {} running   runners registered on GitHub: {}",
            frame.elapsed.as_secs_f64(),
            frame.slurm_pending,
            frame.slurm_running,
            frame.runners_registered
        ),
        format!(
            "  {:<22} {:>7} {:>7} {:>7} {:>7}   {:>9} {:>6} {:>9} {:>7}",
            "label set", "waiting", "queued", "running", "done", "succeeded", "failed", "cancelled", "skipped"
        ),
    ];
    let row = |name: &str, t: &Tally| {
        format!(
            "  {:<22} {:>7} {:>7} {:>7} {:>7}   {:>9} {:>6} {:>9} {:>7}",
            name,
            t.waiting,
            t.queued,
            t.in_progress,
            t.done(),
            t.succeeded,
            t.failed,
            t.cancelled,
            t.skipped
        )
    };
    for (set, tally) in &frame.per_set {
        lines.push(row(set, tally));
    }
    lines.push(row("all", &frame.total));
    lines.push(format!(
        "  {} {}/{} done",
        bar(frame.total.done(), frame.total.total(), 50),
        frame.total.done(),
        frame.total.total()
    ));
    lines
}

/// The board as one line, for logs and pipes.
pub fn render_line(frame: &Frame) -> String {
    let t = &frame.total;
    format!(
        "[{:>6.1} s] waiting {} queued {} running {} done {}/{} (succeeded {}, failed {}, cancelled {}, skipped {}); \
         Slurm runner jobs pending {} running {}; runners registered {}",
        frame.elapsed.as_secs_f64(),
        t.waiting,
        t.queued,
        t.in_progress,
        t.done(),
        t.total(),
        t.succeeded,
        t.failed,
        t.cancelled,
        t.skipped,
        frame.slurm_pending,
        frame.slurm_running,
        frame.runners_registered
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_label_set_and_a_total() {
        let mut frame = Frame::default();
        let cpu = Tally {
            queued: 2,
            succeeded: 3,
            ..Tally::default()
        };
        frame.per_set.insert("linux,x64".into(), cpu.clone());
        frame.total = cpu;
        let lines = render_table(&frame);
        assert_eq!(lines.len(), 5);
        assert!(lines[2].contains("linux,x64"));
        assert!(lines[4].contains("3/5 done"));
        assert!(render_line(&frame).contains("done 3/5"));
    }

    #[test]
    fn bar_is_bounded() {
        assert_eq!(bar(0, 0, 4), "[----]");
        assert_eq!(bar(2, 4, 4), "[##--]");
        assert_eq!(bar(9, 4, 4), "[####]");
    }
}
