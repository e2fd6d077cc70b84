//! Helpers the projection tests share.

use chrono::Utc;
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::Event;

/// `event` as the store would hand it over at `position` (one stream, no chain: the folds under
/// test read neither).
pub fn recorded(event: &Event, position: u64) -> RecordedEvent {
    let new_event =
        Event::to_new_events(std::slice::from_ref(event), &format!("e{position}"), None).remove(0);
    RecordedEvent {
        global_position: position,
        stream_id: "s".into(),
        stream_revision: 0,
        event_id: new_event.event_id,
        event_type: new_event.event_type,
        schema_version: new_event.schema_version,
        recorded_at: Utc::now(),
        correlation_id: None,
        causation_id: None,
        payload: new_event.payload,
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}
