//! Request bodies read into domain types: a `wire` request, already checked for its fields and
//! their JSON types, becomes the command's input here or is refused with the field named.

use paycenter_domain::ids::{AppId, ChannelAccountId, IdError, MerchantId, OrderNo};
use paycenter_domain::payment::{Channel, InvokeMethod, Split};
use paycenter_domain::vocabulary::ShareMode;
use serde_json::Value;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::{
    amount_field, amount_value, check_fields, optional_text, parse_currency, required_str,
    MAX_ID_CHARS, MAX_SUBJECT_CHARS, MAX_TOKEN_CHARS,
};
use crate::service::cashier::OpenCheckout;
use crate::service::payments::{AccountChoice, StartPayment};
use crate::wire;

fn parse_id<T>(parse: impl Fn(&str) -> Result<T, IdError>, text: &str) -> Result<T, Refusal> {
    parse(text).map_err(|error| Refusal::invalid(error.to_string()))
}

/// Seconds a payment waits to be paid when the request does not say.
pub const DEFAULT_EXPIRE_SECONDS: u32 = 900;
/// The shortest and longest expiry a request may ask for, in seconds.
pub const EXPIRE_SECONDS_RANGE: std::ops::RangeInclusive<u64> = 60..=86_400 * 7;

/// Where a payment goes: one account by one method, or the aggregated cashier.
enum PaymentTarget {
    /// An attempt at this account (or routing's), by this method.
    Attempt {
        /// The merchant's channel account, or routing's choice.
        account: AccountChoice,
        /// How the user pays.
        invoke_method: InvokeMethod,
    },
    /// The cashier, offering these accounts (empty: every active one of the merchant).
    Cashier {
        /// The accounts offered.
        channel_account_ids: Vec<ChannelAccountId>,
    },
}

/// What a request asks paycenter to do.
pub enum PaymentCommand {
    /// Start an attempt.
    Start(StartPayment),
    /// Open the aggregated cashier.
    OpenCheckout(OpenCheckout),
}

/// The most accounts one cashier offers by name.
pub const MAX_OFFERED_ACCOUNTS: usize = 16;

impl PaymentCommand {
    /// The merchant the app acts for.
    pub fn merchant_id(&self) -> &MerchantId {
        match self {
            PaymentCommand::Start(command) => &command.merchant_id,
            PaymentCommand::OpenCheckout(command) => &command.merchant_id,
        }
    }

    /// Where the cashier sends the user back to (checked against the egress rule by the
    /// handler, as a `notify_url` is).
    pub fn return_url(&self) -> Option<&str> {
        match self {
            PaymentCommand::Start(command) => command.return_url.as_deref(),
            PaymentCommand::OpenCheckout(command) => command.return_url.as_deref(),
        }
    }
}

/// `POST /v1/payments` by app `app_id`, in domain types.
impl TryFrom<(AppId, wire::CreatePaymentRequest)> for PaymentCommand {
    type Error = Refusal;

    fn try_from(
        (app_id, request): (AppId, wire::CreatePaymentRequest),
    ) -> Result<PaymentCommand, Refusal> {
        let merchant_id = parse_id(MerchantId::parse, &request.merchant_id)?;
        let target = target(&request)?;
        let order_no = parse_id(OrderNo::parse, &request.order_no)?;
        let currency = parse_currency(&request.currency)?;
        let amount = amount_value(Some(&request.amount), "amount", currency)?;
        let payer_id = match optional_text(&request.payer_id, "payer_id")? {
            None => None,
            Some(text)
                if (1..=128).contains(&text.len())
                    && text.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Some(text.to_owned())
            }
            Some(_) => {
                return Err(Refusal::invalid(
                    "payer_id must be 1 to 128 printable ASCII characters",
                ))
            }
        };
        let client_ip = match optional_text(&request.client_ip, "client_ip")? {
            None => None,
            Some(text) => Some(
                text.parse::<std::net::IpAddr>()
                    .map_err(|_| Refusal::invalid("client_ip must be an IPv4 or IPv6 address"))?
                    .to_string(),
            ),
        };
        let subject = request.subject;
        if subject.trim().is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(Refusal::invalid("subject must be 1 to 256 characters"));
        }
        let expire_seconds = match request.expire_seconds.as_ref() {
            None | Some(Value::Null) => DEFAULT_EXPIRE_SECONDS,
            Some(value) => value
                .as_u64()
                .filter(|seconds| EXPIRE_SECONDS_RANGE.contains(seconds))
                .ok_or_else(|| {
                    Refusal::invalid("expire_seconds must be a whole number from 60 to 604800")
                })? as u32,
        };
        let splits = match request.splits.as_ref() {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut splits = Vec::new();
                for (split_idx, item) in items.iter().enumerate() {
                    let split = item.as_object().ok_or_else(|| {
                        Refusal::invalid("each split must be an object {receiver, amount}")
                    })?;
                    check_fields(
                        split,
                        &format!("splits[{split_idx}]."),
                        &[("receiver", MAX_ID_CHARS), ("amount", MAX_TOKEN_CHARS)],
                    )?;
                    let receiver = required_str(split, "receiver")?.to_owned();
                    splits.push(Split {
                        receiver,
                        amount: amount_field(split, "amount", currency)?,
                    });
                }
                splits
            }
            Some(_) => return Err(Refusal::invalid("splits must be an array")),
        };
        let return_url = optional_text(&request.return_url, "return_url")?.map(str::to_owned);
        let share = match optional_text(&request.share, "share")? {
            None => ShareMode::None,
            Some(text) => ShareMode::parse(text).ok_or_else(|| {
                Refusal::invalid(format!("share must be none, auto or manual, not {text:?}"))
                    .with_field("share")
            })?,
        };
        Ok(match target {
            PaymentTarget::Attempt {
                account,
                invoke_method,
            } => PaymentCommand::Start(StartPayment {
                app_id,
                merchant_id,
                account,
                order_no,
                amount,
                invoke_method,
                subject,
                splits,
                expire_seconds,
                payer_id,
                client_ip,
                return_url,
                share,
            }),
            PaymentTarget::Cashier { .. } if share != ShareMode::None => {
                return Err(Refusal::invalid(
                    "the cashier takes no share: name the account and share there, or share none",
                )
                .with_field("share"))
            }
            PaymentTarget::Cashier {
                channel_account_ids,
            } => PaymentCommand::OpenCheckout(OpenCheckout {
                app_id,
                merchant_id,
                order_no,
                amount,
                subject,
                splits,
                expire_seconds,
                return_url,
                channel_account_ids,
            }),
        })
    }
}

/// An account and a method, or the cashier (`invoke_method: "cashier"`, no
/// `channel_account_id`, optionally `channel_account_ids`).
fn target(request: &wire::CreatePaymentRequest) -> Result<PaymentTarget, Refusal> {
    let invoke_text = request.invoke_method.as_str();
    if invoke_text == "cashier" {
        if request.channel_account_id.is_some() {
            return Err(Refusal::invalid(
                "the cashier takes no channel_account_id: the person picks one (channel_account_ids limits the choice)",
            )
            .with_field("channel_account_id"));
        }
        let channel_account_ids = match &request.channel_account_ids {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_OFFERED_ACCOUNTS => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| Refusal::invalid("channel_account_ids holds strings"))
                        .and_then(|text| parse_id(ChannelAccountId::parse, text))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(Refusal::invalid(format!(
                    "channel_account_ids must be an array of at most {MAX_OFFERED_ACCOUNTS} ids"
                ))
                .with_field("channel_account_ids"))
            }
        };
        if request
            .payer_id
            .as_ref()
            .is_some_and(|value| !value.is_null())
        {
            return Err(Refusal::invalid("the cashier takes no payer_id").with_field("payer_id"));
        }
        return Ok(PaymentTarget::Cashier {
            channel_account_ids,
        });
    }
    let invoke_method = InvokeMethod::parse(invoke_text).ok_or_else(|| {
        Refusal::new(
            ErrorCode::UnsupportedInvokeMethod,
            format!("invoke_method {invoke_text:?} is not one of pc, wap, app, mini_program, jsapi, native_qr, cashier"),
        )
    })?;
    if request
        .channel_account_ids
        .as_ref()
        .is_some_and(|value| !value.is_null())
    {
        return Err(
            Refusal::invalid("channel_account_ids goes with invoke_method cashier only")
                .with_field("channel_account_ids"),
        );
    }
    let route = optional_text(&request.route, "route")?;
    let preferred = match &request.preferred_channels {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.len() <= Channel::ALL.len() => Some(
            items
                .iter()
                .map(|item| {
                    item.as_str().and_then(Channel::parse).ok_or_else(|| {
                        Refusal::invalid(
                            "preferred_channels holds channel names: alipay, wechatpay, stripe, sandbox",
                        )
                        .with_field("preferred_channels")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(Refusal::invalid("preferred_channels must be an array of channel names")
                .with_field("preferred_channels"))
        }
    };
    let account = match (route, request.channel_account_id.as_deref()) {
        (Some("auto"), None) => AccountChoice::Auto {
            preferred_channels: preferred.unwrap_or_default(),
        },
        (Some("auto"), Some(_)) => {
            return Err(Refusal::invalid(
                "route auto picks the account: leave channel_account_id out",
            )
            .with_field("channel_account_id"))
        }
        (Some(_), _) => return Err(Refusal::invalid("route takes only auto").with_field("route")),
        (None, Some(channel_account_id)) => {
            if preferred.is_some() {
                return Err(
                    Refusal::invalid("preferred_channels goes with route auto only")
                        .with_field("preferred_channels"),
                );
            }
            AccountChoice::Given(parse_id(ChannelAccountId::parse, channel_account_id)?)
        }
        (None, None) => {
            return Err(
                Refusal::invalid("channel_account_id is required (or route: auto)")
                    .with_field("channel_account_id"),
            )
        }
    };
    Ok(PaymentTarget::Attempt {
        account,
        invoke_method,
    })
}
