//! WeChat Pay platform certificates: the older of WeChat Pay's two ways of signing answers and
//! notifies (the newer is one platform public key whose id starts `PUB_KEY_ID_`). A merchant in
//! certificate mode downloads `GET /v3/certificates`; each certificate arrives sealed with
//! AES-256-GCM under the merchant's APIv3 key, which is what vouches for it, and every answer
//! and notify names the certificate that signed it in `Wechatpay-Serial`.
//!
//! The downloaded certificates are kept per merchant (gateway and `mchid`) in a bounded cache.
//! A set is refreshed halfway between its download and its newest certificate's expiry, and at
//! least every 12 hours, so a certificate WeChat Pay publishes ahead of a rotation is known
//! before it signs anything. A serial nobody has seen starts a download at most once a minute:
//! a forged `Wechatpay-Serial` cannot make paycenter hammer the channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use x509_cert::der::{DecodePem, Encode};
use x509_cert::Certificate;

use crate::rsa_sha256::PublicKey;

/// A set is downloaded again at least this often.
const MAX_SET_AGE_SECONDS: i64 = 12 * 3600;
/// A serial missing from a set starts a download at most this often per merchant.
const UNKNOWN_SERIAL_REFETCH_SECONDS: i64 = 60;
/// A refresh that is due is tried at most this often per merchant (the channel may be down).
const DUE_REFETCH_SECONDS: i64 = 1;
/// How early a certificate is accepted before its `notBefore` (clocks differ).
const CLOCK_SKEW_SECONDS: i64 = 300;
/// Merchants whose certificates are kept; the set downloaded longest ago goes first.
const MAX_CACHED_MERCHANTS: usize = 4096;
/// Certificates read from one download; WeChat Pay lists one or two.
pub(crate) const MAX_CERTIFICATES_PER_DOWNLOAD: usize = 16;

/// One platform certificate, parsed.
#[derive(Clone, Debug)]
pub(crate) struct PlatformCertificate {
    /// The certificate's serial number in upper-case hex, as `Wechatpay-Serial` names it.
    pub serial_no: String,
    /// Its RSA public key.
    pub public_key: PublicKey,
    /// Start of validity, Unix seconds.
    pub not_before_unix: i64,
    /// End of validity, Unix seconds.
    pub not_after_unix: i64,
}

/// The serial as `Wechatpay-Serial` and `serial_no` write it: upper-case hex without leading
/// zeros (a DER integer may carry a zero byte in front).
pub(crate) fn normalize_serial(serial: &str) -> String {
    let trimmed = serial.trim().trim_start_matches('0');
    trimmed.to_ascii_uppercase()
}

impl PlatformCertificate {
    /// Parses a PEM certificate as WeChat Pay hands it out.
    pub(crate) fn parse_pem(pem: &[u8]) -> Result<PlatformCertificate, String> {
        let certificate =
            Certificate::from_pem(pem).map_err(|error| format!("not a certificate: {error}"))?;
        let tbs = &certificate.tbs_certificate;
        let serial_no = normalize_serial(&hex::encode(tbs.serial_number.as_bytes()));
        let spki_der = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|error| format!("certificate key: {error}"))?;
        let public_key =
            PublicKey::parse(&base64::engine::general_purpose::STANDARD.encode(spki_der))
                .map_err(|reason| format!("certificate key: {reason}"))?;
        let unix = |time: x509_cert::time::Time| -> i64 {
            i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        Ok(PlatformCertificate {
            serial_no,
            public_key,
            not_before_unix: unix(tbs.validity.not_before),
            not_after_unix: unix(tbs.validity.not_after),
        })
    }

    /// Whether the certificate may verify a signature made at `now_unix`.
    fn valid_at(&self, now_unix: i64) -> bool {
        self.not_before_unix - CLOCK_SKEW_SECONDS <= now_unix && now_unix <= self.not_after_unix
    }
}

/// The certificates of one merchant from one download.
#[derive(Debug)]
pub(crate) struct CertificateSet {
    fetched_at_unix: i64,
    certificates: Vec<PlatformCertificate>,
}

impl CertificateSet {
    /// A set downloaded at `fetched_at_unix`.
    pub(crate) fn new(
        fetched_at_unix: i64,
        certificates: Vec<PlatformCertificate>,
    ) -> CertificateSet {
        assert!(certificates.len() <= MAX_CERTIFICATES_PER_DOWNLOAD);
        CertificateSet {
            fetched_at_unix,
            certificates,
        }
    }

    /// The key of the certificate named `serial`, when it is valid at `now_unix`.
    pub(crate) fn key_for(&self, serial: &str, now_unix: i64) -> Option<&PublicKey> {
        let serial = normalize_serial(serial);
        self.certificates
            .iter()
            .find(|certificate| certificate.serial_no == serial && certificate.valid_at(now_unix))
            .map(|certificate| &certificate.public_key)
    }

    /// The serial of the valid certificate that expires last (sent as `Wechatpay-Serial`).
    pub(crate) fn newest_serial(&self, now_unix: i64) -> Option<&str> {
        self.certificates
            .iter()
            .filter(|certificate| certificate.valid_at(now_unix))
            .max_by_key(|certificate| certificate.not_after_unix)
            .map(|certificate| certificate.serial_no.as_str())
    }

    /// When the valid certificate that expires last expires (Unix seconds).
    pub(crate) fn newest_not_after(&self, now_unix: i64) -> Option<i64> {
        self.certificates
            .iter()
            .filter(|certificate| certificate.valid_at(now_unix))
            .map(|certificate| certificate.not_after_unix)
            .max()
    }

    /// When this set should be downloaded again: halfway to its newest certificate's expiry,
    /// and no later than [`MAX_SET_AGE_SECONDS`] after its download.
    pub(crate) fn refresh_at_unix(&self) -> i64 {
        let newest_not_after = self
            .certificates
            .iter()
            .map(|certificate| certificate.not_after_unix)
            .max()
            .unwrap_or(self.fetched_at_unix);
        let halfway = (newest_not_after - self.fetched_at_unix).max(0) / 2;
        self.fetched_at_unix + halfway.min(MAX_SET_AGE_SECONDS)
    }
}

/// Which merchant a set belongs to: its gateway and `mchid` (two gateways may reuse a mchid,
/// as a sandbox and production do).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MerchantKey {
    pub gateway_url: String,
    pub mchid: String,
}

#[derive(Default)]
struct Entry {
    set: Option<Arc<CertificateSet>>,
    last_download_attempt_unix: Option<i64>,
}

/// The platform certificates of every merchant in certificate mode, bounded.
#[derive(Default)]
pub(crate) struct CertificateCache {
    entries: Mutex<HashMap<MerchantKey, Entry>>,
    /// Held while downloading, so concurrent calls wait for one download instead of each
    /// starting their own.
    download: tokio::sync::Mutex<()>,
}

/// What a caller should do about a merchant's certificates.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// The set at hand serves.
    Fresh,
    /// Download now.
    Download,
}

impl CertificateCache {
    /// The merchant's set, if one was downloaded.
    pub(crate) fn get(&self, merchant: &MerchantKey) -> Option<Arc<CertificateSet>> {
        self.lock()
            .get(merchant)
            .and_then(|entry| entry.set.clone())
    }

    /// Whether a verification of a signature by `serial` (when given) at `now_unix` calls for
    /// a download first.
    pub(crate) fn freshness(
        &self,
        merchant: &MerchantKey,
        serial: Option<&str>,
        now_unix: i64,
    ) -> Freshness {
        let entries = self.lock();
        let Some(entry) = entries.get(merchant) else {
            return Freshness::Download;
        };
        let since_attempt = entry
            .last_download_attempt_unix
            .map_or(i64::MAX, |attempt| now_unix.saturating_sub(attempt));
        let Some(set) = &entry.set else {
            return if since_attempt >= DUE_REFETCH_SECONDS {
                Freshness::Download
            } else {
                Freshness::Fresh
            };
        };
        if now_unix >= set.refresh_at_unix() && since_attempt >= DUE_REFETCH_SECONDS {
            return Freshness::Download;
        }
        let unknown = serial.is_some_and(|serial| set.key_for(serial, now_unix).is_none());
        if unknown && since_attempt >= UNKNOWN_SERIAL_REFETCH_SECONDS {
            return Freshness::Download;
        }
        Freshness::Fresh
    }

    /// Takes the download turn; the caller checks [`CertificateCache::freshness`] again once
    /// it holds it (another caller may have just downloaded).
    pub(crate) async fn download_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.download.lock().await
    }

    /// Records a download attempt and, when it succeeded, its set.
    pub(crate) fn record_download(
        &self,
        merchant: &MerchantKey,
        attempted_at_unix: i64,
        set: Option<CertificateSet>,
    ) {
        let mut entries = self.lock();
        if !entries.contains_key(merchant) && entries.len() >= MAX_CACHED_MERCHANTS {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_download_attempt_unix)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(merchant.clone()).or_default();
        entry.last_download_attempt_unix = Some(attempted_at_unix);
        if let Some(set) = set {
            entry.set = Some(Arc::new(set));
        }
        assert!(entries.len() <= MAX_CACHED_MERCHANTS);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MerchantKey, Entry>> {
        // The map holds no invariant a panic elsewhere could break halfway.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(serial: &str, not_before_unix: i64, not_after_unix: i64) -> PlatformCertificate {
        let (_, public_pem) = crate::rsa_sha256::tests::key_pair();
        PlatformCertificate {
            serial_no: normalize_serial(serial),
            public_key: PublicKey::parse(&public_pem).unwrap(),
            not_before_unix,
            not_after_unix,
        }
    }

    fn merchant() -> MerchantKey {
        MerchantKey {
            gateway_url: "https://api.mch.weixin.qq.com".into(),
            mchid: "1900000109".into(),
        }
    }

    #[test]
    fn serials_compare_without_case_or_leading_zeros() {
        assert_eq!(normalize_serial("00ab12"), "AB12");
        let set = CertificateSet::new(0, vec![certificate("AB12", 0, 100)]);
        assert!(set.key_for("ab12", 50).is_some());
        assert!(set.key_for("00AB12", 50).is_some());
        assert!(set.key_for("AB13", 50).is_none());
    }

    #[test]
    fn a_certificate_verifies_only_while_valid() {
        let set = CertificateSet::new(1_000, vec![certificate("A", 1_000, 2_000)]);
        assert!(set.key_for("A", 1_500).is_some());
        assert!(set.key_for("A", 2_001).is_none(), "expired");
        assert!(set.key_for("A", 1_000 - CLOCK_SKEW_SECONDS).is_some());
        assert!(set.key_for("A", 1_000 - CLOCK_SKEW_SECONDS - 1).is_none());
    }

    #[test]
    fn a_set_is_refreshed_halfway_to_its_newest_expiry_and_at_least_twice_a_day() {
        let set = CertificateSet::new(
            1_000,
            vec![certificate("A", 0, 1_010), certificate("B", 1_000, 1_020)],
        );
        assert_eq!(set.refresh_at_unix(), 1_010);
        assert_eq!(set.newest_serial(1_005), Some("B"));
        let long = CertificateSet::new(0, vec![certificate("A", 0, 5 * 365 * 86_400)]);
        assert_eq!(long.refresh_at_unix(), MAX_SET_AGE_SECONDS);
    }

    #[test]
    fn downloads_are_due_when_missing_stale_or_unknown_but_never_in_a_storm() {
        let cache = CertificateCache::default();
        let merchant = merchant();
        assert_eq!(cache.freshness(&merchant, None, 0), Freshness::Download);
        cache.record_download(
            &merchant,
            1_000,
            Some(CertificateSet::new(
                1_000,
                vec![certificate("A", 1_000, 1_100)],
            )),
        );
        assert_eq!(
            cache.freshness(&merchant, Some("A"), 1_010),
            Freshness::Fresh
        );
        // Halfway to expiry: due.
        assert_eq!(
            cache.freshness(&merchant, Some("A"), 1_050),
            Freshness::Download
        );
        // A serial nobody knows: once a minute at most.
        assert_eq!(
            cache.freshness(&merchant, Some("Z"), 1_030),
            Freshness::Fresh
        );
        assert_eq!(
            cache.freshness(&merchant, Some("Z"), 1_000 + UNKNOWN_SERIAL_REFETCH_SECONDS),
            Freshness::Download
        );
        // A failed attempt keeps the old set and waits before the next.
        cache.record_download(&merchant, 1_050, None);
        assert!(cache.get(&merchant).is_some());
        assert_eq!(
            cache.freshness(&merchant, Some("A"), 1_050),
            Freshness::Fresh
        );
        assert_eq!(
            cache.freshness(&merchant, Some("A"), 1_051),
            Freshness::Download
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = CertificateCache::default();
        for index in 0..MAX_CACHED_MERCHANTS + 10 {
            let merchant = MerchantKey {
                gateway_url: "g".into(),
                mchid: index.to_string(),
            };
            cache.record_download(&merchant, index as i64, None);
        }
        assert_eq!(cache.lock().len(), MAX_CACHED_MERCHANTS);
        let first = MerchantKey {
            gateway_url: "g".into(),
            mchid: "0".into(),
        };
        assert!(!cache.lock().contains_key(&first), "the oldest went first");
    }
}
