//! One error type at the node's boundary, carrying the engine's [`ErrorClass`]; the RPC error
//! kind derives from the class in one `match`, and the client maps it back in another.

use net_mesh_engine::{Classify, ErrorClass};
use net_mesh_rpc::RpcError;
use net_mesh_rpc::rpc::ErrorKind;

/// A failed node call: its class and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    pub class: ErrorClass,
    pub message: String,
}

impl NodeError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> NodeError {
        NodeError {
            class,
            message: message.into(),
        }
    }

    /// Any classified error, with its message.
    pub fn from_classified<E: Classify + std::fmt::Display>(e: &E) -> NodeError {
        NodeError::new(e.class(), e.to_string())
    }

    /// The RPC error a handler returns for it.
    pub fn to_rpc(&self) -> RpcError {
        let kind = match self.class {
            ErrorClass::Integrity => ErrorKind::DataLoss,
            ErrorClass::Refused => ErrorKind::FailedPrecondition,
            ErrorClass::NotFound => ErrorKind::NotFound,
            ErrorClass::Busy => ErrorKind::Unavailable,
            ErrorClass::Io => ErrorKind::Internal,
            ErrorClass::Usage => ErrorKind::InvalidArgument,
        };
        RpcError::new(kind, self.message.clone())
    }

    /// The error a client reports for an RPC error.
    pub fn from_rpc(e: &RpcError) -> NodeError {
        let class = match e.kind {
            ErrorKind::DataLoss => ErrorClass::Integrity,
            ErrorKind::FailedPrecondition | ErrorKind::PermissionDenied => ErrorClass::Refused,
            ErrorKind::NotFound => ErrorClass::NotFound,
            ErrorKind::InvalidArgument | ErrorKind::UnknownMethod => ErrorClass::Usage,
            ErrorKind::ResourceExhausted | ErrorKind::Unavailable => ErrorClass::Busy,
            _ => ErrorClass::Io,
        };
        NodeError::new(class, e.message.clone())
    }
}

impl Classify for NodeError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

impl<E: Classify + std::fmt::Display> From<&E> for NodeError {
    fn from(e: &E) -> Self {
        NodeError::from_classified(e)
    }
}

/// `Result` of node operations.
pub type NodeResult<T> = Result<T, NodeError>;

/// Converts a classified error into a [`NodeError`] (for `?`).
pub(crate) trait Classified<T> {
    fn node_err(self) -> NodeResult<T>;
}

impl<T, E: Classify + std::fmt::Display> Classified<T> for Result<T, E> {
    fn node_err(self) -> NodeResult<T> {
        self.map_err(|e| NodeError::from_classified(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_survives_the_wire() {
        for class in [
            ErrorClass::Integrity,
            ErrorClass::Refused,
            ErrorClass::NotFound,
            ErrorClass::Busy,
            ErrorClass::Io,
            ErrorClass::Usage,
        ] {
            let e = NodeError::new(class, "x");
            assert_eq!(NodeError::from_rpc(&e.to_rpc()).class, class);
        }
    }
}
