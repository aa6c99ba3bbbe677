//! Secrets Manager's names and ARNs, in one place: a secret is named by its name, its full ARN
//! (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`, the last six characters random)
//! or its partial ARN (the full one without `-XXXXXX`).

/// Why `name` is not a Secrets Manager name or ARN, if it is not.
pub(super) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.starts_with("arn:") {
        if !name.starts_with("arn:aws") || !name.contains(":secretsmanager:") {
            return Err("is not a Secrets Manager ARN");
        }
        return Ok(());
    }
    if !name.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'+' | b'=' | b'.' | b'@' | b'-')
    }) {
        return Err("may only use letters, digits and / _ + = . @ -");
    }
    Ok(())
}

/// A full ARN ends with `-` and six random characters after the name: without them.
fn strip_suffix(name: &str) -> &str {
    let bytes = name.as_bytes();
    let has_suffix = bytes.len() > 7
        && bytes[bytes.len() - 7] == b'-'
        && bytes[bytes.len() - 6..]
            .iter()
            .all(u8::is_ascii_alphanumeric);
    if has_suffix {
        &name[..name.len() - 7]
    } else {
        name
    }
}

/// The secret's name for the policy: for an ARN, the name inside it without a full ARN's
/// random suffix; any other name as it is.
pub(super) fn policy_name(id: &str) -> &str {
    match id.split_once(":secret:") {
        Some((_, name)) => strip_suffix(name),
        None => id,
    }
}

/// A full ARN without its random six-character suffix, if it has one.
pub(super) fn partial_arn(arn: &str) -> Option<&str> {
    let partial = strip_suffix(arn);
    (arn.starts_with("arn:") && partial.len() < arn.len()).then_some(partial)
}

/// Whether a secret id as a caller wrote it (name, full ARN, or partial ARN) names the secret
/// with this name and ARN.
pub(super) fn names_same_secret(id: &str, name: Option<&str>, arn: Option<&str>) -> bool {
    Some(id) == name
        || Some(id) == arn
        || (id.starts_with("arn:") && arn.and_then(partial_arn) == Some(id))
}

/// The spellings of a secret id: itself, and for an ARN its name, its name without the random
/// `-XXXXXX` suffix, and its partial ARN (without the suffix).
fn forms(id: &str) -> Vec<&str> {
    let mut forms = vec![id];
    if let Some((_, name)) = id.split_once(":secret:") {
        forms.push(name);
        let stripped = strip_suffix(name);
        if stripped.len() < name.len() {
            forms.push(stripped);
            forms.push(&id[..id.len() - (name.len() - stripped.len())]);
        }
    }
    forms
}

/// Whether two ids (any spelling) may name one secret: some spelling of one is a spelling of
/// the other.
pub(super) fn may_be_same(a: &str, b: &str) -> bool {
    let of_b = forms(b);
    forms(a).iter().any(|f| of_b.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm_names_and_selectors_say_what_is_wrong() {
        crate::backend::registry::assert_rejected(&[
            ("sm:prod/db?label=x", "does not apply"),
            ("sm:arn:aws:s3:::bucket", "not a Secrets Manager ARN"),
        ]);
    }

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";
    const PARTIAL: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db";

    #[test]
    fn ids_that_name_one_secret() {
        assert!(names_same_secret("prod/db", Some("prod/db"), Some(ARN)));
        assert!(names_same_secret(ARN, Some("prod/db"), Some(ARN)));
        assert!(names_same_secret(PARTIAL, Some("prod/db"), Some(ARN)));
        assert!(!names_same_secret("prod/dbx", Some("prod/db"), Some(ARN)));
        assert!(!names_same_secret(
            &PARTIAL[..PARTIAL.len() - 1],
            Some("prod/db"),
            Some(ARN)
        ));
    }

    #[test]
    fn spellings() {
        assert_eq!(policy_name(ARN), "prod/db");
        assert_eq!(policy_name(PARTIAL), "prod/db");
        assert_eq!(policy_name("prod/db-AbCdEf"), "prod/db-AbCdEf", "only ARNs");
        assert_eq!(partial_arn(ARN), Some(PARTIAL));
        assert_eq!(partial_arn("prod/db-AbCdEf"), None);
        assert!(may_be_same(ARN, "prod/db"));
        assert!(may_be_same(PARTIAL, ARN));
        assert!(!may_be_same("prod/db", "prod/dbx"));
    }
}
