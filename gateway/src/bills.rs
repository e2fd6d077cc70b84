//! Parsers of the channels' daily trade bills, feeding reconciliation.
//!
//! - Alipay: a zip of GBK-encoded CSV files; the detail file (not the `汇总` summary) has `#`
//!   comment lines around a header row and data rows whose fields end in a tab.
//! - WeChat Pay: one UTF-8 CSV whose data fields start with a back-quote; a summary header and
//!   its row follow the details.
//!
//! Columns are found by their header names, not positions. Refund rows add to the refunded
//! amount of their payment.

use std::collections::BTreeMap;
use std::io::Read;

use paycenter_domain::ids::{ChannelTradeNo, TradeNo};
use paycenter_domain::{Currency, Money};

use crate::BillRow;

/// The most rows read from one bill, and the most bytes of one unzipped file.
const MAX_BILL_ROWS: usize = 1_000_000;
const MAX_UNZIPPED_BYTES: u64 = 256 << 20;

/// Accumulates bill lines per trade.
#[derive(Default)]
struct BillBuilder {
    rows: BTreeMap<TradeNo, BillRow>,
    n_lines: usize,
}

impl BillBuilder {
    fn add_payment(
        &mut self,
        trade_no: TradeNo,
        channel_trade_no: ChannelTradeNo,
        amount: Money,
    ) -> Result<(), String> {
        self.count()?;
        let row = self
            .rows
            .entry(trade_no.clone())
            .or_insert_with(|| BillRow {
                trade_no,
                channel_trade_no: channel_trade_no.clone(),
                amount: Money::zero(amount.currency()),
                refunded: Money::zero(amount.currency()),
            });
        row.channel_trade_no = channel_trade_no;
        row.amount = amount;
        Ok(())
    }

    fn add_refund(
        &mut self,
        trade_no: TradeNo,
        channel_trade_no: ChannelTradeNo,
        refunded: Money,
    ) -> Result<(), String> {
        self.count()?;
        let row = self
            .rows
            .entry(trade_no.clone())
            .or_insert_with(|| BillRow {
                trade_no,
                channel_trade_no,
                amount: Money::zero(refunded.currency()),
                refunded: Money::zero(refunded.currency()),
            });
        row.refunded = row
            .refunded
            .checked_add(refunded)
            .map_err(|error| error.to_string())?;
        Ok(())
    }

    fn count(&mut self) -> Result<(), String> {
        self.n_lines += 1;
        if self.n_lines > MAX_BILL_ROWS {
            return Err(format!("bill has more than {MAX_BILL_ROWS} rows"));
        }
        Ok(())
    }

    fn finish(self) -> Vec<BillRow> {
        self.rows.into_values().collect()
    }
}

/// A decimal amount as written in a bill; refunds may be written negative.
fn bill_amount(text: &str) -> Result<Money, String> {
    let text = text.trim().trim_start_matches('-');
    Money::parse_positive(text, Currency::CNY).map_err(|_| format!("bad amount {text:?}"))
}

/// Splits a CSV line on commas (bill fields never quote commas), trimming each field of the
/// channel's decorations: tabs and spaces, and WeChat Pay's leading back-quote.
fn fields(line: &str) -> Vec<String> {
    line.split(',')
        .map(|field| field.trim().trim_start_matches('`').trim().to_owned())
        .collect()
}

fn column(header: &[String], name: &str) -> Result<usize, String> {
    header
        .iter()
        .position(|field| field == name)
        .ok_or_else(|| format!("bill header has no column {name:?}"))
}

/// Where a bill's rows keep the two ids every line is filed under.
struct RowIds {
    channel: &'static str,
    n_columns: usize,
    trade_no_at: usize,
    channel_trade_no_at: usize,
    channel_trade_no_name: &'static str,
}

impl RowIds {
    /// The row's ids; `None` (logged) for an order paycenter did not number, which is another
    /// system's business on a shared channel account.
    fn read(&self, row: &[String]) -> Result<Option<(TradeNo, ChannelTradeNo)>, String> {
        if row.len() < self.n_columns {
            return Err(format!(
                "{} bill row has {} of {} fields",
                self.channel,
                row.len(),
                self.n_columns
            ));
        }
        let Ok(trade_no) = TradeNo::parse(&row[self.trade_no_at]) else {
            tracing::warn!(channel = self.channel, order = %row[self.trade_no_at], "bill row for an order paycenter did not number; skipped");
            return Ok(None);
        };
        let channel_trade_no =
            ChannelTradeNo::parse(&row[self.channel_trade_no_at]).map_err(|_| {
                format!(
                    "bad {} {:?}",
                    self.channel_trade_no_name, row[self.channel_trade_no_at]
                )
            })?;
        Ok(Some((trade_no, channel_trade_no)))
    }
}

/// Parses an Alipay trade bill zip.
pub fn alipay_zip(bytes: &[u8]) -> Result<Vec<BillRow>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|error| format!("alipay bill is not a zip: {error}"))?;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(|error| error.to_string())?;
        let name = encoding_rs::GBK.decode(file.name_raw()).0.into_owned();
        if name.contains("汇总") || !name.ends_with(".csv") {
            continue;
        }
        let mut raw = Vec::new();
        file.by_ref()
            .take(MAX_UNZIPPED_BYTES)
            .read_to_end(&mut raw)
            .map_err(|error| error.to_string())?;
        let (text, _, had_errors) = encoding_rs::GBK.decode(&raw);
        if had_errors {
            return Err(format!("{name} is not GBK text"));
        }
        return alipay_csv(&text);
    }
    Err("alipay bill zip holds no detail CSV".into())
}

/// Parses the detail CSV of an Alipay trade bill (already decoded).
pub fn alipay_csv(text: &str) -> Result<Vec<BillRow>, String> {
    let mut lines = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty());
    let header = fields(lines.next().ok_or("alipay bill has no header")?);
    let channel_trade_no_at = column(&header, "支付宝交易号")?;
    let trade_no_at = column(&header, "商户订单号")?;
    let kind_at = column(&header, "业务类型")?;
    let amount_at = column(&header, "订单金额（元）")?;
    let mut bill = BillBuilder::default();
    for line in lines {
        let row = fields(line);
        let ids = RowIds {
            channel: "alipay",
            n_columns: header.len(),
            trade_no_at,
            channel_trade_no_at,
            channel_trade_no_name: "支付宝交易号",
        };
        let Some((trade_no, channel_trade_no)) = ids.read(&row)? else {
            continue;
        };
        let amount = bill_amount(&row[amount_at])?;
        match row[kind_at].as_str() {
            "交易" => bill.add_payment(trade_no, channel_trade_no, amount)?,
            "退款" => bill.add_refund(trade_no, channel_trade_no, amount)?,
            other => return Err(format!("unknown 业务类型 {other:?}")),
        }
    }
    Ok(bill.finish())
}

/// Parses a WeChat Pay trade bill (`bill_type=ALL`).
pub fn wechatpay_tradebill(bytes: &[u8]) -> Result<Vec<BillRow>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "wechatpay bill is not UTF-8")?;
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header = fields(lines.next().ok_or("wechatpay bill has no header")?);
    let channel_trade_no_at = column(&header, "微信订单号")?;
    let trade_no_at = column(&header, "商户订单号")?;
    let state_at = column(&header, "交易状态")?;
    let amount_at = column(&header, "订单金额")?;
    let refund_at = column(&header, "退款金额")?;
    let mut bill = BillBuilder::default();
    for line in lines {
        // Details end where the summary's own header starts.
        if !line.trim_start().starts_with('`') {
            break;
        }
        let row = fields(line);
        let ids = RowIds {
            channel: "wechatpay",
            n_columns: header.len(),
            trade_no_at,
            channel_trade_no_at,
            channel_trade_no_name: "微信订单号",
        };
        let Some((trade_no, channel_trade_no)) = ids.read(&row)? else {
            continue;
        };
        match row[state_at].as_str() {
            "SUCCESS" => {
                bill.add_payment(trade_no, channel_trade_no, bill_amount(&row[amount_at])?)?
            }
            "REFUND" => {
                bill.add_refund(trade_no, channel_trade_no, bill_amount(&row[refund_at])?)?
            }
            // REVOKED and the like moved no money.
            _ => bill.count()?,
        }
    }
    Ok(bill.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alipay_detail_csv_with_comments_and_tabs() {
        let text = "#支付宝交易记录明细查询\n#账号：[20880000]\n#起始日期：[2026年11月21日 00:00:00]   终止日期：[2026年11月22日 00:00:00]\n#-----------------------------------------业务明细列表----------------------------------------\n支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,订单金额（元）,商家实收（元）,退款批次号/请求号,备注\n2026112122001\t,202611210000000000000000000001\t,交易\t,book\t,2026-11-21 10:00:00\t,2026-11-21 10:00:05\t,12.50\t,12.50\t,\t,\t\n2026112122001\t,202611210000000000000000000001\t,退款\t,book\t,2026-11-21 11:00:00\t,2026-11-21 11:00:01\t,-2.50\t,-2.50\t,rf_1\t,\t\n#-----------------------------------------业务明细列表结束------------------------------------\n#交易合计：1笔，商家实收共12.50元\n";
        let rows = alipay_csv(text).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].trade_no.as_str(), "202611210000000000000000000001");
        assert_eq!(rows[0].channel_trade_no.as_str(), "2026112122001");
        assert_eq!(rows[0].amount, Money::from_minor(1250, Currency::CNY));
        assert_eq!(rows[0].refunded, Money::from_minor(250, Currency::CNY));
    }

    #[test]
    fn wechatpay_tradebill_with_backquotes_and_summary() {
        let text = "交易时间,公众账号ID,商户号,微信订单号,商户订单号,交易类型,交易状态,货币种类,应结订单金额,微信退款单号,商户退款单号,退款金额,订单金额\n`2026-11-21 10:00:00,`wx1,`1900,`4200001,`202611210000000000000000000002,`NATIVE,`SUCCESS,`CNY,`8.00,`0,`0,`0.00,`8.00\n`2026-11-21 11:00:00,`wx1,`1900,`4200001,`202611210000000000000000000002,`NATIVE,`REFUND,`CNY,`0.00,`5030001,`rf_2,`3.00,`8.00\n总交易单数,应结订单总金额,退款总金额\n`2,`8.00,`3.00\n";
        let rows = wechatpay_tradebill(text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].amount, Money::from_minor(800, Currency::CNY));
        assert_eq!(rows[0].refunded, Money::from_minor(300, Currency::CNY));
    }

    #[test]
    fn malformed_bills_are_errors_not_panics() {
        assert!(alipay_zip(b"not a zip").is_err());
        assert!(alipay_csv("").is_err());
        assert!(alipay_csv("a,b\n1,2\n").is_err());
        assert!(wechatpay_tradebill(&[0xff, 0xfe]).is_err());
        assert!(wechatpay_tradebill(
            "交易时间,微信订单号,商户订单号,交易状态,订单金额,退款金额\n`x,`y\n".as_bytes()
        )
        .is_err());
    }
}
