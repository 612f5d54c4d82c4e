//! The offset fence on the real commit path (SQLite catalog on a temporary lake).

use std::collections::BTreeMap;
use std::sync::Arc;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use icefjord_catalog::{
    parse_table, CatalogError, CommitId, LakeCatalog, LakeConfig, TableSpec, TableWrite,
};
use icefjord_sink::offsets::{self, OffsetFence, Span};

fn fence(spans: &[(i32, i64, i64, bool)]) -> Arc<OffsetFence> {
    Arc::new(OffsetFence {
        group: "icefjord-retail".into(),
        topic: "retail_events".into(),
        spans: spans
            .iter()
            .map(|&(p, start, end, from_scratch)| {
                (
                    p,
                    Span {
                        start,
                        end,
                        from_scratch,
                    },
                )
            })
            .collect(),
    })
}

#[tokio::test]
async fn a_second_writer_of_the_same_offsets_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LakeCatalog::open(&LakeConfig::local(dir.path()).unwrap())
        .await
        .unwrap();
    let ident = parse_table("raw.retail_events").unwrap();
    lake.create(
        &ident,
        TableSpec {
            schema: Schema::builder()
                .with_fields(vec![NestedField::optional(
                    1,
                    "x",
                    Type::Primitive(PrimitiveType::Long),
                )
                .into()])
                .build()
                .unwrap(),
            partition_spec: None,
            properties: BTreeMap::new(),
        },
    )
    .await
    .unwrap();

    // Writer A: partitions 0 and 1 from scratch.
    lake.commit(CommitId::mint())
        .with_write(
            TableWrite::append(ident.clone(), vec![])
                .with_guard(fence(&[(0, 0, 100, true), (1, 0, 40, true)])),
        )
        .execute()
        .await
        .unwrap();
    // Writer A continues partition 0 only; partition 1 keeps its offset.
    lake.commit(CommitId::mint())
        .with_write(
            TableWrite::append(ident.clone(), vec![]).with_guard(fence(&[(0, 100, 150, false)])),
        )
        .execute()
        .await
        .unwrap();
    let table = lake.load(&ident).await.unwrap();
    let stored = offsets::stored(
        table.metadata(),
        "raw.retail_events",
        "main",
        "icefjord-retail",
        "retail_events",
    )
    .unwrap();
    assert_eq!(stored, BTreeMap::from([(0, 150), (1, 40)]));

    // Writer B, a zombie that read partition 0 from 100 before a rebalance, is refused.
    let snapshots_before = table.metadata().snapshots().count();
    let err = lake
        .commit(CommitId::mint())
        .with_write(
            TableWrite::append(ident.clone(), vec![]).with_guard(fence(&[(0, 100, 160, false)])),
        )
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("partition 0"), "{err}");
    let table = lake.load(&ident).await.unwrap();
    assert_eq!(
        table.metadata().snapshots().count(),
        snapshots_before,
        "nothing written"
    );
}
