//! quorumlb node: configuration, balancing, health checks and the L4/L7 data plane.
