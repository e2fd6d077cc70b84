//! `/v1/payouts`: money paid out of what merchants hold.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::http::StatusCode;
use paycenter_domain::ids::{AppId, ChannelAccountId, MerchantId};
use paycenter_domain::vocabulary::PayoutReceiverKind;

use crate::error::Refusal;
use crate::http::dto::{amount_value, check_fields, parse_currency, parse_object};
use crate::http::Answer;
use crate::service::payouts::{self, CreatePayout};
use crate::state::AppState;
use crate::wire;

/// `POST /v1/payouts`
pub async fn create_payout(state: Arc<AppState>, body: bytes::Bytes) -> Answer {
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("merchant_id", 64),
            ("channel_account_id", 64),
            ("payout_no", 64),
            ("amount", 32),
            ("currency", 8),
            ("receiver", 0),
            ("app_id", 64),
        ],
    )?;
    if let Some(receiver) = object.get("receiver").and_then(|value| value.as_object()) {
        check_fields(
            receiver,
            "receiver.",
            &[("type", 32), ("account", 128), ("name", 256)],
        )?;
    }
    let request: wire::CreatePayoutRequest = wire::read(&object)?;
    let merchant_id = MerchantId::parse(&request.merchant_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))?;
    let channel_account_id = ChannelAccountId::parse(&request.channel_account_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("channel_account_id"))?;
    let currency = parse_currency(&request.currency)?;
    let amount = amount_value(Some(&request.amount), "amount", currency)?;
    let receiver_kind = PayoutReceiverKind::parse(&request.receiver.kind).ok_or_else(|| {
        Refusal::invalid(
            "receiver.type must be alipay_login, alipay_user_id, wechat_openid or sandbox",
        )
        .with_field("receiver.type")
    })?;
    let account = request.receiver.account.trim();
    if account.is_empty() || account.chars().any(char::is_control) {
        return Err(Refusal::invalid(
            "receiver.account must be the receiver's account at the channel",
        )
        .with_field("receiver.account"));
    }
    let app_id = match &request.app_id {
        None => None,
        Some(text) => Some(
            AppId::parse(text)
                .map_err(|error| Refusal::invalid(error.to_string()).with_field("app_id"))?,
        ),
    };
    let payout = payouts::create(
        &state,
        CreatePayout {
            merchant_id,
            channel_account_id,
            payout_no: request.payout_no,
            amount,
            receiver_kind,
            receiver_account: account.to_owned(),
            receiver_name: request.receiver.name.filter(|name| !name.trim().is_empty()),
            app_id,
        },
    )
    .await?;
    // A replay answers as the first request did.
    Ok((
        StatusCode::CREATED,
        wire::to_value(&wire::payout_answer(&payout)),
    ))
}

/// `GET /v1/payouts/{payout_id}`
pub async fn get_payout(state: Arc<AppState>, payout_id: String) -> Answer {
    let payout = state
        .model_for_request()?
        .payout(&payout_id)?
        .ok_or_else(|| payouts::not_found(&payout_id))?;
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::payout_answer(&payout)),
    ))
}

/// `GET /v1/payouts?merchant_id=&limit=&starting_after=`: newest first.
pub async fn list_payouts(state: Arc<AppState>, query: HashMap<String, String>) -> Answer {
    let merchant_id = match query.get("merchant_id") {
        None => None,
        Some(text) => Some(
            MerchantId::parse(text)
                .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))?,
        ),
    };
    let limit = crate::http::lists::limit(&query)?;
    let model = state.model_for_request()?;
    let after = match query.get("starting_after") {
        None => None,
        Some(payout_id) => Some(
            model
                .payout(payout_id)?
                .filter(|payout| {
                    merchant_id
                        .as_ref()
                        .is_none_or(|merchant_id| &payout.requested.merchant_id == merchant_id)
                })
                .ok_or_else(|| {
                    Refusal::invalid(format!(
                        "starting_after names no payout of this list ({payout_id})"
                    ))
                    .with_field("starting_after")
                })?,
        ),
    };
    let mut page = model.payouts_page(merchant_id.as_ref(), after.as_ref(), limit + 1)?;
    let has_more = page.len() > limit;
    page.truncate(limit);
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::PayoutsList {
            data: page.iter().map(wire::payout_answer).collect(),
            has_more,
        }),
    ))
}
