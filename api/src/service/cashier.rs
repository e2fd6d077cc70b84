//! The aggregated cashier: an app opens one for an order without naming a channel account;
//! the person picks one of the merchant's accounts on paycenter's page, and each pick starts
//! an attempt of the order with its own `trade_no`, under the usual switching rules (spacing,
//! the abandoned attempt closed at its own channel, a late duplicate refunded). Opened inside
//! Alipay or WeChat (told by the User-Agent), the page picks that wallet by itself.

use chrono::Duration;
use paycenter_domain::events::{ChannelAccountActivated, CheckoutOpened, Event};
use paycenter_domain::ids::{AppId, ChannelAccountId, MerchantId, OrderNo};
use paycenter_domain::payment::{Channel, InvokeMethod, Split};
use paycenter_domain::{streams, Money};

use crate::error::{ErrorCode, Refusal};
use crate::service::payments::{start, PaymentStarted, StartPayment};
use crate::state::AppState;

/// What an app asks for: the order, and optionally which of the merchant's accounts to offer.
pub struct OpenCheckout {
    /// The app.
    pub app_id: AppId,
    /// The merchant it acts for.
    pub merchant_id: MerchantId,
    /// The app's order number.
    pub order_no: OrderNo,
    /// How much.
    pub amount: Money,
    /// What for.
    pub subject: String,
    /// Receivers' shares (each attempt carries them).
    pub splits: Vec<Split>,
    /// Each attempt's expiry in seconds; the cashier itself lives as long.
    pub expire_seconds: u32,
    /// Where the person goes back to.
    pub return_url: Option<String>,
    /// The accounts to offer; empty: every active account of the merchant.
    pub channel_account_ids: Vec<ChannelAccountId>,
}

/// Where the person opened the cashier, as its User-Agent tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A computer's browser.
    Desktop,
    /// A phone's browser.
    Phone,
    /// Inside the Alipay app.
    AlipayApp,
    /// Inside WeChat.
    WechatApp,
}

impl Device {
    /// From a User-Agent header.
    pub fn from_user_agent(user_agent: Option<&str>) -> Device {
        let user_agent = user_agent.unwrap_or("");
        if user_agent.contains("AlipayClient") {
            Device::AlipayApp
        } else if user_agent.contains("MicroMessenger") {
            Device::WechatApp
        } else if ["Mobile", "Android", "iPhone"]
            .iter()
            .any(|word| user_agent.contains(word))
        {
            Device::Phone
        } else {
            Device::Desktop
        }
    }
}

/// How an attempt at `channel` is made for a person on `device`. WeChat Pay shows its QR on
/// paycenter's page: JSAPI inside WeChat needs the payer's `openid`, which paycenter does not
/// obtain (WeChat's OAuth is not configured), so WeChat's own QR stands in.
pub fn invoke_method(channel: Channel, device: Device) -> InvokeMethod {
    let on_a_phone = device != Device::Desktop;
    match channel {
        Channel::Sandbox => InvokeMethod::Pc,
        Channel::Wechatpay => InvokeMethod::NativeQr,
        Channel::Alipay | Channel::Stripe if on_a_phone => InvokeMethod::Wap,
        Channel::Alipay | Channel::Stripe => InvokeMethod::Pc,
    }
}

/// Opens the cashier of an order (or finds the one opened before with the same amount).
pub async fn open(state: &AppState, command: OpenCheckout) -> Result<CheckoutOpened, Refusal> {
    for channel_account_id in &command.channel_account_ids {
        state
            .channel_account(channel_account_id)
            .filter(|account| account.merchant_id == command.merchant_id)
            .ok_or_else(|| {
                Refusal::not_found(
                    ErrorCode::ChannelAccountNotFound,
                    format!(
                        "merchant {} has no channel account {channel_account_id}",
                        command.merchant_id
                    ),
                )
            })?;
    }
    let checkout_id =
        streams::checkout_id(&command.app_id, &command.merchant_id, &command.order_no);
    let stream_id = streams::checkout(&checkout_id);
    let opened_at = state.clock.now();
    let opened = CheckoutOpened {
        checkout_id: checkout_id.clone(),
        app_id: command.app_id,
        merchant_id: command.merchant_id,
        order_no: command.order_no,
        amount: command.amount,
        subject: command.subject,
        splits: command.splits,
        expire_seconds: command.expire_seconds,
        return_url: command.return_url,
        channel_account_ids: command.channel_account_ids,
        opened_at,
        expires_at: opened_at + Duration::seconds(i64::from(command.expire_seconds)),
    };
    if offered(state, &opened).is_empty() {
        return Err(Refusal::new(
            ErrorCode::ChannelAccountDisabled,
            format!(
                "merchant {} has no active channel account to offer",
                opened.merchant_id
            ),
        ));
    }
    let decided = opened.clone();
    let (events, _) = state
        .execute(&stream_id, &format!("open-{checkout_id}"), |history, _| {
            // Opened before: the same cashier again, never a second one.
            if history.is_empty() {
                Ok(vec![Event::CheckoutOpened(decided.clone())])
            } else {
                Ok(Vec::new())
            }
        })
        .await?;
    if !events.is_empty() {
        return Ok(opened);
    }
    let existing = state
        .model_for_request()?
        .checkout(&checkout_id)?
        .ok_or_else(|| {
            Refusal::internal("cashier", "an opened cashier is not in the read model")
        })?;
    if existing.amount != opened.amount {
        return Err(Refusal::new(
            ErrorCode::OrderAmountMismatch,
            format!(
                "order {} was opened in the cashier for {} {}",
                existing.order_no,
                existing.amount.to_major_string(),
                existing.amount.currency()
            ),
        ));
    }
    Ok(existing)
}

/// The accounts the person may pick: those named (or all the merchant's), enabled, whose
/// channel runs here.
pub fn offered(state: &AppState, checkout: &CheckoutOpened) -> Vec<ChannelAccountActivated> {
    let Ok(model) = state.model_for_request() else {
        return Vec::new();
    };
    let mut accounts: Vec<ChannelAccountActivated> = model
        .channel_accounts()
        .values()
        .filter(|account| account.merchant_id == checkout.merchant_id)
        .filter(|account| {
            checkout.channel_account_ids.is_empty()
                || checkout
                    .channel_account_ids
                    .contains(&account.channel_account_id)
        })
        .filter(|account| !model.is_channel_account_disabled(&account.channel_account_id))
        .filter(|account| account.mode.takes_payments())
        .filter(|account| state.channel(account.channel).is_ok())
        .cloned()
        .collect();
    accounts.sort_by(|a, b| {
        (a.channel.as_str(), &a.channel_account_id)
            .cmp(&(b.channel.as_str(), &b.channel_account_id))
    });
    accounts
}

/// The account the page picks by itself: inside Alipay its Alipay account, inside WeChat its
/// WeChat Pay account, when one is offered.
pub fn automatic_pick(
    offered: &[ChannelAccountActivated],
    device: Device,
) -> Option<&ChannelAccountActivated> {
    let channel = match device {
        Device::AlipayApp => Channel::Alipay,
        Device::WechatApp => Channel::Wechatpay,
        Device::Desktop | Device::Phone => return None,
    };
    offered.iter().find(|account| account.channel == channel)
}

/// The cashier `checkout_id`, while it can still start attempts.
pub fn find(state: &AppState, checkout_id: &str) -> Result<CheckoutOpened, Refusal> {
    state
        .model_for_request()?
        .checkout(checkout_id)?
        .ok_or_else(|| {
            Refusal::not_found(
                ErrorCode::CheckoutNotFound,
                format!("no cashier {checkout_id:?}"),
            )
        })
}

/// Who pays, when the channel told paycenter (WeChat's OAuth inside WeChat): the attempt is
/// then a JSAPI payment for that payer.
pub struct IdentifiedPayer {
    /// The payer's id at the channel (`openid`).
    pub payer_id: String,
}

/// The person picked `channel_account_id`: starts that attempt of the order.
pub async fn pick(
    state: &AppState,
    checkout: &CheckoutOpened,
    channel_account_id: &ChannelAccountId,
    device: Device,
    client_ip: Option<String>,
    payer: Option<IdentifiedPayer>,
) -> Result<PaymentStarted, Refusal> {
    if state.clock.now() > checkout.expires_at {
        return Err(Refusal::new(
            ErrorCode::CheckoutExpired,
            format!(
                "cashier {} expired at {}",
                checkout.checkout_id, checkout.expires_at
            ),
        ));
    }
    let account = offered(state, checkout)
        .into_iter()
        .find(|account| &account.channel_account_id == channel_account_id)
        .ok_or_else(|| {
            Refusal::not_found(
                ErrorCode::ChannelAccountNotFound,
                format!(
                    "cashier {} offers no account {channel_account_id}",
                    checkout.checkout_id
                ),
            )
        })?;
    start(
        state,
        StartPayment {
            app_id: checkout.app_id.clone(),
            merchant_id: checkout.merchant_id.clone(),
            account: crate::service::payments::AccountChoice::Given(
                account.channel_account_id.clone(),
            ),
            order_no: checkout.order_no.clone(),
            amount: checkout.amount,
            invoke_method: match &payer {
                Some(_) => InvokeMethod::Jsapi,
                None => invoke_method(account.channel, device),
            },
            subject: checkout.subject.clone(),
            splits: checkout.splits.clone(),
            expire_seconds: checkout.expire_seconds,
            payer_id: payer.map(|payer| payer.payer_id),
            client_ip,
            return_url: checkout.return_url.clone(),
            share: paycenter_domain::vocabulary::ShareMode::None,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_agent_tells_the_wallet_and_the_method_follows() {
        let alipay = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile AlipayClient/10.5.0";
        let wechat = "Mozilla/5.0 (Linux; Android 14) Mobile MicroMessenger/8.0.47";
        assert_eq!(Device::from_user_agent(Some(alipay)), Device::AlipayApp);
        assert_eq!(Device::from_user_agent(Some(wechat)), Device::WechatApp);
        assert_eq!(
            Device::from_user_agent(Some("Mozilla/5.0 (X11; Linux x86_64)")),
            Device::Desktop
        );
        assert_eq!(
            invoke_method(Channel::Alipay, Device::AlipayApp),
            InvokeMethod::Wap
        );
        assert_eq!(
            invoke_method(Channel::Alipay, Device::Desktop),
            InvokeMethod::Pc
        );
        assert_eq!(
            invoke_method(Channel::Wechatpay, Device::WechatApp),
            InvokeMethod::NativeQr
        );
    }
}
