//! Partition-wise aggregation: a `GROUP BY` whose key pins the partition of the
//! table it scans is aggregated one partition at a time.
//!
//! `GROUP BY date_trunc('hour', event_time), store_id` over a table partitioned by
//! `day(event_time)` can never put rows of two day partitions into one group. The
//! plan DataFusion builds ignores that: one hash table per output partition holds
//! every group of the query at once (14 M groups for the retail history at 20 M
//! events), so most lookups miss the CPU caches and memory grows with the input.
//! [`PartitionwiseAggregation`] rewrites such an aggregation so that
//!
//! - the scan's files are regrouped by partition value: each DataFusion partition
//!   reads a contiguous run of table partitions, in ascending order
//!   ([`FilePartition`], attached to each file by [`crate::scan::IcebergTable`],
//!   says which partition a file holds);
//! - the aggregation gets one more, leading group key: the partition expression
//!   (`date_trunc('day', event_time)`), which the regrouped scan yields in order;
//!   DataFusion then aggregates in its partially-sorted mode, emitting and
//!   forgetting a partition's groups as soon as the next partition begins;
//! - the extra key is projected away, so the output has the original schema.
//!
//! # Invariants
//!
//! The two ends of the rewritten subtree are [`DeclaredExec`] nodes, shown in
//! `EXPLAIN` as `PartitionAlignedExec` (the scan) and `UnknownPartitioningExec`
//! (the aggregation's output).
//!
//! 1. **Same groups.** The rule applies only when a group expression `g` determines
//!    the file's partition value: `g` is the partition source column itself, or
//!    `date_trunc(unit, column)` with a unit that nests in the partition's (hour
//!    in day, day in month, …; never week). Adding a key that `g` determines splits
//!    no group, so results are unchanged.
//! 2. **True order.** Every file of the scan carries its partition value, and a
//!    data file holds rows of its partition only (Iceberg's rule); files are read
//!    in order within a partition, so the extra key is ascending (nulls first)
//!    in each output partition, as `PartitionAlignedExec` declares. Tables with
//!    more than one partition spec, and partition sources that are not top-level
//!    columns, are left alone. So are day partitions before 1970: iceberg-rust
//!    0.10's `day` transform rounds a negative timestamp with a fraction of a
//!    second toward zero, so a file another iceberg-rust writer made can hold a
//!    row of the previous day (ours round down: [`crate::partition`]).
//! 3. **No leaked promise.** `PartitionAlignedExec` declares hash partitioning on
//!    the group keys (each key lives in one partition, though not where
//!    DataFusion's hash would put it). Only the aggregate this rule builds reads
//!    it; above it, `UnknownPartitioningExec` declares the subtree's partitioning
//!    unknown, so no join or aggregate above takes it for DataFusion's hash
//!    partitioning. Scans with fewer partitions than `target_partitions` are
//!    left alone (DataFusion would re-hash and re-sort them for parallelism).
//! 4. **Hidden inner plan.** The regrouped scan sits inside
//!    `PartitionAlignedExec`, a leaf to the optimizer, so no later rule re-splits
//!    its files. The rule runs just before `EnforceDistribution`, which then plans
//!    the rest of the query around the rewritten subtree.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{
    EquivalenceProperties, Partitioning, PhysicalExpr, PhysicalSortExpr, ScalarFunctionExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, SendableRecordBatchStream,
};
use iceberg::spec::Transform;

/// Files of a scan with their partition values.
type KeyedFiles = Vec<(Option<PartitionKey>, PartitionedFile)>;

/// The name of the partition key the rewritten aggregation adds (and drops).
const PARTITION_KEY: &str = "__icefjord_partition";

/// A partition value, ordered as the source column's values are.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PartitionKey {
    Int(i64),
    Str(String),
}

/// One partition field of a data file: its source column, transform and value
/// (`None` for null; a value that is not an integer or string makes the field
/// unusable here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionField {
    pub column: String,
    pub transform: Transform,
    pub value: Option<Option<PartitionKey>>,
}

/// The partition a data file holds, attached to its `PartitionedFile` (as the
/// file's extension) by the Iceberg scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilePartition {
    pub fields: Vec<PartitionField>,
}

impl FilePartition {
    fn key(&self, column: &str, transform: Transform) -> Option<Option<PartitionKey>> {
        self.fields
            .iter()
            .find(|f| f.column == column && f.transform == transform)
            .and_then(|f| f.value.clone())
    }
}

/// The physical optimizer rule (see the module docs). Register it before
/// `EnforceDistribution` with [`with_partitionwise_aggregation`].
#[derive(Debug, Default)]
pub struct PartitionwiseAggregation;

/// DataFusion's default physical rules with [`PartitionwiseAggregation`] placed
/// just before `EnforceDistribution`.
pub fn with_partitionwise_aggregation(
    mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let at = rules
        .iter()
        .position(|r| r.name() == "EnforceDistribution")
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(PartitionwiseAggregation));
    rules
}

impl PhysicalOptimizerRule for PartitionwiseAggregation {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match rewrite(&node, config)? {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "PartitionwiseAggregation"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The aggregation at `node` aligned with its scan's partitions, if it qualifies.
fn rewrite(
    node: &Arc<dyn ExecutionPlan>,
    config: &ConfigOptions,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(top) = node.as_any().downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    // The aggregation whose input is the scan: the partial half of a two-phase
    // aggregation, or a single-phase one.
    let source = match top.mode() {
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            match top.input().as_any().downcast_ref::<AggregateExec>() {
                Some(partial) if *partial.mode() == AggregateMode::Partial => partial,
                _ => return Ok(None),
            }
        }
        AggregateMode::Single | AggregateMode::SinglePartitioned => top,
        _ => return Ok(None),
    };
    if top.limit_options().is_some()
        || !source.group_expr().is_single()
        || source.group_expr().expr().is_empty()
        || source.aggr_expr().iter().any(|a| !a.order_bys().is_empty())
    {
        return Ok(None);
    }
    let input = source.input();
    let partitions = input.output_partitioning().partition_count();
    if partitions < config.execution.target_partitions {
        return Ok(None);
    }
    let Some(chain) = scan_chain(input) else {
        return Ok(None);
    };
    let Some(scan) = chain.last().and_then(|s| file_scan(s)) else {
        return Ok(None);
    };
    let schema = input.schema();
    let Some((order_expr, files)) = source
        .group_expr()
        .expr()
        .iter()
        .find_map(|(expr, _)| partition_of(expr, &schema, &chain, scan, config))
    else {
        return Ok(None);
    };
    let groups = regroup(files, partitions);
    if groups.len() != partitions {
        // Fewer partition values than partitions: DataFusion would repartition
        // (and re-sort) to regain its parallelism; leave the plan as it is.
        return Ok(None);
    }
    let regrouped: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(
        FileScanConfigBuilder::from(scan.clone())
            .with_file_groups(groups)
            .build(),
    );
    let mut aligned_input = regrouped;
    for node in chain.iter().rev().skip(1) {
        aligned_input = Arc::clone(node).with_new_children(vec![aligned_input])?;
    }

    let mut group_exprs = vec![(Arc::clone(&order_expr), PARTITION_KEY.to_string())];
    group_exprs.extend(source.group_expr().expr().iter().cloned());
    let group_by = PhysicalGroupBy::new_single(group_exprs);
    let aligned = Arc::new(DeclaredExec::aligned(
        aligned_input,
        order_expr,
        group_by.input_exprs(),
    ));
    let aggregate = Arc::new(AggregateExec::try_new(
        AggregateMode::SinglePartitioned,
        group_by,
        source.aggr_expr().to_vec(),
        source.filter_expr().to_vec(),
        aligned,
        source.input_schema(),
    )?);
    let expected = top.schema();
    let columns = expected
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(f.name(), i + 1));
            (column, f.name().clone())
        })
        .collect::<Vec<_>>();
    let projected: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(columns, aggregate)?);
    let same = projected.schema().fields().len() == expected.fields().len()
        && projected
            .schema()
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, b)| {
                a.name() == b.name()
                    && a.data_type() == b.data_type()
                    && a.is_nullable() == b.is_nullable()
            });
    Ok(same
        .then(|| Arc::new(DeclaredExec::unknown_partitioning(projected)) as Arc<dyn ExecutionPlan>))
}

/// The nodes from `plan` down to a file scan, if each passes its input's rows,
/// order and partitions through (projections, filters).
fn scan_chain(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<Arc<dyn ExecutionPlan>>> {
    let mut chain = vec![Arc::clone(plan)];
    let mut node = Arc::clone(plan);
    loop {
        if file_scan(&node).is_some() {
            return Some(chain);
        }
        let any = node.as_any();
        if !(any.is::<ProjectionExec>() || any.is::<FilterExec>()) {
            return None;
        }
        let [child] = node.children()[..] else {
            return None;
        };
        let child = Arc::clone(child);
        chain.push(Arc::clone(&child));
        node = child;
    }
}

fn file_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    plan.as_any()
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .as_any()
        .downcast_ref::<FileScanConfig>()
}

/// The table column that output column `index` of `chain[0]` is, unchanged.
fn source_column(chain: &[Arc<dyn ExecutionPlan>], mut index: usize) -> Option<String> {
    for node in chain {
        let any = node.as_any();
        if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
            let expr = &projection.expr().get(index)?.expr;
            index = expr.as_any().downcast_ref::<Column>()?.index();
        } else if let Some(filter) = any.downcast_ref::<FilterExec>() {
            if let Some(projection) = filter.projection() {
                index = *projection.get(index)?;
            }
        } else {
            let scan = file_scan(node)?;
            return match scan.file_source().projection() {
                Some(projection) => {
                    let expr = &projection.iter().nth(index)?.expr;
                    Some(expr.as_any().downcast_ref::<Column>()?.name().to_string())
                }
                None => Some(node.schema().fields().get(index)?.name().clone()),
            };
        }
    }
    None
}

/// If group expression `expr` pins a partition field of every file of `scan`: the
/// partition expression to add as a key, and the files with their partition keys.
fn partition_of(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
    chain: &[Arc<dyn ExecutionPlan>],
    scan: &FileScanConfig,
    config: &ConfigOptions,
) -> Option<(Arc<dyn PhysicalExpr>, KeyedFiles)> {
    // `column` or `date_trunc(unit, column)`, with the unit's rank (0: the column).
    let (column, rank) = if let Some(column) = expr.as_any().downcast_ref::<Column>() {
        (column.clone(), 0)
    } else {
        let call = expr.as_any().downcast_ref::<ScalarFunctionExpr>()?;
        let [unit, column] = call.args() else {
            return None;
        };
        if call.name() != "date_trunc" {
            return None;
        }
        let unit = match unit.as_any().downcast_ref::<Literal>()?.value() {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.to_ascii_lowercase(),
            _ => return None,
        };
        (
            column.as_any().downcast_ref::<Column>()?.clone(),
            unit_rank(&unit)?,
        )
    };
    let name = source_column(chain, column.index())?;
    let data_type = schema.field(column.index()).data_type().clone();
    let files: Vec<&PartitionedFile> = scan.file_groups.iter().flat_map(|g| g.iter()).collect();
    let first = files
        .first()?
        .extensions
        .as_ref()?
        .downcast_ref::<FilePartition>()?;
    first
        .fields
        .iter()
        .filter(|f| f.column == name)
        .find_map(|field| {
            let order_expr =
                order_expr(field.transform, rank, &column, &data_type, schema, config)?;
            let keyed = files
                .iter()
                .map(|file| {
                    let partition = file.extensions.as_ref()?.downcast_ref::<FilePartition>()?;
                    let key = partition.key(&field.column, field.transform)?;
                    // See invariant 2: pre-1970 day values may be off by one.
                    if field.transform == Transform::Day
                        && matches!(key, Some(PartitionKey::Int(day)) if day < 0)
                    {
                        return None;
                    }
                    Some((key, (*file).clone()))
                })
                .collect::<Option<Vec<_>>>()?;
            Some((order_expr, keyed))
        })
}

/// The rank of a `date_trunc` unit in the nesting chain (week nests in nothing).
fn unit_rank(unit: &str) -> Option<u8> {
    Some(match unit {
        "microsecond" | "microseconds" => 1,
        "millisecond" | "milliseconds" => 2,
        "second" => 3,
        "minute" => 4,
        "hour" => 5,
        "day" => 6,
        "month" => 7,
        "quarter" => 8,
        "year" => 9,
        _ => return None,
    })
}

/// The expression over `column` whose ascending order is the order of the
/// partition values of `transform`, if a group key of `rank` over that column
/// pins them (only order-keeping transforms qualify).
fn order_expr(
    transform: Transform,
    rank: u8,
    column: &Column,
    data_type: &DataType,
    schema: &SchemaRef,
    config: &ConfigOptions,
) -> Option<Arc<dyn PhysicalExpr>> {
    let column_expr: Arc<dyn PhysicalExpr> = Arc::new(column.clone());
    let unit = match transform {
        Transform::Hour => "hour",
        Transform::Day => "day",
        Transform::Month => "month",
        Transform::Year => "year",
        Transform::Identity => {
            // The column is the partition value; only the column pins it.
            let ordered = matches!(
                data_type,
                DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Date32
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
            );
            return (rank == 0 && ordered).then_some(column_expr);
        }
        _ => return None,
    };
    if rank > unit_rank(unit)? {
        return None;
    }
    match data_type {
        // Time transforms work on UTC instants; `date_trunc` on a zoned timestamp
        // truncates in its zone.
        DataType::Timestamp(_, tz)
            if tz
                .as_deref()
                .is_none_or(|tz| matches!(tz, "UTC" | "+00:00" | "Z")) =>
        {
            let udf = datafusion::functions::datetime::date_trunc();
            let unit: Arc<dyn PhysicalExpr> =
                Arc::new(Literal::new(ScalarValue::Utf8(Some(unit.to_string()))));
            ScalarFunctionExpr::try_new(
                udf,
                vec![unit, column_expr],
                schema,
                Arc::new(config.clone()),
            )
            .ok()
            .map(|e| Arc::new(e) as Arc<dyn PhysicalExpr>)
        }
        DataType::Date32 if transform == Transform::Day => Some(column_expr),
        _ => None,
    }
}

/// `files` in `n` groups of contiguous partition keys (ascending; a key never spans
/// two groups), balanced by bytes.
fn regroup(mut files: KeyedFiles, n: usize) -> Vec<FileGroup> {
    files.sort_by(|(a, fa), (b, fb)| {
        a.cmp(b)
            .then_with(|| fa.object_meta.location.cmp(&fb.object_meta.location))
            .then_with(|| {
                let start = |f: &PartitionedFile| f.range.as_ref().map(|r| r.start);
                start(fa).cmp(&start(fb))
            })
    });
    let bytes = |f: &PartitionedFile| match &f.range {
        Some(r) => (r.end - r.start).max(0) as u64,
        None => f.object_meta.size,
    };
    let total: u64 = files.iter().map(|(_, f)| bytes(f)).sum();
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new()];
    let mut done = 0u64;
    let mut previous: Option<Option<PartitionKey>> = None;
    for (key, file) in files {
        let boundary = previous.as_ref().is_some_and(|p| *p != key);
        // Cut at a key boundary once this group has its share of the bytes.
        let share = total * groups.len() as u64 / n.max(1) as u64;
        if boundary && done >= share && groups.len() < n {
            groups.push(Vec::new());
        }
        done += bytes(&file);
        previous = Some(key);
        if let Some(group) = groups.last_mut() {
            group.push(file);
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(FileGroup::new)
        .collect()
}

/// A node that runs its input unchanged but declares other properties for it:
/// the two ends of the rewritten subtree (see the module's invariants).
#[derive(Debug)]
pub struct DeclaredExec {
    input: Arc<dyn ExecutionPlan>,
    role: Role,
    properties: Arc<PlanProperties>,
}

#[derive(Debug, Clone)]
enum Role {
    /// `PartitionAlignedExec`: a scan whose partitions each yield ascending
    /// partition values, declared as such (ordering on the partition expression,
    /// hash partitioning on the group keys) for the aggregation above it. A leaf
    /// to the optimizer.
    Aligned {
        order_expr: Arc<dyn PhysicalExpr>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
    },
    /// `UnknownPartitioningExec`: the rewritten aggregation's output, its
    /// partitioning declared unknown: rows are split by partition value, not by
    /// DataFusion's hash of the group keys, so nothing above may treat them as
    /// hash-partitioned.
    UnknownPartitioning,
}

impl DeclaredExec {
    fn aligned(
        input: Arc<dyn ExecutionPlan>,
        order_expr: Arc<dyn PhysicalExpr>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Self {
        Self::new(input, Role::Aligned { order_expr, keys })
    }

    fn unknown_partitioning(input: Arc<dyn ExecutionPlan>) -> Self {
        Self::new(input, Role::UnknownPartitioning)
    }

    fn new(input: Arc<dyn ExecutionPlan>, role: Role) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let (eq, partitioning) = match &role {
            Role::Aligned { order_expr, keys } => {
                let mut eq = EquivalenceProperties::new(input.schema());
                eq.add_ordering([PhysicalSortExpr::new(
                    Arc::clone(order_expr),
                    SortOptions {
                        descending: false,
                        nulls_first: true,
                    },
                )]);
                (eq, Partitioning::Hash(keys.clone(), partitions))
            }
            Role::UnknownPartitioning => (
                input.equivalence_properties().clone(),
                Partitioning::UnknownPartitioning(partitions),
            ),
        };
        let properties = PlanProperties::new(
            eq,
            partitioning,
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Self {
            input,
            role,
            properties: Arc::new(properties),
        }
    }
}

/// The scan a `PartitionAlignedExec` hides from the optimizer, for walks that
/// must see every node (e.g. counting the rows a plan read); `None` for any
/// other node.
pub fn aligned_input(plan: &dyn ExecutionPlan) -> Option<&Arc<dyn ExecutionPlan>> {
    let declared = plan.as_any().downcast_ref::<DeclaredExec>()?;
    matches!(declared.role, Role::Aligned { .. }).then_some(&declared.input)
}

impl DisplayAs for DeclaredExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.role {
            Role::Aligned { order_expr, .. } => write!(
                f,
                "PartitionAlignedExec: ordered by {order_expr} within each partition; input: {}",
                displayable(self.input.as_ref()).one_line()
            ),
            Role::UnknownPartitioning => write!(f, "UnknownPartitioningExec"),
        }
    }
}

impl ExecutionPlan for DeclaredExec {
    fn name(&self) -> &str {
        match self.role {
            Role::Aligned { .. } => "PartitionAlignedExec",
            Role::UnknownPartitioning => "UnknownPartitioningExec",
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        match self.role {
            // Hidden from the optimizer: no rule may re-split its files.
            Role::Aligned { .. } => Vec::new(),
            Role::UnknownPartitioning => vec![&self.input],
        }
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true; self.children().len()]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.children().len()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (&self.role, <[_; 1]>::try_from(children)) {
            (Role::UnknownPartitioning, Ok([input])) => {
                Ok(Arc::new(Self::new(input, self.role.clone())))
            }
            (Role::Aligned { .. }, Err(none)) if none.is_empty() => Ok(self),
            _ => Err(datafusion::error::DataFusionError::Internal(format!(
                "{} got the wrong number of children",
                self.name()
            ))),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
