//! The SQL tables (`rm_payments`, `rm_balances`, `rm_checkpoints`) written from a node's own
//! projections: rows agree with the read model and the balances at the checkpoint; a node
//! whose projections have not passed the checkpoint takes no lease and writes nothing; a second
//! node is held off by the lease.
//!
//! Needs a server: `PAYCENTER_TEST_POSTGRES_URL` (default `host=127.0.0.1 user=postgres
//! dbname=postgres`). Without one the test says why it skipped, unless
//! `PAYCENTER_REQUIRE_POSTGRES=1` (CI sets it), when it fails instead.

mod support;

use std::sync::{Arc, RwLock};

use paycenter_domain::ids::MerchantId;
use paycenter_projections::balances::Balances;
use paycenter_projections::follow::FollowerHealth;
use paycenter_projections::sql::{Round, Sources, SqlReadModels};
use paycenter_projections::{Projection, ReadModel};
use paycenter_store::{EventStore, PostgresStore};
use support::add_orders;

fn url() -> String {
    std::env::var("PAYCENTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".to_owned())
}

/// A client, or `None` (the test skips) when no server answers and none is required.
fn client() -> Option<postgres::Client> {
    match postgres::Client::connect(&url(), postgres::NoTls) {
        Ok(client) => Some(client),
        Err(error) => {
            if std::env::var("PAYCENTER_REQUIRE_POSTGRES").is_ok_and(|value| value == "1") {
                panic!("PostgreSQL is required (PAYCENTER_REQUIRE_POSTGRES=1) but not reachable at {:?}: {error}", url());
            }
            eprintln!("skipped: no PostgreSQL at {:?} ({error})", url());
            None
        }
    }
}

/// A node's projections, folded in memory up to `position`.
fn sources_at(store: &dyn EventStore, position: u64) -> Sources {
    let mut model = ReadModel::default();
    model.catch_up(store, position).unwrap();
    let mut balances = Balances::default();
    balances.catch_up(store, position).unwrap();
    Sources {
        model: Arc::new(RwLock::new(model)),
        balances: Arc::new(RwLock::new(balances)),
        balances_health: Arc::new(FollowerHealth::default()),
    }
}

fn catch_up(sources: &Sources, store: &dyn EventStore, position: u64) {
    sources
        .model
        .write()
        .unwrap()
        .catch_up(store, position)
        .unwrap();
    sources
        .balances
        .write()
        .unwrap()
        .catch_up(store, position)
        .unwrap();
}

/// Rounds until one is not `Advanced`; returns it.
fn run_until_settled(projector: &mut SqlReadModels, store: &dyn EventStore) -> Round {
    for _ in 0..1_000 {
        match projector.run_once(store).unwrap() {
            Round::Advanced(_) => continue,
            settled => return settled,
        }
    }
    panic!("the projector never settled");
}

/// Every row of both tables agrees with `sources`.
fn assert_rows_agree(sql: &mut postgres::Client, schema: &str, sources: &Sources) {
    let model = sources.model.read().unwrap();
    let mut n_payments = 0;
    model
        .for_each_payment(&mut |payment| {
            n_payments += 1;
            let row = sql
                .query_one(
                    &format!("SELECT status, amount_minor, refunded_minor, merchant_id FROM {schema}.rm_payments WHERE trade_no = $1"),
                    &[&payment.trade_no.as_str()],
                )
                .unwrap();
            let status = serde_json::to_value(payment.status).unwrap();
            assert_eq!(row.get::<_, String>(0), status.as_str().unwrap());
            assert_eq!(row.get::<_, i64>(1), payment.amount.amount_minor());
            assert_eq!(row.get::<_, i64>(2), payment.refunded().amount_minor());
            assert_eq!(row.get::<_, String>(3), payment.merchant_id.as_str());
        })
        .unwrap();
    let n_rows: i64 = sql
        .query_one(&format!("SELECT COUNT(*) FROM {schema}.rm_payments"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n_rows, n_payments);
    let balances = sources.balances.read().unwrap();
    let mut n_balances = 0;
    for merchant in 0..3u128 {
        let merchant_id = MerchantId::from_entropy(merchant);
        for (account, currency, balance_minor) in balances.ledger().merchant_balances(&merchant_id)
        {
            n_balances += 1;
            let row = sql
                .query_one(
                    &format!("SELECT balance_minor FROM {schema}.rm_balances WHERE merchant_id = $1 AND account = $2 AND currency = $3"),
                    &[&merchant_id.as_str(), &account, &currency.code()],
                )
                .unwrap();
            assert_eq!(
                row.get::<_, i64>(0),
                balance_minor,
                "{merchant_id} {account}"
            );
        }
    }
    assert!(n_balances > 0, "the orders moved balances");
    let n_rows: i64 = sql
        .query_one(&format!("SELECT COUNT(*) FROM {schema}.rm_balances"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n_rows, n_balances);
}

#[test]
fn the_tables_are_written_from_the_nodes_own_projections() {
    let Some(mut sql) = client() else {
        return;
    };
    // The log and the tables in one schema, as on a node; the lease is the store's.
    let schema = format!("pc_sql_tables_{}", std::process::id());
    let store = PostgresStore::open(&url(), &schema).unwrap();
    // More events than one round takes (2,000), so several rounds are needed.
    add_orders(&store, 0, 1_000);
    let head = store.head_position().unwrap();
    assert!(head > 2_000, "{head}");

    // Node B's projections are behind: it takes no lease and writes nothing.
    let lagging = sources_at(&store, 10);
    let mut node_b = SqlReadModels::open(&url(), &schema, "node-b", lagging.clone()).unwrap();
    assert_eq!(node_b.run_once(&store).unwrap(), Round::Advanced(10));
    let node_a_sources = sources_at(&store, head);
    let mut node_a =
        SqlReadModels::open(&url(), &schema, "node-a", node_a_sources.clone()).unwrap();
    // B holds the lease it just used; A waits for it (ten seconds) rather than writing.
    assert_eq!(node_a.run_once(&store).unwrap(), Round::HeldElsewhere);
    assert_eq!(node_b.run_once(&store).unwrap(), Round::Idle);
    assert_eq!(node_b.checkpoint().unwrap(), 10);

    // B catches up and, holding the lease still, writes the rest round by round.
    catch_up(&lagging, &store, head);
    assert_eq!(run_until_settled(&mut node_b, &store), Round::Idle);
    assert_eq!(node_b.checkpoint().unwrap(), head);
    assert_rows_agree(&mut sql, &schema, &lagging);

    // More orders: rows move with the projections, never past them.
    add_orders(&store, 1_000, 50);
    let new_head = store.head_position().unwrap();
    let halfway = head + (new_head - head) / 2;
    catch_up(&lagging, &store, halfway);
    assert_eq!(run_until_settled(&mut node_b, &store), Round::Idle);
    assert_eq!(node_b.checkpoint().unwrap(), halfway);
    catch_up(&lagging, &store, new_head);
    assert_eq!(run_until_settled(&mut node_b, &store), Round::Idle);
    assert_eq!(node_b.checkpoint().unwrap(), new_head);
    assert_rows_agree(&mut sql, &schema, &lagging);
    assert_eq!(node_a.run_once(&store).unwrap(), Round::Idle);

    drop(store);
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}
