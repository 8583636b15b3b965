//! The commit path against real catalogs (SQLite and Postgres), each result checked by
//! reading the table back with pyiceberg 0.12 in a separate process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use firn_catalog::history::{self, KAFKA_OFFSETS, KafkaOffsets, WRITER_ID};
use firn_catalog::pointer::{PointerStore, SqlPointerStore, SwapResult};
use firn_catalog::{
    Catalog, CatalogError, CommitRequest, CommitStatus, Operation, OverwriteScope, RollbackTarget,
    SchemaChange,
};
use firn_tests::{Lake, orders_spec, pyiceberg_count, write_orders};
use iceberg::spec::{Literal, PrimitiveType, Struct, Type};

async fn append(
    catalog: &Catalog,
    lake_table: &firn_catalog::TableName,
    rows: &[(i64, &str, i32, i128)],
) -> i64 {
    let table = catalog.load_table(lake_table).await.unwrap();
    let files = write_orders(&table, rows).await;
    let outcome = catalog
        .commit(lake_table, CommitRequest::new(Operation::Append { files }))
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::Committed);
    outcome.snapshot_id.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_records_summary_properties_that_pyiceberg_reads() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    let (table, created) = lake.catalog.create_table(&spec).await.unwrap();
    assert!(created);
    let files = write_orders(&table, &[(1, "acme", 2, 1250), (2, "globex", 1, 999)]).await;
    let mut offsets = KafkaOffsets::default();
    offsets.set("cdc.acme.shop.orders", 0, 42);
    let outcome = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Append { files })
                .with_commit_id("commit-1")
                .with_property(WRITER_ID, "ingest-7")
                .with_property(KAFKA_OFFSETS, offsets.to_json()),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::Committed);

    // An offsets-only commit (no files) is a snapshot of its own.
    offsets.set("cdc.acme.shop.orders", 0, 50);
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Append { files: vec![] })
                .with_property(KAFKA_OFFSETS, offsets.to_json()),
        )
        .await
        .unwrap();

    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let (_, latest) = history::latest_kafka_offsets(&table.metadata_ref()).unwrap();
    assert_eq!(latest.get("cdc.acme.shop.orders", 0), Some(50));

    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    let snapshots = described["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 2);
    let first = &snapshots[0]["summary"];
    assert_eq!(first["operation"], "append");
    assert_eq!(first["firn.commit-id"], "commit-1");
    assert_eq!(first["firn.writer-id"], "ingest-7");
    assert_eq!(
        first["firn.kafka-offsets"],
        r#"{"cdc.acme.shop.orders":{"0":42}}"#
    );
    assert_eq!(first["total-records"], "2");
    assert_eq!(
        snapshots[1]["parent_snapshot_id"],
        snapshots[0]["snapshot_id"]
    );
    let scan = lake.pyiceberg(&["scan", "silver.orders", "--rows"]);
    assert_eq!(scan["row_count"], 2);
    assert_eq!(scan["rows"][0]["amount"], "12.50");
    assert_eq!(scan["rows"][1]["tenant"], "globex");

    // Re-running the same logical commit is recognised, not repeated.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let files = write_orders(&table, &[(1, "acme", 2, 1250)]).await;
    let again = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Append { files }).with_commit_id("commit-1"),
        )
        .await
        .unwrap();
    assert_eq!(again.status, CommitStatus::AlreadyCommitted);
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_replaces_all_files_or_only_given_partitions() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    append(
        &lake.catalog,
        &spec.name,
        &[
            (1, "acme", 1, 100),
            (2, "acme", 1, 200),
            (3, "globex", 1, 300),
        ],
    )
    .await;
    append(&lake.catalog, &spec.name, &[(4, "initech", 1, 400)]).await;

    // Replace the acme partition only.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let files = write_orders(&table, &[(10, "acme", 5, 1000)]).await;
    let acme = Struct::from_iter([Some(Literal::string("acme"))]);
    let outcome = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Overwrite {
                files,
                scope: OverwriteScope::Partitions(vec![acme]),
            }),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::Committed);
    let scan = lake.pyiceberg(&["scan", "silver.orders", "--rows", "--columns", "id"]);
    let ids: Vec<i64> = scan["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4, 10]);
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    let last = described["snapshots"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["summary"]["operation"], "overwrite");
    assert_eq!(last["summary"]["deleted-records"], "2");
    assert_eq!(last["summary"]["total-records"], "3");

    // Dynamic replace: the partitions the new files write to.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let files = write_orders(&table, &[(30, "globex", 1, 1)]).await;
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Overwrite {
                files,
                scope: OverwriteScope::AddedPartitions,
            }),
        )
        .await
        .unwrap();
    let scan = lake.pyiceberg(&["scan", "silver.orders", "--rows", "--columns", "id"]);
    let ids: Vec<i64> = scan["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 10, 30]);

    // Full overwrite.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let files = write_orders(&table, &[(99, "globex", 9, 9900)]).await;
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Overwrite {
                files,
                scope: OverwriteScope::All,
            }),
        )
        .await
        .unwrap();
    let scan = lake.pyiceberg(&["scan", "silver.orders", "--rows"]);
    assert_eq!(scan["row_count"], 1);
    assert_eq!(scan["rows"][0]["id"], 99);
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    let last = described["snapshots"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["summary"]["total-records"], "1");
    assert_eq!(last["summary"]["total-data-files"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_by_id_and_time_and_tags() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    let s1 = append(&lake.catalog, &spec.name, &[(1, "acme", 1, 100)]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let s2 = append(&lake.catalog, &spec.name, &[(2, "acme", 1, 100)]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let s3 = append(&lake.catalog, &spec.name, &[(3, "acme", 1, 100)]).await;

    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::CreateTag {
                name: "before_s2".into(),
                snapshot_id: Some(s1),
            }),
        )
        .await
        .unwrap();
    // Creating the same tag again is a no-op; pointing it elsewhere is refused.
    let same = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::CreateTag {
                name: "before_s2".into(),
                snapshot_id: Some(s1),
            }),
        )
        .await
        .unwrap();
    assert_eq!(same.status, CommitStatus::NothingToDo);
    let moved = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::CreateTag {
                name: "before_s2".into(),
                snapshot_id: Some(s2),
            }),
        )
        .await
        .unwrap_err();
    assert!(moved.to_string().contains("already exists"), "{moved}");

    // Roll back to the time of s2.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let s2_time = table.metadata().snapshot_by_id(s2).unwrap().timestamp_ms();
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Rollback(RollbackTarget::Timestamp {
                ms: s2_time,
            })),
        )
        .await
        .unwrap();
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    assert_eq!(described["current_snapshot_id"], s2);
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 2);

    // Roll back to s1 by id; the tag reads s1 too.
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Rollback(RollbackTarget::SnapshotId(s1))),
        )
        .await
        .unwrap();
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 1);
    assert_eq!(
        pyiceberg_count(&lake, "silver.orders", &["--ref", "before_s2"]),
        1
    );
    assert_eq!(
        pyiceberg_count(&lake, "silver.orders", &["--snapshot-id", &s3.to_string()]),
        3
    );
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    assert_eq!(described["refs"]["before_s2"]["type"], "tag");
    assert_eq!(described["refs"]["before_s2"]["snapshot_id"], s1);

    // s3 is no longer an ancestor: rollback refuses it, set-current accepts it.
    let refused = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Rollback(RollbackTarget::SnapshotId(s3))),
        )
        .await
        .unwrap_err();
    assert!(refused.is_bad_input(), "{refused}");

    // An append after a rollback builds on the restored snapshot.
    let s4 = append(&lake.catalog, &spec.name, &[(4, "acme", 1, 100)]).await;
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    assert_eq!(
        table
            .metadata()
            .snapshot_by_id(s4)
            .unwrap()
            .parent_snapshot_id(),
        Some(s1)
    );
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 2);

    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::SetCurrentSnapshot { snapshot_id: s3 }),
        )
        .await
        .unwrap();
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 3);

    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::RemoveTag {
                name: "before_s2".into(),
            }),
        )
        .await
        .unwrap();
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    assert!(described["refs"].get("before_s2").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_evolution_adds_columns_and_widens_types() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    append(&lake.catalog, &spec.name, &[(1, "acme", 7, 1234)]).await;

    let changes = vec![
        SchemaChange::AddColumn {
            name: "note".into(),
            field_type: Type::Primitive(PrimitiveType::String),
            doc: Some("free text".into()),
        },
        SchemaChange::WidenColumn {
            name: "qty".into(),
            to: PrimitiveType::Long,
        },
        SchemaChange::WidenColumn {
            name: "amount".into(),
            to: PrimitiveType::Decimal {
                precision: 18,
                scale: 2,
            },
        },
    ];
    let outcome = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::EvolveSchema {
                changes: changes.clone(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::Committed);
    let again = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::EvolveSchema { changes }),
        )
        .await
        .unwrap();
    assert_eq!(again.status, CommitStatus::NothingToDo);

    append(
        &lake.catalog,
        &spec.name,
        &[(2, "acme", 3_000_000, 99_999_999_999)],
    )
    .await;

    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    let fields = described["schema"]["fields"].as_array().unwrap();
    let find = |name: &str| fields.iter().find(|f| f["name"] == name).unwrap().clone();
    assert_eq!(find("qty")["type"], "long");
    assert_eq!(find("qty")["id"], 3);
    assert_eq!(find("amount")["type"], "decimal(18, 2)");
    assert_eq!(find("note")["type"], "string");
    assert_eq!(find("note")["required"], false);
    let scan = lake.pyiceberg(&["scan", "silver.orders", "--rows"]);
    assert_eq!(scan["row_count"], 2);
    assert_eq!(scan["rows"][0]["qty"], 7);
    assert_eq!(scan["rows"][0]["note"], serde_json::Value::Null);
    assert_eq!(scan["rows"][1]["amount"], "999999999.99");

    let narrowing = lake
        .catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::EvolveSchema {
                changes: vec![SchemaChange::WidenColumn {
                    name: "note".into(),
                    to: PrimitiveType::Int,
                }],
            }),
        )
        .await
        .unwrap_err();
    assert!(narrowing.is_bad_input());
    assert!(
        narrowing.to_string().contains("cannot be widened"),
        "{narrowing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_snapshots_keeps_recent_and_tagged() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    let mut ids = Vec::new();
    for id in 0..5 {
        ids.push(append(&lake.catalog, &spec.name, &[(id, "acme", 1, 1)]).await);
    }
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::CreateTag {
                name: "keep".into(),
                snapshot_id: Some(ids[0]),
            }),
        )
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis() + 1;
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::ExpireSnapshots {
                older_than_ms: now,
                retain_last: 2,
            }),
        )
        .await
        .unwrap();
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    let kept: Vec<i64> = described["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![ids[0], ids[3], ids[4]]);
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 5);
}

async fn race_two_writers(lake: &Lake) {
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    let commits_per_writer = 12;
    let mut tasks = Vec::new();
    for writer in 0..2i64 {
        let catalog = lake.second_connection().await;
        let name = spec.name.clone();
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0;
            for n in 0..commits_per_writer {
                let id = writer * 1000 + n;
                let table = catalog.load_table(&name).await.unwrap();
                let files = write_orders(&table, &[(id, "acme", 1, 1)]).await;
                let outcome = catalog
                    .commit(
                        &name,
                        CommitRequest::new(Operation::Append { files })
                            .with_property(WRITER_ID, format!("w{writer}")),
                    )
                    .await
                    .unwrap();
                attempts += outcome.attempts;
            }
            attempts
        }));
    }
    let mut total_attempts = 0;
    for task in tasks {
        total_attempts += task.await.unwrap();
    }
    let expected = 2 * commits_per_writer as u64;
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let lineage = history::main_lineage(&table.metadata_ref());
    assert_eq!(
        lineage.len() as u64,
        expected,
        "every commit is on main, none lost"
    );
    assert_eq!(pyiceberg_count(lake, "silver.orders", &[]), expected);
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    assert_eq!(
        described["snapshots"].as_array().unwrap().len() as u64,
        expected
    );
    eprintln!("{expected} commits took {total_attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing_on_sqlite() {
    race_two_writers(&Lake::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing_on_postgres() {
    let lake = Lake::postgres().await;
    assert!(lake.is_postgres());
    race_two_writers(&lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_rejects_a_stale_commit() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    let mut offsets = KafkaOffsets::default();
    offsets.set("t", 0, 10);
    lake.catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Append { files: vec![] })
                .with_property(KAFKA_OFFSETS, offsets.to_json()),
        )
        .await
        .unwrap();

    // Writer A resumes from offset 10 and prepares a batch.
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let resumed_from = history::latest_kafka_offsets(&table.metadata_ref())
        .unwrap()
        .1;
    let files = write_orders(&table, &[(1, "acme", 1, 1)]).await;

    // Writer B (a newer owner of the partition) commits offsets 10..20 first.
    let other = lake.second_connection().await;
    let mut newer = KafkaOffsets::default();
    newer.set("t", 0, 20);
    let table_b = other.load_table(&spec.name).await.unwrap();
    let files_b = write_orders(&table_b, &[(2, "acme", 1, 1)]).await;
    other
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Append { files: files_b })
                .with_property(KAFKA_OFFSETS, newer.to_json()),
        )
        .await
        .unwrap();

    let mut a_offsets = KafkaOffsets::default();
    a_offsets.set("t", 0, 20);
    let request = CommitRequest::new(Operation::Append { files })
        .with_property(KAFKA_OFFSETS, a_offsets.to_json())
        .with_validator(move |table| {
            let current = history::latest_kafka_offsets(&table.metadata_ref())
                .map(|(_, o)| o)
                .unwrap_or_default();
            if current == resumed_from {
                Ok(())
            } else {
                Err(format!(
                    "offsets moved from {} to {}",
                    resumed_from.to_json(),
                    current.to_json()
                ))
            }
        });
    let err = lake.catalog.commit(&spec.name, request).await.unwrap_err();
    assert!(matches!(err, CatalogError::Rejected { .. }), "{err}");
    assert!(!err.is_retryable());
    // Only B's row is in the table.
    let scan = lake.pyiceberg(&["scan", "silver.orders", "--rows", "--columns", "id"]);
    assert_eq!(scan["row_count"], 1);
    assert_eq!(scan["rows"][0]["id"], 2);
}

/// Wraps the SQL store: performs the swap, then reports an error as if the
/// acknowledgement was lost on the way back (once).
#[derive(Debug)]
struct LostAcknowledgement {
    inner: SqlPointerStore,
    armed: AtomicBool,
    apply_before_failing: bool,
}

#[async_trait]
impl PointerStore for LostAcknowledgement {
    async fn ensure_schema(&self) -> firn_catalog::Result<()> {
        self.inner.ensure_schema().await
    }
    async fn ensure_namespace(&self, namespace: &str) -> firn_catalog::Result<()> {
        self.inner.ensure_namespace(namespace).await
    }
    async fn list_namespaces(&self) -> firn_catalog::Result<Vec<String>> {
        self.inner.list_namespaces().await
    }
    async fn list_tables(&self, namespace: &str) -> firn_catalog::Result<Vec<String>> {
        self.inner.list_tables(namespace).await
    }
    async fn load_pointer(
        &self,
        namespace: &str,
        table: &str,
    ) -> firn_catalog::Result<Option<String>> {
        self.inner.load_pointer(namespace, table).await
    }
    async fn insert_pointer(
        &self,
        namespace: &str,
        table: &str,
        location: &str,
    ) -> firn_catalog::Result<bool> {
        self.inner.insert_pointer(namespace, table, location).await
    }
    async fn swap_pointer(
        &self,
        namespace: &str,
        table: &str,
        expected: &str,
        new: &str,
    ) -> firn_catalog::Result<SwapResult> {
        if self.armed.swap(false, Ordering::SeqCst) {
            if self.apply_before_failing {
                self.inner
                    .swap_pointer(namespace, table, expected, new)
                    .await?;
            }
            return Err(CatalogError::Database {
                operation: "swap table pointer",
                source: sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                )),
            });
        }
        self.inner
            .swap_pointer(namespace, table, expected, new)
            .await
    }
    async fn delete_pointer(&self, namespace: &str, table: &str) -> firn_catalog::Result<bool> {
        self.inner.delete_pointer(namespace, table).await
    }
}

async fn faulty_catalog(
    lake: &Lake,
    apply_before_failing: bool,
) -> (Catalog, Arc<LostAcknowledgement>) {
    let database = lake.config.catalog_database().unwrap();
    let inner = SqlPointerStore::connect(&database, None, "firn", 2)
        .await
        .unwrap();
    let store = Arc::new(LostAcknowledgement {
        inner,
        armed: AtomicBool::new(true),
        apply_before_failing,
    });
    let catalog = Catalog::from_parts(
        store.clone(),
        lake.catalog.file_io().clone(),
        lake.catalog.warehouse().clone(),
    );
    (catalog, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_is_resolved_from_history() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    append(&lake.catalog, &spec.name, &[(1, "acme", 1, 1)]).await;

    // The swap lands but its answer is lost: found in the history, not committed twice.
    let (catalog, store) = faulty_catalog(&lake, true).await;
    let table = catalog.load_table(&spec.name).await.unwrap();
    let files = write_orders(&table, &[(2, "acme", 1, 1)]).await;
    let outcome = catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Append { files }).with_commit_id("lost-ack"),
        )
        .await
        .unwrap();
    assert!(!store.armed.load(Ordering::SeqCst), "the fault fired");
    assert_eq!(outcome.status, CommitStatus::CommittedResolvedFromHistory);
    assert_eq!(outcome.attempts, 1);
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    assert!(history::find_commit(table.metadata(), "lost-ack").is_some());
    assert_eq!(table.metadata().snapshots().count(), 2);
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 2);

    // The swap fails before it lands: the history shows that, and the commit is retried.
    let (catalog, _store) = faulty_catalog(&lake, false).await;
    let table = catalog.load_table(&spec.name).await.unwrap();
    let files = write_orders(&table, &[(3, "acme", 1, 1)]).await;
    let outcome = catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::Append { files }).with_commit_id("failed-swap"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::Committed);
    assert_eq!(outcome.attempts, 2);
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    assert_eq!(table.metadata().snapshots().count(), 3);
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 3);

    // A metadata-only change (a tag) whose answer is lost resolves from the metadata log.
    let (catalog, _store) = faulty_catalog(&lake, true).await;
    let outcome = catalog
        .commit(
            &spec.name,
            CommitRequest::new(Operation::CreateTag {
                name: "t1".into(),
                snapshot_id: None,
            }),
        )
        .await
        .unwrap();
    assert_eq!(outcome.status, CommitStatus::CommittedResolvedFromHistory);
    let described = lake.pyiceberg(&["describe", "silver.orders"]);
    assert_eq!(described["refs"]["t1"]["type"], "tag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_catalog_and_bad_names_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "FIRN_CATALOG__URI".to_string(),
        "postgres://firn:s3cret@127.0.0.1:1/firn".to_string(),
    )];
    let config = firn_catalog::PipelineConfig::from_toml("", env, dir.path()).unwrap();
    let err = Catalog::connect(&config).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(
            "cannot connect to the catalog database postgres://firn:<redacted>@127.0.0.1:1/firn"
        ),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    assert!(err.is_retryable() || !err.is_bad_input());

    let err = firn_catalog::TableName::parse("bronze.Orders;drop")
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid table name"), "{err}");
    let lake = Lake::sqlite().await;
    let missing = firn_catalog::TableName::parse("gold.nothing").unwrap();
    let err = lake.catalog.load_table(&missing).await.unwrap_err();
    assert_eq!(err.to_string(), "table `gold.nothing` does not exist");
}

/// The table commands of the `firn` binary: tag, rollback, set-current, untag and expire
/// commit through the commit path and print the outcome as JSON; bad arguments exit 2 with
/// the argument named; `models` lists the gold models in run order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_commands_of_the_cli_commit_and_report() {
    let lake = Lake::sqlite().await;
    let spec = orders_spec("orders");
    lake.catalog.create_table(&spec).await.unwrap();
    let s1 = append(&lake.catalog, &spec.name, &[(1, "acme", 1, 100)]).await;
    let s2 = append(&lake.catalog, &spec.name, &[(2, "acme", 1, 100)]).await;
    let s3 = append(&lake.catalog, &spec.name, &[(3, "acme", 1, 100)]).await;
    let table = spec.name.to_string();
    // The lake's own configuration: every default, relative to its directory.
    let config = lake.dir.path().join("firn.toml");
    std::fs::write(&config, "").unwrap();
    let firn = |args: &[&str]| firn_tests::run_firn_json(&config, args);
    let current = |report: &serde_json::Value| report["current_snapshot_id"].as_i64();

    let (code, report, err) = firn(&["tag", &table, "keep", "--snapshot", &s2.to_string()]);
    assert_eq!(
        (code, report["status"].as_str()),
        (Some(0), Some("Committed")),
        "{report} {err}"
    );
    let (code, report, err) = firn(&["rollback", &table, "--to-snapshot", &s1.to_string()]);
    assert_eq!(
        (code, current(&report)),
        (Some(0), Some(s1)),
        "{report} {err}"
    );
    assert_eq!(pyiceberg_count(&lake, &table, &[]), 1);
    // s3 is no longer an ancestor of the current snapshot: only set-current reaches it.
    let (code, _, err) = firn(&["rollback", &table, "--to-snapshot", &s3.to_string()]);
    assert_eq!(code, Some(2), "{err}");
    let (code, report, err) = firn(&["set-current", &table, "--snapshot", &s3.to_string()]);
    assert_eq!(
        (code, current(&report)),
        (Some(0), Some(s3)),
        "{report} {err}"
    );
    assert_eq!(pyiceberg_count(&lake, &table, &[]), 3);
    let (code, _, err) = firn(&["set-current", &table, "--snapshot", "12345"]);
    assert_eq!(code, Some(2), "an unknown snapshot is bad input: {err}");

    // The tag keeps s2 through an expiry; once removed, only the newest snapshot stays.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let expire = [
        "expire",
        &table,
        "--older-than",
        &future,
        "--retain-last",
        "1",
    ];
    let (code, report, err) = firn(&expire);
    assert_eq!(code, Some(0), "{report} {err}");
    let kept = |lake: &Lake| -> Vec<i64> {
        let described = lake.pyiceberg(&["describe", &table]);
        described["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["snapshot_id"].as_i64().unwrap())
            .collect()
    };
    let mut expected = vec![s2, s3];
    let mut found = kept(&lake);
    found.sort_unstable();
    expected.sort_unstable();
    assert_eq!(found, expected);
    let (code, report, err) = firn(&["untag", &table, "keep"]);
    assert_eq!(
        (code, current(&report)),
        (Some(0), Some(s3)),
        "{report} {err}"
    );
    assert!(
        lake.pyiceberg(&["describe", &table])["refs"]
            .get("keep")
            .is_none()
    );
    let (code, _, err) = firn(&expire);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(kept(&lake), vec![s3]);
    assert_eq!(pyiceberg_count(&lake, &table, &[]), 3);
    let (code, _, err) = firn(&["expire", &table, "--older-than", "last week"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--older-than"), "{err}");

    // `models` reads the configuration and the SQL files, not the catalog.
    let models = lake.dir.path().join("models.toml");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/firn.example.toml"),
        &models,
    )
    .unwrap();
    firn_tests::relay_harness::copy_gold_sql(lake.dir.path());
    let (code, listed, err) = firn_tests::run_firn_json(&models, &["models"]);
    assert_eq!(code, Some(0), "{err}");
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["order_facts", "daily_revenue", "customer_ltv"],
        "{listed}"
    );
    assert_eq!(listed[0]["relay"], true);
    assert_eq!(
        listed[0]["inputs"],
        serde_json::json!(["silver.order_items", "silver.orders"]),
        "{listed}"
    );
    assert!(
        listed[1]["inputs"]
            .as_array()
            .unwrap()
            .contains(&"gold.order_facts".into()),
        "{listed}"
    );
}

/// Appends each add a manifest; once `commit.manifest.min-count-to-merge` data manifests
/// exist, an append rewrites them into one, so a table committed every second does not pile
/// up manifests. Every row and data file stays, as pyiceberg reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_merge_their_manifests() {
    let lake = Lake::sqlite().await;
    let mut spec = orders_spec("orders");
    spec.properties.insert(
        firn_catalog::snapshot::MANIFEST_MERGE_MIN_COUNT.to_string(),
        "3".to_string(),
    );
    lake.catalog.create_table(&spec).await.unwrap();
    let manifests = |table: iceberg::table::Table| async move {
        let snapshot = table.metadata().current_snapshot().unwrap().clone();
        let list = table.manifest_list_reader(&snapshot).load().await.unwrap();
        list.entries().len()
    };
    let mut counts = Vec::new();
    for id in 1..=8 {
        append(&lake.catalog, &spec.name, &[(id, "acme", 1, 100)]).await;
        counts.push(manifests(lake.catalog.load_table(&spec.name).await.unwrap()).await);
    }
    // 1, 2, 3 manifests; the 4th append finds 3 and merges them (new + merged = 2); ...
    assert_eq!(counts, [1, 2, 3, 2, 3, 2, 3, 2]);
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 8);
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let summary = &table
        .metadata()
        .current_snapshot()
        .unwrap()
        .summary()
        .additional_properties;
    assert_eq!(summary["total-data-files"], "8");
    assert_eq!(summary["total-records"], "8");
    // Time travel to a snapshot before a merge still reads its own manifests.
    let first = history::main_lineage(&table.metadata_ref())
        .last()
        .unwrap()
        .snapshot_id();
    assert_eq!(
        pyiceberg_count(
            &lake,
            "silver.orders",
            &["--snapshot-id", &first.to_string()]
        ),
        1
    );
}

/// Every commit writes a metadata file; the ones that leave the metadata log
/// (`write.metadata.previous-versions-max`, 3 here) are deleted, so a table committed every
/// few seconds does not fill storage with old versions. Readers see every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_files_that_leave_the_log_are_deleted() {
    let lake = Lake::sqlite().await;
    let mut spec = orders_spec("orders");
    spec.properties.insert(
        "write.metadata.previous-versions-max".to_string(),
        "3".to_string(),
    );
    let (created, _) = lake.catalog.create_table(&spec).await.unwrap();
    let location = created
        .metadata()
        .location()
        .trim_start_matches("file://")
        .to_string();
    let metadata_files = || -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(format!("{location}/metadata"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
            .filter(|name| name.ends_with(".metadata.json"))
            .collect();
        files.sort();
        files
    };
    for id in 1..=6 {
        append(&lake.catalog, &spec.name, &[(id, "acme", 1, 100)]).await;
    }
    let table = lake.catalog.load_table(&spec.name).await.unwrap();
    let logged: Vec<String> = table
        .metadata()
        .metadata_log()
        .iter()
        .map(|entry| entry.metadata_file.rsplit('/').next().unwrap().to_string())
        .chain([table
            .metadata_location()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()])
        .collect();
    assert_eq!(logged.len(), 4, "{logged:?}");
    let mut expected = logged.clone();
    expected.sort();
    assert_eq!(
        metadata_files(),
        expected,
        "seven versions written, four kept"
    );
    assert_eq!(pyiceberg_count(&lake, "silver.orders", &[]), 6);
}
