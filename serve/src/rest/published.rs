//! A pipeline view as an Iceberg view for other engines (see [`super::views`]):
//! its columns as our engine plans it, a `spark` representation translated
//! from our SQL ([`spark_sql`]) with `@since:` tables resolved to the
//! boundaries recorded now, or, when the SQL means something else in Spark
//! (integer division, DataFusion-only functions, `::`), a `spark` SQL that
//! raises the reason.

use std::collections::HashMap;

use axum::http::StatusCode;
use datafusion::arrow::datatypes::{DataType, Schema as ArrowSchema};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use iceberg::spec::{ViewMetadata, ViewMetadataBuilder, ViewRepresentations, MAIN_BRANCH};
use iceberg::{NamespaceIdent, TableIdent, ViewCreation};
use icefjord_catalog::iceberg_views::engine_summary;
use icefjord_catalog::protocol::{find_position, BoundaryKey, BoundaryOffsets};
use icefjord_catalog::{display, CatalogError, IcebergView, LakeCatalog, ViewDef};
use icefjord_engine::LakeSession;
use sha2::{Digest, Sha256};

use super::error::{RestError, RestResult};
use super::spark_sql::{self, SinceResolver, Unreadable};
use super::views::{OUR_DIALECT, SPARK_DIALECT, SPARK_UNREADABLE};
use super::Target;

/// A pipeline view as an Iceberg view (see the module docs).
pub async fn published(
    lake: &LakeCatalog,
    target: &Target,
    def: ViewDef,
) -> RestResult<IcebergView> {
    let ident = def.ident.clone();
    let session = LakeSession::new(lake).await.map_err(server)?;
    let plan = session
        .context()
        .state()
        .create_logical_plan(&def.sql)
        .await
        .map_err(|e| server(format!("view {} does not plan: {e}", display(&ident))))?;
    let schema = view_schema(&plan, &ident)?;
    let boundaries = boundaries(lake, &def.sql).await?;
    let mut properties = HashMap::new();
    if let Some(owner) = &def.owner {
        properties.insert("icefjord.owner".to_string(), owner.clone());
    }
    let translated = match integer_division(&plan) {
        Some(division) => Err(Unreadable(format!(
            "{division} divides integers: DataFusion truncates, Spark returns a double \
             (CAST an operand to DECIMAL or DOUBLE)"
        ))),
        None => spark_sql::to_spark(&def.sql, &boundaries),
    };
    let spark = match translated {
        Ok(sql) => sql,
        Err(Unreadable(reason)) => {
            let reason = format!("view {} cannot be read by Spark: {reason}", display(&ident));
            let columns = schema
                .as_struct()
                .fields()
                .iter()
                .map(|f| {
                    format!(
                        "raise_error({}) AS `{}`",
                        spark_sql::literal(&reason),
                        f.name.replace('`', "``")
                    )
                })
                .collect::<Vec<_>>();
            properties.insert(SPARK_UNREADABLE.to_string(), reason);
            format!("SELECT {}", columns.join(", "))
        }
    };
    let representations: ViewRepresentations = serde_json::from_value(serde_json::json!([
        {"type": "sql", "sql": spark, "dialect": SPARK_DIALECT},
        {"type": "sql", "sql": def.sql, "dialect": OUR_DIALECT},
    ]))
    .map_err(server)?;
    let location = lake.default_location(&ident);
    let creation = ViewCreation::builder()
        .name(target.table.clone())
        .location(location.clone())
        .representations(representations)
        .schema(schema)
        .properties(properties)
        .default_namespace(
            NamespaceIdent::from_vec(target.levels())
                .map_err(|e| RestError::bad_request(e.message()))?,
        )
        .summary(engine_summary())
        .build();
    let metadata: ViewMetadata = ViewMetadataBuilder::from_view_creation(creation)
        .and_then(|b| b.assign_uuid(view_uuid(lake, &ident)).build())
        .map_err(CatalogError::from)?
        .metadata;
    let version = def.commit_id.as_deref().unwrap_or("unversioned");
    Ok(IcebergView {
        ident,
        metadata_location: format!("{location}/metadata/published-{version}.metadata.json"),
        metadata,
    })
}

/// The same UUID every time a view is loaded from the same ref.
fn view_uuid(lake: &LakeCatalog, ident: &TableIdent) -> uuid::Uuid {
    let digest = Sha256::digest(format!("{}\u{1f}{}", lake.ref_name(), display(ident)));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The view's columns as our engine plans it (the plan a reader of the view
/// runs), in Iceberg types.
fn view_schema(plan: &LogicalPlan, ident: &TableIdent) -> RestResult<iceberg::spec::Schema> {
    iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&iceberg_typable(
        plan.schema().as_arrow(),
    ))
    .map_err(|e| {
        server(format!(
            "view {} has a column Iceberg cannot type: {e}",
            display(ident)
        ))
    })
}

/// The view's columns in types Iceberg has: DataFusion's unsigned results
/// (`rank()`, `row_number()` are UInt64) as the signed type holding them, as
/// Spark types the same functions (`int`), a dictionary as its values.
fn iceberg_typable(schema: &ArrowSchema) -> ArrowSchema {
    let fields = schema.fields().iter().map(|field| {
        let data_type = match field.data_type() {
            DataType::UInt8 | DataType::UInt16 => DataType::Int32,
            DataType::UInt32 | DataType::UInt64 => DataType::Int64,
            DataType::Dictionary(_, values) => values.as_ref().clone(),
            other => other.clone(),
        };
        field.as_ref().clone().with_data_type(data_type)
    });
    ArrowSchema::new_with_metadata(fields.collect::<Vec<_>>(), schema.metadata().clone())
}

fn server(e: impl ToString) -> RestError {
    RestError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ServerErrorException",
        e.to_string(),
    )
}

/// `(input, output) → boundary` for every `@since:` table of `sql`, read now.
type Boundaries = HashMap<(String, String), Option<BoundaryOffsets>>;

impl SinceResolver for Boundaries {
    fn boundary(&self, input: &str, output: &str) -> Result<Option<BoundaryOffsets>, Unreadable> {
        self.get(&(input.to_string(), output.to_string()))
            .cloned()
            .ok_or_else(|| Unreadable(format!("no boundary was read for {input} of {output}")))
    }
}

async fn boundaries(lake: &LakeCatalog, sql: &str) -> RestResult<Boundaries> {
    let mut found = Boundaries::new();
    for (input, output) in spark_sql::since_tables(sql) {
        let ident = icefjord_catalog::parse_table(&output)?;
        let boundary = match lake.load(&ident).await {
            Ok(table) => find_position(
                table.metadata(),
                &output,
                MAIN_BRANCH,
                &BoundaryKey {
                    input: input.clone(),
                },
            )?
            .map(|f| f.value),
            // No output yet: every input row is fresh (as `icefjord sql` reads it).
            Err(CatalogError::TableNotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        found.insert((input, output), boundary);
    }
    Ok(found)
}

/// The first division of two integers in the view's own plan (views it reads
/// are checked when Spark loads them): `a / b` truncates in DataFusion and is
/// a double in Spark, so the view would mean another number there.
fn integer_division(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        // Expressions are typed by the node's input (a join's own schema holds both sides).
        let inputs = node.inputs();
        let schema = match inputs.as_slice() {
            [input] => input.schema(),
            _ => node.schema(),
        };
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Divide,
                    right,
                }) = e
                {
                    let integer =
                        |x: &Expr| x.get_type(schema.as_ref()).is_ok_and(|t| t.is_integer());
                    if integer(left) && integer(right) {
                        found = Some(e.to_string());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}
