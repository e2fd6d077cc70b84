//! `paycenter-replay`: verify, audit and export paycenter's event log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use paycenter_domain::ids::MerchantId;
use paycenter_replay_tools::commands::{self, AuditFormat, ExportFormat};
use paycenter_store::{EventStore, PostgresStore, SqliteStore};

/// The command line: a command and the log it reads.
#[derive(Parser, Debug)]
#[command(
    name = "paycenter-replay",
    about = "Verify, audit, export and rebuild from paycenter's event log",
    after_help = "Output goes to stdout; progress bars to stderr when it is a terminal."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogOptions,
}

/// Which log is read.
#[derive(clap::Args, Debug)]
struct LogOptions {
    /// The embedded store's directory, opened read-only (so it works beside a running
    /// paycenter); rebuild writes the node's projection files under it.
    #[arg(long, global = true, value_name = "DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Another backend: postgres://user:password@host/database (schema from --schema) or
    /// esdb://host:2113?tls=false (builds with the eventstoredb feature; the log stream from
    /// PAYCENTER_EVENTSTOREDB_STREAM).
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    /// The PostgreSQL schema of --store.
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "PAYCENTER_POSTGRES_SCHEMA",
        default_value = "paycenter"
    )]
    schema: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The hash chain, that no event id repeats, and every ledger invariant. Prints a JSON
    /// summary and exits 0 when sound; otherwise names the first bad position and exits 1.
    Verify,
    /// Balances and payments as they stood at TIME: events recorded after it are ignored. The
    /// hash chain is verified first (the JSON's "chain" field; with CSV a line on stderr).
    Audit {
        /// RFC 3339, e.g. 2026-11-22T12:00:00Z.
        #[arg(long, value_name = "TIME")]
        at: String,
        /// Only this merchant's accounts and payments.
        #[arg(long, value_name = "ID")]
        merchant: Option<String>,
        #[arg(long, value_enum, default_value = "json")]
        format: AuditFormatArg,
        /// Skip the chain check (the output says so).
        #[arg(long)]
        no_verify: bool,
    },
    /// The raw event log from POSITION, one event per line, for finance tools. The hash chain
    /// is verified first (a line on stderr says so).
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormatArg,
        /// The first position exported.
        #[arg(long, value_name = "POSITION", default_value_t = 1)]
        from: u64,
        /// Skip the chain check (stderr says so).
        #[arg(long)]
        no_verify: bool,
    },
    /// Counts of events by type and by stream category, as JSON.
    Stats,
    /// Folds the projections from position 1, offline, into a new file in DIR/projections that
    /// the server opens at its next start (with --store postgres://…, into a new generation of
    /// the tables the nodes share, live at once); prints each one's position, digest and file
    /// or tables (the digest equals a live server's for the same log).
    Rebuild {
        /// One projection (read_model or balances); every one when omitted.
        #[arg(long, value_name = "NAME", conflicts_with = "all")]
        projection: Option<String>,
        /// Every projection (the default).
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum AuditFormatArg {
    Json,
    Csv,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum ExportFormatArg {
    Jsonl,
    Csv,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Verify => "verify",
            Command::Audit { .. } => "audit",
            Command::Export { .. } => "export",
            Command::Stats => "stats",
            Command::Rebuild { .. } => "rebuild",
        }
    }
}

/// The log `--store` names, or the embedded one in `--data-dir` (read-only).
fn open_store(log: &LogOptions) -> Result<Box<dyn EventStore>, String> {
    let Some(url) = log.store.as_deref() else {
        let store =
            SqliteStore::open_read_only(&log.data_dir).map_err(|error| error.to_string())?;
        return Ok(Box::new(store));
    };
    if paycenter_store::postgres::is_postgres_url(url) {
        let store = PostgresStore::open(url, &log.schema).map_err(|error| error.to_string())?;
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

fn run(command: Command, log: &LogOptions) -> Result<(), String> {
    let store = open_store(log)?;
    let store: &dyn EventStore = store.as_ref();
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Verify => commands::verify(store, &mut stdout),
        Command::Stats => commands::stats(store, &mut stdout),
        Command::Rebuild { projection, .. } => {
            // On PostgreSQL the nodes share their projections' tables: a new generation of
            // them, live at once. Elsewhere, a node's files.
            let into = match log.store.as_deref() {
                Some(url) if paycenter_store::postgres::is_postgres_url(url) => {
                    commands::RebuildInto::Shared(paycenter_projections::shared::SharedTables {
                        url: url.to_owned(),
                        schema: log.schema.clone(),
                        node_id: "paycenter-replay".to_owned(),
                    })
                }
                _ => commands::RebuildInto::Files(log.data_dir.join("projections")),
            };
            commands::rebuild(store, projection.as_deref(), &into, &mut stdout)
        }
        Command::Export {
            format,
            from,
            no_verify,
        } => {
            let format = match format {
                ExportFormatArg::Jsonl => ExportFormat::Jsonl,
                ExportFormatArg::Csv => ExportFormat::Csv,
            };
            let chain = commands::check_chain(store, !no_verify)?;
            // How the check went, on stderr (a JSON audit carries it in its document).
            eprintln!("{}", chain.sentence());
            commands::export(store, format, from, &mut stdout)
        }
        Command::Audit {
            at,
            merchant,
            format,
            no_verify,
        } => {
            let at = chrono::DateTime::parse_from_rfc3339(&at)
                .map_err(|_| {
                    format!("--at {at:?} is not an RFC 3339 time like 2026-11-22T12:00:00Z")
                })?
                .with_timezone(&chrono::Utc);
            let merchant = merchant
                .map(|text| MerchantId::parse(&text).map_err(|error| error.to_string()))
                .transpose()?;
            let format = match format {
                AuditFormatArg::Json => AuditFormat::Json,
                AuditFormatArg::Csv => AuditFormat::Csv,
            };
            let chain = commands::check_chain(store, !no_verify)?;
            if format == AuditFormat::Csv {
                // How the check went, on stderr (a JSON audit carries it in its document).
                eprintln!("{}", chain.sentence());
            }
            commands::audit(store, at, merchant.as_ref(), format, &chain, &mut stdout)
        }
    }
}

fn main() -> ExitCode {
    // Help exits 0 on stdout; a usage error exits 2 on stderr, naming what was wrong.
    let cli = Cli::parse();
    let name = cli.command.name();
    match run(cli.command, &cli.log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("paycenter-replay {name}: {message}");
            ExitCode::FAILURE
        }
    }
}
