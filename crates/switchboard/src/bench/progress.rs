//! Progress while a benchmark runs: an indicatif bar on stderr when stderr is a terminal,
//! nothing at all otherwise (a log or a pipe gets only the final report).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Limit;
use super::report::thousands;

/// How often the bar is redrawn; more often only costs CPU the server could use.
pub(super) const REFRESH: Duration = Duration::from_millis(200);

/// A progress bar, or nothing when stderr is not a terminal.
#[derive(Clone)]
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    /// What the bar's position counts: messages, or milliseconds of a timed run.
    timed: bool,
}

impl Progress {
    /// A bar for a run bounded by `limit`: messages published out of the count, or time
    /// elapsed out of the duration.
    pub fn for_limit(label: &str, limit: Limit) -> Progress {
        match limit {
            Limit::Count(count) => Progress::new(label, count, "msgs", false),
            Limit::Duration(duration) => {
                let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                Progress::new(label, millis, "ms", true)
            }
        }
    }

    /// A bar counting `total` things called `unit`.
    pub fn counting(label: &str, total: u64, unit: &str) -> Progress {
        Progress::new(label, total, unit, false)
    }

    fn new(label: &str, total: u64, unit: &str, timed: bool) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None, timed };
        }
        let template =
            format!("{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{msg}}");
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(label.to_owned());
        Progress {
            bar: Some(bar),
            timed,
        }
    }

    pub fn is_visible(&self) -> bool {
        self.bar.is_some()
    }

    /// Whether the position is time (milliseconds) rather than a count.
    pub fn is_timed(&self) -> bool {
        self.timed
    }

    /// Moves the bar and shows the running counts beside it.
    pub fn show(&self, position: u64, counts: &[(&str, u64)]) {
        if let Some(bar) = &self.bar {
            let text: Vec<String> = counts
                .iter()
                .map(|(name, value)| format!("{name} {}", thousands(*value)))
                .collect();
            bar.set_position(position);
            bar.set_message(text.join(", "));
        }
    }

    /// Removes the bar, so that the report starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
