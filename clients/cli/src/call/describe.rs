//! `psst call --describe`: a symbol from the agent's descriptors, printed as .proto source with
//! the comments the descriptors carry (their source info), as grpcurl's `describe` does.

use std::fmt::Write as _;

use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind,
    MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};

/// The definition of `symbol` (a service, method, message or enum, by full name), or `None`
/// when the pool has no such symbol.
pub fn describe(pool: &DescriptorPool, symbol: &str) -> Option<String> {
    let mut out = String::new();
    if let Some(service) = pool.get_service_by_name(symbol) {
        header(&mut out, symbol, "a service", service.parent_file().name());
        service_text(&mut out, &service);
    } else if let Some(message) = pool.get_message_by_name(symbol) {
        header(&mut out, symbol, "a message", message.parent_file().name());
        message_text(&mut out, &message, 0);
    } else if let Some(enumeration) = pool.get_enum_by_name(symbol) {
        header(
            &mut out,
            symbol,
            "an enum",
            enumeration.parent_file().name(),
        );
        enum_text(&mut out, &enumeration, 0);
    } else {
        let (service, method) = symbol.rsplit_once('.')?;
        let method = pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)?;
        header(&mut out, symbol, "a method", method.parent_file().name());
        comments(&mut out, "", &method.parent_file(), method.path());
        out.push_str(&rpc_line(&method));
        out.push('\n');
    }
    Some(out)
}

fn header(out: &mut String, symbol: &str, what: &str, file: &str) {
    let _ = writeln!(out, "// {symbol} is {what} (in {file})");
}

/// The comment written before the element at `path` in its .proto file, if the descriptors
/// kept it.
fn comments(out: &mut String, indent: &str, file: &FileDescriptor, path: &[i32]) {
    let Some(info) = &file.file_descriptor_proto().source_code_info else {
        return;
    };
    let leading = info
        .location
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.as_deref());
    for line in leading.unwrap_or_default().trim_end().lines() {
        let _ = writeln!(out, "{indent}//{line}");
    }
}

fn service_text(out: &mut String, service: &ServiceDescriptor) {
    let file = service.parent_file();
    comments(out, "", &file, service.path());
    let _ = writeln!(out, "service {} {{", service.name());
    for method in service.methods() {
        comments(out, "  ", &file, method.path());
        let _ = writeln!(out, "  {}", rpc_line(&method));
    }
    out.push_str("}\n");
}

fn rpc_line(method: &MethodDescriptor) -> String {
    let stream = |streaming: bool| if streaming { "stream " } else { "" };
    format!(
        "rpc {}({}{}) returns ({}{});",
        method.name(),
        stream(method.is_client_streaming()),
        method.input().full_name(),
        stream(method.is_server_streaming()),
        method.output().full_name()
    )
}

fn message_text(out: &mut String, message: &MessageDescriptor, depth: usize) {
    let indent = "  ".repeat(depth);
    let file = message.parent_file();
    comments(out, &indent, &file, message.path());
    let _ = writeln!(out, "{indent}message {} {{", message.name());
    let mut oneofs_done = Vec::new();
    for field in message.fields() {
        match field.containing_oneof().filter(|o| !o.is_synthetic()) {
            Some(oneof) => {
                if oneofs_done.contains(&oneof.name().to_owned()) {
                    continue;
                }
                oneofs_done.push(oneof.name().to_owned());
                comments(out, &format!("{indent}  "), &file, oneof.path());
                let _ = writeln!(out, "{indent}  oneof {} {{", oneof.name());
                for member in oneof.fields() {
                    comments(out, &format!("{indent}    "), &file, member.path());
                    let _ = writeln!(out, "{indent}    {}", field_line(&member));
                }
                let _ = writeln!(out, "{indent}  }}");
            }
            None => {
                comments(out, &format!("{indent}  "), &file, field.path());
                let _ = writeln!(out, "{indent}  {}", field_line(&field));
            }
        }
    }
    for nested in message.child_messages().filter(|m| !m.is_map_entry()) {
        message_text(out, &nested, depth + 1);
    }
    for nested in message.child_enums() {
        enum_text(out, &nested, depth + 1);
    }
    let _ = writeln!(out, "{indent}}}");
}

fn field_line(field: &FieldDescriptor) -> String {
    let label = if field.is_map() {
        ""
    } else if field.is_list() {
        "repeated "
    } else if field.field_descriptor_proto().proto3_optional() {
        "optional "
    } else if field.cardinality() == Cardinality::Required {
        "required "
    } else {
        ""
    };
    let kind = match field.kind() {
        Kind::Message(entry) if field.is_map() => format!(
            "map<{}, {}>",
            type_name(&entry.map_entry_key_field().kind()),
            type_name(&entry.map_entry_value_field().kind())
        ),
        kind => type_name(&kind),
    };
    format!("{label}{kind} {} = {};", field.name(), field.number())
}

fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().into(),
        Kind::Enum(e) => e.full_name().into(),
    }
}

fn enum_text(out: &mut String, enumeration: &EnumDescriptor, depth: usize) {
    let indent = "  ".repeat(depth);
    let file = enumeration.parent_file();
    comments(out, &indent, &file, enumeration.path());
    let _ = writeln!(out, "{indent}enum {} {{", enumeration.name());
    for value in enumeration.values() {
        comments(out, &format!("{indent}  "), &file, value.path());
        let _ = writeln!(out, "{indent}  {} = {};", value.name(), value.number());
    }
    let _ = writeln!(out, "{indent}}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(psst_client::proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    #[test]
    fn services_read_as_proto_source() {
        let text = describe(&pool(), "psst.v1.Secrets").unwrap();
        assert!(
            text.starts_with(
                "// psst.v1.Secrets is a service (in psst/v1/psst.proto)\n\
                 // Secrets is what applications call. Every method is checked against the agent's policy for the\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\nservice Secrets {\n  \
                 // Returns one secret. Denied callers get PERMISSION_DENIED whether or not the secret exists.\n  \
                 rpc GetSecret(psst.v1.GetSecretRequest) returns (psst.v1.Secret);\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn messages_show_labels_oneofs_and_types() {
        let text = describe(&pool(), "psst.v1.BatchGetResult").unwrap();
        assert_eq!(
            text,
            "// psst.v1.BatchGetResult is a message (in psst/v1/psst.proto)\n\
             message BatchGetResult {\n  string reference = 1;\n  oneof result {\n    \
             psst.v1.Secret secret = 2;\n    psst.v1.Error error = 3;\n  }\n}\n"
        );
        let secret = describe(&pool(), "psst.v1.Secret").unwrap();
        assert!(
            secret.contains(
                "  // The backend's id of the version served.\n  string version_id = 3;\n"
            ),
            "{secret}"
        );
        let secret = describe(&pool(), "psst.v1.Secret").unwrap();
        assert!(
            secret.contains("  repeated string stages = 4;\n"),
            "{secret}"
        );
        assert!(
            secret.contains("  google.protobuf.Timestamp created_at = 5;\n"),
            "{secret}"
        );
    }

    #[test]
    fn methods_and_unknown_symbols() {
        assert_eq!(
            describe(&pool(), "psst.v1.Secrets.WhoAmI").unwrap(),
            "// psst.v1.Secrets.WhoAmI is a method (in psst/v1/psst.proto)\n\
             // Says how the agent sees the caller and what the policy grants it.\n\
             rpc WhoAmI(psst.v1.WhoAmIRequest) returns (psst.v1.WhoAmIResponse);\n"
        );
        assert_eq!(describe(&pool(), "psst.v1.Nothing"), None);
        assert_eq!(describe(&pool(), "psst.v1.Secrets.Nothing"), None);
    }
}
