//! Timestamped HMAC-SHA256 signatures: `t=<unix seconds>,v1=<hex HMAC(secret, "<t>.<body>")>`.
//! paycenter signs its webhooks this way (design §3), and the sandbox channel signs its callbacks
//! the same way under its own secret and header.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The hex HMAC-SHA256 of `"<t>.<body>"`.
pub fn sign(secret: &[u8], timestamp_unix: i64, body: &[u8]) -> String {
    hex::encode(
        keyed_mac(secret, timestamp_unix, body)
            .finalize()
            .into_bytes(),
    )
}

/// The MAC state after absorbing `"<t>.<body>"`.
fn keyed_mac(secret: &[u8], timestamp_unix: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp_unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The whole header value.
pub fn signature_header(secret: &[u8], timestamp_unix: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp_unix},v1={}",
        sign(secret, timestamp_unix, body)
    )
}

/// `t=<t>,v1=<hex>,v1=<hex>…`: one signature per secret, the current one first (during a
/// secret's rotation the receiver may still know only the previous one).
pub fn signature_header_multi(secrets: &[&[u8]], timestamp_unix: i64, body: &[u8]) -> String {
    assert!(
        !secrets.is_empty(),
        "a webhook is signed with at least one secret"
    );
    let mut header = format!("t={timestamp_unix}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&sign(secret, timestamp_unix, body));
    }
    header
}

/// Checks a header value against the body, within `tolerance_seconds` of `now_unix`.
/// Compares in constant time.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_seconds: i64,
) -> Result<(), String> {
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<&str> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("signature header has no timestamp")?;
    if (now_unix - timestamp).abs() > tolerance_seconds {
        return Err("signature timestamp outside the tolerance".to_owned());
    }
    let mac = keyed_mac(secret, timestamp, body);
    // `verify_slice` compares in constant time; a header may carry several `v1` values.
    let matches = signatures
        .iter()
        .filter_map(|signature| hex::decode(signature).ok())
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    if !matches {
        return Err("signature does not match".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let header = signature_header(b"secret", 1_000, b"{\"a\":1}");
        assert!(verify(b"secret", &header, b"{\"a\":1}", 1_010, 300).is_ok());
        assert!(verify(b"secret", &header, b"{\"a\":2}", 1_010, 300).is_err());
        assert!(verify(b"other", &header, b"{\"a\":1}", 1_010, 300).is_err());
        assert!(
            verify(b"secret", &header, b"{\"a\":1}", 2_000, 300).is_err(),
            "stale"
        );
        assert!(verify(b"secret", "garbage", b"{\"a\":1}", 1_000, 300).is_err());
        assert!(verify(b"secret", "t=1000,v1=zz", b"{\"a\":1}", 1_000, 300).is_err());
    }

    #[test]
    fn matches_an_independent_hmac_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
