//! Shared helpers for cross-crate integration tests: backends, clients, process handling.
