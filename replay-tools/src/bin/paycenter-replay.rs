//! `paycenter-replay`: verify, audit and export paycenter's event log.

use std::path::PathBuf;
use std::process::ExitCode;

use paycenter_domain::ids::MerchantId;
use paycenter_replay_tools::commands::{self, AuditFormat, ExportFormat};
use paycenter_store::{EventStore, PostgresStore, SqliteStore};

const USAGE: &str = "usage: paycenter-replay <command> [--data-dir DIR] [options]

commands:
  verify                      the hash chain and the ledger invariants; exit 0 when sound,
                              otherwise non-zero, naming the first bad position
  audit --at TIME             balances and payments as they stood at TIME (RFC 3339)
        [--merchant ID] [--format json|csv] [--no-verify]
  export [--format jsonl|csv] [--from POSITION] [--no-verify]
                              the raw event log, for finance tools
                              (audit and export verify the hash chain first; --no-verify
                              skips that and says so)
  stats                       counts by event type and stream category
  rebuild [--projection NAME | --all]
                              fold projections from position 1 into a new file the
                              server opens next, report position, digest and file

options:
  --data-dir DIR              the embedded store's directory (default ./data); opened
                              read-only, so it works beside a running paycenter
  --store URL                 another backend: postgres://user:password@host/database
                              (the schema from --schema, or PAYCENTER_POSTGRES_SCHEMA,
                              default paycenter), or esdb://host:2113?tls=false (builds
                              with the eventstoredb feature; the log stream from
                              PAYCENTER_EVENTSTOREDB_STREAM); rebuild still writes the
                              node's file under --data-dir
  --schema NAME               the PostgreSQL schema of --store
  -h, --help                  this text, or `paycenter-replay <command> --help`

Output goes to stdout; progress bars to stderr when it is a terminal.";

fn command_usage(command: &str) -> &'static str {
    match command {
        "verify" => "usage: paycenter-replay verify [--data-dir DIR]\n\nChecks the hash chain and every ledger invariant. Prints a JSON summary and exits 0 when\nsound; otherwise prints the first bad position and what is wrong there, and exits 1.",
        "audit" => "usage: paycenter-replay audit --at TIME [--merchant ID] [--format json|csv] [--no-verify] [--data-dir DIR | --store URL]\n\nBalances and payments as they stood at TIME (RFC 3339, e.g. 2026-11-22T12:00:00Z): events\nrecorded after it are ignored. The hash chain is verified first (the JSON's \"chain\" field;\nwith CSV a line on stderr); --no-verify skips that and says so.",
        "export" => "usage: paycenter-replay export [--format jsonl|csv] [--from POSITION] [--no-verify] [--data-dir DIR | --store URL]\n\nThe raw event log from POSITION (default 1), one event per line. The hash chain is\nverified first (a line on stderr says so); --no-verify skips that and says so.",
        "stats" => "usage: paycenter-replay stats [--data-dir DIR]\n\nCounts of events by type and by stream category, as JSON.",
        "rebuild" => "usage: paycenter-replay rebuild [--projection NAME | --all] [--data-dir DIR]\n\nFolds the projections from position 1, offline, into a new file in DIR/projections that\nthe server opens at its next start, and prints each one's position, digest and file. The\ndigest equals a live server's for the same log.",
        _ => USAGE,
    }
}

struct Options {
    data_dir: PathBuf,
    store: Option<String>,
    schema: Option<String>,
    verify_first: bool,
    at: Option<String>,
    merchant: Option<String>,
    format: Option<String>,
    from: Option<String>,
    projection: Option<String>,
}

fn parse(args: &[String]) -> Result<(String, Options), (String, bool)> {
    let Some(command) = args.first() else {
        return Err((USAGE.to_owned(), false));
    };
    if command == "-h" || command == "--help" || command == "help" {
        return Err((USAGE.to_owned(), true));
    }
    if !["verify", "audit", "export", "stats", "rebuild"].contains(&command.as_str()) {
        return Err((format!("unknown command {command:?}\n\n{USAGE}"), false));
    }
    let mut options = Options {
        data_dir: PathBuf::from("./data"),
        store: None,
        schema: None,
        verify_first: true,
        at: None,
        merchant: None,
        format: None,
        from: None,
        projection: None,
    };
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        if flag == "-h" || flag == "--help" {
            return Err((command_usage(command).to_owned(), true));
        }
        if flag == "--all" && command == "rebuild" {
            continue;
        }
        if flag == "--no-verify" && (command == "audit" || command == "export") {
            options.verify_first = false;
            continue;
        }
        let value = rest
            .next()
            .ok_or_else(|| {
                (
                    format!("{flag} needs a value\n\n{}", command_usage(command)),
                    false,
                )
            })?
            .clone();
        match flag.as_str() {
            "--data-dir" => options.data_dir = PathBuf::from(value),
            "--store" => options.store = Some(value),
            "--schema" => options.schema = Some(value),
            "--at" if command == "audit" => options.at = Some(value),
            "--merchant" if command == "audit" => options.merchant = Some(value),
            "--format" if command == "audit" || command == "export" => options.format = Some(value),
            "--from" if command == "export" => options.from = Some(value),
            "--projection" if command == "rebuild" => options.projection = Some(value),
            other => {
                return Err((
                    format!(
                        "unknown option {other:?} for {command}\n\n{}",
                        command_usage(command)
                    ),
                    false,
                ))
            }
        }
    }
    Ok((command.clone(), options))
}

/// The log `--store` names, or the embedded one in `--data-dir` (read-only).
fn open_store(options: &Options) -> Result<Box<dyn EventStore>, String> {
    let Some(url) = options.store.as_deref() else {
        let store =
            SqliteStore::open_read_only(&options.data_dir).map_err(|error| error.to_string())?;
        return Ok(Box::new(store));
    };
    if paycenter_store::postgres::is_postgres_url(url) {
        let schema = options
            .schema
            .clone()
            .unwrap_or_else(paycenter_store::postgres::configured_schema);
        let store = PostgresStore::open(url, &schema).map_err(|error| error.to_string())?;
        return Ok(Box::new(store));
    }
    if paycenter_store::eventstoredb::is_eventstoredb_url(url) {
        return open_eventstoredb(url);
    }
    Err("--store: use postgres://user:password@host/database or esdb://host:2113?tls=false; omit it for the embedded store in --data-dir".to_owned())
}

#[cfg(feature = "eventstoredb")]
fn open_eventstoredb(url: &str) -> Result<Box<dyn EventStore>, String> {
    let log_stream = paycenter_store::eventstoredb::configured_log_stream();
    let store = paycenter_store::EventStoreDbStore::connect(url, &log_stream)
        .map_err(|error| error.to_string())?;
    Ok(Box::new(store))
}

#[cfg(not(feature = "eventstoredb"))]
fn open_eventstoredb(_url: &str) -> Result<Box<dyn EventStore>, String> {
    Err("this paycenter-replay was built without EventStoreDB support: build it with `--features eventstoredb`".to_owned())
}

fn run(command: &str, options: Options) -> Result<(), String> {
    let store = open_store(&options)?;
    let store: &dyn EventStore = store.as_ref();
    let mut stdout = std::io::stdout().lock();
    match command {
        "verify" => commands::verify(store, &mut stdout),
        "stats" => commands::stats(store, &mut stdout),
        "rebuild" => commands::rebuild(
            store,
            options.projection.as_deref(),
            &options.data_dir.join("projections"),
            &mut stdout,
        ),
        "export" => {
            let format = match options.format.as_deref() {
                None | Some("jsonl") => ExportFormat::Jsonl,
                Some("csv") => ExportFormat::Csv,
                Some(other) => return Err(format!("--format {other:?}: use jsonl or csv")),
            };
            let from = match options.from {
                None => 1,
                Some(text) => text
                    .parse()
                    .map_err(|_| format!("--from {text:?} is not a position"))?,
            };
            let chain = commands::check_chain(store, options.verify_first)?;
            // How the check went, on stderr (a JSON audit carries it in its document).
            eprintln!("{}", chain.sentence());
            commands::export(store, format, from, &mut stdout)
        }
        "audit" => {
            let at_text = options.at.ok_or("audit needs --at TIME (RFC 3339)")?;
            let at = chrono::DateTime::parse_from_rfc3339(&at_text)
                .map_err(|_| {
                    format!("--at {at_text:?} is not an RFC 3339 time like 2026-11-22T12:00:00Z")
                })?
                .with_timezone(&chrono::Utc);
            let merchant = options
                .merchant
                .map(|text| MerchantId::parse(&text).map_err(|error| error.to_string()))
                .transpose()?;
            let format = match options.format.as_deref() {
                None | Some("json") => AuditFormat::Json,
                Some("csv") => AuditFormat::Csv,
                Some(other) => return Err(format!("--format {other:?}: use json or csv")),
            };
            let chain = commands::check_chain(store, options.verify_first)?;
            if format == AuditFormat::Csv {
                // How the check went, on stderr (a JSON audit carries it in its document).
                eprintln!("{}", chain.sentence());
            }
            commands::audit(store, at, merchant.as_ref(), format, &chain, &mut stdout)
        }
        _ => unreachable!("parse accepts only known commands"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, options) = match parse(&args) {
        Ok(parsed) => parsed,
        Err((message, asked_for_help)) => {
            if asked_for_help {
                println!("{message}");
                return ExitCode::SUCCESS;
            }
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&command, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("paycenter-replay {command}: {message}");
            ExitCode::FAILURE
        }
    }
}
