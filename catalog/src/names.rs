//! Naming rules for tables, tenants, columns and models. Pure.
//!
//! Names become Iceberg identifiers, path segments of the warehouse, SQL identifiers in
//! DataFusion and StarRocks, and Stream Load labels, so they are deliberately narrow:
//! lowercase ASCII letters, digits and `_`, starting with a letter (tenants may also start
//! with a digit), at most 63 characters. Because upper case is refused rather than folded,
//! two distinct tenants or tables can never map to the same name, path or label.

use crate::error::{CatalogError, NameKind, Result};

/// Longest accepted name; keeps labels and paths well inside every system's limits.
pub const MAX_NAME_LEN: usize = 63;

/// Table names starting with this prefix are reserved for firn's own tables.
pub const RESERVED_PREFIX: &str = "firn_";

/// Checks a table, column, model or catalog name.
pub fn validate_identifier(kind: NameKind, name: &str) -> Result<()> {
    check(kind, name, false)
}

/// Checks a tenant name; tenants may start with a digit (`t01`, `42acme`).
pub fn validate_tenant(name: &str) -> Result<()> {
    check(NameKind::Tenant, name, true)
}

/// Checks a user table name: an identifier that does not use the reserved prefix.
pub fn validate_user_table(name: &str) -> Result<()> {
    validate_identifier(NameKind::Table, name)?;
    if name.starts_with(RESERVED_PREFIX) {
        return Err(invalid(
            NameKind::Table,
            name,
            format!("the `{RESERVED_PREFIX}` prefix is reserved for firn's own tables"),
        ));
    }
    Ok(())
}

fn check(kind: NameKind, name: &str, may_start_with_digit: bool) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(kind, name, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(
            kind,
            name,
            format!("longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        let hint = if bad.is_ascii_uppercase() {
            " (names are lowercase; upper case is refused, not folded, so names never collide)"
        } else {
            ""
        };
        return Err(invalid(
            kind,
            name,
            format!("character {bad:?} is not allowed; use a-z, 0-9 and _{hint}"),
        ));
    }
    let first = name.chars().next().unwrap_or('_');
    let first_ok = first.is_ascii_lowercase() || (may_start_with_digit && first.is_ascii_digit());
    if !first_ok {
        let expected = if may_start_with_digit {
            "a letter or digit"
        } else {
            "a letter"
        };
        return Err(invalid(kind, name, format!("must start with {expected}")));
    }
    Ok(())
}

fn invalid(kind: NameKind, name: &str, reason: impl Into<String>) -> CatalogError {
    CatalogError::InvalidName {
        kind,
        name: name.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_names() {
        validate_identifier(NameKind::Table, "order_items").unwrap();
        validate_tenant("acme").unwrap();
        validate_tenant("42acme").unwrap();
    }

    #[test]
    fn refuses_metacharacters_and_case() {
        for bad in [
            "",
            "Orders",
            "orders;drop",
            "a.b",
            "a/b",
            "../x",
            "a b",
            "a-b",
            "_x",
            "é",
        ] {
            assert!(validate_identifier(NameKind::Table, bad).is_err(), "{bad}");
        }
        let err = validate_tenant("Acme").unwrap_err().to_string();
        assert!(err.contains("lowercase"), "{err}");
        assert!(validate_identifier(NameKind::Table, "1orders").is_err());
        assert!(validate_identifier(NameKind::Table, &"a".repeat(64)).is_err());
    }

    #[test]
    fn reserved_prefix_is_refused_for_user_tables() {
        assert!(validate_user_table("firn_dead_letters").is_err());
        validate_identifier(NameKind::Table, "firn_dead_letters").unwrap();
    }

    proptest! {
        /// Every accepted name is safe as a path segment and an unquoted SQL identifier.
        #[test]
        fn accepted_names_are_path_and_sql_safe(name in "\\PC{0,70}") {
            if validate_tenant(&name).is_ok() {
                prop_assert!(!name.contains(['/', '.', '\\', '\'', '"', ';', ' ', '%', '-']));
                prop_assert_eq!(name.to_ascii_lowercase(), name.clone());
                prop_assert!(name.len() <= MAX_NAME_LEN);
            }
        }
    }
}
