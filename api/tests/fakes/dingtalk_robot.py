"""A fake DingTalk custom robot for paycenter's alert tests (api/tests/alerts.rs), over HTTPS.

It answers `POST /robot/send?access_token=…[&timestamp=…&sign=…]` as DingTalk does: a JSON
`{"errcode", "errmsg"}`, `errcode` 0 when the message is taken and 310000 when the signature is
wrong. The signature is checked twice: by the published algorithm (base64 of
HMAC-SHA256(secret, "{timestamp}\\n{secret}"), URL-encoded) and by `dingtalkchatbot` from PyPI,
an independent signer, made to sign the same timestamp. Messages taken are listed at
`GET /messages`; `FAKE_FAIL_FIRST=N` answers errcode 310000 to the first N requests anyway.

Prints one JSON line on start: {"url": "https://127.0.0.1:PORT/robot/send?access_token=…",
"messages_url": "http://127.0.0.1:PORT2/messages"} (the list over plain HTTP, for the test).
Environment: FAKE_TLS_CERT, FAKE_TLS_KEY, FAKE_SECRET (the robot's signing secret, optional).
"""
import base64
import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dingtalkchatbot.chatbot import DingtalkChatbot

ACCESS_TOKEN = "fake-robot-access-token-0123456789abcdef"
SECRET = os.environ.get("FAKE_SECRET")
FAIL_FIRST = int(os.environ.get("FAKE_FAIL_FIRST", "0"))

LOCK = threading.Lock()
MESSAGES = []
REQUESTS = [0]


def published_sign(timestamp, secret):
    digest = hmac.new(secret.encode(), ("%s\n%s" % (timestamp, secret)).encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def sdk_sign(timestamp, secret):
    """dingtalkchatbot's own signature of `timestamp` (it signs its start time)."""
    bot = DingtalkChatbot("https://oapi.dingtalk.com/robot/send?access_token=x", secret=secret)
    bot.start_time = int(timestamp) / 1000.0
    bot.update_webhook()
    query = urllib.parse.urlparse(bot.webhook).query
    # The webhook holds the sign URL-encoded; compare it as sent.
    for pair in query.split("&"):
        if pair.startswith("sign="):
            return pair[len("sign="):]
    return None


class Robot(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/messages":
            with LOCK:
                return self.answer(200, MESSAGES)
        return self.answer(404, {})

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        url = urllib.parse.urlparse(self.path)
        # The raw query: `sign` is checked exactly as sent (URL-encoded).
        raw = dict(pair.split("=", 1) for pair in url.query.split("&") if "=" in pair)
        with LOCK:
            REQUESTS[0] += 1
            n_request = REQUESTS[0]
        if url.path != "/robot/send" or raw.get("access_token") != ACCESS_TOKEN:
            return self.answer(200, {"errcode": 300001, "errmsg": "token is not exist"})
        if self.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return self.answer(200, {"errcode": 40035, "errmsg": "content-type must be application/json"})
        if SECRET:
            timestamp, sign = raw.get("timestamp", ""), raw.get("sign", "")
            fresh = timestamp.isdigit() and abs(int(timestamp) - time.time() * 1000) < 3_600_000
            published = published_sign(timestamp, SECRET) if timestamp else None
            if not fresh or sign != published or sign != sdk_sign(timestamp, SECRET):
                return self.answer(200, {"errcode": 310000, "errmsg": "sign not match"})
        if n_request <= FAIL_FIRST:
            return self.answer(200, {"errcode": 310000, "errmsg": "sign not match (told to fail)"})
        try:
            message = json.loads(body)
        except ValueError:
            return self.answer(200, {"errcode": 43000, "errmsg": "param error"})
        if message.get("msgtype") != "markdown" or not message.get("markdown", {}).get("text"):
            return self.answer(200, {"errcode": 40035, "errmsg": "markdown text missing"})
        with LOCK:
            MESSAGES.append(message)
        return self.answer(200, {"errcode": 0, "errmsg": "ok"})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Robot)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ["FAKE_TLS_CERT"], os.environ["FAKE_TLS_KEY"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    control = ThreadingHTTPServer(("127.0.0.1", 0), Robot)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({
        "url": "https://127.0.0.1:%d/robot/send?access_token=%s" % (port, ACCESS_TOKEN),
        "messages_url": "http://127.0.0.1:%d/messages" % control.server_address[1],
    }), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
