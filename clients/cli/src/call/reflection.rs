//! What the agent serves, from its server reflection (`grpc.reflection.v1`): the service names,
//! and the file descriptors that define them, with their imports, in one `DescriptorPool`.

use std::collections::{HashMap, VecDeque};

use prost::Message as _;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use psst_client::{Code, Error};
use tonic::transport::Channel;
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

pub struct Reflection {
    client: ServerReflectionClient<Channel>,
    pool: DescriptorPool,
}

impl Reflection {
    pub fn new(channel: Channel) -> Self {
        Self {
            client: ServerReflectionClient::new(channel),
            pool: DescriptorPool::new(),
        }
    }

    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The fully qualified names of the services the agent serves, sorted.
    pub async fn list_services(&mut self) -> Result<Vec<String>, Error> {
        match self
            .ask(MessageRequest::ListServices(String::new()))
            .await?
        {
            MessageResponse::ListServicesResponse(list) => {
                let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                names.sort();
                Ok(names)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Adds the file that defines `symbol` (a service, method, message, enum or field, by its
    /// full name) to the pool, with everything it imports.
    pub async fn load_symbol(&mut self, symbol: &str) -> Result<(), Error> {
        let files = self
            .files(MessageRequest::FileContainingSymbol(symbol.to_owned()))
            .await?;
        self.add_with_imports(files).await
    }

    async fn add_with_imports(&mut self, files: Vec<FileDescriptorProto>) -> Result<(), Error> {
        // tonic's reflection answers with the one file, not its imports: ask for each missing
        // import by name until the set is closed.
        let mut collected: HashMap<String, FileDescriptorProto> = HashMap::new();
        let mut queue: VecDeque<FileDescriptorProto> = files.into();
        while let Some(file) = queue.pop_front() {
            for import in &file.dependency {
                let known = collected.contains_key(import)
                    || self.pool.get_file_by_name(import).is_some()
                    || queue.iter().any(|f| f.name() == import);
                if !known {
                    queue.extend(
                        self.files(MessageRequest::FileByFilename(import.clone()))
                            .await?,
                    );
                }
            }
            collected.insert(file.name().to_owned(), file);
        }
        self.pool
            .add_file_descriptor_protos(collected.into_values())
            .map_err(|e| {
                Error::new(
                    Code::Internal,
                    format!("the agent's reflection sent descriptors that do not fit: {e}"),
                )
            })
    }

    async fn files(&mut self, request: MessageRequest) -> Result<Vec<FileDescriptorProto>, Error> {
        match self.ask(request).await? {
            MessageResponse::FileDescriptorResponse(response) => response
                .file_descriptor_proto
                .iter()
                .map(|bytes| {
                    FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
                        Error::new(
                            Code::Internal,
                            format!("the agent's reflection sent a bad file descriptor: {e}"),
                        )
                    })
                })
                .collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// One request on its own reflection stream: the stream is bidirectional so that a client
    /// may pipeline requests, which these few look-ups do not need.
    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, Error> {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut responses = self
            .client
            .server_reflection_info(tokio_stream::once(request))
            .await?
            .into_inner();
        let response = responses.message().await?.ok_or_else(|| {
            Error::new(
                Code::Internal,
                "the agent's reflection closed without an answer",
            )
        })?;
        match response.message_response {
            Some(MessageResponse::ErrorResponse(e)) => {
                Err(Error::new(Code::from(e.error_code), e.error_message))
            }
            Some(answer) => Ok(answer),
            None => Err(Error::new(
                Code::Internal,
                "the agent's reflection sent an empty answer",
            )),
        }
    }
}

fn unexpected(response: &MessageResponse) -> Error {
    let kind = match response {
        MessageResponse::FileDescriptorResponse(_) => "file descriptors",
        MessageResponse::AllExtensionNumbersResponse(_) => "extension numbers",
        MessageResponse::ListServicesResponse(_) => "a service list",
        MessageResponse::ErrorResponse(_) => "an error",
    };
    Error::new(
        Code::Internal,
        format!("the agent's reflection answered with {kind}, not what was asked"),
    )
}
