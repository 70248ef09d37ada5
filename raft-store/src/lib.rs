//! Raft consensus for quorumlb: openraft type config, sled-backed log and state machine, authenticated cluster RPC.
