//! The console's operators and the trail of what was done in whose name: every event whose
//! payload records an actor (`paycenter_domain::operators::Actor`) is listed by position, so
//! the console's audit trail is a descending range from the end.

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::{OperatorAccessChanged, OperatorCreated};
use paycenter_domain::ids::OperatorId;
use paycenter_domain::operators::{recorded_actor, Actor, OperatorRole};
use serde::{Deserialize, Serialize};

use super::ReadModel;
use crate::tables::{DescendingStep, Key, TableError};

/// An operator as the console signs them in.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorView {
    pub operator_id: OperatorId,
    pub email: String,
    pub name: String,
    pub role: OperatorRole,
    /// The argon2id PHC string; never leaves the service.
    pub password_hash: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// One entry of the trail: an event recorded in someone's name.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEntry {
    pub global_position: u64,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    pub stream_id: String,
    pub actor: Actor,
}

impl ReadModel {
    pub(super) fn apply_operator_created(&mut self, created: OperatorCreated) {
        self.operators.insert(
            created.operator_id.clone(),
            OperatorView {
                operator_id: created.operator_id,
                email: created.email,
                name: created.name,
                role: created.role,
                password_hash: created.password_hash,
                enabled: true,
                created_at: created.created_at,
            },
        );
    }

    pub(super) fn apply_operator_access(&mut self, changed: OperatorAccessChanged) {
        if let Some(operator) = self.operators.get_mut(&changed.operator_id) {
            operator.enabled = changed.enabled;
        }
    }

    /// Lists `recorded` in the trail when its payload names who asked for it.
    pub(super) fn record_action(&mut self, recorded: &RecordedEvent) {
        let Some(actor) = recorded_actor(&recorded.payload) else {
            return;
        };
        self.actions.insert(
            &recorded.global_position,
            ActionEntry {
                global_position: recorded.global_position,
                recorded_at: recorded.recorded_at,
                event_type: recorded.event_type.clone(),
                stream_id: recorded.stream_id.clone(),
                actor,
            },
        );
    }

    /// The operator `operator_id`.
    pub fn operator(&self, operator_id: &OperatorId) -> Option<&OperatorView> {
        self.operators.get(operator_id)
    }

    /// Every operator, by e-mail address.
    pub fn operators(&self) -> Vec<&OperatorView> {
        let mut operators: Vec<&OperatorView> = self.operators.values().collect();
        operators.sort_by(|a, b| a.email.cmp(&b.email));
        operators
    }

    /// One step of the trail, newest first: entries below position `below` (all when `None`).
    pub fn actions_step(
        &self,
        below: Option<u64>,
    ) -> Result<DescendingStep<ActionEntry>, TableError> {
        let end = below.unwrap_or(u64::MAX).encoded();
        self.actions
            .range_desc(&0u64.encoded(), &end, super::LIST_STEP_ROWS)
    }
}
