//! The use cases of `service`, called directly (no HTTP, no background loop) on a real SQLite
//! store with a clock that stands still until the test moves it: each decision's time is the
//! clock's, so expiries, sweep ages and refund times are checked to the second.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use paycenter_api::clock::FixedClock;
use paycenter_api::error::ErrorCode;
use paycenter_api::server::{open_state, StateParts};
use paycenter_api::service::payments::{start, StartPayment};
use paycenter_api::service::sweep::{self, SweepItem};
use paycenter_api::service::{closes, outcomes, refunds};
use paycenter_api::state::{AppState, ServiceConfig};
use paycenter_domain::ids::{
    AppId, ChannelAccountId, ChannelTradeNo, MerchantId, OrderNo, RefundNo,
};
use paycenter_domain::payment::{AttemptStatus, CloseReason, InvokeMethod, OutcomeSource};
use paycenter_domain::{Currency, Money};
use paycenter_gateway::registry::ChannelRegistry;
use paycenter_gateway::sandbox::{SandboxChannel, SandboxProvider};
use paycenter_gateway::CallbackNotice;
use serde_json::{json, Value};

const SWEEP_AFTER_SECONDS: u64 = 60;

struct World {
    state: Arc<AppState>,
    clock: Arc<FixedClock>,
    app_id: AppId,
    merchant_id: MerchantId,
    channel_account_id: ChannelAccountId,
    _data_dir: tempfile::TempDir,
}

fn started_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
}

async fn admin_call(answer: paycenter_api::http::Answer) -> Value {
    let (status, body) = answer.unwrap_or_else(|refusal| panic!("{}", refusal.message));
    assert!(status.is_success(), "{body}");
    body
}

/// A service over a fresh SQLite store with the sandbox channel, a merchant, its sandbox
/// account and an app; no background loop runs.
async fn world() -> World {
    let data_dir = tempfile::tempdir().unwrap();
    let store_dir = data_dir.path().to_owned();
    let store = tokio::task::spawn_blocking(move || {
        paycenter_store::sqlite::SqliteStore::open(&store_dir, Default::default())
    })
    .await
    .unwrap()
    .unwrap();
    let clock = FixedClock::at(started_at());
    let provider = SandboxProvider::new();
    let public_url = "http://127.0.0.1:9";
    let state = open_state(
        StateParts {
            store: Arc::new(store),
            master_key: paycenter_api::keys::MasterKey::from_bytes(&[7; 32]),
            config: ServiceConfig {
                admin_token: "admin".to_owned(),
                public_url: public_url.to_owned(),
                min_attempt_interval_ms: 0,
                retry_schedule: Default::default(),
                webhook_timeout_ms: 1_000,
                node_id: "use-cases".to_owned(),
                sweep_after_seconds: SWEEP_AFTER_SECONDS,
                app_rate_limit: paycenter_api::rate_limit::RateLimit {
                    per_second: 1_000,
                    burst: 1_000,
                },
                egress: Default::default(),
                sandbox_enabled: true,
                alerts: Default::default(),
                breaker: Default::default(),
            },
            clock: Box::new(clock.clone()),
            channels: ChannelRegistry::new(vec![Box::new(SandboxChannel::new(
                provider.clone(),
                public_url,
            ))]),
            sandbox_provider: provider,
            outbound: paycenter_gateway::http::OutboundConfig {
                egress: Default::default(),
                extra_roots_pem: None,
                https_proxy: None,
            },
        },
        data_dir.path(),
    )
    .await
    .unwrap();
    let handlers = paycenter_api::http::handlers::create_merchant;
    let merchant =
        admin_call(handlers(state.clone(), json!({"name": "Acme"}).to_string().into()).await).await;
    let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
    let account = admin_call(
        paycenter_api::http::handlers::create_channel_account(
            state.clone(),
            merchant_id.clone(),
            None,
            json!({"channel": "sandbox", "params": {"signing_secret": "s3cret-s3cret-s3cret"}})
                .to_string()
                .into(),
        )
        .await,
    )
    .await;
    let app = admin_call(
        paycenter_api::http::handlers::create_app(
            state.clone(),
            json!({"name": "rent", "merchant_ids": [merchant_id], "notify_url": "https://app.example.com/hooks"})
                .to_string()
                .into(),
        )
        .await,
    )
    .await;
    World {
        state,
        clock,
        app_id: AppId::parse(app["app_id"].as_str().unwrap()).unwrap(),
        merchant_id: MerchantId::parse(&merchant_id).unwrap(),
        channel_account_id: ChannelAccountId::parse(
            account["channel_account_id"].as_str().unwrap(),
        )
        .unwrap(),
        _data_dir: data_dir,
    }
}

fn cny(text: &str) -> Money {
    Money::parse_positive(text, Currency::CNY).unwrap()
}

async fn start_payment(
    world: &World,
    order_no: &str,
    amount: &str,
) -> paycenter_domain::ids::TradeNo {
    let started = start(
        &world.state,
        StartPayment {
            app_id: world.app_id.clone(),
            merchant_id: world.merchant_id.clone(),
            account: paycenter_api::service::payments::AccountChoice::Given(
                world.channel_account_id.clone(),
            ),
            order_no: OrderNo::parse(order_no).unwrap(),
            amount: cny(amount),
            invoke_method: InvokeMethod::Pc,
            subject: "rent".to_owned(),
            splits: Vec::new(),
            expire_seconds: 900,
            payer_id: None,
            client_ip: None,
            return_url: None,
            share: paycenter_domain::vocabulary::ShareMode::None,
        },
    )
    .await
    .unwrap_or_else(|refusal| panic!("{}", refusal.message));
    assert_eq!(
        started.expires_at,
        world.clock_now() + Duration::seconds(900)
    );
    started.trade_no
}

impl World {
    fn clock_now(&self) -> DateTime<Utc> {
        use paycenter_api::clock::Clock;
        self.clock.now()
    }

    fn payment(
        &self,
        trade_no: &paycenter_domain::ids::TradeNo,
    ) -> paycenter_projections::model::PaymentView {
        self.state
            .model_for_request()
            .unwrap()
            .payment(trade_no)
            .unwrap()
            .expect("a payment")
    }

    fn due(&self) -> Vec<SweepItem> {
        sweep::due(
            &self.state,
            self.clock_now(),
            Duration::seconds(SWEEP_AFTER_SECONDS as i64),
            16,
            |_| false,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_asks_only_after_the_sweep_age_and_closes_only_after_expiry() {
    let world = world().await;
    let trade_no = start_payment(&world, "ORDER-1", "100.00").await;
    assert_eq!(world.payment(&trade_no).created_at, started_at());
    assert!(
        world.due().is_empty(),
        "nothing is due before the sweep age"
    );

    world
        .clock
        .advance(Duration::seconds(SWEEP_AFTER_SECONDS as i64));
    let due = world.due();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].key(), trade_no.to_string());
    // The sandbox has not seen it paid and it has not expired: asking changes nothing.
    sweep::query(&world.state, &due[0]).await.unwrap();
    assert_eq!(world.payment(&trade_no).status, AttemptStatus::Pending);

    // One second past its expiry: the sweeper closes it at the channel, then in the ledger.
    world
        .clock
        .advance(Duration::seconds(900 - SWEEP_AFTER_SECONDS as i64 + 1));
    sweep::query(&world.state, &world.due()[0]).await.unwrap();
    let payment = world.payment(&trade_no);
    assert_eq!(payment.status, AttemptStatus::Closed);
    assert!(world.due().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_refund_is_decided_once_and_refunds_never_pass_what_was_paid() {
    let world = world().await;
    let trade_no = start_payment(&world, "ORDER-2", "100.00").await;
    outcomes::record(
        &world.state,
        &world.channel_account_id,
        CallbackNotice::PaymentSucceeded {
            trade_no: trade_no.clone(),
            channel_trade_no: ChannelTradeNo::parse("sbx-4711").unwrap(),
            amount: cny("100.00"),
        },
        OutcomeSource::Callback,
    )
    .await
    .unwrap();
    let payment = world.payment(&trade_no);
    assert_eq!(payment.status, AttemptStatus::Succeeded);
    assert_eq!(payment.paid_at, Some(started_at()));

    world.clock.advance(Duration::minutes(5));
    let request = |refund_no: &str, amount: &str| refunds::RequestRefund {
        refund_no: RefundNo::parse(refund_no).unwrap(),
        amount: cny(amount),
        reason: String::new(),
    };
    let first = refunds::request(&world.state, &payment, request("R1", "60.00"))
        .await
        .unwrap();
    let again = refunds::request(&world.state, &payment, request("R1", "60.00"))
        .await
        .unwrap();
    assert_eq!(first, again);
    let payment = world.payment(&trade_no);
    assert_eq!(payment.refunds.len(), 1);
    assert_eq!(
        payment.refunds[0].requested_at,
        started_at() + Duration::minutes(5)
    );

    let refused = refunds::request(&world.state, &payment, request("R2", "40.01"))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::RefundExceedsAvailable);
    refunds::request(&world.state, &payment, request("R2", "40.00"))
        .await
        .unwrap();
    assert_eq!(world.payment(&trade_no).refunds.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_closes_a_pending_attempt_and_a_paid_one_stays_paid() {
    let world = world().await;
    let pending = start_payment(&world, "ORDER-3", "10.00").await;
    closes::close(&world.state, &world.payment(&pending), CloseReason::ByApp)
        .await
        .unwrap();
    assert_eq!(world.payment(&pending).status, AttemptStatus::Closed);

    let paid = start_payment(&world, "ORDER-4", "10.00").await;
    outcomes::record(
        &world.state,
        &world.channel_account_id,
        CallbackNotice::PaymentSucceeded {
            trade_no: paid.clone(),
            channel_trade_no: ChannelTradeNo::parse("sbx-4712").unwrap(),
            amount: cny("10.00"),
        },
        OutcomeSource::Callback,
    )
    .await
    .unwrap();
    let refused = closes::close(&world.state, &world.payment(&paid), CloseReason::ByApp)
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::PaymentAlreadySucceeded);
    assert_eq!(world.payment(&paid).status, AttemptStatus::Succeeded);
}

/// A command decided first over no history (`execute_on_new_stream`: a payment's start, most
/// orders being new) never rests on that assumption. On a stream that exists the store refuses
/// the append expecting no stream, and the command is decided again over the stream as read; a
/// decision that refuses over no history is made again over the stream as read; one that
/// refuses over the stream as read is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_assumed_on_a_new_stream_is_decided_again_over_the_stream_as_read() {
    use paycenter_domain::events::{Event, MerchantOnboarded};
    let world = world().await;
    let state = &world.state;
    let stream_id = "merchant-assumed-new";
    // Each decision records how much history it saw.
    let seen = |history: &[Event], now: DateTime<Utc>| {
        vec![Event::MerchantOnboarded(MerchantOnboarded {
            merchant_id: world.merchant_id.clone(),
            name: format!("seen {}", history.len()),
            onboarded_at: now,
        })]
    };
    let names = || {
        state
            .store
            .read_stream(stream_id, 0)
            .unwrap()
            .iter()
            .map(|event| {
                serde_json::from_str::<Value>(&event.payload).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect::<Vec<_>>()
    };
    let (_, appended) = state
        .execute_on_new_stream(stream_id, "first", |history, now| Ok(seen(history, now)))
        .await
        .unwrap();
    assert_eq!(appended.unwrap().last_revision, 0);
    // The stream exists now: the decision over no history meets the store's refusal and is
    // made again over the one event.
    let (_, appended) = state
        .execute_on_new_stream(stream_id, "second", |history, now| Ok(seen(history, now)))
        .await
        .unwrap();
    assert_eq!(appended.unwrap().last_revision, 1);
    // Refused over no history, taken over the stream as read.
    let (_, appended) = state
        .execute_on_new_stream(stream_id, "third", |history, now| {
            if history.is_empty() {
                return Err(paycenter_domain::DomainError::TooManyAttempts {
                    order_no: OrderNo::parse("X").unwrap(),
                    max: 0,
                });
            }
            Ok(seen(history, now))
        })
        .await
        .unwrap();
    assert_eq!(appended.unwrap().last_revision, 2);
    assert_eq!(names(), ["seen 0", "seen 1", "seen 2"]);
    // Refused over the stream as read: the refusal is the answer, and nothing is recorded.
    let refused = state
        .execute_on_new_stream(stream_id, "fourth", |history, now| {
            if history.len() == 3 {
                return Err(paycenter_domain::DomainError::TooManyAttempts {
                    order_no: OrderNo::parse("X").unwrap(),
                    max: 3,
                });
            }
            Ok(seen(history, now))
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::TooManyAttempts);
    assert_eq!(names().len(), 3);
}
