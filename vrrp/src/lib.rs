//! VIP ownership: lease rules, the leader's VIP controller, address add/remove over
//! netlink, gratuitous ARP and IPv6 neighbour advertisements, nftables fencing and
//! the owner-side runtime. Nothing here talks to Raft: the node wires this crate to
//! the Raft crate through [`owner::Renewer`] and the plain data of [`controller`].

pub mod addr;
pub mod announce;
pub mod controller;
pub mod error;
pub mod fence;
pub mod lease;
pub mod owner;
pub mod vip;

pub use error::{Error, Result};
pub use vip::{NodeId, VipAddress};
