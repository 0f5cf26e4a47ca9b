//! Internally tagged config tables (`coefficient = { kind = "pi", kp = 1.0, ki = 0.02 }`) whose
//! errors name the key that failed.
//!
//! serde's derived `#[serde(tag = "…")]` buffers the whole table before it knows the variant, so a
//! type error inside (`invalid type: string "x", expected f64`) loses its key. An enum whose
//! `Deserialize` reads through [`split`] and [`fields`] instead takes the table, removes its tag,
//! and reads the variant's own fields through `serde_path_to_error`, which names the key:
//! `kp: invalid type: string "x", expected f64`. Serialization keeps serde's derive.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error};

/// The table `deserializer` holds: the value of its `tag` key, and the rest of the table.
pub fn split<'de, D: Deserializer<'de>>(deserializer: D, tag: &'static str) -> Result<(String, toml::Table), D::Error> {
    let mut table = toml::Table::deserialize(deserializer)?;
    match table.remove(tag) {
        Some(toml::Value::String(name)) => Ok((name, table)),
        Some(other) => Err(D::Error::custom(format!("`{tag}` must be a string, not {}", other.type_str()))),
        None => Err(D::Error::missing_field(tag)),
    }
}

/// A variant's fields read from `table` (what [`split`] left); an error names the key in it.
pub fn fields<T: DeserializeOwned, E: Error>(table: toml::Table) -> Result<T, E> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." { E::custom(inner) } else { E::custom(format!("{path}: {inner}")) }
    })
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Deserializer};

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pi {
        kp: f64,
        ki: f64,
    }

    #[derive(Debug, PartialEq)]
    enum Coefficient {
        Fixed(f64),
        Pi(Pi),
    }

    impl<'de> Deserialize<'de> for Coefficient {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Mu {
                mu: f64,
            }
            let (kind, table) = super::split(d, "kind")?;
            match kind.as_str() {
                "fixed" => super::fields(table).map(|Mu { mu }| Coefficient::Fixed(mu)),
                "pi" => super::fields(table).map(Coefficient::Pi),
                other => Err(serde::de::Error::unknown_variant(other, &["fixed", "pi"])),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    struct Config {
        #[allow(dead_code)]
        coefficient: Coefficient,
    }

    fn error(text: &str) -> String {
        toml::from_str::<Config>(text).unwrap_err().to_string()
    }

    #[test]
    fn tagged_tables_read_from_toml_and_json() {
        let c: Config = toml::from_str("coefficient = { kind = \"pi\", kp = 1, ki = 0.5 }").unwrap();
        assert_eq!(c.coefficient, Coefficient::Pi(Pi { kp: 1.0, ki: 0.5 }));
        let c: Config = serde_json::from_str(r#"{"coefficient": {"mu": 2.5, "kind": "fixed"}}"#).unwrap();
        assert_eq!(c.coefficient, Coefficient::Fixed(2.5));
    }

    #[test]
    fn errors_inside_tagged_tables_name_the_key() {
        let e = error("coefficient = { kind = \"pi\", kp = \"x\", ki = 0.5 }");
        assert!(e.contains("kp: invalid type: string \"x\", expected f64"), "{e}");
        let e = error("[coefficient]\nkind = \"fixed\"\nmu = true");
        assert!(e.contains("mu: invalid type: boolean"), "{e}");
        let e = error("coefficient = { kind = \"pi\", kp = 1.0 }");
        assert!(e.contains("missing field `ki`"), "{e}");
        let e = error("coefficient = { kind = \"pi\", kp = 1.0, ki = 0.1, kd = 0.0 }");
        assert!(e.contains("unknown field `kd`"), "{e}");
        let e = error("coefficient = { kind = \"pd\" }");
        assert!(e.contains("unknown variant `pd`, expected `fixed` or `pi`"), "{e}");
        let e = error("coefficient = { kind = 3 }");
        assert!(e.contains("`kind` must be a string, not integer"), "{e}");
        let e = error("coefficient = { mu = 3 }");
        assert!(e.contains("missing field `kind`"), "{e}");
    }
}
