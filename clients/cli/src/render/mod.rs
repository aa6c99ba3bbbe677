//! `psst render`: secrets as files, for programs that read config files.
//!
//! Layout: `config.rs` turns flags or a TOML file into jobs (template, destination, change
//! action); `template.rs` is the template language; `write.rs` writes a file so no reader sees
//! it half-written; `action.rs` tells the reading program about a change. This file fetches the
//! secrets the templates ask for and, with `--watch`, follows them with one `WatchSecrets`
//! stream and renders again when one changes.

mod action;
mod config;
mod template;
mod write;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::{ArgGroup, Args};
use psst_client::{proto::watch_event::Kind, Client};

use crate::{agent_exit_code, exit, InvalidInput};
use action::Action;
use config::{Job, TemplateEntry, DEFAULT_DEBOUNCE};
use template::{Rendered, Secrets, TemplateError};
use write::Written;

/// Most references one render may read: one `WatchSecrets` stream follows at most this many
/// (the agent's `limits.max_batch` default).
pub const MAX_REFERENCES: usize = 100;
/// Rounds of fetching for references a template only asks for once it has others' values.
const MAX_ROUNDS: usize = 8;
/// The longest wait between attempts while the agent is down or a render keeps failing.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);

#[derive(Args)]
#[command(
    about = "Render templates with secrets into files, and keep them current",
    long_about = "Render templates with secrets into files, and keep them current.\n\n\
                  Templates are Jinja (minijinja): {{ secret(\"REF\") }} is a secret's value, \
                  secret_metadata(\"REF\") its version, stages and created_at. Filters: base64, \
                  base64_decode, json, json_field(\"KEY\"), pem, shell_quote, ini_quote, \
                  properties_escape, yaml_quote.\n\n\
                  Each file is written to a temporary file beside it and renamed over it, so a \
                  reader never sees a partial file; output equal to the file's content is not \
                  written again. A render that fails leaves the previous file in place. With \
                  --watch, every secret the templates read is followed and the files are \
                  rendered again when one changes; a file that changed then gets its change \
                  action (a command, a signal to a PID file's process, or a systemd reload).",
    group(ArgGroup::new("what").required(true).multiple(true).args(["config", "template"])),
    group(ArgGroup::new("on_change").args(["command", "signal", "reload_unit"])),
    after_help = "Exit codes (without --watch): 0 every file rendered; 3 a template or the config \
                  is invalid; 4 a secret was not found; 5 the policy denied a secret; 6 the agent \
                  is unreachable; 1 a file could not be written. The first failure decides.\n\n\
                  Examples:\n  \
                  psst render --template nginx.key.tmpl:/run/nginx/tls.key --mode 0640 --group nginx\n  \
                  psst render --config /etc/psst/render.toml --watch\n  \
                  psst render --template db.tmpl:/run/app/.pgpass --watch --command 'pkill -HUP app'"
)]
pub struct RenderArgs {
    /// The TOML file listing the templates (see deploy/render/render.toml).
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    config: Option<PathBuf>,
    /// Render template SOURCE into file DESTINATION. Repeatable; the options below apply to all.
    #[arg(long, value_name = "SOURCE:DESTINATION", value_parser = config::parse_template_flag)]
    template: Vec<(PathBuf, PathBuf)>,
    /// The files' mode, in octal.
    #[arg(long, value_name = "MODE", value_parser = config::parse_mode)]
    mode: Option<u32>,
    /// The files' owner (name or uid).
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
    /// The files' group (name or gid).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// When a file changed: run this with /bin/sh -c.
    #[arg(long, value_name = "COMMAND")]
    command: Option<String>,
    /// When a file changed: send this signal to the process in --pid-file.
    #[arg(long, value_name = "SIGNAL", requires = "pid_file")]
    signal: Option<String>,
    #[arg(long, value_name = "FILE", requires = "signal")]
    pid_file: Option<PathBuf>,
    /// When a file changed: `systemctl reload` this unit.
    #[arg(long, value_name = "UNIT")]
    reload_unit: Option<String>,
    /// Render once and exit (the default): for init containers and scripts.
    #[arg(long, conflicts_with = "watch")]
    once: bool,
    /// Keep running: render again whenever a secret the templates read changes.
    #[arg(long)]
    watch: bool,
    /// With --watch, how long to wait after a change for the rest of a rotation, so changes to
    /// several secrets make one render and one reload [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    debounce: Option<Duration>,
    /// Write to destinations that are not on a tmpfs or ramfs (the secrets are then at rest on
    /// disk); without it psst render refuses them.
    #[arg(long)]
    allow_disk: bool,
}

/// What a one-shot render ended with.
#[derive(Debug)]
pub struct RenderFailed {
    failures: Vec<Failure>,
}

impl RenderFailed {
    pub fn exit_code(&self) -> u8 {
        self.failures
            .first()
            .map_or(exit::OTHER, Failure::exit_code)
    }
}

impl fmt::Display for RenderFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failures.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} templates failed", all.len())?;
                for failure in all {
                    write!(f, "\n  {failure}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RenderFailed {}

/// Why one template was not rendered; its file was left as it was.
#[derive(Debug)]
enum Failure {
    Secret {
        template: String,
        reference: String,
        error: psst_client::Error,
    },
    Template {
        template: String,
        error: TemplateError,
    },
    Write {
        template: String,
        error: write::WriteError,
    },
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Secret { error, .. } => agent_exit_code(error),
            Failure::Template { .. } => exit::INVALID,
            Failure::Write { .. } => exit::OTHER,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Secret {
                template,
                reference,
                error,
            } => write!(
                f,
                "{template}: not rendered, the previous file is kept: {reference}: {error}"
            ),
            Failure::Template { template, error } => {
                write!(
                    f,
                    "{template}: not rendered, the previous file is kept: {error}"
                )
            }
            Failure::Write { template, error } => write!(f, "{template}: {error}"),
        }
    }
}

pub async fn run(agent: &psst_client::ConnectOptions, args: RenderArgs) -> anyhow::Result<u8> {
    let settings = Settings::from_args(args)?;
    for job in &settings.jobs {
        match write::check_filesystem(&job.destination.path, settings.allow_disk) {
            Ok(()) => {}
            Err(e @ write::WriteError::OnDisk { .. }) => {
                return Err(InvalidInput(e.to_string()).into())
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut renderer = Renderer {
        agent: agent.clone(),
        jobs: settings.jobs,
        secrets: Secrets::new(),
        client: None,
    };
    if !settings.watch {
        let round = renderer.render_all().await;
        round.run_actions().await;
        return match round.failures.is_empty() {
            true => Ok(exit::OK),
            false => Err(RenderFailed {
                failures: round.failures,
            }
            .into()),
        };
    }
    // A sidecar is stopped with SIGTERM: stop between renders (writes are synchronous, so none
    // is cut short and no temporary file is left behind) and exit 0.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    tokio::select! {
        result = renderer.watch(settings.debounce) => result,
        _ = term.recv() => Ok(exit::OK),
        _ = interrupt.recv() => Ok(exit::OK),
    }
}

struct Settings {
    jobs: Vec<Job>,
    watch: bool,
    debounce: Duration,
    allow_disk: bool,
}

impl Settings {
    fn from_args(args: RenderArgs) -> anyhow::Result<Self> {
        let invalid = |problems: Vec<String>| InvalidInput(problems.join("\n  "));
        let (file, base_dir, where_) = match &args.config {
            Some(path) => {
                let file = config::read_file(path)
                    .map_err(|problem| InvalidInput(format!("{}: {problem}", path.display())))?;
                let base = path.parent().unwrap_or(Path::new(".")).to_owned();
                (file, base, format!("{}: ", path.display()))
            }
            None => (
                config::RenderFile::default(),
                PathBuf::from("."),
                String::new(),
            ),
        };
        let mut jobs = config::jobs(file.templates, &base_dir, &where_).map_err(invalid)?;
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let flag_entries = args
            .template
            .iter()
            .map(|(source, destination)| TemplateEntry {
                source: Some(source.clone()),
                destination: cwd.join(destination),
                mode: args.mode.map(|m| format!("{m:o}")),
                owner: args.owner.clone(),
                group: args.group.clone(),
                command: args.command.clone(),
                signal: args.signal.clone(),
                pid_file: args.pid_file.clone(),
                reload_unit: args.reload_unit.clone(),
                contents: None,
            })
            .collect();
        jobs.extend(config::jobs(flag_entries, &cwd, "--").map_err(invalid)?);
        let mut destinations: Vec<&Path> =
            jobs.iter().map(|j| j.destination.path.as_path()).collect();
        destinations.sort();
        if let Some(pair) = destinations.windows(2).find(|p| p[0] == p[1]) {
            return Err(InvalidInput(format!(
                "{} is the destination of two templates",
                pair[0].display()
            ))
            .into());
        }
        Ok(Settings {
            jobs,
            watch: args.watch,
            debounce: args.debounce.or(file.debounce).unwrap_or(DEFAULT_DEBOUNCE),
            allow_disk: args.allow_disk || file.allow_disk,
        })
    }
}

/// What one pass over every template did.
#[derive(Default)]
struct Round {
    failures: Vec<Failure>,
    /// The actions of files that were replaced (a file created for the first time has no reader
    /// to tell yet), each once however many of its files changed.
    actions: BTreeSet<Action>,
    /// Every reference the templates read.
    references: BTreeSet<String>,
}

impl Round {
    async fn run_actions(&self) {
        for action in &self.actions {
            match action.run().await {
                Ok(()) => eprintln!("psst render: ran {action}"),
                Err(e) => eprintln!("psst render: {e}"),
            }
        }
    }
}

struct Renderer {
    agent: psst_client::ConnectOptions,
    jobs: Vec<Job>,
    /// Every secret fetched or pushed so far, by the reference as the templates wrote it.
    secrets: Secrets,
    client: Option<Client>,
}

impl Renderer {
    async fn client(&mut self) -> Result<Client, psst_client::Error> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = Client::connect_with(&self.agent).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Renders every template, fetching what they ask for, and writes the files that changed.
    async fn render_all(&mut self) -> Round {
        let mut round = Round::default();
        // Fetch failures of this pass, so templates sharing a reference do not ask twice.
        let mut failed: HashMap<String, psst_client::Error> = HashMap::new();
        for index in 0..self.jobs.len() {
            let name = self.jobs[index].name.clone();
            let output = match self
                .render_one(index, &mut failed, &mut round.references)
                .await
            {
                Ok(output) => output,
                Err(failure) => {
                    round.failures.push(failure);
                    continue;
                }
            };
            let job = &self.jobs[index];
            match write::write(&job.destination, &output) {
                Ok(Written::Replaced) => {
                    eprintln!("psst render: wrote {}", job.destination.path.display());
                    round.actions.extend(job.action.clone());
                }
                Ok(Written::Created) => {
                    eprintln!("psst render: wrote {}", job.destination.path.display());
                }
                Ok(Written::Unchanged) => {}
                Err(error) => round.failures.push(Failure::Write {
                    template: name,
                    error,
                }),
            }
        }
        for failure in &round.failures {
            eprintln!("psst render: {failure}");
        }
        round
    }

    async fn render_one(
        &mut self,
        index: usize,
        failed: &mut HashMap<String, psst_client::Error>,
        references: &mut BTreeSet<String>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, Failure> {
        let job = &self.jobs[index];
        let (name, source) = (job.name.clone(), job.source.clone());
        for _ in 0..MAX_ROUNDS {
            let (outcome, secrets) =
                template::render(&name, &source, std::mem::take(&mut self.secrets));
            self.secrets = secrets;
            match outcome {
                Ok(Rendered::Done { output, used }) => {
                    references.extend(used);
                    return Ok(output);
                }
                Ok(Rendered::Needs(missing)) => {
                    if let Some((reference, error)) =
                        missing.iter().find_map(|r| failed.get_key_value(r))
                    {
                        return Err(Failure::Secret {
                            template: name,
                            reference: reference.clone(),
                            error: error.clone(),
                        });
                    }
                    if self.secrets.len() + missing.len() > MAX_REFERENCES {
                        return Err(Failure::Template {
                            template: name,
                            error: TemplateError::Template(format!(
                                "the templates read more than {MAX_REFERENCES} secrets"
                            )),
                        });
                    }
                    self.fetch(&missing, failed).await;
                }
                Err(error) => {
                    return Err(Failure::Template {
                        template: name,
                        error,
                    })
                }
            }
        }
        Err(Failure::Template {
            template: name,
            error: TemplateError::Template(format!(
                "it still asked for new secrets after {MAX_ROUNDS} rounds of fetching"
            )),
        })
    }

    /// Fetches `references` in one call; what fails is noted in `failed`.
    async fn fetch(
        &mut self,
        references: &BTreeSet<String>,
        failed: &mut HashMap<String, psst_client::Error>,
    ) {
        let references: Vec<&String> = references.iter().collect();
        let results = match self.client().await {
            Ok(client) => client.batch_get(&references).await,
            Err(e) => Err(e),
        };
        match results {
            Ok(results) => {
                for (reference, result) in references.into_iter().zip(results) {
                    match result {
                        Ok(secret) => {
                            self.secrets.insert(reference.clone(), secret);
                        }
                        Err(e) => {
                            failed.insert(reference.clone(), e);
                        }
                    }
                }
            }
            Err(e) => {
                // The connection may be what failed: the next call connects afresh.
                self.client = None;
                for reference in references {
                    failed.insert(reference.clone(), e.clone());
                }
            }
        }
    }

    /// `--watch`: render, follow every secret read, render again on change. Returns only on an
    /// error that retrying cannot fix; an agent that is down is waited for, however long.
    async fn watch(&mut self, debounce: Duration) -> anyhow::Result<u8> {
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            let round = self.render_all().await;
            round.run_actions().await;
            if !round.failures.is_empty() {
                // The files stay as they were; a secret may be created or granted later.
                eprintln!(
                    "psst render: rendering again in {}",
                    humantime::format_duration(delay)
                );
                tokio::time::sleep(jittered(delay)).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                continue;
            }
            delay = FIRST_RETRY_DELAY;
            // Pinned versions (`?version=`) never change: nothing to follow.
            let followed: Vec<String> = round
                .references
                .iter()
                .filter(|r| !r.contains('?'))
                .cloned()
                .collect();
            if followed.is_empty() {
                eprintln!("psst render: the templates read no secret that can change");
                return std::future::pending().await;
            }
            match self.follow(&followed, debounce).await {
                Ok(()) => {}
                Err(e) => {
                    eprintln!(
                        "psst render: watching: {e:#}; rendering and watching again in {}",
                        humantime::format_duration(delay)
                    );
                    // Start afresh: what the agent serves now, on a new connection.
                    self.client = None;
                    self.secrets.clear();
                    tokio::time::sleep(jittered(delay)).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    /// Follows `references` until the set the templates read changes (Ok) or the watch fails.
    async fn follow(&mut self, references: &[String], debounce: Duration) -> anyhow::Result<()> {
        let client = self.client().await?;
        let mut watch = client.watch(references);
        // Changes received and not rendered yet, by reference; `None`: deleted.
        let mut pending: BTreeMap<String, Option<psst_client::Secret>> = BTreeMap::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let quiet = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = watch.next() => {
                    let event = match event {
                        Some(event) => event?,
                        None => return Ok(()),
                    };
                    match event.kind {
                        Kind::Current | Kind::NewVersion => {
                            let unchanged = event.secret.as_ref().zip(self.secrets.get(&event.reference))
                                .is_some_and(|(new, old)| new.version_id == old.version_id && new.value() == old.value());
                            if unchanged {
                                continue;
                            }
                            pending.insert(event.reference, event.secret);
                        }
                        Kind::Deleted => {
                            pending.insert(event.reference, None);
                        }
                        _ => continue,
                    }
                    // Wait for the rest of the rotation: the render happens once the watch has
                    // been quiet for `debounce`.
                    deadline = Some(tokio::time::Instant::now() + debounce);
                }
                () = quiet => {
                    deadline = None;
                    for (reference, secret) in std::mem::take(&mut pending) {
                        match secret {
                            Some(secret) => self.secrets.insert(reference, secret),
                            None => self.secrets.remove(&reference),
                        };
                    }
                    let round = self.render_all().await;
                    round.run_actions().await;
                    if !round.failures.is_empty() {
                        // Rendered again by `watch` until it succeeds; the files stay as they were.
                        anyhow::bail!("a template failed to render (reported above)");
                    }
                    let now: BTreeSet<&String> = round.references.iter().filter(|r| !r.contains('?')).collect();
                    if now != references.iter().collect() {
                        return Ok(());
                    }
                    self.secrets.retain(|r, _| round.references.contains(r));
                }
            }
        }
    }
}

/// Up to a quarter off, so sidecars restarted together do not retry together.
fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    delay - delay.mul_f64(f64::from(nanos % 1000) / 4000.0)
}
