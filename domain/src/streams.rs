//! Stream names. One stream per aggregate instance; the prefix says which aggregate.

use crate::ids::{AppId, ChannelAccountId, MerchantId, OperatorId, OrderNo};

/// A merchant's stream.
pub fn merchant(merchant_id: &MerchantId) -> String {
    format!("merchant-{merchant_id}")
}

/// A channel account's stream.
pub fn channel_account(channel_account_id: &ChannelAccountId) -> String {
    format!("channel_account-{channel_account_id}")
}

/// A merchant's payouts: one stream, so concurrent payouts are decided one after the other.
pub fn payouts(merchant_id: &MerchantId) -> String {
    format!("payouts-{merchant_id}")
}

/// A split receiver's stream.
pub fn receiver(merchant_id: &MerchantId, receiver_id: &str) -> String {
    format!("receiver-{merchant_id}-{receiver_id}")
}

/// An app's stream.
pub fn app(app_id: &AppId) -> String {
    format!("app-{app_id}")
}

/// An operator's stream.
pub fn operator(operator_id: &OperatorId) -> String {
    format!("operator-{operator_id}")
}

/// An order's stream: every attempt and refund of one merchant's order number.
pub fn order(app_id: &AppId, merchant_id: &MerchantId, order_no: &OrderNo) -> String {
    format!("order-{app_id}-{merchant_id}-{order_no}")
}

/// Whether `stream_id` is [`order`]'s name for this order, told without building the name: the
/// read model asks it of every attempt it folds.
pub fn is_order(
    stream_id: &str,
    app_id: &AppId,
    merchant_id: &MerchantId,
    order_no: &OrderNo,
) -> bool {
    let parts = [
        "order-",
        app_id.as_str(),
        "-",
        merchant_id.as_str(),
        "-",
        order_no.as_str(),
    ];
    let mut rest = stream_id;
    for part in parts {
        match rest.strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// The id of the aggregated cashier of an app's order: derived, so opening it again finds it.
pub fn checkout_id(app_id: &AppId, merchant_id: &MerchantId, order_no: &OrderNo) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{app_id}/{merchant_id}/{order_no}").as_bytes());
    format!("co_{}", &hex::encode(digest)[..32])
}

/// The stream of an aggregated cashier.
pub fn checkout(checkout_id: &str) -> String {
    format!("checkout-{checkout_id}")
}

/// The stream of one idempotency key of one app (`key_sha256` is the hex SHA-256 of the key).
pub fn idempotency_key(app_id: &AppId, key_sha256: &str) -> String {
    format!("idempotency-{app_id}-{key_sha256}")
}

pub use crate::notification::notification_stream as notification;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_stream_is_told_without_building_its_name() {
        let app_id = AppId::parse("app_1").unwrap();
        let merchant_id = MerchantId::parse("mch_1").unwrap();
        let order_no = OrderNo::parse("o-1").unwrap();
        let name = order(&app_id, &merchant_id, &order_no);
        assert!(is_order(&name, &app_id, &merchant_id, &order_no));
        for other in [
            "",
            "order-app_1-mch_1-o-",
            "order-app_1-mch_1-o-12",
            "order-mch_1-app_1-o-1",
            "order-app_1-mch_1",
            "orders-app_1-mch_1-o-1",
        ] {
            assert!(
                !is_order(other, &app_id, &merchant_id, &order_no),
                "{other}"
            );
        }
    }
}
