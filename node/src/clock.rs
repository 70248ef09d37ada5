//! A process-local monotonic millisecond clock for cheap timestamps in atomics
//! (passive ejection windows, idle checks). Never compared across nodes.

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process; starts at 1 so 0 can mean "unset".
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] as it was (or will be) at `t`: for a caller that already read the
/// clock, so the request path reads it once for several timestamps.
pub fn ms_at(t: Instant) -> u64 {
    t.saturating_duration_since(origin()).as_millis() as u64 + 1
}
