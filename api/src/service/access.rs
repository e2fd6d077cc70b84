//! Who may do what, decided in one place for the API and the console alike: every admin
//! operation names the [`Permission`] it needs (`Operation::permission`), and [`authorize`]
//! asks the domain whether the caller's role has it. While an operation runs, its actor is
//! known to [`AppState::execute`](crate::state::AppState::execute), which records it in the
//! payload of every event the operation appends ([`stamp`]).

use std::future::Future;

use paycenter_domain::envelope::NewEvent;
use paycenter_domain::operators::stamp_actor;
pub use paycenter_domain::operators::{Actor, Permission};

use crate::error::{ErrorCode, Refusal};

tokio::task_local! {
    static ACTOR: Actor;
}

/// Refuses `actor` when its role does not have `permission` (`403 forbidden`).
pub fn authorize(actor: &Actor, permission: Permission) -> Result<(), Refusal> {
    if actor.may(permission) {
        return Ok(());
    }
    let role = match actor {
        Actor::Operator { role, .. } => role.as_str(),
        Actor::AdminToken => "admin",
    };
    Err(Refusal::new(
        ErrorCode::Forbidden,
        format!(
            "the {role} role may not do this ({}); an admin can change the role",
            permission_words(permission)
        ),
    ))
}

fn permission_words(permission: Permission) -> &'static str {
    match permission {
        Permission::Read => "read",
        Permission::Onboard => "onboard merchants, accounts and apps",
        Permission::ManageOperators => "manage operators",
        Permission::Refund => "refund",
        Permission::Reconcile => "reconcile",
        Permission::Audit => "audit",
        Permission::Notifications => "redeliver notifications",
        Permission::Projections => "rebuild projections",
        Permission::Alerts => "manage alert destinations",
    }
}

/// Runs `work` on behalf of `actor`: the events it appends record who asked.
pub async fn acting_as<F: Future>(actor: Actor, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
}

/// Adds the current actor, if any, to the payload of each event about to be appended.
pub fn stamp(events: &mut [NewEvent]) {
    let _ = ACTOR.try_with(|actor| {
        for event in events.iter_mut() {
            event.payload = stamp_actor(&event.payload, actor);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use paycenter_domain::ids::OperatorId;
    use paycenter_domain::operators::{recorded_actor, OperatorRole};

    fn viewer() -> Actor {
        Actor::Operator {
            operator_id: OperatorId::parse("op_1").unwrap(),
            email: "v@example.com".to_owned(),
            role: OperatorRole::Viewer,
        }
    }

    #[test]
    fn a_viewer_reads_and_is_refused_the_rest() {
        assert!(authorize(&viewer(), Permission::Read).is_ok());
        let refusal = authorize(&viewer(), Permission::Refund).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::Forbidden);
        assert!(refusal.message.contains("viewer"), "{}", refusal.message);
        assert!(authorize(&Actor::AdminToken, Permission::ManageOperators).is_ok());
    }

    #[tokio::test]
    async fn events_appended_while_acting_record_the_actor_and_others_do_not() {
        let event = || NewEvent {
            event_id: uuid::Uuid::nil(),
            event_type: "merchant.onboarded".to_owned(),
            schema_version: 1,
            correlation_id: None,
            causation_id: None,
            payload: r#"{"merchant_id":"mch_1"}"#.to_owned(),
        };
        let mut outside = [event()];
        stamp(&mut outside);
        assert_eq!(recorded_actor(&outside[0].payload), None);
        let stamped = acting_as(viewer(), async {
            let mut inside = [event()];
            stamp(&mut inside);
            inside
        })
        .await;
        assert_eq!(recorded_actor(&stamped[0].payload), Some(viewer()));
    }
}
