//! quorumlb node: configuration, balancing, health checks and the L4/L7 data plane.

pub mod balance;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod demo;
pub mod demo_cluster;
pub mod health;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod runtime;
pub mod sticky;
pub mod tls;
