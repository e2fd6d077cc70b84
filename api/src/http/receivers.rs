//! `/v1/merchants/{merchant_id}/receivers`: split receivers bound at the channel.

use std::sync::Arc;

use hyper::http::StatusCode;
use paycenter_domain::ids::{ChannelAccountId, MerchantId};

use crate::error::Refusal;
use crate::http::dto::{check_fields, parse_object};
use crate::http::Answer;
use crate::service::receivers::{self, BindReceiver};
use crate::state::AppState;
use crate::wire;

fn merchant(merchant_id: &str) -> Result<MerchantId, Refusal> {
    MerchantId::parse(merchant_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))
}

/// `POST /v1/merchants/{merchant_id}/receivers`
pub async fn create_receiver(
    state: Arc<AppState>,
    merchant_id: String,
    body: bytes::Bytes,
) -> Answer {
    let merchant_id = merchant(&merchant_id)?;
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("channel_account_id", 64),
            ("receiver_id", 64),
            ("type", 32),
            ("account", 128),
            ("name", 256),
        ],
    )?;
    let request: wire::ReceiverRequest = wire::read(&object)?;
    let channel_account_id = ChannelAccountId::parse(&request.channel_account_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("channel_account_id"))?;
    if request.account.trim().is_empty() {
        return Err(Refusal::invalid("account must not be empty").with_field("account"));
    }
    // A replay answers as the first binding did.
    let bound = receivers::bind(
        &state,
        BindReceiver {
            merchant_id,
            channel_account_id,
            receiver_id: request.receiver_id,
            kind: request.kind,
            account: request.account,
            name: request.name.filter(|name| !name.trim().is_empty()),
        },
    )
    .await?;
    // A replay answers as the first binding did.
    Ok((
        StatusCode::CREATED,
        wire::to_value(&wire::receiver_answer(&bound)),
    ))
}

/// `GET /v1/merchants/{merchant_id}/receivers`: every bound receiver (at most 1,000).
pub async fn list_receivers(state: Arc<AppState>, merchant_id: String) -> Answer {
    let merchant_id = merchant(&merchant_id)?;
    let model = state.model_for_request()?;
    crate::service::known_merchant(&model, &merchant_id)?;
    let data = model
        .receivers(&merchant_id)
        .iter()
        .map(wire::receiver_answer)
        .collect();
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::ReceiversList {
            data,
            has_more: false,
        }),
    ))
}

/// `DELETE /v1/merchants/{merchant_id}/receivers/{receiver_id}`
pub async fn delete_receiver(
    state: Arc<AppState>,
    merchant_id: String,
    receiver_id: String,
) -> Answer {
    let merchant_id = merchant(&merchant_id)?;
    let removed = receivers::remove(&state, &merchant_id, &receiver_id).await?;
    let mut answer = wire::receiver_answer(&removed);
    answer.status = "removed".to_owned();
    Ok((StatusCode::OK, wire::to_value(&answer)))
}
