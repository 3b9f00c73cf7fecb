//! The OpenAPI 3.1 document of the query routes, served at `/openapi.json`.

use crate::table::ViewKind;

fn table_names() -> Vec<&'static str> {
    // The names are fixed by the view code; listing them from an empty projection keeps the
    // document in step with it.
    let projection =
        baton_core::FunnelProjection::new(baton_core::FunnelDefinition::default_funnel());
    ViewKind::ALL
        .into_iter()
        .flat_map(|kind| crate::table::tables(&projection, kind))
        .map(|table| table.name)
        .collect()
}

/// The document.
pub fn document() -> serde_json::Value {
    let wait = serde_json::json!([
        {"name": "min_position", "in": "query", "schema": {"type": "integer", "minimum": 0},
         "description": "Answer only once the views reflect this log position (read your own writes); 503 with Retry-After if not reached within wait_ms."},
        {"name": "wait_ms", "in": "query", "schema": {"type": "integer", "maximum": 30000},
         "description": "How long to wait for min_position (default 10000)."}
    ]);
    let position_header = serde_json::json!({
        "Baton-Position": {"description": "The log position the answer reflects.", "schema": {"type": "integer"}},
        "Baton-View": {"description": "The stored view the answer comes from.", "schema": {"type": "string"}}
    });
    let error = serde_json::json!({
        "description": "An error naming what is wrong.",
        "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}
    });
    let mut table_parameters = vec![
        serde_json::json!({"name": "table", "in": "path", "required": true,
            "schema": {"type": "string", "enum": table_names()}}),
        serde_json::json!({"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]},
            "description": "csv, or send Accept: text/csv; JSON by default."}),
        serde_json::json!({"name": "limit", "in": "query", "description": "Rows of a page; without limit or offset, every matching row.", "schema": {"type": "integer", "minimum": 0, "maximum": 100000}}),
        serde_json::json!({"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}}),
        serde_json::json!({"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"},
            "description": "Rows whose time column is at or after this (tables with a time column)."}),
        serde_json::json!({"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"},
            "description": "Rows whose time column is before this."}),
    ];
    table_parameters.extend(wait.as_array().cloned().unwrap_or_default());
    let mut sql_parameters = vec![
        serde_json::json!({"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]},
            "description": "csv, or send Accept: text/csv; JSON by default."}),
    ];
    sql_parameters.extend(wait.as_array().cloned().unwrap_or_default());
    let sql_error = serde_json::json!({
        "description": "An error naming what is wrong, with PostgreSQL's SQLSTATE and, where they help, a detail and a hint.",
        "content": {"application/json": {"schema": {"type": "object", "properties": {
            "error": {"type": "string"}, "sqlstate": {"type": "string"},
            "detail": {"type": "string"}, "hint": {"type": "string"}
        }, "required": ["error"]}}}
    });
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Baton query API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The marketing, sales and shared-funnel views as tables (docs/views.md). Any other query parameter naming a column filters rows by exact value, e.g. ?owner=sdr.maya or ?dimension=channel. Authorization: Bearer READ_TOKEN when read tokens are configured; otherwise loopback clients only."
        },
        "components": {"securitySchemes": {"read_token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"read_token": []}],
        "paths": {
            "/v1/views": {"get": {
                "summary": "The tables, their columns and row counts, and the position of the views.",
                "parameters": wait,
                "responses": {"200": {"description": "The tables.", "headers": position_header}, "401": error, "503": error}
            }},
            "/v1/views/{table}": {"get": {
                "summary": "The rows of one table (JSON or CSV), filtered and paginated.",
                "parameters": table_parameters,
                "responses": {
                    "200": {"description": "{table, view, position, total, rows: [{column: value}]}; CSV with a header row (RFC 4180).",
                            "headers": position_header,
                            "content": {"application/json": {}, "text/csv": {}}},
                    "400": error, "401": error, "404": error, "503": error
                }
            }},
            "/v1/funnel": {"get": {
                "summary": "The shared-funnel summary: totals and stages.",
                "parameters": wait,
                "responses": {"200": {"description": "{view, position, totals, stages}", "headers": position_header}, "401": error, "503": error}
            }},
            "/v1/dashboard": {"get": {
                "summary": "Every panel of the dashboard from one snapshot: KPIs, charts (SVG) and the table behind each. `from`/`to` (RFC 3339) and `industry`/`region`/`size` filter the tables that carry them.",
                "parameters": wait,
                "responses": {"200": {"description": "{view, definition, definition_hash, position, as_of, filters, segments, panels}", "headers": position_header}, "400": error, "401": error, "503": error}
            }},
            "/v1/comparisons": {"get": {
                "summary": "The candidate views served, each with whether a comparison with the live definition is kept.",
                "responses": {"200": {"description": "{candidates: [{candidate, definition, definition_hash, position, comparison}]}"}, "401": error}
            }},
            "/v1/comparisons/{candidate}": {"get": {
                "summary": "A candidate's kept comparison with the live definition, as `baton compare --json` prints it: stages matched by name, who becomes an MQL under which definition and how they ended, the follow-up load.",
                "parameters": [{"name": "candidate", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "{live, candidate, stages, mql_both, mql_only_live, mql_only_candidate, sla_load, outcomes_at}"}, "401": error, "404": error}
            }},
            "/v1/backtests": {
                "post": {
                    "summary": "Starts a backtest: the funnel definition in the body (TOML, as `baton replay --funnel FILE` reads it) and the live definition folded in memory to the log's head in one reading of the log, compared. With `keep`, the candidate is then kept whole as a candidate view of that name (to compare again or promote, as `baton replay --name` keeps one); otherwise nothing is stored. One runs at a time.",
                    "parameters": [{"name": "keep", "in": "query", "required": false, "schema": {"type": "string"}, "description": "keep the candidate as a view of this name once compared (1 to 64 letters, digits, `-` or `_`); a name already taken fails the backtest before it folds"}],
                    "requestBody": {"required": true, "content": {"application/toml": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}}},
                    "responses": {
                        "202": {"description": "{id, href, definition, definition_hash, keep, state: running, elapsed_seconds, progress: {phase (folding, then keeping), reached, until, fraction}}; Location: the backtest's href"},
                        "400": {"description": "an unknown query parameter: {error}"},
                        "401": error, "404": error, "409": {"description": "another backtest is running: {error, running}"}, "413": error,
                        "422": {"description": "the definition is invalid, or `keep` is not a view name: {error} naming each problem by line"}
                    }
                },
                "get": {
                    "summary": "The kept backtests (the running one and the last 16 finished), newest first, without their comparisons.",
                    "responses": {"200": {"description": "{backtests: [...]}"}, "401": error, "404": error}
                }
            },
            "/v1/backtests/{id}": {"get": {
                "summary": "One backtest: running (phase, how far it got and goes: positions while folding, entries while keeping), done (with the comparison `baton replay --funnel FILE --no-keep --json` prints), or failed (why).",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "{id, href, definition, definition_hash, keep, state, elapsed_seconds, progress | comparison | error}"}, "401": error, "404": error}
            }},
            "/v1/people/{person}": {"get": {
                "summary": "One person: scores and place, hand-offs, opportunities.",
                "parameters": [{"name": "person", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "{view, position, person, handoffs, opportunities}", "headers": position_header}, "401": error, "404": error, "503": error}
            }},
            "/v1/sql": {"post": {
                "summary": "One read-only SQL query over the views (the PostgreSQL endpoint's tables), answered as JSON or CSV at one log position.",
                "parameters": sql_parameters,
                "requestBody": {"required": true, "content": {
                    "application/sql": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
                }},
                "responses": {
                    "200": {"description": "{view, position, columns: [{name, type}], rows: [{column: value}], row_count, truncated}; CSV with a header row. At most 100000 rows: more sets truncated (and Baton-Truncated: true).",
                            "headers": position_header,
                            "content": {"application/json": {}, "text/csv": {}}},
                    "400": sql_error, "401": error, "403": sql_error, "413": error, "415": error, "422": sql_error,
                    "500": sql_error, "501": error, "503": error
                }
            }},
            "/healthz": {"get": {"summary": "The process is up.", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Ready once the views reflect the log's head.", "responses": {"200": {"description": "ready"}, "503": {"description": "catching up"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics: projector checkpoint, head and lag, query counts.", "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
            "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        }
    })
}
