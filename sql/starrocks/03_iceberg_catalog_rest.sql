-- The same tables through an Iceberg REST catalog, for deployments that put a REST
-- catalog server in front of firn's catalog database (firn itself speaks SQL/JDBC).
-- The REST server's warehouse must map to firn's catalog name `firn`.

CREATE EXTERNAL CATALOG IF NOT EXISTS firn_rest
PROPERTIES (
    "type" = "iceberg",
    "iceberg.catalog.type" = "rest",
    "iceberg.catalog.uri" = "http://<rest-catalog-host>:8181",
    "iceberg.catalog.warehouse" = "s3://<bucket>/<prefix>",
    -- "iceberg.catalog.security" = "oauth2",
    -- "iceberg.catalog.oauth2.credential" = "<client_id>:<client_secret>",
    "iceberg.catalog.vended-credentials-enabled" = "false",
    "aws.s3.region" = "<region>",
    "aws.s3.use_instance_profile" = "true",
    "client.factory" = "com.starrocks.connector.iceberg.IcebergAwsClientFactory"
);
