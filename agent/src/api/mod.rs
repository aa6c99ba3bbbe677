//! gRPC handlers: translate protobuf to the core's calls and the core's errors to statuses.
//! No business logic lives here.

mod admin;
pub(crate) mod secrets;

use std::time::SystemTime;

use tonic::{Request, Status};

pub(crate) use admin::AdminApi;
pub(crate) use secrets::{get_secret, SecretsApi};

use crate::{agent::Error, identity::Caller, transport::ConnectedCaller};

/// The caller attached to the request's connection by the transport.
fn caller<T>(request: &Request<T>) -> Result<&Caller, Status> {
    match request.extensions().get::<ConnectedCaller>() {
        Some(connected) => self::connected(connected),
        None => Err(Status::unauthenticated(
            "the connection carries no caller identity",
        )),
    }
}

/// The caller of a connection, or why it has none.
pub(crate) fn connected(connected: &ConnectedCaller) -> Result<&Caller, Status> {
    match connected.as_ref() {
        Ok(caller) => Ok(caller),
        Err(e) => Err(Status::unauthenticated(e.to_string())),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = code(&e);
        Status::new(code, e.to_string())
    }
}

pub(crate) fn code(e: &Error) -> tonic::Code {
    use tonic::Code;
    match e {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::NotFound(_) => Code::NotFound,
        Error::Unavailable(_) => Code::Unavailable,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::Unimplemented(_) => Code::Unimplemented,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::DataLoss(_) => Code::DataLoss,
        Error::Internal(_) => Code::Internal,
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}
