//! The operations API's connections: list, show and revoke them. Answers
//! serialize [`Connection`], which holds the names of a connection's
//! credentials and the id of the key that sealed them, never a value.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, store_error, OpsState};
use crate::connection::Connection;
use crate::engine::ConnectionError;
use crate::rejection::Rejection;

/// Query parameters of `GET /connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionsParams {
    integration: Option<String>,
}

fn not_found(integration: &str, id: &str) -> Rejection {
    Rejection::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("`{integration}` has no connection `{id}`"),
    )
}

pub(super) async fn list_connections(
    State(state): State<Arc<OpsState>>,
    params: Result<Query<ConnectionsParams>, QueryRejection>,
) -> Result<Json<Value>, Rejection> {
    let Query(params) = params.map_err(|e| bad_request(e.body_text()))?;
    let integration = params.integration.filter(|name| !name.is_empty());
    let rows = state
        .store
        .connections(integration.as_deref())
        .await
        .map_err(store_error)?;
    let connections: Vec<Connection> = rows
        .iter()
        .map(|row| crate::engine::shown(state.vault(), row))
        .collect();
    Ok(Json(json!({ "connections": connections })))
}

pub(super) async fn show_connection(
    State(state): State<Arc<OpsState>>,
    Path((integration, id)): Path<(String, String)>,
) -> Result<Json<Value>, Rejection> {
    let row = state
        .store
        .connection(&integration, &id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(&integration, &id))?;
    let connection = crate::engine::shown(state.vault(), &row);
    Ok(Json(json!({ "connection": connection })))
}

pub(super) async fn revoke_connection(
    State(state): State<Arc<OpsState>>,
    Path((integration, id)): Path<(String, String)>,
) -> Result<Json<Value>, Rejection> {
    let revoked = crate::engine::revoke(&state.events, state.vault(), &integration, &id)
        .await
        .map_err(|error: ConnectionError| {
            if error.is_not_found() {
                not_found(&integration, &id)
            } else {
                Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "store_error", error.to_string()).retry_after(5)
            }
        })?;
    Ok(Json(
        json!({ "connection": revoked.connection, "calls_failed": revoked.calls_failed }),
    ))
}
