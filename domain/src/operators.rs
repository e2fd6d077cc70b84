//! The console's operators: who they are, and what each role may do. The service asks
//! [`OperatorRole::may`] before every admin operation, whether it came from the API or from a
//! page of the console, so a role is enforced in one place.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::events::{Event, OperatorAccessChanged, OperatorCreated};
use crate::ids::OperatorId;
pub use crate::vocabulary::OperatorRole;

/// Who asked for an admin action: recorded beside the event's own fields, as the payload's
/// top-level `actor` (see [`stamp_actor`]), so the hash chain covers it and every event type
/// keeps its schema. Apps' own commands carry none: the stream says which app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// Whoever holds `PAYCENTER_ADMIN_TOKEN` (bootstrap and automation).
    AdminToken,
    /// A named operator, through the console or the API.
    Operator {
        /// Who.
        operator_id: OperatorId,
        /// Their address when they acted.
        email: String,
        /// Their role when they acted.
        role: OperatorRole,
    },
}

impl Actor {
    /// Whether the actor may do what `permission` covers (the admin token may do everything).
    pub fn may(&self, permission: Permission) -> bool {
        match self {
            Actor::AdminToken => true,
            Actor::Operator { role, .. } => role.may(permission),
        }
    }

    /// Who, in a few words: the operator's e-mail address, or "admin token".
    pub fn label(&self) -> &str {
        match self {
            Actor::AdminToken => "admin token",
            Actor::Operator { email, .. } => email,
        }
    }
}

/// The payload JSON object `payload` with `actor` added at its top level. A payload that is
/// not an object (no event's is) comes back as it was.
pub fn stamp_actor(payload: &str, actor: &Actor) -> String {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(payload) else {
        return payload.to_owned();
    };
    object.insert(
        "actor".to_owned(),
        serde_json::to_value(actor).expect("an actor serializes"),
    );
    serde_json::Value::Object(object).to_string()
}

/// The actor a payload records, if any.
pub fn recorded_actor(payload: &str) -> Option<Actor> {
    // Only a key can hold `"actor":` unescaped; most payloads are passed over without parsing.
    if !payload.contains("\"actor\":") {
        return None;
    }
    #[derive(Deserialize)]
    struct Stamped {
        actor: Option<Actor>,
    }
    serde_json::from_str::<Stamped>(payload).ok()?.actor
}

/// The longest e-mail address taken (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// What an admin operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See merchants, accounts, apps, payments, refunds, reconciliations, statistics.
    Read,
    /// Onboard merchants, activate and rotate channel accounts, register and rotate apps, turn
    /// them off and on.
    Onboard,
    /// Create and disable operators.
    ManageOperators,
    /// Refund a payment.
    Refund,
    /// Reconcile a day, upload a bill.
    Reconcile,
    /// Balances and audits of the ledger.
    Audit,
    /// Redeliver webhooks.
    Notifications,
    /// Rebuild read models.
    Projections,
    /// Add, delete and test alert destinations.
    Alerts,
}

impl OperatorRole {
    /// Whether this role may do what `permission` covers.
    pub fn may(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            OperatorRole::Admin => true,
            OperatorRole::Finance => matches!(permission, Read | Refund | Reconcile | Audit),
            OperatorRole::Ops => {
                matches!(permission, Read | Notifications | Projections | Alerts)
            }
            OperatorRole::Viewer => permission == Read,
        }
    }
}

/// The address as kept: trimmed and lowercase, when it looks like one (`local@domain`, no
/// spaces or control characters, at most [`MAX_EMAIL_CHARS`]).
pub fn normalize_email(email: &str) -> Result<String, DomainError> {
    let email = email.trim().to_lowercase();
    let invalid = |reason: &str| DomainError::InvalidField {
        field: "email",
        reason: reason.to_owned(),
    };
    if email.is_empty() || email.chars().count() > MAX_EMAIL_CHARS {
        return Err(invalid("must be 1 to 254 characters"));
    }
    if email
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(invalid("must not hold spaces, control characters or <>"));
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@') =>
        {
            Ok(email)
        }
        _ => Err(invalid("must be an address like name@example.com")),
    }
}

/// Creates an operator. `exists` is whether the operator's stream (derived from the e-mail
/// address) already has events.
pub fn create_operator(exists: bool, command: OperatorCreated) -> Result<Vec<Event>, DomainError> {
    if exists {
        return Err(DomainError::AlreadyExists {
            kind: "operator",
            id: command.email.clone(),
        });
    }
    crate::registry::check_name("name", &command.name)?;
    debug_assert_eq!(
        normalize_email(&command.email).ok().as_ref(),
        Some(&command.email)
    );
    Ok(vec![Event::OperatorCreated(command)])
}

/// Disables or enables an operator; nothing when it already is so.
pub fn change_operator_access(
    history: &[Event],
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let mut operator_id = None;
    let mut currently_enabled = true;
    for event in history {
        match event {
            Event::OperatorCreated(created) => operator_id = Some(created.operator_id.clone()),
            Event::OperatorAccessChanged(changed) => currently_enabled = changed.enabled,
            _ => {}
        }
    }
    let Some(operator_id) = operator_id else {
        return Err(DomainError::OperatorNotFound {
            operator_id: String::new(),
        });
    };
    if currently_enabled == enabled {
        return Ok(Vec::new());
    }
    Ok(vec![Event::OperatorAccessChanged(OperatorAccessChanged {
        operator_id,
        enabled,
        changed_at: now,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_what_its_description_says() {
        use Permission::*;
        let all = [
            Read,
            Onboard,
            ManageOperators,
            Refund,
            Reconcile,
            Audit,
            Notifications,
            Projections,
            Alerts,
        ];
        assert!(all.iter().all(|p| OperatorRole::Admin.may(*p)));
        let finance: Vec<_> = all
            .iter()
            .filter(|p| OperatorRole::Finance.may(**p))
            .collect();
        assert_eq!(finance, [&Read, &Refund, &Reconcile, &Audit]);
        let ops: Vec<_> = all.iter().filter(|p| OperatorRole::Ops.may(**p)).collect();
        assert_eq!(ops, [&Read, &Notifications, &Projections, &Alerts]);
        let viewer: Vec<_> = all
            .iter()
            .filter(|p| OperatorRole::Viewer.may(**p))
            .collect();
        assert_eq!(viewer, [&Read]);
    }

    #[test]
    fn an_actor_rides_in_the_payload_and_is_read_back() {
        let actor = Actor::Operator {
            operator_id: OperatorId::parse("op_1").unwrap(),
            email: "a@example.com".to_owned(),
            role: OperatorRole::Finance,
        };
        let stamped = stamp_actor(r#"{"refund_id":"rf_1"}"#, &actor);
        assert_eq!(recorded_actor(&stamped), Some(actor));
        assert_eq!(recorded_actor(r#"{"refund_id":"rf_1"}"#), None);
        assert_eq!(
            recorded_actor(r#"{"reason":"\"actor\": no"}"#),
            None,
            "text inside a string is not an actor"
        );
        assert_eq!(
            recorded_actor(&stamp_actor("{}", &Actor::AdminToken)),
            Some(Actor::AdminToken)
        );
    }

    #[test]
    fn addresses_are_kept_lowercase_and_nonsense_is_refused() {
        assert_eq!(
            normalize_email(" Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@@b.com",
            "<a@b.com>",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
