"""A local stand-in for Alipay's OpenAPI gateway, for paycenter's tests.

Every request paycenter sends is checked with both Alipay SDKs from PyPI (python-alipay-sdk and
the official alipay-sdk-python); answers and notifies are signed with python-alipay-sdk (and on
request with the official SDK), as Alipay would sign them. Keys are made fresh at start and
printed as one JSON line: {"port", "app_id", "app_private_key", "alipay_public_key"}.

Test controls (not part of Alipay's protocol):
  POST /__control/verify_query  {"query": "<signed query string>"}  -> both SDKs' verdicts;
       a verified page/wap/app pay request also opens its trade, as the user's browser would.
  POST /__control/pay     {"out_trade_no", "signer": "python"|"official", "tamper": bool,
                           "send": bool} -> the notify (and paycenter's answer when sent)
  GET  /__control/stats   -> {"verified": n, "rejected": n}

Third-party applications (service providers): a request carrying `app_auth_token` (signed with
the rest, so both SDKs check it) acts for the merchant that token authorized (APP_AUTH_TOKENS,
printed as "app_auth_tokens"). A trade belongs to the token that opened it: asked about with
another token (or none) it does not exist, and each token's bill holds its own trades only.
Notifies for such a trade carry its `auth_app_id`. Stats count "with_app_auth_token".
  POST /__control/pay {"out_trade_no", "notify_url"} -> the notify sent elsewhere (a crossing)

Royalty relations: alipay.trade.royalty.relation.bind / unbind, per app_auth_token.
  GET  /__control/relations -> {"<token or ''>": [{"type", "account", "name"}]}

Settlement (sharing): a trade opened with extend_params.royalty_freeze may be settled by
alipay.trade.order.settle (its trade_no, receivers bound by relation for the same token, the
sum within the trade; the same out_request_no answers the same settlement; a receiver whose
account starts with "close" is refused ACQ.TRANS_IN_ACCOUNT_ABNORMAL); a refund's
refund_royalty_parameters take back from receivers what they were settled.
  GET  /__control/settlements -> {"<out_request_no>": {"trade_no", "royalties", "returned"}}

Transfers (payouts): alipay.fund.trans.uni.transfer and alipay.fund.trans.common.query, in
public-key-certificate mode only (app_cert_sn and alipay_root_cert_sn signed with the request,
both SDKs checking the signature; without them: isv.missing-cert-sn). The same out_biz_no is the
same transfer; a payee whose identity starts with "nobody" is refused (PAYEE_NOT_EXIST).
  GET  /__control/transfers -> {"<out_biz_no>": {"trans_amount", "payee_info", "status"}}
A payee whose identity starts with "slow" leaves the transfer DEALING until
  POST /__control/transfer_changed {"out_biz_no", "status", "notify_url"} -> settles it and sends
       Alipay's message alipay.fund.trans.order.changed (signed like a notify) to notify_url
"""
import base64
import io
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alipay import AliPay
from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa2, verify_with_rsa
from Cryptodome.PublicKey import RSA

APP_ID = "2021000000000001"
# Tokens sub-merchants' authorizations gave the provider's app, and the app id each authorized.
APP_AUTH_TOKENS = {"202612BB3f9c0a1d7e2b4c6a8f0e1d2c3b4a5961": "2021000000000101",
                   "202612BB9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c41": "2021000000000102"}
app_key = RSA.generate(2048)
alipay_key = RSA.generate(2048)


def bare(pem):
    return "".join(line for line in pem.decode().splitlines() if not line.startswith("-----"))


# Alipay's side: signs with its own key, verifies requests with the app's public key.
ALIPAY = AliPay(
    appid=APP_ID,
    app_notify_url=None,
    app_private_key_string=alipay_key.export_key(pkcs=8).decode(),
    alipay_public_key_string=app_key.publickey().export_key().decode(),
    sign_type="RSA2",
)
APP_PUBLIC_BARE = bare(app_key.publickey().export_key())
ALIPAY_PRIVATE_PKCS1_BARE = bare(alipay_key.export_key(pkcs=1))

lock = threading.Lock()
trades = {}
relations = {}  # app_auth_token or "" -> {(type, account): name}
settlements = {}  # out_request_no -> {"trade_no", "out_trade_no", "royalties", "returned"}
transfers = {}  # out_biz_no -> the transfer as answered
stats = {"verified": 0, "rejected": 0, "precreate": 0, "with_app_auth_token": 0}
# How precreate answers (routing tests): "ok", "refuse" (a business refusal, no trade made) or
# "slow:SECONDS" (the trade is made, the answer comes too late). FAKE_PRECREATE sets it at
# start; POST /__control/mode {"precreate": ..., "query": "ok"|"fail"} changes it ("fail":
# every trade query answers a system error).
mode = {"precreate": os.environ.get("FAKE_PRECREATE", "ok"), "query": "ok"}


def verify_request(params):
    """Both SDKs' verdicts on a request's signature (everything but `sign` is signed)."""
    sign = params.get("sign", "")
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    content = "&".join("{}={}".format(k, v) for k, v in ALIPAY._ordered_data(dict(unsigned)))
    python_sdk = ALIPAY._verify(content, sign)
    try:
        official_sdk = verify_with_rsa(APP_PUBLIC_BARE, get_sign_content(unsigned).encode("utf-8"), sign)
    except Exception:
        official_sdk = False
    return python_sdk, official_sdk


def signed_answer(method, node):
    node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    sign = ALIPAY._sign(node_text)
    name = method.replace(".", "_") + "_response"
    return '{"%s":%s,"sign":"%s"}' % (name, node_text, sign)


def ok(extra):
    node = {"code": "10000", "msg": "Success"}
    node.update(extra)
    return node


def fail(sub_code, sub_msg):
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


def open_trade(biz, notify_url, app_auth_token=None):
    with lock:
        trades.setdefault(biz["out_trade_no"], {
            "app_auth_token": app_auth_token,
            "royalty_freeze": biz.get("extend_params", {}).get("royalty_freeze") == "true",
            "out_trade_no": biz["out_trade_no"],
            "total_amount": biz["total_amount"],
            "subject": biz.get("subject", ""),
            "status": "WAIT_BUYER_PAY",
            "trade_no": "2026" + str(int(time.time() * 1000000))[-20:],
            "notify_url": notify_url,
            "refunds": {},
        })
        return trades[biz["out_trade_no"]]


def handle(method, biz, params, port):
    out_trade_no = biz.get("out_trade_no", "")
    if method == "alipay.trade.precreate":
        with lock:
            stats["precreate"] += 1
            precreate = mode["precreate"]
        if precreate == "refuse":
            return fail("ACQ.ACCESS_FORBIDDEN", "the merchant may not take payments now")
        if precreate.startswith("slow:"):
            open_trade(biz, params.get("notify_url"), params.get("app_auth_token"))
            time.sleep(float(precreate.split(":", 1)[1]))
    if method in ("alipay.trade.precreate", "alipay.trade.create"):
        trade = open_trade(biz, params.get("notify_url"), params.get("app_auth_token"))
        if method == "alipay.trade.precreate":
            return ok({"out_trade_no": out_trade_no, "qr_code": "https://qr.alipay.example/" + out_trade_no})
        return ok({"out_trade_no": out_trade_no, "trade_no": trade["trade_no"]})
    if method == "alipay.open.auth.token.app.query":
        token = biz.get("app_auth_token")
        if token not in APP_AUTH_TOKENS:
            return fail("aop.invalid-app-auth-token", "no such app_auth_token")
        return ok({"user_id": "2088" + APP_AUTH_TOKENS[token][-12:], "auth_app_id": APP_AUTH_TOKENS[token],
                   "expires_in": 31536000, "re_expires_in": 32140800, "status": "valid",
                   "auth_methods": ["alipay.trade.precreate"]})
    if method in ("alipay.trade.royalty.relation.bind", "alipay.trade.royalty.relation.unbind"):
        if not biz.get("out_request_no") or len(biz.get("receiver_list") or []) != 1:
            return fail("ACQ.INVALID_PARAMETER", "out_request_no and one receiver")
        receiver = biz["receiver_list"][0]
        if receiver.get("type") not in ("loginName", "userId"):
            return fail("ACQ.INVALID_PARAMETER", "type")
        key = (receiver["type"], receiver["account"])
        with lock:
            bound = relations.setdefault(params.get("app_auth_token") or "", {})
            if method.endswith(".bind"):
                bound[key] = receiver.get("name")
            else:
                bound.pop(key, None)
        return ok({"result_code": "SUCCESS"})
    if method in ("alipay.fund.trans.uni.transfer", "alipay.fund.trans.common.query"):
        if not params.get("app_cert_sn") or not params.get("alipay_root_cert_sn"):
            return fail("isv.missing-cert-sn", "fund APIs need public-key-certificate mode")
        with lock:
            done = transfers.get(biz.get("out_biz_no"))
            if method == "alipay.fund.trans.common.query":
                if done is None:
                    return fail("ORDER_NOT_EXIST", "no such transfer")
                return ok(dict(done))
            if done is not None:
                return ok(dict(done))
            payee = biz.get("payee_info") or {}
            if payee.get("identity_type") not in ("ALIPAY_LOGON_ID", "ALIPAY_USER_ID"):
                return fail("INVALID_PARAMETER", "identity_type")
            if payee.get("identity_type") == "ALIPAY_LOGON_ID" and not payee.get("name"):
                return fail("PAYEE_USER_INFO_ERROR", "a login id needs the payee's name")
            if payee.get("identity", "").startswith("nobody"):
                return fail("PAYEE_NOT_EXIST", "the payee does not exist")
            done = {"out_biz_no": biz["out_biz_no"], "order_id": "2026T" + str(time.time_ns())[-20:],
                    "pay_fund_order_id": "2026F" + str(time.time_ns())[-20:],
                    "status": "DEALING" if payee.get("identity", "").startswith("slow") else "SUCCESS",
                    "trans_date": time.strftime("%Y-%m-%d %H:%M:%S"), "trans_amount": biz["trans_amount"],
                    "payee_info": payee}
            transfers[biz["out_biz_no"]] = done
            return ok(dict(done))
    if method == "alipay.trade.order.settle":
        with lock:
            if biz["out_request_no"] in settlements:
                done = settlements[biz["out_request_no"]]
                return ok({"trade_no": done["trade_no"], "settle_no": done["settle_no"]})
            trade = next((t for t in trades.values() if t["trade_no"] == biz.get("trade_no")), None)
            if trade is None or trade["app_auth_token"] != params.get("app_auth_token"):
                return fail("ACQ.TRADE_NOT_EXIST", "trade does not exist")
            if trade["status"] != "TRADE_SUCCESS" or not trade["royalty_freeze"]:
                return fail("ACQ.TRADE_SETTLE_ERROR", "the trade is not frozen for settlement")
            bound = relations.get(params.get("app_auth_token") or "", {})
            royalties = biz.get("royalty_parameters") or []
            for royalty in royalties:
                if (royalty.get("trans_in_type"), royalty.get("trans_in")) not in bound:
                    return fail("ACQ.ROYALTY_RECEIVER_NOT_BIND", "receiver not bound")
                if royalty["trans_in"].startswith("close"):
                    return fail("ACQ.TRANS_IN_ACCOUNT_ABNORMAL", "the receiver's account is abnormal")
            if sum(float(r["amount"]) for r in royalties) > float(trade["total_amount"]) + 1e-9:
                return fail("ACQ.ALLOC_AMOUNT_VALIDATE_ERROR", "more than the trade")
            settle_no = "2026S" + str(time.time_ns())[-20:]
            settlements[biz["out_request_no"]] = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                                                  "settle_no": settle_no, "royalties": royalties,
                                                  "royalty_finish": biz.get("extend_params", {}).get("royalty_finish"),
                                                  "returned": []}
            return ok({"trade_no": trade["trade_no"], "settle_no": settle_no})
    with lock:
        trade = trades.get(out_trade_no)
        if trade is not None and trade["app_auth_token"] != params.get("app_auth_token"):
            trade = None  # another merchant's trade: it does not exist for this caller
        if method == "alipay.data.dataservice.bill.downloadurl.query":
            query = {"date": biz["bill_date"]}
            if params.get("app_auth_token"):
                query["token"] = params["app_auth_token"]
            return ok({"bill_download_url": "%s/bill?%s" % (own_base(port), urllib.parse.urlencode(query))})
        if trade is None:
            return fail("ACQ.TRADE_NOT_EXIST", "trade does not exist")
        if method == "alipay.trade.query":
            if mode["query"] == "fail":
                return fail("ACQ.SYSTEM_ERROR", "system busy")
            return ok({"out_trade_no": out_trade_no, "trade_no": trade["trade_no"],
                       "trade_status": trade["status"], "total_amount": trade["total_amount"]})
        if method == "alipay.trade.close":
            if trade["status"] != "WAIT_BUYER_PAY":
                return fail("ACQ.TRADE_STATUS_ERROR", "trade is not waiting for payment")
            trade["status"] = "TRADE_CLOSED"
            return ok({"out_trade_no": out_trade_no, "trade_no": trade["trade_no"]})
        if method == "alipay.trade.refund":
            request_no = biz["out_request_no"]
            if request_no not in trade["refunds"]:
                if trade["status"] != "TRADE_SUCCESS":
                    return fail("ACQ.TRADE_STATUS_ERROR", "trade is not paid")
                refunded = sum(float(v) for v in trade["refunds"].values())
                if refunded + float(biz["refund_amount"]) > float(trade["total_amount"]) + 1e-9:
                    return fail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "refund exceeds the payment")
                returns = biz.get("refund_royalty_parameters") or []
                settled = [s for s in settlements.values() if s["out_trade_no"] == out_trade_no]
                for back in returns:
                    given = sum(float(r["amount"]) for s in settled for r in s["royalties"]
                                if r["trans_in"] == back["trans_out"])
                    taken = sum(float(r["amount"]) for s in settled for r in s["returned"]
                                if r["trans_out"] == back["trans_out"])
                    if taken + float(back["amount"]) > given + 1e-9:
                        return fail("ACQ.REFUND_ROYALTY_AMOUNT_ERROR", "more than the receiver was settled")
                if returns and settled:
                    settled[0]["returned"].extend(returns)
                trade["refunds"][request_no] = biz["refund_amount"]
            return ok({"out_trade_no": out_trade_no, "trade_no": trade["trade_no"], "fund_change": "Y",
                       "refund_fee": trade["refunds"][request_no]})
        if method == "alipay.trade.fastpay.refund.query":
            request_no = biz["out_request_no"]
            if request_no not in trade["refunds"]:
                return ok({"out_trade_no": out_trade_no})
            return ok({"out_trade_no": out_trade_no, "out_request_no": request_no,
                       "refund_amount": trade["refunds"][request_no], "refund_status": "REFUND_SUCCESS"})
    return {"code": "40004", "msg": "Business Failed", "sub_code": "isv.unsupported-method", "sub_msg": method}


def bill_zip(date, app_auth_token=None):
    lines = ["#支付宝交易记录明细查询", "#账号：[2088000000000001]",
             "#起始日期：[%s 00:00:00]   终止日期：[%s 23:59:59]" % (date, date),
             "#-----------------------------------------业务明细列表----------------------------------------",
             "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"]
    with lock:
        for trade in trades.values():
            if trade["status"] != "TRADE_SUCCESS" or trade["app_auth_token"] != app_auth_token:
                continue
            rows = [("交易", trade["total_amount"], "")]
            rows += [("退款", "-" + amount, request_no) for request_no, amount in trade["refunds"].items()]
            for kind, amount, request_no in rows:
                fields = [trade["trade_no"], trade["out_trade_no"], kind, trade["subject"],
                          date + " 10:00:00", date + " 10:00:05", "", "", "", "", "buyer@example.com",
                          amount, amount, "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00",
                          request_no, "0.00", "0.00", ""]
                lines.append(",".join(field + "\t" for field in fields))
    lines += ["#-----------------------------------------业务明细列表结束------------------------------------",
              "#交易合计：%d笔" % len(trades), "#导出时间：[%s 09:00:00]" % date]
    detail = ("\r\n".join(lines) + "\r\n").encode("gbk")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("20880000000000010156_%s_业务明细.csv" % date.replace("-", ""), detail)
        archive.writestr("20880000000000010156_%s_业务明细(汇总).csv" % date.replace("-", ""),
                         "#汇总\r\n".encode("gbk"))
    return buffer.getvalue()


def notify_for(trade, signer, tamper):
    params = {
        "notify_time": time.strftime("%Y-%m-%d %H:%M:%S"), "notify_type": "trade_status_sync",
        "notify_id": "n" + str(time.time_ns()), "app_id": APP_ID, "charset": "utf-8", "version": "1.0",
        "sign_type": "RSA2", "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
        "trade_status": "TRADE_SUCCESS", "total_amount": trade["total_amount"],
        "receipt_amount": trade["total_amount"], "subject": trade["subject"],
        "gmt_payment": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if trade["app_auth_token"]:
        params["auth_app_id"] = APP_AUTH_TOKENS[trade["app_auth_token"]]
    unsigned = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
    if signer == "official":
        params["sign"] = sign_with_rsa2(ALIPAY_PRIVATE_PKCS1_BARE, get_sign_content(unsigned), "utf-8")
    else:
        content = "&".join("{}={}".format(k, v) for k, v in ALIPAY._ordered_data(dict(unsigned)))
        params["sign"] = ALIPAY._sign(content)
    # Alipay's own check of its notify, with the python SDK (sign and sign_type excluded).
    check = AliPay(appid=APP_ID, app_notify_url=None,
                   app_private_key_string=app_key.export_key(pkcs=8).decode(),
                   alipay_public_key_string=alipay_key.publickey().export_key().decode())
    data = dict(params)
    signature = data.pop("sign")
    assert check.verify(data, signature), "the SDK refuses its own notify"
    if tamper:
        params["total_amount"] = "%.2f" % (float(params["total_amount"]) + 0.01)
    return params


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json;charset=utf-8"):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/__control/stats":
            with lock:
                return self.answer(200, json.dumps(stats))
        if url.path == "/__control/transfers":
            with lock:
                return self.answer(200, json.dumps(transfers, ensure_ascii=False))
        if url.path == "/__control/settlements":
            with lock:
                return self.answer(200, json.dumps(settlements, ensure_ascii=False))
        if url.path == "/__control/relations":
            with lock:
                listed = {token: [{"type": k[0], "account": k[1], "name": name} for k, name in bound.items()]
                          for token, bound in relations.items()}
            return self.answer(200, json.dumps(listed, ensure_ascii=False))
        if url.path == "/bill":
            query = urllib.parse.parse_qs(url.query)
            date = query["date"][0]
            return self.answer(200, bill_zip(date, query.get("token", [None])[0]), "application/zip")
        self.answer(404, "{}")

    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        raw = self.body()
        if url.path == "/gateway.do":
            params = dict(urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            python_sdk, official_sdk = verify_request(params)
            method = params.get("method", "")
            with lock:
                stats["verified" if python_sdk and official_sdk else "rejected"] += 1
                if python_sdk and official_sdk and "app_auth_token" in params:
                    stats["with_app_auth_token"] += 1
            if "app_auth_token" in params and params["app_auth_token"] not in APP_AUTH_TOKENS:
                error = {"code": "20001", "msg": "Insufficient Token Permissions",
                         "sub_code": "aop.invalid-app-auth-token", "sub_msg": "no such app_auth_token"}
                return self.answer(200, json.dumps({"error_response": error}))
            if not (python_sdk and official_sdk) or params.get("app_id") != APP_ID:
                error = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature",
                         "sub_msg": "signature check failed"}
                return self.answer(200, json.dumps({"error_response": error}))
            biz = json.loads(params.get("biz_content") or "{}")
            return self.answer(200, signed_answer(method, handle(method, biz, params, self.server.server_port)))
        request = json.loads(raw or b"{}")
        if url.path == "/__control/mode":
            with lock:
                mode.update(request)
                return self.answer(200, json.dumps(mode))
        if url.path == "/__control/verify_query":
            params = dict(urllib.parse.parse_qsl(request["query"], keep_blank_values=True))
            python_sdk, official_sdk = verify_request(params)
            if python_sdk and official_sdk:
                open_trade(json.loads(params["biz_content"]), params.get("notify_url"),
                           params.get("app_auth_token"))
            return self.answer(200, json.dumps({"python_sdk": python_sdk, "official_sdk": official_sdk,
                                                "params": params}))
        if url.path == "/__control/transfer_changed":
            with lock:
                done = transfers[request["out_biz_no"]]
                done["status"] = request["status"]
                biz = {k: done[k] for k in ("out_biz_no", "order_id", "pay_fund_order_id", "status",
                                            "trans_amount")}
            params = {"msg_method": "alipay.fund.trans.order.changed", "app_id": APP_ID,
                      "notify_id": "m" + str(time.time_ns()), "utc_timestamp": str(int(time.time() * 1000)),
                      "version": "1.1", "charset": "utf-8", "sign_type": "RSA2",
                      "biz_content": json.dumps(biz, ensure_ascii=False)}
            unsigned = {k: v for k, v in params.items() if k not in ("sign", "sign_type")}
            content = "&".join("{}={}".format(k, v) for k, v in ALIPAY._ordered_data(dict(unsigned)))
            params["sign"] = ALIPAY._sign(content)
            body = urllib.parse.urlencode(params).encode("utf-8")
            message = urllib.request.Request(request["notify_url"], data=body, headers={
                "content-type": "application/x-www-form-urlencoded;charset=utf-8"})
            try:
                with urllib.request.urlopen(message, timeout=10) as response:
                    result = {"status": response.status, "answer": response.read().decode()}
            except urllib.error.HTTPError as error:
                result = {"status": error.code, "answer": error.read().decode()}
            return self.answer(200, json.dumps(result))
        if url.path == "/__control/pay":
            with lock:
                trade = trades[request["out_trade_no"]]
                if not request.get("tamper"):
                    trade["status"] = "TRADE_SUCCESS"
            params = notify_for(trade, request.get("signer", "python"), request.get("tamper", False))
            result = {"notify": params, "trade_no": trade["trade_no"]}
            if request.get("send", True):
                body = urllib.parse.urlencode(params).encode("utf-8")
                notify_url = request.get("notify_url") or trade["notify_url"]
                notify = urllib.request.Request(notify_url, data=body, headers={
                    "content-type": "application/x-www-form-urlencoded;charset=utf-8"})
                try:
                    with urllib.request.urlopen(notify, timeout=10) as response:
                        result["status"], result["answer"] = response.status, response.read().decode()
                except urllib.error.HTTPError as error:
                    result["status"], result["answer"] = error.code, error.read().decode()
            return self.answer(200, json.dumps(result, ensure_ascii=False))
        self.answer(404, "{}")


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
    print(json.dumps({
        "port": server.server_port, "app_id": APP_ID,
        "app_private_key": bare(app_key.export_key(pkcs=1)),
        "alipay_public_key": bare(alipay_key.publickey().export_key()),
        "app_auth_tokens": list(APP_AUTH_TOKENS),
    }), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
