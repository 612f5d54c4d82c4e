//! Request and response bodies of the Iceberg REST catalog, as named in the
//! REST spec (apache/iceberg `open-api/rest-catalog-open-api.yaml`). Table
//! metadata, schemas, specs, requirements and updates are iceberg-rust's own
//! serde types, so their JSON is the spec's.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{
    Schema, SortOrder, TableMetadata, UnboundPartitionSpec, ViewMetadata, ViewVersion,
};
use iceberg::{TableIdent, TableRequirement, TableUpdate, ViewUpdate};
use icefjord_catalog::ViewRequirement;
use serde::{Deserialize, Serialize};

/// `GET /v1/config`.
#[derive(Debug, Serialize)]
pub struct CatalogConfig {
    pub defaults: BTreeMap<String, String>,
    pub overrides: BTreeMap<String, String>,
    /// The routes this server implements (`"GET /v1/{prefix}/namespaces"`),
    /// so clients do not call what is missing.
    pub endpoints: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct ListNamespacesResponse {
    pub namespaces: Vec<Vec<String>>,
    #[serde(rename = "next-page-token", skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CreateNamespaceRequest {
    pub namespace: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Create and load of a namespace.
#[derive(Debug, Serialize)]
pub struct NamespaceResponse {
    pub namespace: Vec<String>,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateNamespacePropertiesRequest {
    #[serde(default)]
    pub removals: Vec<String>,
    #[serde(default)]
    pub updates: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct UpdateNamespacePropertiesResponse {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ListTablesResponse {
    pub identifiers: Vec<TableIdent>,
    #[serde(rename = "next-page-token", skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateTableRequest {
    pub name: String,
    pub location: Option<String>,
    pub schema: Schema,
    pub partition_spec: Option<UnboundPartitionSpec>,
    pub write_order: Option<SortOrder>,
    #[serde(default)]
    pub stage_create: bool,
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// Load, create and commit of a table (`LoadTableResult`,
/// `CommitTableResponse`). `metadata-location` is absent for a staged create.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadTableResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_location: Option<String>,
    pub metadata: TableMetadata,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct CommitTableRequest {
    pub identifier: Option<TableIdent>,
    #[serde(default)]
    pub requirements: Vec<TableRequirement>,
    #[serde(default)]
    pub updates: Vec<TableUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTransactionRequest {
    pub table_changes: Vec<CommitTableRequest>,
}

#[derive(Debug, Deserialize)]
pub struct RenameTableRequest {
    pub source: TableIdent,
    pub destination: TableIdent,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterTableRequest {
    pub name: String,
    pub metadata_location: String,
    #[serde(default)]
    pub overwrite: bool,
}

/// The spec's `ErrorModel`, wrapped as `{"error": {…}}` (`IcebergErrorResponse`).
#[derive(Debug, Serialize)]
pub struct ErrorResponse {
    pub error: ErrorModel,
}

#[derive(Debug, Serialize)]
pub struct ErrorModel {
    pub message: String,
    /// The Java exception name clients map to their own (`NoSuchTableException`).
    pub r#type: &'static str,
    pub code: u16,
}

/// `POST /v1/oauth/tokens` form (RFC 6749 §4.4, client credentials).
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    pub grant_type: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

/// `POST /v1/oauth/tokens` answer (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub issued_token_type: &'static str,
    pub scope: String,
}

/// An OAuth2 error (RFC 6749 §5.2), which the token endpoint answers with.
#[derive(Debug, Serialize)]
pub struct OAuthError {
    pub error: &'static str,
    pub error_description: String,
}

/// `POST …/namespaces/{ns}/views`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateViewRequest {
    pub name: String,
    pub location: Option<String>,
    pub schema: Schema,
    pub view_version: ViewVersion,
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// Load, create and replace of a view (`LoadViewResult`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadViewResult {
    pub metadata_location: String,
    pub metadata: ViewMetadata,
    pub config: BTreeMap<String, String>,
}

/// `POST …/views/{view}` (`CommitViewRequest`).
#[derive(Debug, Deserialize)]
pub struct CommitViewRequest {
    pub identifier: Option<TableIdent>,
    #[serde(default)]
    pub requirements: Vec<ViewRequirement>,
    #[serde(default)]
    pub updates: Vec<ViewUpdate>,
}
