//! The crate's one error type. Renewal failures are not here: they belong to the
//! node's [`crate::owner::Renewer`] implementation and are only logged by the owner.

use std::io;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while managing a VIP on this host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid VIP address {input:?}: {reason}")]
    InvalidAddress { input: String, reason: &'static str },
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("interface {0:?} not found in this network namespace")]
    NoSuchInterface(String),
    #[error("interface {0:?} has no MAC address")]
    NoMac(String),
    #[error("netlink {op} failed: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("nft exited with {status}: {stderr}")]
    Nft { status: String, stderr: String },
}

impl Error {
    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Io { op: op.into(), source }
    }
}
