"""Schemathesis hooks for paycenter's OpenAPI conformance run (api/tests/openapi_conformance.rs).

Generated ids almost never name something that exists, so most cases would stop at 404. These
hooks point four cases in five at the resources the test made (a merchant, a channel account, an
app, payments, a notification, a reconciliation: PAYCENTER_ST_IDS, a JSON object), so that every
operation also reaches its success. Only generated strings of components generated as valid are
replaced: an invalid component stays what it was, so negative cases stay negative. Routes that disable or rotate act on
accounts and apps of their own, so the rest of the run keeps working.
"""
import datetime
import json
import os
import random

import schemathesis

IDS = json.loads(os.environ["PAYCENTER_ST_IDS"])
# The generator's seed seeds the hooks' choices too, so a run repeats as far as the server's
# answers let it.
random.seed(os.environ.get("PAYCENTER_ST_SEED", "0"))
# Replaced in this share of cases; the rest keep their generated ids.
SHARE = 0.8


# Left out of the case: a list's starting point that names nothing is refused, by design.
DROP = object()
_TODAY = datetime.date.today()
# Lists and statistics: dates, zones and currencies that parse.
LIST_SEEDS = {
    "created_from": "2000-01-01",
    "created_to": "2100-01-01",
    "tz": "Asia/Shanghai",
    "currency": "CNY",
    "from": (_TODAY - datetime.timedelta(days=7)).isoformat(),
    "to": (_TODAY + datetime.timedelta(days=1)).isoformat(),
}


def _seeded(name, path):
    """The seeded value for a parameter or field of the operation at `path`."""
    acting = path.endswith("/{action}")
    if name == "app_id" and path in ("/v1/payments", "/v1/refunds", "/v1/notifications"):
        # The app the app-tagged run calls as (an app lists its own).
        return IDS["lister_app_id"]
    if name == "app_id":
        return IDS["victim_app_id"]
    if name in LIST_SEEDS:
        return LIST_SEEDS[name]
    if name == "starting_after":
        return DROP
    if name == "alert_channel_id" and not path.endswith("/test"):
        # Deleting: a destination of its own, so the test's keeps working.
        return IDS["victim_alert_channel_id"]
    if name == "channel_account_id" and acting:
        return IDS["victim_channel_account_id"]
    if name == "trade_no" and path.endswith("/refunds"):
        return IDS["paid_trade_no"]
    if name == "trade_no" and path.endswith("/share"):
        return IDS["share_trade_no"]
    if name == "receiver_id" and "{receiver_id}" in path:
        # Unbinding: a receiver of its own, so the shared payment's stays bound.
        return IDS["victim_receiver_id"]
    if name == "receiver_id":
        # Binding: a new id each time (one bound differently would answer 409).
        return "st-r-%d" % random.randrange(10**12)
    if name == "type" and path.endswith("/receivers"):
        return "merchant"
    if name == "trade_no" and path.startswith("/checkout/"):
        return IDS["checkout_trade_no"]
    if name == "trade_no" and path.startswith("/sandbox/pay/"):
        return IDS["sandbox_trade_no"]
    return IDS.get(name)


def _replace(values, path):
    if not isinstance(values, dict):
        return
    for name, value in list(values.items()):
        seeded = _seeded(name, path)
        if seeded is DROP:
            del values[name]
        elif seeded is not None and isinstance(value, str):
            values[name] = seeded


def _valid(case, location):
    """Whether the component at `location` (`path`, `query`, `body`) was generated valid."""
    meta = getattr(case, "_meta", None)
    if meta is None:
        return True
    for key, component in meta.components.items():
        if getattr(key, "value", key) == location:
            return component.mode.name == "POSITIVE"
    return True


@schemathesis.hook
def map_case(context, case):
    path = case.operation.path
    # The cashier's pages and the sandbox's pay succeed only with their seeded trade and
    # token, a share only with the payment made to be shared, a receiver's binding and
    # unbinding only with the test's merchant and account (the generator makes few valid
    # cases of such operations): always seeded, or a run may see too few successes to tell.
    always = (
        path.startswith(("/checkout/", "/sandbox/pay/", "/v1/reconciliations/upload"))
        or path.endswith(("/share", "/receivers"))
        or "{receiver_id}" in path
    )
    if random.random() >= SHARE and not always:
        return case
    if _valid(case, "path"):
        _replace(case.path_parameters, path)
    if _valid(case, "query"):
        _replace(case.query, path)
    if not _valid(case, "body"):
        return case
    if isinstance(case.body, dict):
        _replace(case.body, path)
        if isinstance(case.body.get("merchant_ids"), list):
            case.body["merchant_ids"] = [IDS["merchant_id"]]
        if path == "/v1/payments":
            # Every order number once: a new attempt of the same order must wait its spacing.
            case.body["order_no"] = "st-%d" % random.randrange(10**12)
            # One account for a direct payment, a list of them only for the cashier: the
            # document cannot say that the two exclude each other.
            if case.body.get("invoke_method") == "cashier":
                case.body.pop("channel_account_id", None)
            else:
                case.body.pop("channel_account_ids", None)
                case.body["channel_account_id"] = IDS["channel_account_id"]
        if path == "/v1/payouts":
            # Every number once, a small amount the merchant has, a receiver the sandbox pays.
            case.body["payout_no"] = "st-p-%d" % random.randrange(10**12)
            case.body["amount"] = "0.01"
            case.body["currency"] = "CNY"
            case.body["receiver"] = {"type": "sandbox", "account": "st-wallet"}
        if path == "/v1/operators":
            # Every address once (an address is one operator's).
            case.body["email"] = "st-%d@example.com" % random.randrange(10**12)
        if path.startswith("/sandbox/pay/") and random.random() < 0.8:
            # Mostly the plain outcome: a reported amount of its own is the anomaly's play.
            case.body.pop("amount", None)
            case.body.pop("currency", None)
    if path == "/v1/reconciliations/upload":
        # A bill that parses (an empty one: nothing to match), so the upload can succeed.
        case.body = b"trade_no,channel_trade_no,amount,currency\n"
    return case
