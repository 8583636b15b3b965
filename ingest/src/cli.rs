//! The `firn` command line: argument parsing and the commands, each a thin call into the
//! library. Does I/O (prints to stdout/stderr).
//!
//! Exit codes: 0 success, 1 failure (a service, storage or Kafka error), 2 bad input
//! (usage, configuration, names, an operation the table refuses), 3 nothing to do (a
//! transform whose inputs have not changed; Airflow's `skip_on_exit_code=3` skips the task).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use firn_catalog::config::{AssignmentMode, PipelineConfig};
use firn_catalog::history;
use firn_catalog::{Catalog, CommitRequest, Operation, RollbackTarget, TableName};

use crate::IngestError;
use crate::demo::{DemoOptions, DemoReport};
use crate::generator::{GenerateOptions, GenerateTarget, GeneratorConfig, SchemaMode};
use crate::writer::IngestOptions;

/// Exit code for failures of services, storage or Kafka.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for bad input: usage, configuration, names, refused operations.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for a transform that had nothing to do.
pub const EXIT_NOTHING_TO_DO: i32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "firn",
    version,
    about = "Debezium CDC from Kafka into Iceberg bronze, silver and gold"
)]
pub struct Cli {
    /// Pipeline config (TOML). Default: $FIRN_CONFIG, else ./firn.toml if present, else built-in defaults.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the catalog schema, the bronze/silver/gold namespaces and the bronze tables.
    Init,
    /// List tables with their current snapshot and row count.
    Tables,
    /// List a table's snapshots (id, parent, time, operation, summary) and refs.
    Snapshots { table: String },
    /// Generate a deterministic multi-tenant Debezium source to a file or Kafka.
    Gen(GenArgs),
    /// Ingest the configured topics into bronze.
    Ingest(IngestArgs),
    /// Roll a table back to an earlier snapshot of its lineage.
    Rollback(RollbackArgs),
    /// Tag a snapshot (the current one by default).
    Tag {
        table: String,
        name: String,
        #[arg(long)]
        snapshot: Option<i64>,
    },
    /// Remove a tag (the snapshot it pointed at stays).
    Untag { table: String, name: String },
    /// Make any snapshot of the table current, also one outside the current lineage (e.g.
    /// to undo a rollback).
    SetCurrent {
        table: String,
        #[arg(long)]
        snapshot: i64,
    },
    /// Forget old snapshots (metadata only: data files are not deleted).
    Expire(ExpireArgs),
    /// List the configured gold models in the order `transform gold all` runs them.
    Models,
    /// Recompute silver tables from bronze, or gold models from silver.
    #[command(subcommand)]
    Transform(TransformCommand),
    /// Relay the relayed gold models to StarRocks by Stream Load (the hot path).
    Relay(RelayArgs),
    /// Run the whole pipeline on the embedded default (no services) and report.
    Demo {
        /// Directory that receives ./warehouse.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TransformCommand {
    /// silver.<table> from bronze.<table> (`all` for every configured source); incremental
    /// when bronze only grew since the previous silver snapshot's input.
    Silver {
        table: String,
        #[command(flatten)]
        args: TransformArgs,
    },
    /// gold.<model> from its SQL file (`all` for every configured model, in dependency order).
    Gold {
        model: String,
        #[command(flatten)]
        args: TransformArgs,
    },
    /// Silver for every configured source, then every gold model in dependency order.
    All {
        #[command(flatten)]
        args: TransformArgs,
    },
}

/// Options shared by the transform commands.
#[derive(Debug, Args)]
pub struct TransformArgs {
    /// Read this input snapshot instead of the current one. Silver: a bronze snapshot.
    /// Gold: pins the input table that has this snapshot (repeat for several inputs).
    #[arg(long)]
    pub as_of: Vec<i64>,
    /// Compute only this tenant: read and replace only its partitions.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Silver: recompute from all of bronze instead of incrementally, even when silver is
    /// up to date (gold always recomputes from its inputs).
    #[arg(long)]
    pub full: bool,
    /// Bytes that sorts, aggregates and joins may hold before they spill to disk.
    #[arg(long, default_value_t = firn_transforms::engine::DEFAULT_MEMORY_LIMIT)]
    pub memory_limit: usize,
    /// Directory for spill files (default: the OS temporary directory).
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// Parallel partitions of scans and plans (default: two per core).
    #[arg(long)]
    pub partitions: Option<usize>,
}

impl TransformArgs {
    fn engine(&self) -> Result<firn_transforms::EngineOptions, CommandError> {
        let minimum = firn_transforms::engine::MIN_MEMORY_LIMIT;
        if self.memory_limit < minimum {
            return Err(bad_input(format!(
                "--memory-limit {} is below the minimum of {minimum} bytes ({} MiB): a run \
                 needs room for a batch per partition of each spilling operator",
                self.memory_limit,
                minimum / (1024 * 1024)
            )));
        }
        let defaults = firn_transforms::EngineOptions::default();
        Ok(firn_transforms::EngineOptions {
            partitions: self.partitions.unwrap_or(defaults.partitions),
            memory_limit: self.memory_limit,
            spill_dir: self.spill_dir.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct GenArgs {
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Comma-separated tenant names.
    #[arg(long, value_delimiter = ',')]
    pub tenants: Option<Vec<String>>,
    /// Multiplies the number of customers, products and orders.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, value_enum, default_value = "mixed")]
    pub schemas: SchemasArg,
    /// Write JSON lines to this file.
    #[arg(long, conflicts_with = "brokers")]
    pub out: Option<PathBuf>,
    /// Produce to these Kafka brokers.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partitions of topics the generator creates.
    #[arg(long, default_value_t = 2)]
    pub partitions: i32,
    /// Write the expected final state (`expected/<table>.jsonl`, `counts.json`) here.
    #[arg(long)]
    pub expected: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemasArg {
    With,
    Without,
    Mixed,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Brokers (overrides kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Batch mode: read every partition of the source topics (without joining the consumer
    /// group), commit, and stop once all are read to their end. No admin endpoint.
    #[arg(long)]
    pub once: bool,
    /// Identifies this writer in snapshot summaries.
    #[arg(long, default_value = "firn-ingest")]
    pub writer_id: String,
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Brokers (overrides kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Stop once every partition is read to its end and every batch is acknowledged.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub table: String,
    #[arg(long, conflicts_with = "to_time", required_unless_present = "to_time")]
    pub to_snapshot: Option<i64>,
    /// RFC 3339 time: the newest ancestor committed at or before it becomes current.
    #[arg(long)]
    pub to_time: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    pub table: String,
    /// Expire snapshots committed before this: an RFC 3339 time, or an age such as `7d`,
    /// `36h` or `90m` (counted back from now).
    #[arg(long)]
    pub older_than: String,
    /// Always keep this many of the newest snapshots of `main` (refs keep theirs too).
    #[arg(long, default_value_t = 1)]
    pub retain_last: usize,
}

/// `--older-than`: an RFC 3339 time, or an age (`7d`, `36h`, `90m`, `30s`) before `now_ms`,
/// as milliseconds since the epoch. Pure.
pub fn older_than_ms(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    let age = firn_catalog::config::parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor an age like 7d or 36h"))?;
    let age_ms = i64::try_from(age.as_millis()).map_err(|_| format!("`{text}` is too long ago"))?;
    Ok(now_ms.saturating_sub(age_ms))
}

/// Why a command failed, with the exit code it maps to.
#[derive(Debug)]
pub struct CommandError {
    pub code: i32,
    pub message: String,
}

impl From<IngestError> for CommandError {
    fn from(err: IngestError) -> Self {
        let code = if err.is_bad_input() {
            EXIT_BAD_INPUT
        } else {
            EXIT_FAILURE
        };
        CommandError {
            code,
            message: err.to_string(),
        }
    }
}

impl From<crate::relay::RelayError> for CommandError {
    fn from(err: crate::relay::RelayError) -> Self {
        CommandError {
            code: if err.is_bad_input() {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILURE
            },
            message: err.to_string(),
        }
    }
}

impl From<firn_catalog::CatalogError> for CommandError {
    fn from(err: firn_catalog::CatalogError) -> Self {
        IngestError::from(err).into()
    }
}

fn bad_input(message: impl Into<String>) -> CommandError {
    CommandError {
        code: EXIT_BAD_INPUT,
        message: message.into(),
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<PipelineConfig, CommandError> {
    let path = path
        .cloned()
        .or_else(|| std::env::var_os("FIRN_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("firn.toml")).filter(|p| p.exists()));
    Ok(PipelineConfig::load(path.as_deref())?)
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Demo { dir, seed } => demo(dir, seed, cli.json).await,
        Command::Gen(args) => generate(args, cli.json).await,
        Command::Models => models(&load_config(cli.config.as_ref())?, cli.json).await,
        command => {
            let config = load_config(cli.config.as_ref())?;
            let catalog = Catalog::connect(&config).await?;
            match command {
                Command::Init => {
                    let report = catalog.init(&config).await?;
                    if cli.json {
                        print_json(&report);
                    } else {
                        for table in &report.created {
                            println!("created  {table}");
                        }
                        for table in &report.existing {
                            println!("exists   {table}");
                        }
                    }
                    Ok(())
                }
                Command::Tables => tables(&catalog, cli.json).await,
                Command::Snapshots { table } => snapshots(&catalog, &table, cli.json).await,
                Command::Ingest(args) => {
                    let brokers =
                        args.brokers
                            .or(config.kafka.brokers.clone())
                            .ok_or_else(|| {
                                bad_input("no brokers: set kafka.brokers or pass --brokers")
                            })?;
                    let options = IngestOptions {
                        brokers,
                        writer_id: args.writer_id,
                        stop_when_caught_up: args.once,
                    };
                    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    spawn_stop_on_signal(stop.clone());
                    let report = if args.once {
                        crate::writer::run_until(&catalog, &config, &options, &stop).await?
                    } else {
                        let mut registry = prometheus_client::registry::Registry::default();
                        let metrics = crate::metrics::IngestMetrics::register(&mut registry);
                        let health = crate::admin::Health::new();
                        let _admin = crate::admin::AdminServer::start(
                            &config.admin.listen,
                            std::sync::Arc::new(registry),
                            health.clone(),
                        )
                        .await?;
                        crate::writer::run_service(
                            &catalog, &config, &options, &stop, &metrics, &health,
                        )
                        .await?
                    };
                    if cli.json {
                        print_json(&report);
                    } else {
                        println!(
                            "consumed {} records, {} dead letters",
                            report.records_consumed, report.dead_letters
                        );
                    }
                    Ok(())
                }
                Command::Relay(args) => relay(&config, args, cli.json).await,
                Command::Rollback(args) => {
                    let name = TableName::parse(&args.table)?;
                    let target = match (args.to_snapshot, args.to_time) {
                        (Some(id), _) => RollbackTarget::SnapshotId(id),
                        (None, Some(time)) => {
                            let parsed = chrono::DateTime::parse_from_rfc3339(&time)
                                .map_err(|err| bad_input(format!("--to-time `{time}`: {err}")))?;
                            RollbackTarget::Timestamp {
                                ms: parsed.timestamp_millis(),
                            }
                        }
                        (None, None) => return Err(bad_input("give --to-snapshot or --to-time")),
                    };
                    let outcome = catalog
                        .commit(&name, CommitRequest::new(Operation::Rollback(target)))
                        .await?;
                    print_outcome(&name, &outcome, cli.json);
                    Ok(())
                }
                Command::Untag { table, name: tag } => {
                    let name = TableName::parse(&table)?;
                    let outcome = catalog
                        .commit(
                            &name,
                            CommitRequest::new(Operation::RemoveTag { name: tag }),
                        )
                        .await?;
                    print_outcome(&name, &outcome, cli.json);
                    Ok(())
                }
                Command::SetCurrent { table, snapshot } => {
                    let name = TableName::parse(&table)?;
                    let outcome = catalog
                        .commit(
                            &name,
                            CommitRequest::new(Operation::SetCurrentSnapshot {
                                snapshot_id: snapshot,
                            }),
                        )
                        .await?;
                    print_outcome(&name, &outcome, cli.json);
                    Ok(())
                }
                Command::Expire(args) => {
                    let name = TableName::parse(&args.table)?;
                    let older_than_ms =
                        older_than_ms(&args.older_than, chrono::Utc::now().timestamp_millis())
                            .map_err(|err| bad_input(format!("--older-than: {err}")))?;
                    let outcome = catalog
                        .commit(
                            &name,
                            CommitRequest::new(Operation::ExpireSnapshots {
                                older_than_ms,
                                retain_last: args.retain_last,
                            }),
                        )
                        .await?;
                    print_outcome(&name, &outcome, cli.json);
                    Ok(())
                }
                Command::Tag {
                    table,
                    name: tag,
                    snapshot,
                } => {
                    let name = TableName::parse(&table)?;
                    let outcome = catalog
                        .commit(
                            &name,
                            CommitRequest::new(Operation::CreateTag {
                                name: tag.clone(),
                                snapshot_id: snapshot,
                            }),
                        )
                        .await?;
                    print_outcome(&name, &outcome, cli.json);
                    Ok(())
                }
                Command::Transform(command) => {
                    transform(&catalog, &config, command, cli.json).await
                }
                Command::Demo { .. } | Command::Gen(_) | Command::Models => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// `firn relay`: serves metrics and health on `[admin] listen`, drains on SIGTERM.
async fn relay(config: &PipelineConfig, args: RelayArgs, json: bool) -> Result<(), CommandError> {
    let target = config
        .relay
        .clone()
        .ok_or_else(|| bad_input("no [relay] section: configure the StarRocks target"))?;
    let brokers = args
        .brokers
        .or(config.kafka.brokers.clone())
        .ok_or_else(|| bad_input("no brokers: set kafka.brokers or pass --brokers"))?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = crate::relay::RelayMetrics::register(&mut registry);
    let health = crate::admin::Health::new();
    let _admin = crate::admin::AdminServer::start(
        &config.admin.listen,
        std::sync::Arc::new(registry),
        health.clone(),
    )
    .await?;
    let options = crate::relay::RelayOptions {
        brokers,
        target,
        stop_when_caught_up: args.once,
        model_sql: Default::default(),
        metrics,
        health: Some(health),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    spawn_stop_on_signal(stop.clone());
    // A batch run and a statically assigned relay load at once; in consumer-group mode the
    // relays of one configuration elect the one that loads.
    let report = if args.once || config.kafka.assignment == AssignmentMode::Static {
        options.metrics.active.set(1);
        crate::relay::run(config, &options, &stop).await?
    } else {
        crate::relay::leader::run_elected(config, &options, &stop).await?
    };
    if json {
        print_json(&report);
    } else {
        for (table, t) in &report.tables {
            println!(
                "{table}: {} loads ({} resent), {} retries, {} label conflicts, {} dead letters",
                t.loads, t.resent, t.retries, t.label_conflicts, t.dead_letters
            );
        }
        println!(
            "consumed {} records ({} replayed to rebuild the state, {} skipped)",
            report.records_consumed, report.records_replayed, report.records_skipped
        );
    }
    Ok(())
}

/// Sets `stop` on SIGTERM or Ctrl-C, so ingest commits what it read before exiting.
fn spawn_stop_on_signal(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = terminate => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stop requested; committing what was read");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// Runs a transform command: silver, gold or both; reports each run (JSON with `--json`)
/// and maps "nothing committed" to exit code 3.
async fn transform(
    catalog: &Catalog,
    config: &PipelineConfig,
    command: TransformCommand,
    json: bool,
) -> Result<(), CommandError> {
    let mut runs = Vec::new();
    match command {
        TransformCommand::Silver { table, args } => {
            transform_silver(catalog, config, &table, &args, json, &mut runs).await?
        }
        TransformCommand::Gold { model, args } => {
            transform_gold(catalog, config, &model, &args, json, &mut runs).await?
        }
        TransformCommand::All { args } => {
            if !args.as_of.is_empty() {
                return Err(bad_input(
                    "--as-of pins one input snapshot: give a single table or model",
                ));
            }
            transform_silver(catalog, config, "all", &args, json, &mut runs).await?;
            transform_gold(catalog, config, "all", &args, json, &mut runs).await?;
        }
    }
    if json {
        let reports: Vec<&serde_json::Value> = runs.iter().map(|(_, report)| report).collect();
        print_json(&reports);
    }
    if runs.iter().any(|(committed, _)| *committed) {
        Ok(())
    } else {
        Err(CommandError {
            code: EXIT_NOTHING_TO_DO,
            message: "nothing to do: inputs unchanged".into(),
        })
    }
}

fn reads_json(reads: &[firn_transforms::InputRead]) -> serde_json::Value {
    reads
        .iter()
        .map(|read| {
            serde_json::json!({
                "table": read.table, "snapshot_id": read.snapshot_id,
                "part": read.part, "rows": read.rows,
            })
        })
        .collect()
}

async fn transform_silver(
    catalog: &Catalog,
    config: &PipelineConfig,
    table: &str,
    args: &TransformArgs,
    json: bool,
    runs: &mut Vec<(bool, serde_json::Value)>,
) -> Result<(), CommandError> {
    let sources: Vec<_> = config
        .sources
        .iter()
        .filter(|source| table == "all" || source.table == table)
        .collect();
    if sources.is_empty() {
        return Err(bad_input(format!("no configured source table `{table}`")));
    }
    let as_of = match args.as_of.as_slice() {
        [] => None,
        [id] if sources.len() == 1 => Some(*id),
        _ => {
            return Err(bad_input(
                "--as-of names one bronze snapshot: give a single table and one --as-of",
            ));
        }
    };
    for source in sources {
        let keys = source.primary_key.clone().ok_or_else(|| {
            bad_input(format!(
                "source `{}` has no primary-key, which silver needs",
                source.table
            ))
        })?;
        let mut options = firn_transforms::SilverOptions::new(keys);
        options.as_of = as_of;
        options.target_file_size = config.commit.target_file_size;
        options.full = args.full;
        options.tenant = args.tenant.clone();
        options.engine = args.engine()?;
        if !json {
            eprintln!("==> silver.{}", source.table);
        }
        let report = firn_transforms::run_silver(catalog, &source.table, options)
            .await
            .map_err(IngestError::from)?;
        let mode = report.mode.map(|mode| mode.name());
        if !json {
            let input = report
                .input_snapshot_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into());
            let read: u64 = report.reads.iter().map(|r| r.rows).sum();
            eprintln!(
                "{} from {} snapshot {input}: {:?} ({}{}), read {read} rows, wrote {} rows",
                report.table,
                report.input_table,
                report.status,
                mode.unwrap_or("-"),
                report
                    .reason
                    .as_ref()
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_default(),
                report.rows
            );
        }
        let base = match report.mode {
            Some(firn_transforms::SilverMode::Incremental { base }) => Some(base),
            _ => None,
        };
        let mut inputs = serde_json::Map::new();
        if let Some(id) = report.input_snapshot_id {
            inputs.insert(report.input_table.clone(), id.into());
        }
        runs.push((
            report.status.committed(),
            serde_json::json!({
                "kind": "silver", "table": report.table,
                "status": format!("{:?}", report.status), "mode": mode,
                "input_snapshots": inputs, "base_input_snapshot": base,
                "tenants": report.tenants, "read": reads_json(&report.reads),
                "snapshot_id": report.snapshot_id, "rows": report.rows,
                "data_files": report.data_files, "reason": report.reason,
                "spilled": { "count": report.spilled.count, "bytes": report.spilled.bytes },
            }),
        ));
    }
    Ok(())
}

async fn transform_gold(
    catalog: &Catalog,
    config: &PipelineConfig,
    model: &str,
    args: &TransformArgs,
    json: bool,
    runs: &mut Vec<(bool, serde_json::Value)>,
) -> Result<(), CommandError> {
    let models = firn_transforms::load_models(config)
        .await
        .map_err(IngestError::from)?;
    let ordered = firn_transforms::run_order(&models).map_err(IngestError::from)?;
    let selected: Vec<_> = ordered
        .into_iter()
        .filter(|m| model == "all" || m.name == model)
        .collect();
    if selected.is_empty() {
        return Err(bad_input(format!("no configured gold model `{model}`")));
    }
    if !args.as_of.is_empty() && selected.len() > 1 {
        return Err(bad_input(
            "--as-of pins input snapshots: give a single model",
        ));
    }
    let options = firn_transforms::GoldOptions {
        target_file_size: config.commit.target_file_size,
        as_of: args.as_of.clone(),
        tenant: args.tenant.clone(),
        engine: args.engine()?,
    };
    for model in selected {
        if !json {
            eprintln!("==> gold.{}", model.name);
        }
        let report = firn_transforms::run_gold(catalog, model, &options)
            .await
            .map_err(IngestError::from)?;
        if !json {
            let read: u64 = report.reads.iter().map(|r| r.rows).sum();
            eprintln!(
                "{} from {:?}: {:?}, read {read} rows, wrote {} rows",
                report.table, report.input_snapshots, report.status, report.rows
            );
        }
        runs.push((
            report.status.committed(),
            serde_json::json!({
                "kind": "gold", "table": report.table,
                "status": format!("{:?}", report.status),
                "input_snapshots": report.input_snapshots,
                "missing_input": report.missing_input, "tenants": report.tenants,
                "read": reads_json(&report.reads), "snapshot_id": report.snapshot_id,
                "rows": report.rows, "data_files": report.data_files,
            }),
        ));
    }
    Ok(())
}

/// `firn models`: the configured gold models in run order (reads their SQL, no catalog).
async fn models(config: &PipelineConfig, json: bool) -> Result<(), CommandError> {
    #[derive(serde::Serialize)]
    struct Model<'a> {
        name: &'a str,
        key: &'a [String],
        partition_by: &'a [String],
        relay: bool,
        inputs: &'a [String],
        sql: String,
    }
    let loaded = firn_transforms::gold_run::load_models(config)
        .await
        .map_err(IngestError::from)?;
    let ordered = firn_transforms::run_order(&loaded).map_err(IngestError::from)?;
    let rows: Vec<Model> = ordered
        .iter()
        .map(|model| {
            let configured = config
                .gold
                .iter()
                .find(|c| c.name == model.name)
                .expect("loaded from the configuration");
            Model {
                name: &model.name,
                key: &model.key,
                partition_by: &model.partition_by,
                relay: model.relay,
                inputs: &model.inputs,
                sql: firn_transforms::gold::model_sql_path(&config.base_dir, configured)
                    .display()
                    .to_string(),
            }
        })
        .collect();
    if json {
        print_json(&rows);
    } else {
        for model in &rows {
            println!(
                "gold.{}  key ({})  partition by ({})  reads {}{}  sql {}",
                model.name,
                model.key.join(", "),
                model.partition_by.join(", "),
                model.inputs.join(", "),
                if model.relay { "  relayed" } else { "" },
                model.sql
            );
        }
    }
    Ok(())
}

fn print_outcome(name: &TableName, outcome: &firn_catalog::CommitOutcome, json: bool) {
    let status = format!("{:?}", outcome.status);
    if json {
        print_json(&serde_json::json!({
            "table": name.to_string(),
            "status": status,
            "current_snapshot_id": outcome.current_snapshot_id,
            "attempts": outcome.attempts,
        }));
    } else {
        let current = outcome
            .current_snapshot_id
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        println!("{name}: {status}; current snapshot {current}");
    }
}

async fn tables(catalog: &Catalog, json: bool) -> Result<(), CommandError> {
    #[derive(serde::Serialize)]
    struct Row {
        table: String,
        snapshot_id: Option<i64>,
        rows: Option<u64>,
        snapshots: usize,
    }
    let mut rows = Vec::new();
    for name in catalog.list_tables().await? {
        let table = catalog.load_table(&name).await?;
        let metadata = table.metadata_ref();
        let current = metadata.current_snapshot();
        rows.push(Row {
            table: name.to_string(),
            snapshot_id: current.map(|s| s.snapshot_id()),
            rows: current
                .and_then(|s| s.summary().additional_properties.get("total-records"))
                .and_then(|v| v.parse().ok()),
            snapshots: metadata.snapshots().count(),
        });
    }
    if json {
        print_json(&rows);
    } else {
        println!(
            "{:<32} {:>20} {:>10} {:>9}",
            "table", "snapshot", "rows", "snapshots"
        );
        for row in rows {
            let snapshot = row
                .snapshot_id
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            let count = row
                .rows
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<32} {:>20} {:>10} {:>9}",
                row.table, snapshot, count, row.snapshots
            );
        }
    }
    Ok(())
}

async fn snapshots(catalog: &Catalog, table: &str, json: bool) -> Result<(), CommandError> {
    let name = TableName::parse(table)?;
    let loaded = catalog.load_table(&name).await?;
    let metadata = loaded.metadata_ref();
    let snapshots = history::snapshots(&metadata);
    let refs = history::refs(&metadata);
    if json {
        print_json(&serde_json::json!({
            "table": name.to_string(),
            "current_snapshot_id": metadata.current_snapshot_id(),
            "snapshots": snapshots,
            "refs": refs,
        }));
        return Ok(());
    }
    for snapshot in snapshots {
        let time = chrono::DateTime::from_timestamp_millis(snapshot.timestamp_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let marker = if Some(snapshot.snapshot_id) == metadata.current_snapshot_id() {
            "*"
        } else {
            " "
        };
        let parent = snapshot
            .parent_id
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{marker} {:>20} parent {:>20} {time} {:<9}",
            snapshot.snapshot_id, parent, snapshot.operation
        );
        for (key, value) in &snapshot.summary {
            if key.starts_with("firn.") || key == "added-records" || key == "total-records" {
                println!("      {key} = {value}");
            }
        }
    }
    for reference in refs {
        println!(
            "{} {} -> {}",
            reference.kind, reference.name, reference.snapshot_id
        );
    }
    Ok(())
}

async fn generate(args: GenArgs, json: bool) -> Result<(), CommandError> {
    let mut config = GeneratorConfig {
        seed: args.seed,
        ..GeneratorConfig::default()
    };
    if let Some(tenants) = args.tenants {
        config.tenants = tenants;
    }
    config.schemas = match args.schemas {
        SchemasArg::With => SchemaMode::With,
        SchemasArg::Without => SchemaMode::Without,
        SchemasArg::Mixed => SchemaMode::Mixed,
    };
    let config = config.scaled(args.scale);
    let target = match (args.out, args.brokers) {
        (Some(path), None) => GenerateTarget::File(path),
        (None, Some(brokers)) => GenerateTarget::Kafka {
            brokers,
            producer_config: Default::default(),
            partitions: args.partitions,
        },
        _ => {
            return Err(bad_input(
                "give exactly one of --out FILE or --brokers HOST:PORT",
            ));
        }
    };
    let report = crate::generator::run(GenerateOptions {
        config,
        target,
        expected_dir: args.expected,
    })
    .await
    .map_err(IngestError::from)?;
    if json {
        print_json(&report);
    } else {
        println!(
            "{} messages on {} topics: {} change events, {} tombstones, {} restart duplicates",
            report.sink.messages,
            report.topics.len(),
            report.totals.change_events,
            report.totals.tombstones,
            report.totals.duplicates
        );
    }
    Ok(())
}

async fn demo(dir: PathBuf, seed: u64, json: bool) -> Result<(), CommandError> {
    let generator = GeneratorConfig {
        seed,
        ..GeneratorConfig::default()
    };
    let options = DemoOptions {
        dir,
        generator,
        partitions: 2,
    };
    let mut progress = |line: &str| eprintln!("==> {line}");
    let report = crate::demo::run(&options, &mut progress).await?;
    if json {
        print_json(&report);
    } else {
        print_demo(&report);
    }
    if report.matches_expected() {
        Ok(())
    } else {
        Err(CommandError {
            code: EXIT_FAILURE,
            message: "row counts differ from the generator's expectation".into(),
        })
    }
}

fn print_demo(report: &DemoReport) {
    println!();
    println!(
        "{:<28} {:>20} {:>9} {:>8} {:>9}",
        "table", "current snapshot", "snapshots", "rows", "expected"
    );
    for table in &report.tables {
        let snapshot = table
            .snapshot_id
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let expected = table
            .expected_rows
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<28} {:>20} {:>9} {:>8} {:>9}",
            table.table, snapshot, table.snapshots, table.rows, expected
        );
    }
    if let Some(sample) = &report.sample_gold {
        println!();
        println!("gold.order_facts (first rows):");
        println!("{sample}");
    }
    if let Some(hot) = &report.hot {
        println!();
        println!(
            "hot path: {} ({} rows, {} Stream Loads) vs gold.order_facts ({} rows): {}",
            hot.table,
            hot.hot_rows,
            hot.loads,
            hot.gold_rows,
            if hot.equal { "equal" } else { "DIFFERENT" }
        );
        println!("{}", hot.sample);
    }
    println!();
    println!("warehouse: {}", report.warehouse);
    println!("catalog:   {}", report.catalog);
    println!("read it with pyiceberg:");
    println!(
        "  from pyiceberg.catalog.sql import SqlCatalog\n  cat = SqlCatalog(\"firn\", uri=\"sqlite:///{}/catalog.db\", warehouse=\"file://{}\")\n  cat.load_table(\"bronze.orders\").scan().to_arrow().num_rows",
        report.warehouse, report.warehouse
    );
}

#[cfg(test)]
mod tests {
    use super::older_than_ms;

    #[test]
    fn older_than_takes_a_time_or_an_age() {
        let now = 1_700_000_000_000;
        assert_eq!(
            older_than_ms("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000)
        );
        assert_eq!(older_than_ms("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(older_than_ms("36h", now), Ok(now - 36 * 3_600_000));
        assert_eq!(older_than_ms("90m", now), Ok(now - 90 * 60_000));
        for bad in ["last week", "7 days", "-1d", ""] {
            let err = older_than_ms(bad, now).unwrap_err();
            assert!(
                err.contains("neither an RFC 3339 time nor an age"),
                "{bad}: {err}"
            );
        }
    }
}
