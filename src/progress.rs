//! The live progress bar of `bench` and `import` on a terminal (indicatif). It draws on stderr
//! and only when stderr is a terminal, so `--json` output and test runs stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` operations, or a spinner with a count when the run ends by time.
pub fn bar(label: &str, total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            "{msg:>8} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg:>8} [{elapsed_precise}] {spinner} {human_pos} {per_sec}",
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}
