//! `/v1/operators`: the console's operators, managed by an admin.

use std::sync::Arc;

use hyper::http::StatusCode;
use paycenter_domain::ids::OperatorId;
use paycenter_domain::operators::OperatorRole;
use zeroize::Zeroizing;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::{check_fields, parse_object, MAX_NAME_CHARS};
use crate::http::Answer;
use crate::service::operators::{self, NewOperator, MAX_PASSWORD_CHARS};
use crate::state::AppState;
use crate::wire;

/// `POST /v1/operators`
pub async fn create_operator(state: Arc<AppState>, body: bytes::Bytes) -> Answer {
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("email", paycenter_domain::operators::MAX_EMAIL_CHARS),
            ("name", MAX_NAME_CHARS),
            ("role", 16),
            ("password", MAX_PASSWORD_CHARS),
        ],
    )?;
    let request: wire::CreateOperatorRequest = wire::read(&object)?;
    let role = OperatorRole::parse(&request.role).ok_or_else(|| {
        Refusal::invalid("role must be one of admin, finance, ops, viewer").with_field("role")
    })?;
    let made = operators::create(
        &state,
        NewOperator {
            email: request.email,
            name: request.name,
            role,
            password: request.password.map(Zeroizing::new),
        },
    )
    .await?;
    let answer = wire::OperatorCreatedAnswer::of(
        wire::operator_answer(&made.operator),
        made.generated_password.map(|password| password.to_string()),
    );
    Ok((StatusCode::CREATED, wire::to_value(&answer)))
}

/// `GET /v1/operators`: every operator (a console has few), by e-mail address.
pub async fn list_operators(state: Arc<AppState>) -> Answer {
    let model = state.model_for_request()?;
    let data: Vec<wire::OperatorAnswer> = model
        .operators()
        .into_iter()
        .map(wire::operator_answer)
        .collect();
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::OperatorsList {
            data,
            has_more: false,
        }),
    ))
}

/// `POST /v1/operators/{operator_id}/disable|enable`
pub async fn operator_action(state: Arc<AppState>, operator_id: String, action: String) -> Answer {
    let operator_id = OperatorId::parse(&operator_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("operator_id"))?;
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => {
            return Err(Refusal::new(
                ErrorCode::RouteNotFound,
                "operators take disable or enable",
            ))
        }
    };
    let operator = operators::set_enabled(&state, &operator_id, enabled).await?;
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::operator_answer(&operator)),
    ))
}
