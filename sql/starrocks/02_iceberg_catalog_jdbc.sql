-- StarRocks reads firn's Iceberg tables (bronze, silver, gold) through an external
-- catalog over firn's own SQL catalog on Postgres (the JDBC catalog schema).
--
-- The StarRocks catalog MUST be named `firn`: Iceberg's JDBC catalog stores the catalog
-- name in every row of iceberg_tables, and firn writes `firn` (config key catalog.name).
-- Replace the <...> placeholders; keep credentials out of version control.

CREATE EXTERNAL CATALOG IF NOT EXISTS firn
PROPERTIES (
    "type" = "iceberg",
    "iceberg.catalog.type" = "jdbc",
    "iceberg.catalog.uri" = "jdbc:postgresql://<postgres-host>:5432/<firn-catalog-db>",
    "iceberg.catalog.warehouse" = "s3://<bucket>/<prefix>",
    "iceberg.catalog.jdbc.user" = "<read-only-user>",
    "iceberg.catalog.jdbc.password" = "<password>",
    -- S3 (or an S3-compatible store: set endpoint, path style and, for plain HTTP, enable_ssl=false)
    "aws.s3.region" = "<region>",
    "aws.s3.use_instance_profile" = "true"
    -- "aws.s3.endpoint" = "http://minio:9000",
    -- "aws.s3.enable_path_style_access" = "true",
    -- "aws.s3.enable_ssl" = "false",
    -- "aws.s3.access_key" = "<ak>",
    -- "aws.s3.secret_key" = "<sk>"
);

SHOW DATABASES FROM firn;                      -- bronze, silver, gold
SELECT count(*) FROM firn.gold.order_facts;
