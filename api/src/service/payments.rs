//! Starting a payment attempt: the checks that need the merchant's channel account (it exists,
//! is enabled, takes this invoke method and currency, has what the method needs), the
//! decision, and the initiation at the channel, recorded whatever the channel answers.

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::{DecodeError, Event};
use paycenter_domain::ids::{AppId, ChannelAccountId, MerchantId, OrderNo, TradeNo};
use paycenter_domain::payment::{
    Channel, InvokeMethod, Order, OrderCommand, OutcomeSource, Split, StartAttempt,
};
use paycenter_domain::vocabulary::ShareMode;
use paycenter_domain::Money;
use paycenter_gateway::{CreatePayment, PaymentAction};
use paycenter_projections::model::PaymentView;

use crate::error::{ErrorCode, Refusal};
use crate::state::AppState;

/// What an app asks for, already read and checked for shape.
#[derive(Debug, Clone)]
pub struct StartPayment {
    /// The app asking (the order lives in its namespace).
    pub app_id: AppId,
    /// The merchant the app acts for.
    pub merchant_id: MerchantId,
    /// The merchant's channel account to pay through, or routing's choice.
    pub account: AccountChoice,
    /// The app's order number.
    pub order_no: OrderNo,
    /// How much.
    pub amount: Money,
    /// How the user pays.
    pub invoke_method: InvokeMethod,
    /// What for.
    pub subject: String,
    /// Receivers' shares.
    pub splits: Vec<Split>,
    /// Seconds until the attempt expires unpaid.
    pub expire_seconds: u32,
    /// The payer at the channel, where the method needs it.
    pub payer_id: Option<String>,
    /// The payer's address, where the method needs it.
    pub client_ip: Option<String>,
    /// Where the cashier sends the user back to.
    pub return_url: Option<String>,
    /// Whether the splits are paid to their receivers at the channel.
    pub share: ShareMode,
}

/// Which account a payment goes to.
#[derive(Debug, Clone)]
pub enum AccountChoice {
    /// The one the app named.
    Given(ChannelAccountId),
    /// Routing's (`"route": "auto"`), the app's preferred channels first.
    Auto {
        /// Channels the app prefers, in order (empty: any).
        preferred_channels: Vec<Channel>,
    },
}

/// A started attempt: what the user must be shown.
pub struct PaymentStarted {
    /// paycenter's trade number of the attempt.
    pub trade_no: TradeNo,
    /// The channel it went to.
    pub channel: Channel,
    /// When it expires unpaid.
    pub expires_at: DateTime<Utc>,
    /// What to show the user.
    pub action: PaymentAction,
    /// For a `qr_code` action: paycenter's page drawing the QR as an image.
    pub qr_page: Option<String>,
    /// The account it went to.
    pub channel_account_id: ChannelAccountId,
    /// How routing chose it, for `"route": "auto"`.
    pub route: Option<paycenter_domain::events::RouteRecord>,
}

/// Why one attempt did not start.
pub(crate) enum AttemptFailure {
    /// Refused before any channel was asked (checks, the decision).
    Refused(Refusal),
    /// The channel was asked and did not accept: the attempt is recorded as failed.
    Initiation {
        trade_no: TradeNo,
        error: paycenter_gateway::GatewayError,
    },
}

impl From<Refusal> for AttemptFailure {
    fn from(refusal: Refusal) -> Self {
        AttemptFailure::Refused(refusal)
    }
}

/// Starts an attempt: decided and recorded first, then initiated at the channel. A channel
/// that fails leaves the attempt recorded as failed and answers `502 channel_unavailable`.
/// Apps' payments come through `crate::service::routing::start`, which sends
/// `AccountChoice::Auto` to routing; here the account is the one named.
pub async fn start(state: &AppState, command: StartPayment) -> Result<PaymentStarted, Refusal> {
    let channel_account_id = match &command.account {
        AccountChoice::Given(channel_account_id) => channel_account_id.clone(),
        AccountChoice::Auto { .. } => {
            return Err(Refusal::internal(
                "payments",
                "a routed payment reached the named-account path",
            ))
        }
    };
    match start_attempt(state, &command, &channel_account_id, None, None).await {
        Ok(started) => Ok(started),
        Err(AttemptFailure::Refused(refusal)) => Err(refusal),
        Err(AttemptFailure::Initiation { error, .. }) => Err(Refusal::channel_unavailable(error)),
    }
}

/// One attempt at `channel_account_id`: checks, decision, initiation.
pub(crate) async fn start_attempt(
    state: &AppState,
    command: &StartPayment,
    channel_account_id: &ChannelAccountId,
    route: Option<paycenter_domain::events::RouteRecord>,
    failover_from: Option<TradeNo>,
) -> Result<PaymentStarted, AttemptFailure> {
    let StartPayment {
        app_id,
        merchant_id,
        account: _,
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
    } = command.clone();
    let channel_account_id = channel_account_id.clone();
    let currency = amount.currency();
    let account = state
        .channel_account(&channel_account_id)
        .filter(|account| account.merchant_id == merchant_id)
        .ok_or_else(|| {
            Refusal::not_found(
                ErrorCode::ChannelAccountNotFound,
                format!("merchant {merchant_id} has no channel account {channel_account_id}"),
            )
        })?;
    if !account.mode.takes_payments() {
        return Err(AttemptFailure::Refused(Refusal::new(
            ErrorCode::InvalidAccountMode,
            format!(
                "channel account {channel_account_id} is a provider account: it acts for its sub-merchants and takes no payments itself (activate a direct account for the platform's own)"
            ),
        )));
    }
    if state
        .model_for_request()?
        .is_channel_account_disabled(&channel_account_id)
    {
        return Err(AttemptFailure::Refused(Refusal::new(
            ErrorCode::ChannelAccountDisabled,
            format!("channel account {channel_account_id} is disabled and takes no new payments"),
        )));
    }
    let adapter = state.channel(account.channel)?;
    paycenter_gateway::check_invoke_method(adapter, invoke_method)
        .map_err(|error| Refusal::new(ErrorCode::UnsupportedInvokeMethod, error.to_string()))?;
    if let Some(currencies) = adapter.supported_currencies() {
        if !currencies.contains(&currency) {
            return Err(AttemptFailure::Refused(Refusal::new(
                ErrorCode::UnsupportedCurrency,
                format!(
                    "{} takes {}",
                    account.channel.as_str(),
                    currencies
                        .iter()
                        .map(|currency| currency.code())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )));
        }
    }
    for field in adapter.required_payment_fields(invoke_method) {
        let given = match *field {
            "payer_id" => payer_id.is_some(),
            "client_ip" => client_ip.is_some(),
            other => unreachable!("adapters name only known fields, not {other}"),
        };
        if !given {
            return Err(AttemptFailure::Refused(Refusal::new(
                ErrorCode::MissingChannelField,
                format!(
                    "{} {} payments need {field}",
                    account.channel.as_str(),
                    invoke_method.as_str()
                ),
            )));
        }
    }
    if share != ShareMode::None {
        check_shareable(state, &merchant_id, &account, adapter, &splits)?;
    }
    let params = state.channel_params(&account)?;

    let now = state.clock.now();
    let trade_no = TradeNo::generate(now, rand::random::<u64>());
    let start = StartAttempt {
        trade_no: trade_no.clone(),
        merchant_id: merchant_id.clone(),
        order_no: order_no.clone(),
        app_id: app_id.clone(),
        channel_account_id: channel_account_id.clone(),
        channel: account.channel,
        invoke_method,
        amount,
        fee_rate: account.fee_rate,
        splits,
        subject: subject.clone(),
        expire_seconds,
        min_attempt_interval_ms: state.config.min_attempt_interval_ms,
        return_url: return_url.clone(),
        route: route.clone().map(Box::new),
        failover_from,
        share,
    };
    // The order's stream: where its attempts already are (orders recorded before order
    // numbers lived in their app's namespace keep their stream), else the app's own. With no
    // attempt ever recorded under an older name, it is the app's own without a lookup.
    let stream_id = state
        .model_for_request()?
        .order_stream(&app_id, &merchant_id, &order_no)
        .map_err(Refusal::from)?;
    // Most orders are new: decided without reading their (empty) stream first.
    let (decided, _) = state
        .execute_on_new_stream(&stream_id, &format!("start-{trade_no}"), |history, now| {
            Order::from_events(history).decide(&OrderCommand::StartAttempt(start.clone()), now)
        })
        .await?;
    // Superseded attempts were closed in paycenter; the reactor closes each at its own
    // channel with its own account's parameters, retrying (`reactor::close_abandoned`).
    let Some(Event::PaymentAttemptStarted(started)) = decided.last() else {
        return Err(AttemptFailure::Refused(Refusal::internal(
            "create payment",
            "no attempt started",
        )));
    };
    let request = CreatePayment {
        channel_account_id: channel_account_id.clone(),
        trade_no: trade_no.clone(),
        amount,
        subject,
        invoke_method,
        expires_at_unix: started.expires_at.timestamp(),
        notify_url: state.notify_url(account.channel, &channel_account_id),
        checkout_url: state.checkout_url(&trade_no),
        payer_id,
        client_ip,
        profit_sharing: share != ShareMode::None,
    };
    let initiation = crate::service::channel_call(
        state,
        account.channel,
        &channel_account_id,
        "initiate",
        adapter.create_payment(&params, &request),
    )
    .await;
    crate::service::breakers::after_initiation(state, &channel_account_id, &initiation).await;
    let initiated = match initiation {
        Ok(initiated) => initiated,
        Err(error) => {
            // Never half-done: the attempt is recorded as failed, then the app hears 502.
            let reason = format!("initiation failed: {error}");
            state
                .execute(
                    &stream_id,
                    &format!("initiation-failed-{trade_no}"),
                    |history, now| {
                        Order::from_events(history).decide(
                            &OrderCommand::RecordFailure {
                                trade_no: trade_no.clone(),
                                reason: reason.clone(),
                                source: OutcomeSource::Query,
                            },
                            now,
                        )
                    },
                )
                .await?;
            return Err(AttemptFailure::Initiation { trade_no, error });
        }
    };
    let mut initiated = initiated;
    // A QR for the user's phone (native_qr): paycenter's page draws it too, for apps that
    // send the person there rather than draw it themselves.
    let qr_page = match &initiated.action {
        PaymentAction::QrCode { qr_code } => {
            initiated
                .checkout_qr_code
                .get_or_insert_with(|| qr_code.clone());
            Some(state.checkout_url(&trade_no))
        }
        _ => None,
    };
    if initiated.channel_reference.is_some() || initiated.checkout_qr_code.is_some() {
        let command = OrderCommand::RecordInitiation {
            trade_no: trade_no.clone(),
            channel_reference: initiated.channel_reference.clone(),
            checkout_qr_code: initiated.checkout_qr_code.clone(),
        };
        state
            .execute(
                &stream_id,
                &format!("initiated-{trade_no}"),
                |history, now| Order::from_events(history).decide(&command, now),
            )
            .await?;
    }
    Ok(PaymentStarted {
        trade_no,
        channel: account.channel,
        expires_at: started.expires_at,
        action: initiated.action,
        qr_page,
        channel_account_id,
        route,
    })
}

/// Every attempt of an app's order, oldest first: those its stream's `payment.attempt_started`
/// events name, each as the read model holds it. An attempt the model has not folded yet is
/// left out, as every read of the model leaves it out.
pub fn attempts_of_order(
    state: &AppState,
    app_id: &AppId,
    merchant_id: &MerchantId,
    order_no: &OrderNo,
) -> Result<Vec<PaymentView>, Refusal> {
    let stream_id = state
        .model_for_request()?
        .order_stream(app_id, merchant_id, order_no)?;
    // Read without the model's lock: the stream is read from the store.
    let recorded = state.read_stream(&stream_id)?;
    let trade_nos = trade_nos_of_order(&recorded, app_id, merchant_id, order_no)
        .map_err(|error| Refusal::internal("decode", error))?;
    let model = state.model_for_request()?;
    let mut attempts = Vec::with_capacity(trade_nos.len());
    for trade_no in &trade_nos {
        if let Some(payment) = model.payment(trade_no)? {
            attempts.push(payment);
        }
    }
    Ok(attempts)
}

/// The trade numbers of the attempts `app_id` started on an order's stream, oldest first. A
/// stream of an older name (`order-{merchant}-{order_no}`, before order numbers lived in their
/// app's namespace) may hold attempts of several apps acting for the merchant: only the
/// asking app's are its order's.
fn trade_nos_of_order(
    recorded: &[RecordedEvent],
    app_id: &AppId,
    merchant_id: &MerchantId,
    order_no: &OrderNo,
) -> Result<Vec<TradeNo>, DecodeError> {
    let mut trade_nos = Vec::new();
    for event in recorded
        .iter()
        .filter(|event| event.event_type == "payment.attempt_started")
    {
        if let Event::PaymentAttemptStarted(started) = Event::decode(event)? {
            if (&started.app_id, &started.merchant_id, &started.order_no)
                == (app_id, merchant_id, order_no)
            {
                trade_nos.push(started.trade_no);
            }
        }
    }
    Ok(trade_nos)
}

/// A payment that shares at the channel: the channel shares, and every split names a
/// receiver bound under the payment's own account.
fn check_shareable(
    state: &AppState,
    merchant_id: &MerchantId,
    account: &paycenter_domain::events::ChannelAccountActivated,
    adapter: &dyn paycenter_gateway::PaymentChannel,
    splits: &[Split],
) -> Result<(), Refusal> {
    if !adapter.shares_at_channel() {
        return Err(Refusal::new(
            ErrorCode::UnsupportedChannel,
            format!(
                "paycenter shares no money at {} yet: use share none",
                account.channel
            ),
        )
        .with_field("share"));
    }
    if splits.is_empty() {
        return Err(Refusal::new(
            ErrorCode::InvalidSplits,
            "a payment shared at the channel needs splits naming its receivers",
        )
        .with_field("splits"));
    }
    let model = state.model_for_request()?;
    for (split_idx, split) in splits.iter().enumerate() {
        let bound = model
            .receiver(merchant_id, &split.receiver)
            .is_some_and(|receiver| receiver.channel_account_id == account.channel_account_id);
        if !bound {
            return Err(Refusal::new(
                ErrorCode::InvalidSplits,
                format!(
                    "splits[{split_idx}].receiver {:?} is no receiver bound under channel account {}",
                    split.receiver, account.channel_account_id
                ),
            )
            .with_field(format!("splits[{split_idx}].receiver")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use paycenter_domain::events::PaymentAttemptStarted;
    use paycenter_domain::Currency;
    use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore};

    fn started(
        app_id: &AppId,
        trade_no: &TradeNo,
        merchant_id: &MerchantId,
        order_no: &OrderNo,
    ) -> Event {
        Event::PaymentAttemptStarted(PaymentAttemptStarted {
            trade_no: trade_no.clone(),
            merchant_id: merchant_id.clone(),
            order_no: order_no.clone(),
            app_id: app_id.clone(),
            channel_account_id: ChannelAccountId::from_entropy(1),
            channel: Channel::Sandbox,
            invoke_method: InvokeMethod::Pc,
            amount: Money::from_minor(100, Currency::CNY),
            fee: Money::from_minor(0, Currency::CNY),
            splits: Vec::new(),
            subject: "rent".into(),
            started_at: Utc::now(),
            expires_at: Utc::now(),
            return_url: None,
            route: None,
            share: ShareMode::None,
        })
    }

    /// A stream of an older name holds the attempts of two apps acting for one merchant: each
    /// app's lookup of the order finds its own attempts only, oldest first.
    #[test]
    fn an_order_on_a_stream_of_an_older_name_answers_only_the_asking_apps_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
        let merchant_id = MerchantId::from_entropy(7);
        let order_no = OrderNo::parse("SHARED-1").unwrap();
        let (first_app, second_app) = (AppId::from_entropy(1), AppId::from_entropy(2));
        let trade_nos: Vec<TradeNo> = (0..3).map(|n| TradeNo::generate(Utc::now(), n)).collect();
        let older_stream = format!("order-{merchant_id}-{order_no}");
        for (revision, app_id) in [&first_app, &second_app, &first_app]
            .into_iter()
            .enumerate()
        {
            let event = started(app_id, &trade_nos[revision], &merchant_id, &order_no);
            let expected = match revision {
                0 => ExpectedRevision::NoStream,
                _ => ExpectedRevision::Exact(revision as u64 - 1),
            };
            store
                .append(
                    &older_stream,
                    expected,
                    Event::to_new_events(&[event], &format!("start-{revision}"), None),
                )
                .unwrap();
        }
        let recorded = store.read_stream(&older_stream, 0).unwrap();
        let of = |app_id: &AppId, order_no: &OrderNo| {
            trade_nos_of_order(&recorded, app_id, &merchant_id, order_no).unwrap()
        };
        assert_eq!(
            of(&first_app, &order_no),
            vec![trade_nos[0].clone(), trade_nos[2].clone()]
        );
        assert_eq!(of(&second_app, &order_no), vec![trade_nos[1].clone()]);
        assert!(of(&first_app, &OrderNo::parse("OTHER").unwrap()).is_empty());
    }
}
