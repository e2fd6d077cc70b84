//! The admin side's operations, whoever asks: the admin token through the API
//! ([`crate::http::router`]) or an operator through the console ([`crate::http::console`]).
//! [`operate`] is the one place a role is checked and the actor is set for the events an
//! operation appends.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ErrorCode, Refusal};
use crate::http::routes::Operation;
use crate::http::{admin, alerts, handlers, lists, operators, payouts, receivers, routing, Answer};
use crate::service::access::{self, Actor};
use crate::state::AppState;

/// An admin-side operation done by `actor`: the admin token through the API, or an operator
/// through the console. The role is checked here, for both, before anything is read or done;
/// the events the operation appends record the actor.
pub async fn operate(
    state: Arc<AppState>,
    actor: Actor,
    operation: Operation,
    parameters: Vec<String>,
    query: HashMap<String, String>,
    body: Bytes,
) -> Answer {
    let permission = operation.permission().ok_or_else(|| {
        Refusal::new(
            ErrorCode::Forbidden,
            format!("{} is not an operator's operation", operation.id()),
        )
    })?;
    access::authorize(&actor, permission)?;
    let mut parameters = parameters.into_iter();
    let mut parameter = move || {
        parameters
            .next()
            .ok_or_else(|| Refusal::invalid("a path parameter is missing"))
    };
    let work = async move {
        match operation {
            Operation::CreateMerchant => handlers::create_merchant(state, body).await,
            Operation::CreateChannelAccount => {
                handlers::create_channel_account(state, parameter()?, None, body).await
            }
            Operation::RotateChannelAccount => {
                let merchant_id = parameter()?;
                handlers::create_channel_account(state, merchant_id, Some(parameter()?), body).await
            }
            Operation::MerchantBalances => handlers::merchant_balances(state, parameter()?).await,
            Operation::Reconcile => admin::reconcile(state, body).await,
            Operation::ReconcileUpload => admin::reconcile_upload(state, query, body).await,
            Operation::GetReconciliation => admin::get_reconciliation(state, parameter()?).await,
            Operation::ListProjections => admin::list_projections(state).await,
            Operation::RebuildProjection => admin::rebuild_projection(state, parameter()?).await,
            Operation::CreateApp => handlers::create_app(state, body).await,
            Operation::AppAction => {
                let app_id = parameter()?;
                handlers::app_action(state, app_id, parameter()?, body).await
            }
            Operation::ChannelAccountAction => {
                let (merchant_id, channel_account_id) = (parameter()?, parameter()?);
                handlers::channel_account_action(
                    state,
                    merchant_id,
                    channel_account_id,
                    parameter()?,
                )
                .await
            }
            Operation::FindPayments => lists::find_payments(state, None, query).await,
            Operation::ListRefunds => lists::list_refunds(state, None, query).await,
            Operation::ListMerchants => lists::list_merchants(state, query).await,
            Operation::GetMerchant => lists::get_merchant(state, parameter()?).await,
            Operation::ListChannelAccounts => {
                lists::list_channel_accounts(state, parameter()?, query).await
            }
            Operation::MerchantStats => lists::merchant_stats(state, parameter()?, query).await,
            Operation::ListApps => lists::list_apps(state, query).await,
            Operation::ListReconciliations => lists::list_reconciliations(state, query).await,
            Operation::GetPayment => handlers::get_payment(state, None, parameter()?).await,
            Operation::CreateRefund => {
                handlers::create_refund(state, None, parameter()?, body).await
            }
            Operation::ListNotifications => handlers::list_notifications(state, None, query).await,
            Operation::RedeliverNotification => {
                handlers::redeliver_notification(state, None, parameter()?).await
            }
            Operation::CreateAlertChannel => alerts::create_alert_channel(state, body).await,
            Operation::ListAlertChannels => alerts::list_alert_channels(state).await,
            Operation::DeleteAlertChannel => {
                alerts::delete_alert_channel(state, parameter()?).await
            }
            Operation::TestAlertChannel => alerts::test_alert_channel(state, parameter()?).await,
            Operation::ListAlerts => alerts::list_alerts(state, query).await,
            Operation::SetRouting => routing::set_routing(state, parameter()?, body).await,
            Operation::GetRouting => routing::get_routing(state, parameter()?).await,
            Operation::CreatePayout => payouts::create_payout(state, body).await,
            Operation::GetPayout => payouts::get_payout(state, parameter()?).await,
            Operation::ListPayouts => payouts::list_payouts(state, query).await,
            Operation::CreateReceiver => {
                receivers::create_receiver(state, parameter()?, body).await
            }
            Operation::ListReceivers => receivers::list_receivers(state, parameter()?).await,
            Operation::DeleteReceiver => {
                let merchant_id = parameter()?;
                receivers::delete_receiver(state, merchant_id, parameter()?).await
            }
            Operation::CreateOperator => operators::create_operator(state, body).await,
            Operation::ListOperators => operators::list_operators(state).await,
            Operation::OperatorAction => {
                let operator_id = parameter()?;
                operators::operator_action(state, operator_id, parameter()?).await
            }
            operation => Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("{} is not an operator's operation", operation.id()),
            )),
        }
    };
    access::acting_as(actor, work).await
}
