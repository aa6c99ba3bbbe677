//! What to render, from a TOML file (`--config`, for sidecars and units) or from flags; both end
//! up as one list of [`Job`]s. Every problem in a file is reported at once.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use nix::unistd::{Gid, Group, Uid, User};
use serde::Deserialize;

use super::{
    action::{parse_signal, Action},
    write::{Destination, DEFAULT_MODE},
};

/// How long `--watch` waits after a change for the rest of a rotation before rendering.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(1);

/// The file form. Example: `deploy/render/render.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderFile {
    #[serde(default, with = "humantime_serde")]
    pub debounce: Option<Duration>,
    #[serde(default)]
    pub allow_disk: bool,
    #[serde(default, rename = "template")]
    pub templates: Vec<TemplateEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateEntry {
    /// The template file; relative paths are relative to the config file.
    pub source: Option<PathBuf>,
    /// The template text itself, instead of `source`.
    pub contents: Option<String>,
    pub destination: PathBuf,
    /// Octal, as a string: "0640".
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Run by `/bin/sh -c` when the file changed.
    pub command: Option<String>,
    pub signal: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub reload_unit: Option<String>,
}

/// One template to render: its text, where it goes, what to do when it changed.
#[derive(Debug)]
pub struct Job {
    /// The template's name in messages: its file, or `DEST (inline)`.
    pub name: String,
    pub source: String,
    pub destination: Destination,
    pub action: Option<Action>,
}

/// Turns entries into jobs, reporting every problem (prefixed by `where_`) at once.
pub fn jobs(
    entries: Vec<TemplateEntry>,
    base_dir: &Path,
    where_: &str,
) -> Result<Vec<Job>, Vec<String>> {
    let mut jobs = Vec::new();
    let mut problems = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let label = format!("{where_}template {}", index + 1);
        match job(entry, base_dir) {
            Ok(job) => jobs.push(job),
            Err(mut more) => problems.extend(more.drain(..).map(|p| format!("{label}: {p}"))),
        }
    }
    let mut destinations: Vec<&Path> = jobs.iter().map(|j| j.destination.path.as_path()).collect();
    destinations.sort();
    for pair in destinations.windows(2) {
        if pair[0] == pair[1] {
            problems.push(format!(
                "{where_}{} is the destination of two templates",
                pair[0].display()
            ));
        }
    }
    if problems.is_empty() {
        Ok(jobs)
    } else {
        Err(problems)
    }
}

fn job(entry: TemplateEntry, base_dir: &Path) -> Result<Job, Vec<String>> {
    let mut problems = Vec::new();
    let (name, source) = match (&entry.source, entry.contents) {
        (Some(path), None) => {
            let path = base_dir.join(path);
            match std::fs::read_to_string(&path) {
                Ok(text) => (path.display().to_string(), text),
                Err(e) => {
                    problems.push(format!("reading {}: {e}", path.display()));
                    (String::new(), String::new())
                }
            }
        }
        (None, Some(text)) => (format!("{} (inline)", entry.destination.display()), text),
        _ => {
            problems.push("give exactly one of source and contents".into());
            (String::new(), String::new())
        }
    };
    if entry.destination.file_name().is_none() || !entry.destination.is_absolute() {
        problems.push(format!(
            "destination {} must be an absolute path to a file",
            entry.destination.display()
        ));
    }
    let mode = match entry.mode.as_deref().map(parse_mode).transpose() {
        Ok(mode) => mode.unwrap_or(DEFAULT_MODE),
        Err(problem) => {
            problems.push(problem);
            DEFAULT_MODE
        }
    };
    let owner = entry
        .owner
        .as_deref()
        .map(parse_owner)
        .transpose()
        .unwrap_or_else(|p| {
            problems.push(p);
            None
        });
    let group = entry
        .group
        .as_deref()
        .map(parse_group)
        .transpose()
        .unwrap_or_else(|p| {
            problems.push(p);
            None
        });
    let action = match (
        entry.command,
        entry.signal,
        entry.pid_file,
        entry.reload_unit,
    ) {
        (None, None, None, None) => None,
        (Some(command), None, None, None) => Some(Action::Command(command)),
        (None, Some(signal), Some(pid_file), None) => match parse_signal(&signal) {
            Ok(signal) => Some(Action::Signal { signal, pid_file }),
            Err(p) => {
                problems.push(p);
                None
            }
        },
        (None, None, None, Some(unit)) => Some(Action::ReloadUnit(unit)),
        (None, Some(_), None, None) | (None, None, Some(_), None) => {
            problems.push("signal and pid_file go together".into());
            None
        }
        _ => {
            problems
                .push("give at most one of command, signal (with pid_file), reload_unit".into());
            None
        }
    };
    if problems.is_empty() {
        Ok(Job {
            name,
            source,
            destination: Destination {
                path: entry.destination,
                mode,
                owner,
                group,
            },
            action,
        })
    } else {
        Err(problems)
    }
}

/// An octal mode such as `0640` or `640`; nothing beyond the permission bits.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("mode '{text}' is not an octal permission mode such as 0640"))
}

/// A user name or numeric uid.
pub fn parse_owner(text: &str) -> Result<Uid, String> {
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(Uid::from_raw(uid));
    }
    match User::from_name(text) {
        Ok(Some(user)) => Ok(user.uid),
        _ => Err(format!("owner '{text}' is not a user on this host")),
    }
}

/// A group name or numeric gid.
pub fn parse_group(text: &str) -> Result<Gid, String> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(Gid::from_raw(gid));
    }
    match Group::from_name(text) {
        Ok(Some(group)) => Ok(group.gid),
        _ => Err(format!("group '{text}' is not a group on this host")),
    }
}

/// `SOURCE:DESTINATION` from the command line.
pub fn parse_template_flag(text: &str) -> Result<(PathBuf, PathBuf), String> {
    match text.split_once(':') {
        Some((source, destination)) if !source.is_empty() && !destination.is_empty() => {
            Ok((PathBuf::from(source), PathBuf::from(destination)))
        }
        _ => Err(format!("'{text}' is not SOURCE:DESTINATION")),
    }
}

/// Reads a config file.
pub fn read_file(path: &Path) -> Result<RenderFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading it: {e}"))?;
    toml::from_str(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Job>, Vec<String>> {
        let file: RenderFile = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        jobs(file.templates, Path::new("/nonexistent"), "")
    }

    #[test]
    fn a_full_entry_parses() {
        let jobs = parse(
            r#"
            [[template]]
            contents = "{{ secret('local:a') }}"
            destination = "/run/app/a.conf"
            mode = "0640"
            owner = "0"
            group = "0"
            signal = "HUP"
            pid_file = "/run/nginx.pid"

            [[template]]
            contents = "x"
            destination = "/run/app/b.conf"
            reload_unit = "nginx.service"
            "#,
        )
        .unwrap();
        assert_eq!(jobs[0].destination.mode, 0o640);
        assert_eq!(jobs[0].destination.owner, Some(Uid::from_raw(0)));
        assert_eq!(
            jobs[0].action,
            Some(Action::Signal {
                signal: nix::sys::signal::Signal::SIGHUP,
                pid_file: "/run/nginx.pid".into()
            })
        );
        assert_eq!(jobs[1].destination.mode, DEFAULT_MODE);
        assert_eq!(
            jobs[1].action,
            Some(Action::ReloadUnit("nginx.service".into()))
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = parse(
            r#"
            [[template]]
            destination = "relative"
            mode = "999"
            owner = "no-such-user-psst"
            command = "x"
            reload_unit = "y"

            [[template]]
            contents = "x"
            destination = "/run/a"
            signal = "HUP"

            [[template]]
            contents = "x"
            destination = "/run/a"
            [[template]]
            contents = "x"
            destination = "/run/a"
            "#,
        )
        .unwrap_err();
        let text = problems.join("\n");
        for expected in [
            "template 1: give exactly one of source and contents",
            "template 1: destination relative must be an absolute path",
            "template 1: mode '999'",
            "template 1: owner 'no-such-user-psst'",
            "template 1: give at most one of command",
            "template 2: signal and pid_file go together",
            "/run/a is the destination of two templates",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<RenderFile>("[[template]]\ndestnation = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("destnation"), "{err}");
    }

    #[test]
    fn modes_and_flags_parse() {
        assert_eq!(parse_mode("0600").unwrap(), 0o600);
        assert_eq!(parse_mode("640").unwrap(), 0o640);
        assert!(parse_mode("4755").is_err(), "no setuid on a secrets file");
        assert!(parse_mode("rw").is_err());
        assert_eq!(
            parse_template_flag("a.tmpl:/run/a").unwrap(),
            (PathBuf::from("a.tmpl"), PathBuf::from("/run/a"))
        );
        assert!(parse_template_flag("a.tmpl").is_err());
    }
}
