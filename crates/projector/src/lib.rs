//! The projector: reads the log from its checkpoint and folds it into the marketing, sales and
//! shared-funnel views with core's pure reducers, committing state and checkpoint together.
//!
//! Not built yet: it arrives with the projections issue. The crate exists now so that the
//! workspace's dependency chain (core → log → projector → query → cli) is fixed and tested.
