//! Iceberg views that other engines create, replace and drop through the REST
//! catalog (Iceberg view spec, format version 1): a metadata file in the
//! warehouse and a catalog row (see `db::objects` for the row's layout).
//!
//! # Invariants
//! - A name is a table, a pipeline view (`crate::views`) or an Iceberg view,
//!   never two of them; pipeline views are never changed here.
//! - A replace checks its requirements (`assert-view-uuid`) on the metadata it
//!   read, writes a new metadata file and moves the row by compare-and-swap
//!   from the location it read: a lost swap is a conflict the client retries
//!   on the new state, as for tables.
//! - View locations stay inside the warehouse.

use std::collections::HashMap;

use iceberg::io::FileIO;
use iceberg::spec::{ViewMetadata, ViewMetadataBuilder};
use iceberg::{TableIdent, ViewCreation, ViewUpdate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{display, split, LakeCatalog};
use crate::changes::check_identifier;
use crate::db::ObjectKind;
use crate::error::{CatalogError, Result};

/// An Iceberg view as the catalog has it now.
#[derive(Clone, Debug)]
pub struct IcebergView {
    pub ident: TableIdent,
    pub metadata_location: String,
    pub metadata: ViewMetadata,
}

/// A requirement of a view commit (REST spec `ViewRequirement`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ViewRequirement {
    /// The view's UUID is this one (it was not dropped and created again).
    AssertViewUuid { uuid: Uuid },
}

impl LakeCatalog {
    /// The Iceberg views of a namespace, sorted.
    pub async fn iceberg_views(&self, namespace: &str) -> Result<Vec<TableIdent>> {
        let names = self.db().list_objects(ObjectKind::View, namespace).await?;
        let namespace = iceberg::NamespaceIdent::from_strs(namespace.split('.'))?;
        Ok(names
            .into_iter()
            .map(|name| TableIdent::new(namespace.clone(), name))
            .collect())
    }

    /// An Iceberg view, `None` when there is none by that name.
    pub async fn iceberg_view(&self, ident: &TableIdent) -> Result<Option<IcebergView>> {
        let (namespace, name) = split(ident);
        let Some(location) = self
            .db()
            .metadata_location_of(ObjectKind::View, &namespace, name)
            .await?
        else {
            return Ok(None);
        };
        let metadata = read_view_metadata(self.file_io(), &location).await?;
        Ok(Some(IcebergView {
            ident: ident.clone(),
            metadata_location: location,
            metadata,
        }))
    }

    /// Create an Iceberg view ([`CatalogError::ViewExists`] when the name is a
    /// table's or a view's). `creation.location` empty = the default location.
    pub async fn create_iceberg_view(
        &self,
        ident: &TableIdent,
        mut creation: ViewCreation,
    ) -> Result<IcebergView> {
        // Refused on a tag before any file is written.
        self.db().writable()?;
        check_identifier(ident)?;
        let (namespace, name) = split(ident);
        self.require_namespace(&namespace).await?;
        if self.exists(ident).await? || self.view(ident).await?.is_some() {
            return Err(CatalogError::ViewExists {
                view: display(ident),
            });
        }
        if creation.representations.is_empty() {
            return Err(CatalogError::InvalidCommit {
                table: display(ident),
                message: "a view needs at least one representation".into(),
            });
        }
        creation.location = match creation.location.trim_end_matches('/') {
            "" => self.default_location(ident),
            given => self.within_warehouse(ident, given)?,
        };
        let metadata = ViewMetadataBuilder::from_view_creation(creation)?
            .build()?
            .metadata;
        let location = write_view_metadata(self.file_io(), &metadata, None).await?;
        if !self
            .db()
            .insert_object(ObjectKind::View, &namespace, name, &location)
            .await?
        {
            return Err(CatalogError::ViewExists {
                view: display(ident),
            });
        }
        Ok(IcebergView {
            ident: ident.clone(),
            metadata_location: location,
            metadata,
        })
    }

    /// Apply a client's view commit: requirements checked on the current
    /// metadata, updates applied, then compare-and-swap (see the module docs).
    pub async fn replace_iceberg_view(
        &self,
        ident: &TableIdent,
        requirements: &[ViewRequirement],
        updates: Vec<ViewUpdate>,
    ) -> Result<IcebergView> {
        self.db().writable()?;
        let (namespace, name) = split(ident);
        let current = self.require_iceberg_view(ident).await?;
        for requirement in requirements {
            match requirement {
                ViewRequirement::AssertViewUuid { uuid } if *uuid != current.metadata.uuid() => {
                    return Err(CatalogError::RequirementFailed {
                        table: display(ident),
                        message: format!("view UUID is {}, not {uuid}", current.metadata.uuid()),
                    })
                }
                ViewRequirement::AssertViewUuid { .. } => {}
            }
        }
        let mut builder = ViewMetadataBuilder::new_from_metadata(current.metadata.clone());
        for update in updates {
            builder = apply(builder, update, ident, current.metadata.uuid(), self)?;
        }
        let metadata = builder.build()?.metadata;
        let location =
            write_view_metadata(self.file_io(), &metadata, Some(&current.metadata_location))
                .await?;
        if !self
            .db()
            .swap_view_location(&namespace, name, &current.metadata_location, &location)
            .await?
        {
            // Nothing refers to the file written for the lost swap.
            let _ = self.file_io().delete(&location).await;
            return Err(CatalogError::RequirementFailed {
                table: display(ident),
                message: "another commit changed the view meanwhile; reload and retry".into(),
            });
        }
        Ok(IcebergView {
            ident: ident.clone(),
            metadata_location: location,
            metadata,
        })
    }

    /// Drop an Iceberg view (its metadata files stay until orphan cleanup).
    pub async fn drop_iceberg_view(&self, ident: &TableIdent) -> Result<()> {
        let (namespace, name) = split(ident);
        if !self
            .db()
            .delete_object(ObjectKind::View, &namespace, name)
            .await?
        {
            return Err(self.missing_view(ident).await);
        }
        Ok(())
    }

    /// Rename an Iceberg view within the catalog.
    pub async fn rename_iceberg_view(&self, from: &TableIdent, to: &TableIdent) -> Result<()> {
        check_identifier(to)?;
        let (from_ns, from_name) = split(from);
        let (to_ns, to_name) = split(to);
        self.require_namespace(&to_ns).await?;
        self.require_iceberg_view(from).await?;
        if !self
            .db()
            .rename_object(ObjectKind::View, (&from_ns, from_name), (&to_ns, to_name))
            .await?
        {
            return Err(CatalogError::ViewExists { view: display(to) });
        }
        Ok(())
    }

    async fn require_iceberg_view(&self, ident: &TableIdent) -> Result<IcebergView> {
        match self.iceberg_view(ident).await? {
            Some(view) => Ok(view),
            None => Err(self.missing_view(ident).await),
        }
    }

    /// Not an Iceberg view: a pipeline view's owner refuses, otherwise 404.
    async fn missing_view(&self, ident: &TableIdent) -> CatalogError {
        match self.view(ident).await {
            Ok(Some(view)) => CatalogError::ViewNotWritable {
                view: display(ident),
                owner: view.owner.unwrap_or_else(|| "a pipeline".into()),
            },
            Ok(None) => CatalogError::ViewNotFound {
                view: display(ident),
            },
            Err(e) => e,
        }
    }
}

fn apply(
    builder: ViewMetadataBuilder,
    update: ViewUpdate,
    ident: &TableIdent,
    current_uuid: Uuid,
    lake: &LakeCatalog,
) -> Result<ViewMetadataBuilder> {
    Ok(match update {
        // A view keeps its UUID (`assert-view-uuid` guards it), as in Iceberg Java.
        ViewUpdate::AssignUuid { uuid } if uuid != current_uuid => {
            return Err(CatalogError::InvalidCommit {
                table: display(ident),
                message: format!("a view's UUID cannot change (it is {current_uuid}, not {uuid})"),
            })
        }
        ViewUpdate::AssignUuid { uuid } => builder.assign_uuid(uuid),
        ViewUpdate::UpgradeFormatVersion { format_version } => {
            builder.upgrade_format_version(format_version)?
        }
        ViewUpdate::AddSchema { schema, .. } => builder.add_schema(schema),
        ViewUpdate::SetLocation { location } => {
            builder.set_location(lake.within_warehouse(ident, &location)?)
        }
        ViewUpdate::SetProperties { updates } => builder.set_properties(updates)?,
        ViewUpdate::RemoveProperties { removals } => builder.remove_properties(&removals),
        ViewUpdate::AddViewVersion { view_version } => builder.add_version(view_version)?,
        ViewUpdate::SetCurrentViewVersion { view_version_id } => {
            builder.set_current_version_id(view_version_id)?
        }
    })
}

async fn read_view_metadata(file_io: &FileIO, location: &str) -> Result<ViewMetadata> {
    let bytes = file_io.new_input(location)?.read().await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CatalogError::Iceberg(iceberg::Error::new(
            iceberg::ErrorKind::DataInvalid,
            format!("view metadata {location} does not parse: {e}"),
        ))
    })
}

/// Write `metadata` as `<location>/metadata/<NNNNN>-<uuid>.metadata.json`,
/// numbered one past `previous` (Iceberg's naming for table metadata, which
/// view metadata follows in Iceberg Java).
async fn write_view_metadata(
    file_io: &FileIO,
    metadata: &ViewMetadata,
    previous: Option<&str>,
) -> Result<String> {
    let version = previous
        .and_then(|p| p.rsplit('/').next())
        .and_then(|file| file.split_once('-'))
        .and_then(|(n, _)| n.parse::<u32>().ok())
        .map_or(0, |n| n + 1);
    let location = format!(
        "{}/metadata/{version:05}-{}.metadata.json",
        metadata.location().trim_end_matches('/'),
        Uuid::new_v4()
    );
    let json = serde_json::to_vec(metadata).map_err(|e| {
        CatalogError::Iceberg(iceberg::Error::new(
            iceberg::ErrorKind::Unexpected,
            format!("view metadata does not serialize: {e}"),
        ))
    })?;
    file_io.new_output(&location)?.write(json.into()).await?;
    Ok(location)
}

/// Properties every view version of ours carries in its summary.
pub fn engine_summary() -> HashMap<String, String> {
    HashMap::from([
        ("engine-name".to_string(), "icefjord".to_string()),
        (
            "engine-version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}
