//! The read model kept in its own file: a file-backed fold equals an in-memory fold (digest);
//! a reopened file resumes from its checkpoint and catches up; a file of another log is
//! replaced; memory does not hold what the file holds; a model that failed is never written
//! past its last good commit; a catch-up whose read of the log fails keeps every page before it.

mod support;

use chrono::Utc;
use paycenter_domain::events::{Event, PaymentAttemptStarted};
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::{Currency, Money};
use paycenter_projections::{persisted, ReadModel};
use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore};
use support::add_orders;

fn fold_into_file(path: &std::path::Path, store: &SqliteStore) -> ReadModel {
    let mut model = ReadModel::open(path, store).unwrap();
    model
        .catch_up(store, store.head_position().unwrap())
        .unwrap();
    model
}

#[test]
fn a_file_backed_fold_equals_an_in_memory_fold_and_resumes() {
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 40);
    let head = store.head_position().unwrap();
    let in_memory = ReadModel::fold_from_start(&store, head).unwrap();
    let path = models.path().join("model.sqlite");
    let backed = fold_into_file(&path, &store);
    assert_eq!(backed.position(), head);
    assert_eq!(backed.digest().unwrap(), in_memory.digest().unwrap());

    // The sweeper's queue holds exactly the unpaid attempts (every fourth), oldest first.
    let queued = backed.sweep_candidates(chrono::Utc::now(), 1_000).unwrap();
    assert_eq!(queued.len(), 10);
    for trade_no in &queued {
        let payment = backed
            .payment(trade_no)
            .unwrap()
            .expect("queued payments exist");
        assert_eq!(payment.status, AttemptStatus::Pending);
    }
    let created: Vec<_> = queued
        .iter()
        .map(|trade_no| backed.payment(trade_no).unwrap().unwrap().created_at)
        .collect();
    assert!(
        created.windows(2).all(|pair| pair[0] <= pair[1]),
        "oldest first"
    );
    // The counts /metrics reports, kept as events arrived.
    assert_eq!(backed.status_counts().get("pending"), Some(&10));
    assert_eq!(backed.status_counts().get("succeeded"), Some(&30));
    let merchant = MerchantId::from_entropy(0);
    // Every order here was recorded under its app's stream name: no row says otherwise.
    let order_no = OrderNo::parse("O3").unwrap();
    assert_eq!(
        backed
            .order_stream(&AppId::from_entropy(1), &merchant, &order_no)
            .unwrap(),
        paycenter_domain::streams::order(&AppId::from_entropy(1), &merchant, &order_no)
    );
    assert_eq!(
        backed
            .payment_by_channel_trade_no(&ChannelTradeNo::parse("C0").unwrap())
            .unwrap()
            .map(|payment| payment.order_no),
        Some(OrderNo::parse("O0").unwrap())
    );
    assert_eq!(
        backed
            .payment_of_refund(&RefundId::parse("rf_4").unwrap())
            .unwrap()
            .map(|payment| payment.order_no),
        Some(OrderNo::parse("O4").unwrap())
    );
    drop(backed);

    // Reopened: at its checkpoint, then caught up with what the log gained meanwhile.
    add_orders(&store, 40, 20);
    let head = store.head_position().unwrap();
    let mut resumed = ReadModel::open(&path, &store).unwrap();
    assert_eq!(resumed.position(), in_memory.position());
    assert_eq!(resumed.digest().unwrap(), in_memory.digest().unwrap());
    resumed.catch_up(&store, head).unwrap();
    assert_eq!(
        resumed.digest().unwrap(),
        ReadModel::fold_from_start(&store, head)
            .unwrap()
            .digest()
            .unwrap()
    );
}

#[test]
fn a_file_of_another_log_is_replaced_and_refolded() {
    let data = tempfile::tempdir().unwrap();
    let other_data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 10);
    let path = models.path().join("model.sqlite");
    drop(fold_into_file(&path, &store));

    // Another log of the same length: the checkpoint's hash does not match.
    let other = SqliteStore::open(other_data.path(), SqliteConfig::default()).unwrap();
    add_orders(&other, 100, 10);
    let refused = ReadModel::open(&path, &other).unwrap_err();
    assert!(refused.to_string().contains("does not hold"), "{refused}");
    let replaced = persisted::open_or_replace::<ReadModel>(&path, &other).unwrap();
    assert_eq!(
        replaced.position(),
        0,
        "an empty model, folded again from the log"
    );
}

#[test]
fn the_live_file_moves_to_a_rebuilt_generation() {
    let data = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 12);
    let dir = data.path().join("projections");
    // A snapshot an earlier version left behind goes at the first start, and so does the
    // half-folded file of a rebuild a crash interrupted.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("read_model.v2.snapshot"), "{}").unwrap();
    let interrupted = persisted::new_generation_path::<ReadModel>(&dir);
    std::fs::write(&interrupted, "").unwrap();
    let mut live = persisted::open_live::<ReadModel>(&dir, &store).unwrap();
    assert!(!dir.join("read_model.v2.snapshot").exists());
    assert!(!interrupted.exists());
    live.catch_up(&store, store.head_position().unwrap())
        .unwrap();
    let first_path = live.backing().unwrap().path().to_owned();

    let fresh_path = persisted::new_generation_path::<ReadModel>(&dir);
    let fresh = fold_into_file(&fresh_path, &store);
    assert_eq!(fresh.digest().unwrap(), live.digest().unwrap());
    persisted::make_live::<ReadModel>(&dir, &fresh_path).unwrap();
    drop((live, fresh));
    assert!(!first_path.exists(), "the old generation is removed");
    let reopened = persisted::open_live::<ReadModel>(&dir, &store).unwrap();
    assert_eq!(reopened.backing().unwrap().path(), fresh_path);
    assert_eq!(reopened.position(), store.head_position().unwrap());
}

#[test]
fn memory_holds_only_the_batch_in_progress() {
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 30);
    let model = fold_into_file(&models.path().join("model.sqlite"), &store);
    let debug = format!("{model:?}");
    // Every table that grows with history reports how many entries it keeps in memory.
    let in_memory: Vec<usize> = debug
        .match_indices("entries_in_memory: ")
        .map(|(at, label)| {
            debug[at + label.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(in_memory.len() >= 20, "{debug}");
    assert!(
        in_memory.iter().all(|n| *n == 0),
        "after a commit: {in_memory:?}"
    );
}

#[test]
fn a_batch_being_written_is_readable_and_lands_whole() {
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 40);
    let path = models.path().join("model.sqlite");
    let mut model = fold_into_file(&path, &store);
    let before = model.position();
    add_orders(&store, 40, 10);
    let head = store.head_position().unwrap();
    for event in store
        .read_all(before + 1, usize::try_from(head - before).unwrap())
        .unwrap()
    {
        model.apply(&event);
    }
    // Taken for writing: not in the file yet, but every query sees it.
    let pending = model.prepare_commit().expect("a file");
    assert_eq!(pending.position(), head);
    assert_eq!(
        model
            .payment_by_channel_trade_no(&ChannelTradeNo::parse("C45").unwrap())
            .unwrap()
            .map(|payment| payment.order_no),
        Some(OrderNo::parse("O45").unwrap())
    );
    // Every fourth attempt is unpaid: 10 of the first 40, 2 of the next 10 (O43, O47).
    let queued = model.sweep_candidates(chrono::Utc::now(), 1_000).unwrap();
    assert_eq!(queued.len(), 12);
    pending.write().unwrap();
    model.finish_commit();
    assert_eq!(
        model
            .sweep_candidates(chrono::Utc::now(), 1_000)
            .unwrap()
            .len(),
        12
    );
    drop(model);
    assert_the_file_is_the_whole_fold(&path, &store);
}

#[test]
fn a_commit_overtaken_by_a_later_one_is_dropped() {
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 20);
    let path = models.path().join("model.sqlite");
    let mut model = ReadModel::open(&path, &store).unwrap();
    let events = store.read_all(1, 1_000).unwrap();
    let (first, rest) = events.split_at(events.len() / 2);
    first.iter().for_each(|event| model.apply(event));
    // The follower took a batch and is writing it without the lock...
    let in_flight = model.prepare_commit().expect("a file");
    // ...when a catch-up (an online rebuild's) applies the rest and commits it all.
    rest.iter().for_each(|event| model.apply(event));
    model.commit().unwrap();
    // The follower's older write arrives last: dropped, nothing of the later one undone.
    in_flight.write().unwrap();
    model.finish_commit();
    drop(model);
    assert_the_file_is_the_whole_fold(&path, &store);
}

/// The model in the file at `path` is at the log's head and equals a fold from position 1.
fn assert_the_file_is_the_whole_fold(path: &std::path::Path, store: &SqliteStore) {
    let reopened = ReadModel::open(path, store).unwrap();
    let head = store.head_position().unwrap();
    assert_eq!(reopened.position(), head);
    // The digest read from the file alone is the model's.
    assert_eq!(
        ReadModel::file_digest(reopened.backing().unwrap()).unwrap(),
        (head, reopened.digest().unwrap())
    );
    assert_eq!(
        reopened.digest().unwrap(),
        ReadModel::fold_from_start(store, head)
            .unwrap()
            .digest()
            .unwrap()
    );
}

#[test]
fn a_long_catch_up_runs_behind_the_start_and_says_so() {
    use paycenter_projections::follow::{follow, FollowerHealth};
    use std::sync::{Arc, RwLock};
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(data.path(), SqliteConfig::default()).unwrap());
    add_orders(store.as_ref(), 0, 30);
    let head = store.head_position().unwrap();
    let model = Arc::new(RwLock::new(
        ReadModel::open(&models.path().join("model.sqlite"), store.as_ref()).unwrap(),
    ));
    let health = Arc::new(FollowerHealth::default());
    // Held while `follow` returns: the follower cannot apply anything before we look.
    let reading = model.read().unwrap();
    follow(
        store.clone(),
        model.clone(),
        health.clone(),
        Box::new(|_| {}),
        0, // every catch-up runs behind
    )
    .unwrap();
    assert_eq!(health.catching_up_to(), Some(head));
    assert_eq!(reading.position(), 0);
    drop(reading);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while health.catching_up_to().is_some() {
        assert!(std::time::Instant::now() < deadline, "caught up in time");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(model.read().unwrap().position(), head);

    // Within the limit, the catch-up is done before `follow` returns.
    let again = Arc::new(RwLock::new(
        ReadModel::open(&models.path().join("other.sqlite"), store.as_ref()).unwrap(),
    ));
    let health = Arc::new(FollowerHealth::default());
    follow(
        store.clone(),
        again.clone(),
        health.clone(),
        Box::new(|_| {}),
        head,
    )
    .unwrap();
    assert_eq!(health.catching_up_to(), None);
    assert_eq!(again.read().unwrap().position(), head);
}

#[test]
fn a_payment_as_started_and_a_refund_as_requested_are_what_the_log_said_then() {
    let data = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 8);
    let mut model = ReadModel::default();
    let mut at_start = std::collections::HashMap::new();
    let mut at_request = std::collections::HashMap::new();
    for event in store.read_all(1, 1_000).unwrap() {
        model.apply(&event);
        match Event::decode(&event).unwrap() {
            Event::PaymentAttemptStarted(started) => {
                let payment = model.payment(&started.trade_no).unwrap().unwrap();
                at_start.insert(started.trade_no, payment);
            }
            Event::RefundRequested(requested) => {
                let payment = model.payment(&requested.trade_no).unwrap().unwrap();
                let refund = payment.refunds.last().unwrap().clone();
                at_request.insert(requested.refund_id, refund);
            }
            _ => {}
        }
    }
    assert_eq!(at_start.len(), 8);
    for (trade_no, then) in &at_start {
        let now = model.payment(trade_no).unwrap().unwrap();
        assert_eq!(&now.as_started(), then, "{trade_no}");
    }
    assert_eq!(at_request.len(), 2);
    for (refund_id, then) in &at_request {
        let (_, now) = model.refund(refund_id).unwrap().unwrap();
        assert_ne!(&now, then, "it settled since");
        assert_eq!(&now.as_requested(), then);
    }
}

#[test]
fn lists_page_newest_first_alike_in_a_file_and_in_memory() {
    use paycenter_projections::model::ListScope;
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 1_200);
    let in_file = fold_into_file(&models.path().join("model.sqlite"), &store);
    let in_memory = ReadModel::fold_from_start(&store, store.head_position().unwrap()).unwrap();
    for scope in [
        ListScope::All,
        ListScope::Merchant(MerchantId::from_entropy(1)),
        ListScope::App(AppId::from_entropy(1)),
    ] {
        let walk = |model: &ReadModel| {
            let mut trade_nos = Vec::new();
            let mut below: Option<Vec<u8>> = None;
            loop {
                let step = model
                    .payments_step(&scope, None, None, below.as_deref())
                    .unwrap();
                trade_nos.extend(step.entries.into_iter().map(|(_, entry)| entry.trade_no));
                match step.resume_below {
                    Some(next) => below = Some(next),
                    None => return trade_nos,
                }
            }
        };
        let (from_file, from_memory) = (walk(&in_file), walk(&in_memory));
        assert_eq!(from_file, from_memory);
        let expected = match scope {
            ListScope::Merchant(_) => 400,
            _ => 1_200,
        };
        assert_eq!(from_file.len(), expected);
        let unique: std::collections::BTreeSet<_> = from_file.iter().collect();
        assert_eq!(unique.len(), expected, "no repeat");
        let created: Vec<_> = from_file
            .iter()
            .map(|trade_no| in_file.payment(trade_no).unwrap().unwrap().created_at)
            .collect();
        assert!(
            created.windows(2).all(|pair| pair[0] >= pair[1]),
            "newest first"
        );
    }
}

/// A second projection for the runner: events counted by type, in a file of its own. It
/// panics at the first event of `poison` (a broken invariant), if set.
struct EventCounts {
    backing: std::sync::Arc<paycenter_projections::tables::Backing>,
    counts: paycenter_projections::tables::Map<str, u64>,
    position: u64,
    hash_at_position: [u8; 32],
    poison: Option<&'static str>,
}

impl EventCounts {
    fn poisoned(path: &std::path::Path, store: &dyn EventStore, poison: &'static str) -> Self {
        let mut counts =
            <EventCounts as paycenter_projections::Projection>::open(path, store).unwrap();
        counts.poison = Some(poison);
        counts
    }

    fn count(&self, event_type: &str) -> u64 {
        self.counts.get(event_type).unwrap_or(0)
    }
}

struct CountsCommit {
    backing: std::sync::Arc<paycenter_projections::tables::Backing>,
    writes: Vec<paycenter_projections::tables::Write>,
    checkpoint: paycenter_projections::tables::Checkpoint,
}

impl paycenter_projections::projection::PendingWrite for CountsCommit {
    fn write(&self) -> Result<(), paycenter_projections::tables::TableError> {
        self.backing.commit(&self.writes, &self.checkpoint)
    }
}

impl paycenter_projections::Projection for EventCounts {
    const NAME: &'static str = "event_counts";
    const VERSION: u32 = 1;
    type Commit = CountsCommit;

    fn open_on(
        backing: std::sync::Arc<paycenter_projections::tables::Backing>,
        store: &dyn EventStore,
        role: paycenter_projections::projection::Role,
    ) -> Result<Self, paycenter_projections::model::ModelError> {
        let resumed = paycenter_projections::projection::resume::<EventCounts>(&backing, store)?;
        let mut counts = paycenter_projections::tables::Map::default();
        counts.attach(&backing, 1, role.recent_capacity(64));
        Ok(EventCounts {
            backing,
            counts,
            position: resumed.as_ref().map_or(0, |resumed| resumed.position),
            hash_at_position: resumed.map_or([0; 32], |resumed| resumed.hash_at_position),
            poison: None,
        })
    }

    fn resident_spaces() -> Vec<u16> {
        Vec::new()
    }

    fn refresh(
        &mut self,
        checkpoint: &paycenter_projections::tables::Checkpoint,
        _spaces: &[(u16, paycenter_projections::tables::Rows)],
    ) -> Result<(), paycenter_projections::model::ModelError> {
        self.position = checkpoint.position;
        self.hash_at_position = paycenter_projections::projection::hash_of(checkpoint);
        Ok(())
    }

    fn backing(&self) -> Option<&std::sync::Arc<paycenter_projections::tables::Backing>> {
        Some(&self.backing)
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn apply(&mut self, event: &paycenter_domain::envelope::RecordedEvent) {
        assert_eq!(event.global_position, self.position + 1, "no gaps");
        if self.poison == Some(event.event_type.as_str()) {
            panic!("{} is poison here", event.event_type);
        }
        let count = self.count(&event.event_type);
        self.counts.insert(&event.event_type, count + 1);
        self.position = event.global_position;
        self.hash_at_position = event.hash;
    }

    fn prepare_commit(&mut self) -> Option<CountsCommit> {
        let mut writes = Vec::new();
        self.counts.drain_into(&mut writes);
        Some(CountsCommit {
            backing: self.backing.clone(),
            writes,
            checkpoint: paycenter_projections::projection::checkpoint::<EventCounts>(
                self.position,
                self.hash_at_position,
                String::new(),
            ),
        })
    }

    fn finish_commit(&mut self) -> paycenter_projections::tables::Retired {
        self.counts.finish_commit()
    }

    fn digest(&self) -> Result<String, paycenter_projections::tables::TableError> {
        let mut text = format!("position={};", self.position);
        for event_type in [
            "payment.attempt_started",
            "payment.succeeded",
            "refund.requested",
            "refund.succeeded",
        ] {
            text.push_str(&format!("{event_type}={};", self.count(event_type)));
        }
        Ok(text)
    }
}

#[test]
fn one_runner_drives_any_projection_and_one_that_breaks_stops_alone() {
    use paycenter_projections::follow::{follow, FollowerHealth};
    use paycenter_projections::Projection;
    use std::sync::{Arc, RwLock};
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(data.path(), SqliteConfig::default()).unwrap());
    add_orders(store.as_ref(), 0, 12);
    let head = store.head_position().unwrap();
    let poison_at = store
        .read_all(1, 1_000)
        .unwrap()
        .into_iter()
        .find(|event| event.event_type == "refund.requested")
        .unwrap()
        .global_position;
    // Three projections on one log, each with its own runner: the read model, the counts,
    // and counts that break at the first refund.
    let run = |projection_dir: &std::path::Path| {
        let model = Arc::new(RwLock::new(
            persisted::open_live::<ReadModel>(projection_dir, store.as_ref()).unwrap(),
        ));
        let health = Arc::new(FollowerHealth::default());
        follow(
            store.clone(),
            model.clone(),
            health.clone(),
            Box::new(|_| {}),
            head,
        )
        .unwrap();
        (model, health)
    };
    let (model, model_health) = run(&dir.path().join("model"));
    let counts = Arc::new(RwLock::new(
        persisted::open_live::<EventCounts>(dir.path(), store.as_ref()).unwrap(),
    ));
    let counts_health = Arc::new(FollowerHealth::default());
    follow(
        store.clone(),
        counts.clone(),
        counts_health.clone(),
        Box::new(|_| {}),
        head,
    )
    .unwrap();
    let broken_path = dir.path().join("broken.sqlite");
    let broken = Arc::new(RwLock::new(EventCounts::poisoned(
        &broken_path,
        store.as_ref(),
        "refund.requested",
    )));
    let broken_health = Arc::new(FollowerHealth::default());
    follow(
        store.clone(),
        broken.clone(),
        broken_health.clone(),
        Box::new(|_| {}),
        head,
    )
    .unwrap();
    assert_eq!(model.read().unwrap().position(), head);
    assert!(model_health.stopped().is_none());
    assert_eq!(counts.read().unwrap().position(), head);
    assert!(counts_health.stopped().is_none());
    let stopped = broken_health
        .stopped()
        .expect("the poisoned projection stopped");
    assert_eq!(
        (stopped.position, stopped.event_type.as_str()),
        (poison_at, "refund.requested")
    );
    assert!(stopped.reason.contains("poison"), "{}", stopped.reason);
    // Its file never passed its last good commit: opened again, it stops at the same event.
    drop(broken);
    let reopened = EventCounts::poisoned(&broken_path, store.as_ref(), "refund.requested");
    assert!(reopened.position() < poison_at);
    let again_health = Arc::new(FollowerHealth::default());
    follow(
        store.clone(),
        Arc::new(RwLock::new(reopened)),
        again_health.clone(),
        Box::new(|_| {}),
        head,
    )
    .unwrap();
    assert_eq!(again_health.stopped().unwrap().position, poison_at);

    // The live counts agree with the log, and survive a restart at their checkpoint.
    let expected = |event_type: &str| {
        store
            .read_all(1, 1_000)
            .unwrap()
            .iter()
            .filter(|event| event.event_type == event_type)
            .count() as u64
    };
    for event_type in ["payment.attempt_started", "refund.succeeded"] {
        assert_eq!(
            counts.read().unwrap().count(event_type),
            expected(event_type)
        );
    }
    // An online rebuild of the counts: a shadow file folded from position 1, checked against
    // the live one, swapped in, and the pointer names it at the next start.
    add_orders(store.as_ref(), 12, 4);
    let rebuilt =
        paycenter_projections::rebuild::rebuild_online(store.as_ref(), &counts, dir.path())
            .unwrap();
    assert!(rebuilt.identical);
    assert_eq!(rebuilt.position, store.head_position().unwrap());
    let reopened = persisted::open_live::<EventCounts>(dir.path(), store.as_ref()).unwrap();
    assert_eq!(reopened.position(), rebuilt.position);
    assert_eq!(
        reopened.count("payment.attempt_started"),
        expected("payment.attempt_started")
    );
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("event_counts.v1.") && name.ends_with(".sqlite"))
        .collect();
    assert_eq!(files.len(), 1, "the old generation is gone: {files:?}");
}

/// A model knows whether any attempt was recorded on an order stream of an older name (before
/// order numbers lived in their app's namespace): while none was, a new order needs no lookup
/// of earlier attempts. The count is kept across a reopen; a file written before it was counted
/// does not know, and says so.
#[test]
fn a_model_knows_whether_orders_live_under_older_stream_names() {
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 5);
    let path = models.path().join("model.sqlite");
    let model = fold_into_file(&path, &store);
    assert!(!model.orders_may_live_under_older_names());
    drop(model);
    assert!(!fold_into_file(&path, &store).orders_may_live_under_older_names());

    // One attempt on a stream named by merchant and order number only.
    let merchant_id = MerchantId::from_entropy(0);
    let order_no = OrderNo::parse("OLD-1").unwrap();
    let started = Event::PaymentAttemptStarted(PaymentAttemptStarted {
        trade_no: TradeNo::generate(Utc::now(), 99),
        merchant_id: merchant_id.clone(),
        order_no: order_no.clone(),
        app_id: AppId::from_entropy(1),
        channel_account_id: ChannelAccountId::from_entropy(1),
        channel: Channel::Sandbox,
        invoke_method: InvokeMethod::Pc,
        amount: Money::from_minor(100, Currency::CNY),
        fee: Money::from_minor(0, Currency::CNY),
        splits: Vec::new(),
        subject: "rent".into(),
        started_at: Utc::now(),
        expires_at: Utc::now(),
        return_url: None,
        route: None,
        share: Default::default(),
    });
    let older_stream = format!("order-{merchant_id}-{order_no}");
    store
        .append(
            &older_stream,
            ExpectedRevision::NoStream,
            Event::to_new_events(&[started], &older_stream, None),
        )
        .unwrap();
    let model = fold_into_file(&path, &store);
    assert!(model.orders_may_live_under_older_names());
    assert_eq!(
        model
            .order_stream(&AppId::from_entropy(1), &merchant_id, &order_no)
            .unwrap(),
        older_stream
    );
    // Any other order of the app is under the app's own name.
    let other_order = OrderNo::parse("NEW-1").unwrap();
    assert_eq!(
        model
            .order_stream(&AppId::from_entropy(1), &merchant_id, &other_order)
            .unwrap(),
        paycenter_domain::streams::order(&AppId::from_entropy(1), &merchant_id, &other_order)
    );
    drop(model);
    assert!(fold_into_file(&path, &store).orders_may_live_under_older_names());

    // A file whose checkpoint predates the count.
    let fresh = models.path().join("fresh.sqlite");
    let other_data = tempfile::tempdir().unwrap();
    let other = SqliteStore::open(other_data.path(), SqliteConfig::default()).unwrap();
    add_orders(&other, 0, 3);
    drop(fold_into_file(&fresh, &other));
    rusqlite::Connection::open(&fresh)
        .unwrap()
        .execute(
            "UPDATE checkpoint SET scalars = json_remove(scalars, '$.older_order_streams')",
            [],
        )
        .unwrap();
    assert!(fold_into_file(&fresh, &other).orders_may_live_under_older_names());
}

/// The store of these tests, whose `read_all` fails for any read reaching `failing_from` or
/// past it: a log that cannot be read beyond a point.
struct ReadsFailFrom {
    inner: SqliteStore,
    failing_from: u64,
}

impl EventStore for ReadsFailFrom {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<paycenter_domain::envelope::NewEvent>,
    ) -> Result<paycenter_store::AppendOutcome, paycenter_store::StoreError> {
        self.inner.append(stream_id, expected, events)
    }

    fn append_async(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<paycenter_domain::envelope::NewEvent>,
    ) -> paycenter_store::AppendFuture {
        self.inner.append_async(stream_id, expected, events)
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<paycenter_domain::envelope::RecordedEvent>, paycenter_store::StoreError> {
        self.inner.read_stream(stream_id, from_revision)
    }

    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<paycenter_domain::envelope::RecordedEvent>, paycenter_store::StoreError> {
        let last_wanted = from_position.saturating_add(limit as u64).saturating_sub(1);
        if last_wanted >= self.failing_from {
            return Err(paycenter_store::StoreError::Backend(
                "the disk cannot be read here".into(),
            ));
        }
        self.inner.read_all(from_position, limit)
    }

    fn head_position(&self) -> Result<u64, paycenter_store::StoreError> {
        self.inner.head_position()
    }

    fn wait_for_head(
        &self,
        after_position: u64,
        timeout: std::time::Duration,
    ) -> Result<u64, paycenter_store::StoreError> {
        self.inner.wait_for_head(after_position, timeout)
    }

    fn verify_chain(&self) -> Result<paycenter_store::ChainReport, paycenter_store::StoreError> {
        self.inner.verify_chain()
    }

    fn try_lease(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: u64,
    ) -> Result<bool, paycenter_store::StoreError> {
        self.inner.try_lease(name, owner, ttl_ms)
    }
}

/// A catch-up reads the log a few pages ahead of its fold on a thread of its own: a read that
/// fails ends it with that error, every page before it folded and committed, and a later
/// catch-up over a readable log resumes from there to the same fold.
#[test]
fn a_catch_up_whose_read_fails_keeps_every_page_before_it() {
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    // Pages are 10,000 events: enough orders for a few.
    add_orders(&store, 0, 14_000);
    let head = store.head_position().unwrap();
    assert!(head > 30_000, "{head}");
    let failing = ReadsFailFrom {
        inner: store,
        failing_from: 25_000,
    };
    let path = models.path().join("model.sqlite");
    let mut model = ReadModel::open(&path, &failing).unwrap();
    let error = model.catch_up(&failing, head).unwrap_err();
    assert!(
        error.to_string().contains("the disk cannot be read here"),
        "{error}"
    );
    // The first two pages were folded and written; the third could not be read.
    assert_eq!(model.position(), 20_000);
    drop(model);
    let store = failing.inner;
    let mut reopened = ReadModel::open(&path, &store).unwrap();
    assert_eq!(reopened.position(), 20_000);
    reopened.catch_up(&store, head).unwrap();
    drop(reopened);
    assert_the_file_is_the_whole_fold(&path, &store);
}

/// The file's WAL is checkpointed every 8,192 pages and restarts, so it stays bounded while the
/// same rows are rewritten again and again (without checkpoints this WAL would reach about
/// 280 MB).
#[test]
fn the_files_wal_stays_bounded_under_rewrites() {
    use paycenter_projections::tables::{Backing, Checkpoint, RowValue};

    const ROWS: usize = 1_000;
    const COMMITS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.sqlite");
    let wal_path = dir.path().join("model.sqlite-wal");
    let backing = Backing::open(&path).unwrap();
    let mut largest_wal_bytes = 0;
    for commit in 1..=COMMITS {
        // Every byte differs from the last commit's: SQLite writes no page whose bytes stay.
        let filler = char::from(b'a' + (commit % 26) as u8);
        let value = filler.to_string().repeat(4_000);
        let writes: Vec<_> = (0..ROWS)
            .map(|row| {
                let value = RowValue::Encoded(value.clone());
                (1, (row as u64).to_be_bytes().to_vec(), Some(value))
            })
            .collect();
        let checkpoint = Checkpoint {
            name: "rewrites".to_owned(),
            version: 1,
            position: commit,
            hash_at_position: String::new(),
            scalars: "{}".to_owned(),
        };
        backing.commit(&writes, &checkpoint).unwrap();
        let wal_bytes = std::fs::metadata(&wal_path).map_or(0, |metadata| metadata.len());
        largest_wal_bytes = largest_wal_bytes.max(wal_bytes);
    }
    // The threshold is 8,192 pages (32 MiB); the WAL restarts once they are copied.
    let bound_bytes = 80 << 20;
    assert!(
        largest_wal_bytes <= bound_bytes,
        "the WAL reached {largest_wal_bytes} bytes (bound {bound_bytes})"
    );
    drop(backing);
    let reopened = Backing::open(&path).unwrap();
    assert_eq!(reopened.checkpoint().unwrap().unwrap().position, COMMITS);
}

/// Files written before the read model stopped keeping each order stream's revision (space 14,
/// written with every order event and never read) still hold those rows: such a file opens,
/// resumes and folds on, and its digest is the fold's, which leaves them out.
#[test]
fn a_file_holding_the_retired_order_revisions_resumes_as_the_fold() {
    let data = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 20);
    let path = models.path().join("model.sqlite");
    drop(fold_into_file(&path, &store));
    {
        let file = rusqlite::Connection::open(&path).unwrap();
        for order in 0..20 {
            file.execute(
                "INSERT INTO rows (space, key, value) VALUES (14, ?1, '3')",
                [format!("order-app-mch-O{order}").into_bytes()],
            )
            .unwrap();
        }
    }
    add_orders(&store, 20, 10);
    let mut resumed = ReadModel::open(&path, &store).unwrap();
    resumed
        .catch_up(&store, store.head_position().unwrap())
        .unwrap();
    resumed.commit().unwrap();
    drop(resumed);
    assert_the_file_is_the_whole_fold(&path, &store);
    let file = rusqlite::Connection::open(&path).unwrap();
    let retired: i64 = file
        .query_row("SELECT COUNT(*) FROM rows WHERE space = 14", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(retired, 20, "the fold writes no order revisions");
}
