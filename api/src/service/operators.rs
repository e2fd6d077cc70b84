//! The console's operators: creating them (the password hashed with argon2id; a generated one
//! is answered once), turning them off and on, and checking a password at sign-in. An
//! operator's id is derived from the e-mail address, so an address is taken once.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use paycenter_domain::events::OperatorCreated;
use paycenter_domain::ids::OperatorId;
use paycenter_domain::operators::{self, normalize_email, OperatorRole};
use paycenter_domain::streams;
use paycenter_projections::model::OperatorView;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{ErrorCode, Refusal};
use crate::service::random_hex;
use crate::state::AppState;

/// The shortest password taken.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password taken (argon2 would take more; a limit keeps hashing bounded).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// The id of the operator with this (normalized) address.
pub fn operator_id_for(email: &str) -> OperatorId {
    let digest = Sha256::digest(email.as_bytes());
    OperatorId::parse(&format!("op_{}", &hex::encode(digest)[..24]))
        .expect("a hex digest makes a valid id")
}

/// What an admin asks for.
pub struct NewOperator {
    /// As given; kept trimmed and lowercase.
    pub email: String,
    /// The operator's name.
    pub name: String,
    /// What the operator may do.
    pub role: OperatorRole,
    /// The password; one is generated (and answered once) when `None`.
    pub password: Option<Zeroizing<String>>,
}

/// An operator created, with the password generated for them (shown this once).
pub struct OperatorMade {
    /// As the read model has it.
    pub operator: OperatorView,
    /// The generated password, when none was given.
    pub generated_password: Option<Zeroizing<String>>,
}

fn check_password(password: &str) -> Result<(), Refusal> {
    let n_chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n_chars) {
        return Err(Refusal::invalid(format!(
            "password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        ))
        .with_field("password"));
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes), off the async workers.
async fn hash_password(password: Zeroizing<String>) -> Result<String, Refusal> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| Refusal::internal("password", error.to_string()))
    })
    .await
    .map_err(|error| Refusal::internal("password", error.to_string()))?
}

/// Creates an operator.
pub async fn create(state: &AppState, new: NewOperator) -> Result<OperatorMade, Refusal> {
    let email =
        normalize_email(&new.email).map_err(|error| Refusal::from(error).with_field("email"))?;
    let (password, generated) = match new.password {
        Some(password) => {
            check_password(&password)?;
            (password, false)
        }
        None => (Zeroizing::new(random_hex(12)), true),
    };
    let password_hash = hash_password(password.clone()).await?;
    let operator_id = operator_id_for(&email);
    let command = OperatorCreated {
        operator_id: operator_id.clone(),
        email,
        name: new.name,
        role: new.role,
        password_hash,
        created_at: state.clock.now(),
    };
    state
        .execute(
            &streams::operator(&operator_id),
            operator_id.as_str(),
            |history, now| {
                operators::create_operator(
                    !history.is_empty(),
                    OperatorCreated {
                        created_at: now,
                        ..command.clone()
                    },
                )
            },
        )
        .await?;
    let operator = find(state, &operator_id)?;
    Ok(OperatorMade {
        operator,
        generated_password: generated.then_some(password),
    })
}

/// The operator `operator_id` (`404 operator_not_found`).
pub fn find(state: &AppState, operator_id: &OperatorId) -> Result<OperatorView, Refusal> {
    state
        .model_for_request()?
        .operator(operator_id)
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::OperatorNotFound,
                format!("operator {operator_id} not found"),
            )
        })
}

/// Disables or enables an operator.
pub async fn set_enabled(
    state: &AppState,
    operator_id: &OperatorId,
    enabled: bool,
) -> Result<OperatorView, Refusal> {
    find(state, operator_id)?;
    let command_id = format!(
        "{}-{}-{}",
        operator_id,
        if enabled { "enable" } else { "disable" },
        state.clock.now().timestamp_micros()
    );
    state
        .execute(
            &streams::operator(operator_id),
            &command_id,
            |history, now| operators::change_operator_access(history, enabled, now),
        )
        .await?;
    find(state, operator_id)
}

/// A hash no password matches, checked when the address is unknown so that an unknown address
/// takes as long to refuse as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(random_hex(16).as_bytes(), &salt)
            .expect("argon2 hashes with its defaults")
            .to_string()
    })
}

/// The enabled operator with this address and password, or `None`.
pub async fn check_credentials(
    state: &AppState,
    email: &str,
    password: Zeroizing<String>,
) -> Result<Option<OperatorView>, Refusal> {
    let operator = match normalize_email(email) {
        Ok(email) => state
            .model_for_request()?
            .operator(&operator_id_for(&email))
            .cloned(),
        Err(_) => None,
    };
    let hash = operator.as_ref().map_or_else(
        || decoy_hash().to_owned(),
        |operator| operator.password_hash.clone(),
    );
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .map_err(|error| Refusal::internal("password", error.to_string()))?;
    Ok(operator.filter(|operator| matches && operator.enabled))
}
