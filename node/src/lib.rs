//! quorumlb node: configuration, balancing, health checks and the L4/L7 data plane.

pub mod balance;
pub mod clock;
pub mod config;
pub mod demo;
pub mod health;
pub mod logging;
pub mod proxy;
pub mod runtime;
