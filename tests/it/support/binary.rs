//! The real `pollhook` binary: one-shot commands ([`command`], [`output`]) and a long-running
//! `pollhook run` ([`spawn_run`]) whose guard kills it on drop and exposes its log and its admin
//! address.
//!
//! In: arguments and a config file. Out: exit codes, stdout and stderr, and the log. Every child
//! starts with a clean environment, so nothing from the developer's shell leaks in, and nothing
//! outlives its test.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{PATIENCE, eventually};

/// Variables a developer's shell may set that would change what the binary does.
const FOREIGN_ENV: [&str; 10] = [
    "POLLHOOK_CONFIG",
    "POLLHOOK_STORAGE_PATH",
    "POLLHOOK_STORAGE_URL",
    "POLLHOOK_LISTEN",
    "POLLHOOK_ADMIN_TOKEN",
    "POLLHOOK_ADAPTERS_DIR",
    "POLLHOOK_ENDPOINT_SECRET",
    "POLLHOOK_VERIFY_SECRET",
    "POLLHOOK_LOG_FORMAT",
    "RUST_LOG",
];

/// The binary with a clean environment, logging warnings and worse, without colour.
pub fn std_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pollhook"));
    for var in FOREIGN_ENV {
        cmd.env_remove(var);
    }
    cmd.env("POLLHOOK_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// [`std_command`] for async tests, killed if the test drops it.
pub fn command() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(std_command());
    cmd.kill_on_drop(true);
    cmd
}

/// What one run of the binary printed, and how it exited.
#[derive(Debug)]
pub struct Out {
    /// The exit code; -1 if a signal ended it.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Asserts a zero exit, showing everything it printed if not.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }

    /// Standard output as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

/// Runs `cmd` to its end, for at most 30 s.
pub async fn output(mut cmd: tokio::process::Command) -> Out {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the command finishes within 30 s")
        .expect("the pollhook binary starts");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `pollhook run` child process, SIGKILLed when dropped so a failing test leaves nothing behind.
pub struct Child {
    process: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Whether the child's log contains `text` yet.
    pub fn logged(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(text))
    }

    /// What a test waits for, shown with the child's log if the wait times out.
    pub fn waiting_for<'a>(&'a self, what: &'a str) -> impl Display + 'a {
        WithLog(what, &self.log)
    }

    /// The address its admin API listens on, from its log line `Admin API listening. addr=…`:
    /// `listen = "127.0.0.1:0"` lets the kernel pick a free port, and the binary says which.
    pub async fn admin_addr(&self) -> SocketAddr {
        eventually(
            self.waiting_for("the admin API to listen"),
            PATIENCE,
            async || {
                let log = std::fs::read_to_string(&self.log).ok()?;
                log.lines()
                    .filter(|line| line.contains("Admin API listening."))
                    .find_map(|line| {
                        line.split_once("addr=")?
                            .1
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
            },
        )
        .await
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().expect("the child can be waited on")
    }

    /// Sends SIGTERM, as a container runtime does to stop it.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .expect("`kill` runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `patience` for the process to exit by itself; its exit status, or `None`.
    pub async fn exit_within(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `pollhook run --config FILE` logging at `info`, its log (stderr) appended to `log`,
/// so the restarts of one test can share one log.
pub fn spawn_run(config: &Path, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the log file opens");
    let process = std_command()
        .args(["run", "--config"])
        .arg(config)
        .env("POLLHOOK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("the pollhook binary starts");
    Child {
        process,
        log: log.to_owned(),
    }
}

/// Displays as `what`, then the log file as it is when displayed (a timeout's panic message).
struct WithLog<'a>(&'a str, &'a Path);

impl Display for WithLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = std::fs::read_to_string(self.1).unwrap_or_default();
        write!(f, "{}\n--- {} ---\n{log}", self.0, self.1.display())
    }
}

/// `pollhook endpoints add NAME --url http://127.0.0.1:9/x --signing standard-webhooks --config
/// CONFIG`, which must succeed: the `whsec_` secret it generated and printed.
pub async fn add_endpoint_with_generated_secret(config: &Path, name: &str) -> String {
    let mut cmd = command();
    cmd.args(["endpoints", "add", name, "--url", "http://127.0.0.1:9/x"])
        .args(["--signing", "standard-webhooks", "--config"])
        .arg(config);
    let add = output(cmd).await.ok();
    add.stdout
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret printed: {add:#?}"))
        .to_owned()
}
