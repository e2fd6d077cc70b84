//! PostgreSQL over TLS as the connection string's `sslmode` asks: `require` encrypts,
//! `verify-full` with the server's certificate as root (`host=localhost`, the name on Debian's
//! snakeoil certificate) encrypts and verifies, and a root the test makes is refused. Each
//! accepted session is asserted encrypted from `pg_stat_ssl`.
//!
//! Needs the local server with `ssl = on` (Debian's default, with the snakeoil certificate);
//! says why it skipped otherwise, unless `PAYCENTER_REQUIRE_POSTGRES=1`.

use paycenter_store::pg_tls::{connect_blocking, PgConnect};
use paycenter_store::{EventStore, PostgresStore};

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn base_settings() -> Option<String> {
    let url = std::env::var("PAYCENTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".to_owned());
    if url.starts_with("postgres") {
        eprintln!(
            "skipped: PAYCENTER_TEST_POSTGRES_URL is a URL; this test needs key=value settings"
        );
        return None;
    }
    // The certificate names `localhost`: connect by that name.
    Some(
        url.split_whitespace()
            .filter(|setting| !setting.starts_with("host=") && !setting.starts_with("sslmode="))
            .chain(["host=localhost"])
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn skip_or_fail(why: &str) {
    if std::env::var("PAYCENTER_REQUIRE_POSTGRES").is_ok_and(|value| value == "1") {
        panic!("PostgreSQL over TLS is required here: {why}");
    }
    eprintln!("skipped: {why}");
}

fn session_is_encrypted(settings: &str) -> Result<bool, String> {
    let connect = PgConnect::parse(settings).map_err(|error| error.to_string())?;
    let mut client = connect_blocking(&connect).map_err(|error| {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    })?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map_err(|error| error.to_string())?;
    Ok(row.get::<_, bool>(0))
}

#[test]
fn sslmode_require_and_verify_full_encrypt_and_a_foreign_root_is_refused() {
    let Some(base) = base_settings() else { return };
    let plain = match session_is_encrypted(&base) {
        Ok(encrypted) => encrypted,
        Err(error) => return skip_or_fail(&format!("no PostgreSQL at {base:?}: {error}")),
    };
    assert!(!plain, "without sslmode the session is plain, as before");
    let ssl_on = connect_blocking(&PgConnect::parse(&base).unwrap())
        .unwrap()
        .query_one("SHOW ssl", &[])
        .unwrap()
        .get::<_, String>(0)
        == "on";
    if !ssl_on || !std::path::Path::new(SNAKEOIL).exists() {
        return skip_or_fail(
            "the server runs without ssl (or without Debian's snakeoil certificate)",
        );
    }
    assert_eq!(
        session_is_encrypted(&format!("{base} sslmode=require")),
        Ok(true)
    );
    assert_eq!(
        session_is_encrypted(&format!(
            "{base} sslmode=verify-full sslrootcert={SNAKEOIL}"
        )),
        Ok(true)
    );
    // A root the server's certificate does not chain to.
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let foreign = dir.path().join("foreign-ca.pem");
    std::fs::write(&foreign, params.self_signed(&key).unwrap().pem()).unwrap();
    for mode in ["verify-full", "verify-ca", "require"] {
        let refused = session_is_encrypted(&format!(
            "{base} sslmode={mode} sslrootcert={}",
            foreign.display()
        ));
        assert!(refused.is_err(), "{mode} under a foreign root: {refused:?}");
    }
    // verify-full compares the name: the certificate is for localhost, not 127.0.0.1.
    let by_address = base.replace("host=localhost", "host=127.0.0.1");
    assert!(session_is_encrypted(&format!(
        "{by_address} sslmode=verify-full sslrootcert={SNAKEOIL}"
    ))
    .is_err());

    // The store itself over TLS.
    let schema = format!("pc_tls_{}", std::process::id());
    let settings = format!("{base} sslmode=verify-full sslrootcert={SNAKEOIL}");
    let store = PostgresStore::open(&settings, &schema).unwrap();
    let events = paycenter_domain::events::Event::to_new_events(
        &[paycenter_domain::events::Event::MerchantOnboarded(
            paycenter_domain::events::MerchantOnboarded {
                merchant_id: paycenter_domain::ids::MerchantId::from_entropy(1),
                name: "over TLS".into(),
                onboarded_at: chrono::Utc::now(),
            },
        )],
        "tls-1",
        None,
    );
    store
        .append(
            "merchant-tls",
            paycenter_store::ExpectedRevision::NoStream,
            events,
        )
        .unwrap();
    assert_eq!(store.read_stream("merchant-tls", 0).unwrap().len(), 1);
    drop(store);
    PostgresStore::drop_schema(&settings, &schema).unwrap();
}
