//! The sandbox channel against a local callback receiver: signed callbacks verify (and a
//! tampered one does not), query and the daily bill agree, a repeated refund id refunds once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use chrono::Utc;
use paycenter_domain::ids::{ChannelAccountId, RefundId, TradeNo};
use paycenter_domain::payment::InvokeMethod;
use paycenter_domain::{Currency, Money};
use paycenter_gateway::sandbox::{SandboxChannel, SandboxOutcome, SandboxProvider};
use paycenter_gateway::{
    CallbackNotice, CallbackRequest, ChannelOrder, ChannelPaymentStatus, CreatePayment,
    PaymentAction, PaymentChannel,
};

/// Accepts HTTP requests on loopback and hands each over as a `CallbackRequest`.
fn callback_receiver() -> (String, mpsc::Receiver<CallbackRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut content_length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
                    if name == "content-length" {
                        content_length = value.parse().unwrap();
                    }
                    headers.push((name, value));
                }
            }
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body).unwrap();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = sender.send(CallbackRequest { headers, body });
        }
    });
    (base, receiver)
}

fn next_callback(receiver: &mpsc::Receiver<CallbackRequest>) -> CallbackRequest {
    receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("the sandbox sent its callback")
}

/// A payment of `amount` for `subject` on `account`, as paycenter asks the sandbox for it, with
/// its callbacks and checkout under `base`.
fn payment_request(
    base: &str,
    account: &ChannelAccountId,
    trade_no: &TradeNo,
    amount: Money,
    subject: String,
) -> CreatePayment {
    CreatePayment {
        channel_account_id: account.clone(),
        trade_no: trade_no.clone(),
        amount,
        subject,
        invoke_method: InvokeMethod::Wap,
        expires_at_unix: Utc::now().timestamp() + 600,
        notify_url: format!("{base}/callbacks/sandbox/{account}"),
        checkout_url: format!("{base}/checkout/{trade_no}"),
        payer_id: None,
        client_ip: None,
        profit_sharing: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_speaks_like_a_channel() {
    let (base, callbacks) = callback_receiver();
    let provider = SandboxProvider::new();
    let channel = SandboxChannel::new(provider.clone(), &base);
    let params = channel
        .validate_params(&serde_json::json!({"signing_secret": "0123456789abcdef0123"}))
        .unwrap();
    assert!(channel
        .validate_params(&serde_json::json!({"signing_secret": "short"}))
        .is_err());
    assert!(channel
        .validate_params(&serde_json::json!({"signing_secret": "0123456789abcdef0123", "extra": 1}))
        .is_err());

    let account = ChannelAccountId::from_entropy(1);
    let trade_no = TradeNo::generate(Utc::now(), 42);
    let amount = Money::from_minor(1_000, Currency::CNY);
    let request = payment_request(&base, &account, &trade_no, amount, "rent".into());
    let order = ChannelOrder {
        trade_no: trade_no.clone(),
        channel_reference: None,
        channel_trade_no: None,
        amount,
        notify_url: request.notify_url.clone(),
        share_returns: Vec::new(),
    };
    let action = channel
        .create_payment(&params, &request)
        .await
        .unwrap()
        .action;
    assert_eq!(
        action,
        PaymentAction::CheckoutUrl {
            url: format!("{base}/checkout/{trade_no}")
        }
    );
    assert_eq!(
        channel.query_payment(&params, &order).await.unwrap(),
        ChannelPaymentStatus::Pending
    );

    provider
        .pay(&trade_no, SandboxOutcome::Success, false, None)
        .unwrap();
    let callback = next_callback(&callbacks);
    assert!(callback.header("sandbox-signature").is_some());
    let notice = channel.verify_callback(&params, &callback).unwrap();
    let CallbackNotice::PaymentSucceeded {
        trade_no: paid,
        amount: paid_amount,
        channel_trade_no,
    } = notice
    else {
        panic!("{notice:?}")
    };
    assert_eq!((paid, paid_amount), (trade_no.clone(), amount));
    assert_eq!(
        channel.query_payment(&params, &order).await.unwrap(),
        ChannelPaymentStatus::Paid {
            channel_trade_no: channel_trade_no.clone(),
            amount
        }
    );

    // One changed byte, or another account's secret, and the callback is refused.
    let mut tampered = callback.clone();
    let at = tampered.body.iter().position(|&byte| byte == b'1').unwrap();
    tampered.body[at] = b'2';
    assert!(channel.verify_callback(&params, &tampered).is_err());
    let other = serde_json::json!({"signing_secret": "another-secret-0123456789"});
    assert!(channel.verify_callback(&other, &callback).is_err());

    // A refund submitted twice is one refund.
    let refund_id = RefundId::parse("rf_one").unwrap();
    let part = Money::from_minor(300, Currency::CNY);
    channel
        .refund(&params, &order, &refund_id, part)
        .await
        .unwrap();
    channel
        .refund(&params, &order, &refund_id, part)
        .await
        .unwrap();
    for _ in 0..2 {
        let notice = channel
            .verify_callback(&params, &next_callback(&callbacks))
            .unwrap();
        assert!(
            matches!(notice, CallbackNotice::RefundSucceeded { .. }),
            "{notice:?}"
        );
    }
    // More than what is left is refused by the channel, through its callback.
    channel
        .refund(
            &params,
            &order,
            &RefundId::parse("rf_two").unwrap(),
            Money::from_minor(701, Currency::CNY),
        )
        .await
        .unwrap();
    let notice = channel
        .verify_callback(&params, &next_callback(&callbacks))
        .unwrap();
    assert!(
        matches!(notice, CallbackNotice::RefundFailed { .. }),
        "{notice:?}"
    );

    // The day's bill has the trade, with one refund of 3.00.
    let bill = channel
        .daily_bill(&params, &account, Utc::now().date_naive())
        .await
        .unwrap();
    assert_eq!(bill.len(), 1);
    assert_eq!(
        (bill[0].trade_no.clone(), bill[0].amount, bill[0].refunded),
        (trade_no, amount, part)
    );
    assert_eq!(bill[0].channel_trade_no, channel_trade_no);
}

/// The provider keeps the last `MAX_TRADES` trades: the oldest is forgotten (a query answers
/// that the channel does not know it), the newest of two accounts keep their own callback
/// routes and bills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_forgets_its_oldest_trades_beyond_its_limit() {
    use paycenter_gateway::sandbox::MAX_TRADES;
    let (base, callbacks) = callback_receiver();
    let provider = SandboxProvider::new();
    let channel = SandboxChannel::new(provider.clone(), &base);
    let params = channel
        .validate_params(&serde_json::json!({"signing_secret": "0123456789abcdef0123"}))
        .unwrap();
    let accounts = [
        ChannelAccountId::from_entropy(1),
        ChannelAccountId::from_entropy(2),
    ];
    let amount = Money::from_minor(1_000, Currency::CNY);
    let now = Utc::now();
    let mut trade_nos = Vec::new();
    for index in 0..=MAX_TRADES as u64 {
        let trade_no = TradeNo::generate(now, index);
        // The last two trades alternate between the accounts.
        let account = &accounts[usize::from(index + 1 >= MAX_TRADES as u64 && index % 2 == 1)];
        let request = payment_request(&base, account, &trade_no, amount, format!("order {index}"));
        channel.create_payment(&params, &request).await.unwrap();
        trade_nos.push((account.clone(), trade_no));
    }
    let order_of = |trade_no: &TradeNo| ChannelOrder {
        trade_no: trade_no.clone(),
        channel_reference: None,
        channel_trade_no: None,
        amount,
        notify_url: String::new(),
        share_returns: Vec::new(),
    };
    let (_, oldest) = &trade_nos[0];
    assert!(provider.trade(oldest).is_none());
    assert_eq!(
        channel
            .query_payment(&params, &order_of(oldest))
            .await
            .unwrap(),
        ChannelPaymentStatus::NotFound
    );
    let (_, second) = &trade_nos[1];
    assert_eq!(provider.trade(second).unwrap().subject, "order 1");

    // Each of the last two trades calls back on its own account's route and is on its bill.
    for (account, trade_no) in &trade_nos[trade_nos.len() - 2..] {
        let trade = provider.trade(trade_no).unwrap();
        assert_eq!(&trade.channel_account_id, account);
        provider
            .pay(trade_no, SandboxOutcome::Success, false, None)
            .unwrap();
        let callback = next_callback(&callbacks);
        let notice = channel.verify_callback(&params, &callback).unwrap();
        assert!(
            matches!(&notice, CallbackNotice::PaymentSucceeded { trade_no: paid, .. } if paid == trade_no),
            "{notice:?}"
        );
        let bill = channel
            .daily_bill(&params, account, now.date_naive())
            .await
            .unwrap();
        assert_eq!(bill.len(), 1, "{account}");
        assert_eq!(&bill[0].trade_no, trade_no);
        assert_eq!(bill[0].channel_trade_no, trade.channel_trade_no);
    }
}
