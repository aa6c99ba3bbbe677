//! `psst exec`: run a program with secrets in its environment.
//!
//! Every secret is fetched in one `BatchGetSecrets` call before the program starts; if any fails,
//! the program does not start. psst then stays the program's parent instead of exec(2)-ing it:
//! it forwards the signals a supervisor sends (`kill`, `docker stop`, systemd) and exits with the
//! program's status. Staying in between is also what a later `--restart-on-rotate` needs: the
//! supervision loop in [`supervise`] is where a secret-rotation stream would join the signals.

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    fmt,
    os::unix::{ffi::OsStrExt, process::ExitStatusExt},
    path::PathBuf,
};

use anyhow::Context;
use clap::{ArgGroup, Args};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::signal::unix::{signal, SignalKind};

use crate::{agent_exit_code, exit, InvalidInput};

#[derive(Args)]
#[command(
    about = "Run a program with secrets in its environment",
    long_about = "Run a program with secrets in its environment.\n\n\
                  Fetches every secret in one call first; if any cannot be read, the program is not \
                  started and psst exits with that failure's code. Otherwise psst starts the program, \
                  forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to it, and exits with its exit code \
                  (128+N when signal N ended it; 126/127 when it cannot be run or found).",
    group(ArgGroup::new("secrets").required(true).multiple(true).args(["env", "env_file"])),
    after_help = "The env file has one NAME=REF per line; blank lines and lines starting with # are \
                  skipped. There are no inline comments, since # selects a JSON key in a reference. \
                  --env entries override the file's entries of the same NAME.\n\n\
                  Examples:\n  \
                  psst exec --env DB_PASSWORD=local:demo/db-password -- ./server --port 8080\n  \
                  psst exec --env-file app.secrets -- ./server\n  \
                  psst exec --pristine --env TOKEN='sm:prod/api#token' -- env"
)]
pub struct ExecArgs {
    /// Put secret REF into environment variable NAME. Repeatable.
    #[arg(long = "env", value_name = "NAME=REF", value_parser = parse_mapping)]
    env: Vec<EnvMapping>,
    /// Read NAME=REF lines from FILE.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    env_file: Option<PathBuf>,
    /// Start the program with only the secrets in its environment, nothing inherited. The program
    /// is still looked up in psst's own PATH.
    #[arg(long)]
    pristine: bool,
    /// When a referenced secret gets a new version, stop the program (SIGTERM, then SIGKILL
    /// after --restart-grace), fetch the secrets again and start it again with them, as Vault
    /// Agent's process supervisor does. psst exits when the program exits on its own.
    #[arg(long)]
    restart_on_rotate: bool,
    /// How long a program being restarted gets to exit after SIGTERM.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    restart_grace: std::time::Duration,
    /// The program and its arguments (put them after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD",
        value_hint = clap::ValueHint::CommandWithArguments
    )]
    command: Vec<OsString>,
}

/// One `NAME=REF`: environment variable NAME gets the value of secret REF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvMapping {
    pub name: String,
    pub reference: String,
}

impl fmt::Display for EnvMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.reference)
    }
}

/// Parses `NAME=REF`. The reference itself is the agent's to judge; the name must be a portable
/// environment variable name (letters, digits, `_`, not starting with a digit), since anything
/// else is likely a typo that a shell could not read back.
pub fn parse_mapping(text: &str) -> Result<EnvMapping, String> {
    let (name, reference) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=REF"))?;
    let (name, reference) = (name.trim(), reference.trim());
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!(
            "'{name}' is not an environment variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    if reference.is_empty() {
        return Err(format!("{name} has no reference after '='"));
    }
    Ok(EnvMapping {
        name: name.to_owned(),
        reference: reference.to_owned(),
    })
}

/// Parses an env file: `NAME=REF` lines, blank lines and `#` comment lines. Reports every bad
/// line at once, as `LINE: problem`.
pub fn parse_env_file(text: &str) -> Result<Vec<EnvMapping>, Vec<String>> {
    let mut mappings: Vec<EnvMapping> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_mapping(line) {
            Ok(mapping) => match first_line.get(&mapping.name) {
                Some(first) => problems.push(format!(
                    "line {number}: {} is already set on line {first}",
                    mapping.name
                )),
                None => {
                    first_line.insert(mapping.name.clone(), number);
                    mappings.push(mapping);
                }
            },
            Err(problem) => problems.push(format!("line {number}: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(mappings)
    } else {
        Err(problems)
    }
}

/// The file's mappings, then the command line's: a NAME given with `--env` replaces the file's.
/// The same NAME twice on the command line is a mistake, not an override.
pub fn merge(
    from_file: Vec<EnvMapping>,
    from_args: Vec<EnvMapping>,
) -> Result<Vec<EnvMapping>, String> {
    let mut merged = from_file;
    let mut seen_in_args = Vec::new();
    for mapping in from_args {
        if seen_in_args.contains(&mapping.name) {
            return Err(format!("--env {} is given twice", mapping.name));
        }
        seen_in_args.push(mapping.name.clone());
        merged.retain(|m| m.name != mapping.name);
        merged.push(mapping);
    }
    Ok(merged)
}

/// Some secrets could not be fetched, so the program was not started.
#[derive(Debug)]
pub struct FetchFailed {
    failures: Vec<(EnvMapping, psst_client::Error)>,
}

impl FetchFailed {
    /// The code of the first failure, so `psst exec` exits as `psst get` would have.
    pub fn exit_code(&self) -> u8 {
        self.failures
            .first()
            .map_or(exit::OTHER, |(_, e)| agent_exit_code(e))
    }
}

impl fmt::Display for FetchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not starting the program: ")?;
        match self.failures.as_slice() {
            [(mapping, e)] => write!(f, "{mapping}: {e}"),
            failures => {
                write!(f, "{} secrets could not be read", failures.len())?;
                for (mapping, e) in failures {
                    write!(f, "\n  {mapping}: {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FetchFailed {}

pub async fn run(agent: &psst_client::ConnectOptions, args: ExecArgs) -> anyhow::Result<u8> {
    let from_file = match &args.env_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mappings = parse_env_file(&text).map_err(|problems| {
                InvalidInput(format!("{}: {}", path.display(), problems.join("; ")))
            })?;
            if mappings.is_empty() {
                return Err(
                    InvalidInput(format!("{} has no NAME=REF lines", path.display())).into(),
                );
            }
            mappings
        }
        None => Vec::new(),
    };
    let mappings = merge(from_file, args.env).map_err(InvalidInput)?;
    let environment = fetch(agent, &mappings).await?;

    let (program, program_args) = args
        .command
        .split_first()
        .expect("clap requires the command");
    let executable = if args.pristine {
        resolve_in_path(program, std::env::var_os("PATH").as_deref())
    } else {
        PathBuf::from(program)
    };
    let command = |environment: Vec<(String, OsString)>| {
        let mut command = tokio::process::Command::new(&executable);
        command.args(program_args);
        if args.pristine {
            command.env_clear();
        }
        command.envs(environment);
        command
    };
    if !args.restart_on_rotate {
        return match supervise(command(environment), program, None).await? {
            Supervised::Exited(code) => Ok(code),
            Supervised::Rotated => unreachable!("no watch without --restart-on-rotate"),
        };
    }
    // Follow the secrets from before the program starts, so no rotation slips in between.
    let references: Vec<&str> = mappings.iter().map(|m| m.reference.as_str()).collect();
    let mut watch = psst_client::Client::connect_with(agent)
        .await?
        .watch(&references);
    let mut environment = environment;
    loop {
        match supervise(
            command(environment),
            program,
            Some((&mut watch, args.restart_grace)),
        )
        .await?
        {
            Supervised::Exited(code) => return Ok(code),
            Supervised::Rotated => {
                eprintln!(
                    "psst: a secret rotated; restarting {}",
                    program.to_string_lossy()
                );
                environment = fetch(agent, &mappings).await?;
            }
        }
    }
}

/// How a supervised run ended (the `Rotated` case only with --restart-on-rotate).
enum Supervised {
    Exited(u8),
    /// A secret rotated: the program was stopped to be started again.
    Rotated,
}

/// Fetches every secret in one call; all or nothing.
async fn fetch(
    agent: &psst_client::ConnectOptions,
    mappings: &[EnvMapping],
) -> anyhow::Result<Vec<(String, OsString)>> {
    let references: Vec<&str> = mappings.iter().map(|m| m.reference.as_str()).collect();
    let results = psst_client::Client::connect_with(agent)
        .await?
        .batch_get(&references)
        .await?;
    let mut environment = Vec::with_capacity(mappings.len());
    let mut failures = Vec::new();
    for (mapping, result) in mappings.iter().zip(results) {
        match result {
            // An environment entry is a C string: a NUL would silently cut the value short.
            Ok(secret) if secret.value().contains(&0) => failures.push((
                mapping.clone(),
                psst_client::Error::new(
                    psst_client::Code::InvalidArgument,
                    "the value contains a NUL byte, which an environment variable cannot hold",
                ),
            )),
            Ok(secret) => environment.push((
                mapping.name.clone(),
                OsStr::from_bytes(secret.value()).to_owned(),
            )),
            Err(e) => failures.push((mapping.clone(), e)),
        }
    }
    if failures.is_empty() {
        Ok(environment)
    } else {
        Err(FetchFailed { failures }.into())
    }
}

/// Starts the program, forwards signals until it exits, and answers its exit code.
///
/// Forwarded: SIGINT, SIGTERM, SIGHUP and SIGQUIT, what a supervisor or a terminal sends to stop
/// or reload a process. When they come from a terminal (Ctrl-C), the program, being in the same
/// process group, also gets them directly; the two deliveries usually coalesce. A signal psst was
/// started with ignored (`nohup` ignores SIGHUP; a non-interactive shell ignores SIGINT and
/// SIGQUIT for its background jobs) is left alone, so the program inherits it ignored, as it
/// would without psst in between.
async fn supervise(
    mut command: tokio::process::Command,
    program: &OsStr,
    mut restart: Option<(&mut psst_client::Watch, std::time::Duration)>,
) -> anyhow::Result<Supervised> {
    let ignored = ignored_signals();
    // Listen before starting the program: a signal in between would otherwise end psst with its
    // default action and leave the program running without its supervisor.
    let listen = |kind: SignalKind, number: Signal| -> anyhow::Result<_> {
        if ignored.contains(&number) {
            return Ok(None);
        }
        Ok(Some(
            signal(kind).context("listening for signals to forward")?,
        ))
    };
    let mut sigint = listen(SignalKind::interrupt(), Signal::SIGINT)?;
    let mut sigterm = listen(SignalKind::terminate(), Signal::SIGTERM)?;
    let mut sighup = listen(SignalKind::hangup(), Signal::SIGHUP)?;
    let mut sigquit = listen(SignalKind::quit(), Signal::SIGQUIT)?;
    let mut child = match command.spawn() {
        Ok(child) => child,
        // The shell's codes: 127 not found, 126 found but not runnable.
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => exit::OTHER,
            };
            eprintln!("psst: cannot run {}: {e}", program.to_string_lossy());
            return Ok(Supervised::Exited(code));
        }
    };
    drop(command);
    let pid = Pid::from_raw(child.id().expect("a child that was not waited for") as i32);
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status.context("waiting for the program")?,
            Some(()) = next(&mut sigint) => Signal::SIGINT,
            Some(()) = next(&mut sigterm) => Signal::SIGTERM,
            Some(()) = next(&mut sighup) => Signal::SIGHUP,
            Some(()) = next(&mut sigquit) => Signal::SIGQUIT,
            rotated = rotation(&mut restart) => {
                rotated?;
                let grace = restart.as_ref().map(|(_, grace)| *grace).unwrap_or_default();
                let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return Ok(Supervised::Rotated);
            }
        };
        // The child is not reaped until `wait` returns, so its pid cannot have been reused; it
        // may have exited already (ESRCH), which the next `wait` reports.
        let _ = nix::sys::signal::kill(pid, forward);
    };
    Ok(Supervised::Exited(match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128 + signal as u8,
        (None, None) => exit::OTHER,
    }))
}

/// Resolves when a watched secret gets a new version or is deleted (the first, current-state
/// events are not changes); never without --restart-on-rotate. A watch that fails is an error.
async fn rotation(
    restart: &mut Option<(&mut psst_client::Watch, std::time::Duration)>,
) -> anyhow::Result<()> {
    use psst_client::proto::watch_event::Kind;
    let Some((watch, _)) = restart else {
        return std::future::pending().await;
    };
    loop {
        match watch.next().await {
            Some(Ok(event)) if matches!(event.kind, Kind::NewVersion | Kind::Deleted) => {
                return Ok(())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(anyhow::Error::new(e).context("watching the secrets for rotation"))
            }
            None => return std::future::pending().await,
        }
    }
}

/// The next delivery of a signal psst listens for; never, for one it leaves alone.
async fn next(listener: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match listener {
        Some(listener) => listener.recv().await,
        None => std::future::pending().await,
    }
}

/// The signals this process was started with ignored, from the kernel's own account
/// (`SigIgn` in /proc/self/status); none if that cannot be read.
fn ignored_signals() -> Vec<Signal> {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| parse_sig_ign(&status))
        .unwrap_or_default()
}

/// `SigIgn:` is a hex mask in which bit N-1 stands for signal N.
fn parse_sig_ign(status: &str) -> Vec<Signal> {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    Signal::iterator()
        .filter(|&signal| mask & (1 << (signal as i32 - 1)) != 0)
        .collect()
}

/// Finds a bare program name in `path` the way a shell would. Needed with `--pristine`: the
/// child's environment has no PATH, and the program should still be found where the user's
/// shell finds it.
fn resolve_in_path(program: &OsStr, path: Option<&OsStr>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') {
        return PathBuf::from(program);
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(name: &str, reference: &str) -> EnvMapping {
        EnvMapping {
            name: name.into(),
            reference: reference.into(),
        }
    }

    #[test]
    fn a_mapping_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_mapping("DB=sm:prod/db?stage=AWSCURRENT#password"),
            Ok(mapping("DB", "sm:prod/db?stage=AWSCURRENT#password"))
        );
        assert_eq!(
            parse_mapping(" _TOKEN2 = local:a "),
            Ok(mapping("_TOKEN2", "local:a"))
        );
    }

    #[test]
    fn bad_mappings_say_what_is_wrong() {
        for (text, says) in [
            ("DB", "is not NAME=REF"),
            ("=local:a", "'' is not an environment variable name"),
            ("2DB=local:a", "'2DB' is not an environment variable name"),
            ("DB-PASS=local:a", "'DB-PASS' is not"),
            ("DB=", "DB has no reference"),
        ] {
            let err = parse_mapping(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn env_files_skip_comments_and_blank_lines_and_keep_key_selectors() {
        let text = "# database\n\nDB_USER=local:demo/db#user\n  DB_PASSWORD = local:demo/db#password\n\t# done\n";
        assert_eq!(
            parse_env_file(text),
            Ok(vec![
                mapping("DB_USER", "local:demo/db#user"),
                mapping("DB_PASSWORD", "local:demo/db#password"),
            ])
        );
        assert_eq!(parse_env_file("\n# nothing\n"), Ok(vec![]));
    }

    #[test]
    fn env_files_report_every_bad_line_with_its_number() {
        let text = "A=local:a\nnot a mapping\nA=local:b\n3X=local:c\n";
        assert_eq!(
            parse_env_file(text),
            Err(vec![
                "line 2: 'not a mapping' is not NAME=REF".to_owned(),
                "line 3: A is already set on line 1".to_owned(),
                "line 4: '3X' is not an environment variable name (letters, digits and _, not starting with a digit)".to_owned(),
            ])
        );
    }

    #[test]
    fn the_command_line_overrides_the_file_but_not_itself() {
        let merged = merge(
            vec![mapping("A", "local:file-a"), mapping("B", "local:file-b")],
            vec![mapping("A", "local:arg-a")],
        )
        .unwrap();
        assert_eq!(
            merged,
            vec![mapping("B", "local:file-b"), mapping("A", "local:arg-a")]
        );
        let twice = merge(
            vec![],
            vec![mapping("A", "local:x"), mapping("A", "local:y")],
        );
        assert_eq!(twice, Err("--env A is given twice".to_owned()));
    }

    #[test]
    fn programs_are_found_in_the_given_path_only_when_bare() {
        let sh = resolve_in_path(
            OsStr::new("sh"),
            Some(OsStr::new("/nonexistent:/bin:/usr/bin")),
        );
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(
            resolve_in_path(OsStr::new("./run"), Some(OsStr::new("/bin"))),
            PathBuf::from("./run")
        );
        assert_eq!(
            resolve_in_path(OsStr::new("no-such-program-psst"), Some(OsStr::new("/bin"))),
            PathBuf::from("no-such-program-psst")
        );
    }

    #[test]
    fn ignored_signals_are_read_from_the_kernels_mask() {
        let status =
            "Name:\tsh\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000007\nSigCgt:\t0\n";
        assert_eq!(
            parse_sig_ign(status),
            vec![Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT]
        );
        assert_eq!(parse_sig_ign("Name:\tsh\n"), vec![]);
    }

    #[test]
    fn one_failure_reads_as_one_line() {
        let failed = FetchFailed {
            failures: vec![(
                mapping("DB", "local:missing"),
                psst_client::Error::new(
                    psst_client::Code::NotFound,
                    "secret local:missing not found",
                ),
            )],
        };
        assert_eq!(
            failed.to_string(),
            "not starting the program: DB=local:missing: NOT_FOUND: secret local:missing not found"
        );
        assert_eq!(failed.exit_code(), exit::NOT_FOUND);
    }
}
