//! The console's words, in Chinese and English.

use serde_json::{Map, Value};

use crate::http::checkout::Lang;

/// Every word of the console: key, Chinese, English.
const TEXTS: &[(&str, &str, &str)] = &[
    ("console", "支付中心后台", "paycenter console"),
    ("sign_in", "登录", "Sign in"),
    ("sign_out", "退出", "Sign out"),
    ("email", "邮箱", "E-mail"),
    ("password", "密码", "Password"),
    (
        "wrong_password",
        "邮箱或密码不正确。",
        "The e-mail address or the password is wrong.",
    ),
    (
        "too_many_attempts",
        "登录失败次数过多，请 15 分钟后再试。",
        "Too many failed sign-ins: try again in 15 minutes.",
    ),
    (
        "form_stale",
        "表单已过期，请重新提交。",
        "The form expired: send it again.",
    ),
    ("merchants", "商户", "Merchants"),
    ("merchant", "商户", "Merchant"),
    ("apps", "应用", "Apps"),
    ("payments", "支付", "Payments"),
    ("payment", "支付", "Payment"),
    ("refunds", "退款", "Refunds"),
    ("reconciliations", "对账", "Reconciliation"),
    ("projections", "投影", "Projections"),
    ("operators", "操作员", "Operators"),
    ("trail", "操作记录", "Audit trail"),
    ("name", "名称", "Name"),
    ("created_at", "创建时间", "Created"),
    ("status", "状态", "Status"),
    ("create", "创建", "Create"),
    ("onboard_merchant", "入驻商户", "Onboard a merchant"),
    ("channel_accounts", "渠道账户", "Channel accounts"),
    (
        "activate_account",
        "开通渠道账户",
        "Activate a channel account",
    ),
    ("rotate_keys", "更换密钥", "Rotate keys"),
    ("channel", "渠道", "Channel"),
    ("fee_rate", "费率", "Fee rate"),
    ("activate", "开通", "Activate"),
    ("disable", "停用", "Disable"),
    ("enable", "启用", "Enable"),
    ("balances", "余额", "Balances"),
    ("account", "科目", "Account"),
    ("currency", "币种", "Currency"),
    ("balance", "余额", "Balance"),
    ("statistics", "统计", "Statistics"),
    ("day", "按天", "By day"),
    ("hour", "按小时", "By hour"),
    ("register_app", "注册应用", "Register an app"),
    ("notify_url", "通知地址", "Notify URL"),
    ("rotate_key", "更换 API 密钥", "Rotate API key"),
    (
        "rotate_webhook_secret",
        "更换 Webhook 密钥",
        "Rotate webhook secret",
    ),
    (
        "secrets_once",
        "请立即保存：以下密钥只显示这一次。",
        "Save these now: they are shown this once.",
    ),
    ("api_key", "API 密钥", "API key"),
    ("webhook_secret", "Webhook 密钥", "Webhook secret"),
    ("search", "搜索", "Search"),
    (
        "search_hint",
        "交易号、渠道交易号或订单号",
        "Trade number, channel trade number or order number",
    ),
    ("all_merchants", "全部商户", "All merchants"),
    ("any_status", "全部状态", "Any status"),
    ("trade_no", "交易号", "Trade no."),
    ("order_no", "订单号", "Order no."),
    ("channel_trade_no", "渠道交易号", "Channel trade no."),
    ("amount", "金额", "Amount"),
    ("refunded", "已退款", "Refunded"),
    ("fee", "手续费", "Fee"),
    ("subject", "商品", "Subject"),
    ("paid_at", "支付时间", "Paid"),
    ("no_results", "没有结果。", "Nothing found."),
    ("next_page", "下一页", "Next page"),
    ("timeline", "事件时间线", "Event timeline"),
    ("event", "事件", "Event"),
    ("by", "操作人", "By"),
    ("position", "位置", "Position"),
    ("refund", "退款", "Refund"),
    ("refund_no", "退款单号", "Refund no."),
    ("reason", "原因", "Reason"),
    ("issue_refund", "发起退款", "Issue a refund"),
    ("refund_requested", "退款已提交。", "Refund requested."),
    ("date", "日期", "Date"),
    ("matched", "已匹配", "Matched"),
    ("discrepancies", "差异", "Discrepancies"),
    ("kind", "类型", "Kind"),
    ("upload_bill", "上传账单", "Upload a bill"),
    (
        "bill_csv",
        "账单（CSV：trade_no,channel_trade_no,amount,currency）",
        "Bill (CSV: trade_no,channel_trade_no,amount,currency)",
    ),
    ("reconcile", "对账", "Reconcile"),
    ("source", "来源", "Source"),
    ("lag", "延迟", "Lag"),
    ("rebuild", "重建", "Rebuild"),
    ("rebuild_started", "重建已开始。", "Rebuild started."),
    ("version", "版本", "Version"),
    ("role", "角色", "Role"),
    ("create_operator", "创建操作员", "Create an operator"),
    (
        "generated_password",
        "初始密码（只显示这一次）",
        "Initial password (shown this once)",
    ),
    ("enabled", "启用", "Enabled"),
    ("yes", "是", "yes"),
    ("no", "否", "no"),
    ("stream", "流", "Stream"),
    ("error", "出错了", "Something went wrong"),
    ("back", "返回", "Back"),
    ("signed_in_as", "当前用户", "Signed in as"),
];

/// The console's words in `lang`, as a JSON object for the templates.
pub fn texts(lang: Lang) -> Value {
    let words: Map<String, Value> = TEXTS
        .iter()
        .map(|(key, zh, en)| {
            let word = if lang == Lang::Zh { zh } else { en };
            ((*key).to_owned(), Value::from(*word))
        })
        .collect();
    Value::Object(words)
}
