//! Builds Iceberg's FileIO for the configured warehouse: the local filesystem or S3
//! (through OpenDAL). Pure construction; the FileIO it returns does the I/O.
//!
//! Credentials go into the FileIO's in-memory properties only, never into table metadata.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::io::{FileIO, FileIOBuilder};
use iceberg_storage_opendal::OpenDalStorageFactory;

use crate::config::{S3Config, WarehouseLocation};

/// Returns the FileIO that reads and writes under `warehouse`.
pub fn file_io_for(warehouse: &WarehouseLocation, s3: &S3Config) -> FileIO {
    match warehouse {
        WarehouseLocation::Local(_) => FileIO::new_with_fs(),
        WarehouseLocation::S3 { .. } => FileIOBuilder::new(Arc::new(OpenDalStorageFactory::S3 {
            customized_credential_load: None,
        }))
        .with_props(s3_properties(s3))
        .build(),
    }
}

/// The Iceberg S3 property map (`s3.endpoint`, `s3.region`, ...) for `s3`.
pub fn s3_properties(s3: &S3Config) -> HashMap<String, String> {
    let mut props = HashMap::new();
    if let Some(endpoint) = &s3.endpoint {
        props.insert("s3.endpoint".to_string(), endpoint.clone());
    }
    if let Some(region) = &s3.region {
        props.insert("s3.region".to_string(), region.clone());
    }
    if s3.path_style {
        props.insert("s3.path-style-access".to_string(), "true".to_string());
    }
    let secrets = [
        ("s3.access-key-id", &s3.access_key_id),
        ("s3.secret-access-key", &s3.secret_access_key),
        ("s3.session-token", &s3.session_token),
    ];
    for (key, value) in secrets {
        if let Some(value) = value {
            props.insert(key.to_string(), value.expose().to_string());
        }
    }
    props
}
