//! Admin REST API (/api/v1), authentication, live stats and the embedded web panel.
