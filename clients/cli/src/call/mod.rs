//! `psst call`: any method the agent serves, JSON in and JSON out, grpcurl-style.
//!
//! Nothing here is generated from psst.proto. Services, methods and message types come from the
//! agent's server reflection at run time; requests and responses are `DynamicMessage`s sent
//! through tonic's generic client with a codec for them ([`codec`]); JSON follows the proto3
//! JSON mapping (prost-reflect's serde support: camelCase names, bytes as base64, 64-bit
//! integers as strings, fields at their default value left out). A method added to the agent is
//! callable with the psst already installed.

mod codec;
mod describe;
mod reflection;
mod resolve;

use std::io::{Read, Write};

use anyhow::Context;
use clap::Args;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use psst_client::{Client, Code};
use tonic::{codegen::http::uri::PathAndQuery, transport::Channel};

use crate::{exit, InvalidInput, NotServed};
use codec::DynamicCodec;
use reflection::Reflection;
use resolve::{ResolveError, ServiceInfo};

#[derive(Args)]
#[command(
    about = "Call any method the agent serves, with JSON in and JSON out",
    long_about = "Call any method the agent serves, with JSON in and JSON out (grpcurl-style).\n\n\
                  The API is learnt from the agent's server reflection at run time, so methods added \
                  to the agent work without a new psst. The request is proto3 JSON; an unknown field \
                  or bad JSON is refused before anything is sent (exit 3). Each response message is \
                  printed as one line of JSON: server-streaming methods print one line per message \
                  as it arrives. Errors exit with the codes below, from the gRPC status.",
    after_help = "METHOD is psst.v1.Secrets/GetSecret, Secrets/GetSecret, psst.v1.Secrets.GetSecret \
                  or GetSecret alone when only one service has it. Without REQUEST an empty message \
                  is sent. A request on the command line is visible to other users in `ps`: give \
                  values (PutSecret) on stdin with `-`. Bytes fields are base64 in JSON.\n\n\
                  Examples:\n  \
                  psst call --list\n  \
                  psst call --list psst.v1.Secrets\n  \
                  psst call --describe psst.v1.Secret\n  \
                  psst call GetSecret '{\"reference\": \"local:demo/db-password\"}'\n  \
                  psst call psst.v1.Secrets/WhoAmI\n  \
                  psst call grpc.health.v1.Health/Watch\n  \
                  printf '{\"reference\": \"local:demo/t\", \"value\": \"%s\"}' \"$(base64 < token)\" \\\n    \
                  | psst call PutSecret -"
)]
pub struct CallArgs {
    /// The method to call.
    #[arg(
        value_name = "METHOD",
        required_unless_present_any = ["list", "describe"],
        conflicts_with_all = ["list", "describe"]
    )]
    method: Option<String>,
    /// The request as JSON, or `-` to read it from stdin.
    #[arg(value_name = "REQUEST")]
    request: Option<String>,
    /// List the services, or with SERVICE that service's methods.
    #[arg(long, value_name = "SERVICE", num_args = 0..=1, conflicts_with = "describe")]
    list: Option<Option<String>>,
    /// Print the definition of a service, method, message or enum (by full name).
    #[arg(long, value_name = "SYMBOL")]
    describe: Option<String>,
}

pub async fn run(agent: &psst_client::ConnectOptions, args: CallArgs) -> anyhow::Result<u8> {
    let channel = Client::connect_with(agent).await?.channel();
    let mut reflection = Reflection::new(channel.clone());
    let mut stdout = std::io::stdout().lock();

    if let Some(service) = args.list {
        let names = reflection.list_services().await?;
        match service {
            None => {
                for name in names {
                    writeln!(stdout, "{name}")?;
                }
            }
            Some(service) => {
                let catalog = catalog(&mut reflection, &names).await;
                let service = resolve::find_service(&catalog, &service).map_err(failure)?;
                for method in &service.methods {
                    writeln!(stdout, "{}/{method}", service.name)?;
                }
            }
        }
        return Ok(exit::OK);
    }

    if let Some(symbol) = args.describe {
        // Accept the call syntax for methods too.
        let symbol = symbol.replace('/', ".");
        reflection
            .load_symbol(&symbol)
            .await
            .map_err(|e| match e.code() {
                Code::NotFound => anyhow::Error::from(NotServed(format!(
                    "the agent's reflection knows no symbol '{symbol}'"
                ))),
                _ => e.into(),
            })?;
        let text = describe::describe(reflection.pool(), &symbol).ok_or_else(|| {
            NotServed(format!(
                "{symbol} is not a service, method, message or enum"
            ))
        })?;
        write!(stdout, "{text}")?;
        return Ok(exit::OK);
    }

    let spec = args
        .method
        .expect("clap requires METHOD without --list or --describe");
    let names = reflection.list_services().await?;
    let catalog = catalog(&mut reflection, &names).await;
    let (service, method) = resolve::resolve(&catalog, &spec).map_err(failure)?;
    let method = reflection
        .pool()
        .get_service_by_name(&service.name)
        .and_then(|s| s.methods().find(|m| m.name() == method))
        .expect("the catalog lists only methods of loaded services");

    let text = match args.request.as_deref() {
        None => String::new(),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the request from stdin")?;
            text
        }
        Some(json) => json.to_owned(),
    };
    let requests = requests_for(&method, &text)?;
    drop(stdout);
    invoke(channel, &method, requests).await?;
    Ok(exit::OK)
}

/// The services whose descriptors reflection gives, with their methods. A service it names but
/// cannot describe is left out rather than failing every call.
async fn catalog(reflection: &mut Reflection, names: &[String]) -> Vec<ServiceInfo> {
    let mut services = Vec::new();
    for name in names {
        if reflection.load_symbol(name).await.is_err() {
            continue;
        }
        if let Some(service) = reflection.pool().get_service_by_name(name) {
            services.push(ServiceInfo {
                name: name.clone(),
                methods: service.methods().map(|m| m.name().to_owned()).collect(),
            });
        }
    }
    services
}

fn failure(e: ResolveError) -> anyhow::Error {
    if e.is_malformed() {
        InvalidInput(e.to_string()).into()
    } else {
        NotServed(e.to_string()).into()
    }
}

/// Parses the request text: JSON values one after another (several only for client-streaming
/// methods). No text means an empty request, as in grpcurl, except for a client stream, which
/// then sends nothing.
fn requests_for(
    method: &MethodDescriptor,
    text: &str,
) -> Result<Vec<DynamicMessage>, InvalidInput> {
    let mut requests = parse_requests(&method.input(), text)?;
    if !method.is_client_streaming() {
        match requests.len() {
            0 => requests.push(DynamicMessage::new(method.input())),
            1 => {}
            n => {
                return Err(InvalidInput(format!(
                    "{} takes one request message, and {n} were given",
                    method.full_name()
                )))
            }
        }
    }
    Ok(requests)
}

/// Every JSON value in `text`, each checked against the message type: unknown fields and
/// values of the wrong type are refused, so nothing half-understood is sent.
pub fn parse_requests(
    input: &MessageDescriptor,
    text: &str,
) -> Result<Vec<DynamicMessage>, InvalidInput> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .enumerate()
        .map(|(index, value)| {
            let ordinal = if index == 0 {
                String::new()
            } else {
                format!(" (message {})", index + 1)
            };
            let value = value.map_err(|e| {
                InvalidInput(format!("the request{ordinal} is not valid JSON: {e}"))
            })?;
            DynamicMessage::deserialize(input.clone(), value).map_err(|e| {
                // A wrong field name is safe to repeat; a wrong value may be quoted in the
                // error ("invalid type: integer `123456`", a bad base64 byte), and it may be a
                // secret.
                let e = e.to_string();
                let detail = if e.starts_with("unrecognized field name") {
                    e
                } else {
                    "a value of the wrong type, or bytes that are not base64 (the details are \
                     withheld: they may quote the value)"
                        .to_owned()
                };
                InvalidInput(format!(
                    "the request{ordinal} is not a valid {}: {detail}",
                    input.full_name()
                ))
            })
        })
        .collect()
}

/// Sends the requests the way the method's kind wants them and prints each response message as
/// one JSON line, flushed as it arrives (so a stream can be followed).
async fn invoke(
    channel: Channel,
    method: &MethodDescriptor,
    requests: Vec<DynamicMessage>,
) -> anyhow::Result<()> {
    let path = PathAndQuery::try_from(format!(
        "/{}/{}",
        method.parent_service().full_name(),
        method.name()
    ))
    .context("building the method path")?;
    let codec = DynamicCodec::new(method.output());
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| {
        psst_client::Error::new(Code::Unavailable, format!("the agent is not ready: {e}"))
    })?;
    let single = || {
        requests
            .first()
            .cloned()
            .expect("one request for a method that is not client-streaming")
    };
    let status = |s: tonic::Status| anyhow::Error::from(psst_client::Error::from(s));
    match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => {
            let response = grpc
                .unary(tonic::Request::new(single()), path, codec)
                .await
                .map_err(status)?;
            print(&response.into_inner())?;
        }
        (true, false) => {
            let stream = tokio_stream::iter(requests.clone());
            let response = grpc
                .client_streaming(tonic::Request::new(stream), path, codec)
                .await
                .map_err(status)?;
            print(&response.into_inner())?;
        }
        (client_streaming, true) => {
            let mut responses = if client_streaming {
                let stream = tokio_stream::iter(requests.clone());
                grpc.streaming(tonic::Request::new(stream), path, codec)
                    .await
            } else {
                grpc.server_streaming(tonic::Request::new(single()), path, codec)
                    .await
            }
            .map_err(status)?
            .into_inner();
            while let Some(message) = responses.message().await.map_err(status)? {
                print(&message)?;
            }
        }
    }
    Ok(())
}

fn print(message: &DynamicMessage) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, message).context("writing the response as JSON")?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::{DescriptorPool, ReflectMessage};

    fn method(name: &str) -> MethodDescriptor {
        let pool = DescriptorPool::decode(psst_client::proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = pool.get_service_by_name("psst.v1.Secrets").unwrap();
        let found = service.methods().find(|m| m.name() == name).unwrap();
        found
    }

    #[test]
    fn requests_accept_proto_and_json_field_names_and_base64_bytes() {
        let put = method("PutSecret");
        let requests =
            requests_for(&put, r#"{"reference": "local:a", "value": "aHVudGVyMg=="}"#).unwrap();
        assert_eq!(requests.len(), 1);
        let value = requests[0].get_field_by_name("value").unwrap();
        assert_eq!(value.as_bytes().unwrap().as_ref(), b"hunter2");
        let batch = method("BatchGetSecrets");
        assert!(requests_for(&batch, r#"{"references": ["local:a", "local:b"]}"#).is_ok());
    }

    #[test]
    fn no_text_is_an_empty_request() {
        let requests = requests_for(&method("WhoAmI"), "  \n").unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].descriptor().full_name(),
            "psst.v1.WhoAmIRequest"
        );
        assert!(prost::Message::encode_to_vec(&requests[0]).is_empty());
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let get = method("GetSecret");
        for (text, says) in [
            (
                r#"{"reference": "local:a""#,
                "is not valid JSON: EOF while parsing an object",
            ),
            (
                r#"{"refrence": "local:a"}"#,
                "is not a valid psst.v1.GetSecretRequest: unrecognized field name 'refrence'",
            ),
            (
                r#"{"reference": 7}"#,
                "is not a valid psst.v1.GetSecretRequest",
            ),
            (
                r#"{"reference": "a"} {"reference": "b"}"#,
                "psst.v1.Secrets.GetSecret takes one request message, and 2 were given",
            ),
        ] {
            let err = requests_for(&get, text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
            assert!(!err.contains("`7`"), "a value is never quoted: {err}");
        }
    }
}
