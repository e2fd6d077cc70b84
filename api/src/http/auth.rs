//! Who is calling: the admin (`Authorization: Bearer $PAYCENTER_ADMIN_TOKEN`) or an app (its
//! current key, or the previous one during a rotation's grace period). An app also spends its
//! request budget here.

use paycenter_domain::events::AppRegistered;

use crate::error::{ErrorCode, Refusal};
use crate::state::AppState;

use crate::keys::{api_key_sha256, same_secret};

fn bearer(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

fn unauthorized() -> Refusal {
    Refusal::new(
        ErrorCode::Unauthorized,
        "a valid Authorization: Bearer token is required",
    )
}

/// Accepts the admin token only.
pub fn admin(state: &AppState, authorization: Option<&str>) -> Result<(), Refusal> {
    match bearer(authorization) {
        Some(token)
            if !state.config.admin_token.is_empty()
                && same_secret(token, &state.config.admin_token) =>
        {
            Ok(())
        }
        _ => Err(unauthorized()),
    }
}

/// Authenticates an app (its current key, or the previous one during its grace period),
/// then refuses a disabled app and one over its request budget.
pub fn app(state: &AppState, authorization: Option<&str>) -> Result<AppRegistered, Refusal> {
    let token = bearer(authorization).ok_or_else(unauthorized)?;
    let app = {
        let model = state.model_for_request()?;
        let app = model
            .app_for_key(&api_key_sha256(token), state.clock.now())
            .ok_or_else(unauthorized)?
            .clone();
        if model.is_app_disabled(&app.app_id) {
            return Err(Refusal::new(
                ErrorCode::AppDisabled,
                format!("app {} is disabled; an operator can enable it", app.app_id),
            ));
        }
        app
    };
    if let Err(retry_after_seconds) = state.rate_limiter.take(
        &app.app_id,
        state.config.app_rate_limit,
        std::time::Instant::now(),
    ) {
        let mut error = Refusal::new(
            ErrorCode::RateLimited,
            format!(
                "app {} sent more than {} requests per second; retry after {retry_after_seconds} s",
                app.app_id, state.config.app_rate_limit.per_second
            ),
        );
        error.extra = Some(("retry_after", serde_json::json!(retry_after_seconds)));
        return Err(error);
    }
    Ok(app)
}
