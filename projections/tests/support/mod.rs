//! Helpers the projection tests share.

use chrono::Utc;
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::Event;
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::{streams, Currency, Money, Rate};
use paycenter_store::{EventStore, ExpectedRevision};

/// `event` as the store would hand it over at `position` (one stream, no chain: the folds under
/// test read neither).
#[allow(dead_code)] // not every test crate that includes this module uses it
pub fn recorded(event: &Event, position: u64) -> RecordedEvent {
    let new_event =
        Event::to_new_events(std::slice::from_ref(event), &format!("e{position}"), None).remove(0);
    RecordedEvent {
        global_position: position,
        stream_id: "s".into(),
        stream_revision: 0,
        event_id: new_event.event_id,
        event_type: new_event.event_type,
        schema_version: new_event.schema_version,
        recorded_at: Utc::now(),
        correlation_id: None,
        causation_id: None,
        payload: new_event.payload,
        prev_hash: [0; 32],
        hash: [0; 32],
    }
}

/// Appends `n_orders` orders (numbered from `first_order`) over three merchants, each as the
/// domain decides it: every fourth left unpaid, every fourth paid and refunded 3.00 of.
#[allow(dead_code)] // not every test crate that includes this module uses it
pub fn add_orders(store: &dyn EventStore, first_order: u64, n_orders: u64) {
    for order_idx in first_order..first_order + n_orders {
        let merchant_id = MerchantId::from_entropy(u128::from(order_idx % 3));
        let order_no = OrderNo::parse(&format!("O{order_idx}")).unwrap();
        let trade_no = TradeNo::generate(Utc::now(), order_idx);
        let amount = Money::from_minor(1_000 + order_idx as i64, Currency::CNY);
        let mut order = Order::default();
        let mut events = Vec::new();
        let mut run = |command: OrderCommand| {
            let decided = order.decide(&command, Utc::now()).unwrap();
            decided.iter().for_each(|event| order.apply(event));
            events.extend(decided);
        };
        run(OrderCommand::StartAttempt(StartAttempt {
            trade_no: trade_no.clone(),
            merchant_id: merchant_id.clone(),
            order_no: order_no.clone(),
            app_id: AppId::from_entropy(1),
            channel_account_id: ChannelAccountId::from_entropy(1),
            channel: Channel::Sandbox,
            invoke_method: InvokeMethod::Pc,
            amount,
            fee_rate: Rate::parse("0.006").unwrap(),
            splits: vec![Split {
                receiver: "partner".into(),
                amount: Money::from_minor(100, Currency::CNY),
            }],
            subject: "rent".into(),
            expire_seconds: 600,
            min_attempt_interval_ms: 0,
            return_url: None,
            route: None,
            failover_from: None,
            share: paycenter_domain::vocabulary::ShareMode::None,
        }));
        if order_idx % 4 != 3 {
            run(OrderCommand::RecordSuccess {
                channel_account_id: ChannelAccountId::from_entropy(1),
                trade_no: trade_no.clone(),
                channel_trade_no: ChannelTradeNo::parse(&format!("C{order_idx}")).unwrap(),
                amount,
                source: OutcomeSource::Callback,
            });
        }
        if order_idx % 4 == 0 {
            let refund_id = RefundId::parse(&format!("rf_{order_idx}")).unwrap();
            run(OrderCommand::RequestRefund {
                trade_no: trade_no.clone(),
                refund_id: refund_id.clone(),
                refund_no: RefundNo::parse("R").unwrap(),
                amount: Money::from_minor(300, Currency::CNY),
                reason: String::new(),
            });
            run(OrderCommand::RecordRefundSuccess {
                trade_no,
                refund_id,
                channel_refund_no: None,
            });
        }
        let stream = streams::order(&AppId::from_entropy(1), &merchant_id, &order_no);
        store
            .append(
                &stream,
                ExpectedRevision::NoStream,
                Event::to_new_events(&events, &stream, None),
            )
            .unwrap();
    }
}
