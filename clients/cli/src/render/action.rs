//! What `psst render` does after a file changed, so the program reading it picks up the new
//! secret: run a command, signal a process named by a PID file, or `systemctl reload` a unit.

use std::{fmt, path::PathBuf, time::Duration};

use nix::{sys::signal::Signal, unistd::Pid};

/// How long a change command may run before it is killed and reported.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Run by `/bin/sh -c`.
    Command(String),
    Signal {
        signal: Signal,
        pid_file: PathBuf,
    },
    /// `systemctl reload UNIT`.
    ReloadUnit(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Command(command) => write!(f, "command `{command}`"),
            Action::Signal { signal, pid_file } => {
                write!(f, "{signal} to the process in {}", pid_file.display())
            }
            Action::ReloadUnit(unit) => write!(f, "systemctl reload {unit}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{action}: {problem}")]
    Failed { action: String, problem: String },
}

impl Action {
    /// Runs the action once; the error says what went wrong, for the log.
    pub async fn run(&self) -> Result<(), ActionError> {
        let fail = |problem: String| ActionError::Failed {
            action: self.to_string(),
            problem,
        };
        match self {
            Action::Command(command) => {
                run_command(tokio::process::Command::new("/bin/sh").args(["-c", command]))
                    .await
                    .map_err(fail)
            }
            Action::ReloadUnit(unit) => {
                run_command(tokio::process::Command::new("systemctl").args(["reload", "--", unit]))
                    .await
                    .map_err(fail)
            }
            Action::Signal { signal, pid_file } => {
                let text = std::fs::read_to_string(pid_file)
                    .map_err(|e| fail(format!("reading the PID file: {e}")))?;
                let pid: i32 = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|pid| *pid > 0)
                    .ok_or_else(|| fail("the PID file does not hold a process id".into()))?;
                nix::sys::signal::kill(Pid::from_raw(pid), *signal)
                    .map_err(|e| fail(format!("process {pid}: {e}")))
            }
        }
    }
}

async fn run_command(command: &mut tokio::process::Command) -> Result<(), String> {
    command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("cannot run it: {e}"))?;
    match tokio::time::timeout(DEFAULT_COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("it failed ({status})")),
        Ok(Err(e)) => Err(format!("waiting for it: {e}")),
        Err(_) => Err(format!(
            "still running after {}s: killed",
            DEFAULT_COMMAND_TIMEOUT.as_secs()
        )),
    }
}

/// Parses `HUP`, `SIGHUP` or `1`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("{number} is not a signal"));
    }
    let name = text.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("'{text}' is not a signal name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_usual_spelling() {
        for text in ["HUP", "SIGHUP", "hup", "1"] {
            assert_eq!(parse_signal(text).unwrap(), Signal::SIGHUP, "{text}");
        }
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[tokio::test]
    async fn commands_report_failure_and_signals_reach_the_pid_files_process() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        Action::Command(format!("echo x >> {}", marker.display()))
            .run()
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x\n");
        let err = Action::Command("exit 3".into()).run().await.unwrap_err();
        assert!(err.to_string().contains("exit status: 3"), "{err}");

        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid_file = dir.path().join("pid");
        std::fs::write(&pid_file, format!("{}\n", sleeper.id())).unwrap();
        Action::Signal {
            signal: Signal::SIGTERM,
            pid_file: pid_file.clone(),
        }
        .run()
        .await
        .unwrap();
        let status = sleeper.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        std::fs::write(&pid_file, "garbage").unwrap();
        let err = Action::Signal {
            signal: Signal::SIGHUP,
            pid_file,
        }
        .run()
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("does not hold a process id"),
            "{err}"
        );
    }
}
