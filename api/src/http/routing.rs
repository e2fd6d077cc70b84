//! `PUT|GET /v1/merchants/{merchant_id}/routing`: a merchant's routing rules.

use std::sync::Arc;

use hyper::http::StatusCode;
use paycenter_domain::events::RoutingRule;
use paycenter_domain::ids::{ChannelAccountId, MerchantId};
use paycenter_domain::payment::InvokeMethod;
use paycenter_domain::Currency;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::{check_fields, parse_object};
use crate::http::Answer;
use crate::state::AppState;
use crate::wire;

fn merchant(merchant_id: &str) -> Result<MerchantId, Refusal> {
    MerchantId::parse(merchant_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))
}

fn body_of(rules: &[RoutingRule]) -> wire::RoutingBody {
    wire::RoutingBody {
        rules: rules
            .iter()
            .map(|rule| wire::RoutingRuleBody {
                invoke_method: rule.invoke_method.map(|method| method.as_str().to_owned()),
                currency: rule.currency.map(|currency| currency.code().to_owned()),
                channel_account_ids: rule
                    .channel_account_ids
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                weights: rule.weights.clone(),
            })
            .collect(),
    }
}

/// `PUT /v1/merchants/{merchant_id}/routing`
pub async fn set_routing(state: Arc<AppState>, merchant_id: String, body: bytes::Bytes) -> Answer {
    let merchant_id = merchant(&merchant_id)?;
    let object = parse_object(&body)?;
    check_fields(&object, "", &[("rules", 0)])?;
    let request: wire::RoutingBody = wire::read(&object)?;
    let mut rules = Vec::with_capacity(request.rules.len());
    for (idx, rule) in request.rules.into_iter().enumerate() {
        let field = |name: &str| format!("rules[{idx}].{name}");
        let invoke_method = match rule.invoke_method.as_deref() {
            None => None,
            Some(text) => Some(InvokeMethod::parse(text).ok_or_else(|| {
                Refusal::invalid(format!("{text:?} is not an invoke method"))
                    .with_field(field("invoke_method"))
            })?),
        };
        let currency = match rule.currency.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<Currency>().map_err(|_| {
                Refusal::new(
                    ErrorCode::InvalidCurrency,
                    format!("{text:?} is not a currency paycenter takes"),
                )
                .with_field(field("currency"))
            })?),
        };
        let channel_account_ids = rule
            .channel_account_ids
            .iter()
            .map(|text| {
                ChannelAccountId::parse(text).map_err(|error| {
                    Refusal::invalid(error.to_string()).with_field(field("channel_account_ids"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.push(RoutingRule {
            invoke_method,
            currency,
            channel_account_ids,
            weights: rule.weights,
        });
    }
    let rules = crate::service::routing::set_rules(&state, &merchant_id, rules).await?;
    Ok((StatusCode::OK, wire::to_value(&body_of(&rules))))
}

/// `GET /v1/merchants/{merchant_id}/routing`
pub async fn get_routing(state: Arc<AppState>, merchant_id: String) -> Answer {
    let merchant_id = merchant(&merchant_id)?;
    let model = state.model_for_request()?;
    crate::service::known_merchant(&model, &merchant_id)?;
    Ok((
        StatusCode::OK,
        wire::to_value(&body_of(model.routing(&merchant_id))),
    ))
}
