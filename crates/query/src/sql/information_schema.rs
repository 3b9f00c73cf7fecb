//! `information_schema` as PostgreSQL has it: the views' tables and columns with PostgreSQL's
//! type names (`data_type`, `udt_name`), positions from 1, their primary keys, and SELECT as the
//! only privilege. Grafana's query builder, Metabase's field sync and SQLAlchemy read it.
//!
//! It lists the served schemas (as `pg_tables` does), not `pg_catalog` nor
//! `information_schema` itself.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::Result;

use super::system::{Cell, Col, OWNER, Relations, mem_table, relations};
use super::tables::CatalogSource;

/// The database (`table_catalog`), as clients connect to it.
const DATABASE: &str = "baton";

const TABLES: &[&str] = &[
    "schemata",
    "tables",
    "columns",
    "table_constraints",
    "key_column_usage",
    "constraint_column_usage",
    "referential_constraints",
    "table_privileges",
    "column_privileges",
    "views",
    "routines",
    "parameters",
];

#[derive(Debug)]
pub(super) struct InformationSchema {
    pub(super) source: Arc<CatalogSource>,
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|name| (*name).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !TABLES.contains(&name) {
            return Ok(None);
        }
        let relations = relations(&self.source)?;
        Ok(Some(table(name, &relations)? as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

fn yes(b: bool) -> Cell {
    if b { "YES" } else { "NO" }.into()
}

fn table(name: &str, relations: &Relations) -> Result<Arc<MemTable>> {
    use Col::*;
    match name {
        "schemata" => mem_table(
            &[
                ("catalog_name", Text),
                ("schema_name", Text),
                ("schema_owner", Text),
                ("default_character_set_catalog", Text),
                ("default_character_set_schema", Text),
                ("default_character_set_name", Text),
                ("sql_path", Text),
            ],
            relations
                .namespaces
                .iter()
                .filter(|(_, _, listed)| *listed)
                .map(|(_, schema, _)| {
                    vec![
                        DATABASE.into(),
                        schema.as_str().into(),
                        OWNER.into(),
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                    ]
                })
                .collect(),
        ),
        "tables" => mem_table(
            &[
                ("table_catalog", Text),
                ("table_schema", Text),
                ("table_name", Text),
                ("table_type", Text),
                ("self_referencing_column_name", Text),
                ("reference_generation", Text),
                ("user_defined_type_catalog", Text),
                ("user_defined_type_schema", Text),
                ("user_defined_type_name", Text),
                ("is_insertable_into", Text),
                ("is_typed", Text),
                ("commit_action", Text),
            ],
            relations
                .listed()
                .map(|table| {
                    vec![
                        DATABASE.into(),
                        table.schema.as_str().into(),
                        table.name.as_str().into(),
                        "BASE TABLE".into(),
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        yes(false),
                        yes(false),
                        Cell::Null,
                    ]
                })
                .collect(),
        ),
        "columns" => {
            let mut rows = Vec::new();
            for table in relations.listed() {
                for (at, attribute) in table.attributes.iter().enumerate() {
                    let position = at as i64 + 1;
                    let in_key = table.key.iter().any(|k| i64::from(*k) == position);
                    let pg = attribute.pg;
                    let timestamp = pg.oid == 1184 || pg.oid == 1114;
                    let mut row: Vec<Cell> = vec![
                        DATABASE.into(),
                        table.schema.as_str().into(),
                        table.name.as_str().into(),
                        attribute.name.as_str().into(),
                        position.into(),
                        Cell::Null,
                        yes(!in_key),
                        pg.sql.into(),
                        Cell::Null,
                        if pg.oid == 25 {
                            Cell::Int(1_073_741_824)
                        } else {
                            Cell::Null
                        },
                        pg.precision.map_or(Cell::Null, Cell::from),
                        pg.precision.map_or(Cell::Null, |_| Cell::Int(2)),
                        if pg.precision.is_some() && pg.oid != 701 {
                            Cell::Int(0)
                        } else {
                            Cell::Null
                        },
                        if timestamp { Cell::Int(6) } else { Cell::Null },
                    ];
                    // interval_type .. domain_name: none
                    row.extend((0..11).map(|_| Cell::Null));
                    row.extend([
                        DATABASE.into(),
                        "pg_catalog".into(),
                        pg.udt.into(),
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        position.to_string().into(),
                        yes(false),
                        yes(false),
                    ]);
                    row.extend((0..6).map(|_| Cell::Null));
                    row.extend(["NEVER".into(), Cell::Null, yes(false)]);
                    rows.push(row);
                }
            }
            mem_table(
                &[
                    ("table_catalog", Text),
                    ("table_schema", Text),
                    ("table_name", Text),
                    ("column_name", Text),
                    ("ordinal_position", I32),
                    ("column_default", Text),
                    ("is_nullable", Text),
                    ("data_type", Text),
                    ("character_maximum_length", I32),
                    ("character_octet_length", I32),
                    ("numeric_precision", I32),
                    ("numeric_precision_radix", I32),
                    ("numeric_scale", I32),
                    ("datetime_precision", I32),
                    ("interval_type", Text),
                    ("interval_precision", I32),
                    ("character_set_catalog", Text),
                    ("character_set_schema", Text),
                    ("character_set_name", Text),
                    ("collation_catalog", Text),
                    ("collation_schema", Text),
                    ("collation_name", Text),
                    ("domain_catalog", Text),
                    ("domain_schema", Text),
                    ("domain_name", Text),
                    ("udt_catalog", Text),
                    ("udt_schema", Text),
                    ("udt_name", Text),
                    ("scope_catalog", Text),
                    ("scope_schema", Text),
                    ("scope_name", Text),
                    ("maximum_cardinality", I32),
                    ("dtd_identifier", Text),
                    ("is_self_referencing", Text),
                    ("is_identity", Text),
                    ("identity_generation", Text),
                    ("identity_start", Text),
                    ("identity_increment", Text),
                    ("identity_maximum", Text),
                    ("identity_minimum", Text),
                    ("identity_cycle", Text),
                    ("is_generated", Text),
                    ("generation_expression", Text),
                    ("is_updatable", Text),
                ],
                rows,
            )
        }
        "table_constraints" => mem_table(
            &[
                ("constraint_catalog", Text),
                ("constraint_schema", Text),
                ("constraint_name", Text),
                ("table_catalog", Text),
                ("table_schema", Text),
                ("table_name", Text),
                ("constraint_type", Text),
                ("is_deferrable", Text),
                ("initially_deferred", Text),
                ("enforced", Text),
                ("nulls_distinct", Text),
            ],
            relations
                .listed()
                .filter(|table| !table.key.is_empty())
                .map(|table| {
                    vec![
                        DATABASE.into(),
                        table.schema.as_str().into(),
                        table.key_name().into(),
                        DATABASE.into(),
                        table.schema.as_str().into(),
                        table.name.as_str().into(),
                        "PRIMARY KEY".into(),
                        yes(false),
                        yes(false),
                        yes(true),
                        Cell::Null,
                    ]
                })
                .collect(),
        ),
        "key_column_usage" | "constraint_column_usage" => {
            let usage = name == "key_column_usage";
            let mut rows = Vec::new();
            for table in relations.listed() {
                for (at, attnum) in table.key.iter().enumerate() {
                    let column = &table.attributes[*attnum as usize - 1].name;
                    let mut row: Vec<Cell> = Vec::new();
                    if usage {
                        row.extend([
                            DATABASE.into(),
                            table.schema.as_str().into(),
                            table.key_name().into(),
                        ]);
                    }
                    row.extend([
                        DATABASE.into(),
                        table.schema.as_str().into(),
                        table.name.as_str().into(),
                        column.as_str().into(),
                    ]);
                    if usage {
                        row.extend([Cell::Int(at as i64 + 1), Cell::Null]);
                    } else {
                        row.extend([
                            DATABASE.into(),
                            table.schema.as_str().into(),
                            table.key_name().into(),
                        ]);
                    }
                    rows.push(row);
                }
            }
            if usage {
                mem_table(
                    &[
                        ("constraint_catalog", Text),
                        ("constraint_schema", Text),
                        ("constraint_name", Text),
                        ("table_catalog", Text),
                        ("table_schema", Text),
                        ("table_name", Text),
                        ("column_name", Text),
                        ("ordinal_position", I32),
                        ("position_in_unique_constraint", I32),
                    ],
                    rows,
                )
            } else {
                mem_table(
                    &[
                        ("table_catalog", Text),
                        ("table_schema", Text),
                        ("table_name", Text),
                        ("column_name", Text),
                        ("constraint_catalog", Text),
                        ("constraint_schema", Text),
                        ("constraint_name", Text),
                    ],
                    rows,
                )
            }
        }
        "table_privileges" => mem_table(
            &[
                ("grantor", Text),
                ("grantee", Text),
                ("table_catalog", Text),
                ("table_schema", Text),
                ("table_name", Text),
                ("privilege_type", Text),
                ("is_grantable", Text),
                ("with_hierarchy", Text),
            ],
            relations
                .listed()
                .map(|table| {
                    vec![
                        OWNER.into(),
                        "PUBLIC".into(),
                        DATABASE.into(),
                        table.schema.as_str().into(),
                        table.name.as_str().into(),
                        "SELECT".into(),
                        yes(false),
                        yes(true),
                    ]
                })
                .collect(),
        ),
        "column_privileges" => {
            let mut rows = Vec::new();
            for table in relations.listed() {
                for attribute in &table.attributes {
                    rows.push(vec![
                        OWNER.into(),
                        "PUBLIC".into(),
                        DATABASE.into(),
                        table.schema.as_str().into(),
                        table.name.as_str().into(),
                        attribute.name.as_str().into(),
                        "SELECT".into(),
                        yes(false),
                    ]);
                }
            }
            mem_table(
                &[
                    ("grantor", Text),
                    ("grantee", Text),
                    ("table_catalog", Text),
                    ("table_schema", Text),
                    ("table_name", Text),
                    ("column_name", Text),
                    ("privilege_type", Text),
                    ("is_grantable", Text),
                ],
                rows,
            )
        }
        "referential_constraints" => mem_table(
            &[
                ("constraint_catalog", Text),
                ("constraint_schema", Text),
                ("constraint_name", Text),
                ("unique_constraint_catalog", Text),
                ("unique_constraint_schema", Text),
                ("unique_constraint_name", Text),
                ("match_option", Text),
                ("update_rule", Text),
                ("delete_rule", Text),
            ],
            Vec::new(),
        ),
        "views" => mem_table(
            &[
                ("table_catalog", Text),
                ("table_schema", Text),
                ("table_name", Text),
                ("view_definition", Text),
                ("check_option", Text),
                ("is_updatable", Text),
                ("is_insertable_into", Text),
                ("is_trigger_updatable", Text),
                ("is_trigger_deletable", Text),
                ("is_trigger_insertable_into", Text),
            ],
            Vec::new(),
        ),
        "routines" => mem_table(
            &[
                ("specific_catalog", Text),
                ("specific_schema", Text),
                ("specific_name", Text),
                ("routine_catalog", Text),
                ("routine_schema", Text),
                ("routine_name", Text),
                ("routine_type", Text),
                ("data_type", Text),
                ("type_udt_name", Text),
                ("external_language", Text),
                ("routine_definition", Text),
            ],
            Vec::new(),
        ),
        _ => mem_table(
            &[
                ("specific_catalog", Text),
                ("specific_schema", Text),
                ("specific_name", Text),
                ("ordinal_position", I32),
                ("parameter_mode", Text),
                ("parameter_name", Text),
                ("data_type", Text),
                ("udt_name", Text),
            ],
            Vec::new(),
        ),
    }
}
