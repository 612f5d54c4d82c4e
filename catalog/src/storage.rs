//! Object storage for a warehouse: one `object_store` client per lake, shared by
//! Iceberg's metadata IO (through [`ObjectStoreStorage`], an `iceberg::io::Storage`)
//! and by DataFusion's Parquet scans. One IO stack, one set of credentials.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileIO, FileIOBuilder, FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage,
    StorageConfig, StorageFactory,
};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::config::{S3Options, Secret, Warehouse};
use crate::error::{CatalogError, Result};

/// What a store is, in a form that can be serialized (credentials excluded: a
/// deserialized store reads them from the environment).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum StoreSpec {
    Local,
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: Option<String>,
        allow_http: bool,
        virtual_hosted_style: bool,
    },
}

/// The object store behind one warehouse, and how Iceberg locations map onto it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WarehouseStore {
    spec: StoreSpec,
    #[serde(skip)]
    client: Arc<OnceLock<Arc<dyn ObjectStore>>>,
    #[serde(skip)]
    s3_credentials: Option<(String, Secret)>,
}

impl WarehouseStore {
    /// The store for a warehouse. For S3, credentials come from `options` or else
    /// from the usual `AWS_*` environment variables.
    pub fn new(warehouse: &Warehouse, options: &S3Options) -> Result<Self> {
        let spec = match warehouse {
            Warehouse::Local(_) => StoreSpec::Local,
            Warehouse::S3 { bucket, .. } => StoreSpec::S3 {
                bucket: bucket.clone(),
                endpoint: options.endpoint.clone(),
                region: options.region.clone(),
                allow_http: options.allow_http,
                virtual_hosted_style: options.virtual_hosted_style,
            },
        };
        let s3_credentials = match (&options.access_key_id, &options.secret_access_key) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            _ => None,
        };
        let store = Self {
            spec,
            client: Arc::default(),
            s3_credentials,
        };
        store.client()?;
        Ok(store)
    }

    /// The `object_store` client.
    pub fn client(&self) -> Result<Arc<dyn ObjectStore>> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let client: Arc<dyn ObjectStore> = match &self.spec {
            StoreSpec::Local => Arc::new(LocalFileSystem::new()),
            StoreSpec::S3 {
                bucket,
                endpoint,
                region,
                allow_http,
                virtual_hosted_style,
            } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(*allow_http)
                    .with_virtual_hosted_style_request(*virtual_hosted_style);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                builder = builder.with_region(region.as_deref().unwrap_or("us-east-1"));
                if let Some((id, secret)) = &self.s3_credentials {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret.expose());
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|e| CatalogError::storage(format!("s3://{bucket}"), e))?,
                )
            }
        };
        Ok(self.client.get_or_init(|| client).clone())
    }

    /// The URL DataFusion registers this store under: `file:///` or `s3://bucket/`.
    pub fn base_url(&self) -> Result<url::Url> {
        let text = match &self.spec {
            StoreSpec::Local => "file:///".to_string(),
            StoreSpec::S3 { bucket, .. } => format!("s3://{bucket}/"),
        };
        url::Url::parse(&text).map_err(|e| CatalogError::Config {
            field: "warehouse".into(),
            message: format!("{text}: {e}"),
        })
    }

    /// The object path of an Iceberg location: `file:///abs/x`, `file:/abs/x` (how
    /// Hadoop's `FileIO`, and so Spark and Trino, write local paths),
    /// `file://localhost/abs/x`, `/abs/x`; `s3://bucket/key`, `s3a://bucket/key`.
    pub fn path_of(&self, location: &str) -> Result<Path> {
        let invalid = |why: &str| CatalogError::Storage {
            location: location.to_string(),
            message: why.to_string(),
            retryable: false,
        };
        match &self.spec {
            StoreSpec::Local => {
                let raw = match location.strip_prefix("file:") {
                    Some(rest) => match rest.strip_prefix("//") {
                        Some(after) if after.starts_with('/') => after,
                        Some(after) => after
                            .strip_prefix("localhost")
                            .filter(|path| path.starts_with('/'))
                            .ok_or_else(|| invalid("a file location on another host"))?,
                        None => rest,
                    },
                    None => location,
                };
                if !raw.starts_with('/') {
                    return Err(invalid("not a local file location"));
                }
                Path::from_url_path(raw).map_err(|_| invalid("not a valid path"))
            }
            StoreSpec::S3 { bucket, .. } => {
                let rest = location
                    .strip_prefix("s3://")
                    .or_else(|| location.strip_prefix("s3a://"))
                    .ok_or_else(|| invalid("not an s3:// location"))?;
                let (loc_bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if loc_bucket != bucket {
                    return Err(invalid(&format!("outside the warehouse bucket {bucket}")));
                }
                Path::parse(key).map_err(|_| invalid("not a valid key"))
            }
        }
    }

    /// An Iceberg `FileIO` over this store.
    pub fn file_io(&self) -> FileIO {
        FileIOBuilder::new(Arc::new(ObjectStoreStorageFactory {
            store: self.clone(),
        }))
        .build()
    }

    fn storage(&self) -> ObjectStoreStorage {
        ObjectStoreStorage {
            store: self.clone(),
        }
    }
}

/// Builds [`ObjectStoreStorage`] for Iceberg's `FileIO`.
#[derive(Debug, Serialize, Deserialize)]
struct ObjectStoreStorageFactory {
    store: WarehouseStore,
}

#[typetag::serde(name = "icefjord-object-store")]
impl StorageFactory for ObjectStoreStorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.store.storage()))
    }
}

/// `iceberg::io::Storage` on an `object_store` client.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ObjectStoreStorage {
    store: WarehouseStore,
}

impl ObjectStoreStorage {
    fn resolve(&self, location: &str) -> iceberg::Result<(Arc<dyn ObjectStore>, Path)> {
        Ok((self.store.client()?, self.store.path_of(location)?))
    }
}

fn io_error(location: &str, err: object_store::Error) -> iceberg::Error {
    iceberg::Error::from(CatalogError::storage(location, err))
}

#[async_trait]
#[typetag::serde(name = "icefjord-object-store")]
impl Storage for ObjectStoreStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let (client, key) = self.resolve(path)?;
        match client.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let (client, key) = self.resolve(path)?;
        let meta = client.head(&key).await.map_err(|e| io_error(path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let (client, key) = self.resolve(path)?;
        let result = client.get(&key).await.map_err(|e| io_error(path, e))?;
        result.bytes().await.map_err(|e| io_error(path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (client, key) = self.resolve(path)?;
        Ok(Box::new(ObjectReader {
            client,
            key,
            location: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let (client, key) = self.resolve(path)?;
        client
            .put(&key, PutPayload::from_bytes(bs))
            .await
            .map_err(|e| io_error(path, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (client, key) = self.resolve(path)?;
        Ok(Box::new(ObjectWriter {
            writer: BufWriter::with_capacity(client, key, 8 * 1024 * 1024),
            location: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let (client, key) = self.resolve(path)?;
        match client.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let (client, key) = self.resolve(path)?;
        let locations = client.list(Some(&key)).map_ok(|meta| meta.location).boxed();
        client
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| io_error(path, e))?;
        Ok(())
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let paths: Vec<String> = paths.collect().await;
        for path in paths {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct ObjectReader {
    client: Arc<dyn ObjectStore>,
    key: Path,
    location: String,
}

#[async_trait]
impl FileRead for ObjectReader {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.client
            .get_range(&self.key, range)
            .await
            .map_err(|e| io_error(&self.location, e))
    }
}

struct ObjectWriter {
    writer: BufWriter,
    location: String,
}

#[async_trait]
impl FileWrite for ObjectWriter {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        self.writer
            .put(bs)
            .await
            .map_err(|e| io_error(&self.location, e))
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        self.writer.shutdown().await.map_err(|e| {
            iceberg::Error::from(CatalogError::Storage {
                location: self.location.clone(),
                message: e.to_string(),
                retryable: true,
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_io_round_trips_on_local_disk() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::Local(dir.path().to_path_buf());
        let store = WarehouseStore::new(&warehouse, &S3Options::default()).unwrap();
        let io = store.file_io();
        let location = format!("{}/ns/t/metadata/x.json", warehouse.root_url());
        io.new_output(&location)
            .unwrap()
            .write(Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert!(io.exists(&location).await.unwrap());
        assert_eq!(
            io.new_input(&location).unwrap().read().await.unwrap(),
            Bytes::from_static(b"{}")
        );
        assert!(dir.path().join("ns/t/metadata/x.json").exists());
        io.delete(&location).await.unwrap();
        assert!(!io.exists(&location).await.unwrap());
    }

    /// Spark (Hadoop's FileIO) writes local locations as `file:/abs/x`: after any
    /// Spark commit to a local lake, the catalog row, manifest lists and data
    /// files all use that form.
    #[test]
    fn every_spelling_of_a_local_file_location_is_one_path() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::Local(dir.path().to_path_buf());
        let store = WarehouseStore::new(&warehouse, &S3Options::default()).unwrap();
        for location in [
            "file:///lake/ns/t/a b.parquet",
            "file:/lake/ns/t/a b.parquet",
            "file://localhost/lake/ns/t/a b.parquet",
            "/lake/ns/t/a b.parquet",
        ] {
            assert_eq!(
                store.path_of(location).unwrap().as_ref(),
                "lake/ns/t/a b.parquet",
                "{location}"
            );
        }
        for location in ["file://host/lake/x", "file:lake/x", "lake/x", "s3://lake/x"] {
            assert!(store.path_of(location).is_err(), "{location}");
        }
    }

    #[test]
    fn s3_locations_outside_the_bucket_are_refused() {
        let warehouse = Warehouse::parse("s3://lake/prod").unwrap();
        let store = WarehouseStore::new(&warehouse, &S3Options::default()).unwrap();
        assert_eq!(
            store
                .path_of("s3://lake/prod/a/b.parquet")
                .unwrap()
                .as_ref(),
            "prod/a/b.parquet"
        );
        assert!(store.path_of("s3://other/a").is_err());
    }
}
