//! Baton's own system catalog: what PostgreSQL's `pg_catalog` and `information_schema` say
//! about the views' tables, with PostgreSQL's column types, so that the catalog queries of
//! pgjdbc (Metabase, Tableau, DBeaver), SQLAlchemy and Grafana read what they would read from
//! PostgreSQL.
//!
//! Built from the catalog pinned for the query (so a candidate view appears and disappears
//! with its snapshot): a namespace per schema, a relation per table, an attribute per column,
//! and for a table with a key (`crate::describe`) its primary-key index and constraint;
//! descriptions from docs/views.md. Object ids are derived from names, so they stay the same
//! from one snapshot to the next. The rest of `pg_catalog` (types, functions, operators,
//! ...) is datafusion-pg-catalog's, a dump of PostgreSQL's own rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int16Builder, Int32Builder, ListBuilder,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::Result;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::oid_field::{kind, oid_field};

use super::tables::{CatalogSource, LIVE_SCHEMA, ServedCatalog};
use crate::describe;

/// The database's one user: owner of every relation and grantor of every privilege.
pub(super) const OWNER: &str = "baton";
/// The owner's oid (PostgreSQL's bootstrap superuser's).
const OWNER_OID: i64 = 10;
const PG_CATALOG_OID: i32 = 11;
const PUBLIC_OID: i32 = 2200;
const INFORMATION_SCHEMA_OID: i32 = 13_183;
/// `pg_class`'s own oid: `classoid` of a relation's description.
const PG_CLASS_OID: i64 = 1259;
/// The btree access method: every primary-key index.
const BTREE_OID: i64 = 403;
/// First oid PostgreSQL gives to user objects.
const FIRST_USER_OID: u32 = 16_384;

/// PostgreSQL's own catalog tables that clients name with `'pg_class'::regclass`.
const SYSTEM_RELATIONS: &[(i32, &str)] = &[
    (1247, "pg_type"),
    (1249, "pg_attribute"),
    (1255, "pg_proc"),
    (1259, "pg_class"),
    (1262, "pg_database"),
    (2606, "pg_constraint"),
    (2609, "pg_description"),
    (2610, "pg_index"),
    (2615, "pg_namespace"),
];

/// A PostgreSQL type, as the catalog names it.
#[derive(Clone, Copy, Debug)]
pub(super) struct PgType {
    pub(super) oid: i32,
    /// `pg_type.typname`, `information_schema.columns.udt_name`
    pub(super) udt: &'static str,
    /// `information_schema.columns.data_type`, `format_type()`
    pub(super) sql: &'static str,
    pub(super) len: i16,
    /// Binary precision (`numeric_precision`, radix 2) of a number type.
    pub(super) precision: Option<i32>,
}

impl PgType {
    fn of(data_type: &DataType) -> PgType {
        let (oid, udt, sql, len, precision) = match data_type {
            DataType::Int64 => (20, "int8", "bigint", 8, Some(64)),
            DataType::Int32 => (23, "int4", "integer", 4, Some(32)),
            DataType::Int16 => (21, "int2", "smallint", 2, Some(16)),
            DataType::Float64 => (701, "float8", "double precision", 8, Some(53)),
            DataType::Boolean => (16, "bool", "boolean", 1, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
                (1184, "timestamptz", "timestamp with time zone", 8, None)
            }
            DataType::Timestamp(_, _) => {
                (1114, "timestamp", "timestamp without time zone", 8, None)
            }
            _ => (25, "text", "text", -1, None),
        };
        PgType {
            oid,
            udt,
            sql,
            len,
            precision,
        }
    }
}

/// One column of a served table.
#[derive(Debug)]
pub(super) struct Attribute {
    pub(super) name: String,
    pub(super) pg: PgType,
    pub(super) description: Option<String>,
}

/// One served table.
#[derive(Debug)]
pub(super) struct Relation {
    pub(super) oid: i32,
    pub(super) namespace: i32,
    pub(super) schema: String,
    pub(super) name: String,
    /// Listed by catalog queries (the schema named after the live view is not: its tables
    /// are `public`'s).
    pub(super) listed: bool,
    pub(super) attributes: Vec<Attribute>,
    /// Attribute numbers (from 1) of the key, in key order; empty without one.
    pub(super) key: Vec<i16>,
    pub(super) index_oid: i32,
    pub(super) constraint_oid: i32,
    pub(super) description: Option<String>,
}

impl Relation {
    pub(super) fn key_name(&self) -> String {
        format!("{}_pkey", self.name)
    }
}

/// The served schemas and tables of one catalog, with their oids.
#[derive(Debug)]
pub(super) struct Relations {
    /// (oid, name, listed)
    pub(super) namespaces: Vec<(i32, String, bool)>,
    pub(super) tables: Vec<Relation>,
}

/// Oids by name, kept across snapshots (they are derived from names, so they do not change),
/// for the functions that take an oid or a name outside a query's pinned catalog:
/// `col_description`, `obj_description`, `'schema.table'::regclass`.
#[derive(Default)]
struct Registry {
    by_name: HashMap<(String, String), i32>,
    /// A relation's description and its columns', by relation oid.
    docs: HashMap<i32, RelationDoc>,
    /// Primary-key indexes and constraints (both oids): (schema, table, index name, columns).
    keys: HashMap<i32, KeyDoc>,
}

/// What `obj_description` and `col_description` answer for one relation.
#[derive(Clone, Debug)]
pub(super) struct RelationDoc {
    pub(super) description: Option<String>,
    pub(super) columns: Vec<Option<String>>,
}

/// What `pg_get_indexdef` and `pg_get_constraintdef` answer for one primary key.
#[derive(Clone, Debug)]
pub(super) struct KeyDoc {
    pub(super) schema: String,
    pub(super) table: String,
    pub(super) name: String,
    pub(super) columns: Vec<String>,
}

/// The documentation of a served relation's oid.
pub(super) fn relation_doc(oid: i32) -> Option<RelationDoc> {
    let registry = registry().read().unwrap_or_else(PoisonError::into_inner);
    registry.docs.get(&oid).cloned()
}

/// The primary key with this index or constraint oid.
pub(super) fn key_doc(oid: i32) -> Option<KeyDoc> {
    let registry = registry().read().unwrap_or_else(PoisonError::into_inner);
    registry.keys.get(&oid).cloned()
}

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The relation `name` (`table`, `schema.table`, either part quoted), as `::regclass`
/// resolves it: an unqualified name in `public`, then in `pg_catalog`.
pub(super) fn relation_oid(name: &str) -> Option<i32> {
    let parts: Vec<String> = split_qualified(name);
    let (schema, table) = match parts.as_slice() {
        [table] => (None, table.clone()),
        [schema, table] => (Some(schema.clone()), table.clone()),
        _ => return None,
    };
    if matches!(schema.as_deref(), None | Some("pg_catalog"))
        && let Some((oid, _)) = SYSTEM_RELATIONS.iter().find(|(_, n)| *n == table)
    {
        return Some(*oid);
    }
    let registry = registry().read().unwrap_or_else(PoisonError::into_inner);
    let schema = schema.unwrap_or_else(|| LIVE_SCHEMA.to_owned());
    registry.by_name.get(&(schema, table)).copied()
}

/// `a.b`, `"a"."b"`, `b`: the parts, unquoted (unquoted parts folded to lower case).
fn split_qualified(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = name.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(finish(&mut current, was_quoted));
                was_quoted = false;
            }
            c => current.push(c),
        }
    }
    parts.push(finish(&mut current, was_quoted));
    parts
}

fn finish(part: &mut String, quoted: bool) -> String {
    let text = std::mem::take(part);
    if quoted { text } else { text.to_lowercase() }
}

/// FNV-1a: a stable hash (the same in every build and process) for deriving oids.
fn stable_hash(parts: &[&str]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}

/// An oid in the user range for `parts`, not in `taken`.
fn derive_oid(parts: &[&str], taken: &mut HashSet<i32>) -> i32 {
    let span = i32::MAX as u32 - FIRST_USER_OID;
    let mut oid = (FIRST_USER_OID + stable_hash(parts) % span) as i32;
    while !taken.insert(oid) {
        oid = if oid == i32::MAX {
            FIRST_USER_OID as i32
        } else {
            oid + 1
        };
    }
    oid
}

impl Relations {
    pub(super) fn of(served: &ServedCatalog) -> Relations {
        let mut taken: HashSet<i32> = SYSTEM_RELATIONS.iter().map(|(oid, _)| *oid).collect();
        taken.extend([PG_CATALOG_OID, PUBLIC_OID, INFORMATION_SCHEMA_OID]);
        let mut namespaces = vec![
            (PG_CATALOG_OID, "pg_catalog".to_owned(), true),
            (
                INFORMATION_SCHEMA_OID,
                "information_schema".to_owned(),
                true,
            ),
        ];
        let mut tables = Vec::new();
        for (schema, schema_tables, listed) in served.schemas_with_tables() {
            let namespace = if schema == LIVE_SCHEMA {
                PUBLIC_OID
            } else {
                derive_oid(&[schema], &mut taken)
            };
            namespaces.push((namespace, schema.to_owned(), listed));
            for (table, arrow) in schema_tables {
                let doc = describe::table_doc(table);
                let attributes: Vec<Attribute> = arrow
                    .fields()
                    .iter()
                    .map(|field| Attribute {
                        name: field.name().clone(),
                        pg: PgType::of(field.data_type()),
                        description: doc.and_then(|doc| doc.columns.get(field.name()).cloned()),
                    })
                    .collect();
                let key: Vec<i16> = describe::key_of(table)
                    .iter()
                    .filter_map(|column| {
                        let at = attributes.iter().position(|a| a.name == *column)?;
                        i16::try_from(at + 1).ok()
                    })
                    .collect();
                tables.push(Relation {
                    oid: derive_oid(&[schema, table], &mut taken),
                    namespace,
                    schema: schema.to_owned(),
                    name: table.to_owned(),
                    listed,
                    attributes,
                    index_oid: derive_oid(&[schema, table, "pkey"], &mut taken),
                    constraint_oid: derive_oid(&[schema, table, "pkey", "constraint"], &mut taken),
                    key,
                    description: doc.map(|doc| doc.description.clone()),
                });
            }
        }
        let mut registry = registry().write().unwrap_or_else(PoisonError::into_inner);
        for table in &tables {
            let name = (table.schema.clone(), table.name.clone());
            registry.by_name.insert(name, table.oid);
            registry.docs.insert(
                table.oid,
                RelationDoc {
                    description: table.description.clone(),
                    columns: table
                        .attributes
                        .iter()
                        .map(|attribute| attribute.description.clone())
                        .collect(),
                },
            );
            if !table.key.is_empty() {
                let key = KeyDoc {
                    schema: table.schema.clone(),
                    table: table.name.clone(),
                    name: table.key_name(),
                    columns: table
                        .key
                        .iter()
                        .map(|attnum| table.attributes[*attnum as usize - 1].name.clone())
                        .collect(),
                };
                registry.keys.insert(table.index_oid, key.clone());
                registry.keys.insert(table.constraint_oid, key);
            }
        }
        Relations { namespaces, tables }
    }

    /// The listed tables.
    pub(super) fn listed(&self) -> impl Iterator<Item = &Relation> {
        self.tables.iter().filter(|table| table.listed)
    }
}

/// A column of a system table.
#[derive(Clone, Copy)]
pub(super) enum Col {
    /// `oid` (int4 in Arrow, reported as `oid`)
    Oid,
    Text,
    /// PostgreSQL's one-byte `"char"` (`relkind`, `contype`), served as text
    Char,
    I16,
    I32,
    F64,
    Bool,
    /// `int2[]` (`pg_constraint.conkey`)
    I16s,
}

/// One cell of a system table.
pub(super) enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Ints(Vec<i16>),
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::Text(text.to_owned())
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::Text(text)
    }
}

impl From<Option<String>> for Cell {
    fn from(text: Option<String>) -> Cell {
        text.map_or(Cell::Null, Cell::Text)
    }
}

impl From<i64> for Cell {
    fn from(int: i64) -> Cell {
        Cell::Int(int)
    }
}

impl From<i32> for Cell {
    fn from(int: i32) -> Cell {
        Cell::Int(int.into())
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Cell {
        Cell::Bool(b)
    }
}

/// A system table of these columns and rows.
pub(super) fn mem_table(columns: &[(&str, Col)], rows: Vec<Vec<Cell>>) -> Result<Arc<MemTable>> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, col)| match col {
            Col::Oid => oid_field(*name, kind::OID, true),
            Col::Text => Field::new(*name, DataType::Utf8, true),
            // Text rather than `"char"`: pgwire's layer decodes a `"char"` parameter as a
            // number, so `attidentity = $1` with a text parameter (SQLAlchemy's reflection
            // through psycopg 3) would fail.
            Col::Char => Field::new(*name, DataType::Utf8, true),
            Col::I16 => Field::new(*name, DataType::Int16, true),
            Col::I32 => Field::new(*name, DataType::Int32, true),
            Col::F64 => Field::new(*name, DataType::Float64, true),
            Col::Bool => Field::new(*name, DataType::Boolean, true),
            Col::I16s => Field::new(
                *name,
                DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
                true,
            ),
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .enumerate()
        .map(|(at, (_, col))| column_array(*col, rows.iter().map(|row| &row[at])))
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn column_array<'a>(col: Col, cells: impl Iterator<Item = &'a Cell>) -> ArrayRef {
    fn int(cell: &Cell) -> Option<i64> {
        match cell {
            Cell::Int(int) => Some(*int),
            _ => None,
        }
    }
    match col {
        Col::Oid | Col::I32 => {
            let mut b = Int32Builder::new();
            cells.for_each(|c| b.append_option(int(c).and_then(|i| i32::try_from(i).ok())));
            Arc::new(b.finish())
        }
        Col::I16 => {
            let mut b = Int16Builder::new();
            cells.for_each(|c| b.append_option(int(c).and_then(|i| i16::try_from(i).ok())));
            Arc::new(b.finish())
        }
        Col::F64 => {
            let mut b = Float64Builder::new();
            cells.for_each(|c| {
                b.append_option(match c {
                    Cell::Float(f) => Some(*f),
                    Cell::Int(i) => Some(*i as f64),
                    _ => None,
                })
            });
            Arc::new(b.finish())
        }
        Col::Bool => {
            let mut b = BooleanBuilder::new();
            cells.for_each(|c| {
                b.append_option(match c {
                    Cell::Bool(v) => Some(*v),
                    _ => None,
                })
            });
            Arc::new(b.finish())
        }
        Col::Text | Col::Char => {
            let mut b = StringBuilder::new();
            cells.for_each(|c| {
                b.append_option(match c {
                    Cell::Text(t) => Some(t.as_str()),
                    _ => None,
                })
            });
            Arc::new(b.finish())
        }
        Col::I16s => {
            let mut b = ListBuilder::new(Int16Builder::new());
            for c in cells {
                match c {
                    Cell::Ints(values) => {
                        b.values().append_slice(values);
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// The tables of `pg_catalog` this module answers; the rest are datafusion-pg-catalog's.
const PG_CATALOG_TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_index",
    "pg_constraint",
    "pg_description",
    "pg_settings",
    "pg_tables",
    "pg_roles",
    "pg_user",
];

/// `int2vector`'s text form: `1 2`.
fn int2vector(values: &[i16]) -> String {
    values
        .iter()
        .map(i16::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The privileges of every served table: SELECT, granted to everyone, as `aclitem[]` text.
const RELACL: &str = "{=r/baton}";

fn pg_catalog_table(name: &str, relations: &Relations) -> Result<Option<Arc<MemTable>>> {
    use Col::*;
    let table = match name {
        "pg_namespace" => mem_table(
            &[
                ("oid", Oid),
                ("nspname", Text),
                ("nspowner", Oid),
                ("nspacl", Text),
                ("options", Text),
            ],
            relations
                .namespaces
                .iter()
                .filter(|(_, _, listed)| *listed)
                .map(|(oid, name, _)| {
                    vec![
                        (*oid).into(),
                        name.as_str().into(),
                        OWNER_OID.into(),
                        Cell::Null,
                        Cell::Null,
                    ]
                })
                .collect(),
        )?,
        "pg_class" => {
            let mut rows = Vec::new();
            for (oid, name) in SYSTEM_RELATIONS {
                rows.push(class_row(*oid, name, PG_CATALOG_OID, "r", 0, false, 0));
            }
            for table in relations.listed() {
                let natts = table.attributes.len() as i64;
                let mut row = class_row(
                    table.oid,
                    &table.name,
                    table.namespace,
                    "r",
                    natts,
                    !table.key.is_empty(),
                    0,
                );
                row[33] = RELACL.into();
                rows.push(row);
                if !table.key.is_empty() {
                    rows.push(class_row(
                        table.index_oid,
                        &table.key_name(),
                        table.namespace,
                        "i",
                        table.key.len() as i64,
                        false,
                        BTREE_OID,
                    ));
                }
            }
            mem_table(PG_CLASS_COLUMNS, rows)?
        }
        "pg_attribute" => {
            let mut rows = Vec::new();
            for table in relations.listed() {
                for (at, attribute) in table.attributes.iter().enumerate() {
                    let attnum = at as i64 + 1;
                    let in_key = table.key.iter().any(|k| i64::from(*k) == attnum);
                    rows.push(attribute_row(table.oid, attribute, attnum, in_key));
                }
                for (at, attnum) in table.key.iter().enumerate() {
                    let attribute = &table.attributes[*attnum as usize - 1];
                    rows.push(attribute_row(
                        table.index_oid,
                        attribute,
                        at as i64 + 1,
                        true,
                    ));
                }
            }
            mem_table(PG_ATTRIBUTE_COLUMNS, rows)?
        }
        "pg_index" => mem_table(
            &[
                ("indexrelid", Oid),
                ("indrelid", Oid),
                ("indnatts", I16),
                ("indnkeyatts", I16),
                ("indisunique", Bool),
                ("indnullsnotdistinct", Bool),
                ("indisprimary", Bool),
                ("indisexclusion", Bool),
                ("indimmediate", Bool),
                ("indisclustered", Bool),
                ("indisvalid", Bool),
                ("indcheckxmin", Bool),
                ("indisready", Bool),
                ("indislive", Bool),
                ("indisreplident", Bool),
                ("indkey", Text),
                ("indcollation", Text),
                ("indclass", Text),
                ("indoption", I16s),
                ("indexprs", Text),
                ("indpred", Text),
            ],
            relations
                .listed()
                .filter(|table| !table.key.is_empty())
                .map(|table| {
                    let n = table.key.len() as i64;
                    let zeros = vec![0i16; table.key.len()];
                    vec![
                        table.index_oid.into(),
                        table.oid.into(),
                        n.into(),
                        n.into(),
                        true.into(),
                        false.into(),
                        true.into(),
                        false.into(),
                        true.into(),
                        false.into(),
                        true.into(),
                        false.into(),
                        true.into(),
                        true.into(),
                        false.into(),
                        int2vector(&table.key).into(),
                        int2vector(&zeros).into(),
                        int2vector(&zeros).into(),
                        Cell::Ints(zeros),
                        Cell::Null,
                        Cell::Null,
                    ]
                })
                .collect(),
        )?,
        "pg_constraint" => mem_table(
            &[
                ("oid", Oid),
                ("conname", Text),
                ("connamespace", Oid),
                ("contype", Char),
                ("condeferrable", Bool),
                ("condeferred", Bool),
                ("convalidated", Bool),
                ("conrelid", Oid),
                ("contypid", Oid),
                ("conindid", Oid),
                ("conparentid", Oid),
                ("confrelid", Oid),
                ("confupdtype", Char),
                ("confdeltype", Char),
                ("confmatchtype", Char),
                ("conislocal", Bool),
                ("coninhcount", I16),
                ("connoinherit", Bool),
                ("conkey", I16s),
                ("confkey", I16s),
                ("conpfeqop", Text),
                ("conppeqop", Text),
                ("conffeqop", Text),
                ("confdelsetcols", I16s),
                ("conexclop", Text),
                ("conbin", Text),
            ],
            relations
                .listed()
                .filter(|table| !table.key.is_empty())
                .map(|table| {
                    vec![
                        table.constraint_oid.into(),
                        table.key_name().into(),
                        table.namespace.into(),
                        "p".into(),
                        false.into(),
                        false.into(),
                        true.into(),
                        table.oid.into(),
                        0i64.into(),
                        table.index_oid.into(),
                        0i64.into(),
                        0i64.into(),
                        " ".into(),
                        " ".into(),
                        " ".into(),
                        true.into(),
                        0i64.into(),
                        true.into(),
                        Cell::Ints(table.key.clone()),
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                        Cell::Null,
                    ]
                })
                .collect(),
        )?,
        "pg_description" => {
            let mut rows = Vec::new();
            for table in relations.listed() {
                let mut describe = |subid: i64, text: &Option<String>| {
                    if let Some(text) = text {
                        rows.push(vec![
                            table.oid.into(),
                            PG_CLASS_OID.into(),
                            subid.into(),
                            text.as_str().into(),
                        ]);
                    }
                };
                describe(0, &table.description);
                for (at, attribute) in table.attributes.iter().enumerate() {
                    describe(at as i64 + 1, &attribute.description);
                }
            }
            mem_table(
                &[
                    ("objoid", Oid),
                    ("classoid", Oid),
                    ("objsubid", I32),
                    ("description", Text),
                ],
                rows,
            )?
        }
        "pg_settings" => mem_table(
            &[
                ("name", Text),
                ("setting", Text),
                ("unit", Text),
                ("category", Text),
                ("short_desc", Text),
                ("extra_desc", Text),
                ("context", Text),
                ("vartype", Text),
                ("source", Text),
                ("min_val", Text),
                ("max_val", Text),
                ("enumvals", Text),
                ("boot_val", Text),
                ("reset_val", Text),
                ("sourcefile", Text),
                ("sourceline", I32),
                ("pending_restart", Bool),
            ],
            SETTINGS
                .iter()
                .map(|(name, setting, vartype, description)| {
                    let mut row: Vec<Cell> = vec![
                        (*name).into(),
                        (*setting).into(),
                        Cell::Null,
                        "Preset Options".into(),
                        (*description).into(),
                        Cell::Null,
                        "internal".into(),
                        (*vartype).into(),
                        "default".into(),
                    ];
                    row.extend([Cell::Null, Cell::Null, Cell::Null]);
                    row.extend([(*setting).into(), (*setting).into()]);
                    row.extend([Cell::Null, Cell::Null, false.into()]);
                    row
                })
                .collect(),
        )?,
        "pg_tables" => mem_table(
            &[
                ("schemaname", Text),
                ("tablename", Text),
                ("tableowner", Text),
                ("tablespace", Text),
                ("hasindexes", Bool),
                ("hasrules", Bool),
                ("hastriggers", Bool),
                ("rowsecurity", Bool),
            ],
            relations
                .listed()
                .map(|table| {
                    vec![
                        table.schema.as_str().into(),
                        table.name.as_str().into(),
                        OWNER.into(),
                        Cell::Null,
                        (!table.key.is_empty()).into(),
                        false.into(),
                        false.into(),
                        false.into(),
                    ]
                })
                .collect(),
        )?,
        // One role: the owner of every relation, which grants SELECT to everyone.
        "pg_roles" => mem_table(
            &[
                ("rolname", Text),
                ("rolsuper", Bool),
                ("rolinherit", Bool),
                ("rolcreaterole", Bool),
                ("rolcreatedb", Bool),
                ("rolcanlogin", Bool),
                ("rolreplication", Bool),
                ("rolconnlimit", I32),
                ("rolpassword", Text),
                ("rolvaliduntil", Text),
                ("rolbypassrls", Bool),
                ("rolconfig", Text),
                ("oid", Oid),
            ],
            vec![vec![
                OWNER.into(),
                false.into(),
                true.into(),
                false.into(),
                false.into(),
                false.into(),
                false.into(),
                (-1i64).into(),
                "********".into(),
                Cell::Null,
                false.into(),
                Cell::Null,
                OWNER_OID.into(),
            ]],
        )?,
        "pg_user" => mem_table(
            &[
                ("usename", Text),
                ("usesysid", Oid),
                ("usecreatedb", Bool),
                ("usesuper", Bool),
                ("userepl", Bool),
                ("usebypassrls", Bool),
                ("passwd", Text),
                ("valuntil", Text),
                ("useconfig", Text),
            ],
            vec![vec![
                OWNER.into(),
                OWNER_OID.into(),
                false.into(),
                false.into(),
                false.into(),
                false.into(),
                "********".into(),
                Cell::Null,
                Cell::Null,
            ]],
        )?,
        _ => return Ok(None),
    };
    Ok(Some(table))
}

/// The settings clients read from `pg_settings`: (name, setting, vartype, description).
const SETTINGS: &[(&str, &str, &str, &str)] = &[
    (
        "max_index_keys",
        "32",
        "integer",
        "Shows the maximum number of index keys.",
    ),
    (
        "max_identifier_length",
        "63",
        "integer",
        "Shows the maximum identifier length.",
    ),
    (
        "server_version",
        "16.6",
        "string",
        "Shows the server version.",
    ),
    (
        "server_version_num",
        "160006",
        "integer",
        "Shows the server version as an integer.",
    ),
    (
        "server_encoding",
        "UTF8",
        "string",
        "Shows the server (database) character set encoding.",
    ),
    (
        "block_size",
        "8192",
        "integer",
        "Shows the size of a disk block.",
    ),
    (
        "integer_datetimes",
        "on",
        "bool",
        "Shows whether datetimes are integer based.",
    ),
    (
        "standard_conforming_strings",
        "on",
        "bool",
        "Causes '...' strings to treat backslashes literally.",
    ),
    (
        "default_transaction_read_only",
        "on",
        "bool",
        "Sets the default read-only status of new transactions.",
    ),
    (
        "TimeZone",
        "UTC",
        "string",
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    (
        "DateStyle",
        "ISO, MDY",
        "string",
        "Sets the display format for date and time values.",
    ),
];

const PG_CLASS_COLUMNS: &[(&str, Col)] = &[
    ("oid", Col::Oid),
    ("relname", Col::Text),
    ("relnamespace", Col::Oid),
    ("reltype", Col::Oid),
    ("reloftype", Col::Oid),
    ("relowner", Col::Oid),
    ("relam", Col::Oid),
    ("relfilenode", Col::Oid),
    ("reltablespace", Col::Oid),
    ("relpages", Col::I32),
    ("reltuples", Col::F64),
    ("relallvisible", Col::I32),
    ("reltoastrelid", Col::Oid),
    ("relhasindex", Col::Bool),
    ("relisshared", Col::Bool),
    ("relpersistence", Col::Char),
    ("relkind", Col::Char),
    ("relnatts", Col::I16),
    ("relchecks", Col::I16),
    ("relhasrules", Col::Bool),
    ("relhastriggers", Col::Bool),
    ("relhassubclass", Col::Bool),
    ("relrowsecurity", Col::Bool),
    ("relforcerowsecurity", Col::Bool),
    ("relispopulated", Col::Bool),
    ("relreplident", Col::Char),
    ("relispartition", Col::Bool),
    ("relrewrite", Col::Oid),
    ("relfrozenxid", Col::I32),
    ("relminmxid", Col::I32),
    ("relpartbound", Col::Text),
    ("reloptions", Col::Text),
    ("relhasoids", Col::Bool),
    ("relacl", Col::Text),
];

fn class_row(
    oid: i32,
    name: &str,
    namespace: i32,
    kind: &str,
    natts: i64,
    has_index: bool,
    am: i64,
) -> Vec<Cell> {
    vec![
        oid.into(),
        name.into(),
        namespace.into(),
        0i64.into(),
        0i64.into(),
        OWNER_OID.into(),
        am.into(),
        0i64.into(),
        0i64.into(),
        0i64.into(),
        Cell::Float(-1.0),
        0i64.into(),
        0i64.into(),
        has_index.into(),
        false.into(),
        "p".into(),
        kind.into(),
        natts.into(),
        0i64.into(),
        false.into(),
        false.into(),
        false.into(),
        false.into(),
        false.into(),
        true.into(),
        "n".into(),
        false.into(),
        0i64.into(),
        0i64.into(),
        0i64.into(),
        Cell::Null,
        Cell::Null,
        false.into(),
        Cell::Null,
    ]
}

const PG_ATTRIBUTE_COLUMNS: &[(&str, Col)] = &[
    ("attrelid", Col::Oid),
    ("attname", Col::Text),
    ("atttypid", Col::Oid),
    ("attstattarget", Col::I32),
    ("attlen", Col::I16),
    ("attnum", Col::I16),
    ("attndims", Col::I32),
    ("attcacheoff", Col::I32),
    ("atttypmod", Col::I32),
    ("attbyval", Col::Bool),
    ("attalign", Col::Char),
    ("attstorage", Col::Char),
    ("attcompression", Col::Char),
    ("attnotnull", Col::Bool),
    ("atthasdef", Col::Bool),
    ("atthasmissing", Col::Bool),
    ("attidentity", Col::Char),
    ("attgenerated", Col::Char),
    ("attisdropped", Col::Bool),
    ("attislocal", Col::Bool),
    ("attinhcount", Col::I32),
    ("attcollation", Col::Oid),
    ("attacl", Col::Text),
    ("attoptions", Col::Text),
    ("attfdwoptions", Col::Text),
    ("attmissingval", Col::Text),
];

fn attribute_row(relation: i32, attribute: &Attribute, attnum: i64, not_null: bool) -> Vec<Cell> {
    let text = attribute.pg.oid == 25;
    vec![
        relation.into(),
        attribute.name.as_str().into(),
        attribute.pg.oid.into(),
        (-1i64).into(),
        i64::from(attribute.pg.len).into(),
        attnum.into(),
        0i64.into(),
        (-1i64).into(),
        (-1i64).into(),
        (!text).into(),
        if text { "i" } else { "d" }.into(),
        if text { "x" } else { "p" }.into(),
        "".into(),
        not_null.into(),
        false.into(),
        false.into(),
        "".into(),
        "".into(),
        false.into(),
        true.into(),
        0i64.into(),
        // The default collation for text, none for other types.
        if text { 100i64 } else { 0 }.into(),
        Cell::Null,
        Cell::Null,
        Cell::Null,
        Cell::Null,
    ]
}

/// `pg_catalog`: this module's tables, else datafusion-pg-catalog's.
#[derive(Debug)]
pub(super) struct PgCatalogSchema {
    pub(super) fallback: Arc<dyn SchemaProvider>,
    pub(super) source: Arc<CatalogSource>,
}

/// The system tables of the pinned catalog, built once per catalog.
pub(super) fn relations(source: &CatalogSource) -> Result<Arc<Relations>> {
    let served = source.pinned_or_current()?;
    Ok(served.relations())
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: BTreeMap<String, ()> = self
            .fallback
            .table_names()
            .into_iter()
            .map(|name| (name, ()))
            .collect();
        names.extend(
            PG_CATALOG_TABLES
                .iter()
                .map(|name| ((*name).to_owned(), ())),
        );
        names.into_keys().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if PG_CATALOG_TABLES.contains(&name) {
            let relations = relations(&self.source)?;
            return Ok(pg_catalog_table(name, &relations)?.map(|t| t as Arc<dyn TableProvider>));
        }
        self.fallback.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        PG_CATALOG_TABLES.contains(&name) || self.fallback.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_as_postgresql_reads_them() {
        assert_eq!(split_qualified("public.People"), ["public", "people"]);
        assert_eq!(split_qualified("\"Strict\".\"a\"\"b\""), ["Strict", "a\"b"]);
        assert_eq!(split_qualified("campaigns"), ["campaigns"]);
    }

    #[test]
    fn derived_oids_are_stable_and_distinct() {
        let mut taken = HashSet::new();
        let a = derive_oid(&["public", "campaigns"], &mut taken);
        let again = derive_oid(&["public", "campaigns"], &mut HashSet::new());
        assert_eq!(a, again);
        let b = derive_oid(&["public", "campaigns"], &mut taken);
        assert_ne!(a, b, "a taken oid is not given twice");
        assert!(a >= FIRST_USER_OID as i32);
    }
}
