//! Admission limits in front of the proxies: connection counts per listener and per
//! client IP (`conn`). What happens to a connection after admission is not here.

pub mod conn;
pub mod rate;
