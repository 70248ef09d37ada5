//! Router state: the backend, the options and the login limiter, shared by handlers.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::limit::{LoginLimiter, LoginLimits};
use crate::backend::DynBackend;

/// How the admin listener behaves. `Default` is what a node uses unless its config
/// says otherwise.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Mark the session cookie `Secure`: set it when the listener serves HTTPS.
    pub secure_cookies: bool,
    /// How long a login lasts.
    pub session_ttl: Duration,
    pub login_limits: LoginLimits,
    /// Period of SSE `stats` events.
    pub stats_interval: Duration,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            login_limits: LoginLimits::default(),
            stats_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub(crate) backend: Arc<dyn DynBackend>,
    pub(crate) options: Arc<AdminOptions>,
    pub(crate) limiter: Arc<LoginLimiter>,
}

impl AppState {
    pub(crate) fn new(backend: Arc<dyn DynBackend>, options: AdminOptions) -> AppState {
        let limiter = Arc::new(LoginLimiter::new(options.login_limits));
        AppState { backend, options: Arc::new(options), limiter }
    }
}
