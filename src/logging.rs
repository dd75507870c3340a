//! Logging: which events reach the log, from `POLLHOOK_LOG` and `RUST_LOG`.
//!
//! In: the two variables' values (either may be unset) and the command's default level. Out: the
//! [`tracing_subscriber::EnvFilter`] directives, as text.
//!
//! Invariant: a bare level in `POLLHOOK_LOG` (`debug`, `trace`, …) is pollhook's level only: the
//! dependencies (hyper, reqwest, h2, rustls, …) stay at `warn`, so `POLLHOOK_LOG=debug` shows
//! pollhook's work and not a thousand connection-pool lines a minute. `RUST_LOG` still says
//! otherwise for whatever it names, since its directives come last and a later directive for
//! the same target wins. `POLLHOOK_LOG` holding directives of its own (`pollhook=debug,hyper=info`)
//! is taken as written. Pure: no I/O.

use tracing_subscriber::filter::LevelFilter;

/// The filter directives for `POLLHOOK_LOG` = `pollhook_log`, `RUST_LOG` = `rust_log`, and
/// `default_level` when `POLLHOOK_LOG` is unset, empty or not a level.
pub fn directives(
    pollhook_log: Option<&str>,
    rust_log: Option<&str>,
    default_level: &str,
) -> String {
    let pollhook_log = pollhook_log.map(str::trim).filter(|v| !v.is_empty());
    let rust_log = rust_log.map(str::trim).filter(|v| !v.is_empty());
    let mut out = match pollhook_log {
        Some(given) if given.parse::<LevelFilter>().is_err() => given.to_owned(),
        Some(level) => format!("warn,pollhook={level}"),
        None => format!("warn,pollhook={default_level}"),
    };
    if let Some(rust_log) = rust_log {
        out.push(',');
        out.push_str(rust_log);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn a_bare_level_is_pollhooks_and_dependencies_stay_at_warn() {
        assert_eq!(
            directives(Some("debug"), None, "info"),
            "warn,pollhook=debug"
        );
        assert_eq!(directives(None, None, "info"), "warn,pollhook=info");
        assert_eq!(directives(Some(" "), None, "warn"), "warn,pollhook=warn");
        assert_eq!(
            directives(Some("debug"), Some("hyper=debug"), "info"),
            "warn,pollhook=debug,hyper=debug",
            "RUST_LOG says otherwise for what it names"
        );
        assert_eq!(
            directives(Some("pollhook=trace,reqwest=info"), None, "info"),
            "pollhook=trace,reqwest=info",
            "directives are taken as written"
        );
    }

    #[test]
    fn the_directives_filter_as_documented() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
        use tracing_subscriber::{EnvFilter, Registry};

        /// Counts the events that pass the filter.
        struct Count(Arc<AtomicUsize>);
        impl Layer<Registry> for Count {
            fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, Registry>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        // How many of: pollhook debug, hyper_util debug, hyper_util warn pass `directives`.
        let passing = |directives: &str| {
            let n = Arc::new(AtomicUsize::new(0));
            let subscriber = Registry::default()
                .with(Count(n.clone()))
                .with(EnvFilter::new(directives));
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "pollhook::deliver", "pollhook debug");
                tracing::debug!(target: "hyper_util::client", "dependency debug");
            });
            let dependency_warn = {
                let m = Arc::new(AtomicUsize::new(0));
                let subscriber = Registry::default()
                    .with(Count(m.clone()))
                    .with(EnvFilter::new(directives));
                tracing::subscriber::with_default(subscriber, || {
                    tracing::warn!(target: "hyper_util::client", "dependency warn");
                });
                m.load(Ordering::SeqCst)
            };
            (n.load(Ordering::SeqCst), dependency_warn)
        };
        assert_eq!(passing(&directives(Some("debug"), None, "info")), (1, 1));
        assert_eq!(
            passing(&directives(Some("debug"), Some("hyper_util=debug"), "info")),
            (2, 1)
        );
        assert_eq!(passing(&directives(None, None, "info")), (0, 1));
    }
}
