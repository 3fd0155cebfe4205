//! Progress bars for `map` and `imap` (cargo feature `progress`, with
//! indicatif): drawn on stderr when it is a terminal, silent otherwise, and
//! nothing at all without the feature.

#[cfg(feature = "progress")]
mod imp {
    use std::io::IsTerminal;

    use indicatif::{ProgressBar, ProgressStyle, WeakProgressBar};

    /// A progress bar, or nothing when stderr is not a terminal.
    #[derive(Debug)]
    pub(crate) struct Bar(Option<ProgressBar>);

    /// The bars being drawn: forwarded worker output prints above them.
    static DRAWN: std::sync::Mutex<Vec<WeakProgressBar>> = std::sync::Mutex::new(Vec::new());

    /// Runs `print` with the bars being drawn taken off the screen, so that
    /// what it prints goes above them.
    pub(crate) fn above_bars(print: impl FnOnce()) {
        let bar = {
            let mut drawn = DRAWN.lock().unwrap_or_else(|p| p.into_inner());
            drawn.retain(|b| b.upgrade().is_some_and(|b| !b.is_finished()));
            drawn.last().and_then(WeakProgressBar::upgrade)
        };
        match bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    impl Bar {
        fn make(bar: ProgressBar, template: &str) -> Bar {
            if !std::io::stderr().is_terminal() {
                return Bar(None);
            }
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            DRAWN.lock().unwrap_or_else(|p| p.into_inner()).push(bar.downgrade());
            Bar(Some(bar))
        }

        /// A bar for `len` items.
        pub(crate) fn new(len: u64) -> Bar {
            Bar::make(ProgressBar::new(len), "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, {eta})")
        }

        /// A counter for an input of unknown length.
        pub(crate) fn unbounded() -> Bar {
            Bar::make(ProgressBar::no_length(), "{spinner} [{elapsed_precise}] {pos} items ({per_sec})")
        }

        pub(crate) fn inc(&self, n: u64) {
            if let Some(bar) = &self.0 {
                bar.inc(n);
            }
        }

        pub(crate) fn finish(&self) {
            if let Some(bar) = &self.0 {
                bar.finish_and_clear();
            }
        }

        pub(crate) fn is_hidden(&self) -> bool {
            self.0.is_none()
        }
    }
}

#[cfg(not(feature = "progress"))]
mod imp {
    /// No progress bar: the `progress` feature is off.
    #[derive(Debug)]
    pub(crate) struct Bar;

    impl Bar {
        pub(crate) fn new(_len: u64) -> Bar {
            Bar
        }

        pub(crate) fn unbounded() -> Bar {
            Bar
        }

        pub(crate) fn inc(&self, _n: u64) {}

        pub(crate) fn finish(&self) {}

        pub(crate) fn is_hidden(&self) -> bool {
            true
        }
    }

    /// Without the feature there is no bar to print above.
    pub(crate) fn above_bars(print: impl FnOnce()) {
        print()
    }
}

pub(crate) use imp::{Bar, above_bars};
