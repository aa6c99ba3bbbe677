//! `psst`: the agent from the shell.
//!
//! Layout: `main.rs` is the command line and the one-call commands (`get`, `batch`, `ls`, `put`,
//! `whoami`, `health`); `output.rs` renders them as JSON; `exec.rs` runs a program with secrets in
//! its environment; `render/` writes secrets into files from templates and keeps them current; `call/` is the grpcurl-style caller that learns the API from the agent's
//! server reflection at run time. Exit codes are in [`exit`] and in `psst --help`.

mod call;
mod exec;
mod output;
mod render;

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use psst_client::{proto, Client, ErrorKind};
use serde_json::json;

/// The exit codes, one per kind of failure a script may want to tell apart.
pub mod exit {
    pub const OK: u8 = 0;
    pub const OTHER: u8 = 1;
    /// Also what clap exits with for a bad command line.
    pub const USAGE: u8 = 2;
    pub const INVALID: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const DENIED: u8 = 5;
    pub const UNAVAILABLE: u8 = 6;
    pub const UNAUTHENTICATED: u8 = 7;
    pub const FAILED_PRECONDITION: u8 = 8;
}

// Literal macros so the texts can be `concat!`-ed into clap's help attributes.
macro_rules! exit_codes_help {
    () => {
        "Exit codes:\n  \
         0  ok\n  \
         1  other error\n  \
         2  usage (bad command line)\n  \
         3  invalid argument (malformed reference, bad JSON, bad env file)\n  \
         4  not found (secret, method or symbol)\n  \
         5  permission denied by the agent's policy\n  \
         6  unavailable (agent not running, or its backend unreachable)\n  \
         7  unauthenticated (the agent could not identify this process)\n  \
         8  failed precondition (e.g. a backend that is not enabled, or the server on the\n     \
         socket does not run as the expected uid: see --expect-uid)\n\n\
         `psst exec` exits with the program's own code, 128+N when signal N ended it."
    };
}

macro_rules! references_help {
    () => {
        "References: BACKEND:NAME[?version=V|stage=S|label=L][#KEY], e.g. local:demo/db-password,\n\
         sm:prod/db#password, ssm:/prod/db/password?version=3"
    };
}

#[derive(Parser)]
#[command(
    name = "psst",
    version,
    about = "Read and write secrets through the local psst agent",
    after_help = concat!(
        "Examples:\n  \
         printf 'hunter2' | psst put local:demo/db-password\n  \
         psst get local:demo/db-password\n  \
         psst exec --env DB_PASSWORD=local:demo/db-password -- ./server\n  \
         psst call GetSecret '{\"reference\": \"local:demo/db-password\"}'\n\n",
        references_help!(),
        "\n\n",
        exit_codes_help!()
    )
)]
struct Cli {
    /// The agent's socket.
    #[arg(
        long,
        global = true,
        env = psst_client::SOCKET_ENV,
        default_value = psst_client::DEFAULT_SOCKET,
        value_hint = clap::ValueHint::FilePath
    )]
    socket: PathBuf,
    /// The uid the agent must run as: checked (SO_PEERCRED) before anything is sent, so a
    /// process that took the socket's place gets nothing. Default: the socket file's owner.
    #[arg(long, global = true, env = psst_client::EXPECTED_UID_ENV, value_name = "UID")]
    expect_uid: Option<u32>,
    /// How to print results (`call` always prints JSON).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Shorthand for `--output json`.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print a secret's value to stdout, byte for byte (with --json: the secret and its metadata).
    #[command(after_help = concat!(
        "With --json, one object: reference, value, value_encoding (\"utf8\" when the value is\n\
         text, else \"base64\" and value is base64), version_id, stages, created_at, and cache\n\
         (hit, stale, fetched_at, expires_at). Times are RFC 3339, null when unknown.\n\n\
         Examples:\n  \
         psst get local:demo/db-password\n  \
         psst get 'sm:prod/db#password'\n  \
         psst get 'ssm:/prod/db/password?version=3'\n  \
         psst get --json local:demo/db-password | jq -r .version_id\n\n",
        references_help!()
    ))]
    Get {
        reference: String,
    },
    /// Fetch several secrets in one call: one line per reference, in order.
    #[command(
        after_help = "Text output is one value per line; a value that has a line break in it \
                            cannot be shown that way and fails (use --json). A failed item leaves an \
                            empty line and is reported on stderr; the exit code is that of the first \
                            failed item, after every line is printed.\n\n\
                            With --json, one JSON object per line: the secret as `get --json` prints \
                            it, or {\"reference\": ..., \"error\": {\"code\": \"NOT_FOUND\", \
                            \"message\": ...}}.\n\n\
                            Examples:\n  \
                            psst batch local:demo/db-user local:demo/db-password\n  \
                            psst batch --json 'sm:prod/db#user' 'sm:prod/db#password'"
    )]
    Batch {
        #[arg(required = true, value_name = "REFERENCE")]
        references: Vec<String>,
    },
    /// List the secrets under a prefix that you may list (metadata only, never values).
    #[command(
        after_help = "With --json, one object per line: reference, version_id, updated_at.\n\n\
                            Examples:\n  psst ls\n  psst ls local:demo/ -l\n  psst ls --json local:"
    )]
    Ls {
        #[arg(default_value = "local:")]
        prefix: String,
        /// Also print each secret's current version.
        #[arg(long, short)]
        long: bool,
    },
    /// Write a new version of a secret, read from stdin or a file.
    ///
    /// Never from the command line, which other users can see in `ps`. The bytes are stored
    /// exactly as given.
    #[command(
        after_help = "Prints the new version's reference (with --json: reference, \
                            version_id, created_at).\n\n\
                            Examples:\n  \
                            printf 'hunter2' | psst put local:demo/db-password\n  \
                            psst put local:demo/tls-key --from-file key.pem\n  \
                            psst put local:demo/tls-key < key.pem"
    )]
    Put {
        reference: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
        from_file: Option<PathBuf>,
    },
    /// Show how the agent sees this process and what the policy grants it.
    #[command(after_help = "Examples:\n  psst whoami\n  psst whoami --json | jq .grants")]
    Whoami,
    /// Check that the agent is serving (exit 0) or not (exit 6).
    #[command(after_help = "Examples:\n  psst health && echo up\n  psst health --json")]
    Health,
    /// Follow secrets: print their current version, then one event per change, as JSON lines.
    ///
    /// Events: CURRENT, NEW_VERSION (with previous_version_id), PENDING_VERSION (a rotation has
    /// started), DELETED. Values are printed only with --with-values. When the agent restarts,
    /// the watch reconnects and resumes without repeating a version.
    #[command(after_help = "Examples:\n  \
                            psst watch 'sm:prod/db'\n  \
                            psst watch --with-values local:demo/db-password | jq -r .value")]
    Watch {
        #[arg(required = true, value_name = "REFERENCE")]
        references: Vec<String>,
        /// Include each new value (as `get --json` prints it) in the events.
        #[arg(long)]
        with_values: bool,
    },
    /// Rotate a secret: a generated value becomes its current version.
    ///
    /// For Secrets Manager secrets with a rotation Lambda, Secrets Manager's own rotation is
    /// started instead. Prints the new version's reference.
    #[command(after_help = "Examples:\n  \
                            psst rotate local:demo/db-password\n  \
                            psst rotate sm:prod/db --json-key password --length 40\n  \
                            psst rotate ssm:/prod/api-key --exclude-punctuation")]
    Rotate {
        /// The secret to give a new version, e.g. local:demo/db-password.
        reference: String,
        /// Regenerate only this key of a JSON value, keeping the others.
        #[arg(long, value_name = "KEY")]
        json_key: Option<String>,
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    /// Generate a random value from the agent's CSPRNG (nothing is stored) and print it.
    #[command(after_help = "Examples:\n  \
                            psst gen\n  \
                            psst gen --length 20 --exclude-punctuation --exclude-chars 0O1lI")]
    Gen {
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    Exec(exec::ExecArgs),
    Render(render::RenderArgs),
    Call(call::CallArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
                            psst completions bash > /etc/bash_completion.d/psst\n  \
                            psst completions zsh > \"${fpath[1]}/_psst\"\n  \
                            psst completions fish > ~/.config/fish/completions/psst.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = "Examples:\n  \
                            psst man | man -l -\n  \
                            psst man --dir /usr/local/share/man/man1")]
    Man {
        /// Write psst.1 and psst-COMMAND.1 for every command into DIR instead.
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        dir: Option<PathBuf>,
    },
}

/// How to generate a value (rotate, gen).
#[derive(clap::Args, Debug, Clone, Default)]
struct GeneratorArgs {
    /// Length in characters (default 32).
    #[arg(long)]
    length: Option<u32>,
    /// Use no lowercase letters (a-z).
    #[arg(long)]
    exclude_lowercase: bool,
    /// Use no uppercase letters (A-Z).
    #[arg(long)]
    exclude_uppercase: bool,
    /// Use no digits (0-9).
    #[arg(long)]
    exclude_numbers: bool,
    /// Use no punctuation (the ASCII symbols !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~).
    #[arg(long)]
    exclude_punctuation: bool,
    /// Allow the space character too.
    #[arg(long)]
    include_space: bool,
    /// Characters never to use, e.g. 0O1lI.
    #[arg(long, value_name = "CHARS")]
    exclude_chars: Option<String>,
    /// Do not require one character of every included class.
    #[arg(long)]
    no_require_each: bool,
}

impl GeneratorArgs {
    fn to_proto(&self) -> proto::GeneratorOptions {
        proto::GeneratorOptions {
            length: self.length.unwrap_or(0),
            exclude_lowercase: self.exclude_lowercase,
            exclude_uppercase: self.exclude_uppercase,
            exclude_numbers: self.exclude_numbers,
            exclude_punctuation: self.exclude_punctuation,
            include_space: self.include_space,
            exclude_characters: self.exclude_chars.clone().unwrap_or_default(),
            require_each_included_type: Some(!self.no_require_each),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`psst call grpc.health.v1.Health/Watch | head -1`): stop
        // quietly, as filters do, rather than report what the reader chose.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("psst: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Input this program itself found malformed (as opposed to the agent saying so): exit 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// A name (method, service, symbol) that the agent does not serve: exit 4.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotServed(pub String);

/// The exit code of an agent's error, by its gRPC code.
pub fn agent_exit_code(e: &psst_client::Error) -> u8 {
    match e.kind() {
        ErrorKind::InvalidArgument => exit::INVALID,
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::PermissionDenied => exit::DENIED,
        ErrorKind::Unavailable => exit::UNAVAILABLE,
        ErrorKind::Unauthenticated => exit::UNAUTHENTICATED,
        ErrorKind::FailedPrecondition => exit::FAILED_PRECONDITION,
        _ => exit::OTHER,
    }
}

/// The exit code of a failure: the first cause in its chain that has one decides.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(agent) = cause.downcast_ref::<psst_client::Error>() {
            return agent_exit_code(agent);
        }
        if let Some(fetch) = cause.downcast_ref::<exec::FetchFailed>() {
            return fetch.exit_code();
        }
        if let Some(render) = cause.downcast_ref::<render::RenderFailed>() {
            return render.exit_code();
        }
        if cause.is::<InvalidInput>() {
            return exit::INVALID;
        }
        if cause.is::<NotServed>() {
            return exit::NOT_FOUND;
        }
    }
    exit::OTHER
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let output = if cli.json { Output::Json } else { cli.output };
    let agent = psst_client::ConnectOptions {
        expected_server_uid: cli.expect_uid,
        ..psst_client::ConnectOptions::new(&cli.socket)
    };
    let connect = || Client::connect_with(&agent);
    let mut stdout = std::io::stdout().lock();
    let code = match cli.command {
        Command::Get { reference } => {
            let secret = connect().await?.get(&reference).await?;
            match output {
                Output::Text => stdout.write_all(secret.value())?,
                Output::Json => writeln!(stdout, "{}", output::secret(&secret))?,
            }
            exit::OK
        }
        Command::Batch { references } => {
            let results = connect().await?.batch_get(&references).await?;
            print_batch(&mut stdout, output, &references, results)?
        }
        Command::Ls { prefix, long } => {
            for entry in connect().await?.list(&prefix).await? {
                match (output, long) {
                    (Output::Json, _) => writeln!(stdout, "{}", output::metadata(&entry)),
                    (Output::Text, true) => {
                        writeln!(stdout, "{}\t{}", entry.reference, entry.version_id)
                    }
                    (Output::Text, false) => writeln!(stdout, "{}", entry.reference),
                }?;
            }
            exit::OK
        }
        Command::Put {
            reference,
            from_file,
        } => {
            let mut value = zeroize::Zeroizing::new(Vec::new());
            match &from_file {
                Some(path) => std::fs::File::open(path)
                    .and_then(|mut f| f.read_to_end(&mut value))
                    .with_context(|| format!("reading the value from {}", path.display()))?,
                None => {
                    // Typed at a terminal, the value would be echoed and stay in scrollback.
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        return Err(InvalidInput(
                            "psst put reads the value from stdin, which is a terminal here: \
                             pipe it in or use --from-file, so it is not echoed"
                                .into(),
                        )
                        .into());
                    }
                    std::io::stdin()
                        .read_to_end(&mut value)
                        .context("reading the value from stdin")?
                }
            };
            let written = connect().await?.put(&reference, &value).await?;
            match output {
                Output::Text => writeln!(stdout, "{}", written.reference)?,
                Output::Json => writeln!(stdout, "{}", output::written(&written))?,
            }
            exit::OK
        }
        Command::Whoami => {
            let who = connect().await?.whoami().await?;
            match output {
                Output::Text => writeln!(stdout, "{}", output::whoami_text(&who))?,
                Output::Json => writeln!(stdout, "{}", output::whoami(&who))?,
            }
            exit::OK
        }
        Command::Health => {
            // A probe wants an answer now: no waiting for an agent that is not there (yet).
            let now = psst_client::ConnectOptions {
                startup_wait: std::time::Duration::ZERO,
                ..agent.clone()
            };
            let status = Client::connect_with(&now).await?.health().await?;
            match output {
                Output::Text => writeln!(stdout, "{}", status.as_str_name())?,
                Output::Json => writeln!(stdout, "{}", json!({ "status": status.as_str_name() }))?,
            }
            if status != psst_client::proto_health::ServingStatus::Serving {
                stdout.flush()?;
                return Err(psst_client::Error::new(
                    psst_client::Code::Unavailable,
                    "the agent is not serving",
                )
                .into());
            }
            exit::OK
        }
        Command::Watch {
            references,
            with_values,
        } => {
            let client = connect().await?;
            let mut watch = client.watch(&references);
            while let Some(event) = watch.next().await {
                writeln!(stdout, "{}", output::watch_event(&event?, with_values))?;
                stdout.flush()?;
            }
            exit::OK
        }
        Command::Rotate {
            reference,
            json_key,
            generator,
        } => {
            let rotated = connect()
                .await?
                .rotate(&reference, Some(generator.to_proto()), json_key.as_deref())
                .await?;
            match output {
                Output::Json => writeln!(stdout, "{}", output::rotated(&rotated))?,
                Output::Text if rotated.delegated => writeln!(
                    stdout,
                    "{reference}: rotation started by the backend (its new version follows when it finishes)"
                )?,
                Output::Text => writeln!(stdout, "{}", rotated.reference)?,
            }
            exit::OK
        }
        Command::Gen { generator } => {
            let value = connect().await?.generate(generator.to_proto()).await?;
            match output {
                Output::Text => {
                    stdout.write_all(&value)?;
                    writeln!(stdout)?;
                }
                Output::Json => writeln!(
                    stdout,
                    "{}",
                    json!({ "value": String::from_utf8_lossy(&value) })
                )?,
            }
            exit::OK
        }
        Command::Exec(args) => {
            drop(stdout);
            return exec::run(&agent, args).await;
        }
        Command::Render(args) => {
            drop(stdout);
            return render::run(&agent, args).await;
        }
        Command::Call(args) => {
            drop(stdout);
            return call::run(&agent, args).await;
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "psst", &mut stdout);
            exit::OK
        }
        Command::Man { dir } => {
            let command = Cli::command();
            match dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    clap_mangen::generate_to(command, &dir)
                        .with_context(|| format!("writing man pages into {}", dir.display()))?;
                }
                None => clap_mangen::Man::new(command).render(&mut stdout)?,
            }
            exit::OK
        }
    };
    stdout.flush()?;
    Ok(code)
}

/// Prints every item, then answers the exit code of the first failed one.
fn print_batch(
    out: &mut impl Write,
    output: Output,
    references: &[String],
    results: Vec<Result<psst_client::Secret, psst_client::Error>>,
) -> anyhow::Result<u8> {
    let mut code = exit::OK;
    let fail = |code: &mut u8, reference: &str, e: &psst_client::Error| {
        if *code == exit::OK {
            *code = agent_exit_code(e);
        }
        if output == Output::Text {
            eprintln!("psst: {reference}: {e}");
        }
    };
    for (reference, result) in references.iter().zip(results) {
        match (output, result) {
            (Output::Json, Ok(secret)) => writeln!(out, "{}", output::secret(&secret))?,
            (Output::Json, Err(e)) => {
                fail(&mut code, reference, &e);
                writeln!(out, "{}", output::item_error(reference, &e))?;
            }
            (Output::Text, Ok(secret)) if !secret.value().contains(&b'\n') => {
                out.write_all(secret.value())?;
                out.write_all(b"\n")?;
            }
            (Output::Text, Ok(_)) => {
                code = if code == exit::OK {
                    exit::INVALID
                } else {
                    code
                };
                eprintln!(
                    "psst: {reference}: the value has a line break, so it cannot be one line: use --json"
                );
                writeln!(out)?;
            }
            (Output::Text, Err(e)) => {
                fail(&mut code, reference, &e);
                writeln!(out)?;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_shorthand_for_output_json_anywhere_on_the_line() {
        let cli = Cli::try_parse_from(["psst", "get", "local:a", "--json"]).unwrap();
        assert!(cli.json);
        let cli = Cli::try_parse_from(["psst", "--output", "json", "ls"]).unwrap();
        assert!(cli.output == Output::Json);
    }

    #[test]
    fn put_never_takes_the_value_as_an_argument() {
        assert!(Cli::try_parse_from(["psst", "put", "local:a", "hunter2"]).is_err());
    }

    #[test]
    fn every_grpc_code_has_its_documented_exit_code() {
        use psst_client::Code;
        for (code, exit_code) in [
            (Code::InvalidArgument, 3),
            (Code::OutOfRange, 3),
            (Code::NotFound, 4),
            (Code::PermissionDenied, 5),
            (Code::Unavailable, 6),
            (Code::Unauthenticated, 7),
            (Code::FailedPrecondition, 8),
            (Code::Internal, 1),
            (Code::DataLoss, 1),
            (Code::Unknown, 1),
        ] {
            let e = psst_client::Error::new(code, "x");
            assert_eq!(agent_exit_code(&e), exit_code, "{code:?}");
        }
    }

    #[test]
    fn exit_codes_come_from_the_first_cause_that_has_one() {
        let denied = psst_client::Error::new(psst_client::Code::PermissionDenied, "no");
        let e = anyhow::Error::from(denied).context("reading local:a");
        assert_eq!(exit_code(&e), exit::DENIED);
        let e = anyhow::Error::from(InvalidInput("bad".into())).context("call");
        assert_eq!(exit_code(&e), exit::INVALID);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), exit::OTHER);
    }

    #[test]
    fn batch_text_keeps_one_line_per_reference_and_reports_the_first_failure() {
        let refs = [
            "local:a".to_owned(),
            "local:b".to_owned(),
            "local:c".to_owned(),
        ];
        let results = vec![
            Err(psst_client::Error::new(psst_client::Code::NotFound, "gone")),
            Err(psst_client::Error::new(
                psst_client::Code::PermissionDenied,
                "no",
            )),
            Err(psst_client::Error::new(psst_client::Code::Internal, "x")),
        ];
        let mut out = Vec::new();
        let code = print_batch(&mut out, Output::Text, &refs, results).unwrap();
        assert_eq!(code, exit::NOT_FOUND);
        assert_eq!(out, b"\n\n\n");
    }
}
