"""A local stand-in for WeChat Pay's API v3, for paycenter's tests.

Requests are checked with the `wechatpayv3` SDK's helpers (its key loading and its RSA
verification over the request's signed message); answers and notifies are signed with the
SDK's `rsa_sign` under a fresh platform key, and notify resources are encrypted with AES-256-GCM
the way the SDK's `aes_decrypt` reverses (checked before sending). Keys are printed at start as
one JSON line: {"port", "mchid", "appid", "merchant_serial_no", "merchant_private_key",
"api_v3_key", "platform_public_key", "platform_public_key_id"}.

With FAKE_WECHAT_CERTIFICATE_SECONDS=L set, the gateway signs with platform certificates
instead (and prints no platform key): each lives L seconds, the next is published when the one
in use has L/2 left and signs once that one expires, and `GET /v3/certificates` lists the
unexpired ones sealed with the APIv3 key (checked with the SDK's `aes_decrypt` and
`load_certificate` before sending).

Test controls (not part of WeChat Pay's protocol):
  POST /__control/pay     {"out_trade_no", "tamper": bool} -> the notify and paycenter's answer
  POST /__control/verify  {"message", "signature"} -> whether the merchant key signed message
  GET  /__control/stats   -> {"verified": n, "rejected": n, "closes": n, "failed_closes": n}
  POST /__control/fail_closes {"n"} -> the next n close calls answer 500 (a gateway hiccup)
  POST /__control/pay {"out_trade_no", "signer": "unlisted"} -> a notify signed by a
       certificate /v3/certificates never lists (certificate mode)
  stats also count "certificate_downloads" and list the "signing_serials" used in answers

Service-provider (partner) mode: the same merchant is also a provider for the sub-merchants
SUB_MCHIDS (printed as "sub_mchids"). Each partner request is rebuilt by the SDK in partner mode
(`WeChatPay(partner_mode=True)`: pay, query, close, refund, query_refund) from the fields
paycenter sent, and must match it path for path and field for field (stats: "sdk_checked",
"sdk_mismatches"). A sub-merchant sees only its own trades and bill; partner notifies name
sp_mchid and sub_mchid.
  POST /__control/pay {"out_trade_no", "notify_url"} -> the notify sent elsewhere (a crossing)

Profit sharing: receivers/add (its `name` decrypted with the SDK's `rsa_decrypt` under the
platform key the request's Wechatpay-Serial names) and receivers/delete, rebuilt by the SDK's
profitsharing_add_receiver / profitsharing_delete_receiver in partner mode like the rest.
  GET /__control/receivers -> {"<sub_mchid or mchid>": [{"type", "account", "name"}]}
Profit-sharing orders (POST /v3/profitsharing/orders, GET .../orders/{out_order_no}) and return
orders (POST /v3/profitsharing/return-orders), rebuilt by the SDK's profitsharing_order,
profitsharing_order_query and profitsharing_return in partner mode: an order needs a paid
transaction made with settle_info.profit_sharing and receivers bound for its merchant; a
receiver whose account starts with "close" is CLOSED (refused), the rest SUCCESS.
  POST /__control/fail_shares {"n"} -> the next n profit-sharing orders answer 500
  GET  /__control/shares -> {"<out_order_no>": {"receivers", "unfreeze_unsplit", "returns"}}

Merchant transfers (POST /v3/fund-app/mch-transfer/transfer-bills, GET
.../transfer-bills/out-bill-no/{out_bill_no}), rebuilt by the SDK's mch_transfer_bills and
mch_transfer_bills_query: a new bill waits for its user (WAIT_USER_CONFIRM with a
package_info; the query answers no package_info, as WeChat Pay's does); `user_name` is
decrypted like a receiver's name; an openid starting with "refuse" is refused (403 NO_AUTH).
  GET  /__control/transfers -> {"<out_bill_no>": the bill, with the decrypted name}
  POST /__control/settle_transfer {"out_bill_no", "state": "SUCCESS"|"FAIL", "notify": true}
       -> the user confirmed (or it failed): MCHTRANSFER.BILL.FINISHED sent to its notify_url
"""
import base64
import json
import os
import ssl
import re
import secrets
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import (aes_decrypt, load_certificate, load_private_key, load_public_key, rsa_decrypt,
                               rsa_sign, rsa_verify)

MCHID = "1900000109"
SUB_MCHIDS = ["1900000201", "1900000202"]
APPID = "wx8888888888888888"
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092025010100000000000001"
API_V3_KEY = secrets.token_hex(16)
# The official account's AppSecret, for WeChat's OAuth (snsapi_base); codes to openids.
OAUTH_SECRET = secrets.token_hex(16)
oauth_codes = {}


def new_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


merchant_private_pem, merchant_public_pem = new_key()
platform_private_pem, platform_public_pem = new_key()
# Through the SDK's own loaders, as a WeChat Pay integration would load them.
MERCHANT_PUBLIC = load_public_key(merchant_public_pem)
PLATFORM_PRIVATE = load_private_key(platform_private_pem)

lock = threading.RLock()
trades = {}
refunds = {}
receivers = {}  # sub_mchid (or MCHID) -> {(type, account): name}
share_orders = {}  # out_order_no -> the order as answered, with its returns
transfers = {}  # out_bill_no -> the merchant transfer bill
shares_to_fail = [0]
stats = {"verified": 0, "rejected": 0, "closes": 0, "failed_closes": 0, "certificate_downloads": 0,
         "signing_serials": [], "sdk_checked": 0, "sdk_mismatches": [], "partner_calls": 0}
CERTIFICATE_SECONDS = int(os.environ.get("FAKE_WECHAT_CERTIFICATE_SECONDS") or 0)
certificates = []  # certificate mode: {"serial", "key", "pem", "not_before", "not_after"}, oldest first


def mint_certificate(not_before, lifetime):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com sign"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com CA")])
    utc = datetime.timezone.utc
    serial = x509.random_serial_number()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(datetime.datetime.fromtimestamp(int(not_before), tz=utc))
            .not_valid_after(datetime.datetime.fromtimestamp(int(not_before + lifetime), tz=utc))
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"serial": format(serial, "X"), "key": load_private_key(private), "pem": pem,
            "not_before": int(not_before), "not_after": int(not_before + lifetime)}


def current_certificates():
    """The unexpired certificates, publishing the next when the newest has half its life left."""
    now = time.time()
    with lock:
        certificates[:] = [c for c in certificates if c["not_after"] > now]
        if not certificates or certificates[-1]["not_after"] - now < CERTIFICATE_SECONDS / 2:
            certificates.append(mint_certificate(now, CERTIFICATE_SECONDS))
        return list(certificates)


def signer():
    """(private key, serial) answers and notifies are signed with."""
    if not CERTIFICATE_SECONDS:
        return PLATFORM_PRIVATE, PUBLIC_KEY_ID
    # The oldest certificate still valid for a moment: a new one signs once the old expires.
    now = time.time()
    usable = [c for c in current_certificates() if c["not_after"] > now + 1] or current_certificates()[-1:]
    return usable[0]["key"], usable[0]["serial"]


def certificates_answer():
    listed = []
    for cert in current_certificates():
        resource = encrypt_resource(cert["pem"], "certificate")
        assert load_certificate(aes_decrypt(resource["nonce"], resource["ciphertext"], "certificate",
                                            API_V3_KEY)) is not None
        utc8 = datetime.timezone(datetime.timedelta(hours=8))
        listed.append({"serial_no": cert["serial"],
                       "effective_time": datetime.datetime.fromtimestamp(cert["not_before"], utc8).isoformat(),
                       "expire_time": datetime.datetime.fromtimestamp(cert["not_after"], utc8).isoformat(),
                       "encrypt_certificate": {k: resource[k] for k in
                                               ("algorithm", "nonce", "associated_data", "ciphertext")}})
    with lock:
        stats["certificate_downloads"] += 1
    return {"data": listed}
closes_to_fail = [0]


def sdk_partner():
    """The SDK in partner mode, with its transport replaced by a recorder: what it would send."""
    sent = []
    sdk = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=MCHID, private_key=merchant_private_pem,
                    cert_serial_no=SERIAL, appid=APPID, apiv3_key=API_V3_KEY, partner_mode=True,
                    public_key=platform_public_pem, public_key_id=PUBLIC_KEY_ID)
    sdk._core.request = lambda path, method=None, data=None, **_: sent.append((path, data)) or (200, "{}")
    return sdk, sent


PAY_TYPES = {"native": WeChatPayType.NATIVE, "jsapi": WeChatPayType.JSAPI, "app": WeChatPayType.APP,
             "h5": WeChatPayType.H5}


def sdk_rebuild(method, path, request):
    """The partner request the SDK builds from the same fields, or None when it is no partner call."""
    sdk, sent = sdk_partner()
    url = urllib.parse.urlparse(path)
    query = dict(urllib.parse.parse_qsl(url.query))
    match = re.fullmatch(r"/v3/pay/partner/transactions/(native|jsapi|app|h5)", url.path)
    if match:
        fields = {k: request[k] for k in ("description", "out_trade_no", "amount", "payer", "time_expire",
                                          "scene_info", "settle_info", "notify_url", "sub_appid") if k in request}
        sdk.pay(sub_mchid=request.get("sub_mchid"), pay_type=PAY_TYPES[match.group(1)], **fields)
    elif re.fullmatch(r"/v3/pay/partner/transactions/out-trade-no/\w+/close", url.path):
        sdk.close(url.path.split("/")[-2], sub_mchid=request.get("sub_mchid"))
    elif re.fullmatch(r"/v3/pay/partner/transactions/out-trade-no/\w+", url.path):
        sdk.query(out_trade_no=url.path.split("/")[-1], sub_mchid=query.get("sub_mchid"))
    elif url.path == "/v3/refund/domestic/refunds" and "sub_mchid" in request:
        sdk.refund(out_refund_no=request["out_refund_no"], amount=request["amount"],
                   out_trade_no=request.get("out_trade_no"), notify_url=request.get("notify_url"),
                   sub_mchid=request["sub_mchid"])
    elif url.path.startswith("/v3/refund/domestic/refunds/") and "sub_mchid" in query:
        sdk.query_refund(url.path.split("/")[-1], sub_mchid=query["sub_mchid"])
    elif url.path == "/v3/profitsharing/receivers/add" and "sub_mchid" in request:
        # The name is sealed afresh each time (OAEP): compared once decrypted, not here.
        sdk._core.encrypt = lambda text: request.get("name")
        sdk.profitsharing_add_receiver(request["type"], request["account"], request["relation_type"],
                                       name=request.get("name"), custom_relation=request.get("custom_relation"),
                                       appid=request.get("appid"), sub_appid=request.get("sub_appid"),
                                       sub_mchid=request["sub_mchid"])
    elif url.path == "/v3/profitsharing/orders" and "sub_mchid" in request:
        sdk.profitsharing_order(request["transaction_id"], request["out_order_no"],
                                [dict(receiver) for receiver in request["receivers"]],
                                request["unfreeze_unsplit"], appid=request.get("appid"),
                                sub_appid=request.get("sub_appid"), sub_mchid=request["sub_mchid"])
    elif url.path.startswith("/v3/profitsharing/orders/") and "sub_mchid" in query:
        sdk.profitsharing_order_query(query.get("transaction_id"), url.path.split("/")[-1],
                                      sub_mchid=query["sub_mchid"])
    elif url.path == "/v3/profitsharing/return-orders" and "sub_mchid" in request:
        sdk.profitsharing_return(request["out_return_no"], request["return_mchid"], request["amount"],
                                 request["description"], out_order_no=request.get("out_order_no"),
                                 sub_mchid=request["sub_mchid"])
    elif url.path == "/v3/fund-app/mch-transfer/transfer-bills":
        # The name is sealed afresh each time (OAEP): compared once decrypted, not here.
        sdk._core.encrypt = lambda text: request.get("user_name")
        sdk.mch_transfer_bills(request.get("out_bill_no"), request.get("transfer_scene_id"),
                               request.get("openid"), request.get("transfer_amount"),
                               request.get("transfer_remark"), user_name=request.get("user_name"),
                               user_recv_perception=request.get("user_recv_perception"),
                               transfer_scene_report_infos=request.get("transfer_scene_report_infos", []),
                               appid=request.get("appid"), notify_url=request.get("notify_url"))
    elif re.fullmatch(r"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/\w+", url.path):
        sdk.mch_transfer_bills_query(out_bill_no=url.path.split("/")[-1])
    elif url.path == "/v3/profitsharing/receivers/delete" and "sub_mchid" in request:
        sdk.profitsharing_delete_receiver(request["type"], request["account"], appid=request.get("appid"),
                                          sub_appid=request.get("sub_appid"), sub_mchid=request["sub_mchid"])
    else:
        return None
    return sent[0]


def check_with_sdk(method, path, request):
    """Whether a partner request is the one the SDK would send; True for other requests."""
    try:
        rebuilt = sdk_rebuild(method, path, request)
    except Exception as error:  # the SDK refuses to build it: a field it needs is missing
        rebuilt = ("refused: %s" % error, None)
    if rebuilt is None:
        return True
    expected_path, expected_body = rebuilt
    ok = expected_path == path and (expected_body or {}) == (request or {})
    with lock:
        stats["sdk_checked"] += 1
        stats["partner_calls"] += 1
        if not ok:
            stats["sdk_mismatches"].append({"sent": [path, request], "sdk": [expected_path, expected_body]})
    return ok
AUTH = re.compile(r'(\w+)="([^"]*)"')


def check_authorization(method, path, body, header):
    """The SDK's RSA verification over `METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY\\n`."""
    if not header.startswith("WECHATPAY2-SHA256-RSA2048 "):
        return False
    fields = dict(AUTH.findall(header))
    if fields.get("mchid") != MCHID or fields.get("serial_no") != SERIAL:
        return False
    if abs(time.time() - int(fields.get("timestamp", "0"))) > 300:
        return False
    # rsa_verify signs "%s\n%s\n%s\n" % (timestamp, nonce, body): the first two lines of the
    # request message ride in its first argument.
    return rsa_verify("%s\n%s\n%s" % (method, path, fields["timestamp"]), fields["nonce_str"],
                      body, fields["signature"], MERCHANT_PUBLIC)


def signed_headers(body, key_and_serial=None):
    key, serial = key_and_serial or signer()
    timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
    signature = rsa_sign(key, "%s\n%s\n%s\n" % (timestamp, nonce, body))
    if CERTIFICATE_SECONDS:
        with lock:
            if serial not in stats["signing_serials"]:
                stats["signing_serials"].append(serial)
    return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature, "Wechatpay-Serial": serial,
            "Request-ID": secrets.token_hex(8)}


def encrypt_resource(plain, original_type):
    nonce, associated_data = secrets.token_hex(6), original_type
    ciphertext = AESGCM(API_V3_KEY.encode()).encrypt(nonce.encode(), plain.encode(), associated_data.encode())
    resource = {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": associated_data,
                "nonce": nonce}
    assert aes_decrypt(nonce, resource["ciphertext"], associated_data, API_V3_KEY) == plain
    return resource


def transaction(trade):
    if trade.get("sub_mchid"):
        ids = {"sp_appid": APPID, "sp_mchid": MCHID, "sub_mchid": trade["sub_mchid"]}
    else:
        ids = {"appid": APPID, "mchid": MCHID}
    return dict(ids, **{"out_trade_no": trade["out_trade_no"],
            "transaction_id": trade["transaction_id"], "trade_type": trade["trade_type"],
            "trade_state": trade["state"], "trade_state_desc": trade["state"],
            "amount": {"total": trade["total"], "payer_total": trade["total"], "currency": "CNY",
                       "payer_currency": "CNY"}})


def tradebill(sub_mchid=None):
    header = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
              "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
              "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
    lines = [header]
    with lock:
        rows = []
        for trade in trades.values():
            if trade["state"] in ("SUCCESS", "REFUND") and trade.get("sub_mchid") == sub_mchid:
                rows.append((trade, "SUCCESS", "", "", 0))
        for refund in refunds.values():
            if trades[refund["out_trade_no"]].get("sub_mchid") != sub_mchid:
                continue
            rows.append((trades[refund["out_trade_no"]], "REFUND", refund["refund_id"], refund["out_refund_no"],
                         refund["amount"]))
        for trade, state, refund_id, out_refund_no, refund_amount in rows:
            yuan = "%.2f" % (trade["total"] / 100)
            fields = ["2026-11-21 10:00:00", APPID, MCHID, sub_mchid or "0", "", trade["transaction_id"], trade["out_trade_no"],
                      "openid", trade["trade_type"], state, "OTHERS", "CNY", yuan if state == "SUCCESS" else "0.00",
                      "0.00", refund_id or "0", out_refund_no or "0", "%.2f" % (refund_amount / 100), "0.00",
                      "ORIGINAL" if refund_id else "", "SUCCESS" if refund_id else "", trade["description"], "",
                      "0.00", "0.60%", yuan, "%.2f" % (refund_amount / 100), ""]
            lines.append(",".join("`" + field for field in fields))
    lines.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额")
    lines.append("`%d,`0.00,`0.00,`0.00,`0.00,`0.00,`0.00" % len(rows))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, value, signed=True, raw=None):
        body = raw if raw is not None else ("" if value is None else json.dumps(value, ensure_ascii=False))
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if signed:
            for name, header in signed_headers(body if isinstance(body, str) else "").items():
                self.send_header(name, header)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def api(self, method):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode("utf-8")
        path = self.path
        url = urllib.parse.urlparse(path)
        if url.path.startswith("/__control/"):
            return self.control(url, body)
        if url.path == "/bill/tradebill.csv":
            sub_mchid = urllib.parse.parse_qs(url.query).get("sub_mchid", [None])[0]
            return self.answer(200, None, signed=False, raw=tradebill(sub_mchid))
        if url.path == "/connect/oauth2/authorize":
            # WeChat's OAuth inside WeChat: snsapi_base asks the person nothing and sends them
            # straight back with a code.
            query = urllib.parse.parse_qs(url.query)
            if query.get("appid") != [APPID] or query.get("scope") != ["snsapi_base"]:
                return self.answer(400, {"errcode": 10003, "errmsg": "redirect_uri or scope"}, signed=False)
            code = "code" + secrets.token_hex(8)
            with lock:
                oauth_codes[code] = "o" + secrets.token_hex(12)
            target = query["redirect_uri"][0]
            separator = "&" if "?" in target else "?"
            location = target + separator + urllib.parse.urlencode(
                {"code": code, "state": query.get("state", [""])[0]})
            self.send_response(302)
            self.send_header("location", location)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if url.path == "/sns/oauth2/access_token":
            query = urllib.parse.parse_qs(url.query)
            if (query.get("appid") != [APPID] or query.get("secret") != [OAUTH_SECRET]
                    or query.get("grant_type") != ["authorization_code"]):
                return self.answer(200, {"errcode": 40125, "errmsg": "invalid appsecret"}, signed=False)
            with lock:
                openid = oauth_codes.pop(query.get("code", [""])[0], None)
            if openid is None:
                return self.answer(200, {"errcode": 40029, "errmsg": "invalid code"}, signed=False)
            return self.answer(200, {"access_token": secrets.token_hex(8), "expires_in": 7200,
                                     "refresh_token": secrets.token_hex(8), "openid": openid,
                                     "scope": "snsapi_base"}, signed=False)
        authorized = check_authorization(method, path, body, self.headers.get("authorization", ""))
        with lock:
            stats["verified" if authorized else "rejected"] += 1
        serial = self.headers.get("wechatpay-serial")
        if CERTIFICATE_SECONDS:
            known_serial = serial is None or serial in [c["serial"] for c in current_certificates()]
        else:
            known_serial = serial == PUBLIC_KEY_ID
        if not authorized or not known_serial:
            return self.answer(401, {"code": "SIGN_ERROR", "message": "signature check failed"})
        request = json.loads(body) if body else {}
        if not check_with_sdk(method, path, request):
            return self.answer(400, {"code": "PARAM_ERROR", "message": "not the request the SDK builds"})
        if url.path.startswith("/v3/pay/partner/"):
            return self.partner(method, url, request)
        if url.path.startswith("/v3/profitsharing/"):
            return self.profitsharing(url, request, serial)
        if url.path.startswith("/v3/fund-app/mch-transfer/"):
            return self.transfer_bills(url, request, serial)
        if url.path == "/v3/certificates":
            if not CERTIFICATE_SECONDS:
                return self.answer(404, {"code": "NOT_FOUND", "message": "this merchant uses the public key"})
            return self.answer(200, certificates_answer())
        kinds = {"/v3/pay/transactions/native": "NATIVE", "/v3/pay/transactions/jsapi": "JSAPI",
                 "/v3/pay/transactions/app": "APP", "/v3/pay/transactions/h5": "MWEB"}
        if url.path in kinds:
            if request.get("mchid") != MCHID or request.get("appid") != APPID:
                return self.answer(400, {"code": "PARAM_ERROR", "message": "mchid or appid mismatch"})
            out_trade_no = request["out_trade_no"]
            with lock:
                trades.setdefault(out_trade_no, {
                    "out_trade_no": out_trade_no, "total": request["amount"]["total"], "state": "NOTPAY",
                    "trade_type": kinds[url.path], "transaction_id": "42000" + str(time.time_ns())[-23:],
                    "notify_url": request["notify_url"], "description": request["description"],
                    "payer_openid": request.get("payer", {}).get("openid")})
            prepay = "wx" + out_trade_no
            answers = {"NATIVE": {"code_url": "weixin://wxpay/bizpayurl?pr=" + out_trade_no[-8:]},
                       "JSAPI": {"prepay_id": prepay}, "APP": {"prepay_id": prepay},
                       "MWEB": {"h5_url": "https://wx.tenpay.example/checkmweb?prepay_id=" + prepay}}
            return self.answer(200, answers[kinds[url.path]])
        match = re.fullmatch(r"/v3/pay/transactions/out-trade-no/(\w+)(/close)?", url.path)
        if match:
            with lock:
                trade = trades.get(match.group(1))
                if trade is None:
                    return self.answer(404, {"code": "ORDER_NOT_EXIST", "message": "no such order"})
                if match.group(2):
                    if closes_to_fail[0] > 0:
                        closes_to_fail[0] -= 1
                        stats["failed_closes"] += 1
                        return self.answer(500, {"code": "SYSTEM_ERROR", "message": "try again"})
                    stats["closes"] += 1
                    if trade["state"] == "NOTPAY":
                        trade["state"] = "CLOSED"
                    return self.answer(204, None)
                return self.answer(200, transaction(trade))
        if url.path == "/v3/refund/domestic/refunds":
            with lock:
                trade = trades.get(request["out_trade_no"])
                if trade is not None and trade.get("sub_mchid") != request.get("sub_mchid"):
                    trade = None  # another merchant's trade: not found from here
                if trade is None or trade["state"] not in ("SUCCESS", "REFUND"):
                    return self.answer(400, {"code": "INVALID_REQUEST", "message": "trade not paid"})
                refund = refunds.get(request["out_refund_no"])
                if refund is None:
                    done = sum(r["amount"] for r in refunds.values() if r["out_trade_no"] == trade["out_trade_no"])
                    if done + request["amount"]["refund"] > trade["total"]:
                        return self.answer(400, {"code": "NOT_ENOUGH", "message": "refund exceeds the payment"})
                    refund = {"refund_id": "503" + str(time.time_ns())[-26:], "out_refund_no": request["out_refund_no"],
                              "out_trade_no": trade["out_trade_no"], "amount": request["amount"]["refund"],
                              "status": "PROCESSING", "notify_url": request.get("notify_url")}
                    refunds[request["out_refund_no"]] = refund
                    trade["state"] = "REFUND"
                answer = {k: refund[k] for k in ("refund_id", "out_refund_no", "out_trade_no", "status")}
            # WeChat Pay settles refunds later and says so by notify.
            threading.Timer(0.3, self.settle_refund, args=(refund["out_refund_no"],)).start()
            return self.answer(200, answer)
        match = re.fullmatch(r"/v3/refund/domestic/refunds/([\w-]+)", url.path)
        if match:
            sub_mchid = urllib.parse.parse_qs(url.query).get("sub_mchid", [None])[0]
            with lock:
                refund = refunds.get(match.group(1))
                if refund is not None and trades[refund["out_trade_no"]].get("sub_mchid") != sub_mchid:
                    refund = None
                if refund is None:
                    return self.answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "no such refund"})
                return self.answer(200, {k: refund[k] for k in ("refund_id", "out_refund_no", "out_trade_no", "status")})
        if url.path == "/v3/bill/tradebill":
            import hashlib
            sub_mchid = urllib.parse.parse_qs(url.query).get("sub_mchid", [None])[0]
            if sub_mchid is not None and sub_mchid not in SUB_MCHIDS:
                return self.answer(400, {"code": "PARAM_ERROR", "message": "not a sub-merchant of this provider"})
            download = "%s/bill/tradebill.csv" % own_base(self.server.server_port)
            if sub_mchid:
                download += "?sub_mchid=" + sub_mchid
            return self.answer(200, {"hash_type": "SHA1",
                                     "hash_value": hashlib.sha1(tradebill(sub_mchid)).hexdigest(),
                                     "download_url": download})
        return self.answer(404, {"code": "NOT_FOUND", "message": url.path})

    def partner(self, method, url, request):
        """The partner endpoints: a sub-merchant's trades, seen only with its own sub_mchid."""
        query = dict(urllib.parse.parse_qsl(url.query))
        kinds = {"native": "NATIVE", "jsapi": "JSAPI", "app": "APP", "h5": "MWEB"}
        match = re.fullmatch(r"/v3/pay/partner/transactions/(native|jsapi|app|h5)", url.path)
        if match:
            if (request.get("sp_mchid") != MCHID or request.get("sp_appid") != APPID
                    or request.get("sub_mchid") not in SUB_MCHIDS):
                return self.answer(400, {"code": "PARAM_ERROR", "message": "sp_mchid, sp_appid or sub_mchid"})
            out_trade_no = request["out_trade_no"]
            payer = request.get("payer", {})
            with lock:
                trades.setdefault(out_trade_no, {
                    "out_trade_no": out_trade_no, "total": request["amount"]["total"], "state": "NOTPAY",
                    "trade_type": kinds[match.group(1)], "transaction_id": "42000" + str(time.time_ns())[-23:],
                    "notify_url": request["notify_url"], "description": request["description"],
                    "payer_openid": payer.get("sub_openid") or payer.get("sp_openid"),
                    "sub_mchid": request["sub_mchid"],
                    "profit_sharing": request.get("settle_info", {}).get("profit_sharing", False)})
            prepay = "wx" + out_trade_no
            answers = {"NATIVE": {"code_url": "weixin://wxpay/bizpayurl?pr=" + out_trade_no[-8:]},
                       "JSAPI": {"prepay_id": prepay}, "APP": {"prepay_id": prepay},
                       "MWEB": {"h5_url": "https://wx.tenpay.example/checkmweb?prepay_id=" + prepay}}
            return self.answer(200, answers[kinds[match.group(1)]])
        match = re.fullmatch(r"/v3/pay/partner/transactions/out-trade-no/(\w+)(/close)?", url.path)
        if match:
            sub_mchid = request.get("sub_mchid") if match.group(2) else query.get("sub_mchid")
            with lock:
                trade = trades.get(match.group(1))
                if trade is None or trade.get("sub_mchid") != sub_mchid:
                    return self.answer(404, {"code": "ORDER_NOT_EXIST", "message": "no such order"})
                if match.group(2):
                    stats["closes"] += 1
                    if trade["state"] == "NOTPAY":
                        trade["state"] = "CLOSED"
                    return self.answer(204, None)
                return self.answer(200, transaction(trade))
        return self.answer(404, {"code": "NOT_FOUND", "message": url.path})

    def share_orders_api(self, method, url, request):
        query = dict(urllib.parse.parse_qsl(url.query))
        merchant = (request.get("sub_mchid") if method == "POST" else query.get("sub_mchid")) or MCHID
        if url.path == "/v3/profitsharing/orders":
            with lock:
                if shares_to_fail[0] > 0:
                    shares_to_fail[0] -= 1
                    return self.answer(500, {"code": "SYSTEM_ERROR", "message": "try again"})
                trade = next((t for t in trades.values() if t["transaction_id"] == request["transaction_id"]), None)
                if trade is None or (trade.get("sub_mchid") or MCHID) != merchant or trade["state"] not in (
                        "SUCCESS", "REFUND"):
                    return self.answer(400, {"code": "INVALID_REQUEST", "message": "no such paid transaction"})
                if not trade.get("profit_sharing"):
                    return self.answer(400, {"code": "INVALID_REQUEST", "message": "not a profit-sharing transaction"})
                bound = receivers.get(merchant, {})
                if any((r["type"], r["account"]) not in bound for r in request["receivers"]):
                    return self.answer(400, {"code": "INVALID_REQUEST", "message": "receiver not bound"})
                if sum(r["amount"] for r in request["receivers"]) > trade["total"]:
                    return self.answer(400, {"code": "INVALID_REQUEST", "message": "more than the transaction"})
                if request["out_order_no"] in share_orders:
                    return self.answer(400, {"code": "INVALID_REQUEST", "message": "out_order_no used"})
                order = {"sub_mchid": request.get("sub_mchid"), "transaction_id": request["transaction_id"],
                         "out_order_no": request["out_order_no"], "order_id": "3008" + str(time.time_ns())[-20:],
                         "state": "FINISHED", "unfreeze_unsplit": request["unfreeze_unsplit"],
                         "receivers": [dict(r, result="CLOSED" if r["account"].startswith("close") else "SUCCESS",
                                            fail_reason="ACCOUNT_ABNORMAL" if r["account"].startswith("close") else "")
                                       for r in request["receivers"]],
                         "returns": []}
                share_orders[request["out_order_no"]] = order
                return self.answer(200, {k: v for k, v in order.items() if k != "returns"})
        match = re.fullmatch(r"/v3/profitsharing/orders/([\w|*@-]+)", url.path)
        if match:
            with lock:
                order = share_orders.get(match.group(1))
                if order is None or (order["sub_mchid"] or MCHID) != merchant:
                    return self.answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "no such order"})
                return self.answer(200, {k: v for k, v in order.items() if k != "returns"})
        if url.path == "/v3/profitsharing/return-orders":
            with lock:
                order = share_orders.get(request.get("out_order_no"))
                if order is None or (order["sub_mchid"] or MCHID) != merchant:
                    return self.answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "no such order"})
                line = next((r for r in order["receivers"] if r["type"] == "MERCHANT_ID"
                             and r["account"] == request["return_mchid"] and r["result"] == "SUCCESS"), None)
                done = next((r for r in order["returns"] if r["out_return_no"] == request["out_return_no"]), None)
                if done is None:
                    given = sum(r["amount"] for r in order["returns"] if r["return_mchid"] == request["return_mchid"])
                    if line is None or given + request["amount"] > line["amount"]:
                        return self.answer(400, {"code": "INVALID_REQUEST", "message": "more than was shared"})
                    done = {"out_return_no": request["out_return_no"], "return_mchid": request["return_mchid"],
                            "amount": request["amount"], "result": "SUCCESS"}
                    order["returns"].append(done)
                return self.answer(200, dict(done, out_order_no=order["out_order_no"], order_id=order["order_id"]))
        return self.answer(404, {"code": "NOT_FOUND", "message": url.path})

    def profitsharing(self, url, request, serial):
        if url.path.startswith("/v3/profitsharing/orders") or url.path == "/v3/profitsharing/return-orders":
            return self.share_orders_api(self.command, url, request)
        merchant = request.get("sub_mchid") or MCHID
        if request.get("sub_mchid") and request["sub_mchid"] not in SUB_MCHIDS:
            return self.answer(400, {"code": "PARAM_ERROR", "message": "not a sub-merchant of this provider"})
        if request.get("appid") != APPID or request.get("type") not in ("MERCHANT_ID", "PERSONAL_OPENID"):
            return self.answer(400, {"code": "PARAM_ERROR", "message": "appid or type"})
        key = (request["type"], request["account"])
        if url.path == "/v3/profitsharing/receivers/add":
            name = None
            if "name" in request:
                # Sealed under the platform key the request names: decrypted as WeChat Pay would.
                private = signer()[0] if not CERTIFICATE_SECONDS else [
                    c["key"] for c in current_certificates() if c["serial"] == serial][0]
                try:
                    name = rsa_decrypt(request["name"], private)
                except Exception:
                    return self.answer(400, {"code": "PARAM_ERROR", "message": "name does not decrypt"})
            elif request["type"] == "MERCHANT_ID":
                return self.answer(400, {"code": "PARAM_ERROR", "message": "a merchant receiver needs its name"})
            if request["account"].startswith("refuse"):
                return self.answer(403, {"code": "NO_AUTH", "message": "the receiver may not be bound"})
            with lock:
                receivers.setdefault(merchant, {})[key] = name
            return self.answer(200, {"sub_mchid": request.get("sub_mchid"), "type": request["type"],
                                     "account": request["account"], "relation_type": request["relation_type"]})
        if url.path == "/v3/profitsharing/receivers/delete":
            with lock:
                receivers.get(merchant, {}).pop(key, None)
            return self.answer(200, {"sub_mchid": request.get("sub_mchid"), "type": request["type"],
                                     "account": request["account"]})
        return self.answer(404, {"code": "NOT_FOUND", "message": url.path})

    def transfer_bills(self, url, request, serial):
        match = re.fullmatch(r"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/(\w+)", url.path)
        if match:
            with lock:
                bill = transfers.get(match.group(1))
                if bill is None:
                    return self.answer(404, {"code": "NOT_FOUND", "message": "no such bill"})
                return self.answer(200, {k: v for k, v in bill.items()
                                         if k not in ("package_info", "user_name", "notify_url",
                                                      "transfer_scene_id", "transfer_scene_report_infos")})
        if url.path != "/v3/fund-app/mch-transfer/transfer-bills":
            return self.answer(404, {"code": "NOT_FOUND", "message": url.path})
        if request.get("appid") != APPID or not re.fullmatch(r"[A-Za-z0-9]{1,32}", request.get("out_bill_no", "")):
            return self.answer(400, {"code": "PARAM_ERROR", "message": "appid or out_bill_no"})
        if not request.get("transfer_scene_id") or len(request.get("transfer_remark", "")) > 32:
            return self.answer(400, {"code": "PARAM_ERROR", "message": "transfer_scene_id or transfer_remark"})
        if request["openid"].startswith("refuse"):
            return self.answer(403, {"code": "NO_AUTH", "message": "the user may not receive transfers"})
        name = None
        if "user_name" in request:
            private = signer()[0] if not CERTIFICATE_SECONDS else [
                c["key"] for c in current_certificates() if c["serial"] == serial][0]
            try:
                name = rsa_decrypt(request["user_name"], private)
            except Exception:
                return self.answer(400, {"code": "PARAM_ERROR", "message": "user_name does not decrypt"})
        with lock:
            bill = transfers.get(request["out_bill_no"])
            if bill is None:
                bill = {"mch_id": MCHID, "out_bill_no": request["out_bill_no"],
                        "transfer_bill_no": "1330" + str(time.time_ns())[-20:], "appid": APPID,
                        "state": "WAIT_USER_CONFIRM", "transfer_amount": request["transfer_amount"],
                        "transfer_remark": request["transfer_remark"], "openid": request["openid"],
                        "create_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
                        "update_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
                        "package_info": "ABBQO+oYAAABAAAAAAAA" + secrets.token_hex(12),
                        "user_name": name, "notify_url": request.get("notify_url"),
                        "transfer_scene_id": request["transfer_scene_id"],
                        "transfer_scene_report_infos": request.get("transfer_scene_report_infos")}
                transfers[request["out_bill_no"]] = bill
            answer = {k: bill[k] for k in ("out_bill_no", "transfer_bill_no", "create_time", "state",
                                           "package_info")}
        return self.answer(200, answer)

    def settle_transfer(self, request):
        with lock:
            bill = transfers[request["out_bill_no"]]
            bill["state"] = request.get("state", "SUCCESS")
            if bill["state"] == "FAIL":
                bill["fail_reason"] = "PAYEE_ACCOUNT_ABNORMAL"
            bill["update_time"] = time.strftime("%Y-%m-%dT%H:%M:%S+08:00")
            plain = json.dumps({k: bill[k] for k in ("mch_id", "out_bill_no", "transfer_bill_no", "state",
                                                     "transfer_amount", "openid", "create_time",
                                                     "update_time") + (("fail_reason",) if "fail_reason" in bill else ())})
            notify_url = bill["notify_url"]
        if not request.get("notify", True):
            return None, None
        return send_notify(notify_url, "MCHTRANSFER.BILL.FINISHED", encrypt_resource(plain, "mch_payment"))

    def settle_refund(self, out_refund_no):
        with lock:
            refund = refunds[out_refund_no]
            refund["status"] = "SUCCESS"
            trade = trades[refund["out_trade_no"]]
            ids = ({"sp_mchid": MCHID, "sub_mchid": trade["sub_mchid"]} if trade.get("sub_mchid")
                   else {"mchid": MCHID})
            plain = json.dumps(dict(ids, **{"out_trade_no": refund["out_trade_no"], "transaction_id": "x",
                                "out_refund_no": out_refund_no, "refund_id": refund["refund_id"],
                                "refund_status": "SUCCESS",
                                "amount": {"refund": refund["amount"], "total": trade["total"]}}))
            url = refund["notify_url"]
        send_notify(url, "REFUND.SUCCESS", encrypt_resource(plain, "refund"))

    def control(self, url, body):
        request = json.loads(body or "{}")
        if url.path == "/__control/stats":
            with lock:
                return self.answer(200, stats, signed=False)
        if url.path == "/__control/fail_shares":
            with lock:
                shares_to_fail[0] = int(request["n"])
            return self.answer(200, {"failing": shares_to_fail[0]}, signed=False)
        if url.path == "/__control/shares":
            with lock:
                return self.answer(200, share_orders, signed=False)
        if url.path == "/__control/receivers":
            with lock:
                listed = {merchant: [{"type": k[0], "account": k[1], "name": name} for k, name in bound.items()]
                          for merchant, bound in receivers.items()}
            return self.answer(200, listed, signed=False)
        if url.path == "/__control/transfers":
            with lock:
                return self.answer(200, transfers, signed=False)
        if url.path == "/__control/settle_transfer":
            status, answer = self.settle_transfer(request)
            return self.answer(200, {"status": status, "answer": answer}, signed=False)
        if url.path == "/__control/fail_closes":
            with lock:
                closes_to_fail[0] = int(request["n"])
            return self.answer(200, {"failing": closes_to_fail[0]}, signed=False)
        if url.path == "/__control/trade":
            with lock:
                trade = trades.get(request["out_trade_no"])
                return self.answer(200, {"state": trade and trade["state"],
                                         "trade_type": trade and trade["trade_type"],
                                         "sub_mchid": trade and trade.get("sub_mchid"),
                                         "payer_openid": trade and trade.get("payer_openid")}, signed=False)
        if url.path == "/__control/verify":
            ok = verify_message(request["message"], request["signature"])
            return self.answer(200, {"verified": ok}, signed=False)
        if url.path == "/__control/pay":
            with lock:
                trade = trades[request["out_trade_no"]]
                if not request.get("tamper"):
                    trade["state"] = "SUCCESS"
                plain = json.dumps(transaction(dict(trade, state="SUCCESS")))
                notify_url = request.get("notify_url") or trade["notify_url"]
            resource = encrypt_resource(plain, "transaction")
            unlisted = None
            if request.get("signer") == "unlisted":
                cert = mint_certificate(time.time(), max(CERTIFICATE_SECONDS, 60))
                unlisted = (cert["key"], cert["serial"])
            status, answer = send_notify(notify_url, "TRANSACTION.SUCCESS", resource, request.get("tamper", False),
                                         unlisted)
            return self.answer(200, {"status": status, "answer": answer,
                                     "transaction_id": trade["transaction_id"]}, signed=False)
        return self.answer(404, {}, signed=False)

    def do_GET(self):
        self.api("GET")

    def do_POST(self):
        self.api("POST")


def verify_message(message, signature):
    """Whether the merchant key signed `message` (which ends in a newline), with the SDK."""
    lines = message.split("\n")
    assert lines[-1] == ""
    # rsa_verify builds "a\nb\nc\n": fold the leading lines into a, keep the last two apart.
    return rsa_verify("\n".join(lines[:-3]), lines[-3], lines[-2], signature, MERCHANT_PUBLIC)


def send_notify(url, event_type, resource, tamper=False, key_and_serial=None):
    body = json.dumps({"id": secrets.token_hex(16), "create_time": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
                       "resource_type": "encrypt-resource", "event_type": event_type, "summary": "ok",
                       "resource": resource}, ensure_ascii=False)
    headers = signed_headers(body, key_and_serial)
    if tamper:
        body = body.replace('"summary": "ok"', '"summary": "ko"')
    notify = urllib.request.Request(url, data=body.encode("utf-8"), headers=dict(headers, **{
        "content-type": "application/json"}))
    try:
        with urllib.request.urlopen(notify, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def own_base(port):
    """This gateway's own base URL, as its certificate names it when it speaks HTTPS."""
    if os.environ.get("FAKE_TLS_CERT"):
        return "https://localhost:%d" % port
    return "http://127.0.0.1:%d" % port


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # HTTPS when the test hands over a certificate (as real gateways speak only HTTPS).
    if os.environ.get("FAKE_TLS_CERT"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.environ["FAKE_TLS_CERT"], os.environ["FAKE_TLS_KEY"])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    bare = lambda pem: "".join(l for l in pem.splitlines() if not l.startswith("-----"))
    keys = {"port": server.server_port, "mchid": MCHID, "appid": APPID, "merchant_serial_no": SERIAL,
            "merchant_private_key": merchant_private_pem, "api_v3_key": API_V3_KEY,
            "oauth_app_secret": OAUTH_SECRET, "sub_mchids": SUB_MCHIDS}
    if not CERTIFICATE_SECONDS:
        keys.update(platform_public_key=bare(platform_public_pem), platform_public_key_id=PUBLIC_KEY_ID)
    print(json.dumps(keys), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
