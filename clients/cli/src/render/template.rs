//! The template language of `psst render`: minijinja with the functions that read secrets and
//! the filters config files need.
//!
//! A render is a pure function of the template and the secrets fetched so far ([`Secrets`]). A
//! reference the template asks for that has not been fetched yet is recorded and rendered as an
//! empty string; the caller fetches what was recorded and renders again (see `render/mod.rs`), so
//! a template may choose its references from other secrets' values.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use base64::Engine as _;
use minijinja::{value::Value, AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use zeroize::Zeroizing;

/// How many instructions one render may run: a template that loops forever fails instead.
pub const DEFAULT_FUEL: u64 = 5_000_000;

/// The secrets a render may read, by the reference the template wrote.
pub type Secrets = HashMap<String, psst_client::Secret>;

/// Why a render produced no output.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template itself is malformed or failed while running. Never carries a secret value:
    /// see [`describe`].
    #[error("{0}")]
    Template(String),
    /// A function or filter refused a value, e.g. `pem` on something that is not PEM.
    #[error("{reference}: {problem}")]
    Value { reference: String, problem: String },
}

/// One render's outcome.
pub enum Rendered {
    /// The output, and every reference the template read.
    Done {
        output: Zeroizing<Vec<u8>>,
        used: BTreeSet<String>,
    },
    /// The template asked for secrets that are not in [`Secrets`] yet: fetch them, render again.
    Needs(BTreeSet<String>),
}

/// What a render's functions share: the secrets, and what they found missing or wrong.
#[derive(Default)]
struct Scope {
    secrets: Secrets,
    missing: BTreeSet<String>,
    used: BTreeSet<String>,
    /// The first problem one of our functions or filters raised, told in our words.
    problem: Option<TemplateError>,
}

/// Renders `source` (named `name` in messages) with `secrets`. Gives the secrets back with the
/// outcome so the caller keeps one map across rounds.
pub fn render(
    name: &str,
    source: &str,
    secrets: Secrets,
) -> (Result<Rendered, TemplateError>, Secrets) {
    let scope = Arc::new(Mutex::new(Scope {
        secrets,
        ..Scope::default()
    }));
    let result = render_in(name, source, &scope);
    let scope = match Arc::try_unwrap(scope) {
        Ok(scope) => scope.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => unreachable!("the environment holding the other references is dropped"),
    };
    let outcome = if !scope.missing.is_empty() {
        // Whatever failed may have failed on a placeholder: decide once every value is here.
        Ok(Rendered::Needs(scope.missing))
    } else {
        match (result, scope.problem) {
            (Ok(output), _) => Ok(Rendered::Done {
                output,
                used: scope.used,
            }),
            (Err(_), Some(problem)) => Err(problem),
            (Err(e), None) => Err(TemplateError::Template(describe(&e))),
        }
    };
    (outcome, scope.secrets)
}

fn render_in(
    name: &str,
    source: &str,
    scope: &Arc<Mutex<Scope>>,
) -> Result<Zeroizing<Vec<u8>>, minijinja::Error> {
    let mut env = environment(scope);
    env.add_template_owned(name.to_owned(), source.to_owned())?;
    let template = env.get_template(name)?;
    let mut out = Zeroizing::new(Vec::new());
    template.render_captured_to(minijinja::context! {}, &mut *out)?;
    Ok(out)
}

/// A template error told without the values involved: minijinja's own details can quote the
/// operands (and those can be secrets), so only the details of errors in the template's text are
/// kept; for the others, the kind and the place say enough to find it.
fn describe(e: &minijinja::Error) -> String {
    let place = match (e.name(), e.line()) {
        (Some(name), Some(line)) => format!("{name}:{line}: "),
        (Some(name), None) => format!("{name}: "),
        _ => String::new(),
    };
    let text_problem = matches!(
        e.kind(),
        ErrorKind::SyntaxError
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownMethod
            | ErrorKind::TemplateNotFound
            | ErrorKind::UndefinedError
            | ErrorKind::MissingArgument
            | ErrorKind::TooManyArguments
            | ErrorKind::OutOfFuel
    );
    match e.detail() {
        Some(detail) if text_problem => format!("{place}{}: {detail}", e.kind()),
        _ => format!("{place}{}", e.kind()),
    }
}

fn environment(scope: &Arc<Mutex<Scope>>) -> Environment<'static> {
    let mut env = Environment::new();
    // Config files, not HTML: nothing is escaped unless a filter says so, and a file's last
    // newline (PEM, .pgpass) is kept.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(DEFAULT_FUEL));
    env.set_debug(false);
    // Bytes written as text would be mangled: say so instead.
    env.set_formatter(|out, state, value| {
        if value.as_bytes().is_some() && value.as_str().is_none() {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "a binary value cannot be written as text: use the base64 filter",
            ));
        }
        minijinja::escape_formatter(out, state, value)
    });

    let s = Arc::clone(scope);
    env.add_function("secret", move |reference: &str| {
        with_secret(&s, reference, |secret| Ok(secret_value(secret)))
    });
    let s = Arc::clone(scope);
    env.add_function("secret_metadata", move |reference: &str| {
        with_secret(&s, reference, |secret| Ok(metadata(secret)))
    });
    let s = Arc::clone(scope);
    env.add_filter("base64", move |value: Value| match text_or_bytes(&value) {
        Some(bytes) => Ok(Value::from(
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )),
        None => refuse(&s, "base64", "expects a string".into()),
    });
    let s = Arc::clone(scope);
    env.add_filter("base64_decode", move |value: &str| {
        match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
            Ok(decoded) => Ok(match String::from_utf8(decoded) {
                Ok(text) => Value::from(text),
                Err(e) => Value::from_bytes(e.into_bytes()),
            }),
            Err(_) => refuse(&s, "base64_decode", "expects valid base64".into()),
        }
    });
    let s = Arc::clone(scope);
    env.add_filter("json", move |value: Value| {
        match serde_json::to_string(&value) {
            Ok(json) => Ok(Value::from(json)),
            Err(_) => refuse(&s, "json", "expects a value JSON can hold".into()),
        }
    });
    let s = Arc::clone(scope);
    env.add_filter("json_field", move |value: &str, key: &str| {
        json_field(value, key).map_or_else(|p| refuse(&s, "json_field", p), |v| Ok(Value::from(v)))
    });
    let s = Arc::clone(scope);
    env.add_filter("pem", move |value: &str| {
        pem(value).map_or_else(|p| refuse(&s, "pem", p), |v| Ok(Value::from(v)))
    });
    env.add_filter("shell_quote", |value: &str| shell_quote(value));
    let s = Arc::clone(scope);
    env.add_filter("ini_quote", move |value: &str| {
        ini_quote(value).map_or_else(|p| refuse(&s, "ini_quote", p), |v| Ok(Value::from(v)))
    });
    env.add_filter("properties_escape", |value: &str| properties_escape(value));
    env.add_filter("yaml_quote", |value: &str| yaml_quote(value));
    env
}

/// Runs `f` on the secret `reference` names, or records it as missing and gives a placeholder.
fn with_secret(
    scope: &Mutex<Scope>,
    reference: &str,
    f: impl FnOnce(&psst_client::Secret) -> Result<Value, String>,
) -> Result<Value, minijinja::Error> {
    let mut scope = scope.lock().unwrap_or_else(|p| p.into_inner());
    if !scope.secrets.contains_key(reference) {
        scope.missing.insert(reference.to_owned());
        return Ok(Value::from(""));
    }
    scope.used.insert(reference.to_owned());
    f(&scope.secrets[reference]).map_err(|problem| {
        scope.problem.get_or_insert(TemplateError::Value {
            reference: reference.to_owned(),
            problem: problem.clone(),
        });
        minijinja::Error::new(ErrorKind::InvalidOperation, problem)
    })
}

/// The value as text when it is UTF-8, else as bytes (for the base64 filter).
fn secret_value(secret: &psst_client::Secret) -> Value {
    match secret.value_str() {
        Some(text) => Value::from(text),
        None => Value::from_bytes(secret.value().to_vec()),
    }
}

fn metadata(secret: &psst_client::Secret) -> Value {
    let rfc3339 =
        |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_seconds(t).to_string());
    minijinja::context! {
        reference => secret.reference.clone(),
        version => secret.version_id.clone(),
        stages => secret.stages.clone(),
        created_at => rfc3339(secret.created_at),
    }
}

fn text_or_bytes(value: &Value) -> Option<&[u8]> {
    value
        .as_str()
        .map(str::as_bytes)
        .or_else(|| value.as_bytes())
}

/// A filter's refusal, recorded in our words (without the value). While secrets are still
/// missing, the value may be a placeholder: the filter passes an empty string on instead, so
/// one pass still finds every reference the template reads.
fn refuse(scope: &Mutex<Scope>, filter: &str, problem: String) -> Result<Value, minijinja::Error> {
    let mut scope = scope.lock().unwrap_or_else(|p| p.into_inner());
    if !scope.missing.is_empty() {
        return Ok(Value::from(""));
    }
    scope.problem.get_or_insert(TemplateError::Value {
        reference: format!("filter {filter}"),
        problem: problem.clone(),
    });
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, problem))
}

// === the filters, as plain functions for their tests ===

/// One key of a JSON object, as text (strings unquoted, anything else as JSON).
pub fn json_field(value: &str, key: &str) -> Result<String, String> {
    let parsed: serde_json::Value =
        serde_json::from_str(value).map_err(|_| "the value is not JSON".to_owned())?;
    match parsed.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(format!("the JSON value has no key \"{key}\"")),
    }
}

/// A PEM block as a file wants it: `\n` line ends, blocks intact, one final newline. Accepts the
/// forms PEM takes after a trip through JSON or a web form: `\r\n` line ends, or the line breaks
/// written as the two characters `\n`. Refuses what has no `-----BEGIN`/`-----END` pair, so a
/// wrong secret fails the render instead of breaking the server that reads the file.
pub fn pem(value: &str) -> Result<String, String> {
    let mut text = value.replace("\r\n", "\n");
    if !text.trim().contains('\n') && text.contains("\\n") {
        text = text.replace("\\n", "\n");
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let begins = lines
        .iter()
        .filter(|l| l.starts_with("-----BEGIN "))
        .count();
    let ends = lines.iter().filter(|l| l.starts_with("-----END ")).count();
    let framed = lines.first().is_some_and(|l| l.starts_with("-----BEGIN "))
        && lines.last().is_some_and(|l| l.starts_with("-----END "));
    if begins == 0 || begins != ends || !framed {
        return Err("the value is not PEM (no matching -----BEGIN/-----END lines)".into());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// A POSIX shell word: single quotes, with `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// An INI value in double quotes with `\` and `"` escaped. A line break is refused: INI has no
/// agreed way to continue a value, and a reader would take the next line as a key of its own.
pub fn ini_quote(value: &str) -> Result<String, String> {
    if value.contains(['\n', '\r']) {
        return Err("the value has a line break, which an INI value cannot hold".into());
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', r"\\").replace('"', "\\\"")
    ))
}

/// A Java `.properties` value (java.util.Properties.load): `\`, line breaks, tabs and a leading
/// space escaped, `=`, `:`, `#` and `!` escaped so the value cannot read as a key or a comment,
/// and everything outside printable ASCII as `\uXXXX`, since `Properties.load(InputStream)` (and
/// Spring Boot's default) reads ISO-8859-1.
pub fn properties_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            '\u{c}' => out.push_str(r"\f"),
            ' ' if i == 0 => out.push_str(r"\ "),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
    out
}

/// A YAML double-quoted scalar. A JSON string is one (YAML 1.2 is a superset of JSON), and
/// serde_json escapes every control character.
pub fn yaml_quote(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(reference: &str, value: &[u8], version: &str) -> psst_client::Secret {
        psst_client::Secret::new(reference, value.to_vec(), version)
    }

    fn secrets(items: &[(&str, &[u8])]) -> Secrets {
        items
            .iter()
            .map(|(r, v)| (r.to_string(), secret(r, v, "v1")))
            .collect()
    }

    fn done(source: &str, items: &[(&str, &[u8])]) -> Result<String, TemplateError> {
        match render("t", source, secrets(items)).0? {
            Rendered::Done { output, .. } => Ok(String::from_utf8(output.to_vec()).unwrap()),
            Rendered::Needs(missing) => panic!("still needs {missing:?}"),
        }
    }

    #[test]
    fn secrets_render_by_reference_and_the_last_newline_is_kept() {
        let out = done(
            "user={{ secret('local:db#user') }}\npass={{ secret(\"sm:prod/db#password\") }}\n",
            &[
                ("local:db#user", b"app"),
                ("sm:prod/db#password", b"hunter2"),
            ],
        )
        .unwrap();
        assert_eq!(out, "user=app\npass=hunter2\n");
    }

    #[test]
    fn unknown_references_are_collected_in_one_pass() {
        let (outcome, _) = render(
            "t",
            "{{ secret('local:a') | pem }}{{ secret('local:b') }}{{ secret('local:a') }}",
            Secrets::new(),
        );
        match outcome.unwrap() {
            Rendered::Needs(missing) => {
                assert_eq!(
                    missing.into_iter().collect::<Vec<_>>(),
                    ["local:a", "local:b"]
                )
            }
            Rendered::Done { .. } => panic!("rendered without the secrets"),
        }
    }

    #[test]
    fn metadata_gives_version_and_creation_time() {
        let mut with_time = secret("local:a", b"x", "7");
        with_time.created_at = Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86400));
        let mut map = Secrets::new();
        map.insert("local:a".into(), with_time);
        let (outcome, _) = render(
            "t",
            "{% set m = secret_metadata('local:a') %}{{ m.version }} {{ m.created_at }} {{ m.reference }}",
            map,
        );
        let Rendered::Done { output, used } = outcome.unwrap() else {
            panic!("needs more")
        };
        assert_eq!(&output[..], b"7 1970-01-02T00:00:00Z local:a");
        assert_eq!(used.into_iter().collect::<Vec<_>>(), ["local:a"]);
    }

    #[test]
    fn binary_values_need_base64() {
        let err = done(
            "{{ secret('local:bin') }}",
            &[("local:bin", &[0xff, 0x00, 0x80])],
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("invalid operation"), "{err}");
        let out = done(
            "{{ secret('local:bin') | base64 }} {{ 'aGk=' | base64_decode }}",
            &[("local:bin", &[0xff, 0x00, 0x80])],
        )
        .unwrap();
        assert_eq!(out, "/wCA hi");
    }

    #[test]
    fn json_filters_quote_and_pick_keys() {
        let out = done(
            "{{ secret('local:j') | json }} {{ secret('local:o') | json_field('password') }} {{ secret('local:o') | json_field('port') }}",
            &[
                ("local:j", b"say \"hi\"\n"),
                ("local:o", br#"{"password": "p@ss", "port": 5432}"#),
            ],
        )
        .unwrap();
        assert_eq!(out, r#""say \"hi\"\n" p@ss 5432"#);
        let err = done(
            "{{ secret('local:o') | json_field('user') }}",
            &[("local:o", br#"{"password": "p"}"#)],
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "filter json_field: the JSON value has no key \"user\""
        );
    }

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIBVQ\nIBADAN\n-----END PRIVATE KEY-----\n";

    #[test]
    fn pem_normalizes_line_ends_and_refuses_what_is_not_pem() {
        assert_eq!(pem(KEY).unwrap(), KEY);
        assert_eq!(pem(&KEY.replace('\n', "\r\n")).unwrap(), KEY);
        assert_eq!(pem(&KEY.trim_end().replace('\n', "\\n")).unwrap(), KEY);
        let chain = format!("{KEY}\n\n{}", KEY.replace("PRIVATE KEY", "CERTIFICATE"));
        assert_eq!(pem(&chain).unwrap().matches("-----BEGIN").count(), 2);
        assert!(pem("hunter2").is_err());
        assert!(pem("-----BEGIN X-----\nabc\n").is_err(), "no END line");
        // The refusal names no part of the value.
        let err = done("{{ secret('local:k') | pem }}", &[("local:k", b"hunter2")])
            .err()
            .unwrap();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn shell_quoting_survives_a_real_shell() {
        for value in ["plain", "it's", "$(id) `id` \"x\" \\ \n;&|", ""] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(value)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
        }
    }

    #[test]
    fn ini_quoting_escapes_and_refuses_line_breaks() {
        assert_eq!(ini_quote(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(ini_quote("a\nadmin=true").is_err());
    }

    #[test]
    fn properties_escaping_reads_back_as_java_would() {
        assert_eq!(
            properties_escape(" p=a:b#c!\\d\n\u{e9}\u{1f600}"),
            r"\ p\=a\:b\#c\!\\d\n\u00E9\uD83D\uDE00"
        );
        assert_eq!(properties_escape("x y"), "x y");
    }

    #[test]
    fn yaml_quoting_is_a_double_quoted_scalar() {
        assert_eq!(yaml_quote("a: b\n\"c\"\t"), r#""a: b\n\"c\"\t""#);
        assert_eq!(yaml_quote("no"), r#""no""#);
    }

    #[test]
    fn template_errors_name_the_place_but_no_value() {
        let err = done(
            "line\n{{ secret('local:a') + 1 }}",
            &[("local:a", b"hunter2")],
        )
        .err()
        .unwrap();
        let text = err.to_string();
        assert!(text.starts_with("t:2: "), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let err = done("{{ secret('local:a') ", &[]).err().unwrap();
        assert!(err.to_string().contains("syntax error"), "{err}");
        let err = done("{{ nope }}", &[]).err().unwrap();
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let err = done(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            &[],
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("fuel"), "{err}");
    }
}
