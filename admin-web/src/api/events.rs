//! `GET /api/v1/events`: Server-Sent Events. A `stats` event (per-pool requests/s, p99
//! latency, errors/s) every `stats_interval`; a failed sample becomes an `error` event
//! and the stream goes on.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::model::StatsSnapshot;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Live stats stream (`text/event-stream`, events named `stats`).
#[utoipa::path(get, path = "/api/v1/events", tag = "stats",
    responses((status = 200, description = "one `stats` event per second", content_type = "text/event-stream", body = StatsSnapshot)))]
async fn events(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut tick = tokio::time::interval(s.options.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let stream = futures_util::stream::unfold((s, tick), |(s, mut tick)| async move {
        tick.tick().await;
        let event = match s.backend.stats().await {
            Ok(snap) => Event::default().event("stats").json_data(&snap).unwrap_or_else(|_| Event::default()),
            Err(e) => Event::default().event("error").data(e.to_string()),
        };
        Some((Ok(event), (s, tick)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
