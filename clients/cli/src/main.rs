//! `psst`: the agent from the shell.
//!
//! Exit codes: 0 ok, 1 other error, 2 usage, 3 invalid argument, 4 not found, 5 permission denied,
//! 6 unavailable (agent or backend), 7 unauthenticated (the agent could not identify this process),
//! 8 failed precondition (the agent cannot do it as configured).

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use psst_client::{Client, Error, ErrorKind};

#[derive(Parser)]
#[command(
    name = "psst",
    version,
    about = "Read and write secrets through the local psst agent",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 invalid argument, 4 not found, 5 permission denied,\n\
                  6 unavailable, 7 unauthenticated, 8 failed precondition.\n\n\
                  References: BACKEND:NAME[?version=V|stage=S|label=L][#KEY], e.g. local:demo/db-password,\n\
                  sm:prod/db#password, ssm:/prod/db/password?version=3"
)]
struct Cli {
    /// The agent's socket.
    #[arg(long, global = true, env = "PSST_SOCKET", default_value = psst_client::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a secret's value to stdout, byte for byte.
    #[command(
        after_help = "Examples:\n  psst get local:demo/db-password\n  psst get 'sm:prod/db#password'\n  \
                            psst get 'ssm:/prod/db/password?version=3'"
    )]
    Get { reference: String },
    /// Write a new version of a secret, read from stdin (never from the command line, which
    /// other users can see in `ps`). The bytes are stored exactly as given.
    #[command(
        after_help = "Examples:\n  printf 'hunter2' | psst put local:demo/db-password\n  \
                            psst put local:demo/tls-key < key.pem"
    )]
    Put { reference: String },
    /// List the secrets under a prefix that you may list.
    #[command(after_help = "Examples:\n  psst ls local:\n  psst ls local:demo/")]
    Ls {
        #[arg(default_value = "local:")]
        prefix: String,
        /// Also print each secret's current version.
        #[arg(long, short)]
        long: bool,
    },
    /// Show how the agent sees this process and what the policy grants it.
    Whoami,
    /// Check that the agent is serving (exit 0) or not (exit 6).
    Health,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Agent(e)) => {
            eprintln!("psst: {e}");
            ExitCode::from(exit_code(&e))
        }
        Err(Failure::Local(message)) => {
            eprintln!("psst: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Agent(Error),
    Local(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Agent(e)
    }
}

fn exit_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::InvalidArgument => 3,
        ErrorKind::NotFound => 4,
        ErrorKind::PermissionDenied => 5,
        ErrorKind::Unavailable => 6,
        ErrorKind::Unauthenticated => 7,
        ErrorKind::FailedPrecondition => 8,
        _ => 1,
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut client = Client::connect(&cli.socket).await?;
    let mut stdout = std::io::stdout().lock();
    let write_err = |e: std::io::Error| Failure::Local(format!("writing to stdout: {e}"));
    match cli.command {
        Command::Get { reference } => {
            let secret = client.get(&reference).await?;
            stdout.write_all(secret.value()).map_err(write_err)?;
        }
        Command::Put { reference } => {
            let mut value = zeroize::Zeroizing::new(Vec::new());
            std::io::stdin()
                .read_to_end(&mut value)
                .map_err(|e| Failure::Local(format!("reading the value from stdin: {e}")))?;
            let written = client.put(&reference, &value).await?;
            writeln!(stdout, "{}", written.reference).map_err(write_err)?;
        }
        Command::Ls { prefix, long } => {
            for entry in client.list(&prefix).await? {
                if long {
                    writeln!(stdout, "{}\t{}", entry.reference, entry.version_id)
                } else {
                    writeln!(stdout, "{}", entry.reference)
                }
                .map_err(write_err)?;
            }
        }
        Command::Whoami => {
            let who = client.whoami().await?;
            let c = who.caller.unwrap_or_default();
            let named = |id: u32, name: &str| {
                if name.is_empty() {
                    id.to_string()
                } else {
                    format!("{id} ({name})")
                }
            };
            let mut lines = vec![
                format!("uid       {}", named(c.uid, &c.user)),
                format!("gid       {}", named(c.gid, &c.group)),
                format!("pid       {}", c.pid),
                format!("identity  {}", c.identity_source),
            ];
            for (label, value) in [
                ("exe", &c.executable),
                ("cgroup", &c.cgroup),
                ("container", &c.container_id),
                ("pod", &c.pod_uid),
                ("unit", &c.systemd_unit),
            ] {
                if !value.is_empty() {
                    lines.push(format!("{label:<9} {value}"));
                }
            }
            lines.push(format!(
                "rules     {}",
                if who.matched_rules.is_empty() {
                    "(none: everything is denied)".to_owned()
                } else {
                    who.matched_rules.join("; ")
                }
            ));
            for grant in &who.grants {
                lines.push(format!(
                    "{:<9} {}",
                    grant.operation,
                    grant.patterns.join(" ")
                ));
            }
            writeln!(stdout, "{}", lines.join("\n")).map_err(write_err)?;
        }
        Command::Health => {
            let status = client.health().await?;
            writeln!(stdout, "{}", status.as_str_name()).map_err(write_err)?;
            if status != psst_client::proto_health::ServingStatus::Serving {
                return Err(Failure::Agent(Error::new(
                    psst_client::Code::Unavailable,
                    "the agent is not serving",
                )));
            }
        }
    }
    stdout.flush().map_err(write_err)?;
    Ok(())
}
