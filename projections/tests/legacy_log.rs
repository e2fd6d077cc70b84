//! A log written by paycenter's first version (before refunds recorded their shares) replays to
//! exactly the balances that version reported. `scripts/make-legacy-fixture.sh` wrote it: fees,
//! splits, partial and full refunds, a duplicate payment refunded automatically.

use std::path::Path;

use paycenter_domain::ids::MerchantId;
use paycenter_domain::Money;
use paycenter_projections::balances::Balances;
use paycenter_projections::{Projection as _, ReadModel};
use paycenter_store::{EventStore, SqliteStore};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy-v1");

#[test]
fn the_first_versions_log_replays_to_the_balances_it_reported() {
    // A copy: opening a store may touch its files, and the fixture stays as committed.
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(FIXTURE).join("events.sqlite3"),
        data_dir.path().join("events.sqlite3"),
    )
    .unwrap();
    let store = SqliteStore::open_read_only(data_dir.path()).unwrap();
    store.verify_chain().unwrap();
    let head = store.head_position().unwrap();
    // The read model folds it whole; the balances, a projection of their own, post it all.
    let model = ReadModel::fold_from_start(&store, head).unwrap();
    assert_eq!(model.position(), head);
    // Its orders live on streams named before order numbers lived in their app's namespace:
    // a new attempt on one of them must look up where it is.
    assert!(model.orders_may_live_under_older_names());
    let balances = Balances::fold_from_start(&store, head).unwrap();
    assert_eq!(balances.position(), head);
    assert!(
        balances.ledger().check().is_ok(),
        "{:?}",
        balances.ledger().check()
    );

    let merchant_id = MerchantId::parse(
        std::fs::read_to_string(Path::new(FIXTURE).join("merchant_id"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let reported: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIXTURE).join("balances.json")).unwrap(),
    )
    .unwrap();
    let expected: Vec<(String, String, String)> = reported["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|account| {
            (
                account["account"].as_str().unwrap().to_owned(),
                account["currency"].as_str().unwrap().to_owned(),
                account["balance"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let replayed: Vec<(String, String, String)> = balances
        .ledger()
        .merchant_balances(&merchant_id)
        .into_iter()
        .map(|(account, currency, minor)| {
            (
                account,
                currency.code().to_owned(),
                Money::from_minor(minor, currency).to_major_string(),
            )
        })
        .collect();
    assert_eq!(replayed, expected);
}
