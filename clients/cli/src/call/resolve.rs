//! Which method `psst call NAME` means: `psst.v1.Secrets/GetSecret`, `Secrets/GetSecret`,
//! `psst.v1.Secrets.GetSecret` (grpcurl's other spelling) or just `GetSecret`, the short forms
//! only when exactly one service the agent serves fits.

/// A service as reflection describes it: its full name and its methods' names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub methods: Vec<String>,
}

impl ServiceInfo {
    fn short_name(&self) -> &str {
        self.name.rsplit('.').next().unwrap_or(&self.name)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("'{0}' is not a method name: use [PACKAGE.]SERVICE/METHOD, or METHOD alone")]
    Malformed(String),
    #[error("'{name}' is ambiguous: it could be {candidates}")]
    Ambiguous { name: String, candidates: String },
    #[error("the agent serves no service '{service}' (it serves {known})")]
    UnknownService { service: String, known: String },
    #[error("{service} has no method '{method}' (it has {known})")]
    UnknownMethod {
        service: String,
        method: String,
        known: String,
    },
    #[error("no service of the agent has a method '{0}'")]
    NoSuchMethod(String),
}

impl ResolveError {
    /// A name that was never going to work whatever the agent serves, as opposed to one it
    /// simply does not serve.
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed(_) | Self::Ambiguous { .. })
    }
}

/// Finds a service by its full name, or by its short name when only one service has it.
pub fn find_service<'a>(
    services: &'a [ServiceInfo],
    name: &str,
) -> Result<&'a ServiceInfo, ResolveError> {
    if let Some(exact) = services.iter().find(|s| s.name == name) {
        return Ok(exact);
    }
    let matching: Vec<&ServiceInfo> = services.iter().filter(|s| s.short_name() == name).collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(ResolveError::UnknownService {
            service: name.to_owned(),
            known: join(services.iter().map(|s| s.name.as_str())),
        }),
        several => Err(ResolveError::Ambiguous {
            name: name.to_owned(),
            candidates: join(several.iter().map(|s| s.name.as_str())),
        }),
    }
}

/// Resolves a method name to its service and method.
pub fn resolve<'a>(
    services: &'a [ServiceInfo],
    spec: &str,
) -> Result<(&'a ServiceInfo, &'a str), ResolveError> {
    let malformed = || ResolveError::Malformed(spec.to_owned());
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && !part.ends_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    if let Some((service, method)) = spec.split_once('/') {
        if !part_ok(service) || !part_ok(method) || method.contains('.') {
            return Err(malformed());
        }
        return method_of(find_service(services, service)?, method);
    }
    if !part_ok(spec) {
        return Err(malformed());
    }
    if let Some((service, method)) = spec.rsplit_once('.') {
        return method_of(find_service(services, service)?, method);
    }
    let having: Vec<&ServiceInfo> = services
        .iter()
        .filter(|s| s.methods.iter().any(|m| m == spec))
        .collect();
    match having.as_slice() {
        [one] => method_of(one, spec),
        [] => Err(ResolveError::NoSuchMethod(spec.to_owned())),
        several => Err(ResolveError::Ambiguous {
            name: spec.to_owned(),
            candidates: join(several.iter().map(|s| format!("{}/{spec}", s.name))),
        }),
    }
}

fn method_of<'a>(
    service: &'a ServiceInfo,
    method: &str,
) -> Result<(&'a ServiceInfo, &'a str), ResolveError> {
    match service.methods.iter().find(|m| *m == method) {
        Some(found) => Ok((service, found)),
        None => Err(ResolveError::UnknownMethod {
            service: service.name.clone(),
            method: method.to_owned(),
            known: join(service.methods.iter()),
        }),
    }
}

fn join<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<S> = items.collect();
    if items.is_empty() {
        return "nothing".to_owned();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<ServiceInfo> {
        let service = |name: &str, methods: &[&str]| ServiceInfo {
            name: name.to_owned(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
        };
        vec![
            service(
                "psst.v1.Secrets",
                &[
                    "GetSecret",
                    "BatchGetSecrets",
                    "ListSecrets",
                    "PutSecret",
                    "WhoAmI",
                ],
            ),
            service("grpc.health.v1.Health", &["Check", "Watch"]),
            service(
                "grpc.reflection.v1.ServerReflection",
                &["ServerReflectionInfo"],
            ),
            service(
                "grpc.reflection.v1alpha.ServerReflection",
                &["ServerReflectionInfo"],
            ),
        ]
    }

    fn resolved(spec: &str) -> Result<String, ResolveError> {
        let services = services();
        resolve(&services, spec).map(|(s, m)| format!("{}/{m}", s.name))
    }

    #[test]
    fn every_spelling_of_an_unambiguous_method_resolves() {
        for spec in [
            "psst.v1.Secrets/GetSecret",
            "Secrets/GetSecret",
            "psst.v1.Secrets.GetSecret",
            "Secrets.GetSecret",
            "GetSecret",
        ] {
            assert_eq!(
                resolved(spec),
                Ok("psst.v1.Secrets/GetSecret".to_owned()),
                "{spec}"
            );
        }
        assert_eq!(
            resolved("Watch"),
            Ok("grpc.health.v1.Health/Watch".to_owned())
        );
    }

    #[test]
    fn ambiguous_names_list_the_candidates() {
        let err = resolved("ServerReflectionInfo").unwrap_err();
        assert_eq!(
            err,
            ResolveError::Ambiguous {
                name: "ServerReflectionInfo".into(),
                candidates: "grpc.reflection.v1.ServerReflection/ServerReflectionInfo, \
                             grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
                    .into()
            }
        );
        assert!(err.is_malformed());
        assert!(matches!(
            resolved("ServerReflection/ServerReflectionInfo"),
            Err(ResolveError::Ambiguous { .. })
        ));
        assert_eq!(
            resolved("grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Ok("grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_owned())
        );
    }

    #[test]
    fn unknown_names_say_what_there_is() {
        assert_eq!(
            resolved("Secrets/Nope").unwrap_err().to_string(),
            "psst.v1.Secrets has no method 'Nope' (it has GetSecret, BatchGetSecrets, \
             ListSecrets, PutSecret, WhoAmI)"
        );
        let err = resolved("psst.v2.Secrets/GetSecret").unwrap_err();
        assert!(
            matches!(&err, ResolveError::UnknownService { service, .. } if service == "psst.v2.Secrets"),
            "{err}"
        );
        assert!(!err.is_malformed());
        assert_eq!(
            resolved("Nope"),
            Err(ResolveError::NoSuchMethod("Nope".into()))
        );
    }

    #[test]
    fn malformed_names_are_refused_before_any_lookup() {
        for spec in [
            "",
            "/",
            "Secrets/",
            "/GetSecret",
            "a/b/c",
            "Get Secret",
            ".GetSecret",
            "Secrets/Get.Secret",
        ] {
            assert_eq!(
                resolved(spec),
                Err(ResolveError::Malformed(spec.to_owned())),
                "{spec:?}"
            );
        }
    }

    #[test]
    fn services_resolve_by_full_or_unique_short_name() {
        let services = services();
        assert_eq!(
            find_service(&services, "Health").unwrap().name,
            "grpc.health.v1.Health"
        );
        assert_eq!(
            find_service(&services, "psst.v1.Secrets").unwrap().name,
            "psst.v1.Secrets"
        );
        assert!(matches!(
            find_service(&services, "ServerReflection"),
            Err(ResolveError::Ambiguous { .. })
        ));
    }
}
