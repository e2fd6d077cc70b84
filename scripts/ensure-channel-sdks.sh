#!/usr/bin/env bash
# Makes .venv with the channels' SDKs that paycenter's channel tests check against:
# python-alipay-sdk and the official alipay-sdk-python, wechatpayv3, stripe and localstripe;
# dingtalkchatbot, an independent signer for the fake DingTalk robot (api/tests/alerts.rs); and
# schemathesis, which holds the running binary to its OpenAPI document (api/tests/openapi_conformance.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q python3 python3-venv
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q python3-venv
fi
if .venv/bin/python -c "import alipay, alipay.aop.api, wechatpayv3, stripe, localstripe, dingtalkchatbot" 2>/dev/null \
   && .venv/bin/python -c "from alipay import AliPay" 2>/dev/null \
   && .venv/bin/st --version 2>/dev/null | grep -q "4.32.5"; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# Both Alipay SDKs own `alipay/__init__.py`: the official one first, so python-alipay-sdk's
# `AliPay` class is what `import alipay` finds, beside the official `alipay.aop.api`.
.venv/bin/pip install -q "alipay-sdk-python==3.7.1411"
.venv/bin/pip install -q --force-reinstall --no-deps "python-alipay-sdk==3.4.0"
.venv/bin/pip install -q "python-alipay-sdk==3.4.0" "wechatpayv3==2.0.4" "stripe==16.1.0" "localstripe==1.15.10"
.venv/bin/pip install -q "schemathesis==4.32.5"
.venv/bin/pip install -q "dingtalkchatbot==1.5.7"
.venv/bin/python -c "import alipay, alipay.aop.api, wechatpayv3, stripe, localstripe, dingtalkchatbot; from alipay import AliPay"
