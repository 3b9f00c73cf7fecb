//! Joins that give their thread back: a physical optimizer rule that wraps every join's output
//! in DataFusion's `CooperativeExec`.
//!
//! DataFusion makes a query yield to the runtime at its sources and exchanges (the
//! `EnsureCooperative` rule). A cross join multiplies rows after the source: one batch of its
//! right side becomes billions of rows, which the aggregate above it consumes in one poll
//! without ever yielding. Nothing could then stop the statement (a time limit, a cancel, a
//! client gone) until it ended by itself, and the runtime's timer could not fire meanwhile:
//! a four-way cross join timed out over the PostgreSQL protocol but ran on for 100 s in the
//! background. Wrapped, a join's output spends the task's budget batch by batch, so the
//! statement yields every few batches and is stopped within moments.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

/// Wraps each join (cross, nested loop, hash, merge, symmetric hash) in `CooperativeExec`.
#[derive(Debug, Default)]
pub(super) struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn name(&self) -> &str {
        "YieldingJoins"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.name().contains("Join") {
                Ok(Transformed::yes(
                    Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
                ))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|transformed| transformed.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}
