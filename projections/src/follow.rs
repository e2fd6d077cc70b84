//! Keeps a shared [`ReadModel`] up to date with the log: a thread that catches up from the
//! model's position, then applies each new event as it becomes durable.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use paycenter_store::{EventStore, Subscription};

use crate::ReadModel;

/// Called after each batch of applied events with the new position.
pub type OnAdvance = Box<dyn Fn(u64) + Send>;

/// Events applied under one write lock, so readers are never starved during catch-up.
const MAX_EVENTS_PER_LOCK: usize = 1_024;

/// Folds the whole log into `model` now (blocking), then keeps folding on a thread until the
/// process ends. `on_advance` hears every new position.
pub fn follow(
    store: Arc<dyn EventStore>,
    model: Arc<RwLock<ReadModel>>,
    on_advance: OnAdvance,
) -> std::io::Result<()> {
    let start = model.read().expect("read model lock").position + 1;
    let mut subscription = Subscription::new(store, start);
    catch_up(&mut subscription, &model, &on_advance);
    std::thread::Builder::new()
        .name("read-model".to_owned())
        .spawn(move || loop {
            catch_up(&mut subscription, &model, &on_advance);
        })?;
    Ok(())
}

fn catch_up(subscription: &mut Subscription, model: &RwLock<ReadModel>, on_advance: &OnAdvance) {
    loop {
        let first = match subscription.next_timeout(Duration::from_millis(200)) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, "reading the log for the read model failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
        };
        let mut guard = model.write().expect("read model lock");
        // An online rebuild may have swapped in a model that is already past this event.
        if first.global_position > guard.position {
            guard.apply(&first);
        }
        let mut n_applied = 1;
        while n_applied < MAX_EVENTS_PER_LOCK {
            match subscription.next_timeout(Duration::ZERO) {
                Ok(Some(event)) if event.global_position > guard.position => guard.apply(&event),
                Ok(Some(_)) => {}
                _ => break,
            }
            n_applied += 1;
        }
        let position = guard.position;
        drop(guard);
        on_advance(position);
    }
}
