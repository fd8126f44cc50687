//! The closed sets of decoding choices a function is configured with: [`ValueFormat`]
//! (`VALUE_FORMAT`) and [`KeyFormat`] (`KEY_FORMAT`), their spellings and parsing.

use std::fmt;
use std::str::FromStr;

/// How record values are decoded (`VALUE_FORMAT`).
///
/// Whichever is chosen, a value described by a registry schema is decoded as that schema's type
/// says (the registry's `schemaType`: Avro, Protobuf or JSON Schema). A JSON Schema value is
/// JSON text and is read as such: it is not validated against its schema (the producer's
/// serializer and the ESM's validation are where that happens).
///
/// ```
/// use event_decoding::ValueFormat;
/// assert_eq!("AVRO".parse::<ValueFormat>().unwrap(), ValueFormat::Avro);
/// assert_eq!("protobuf".parse::<ValueFormat>().unwrap(), ValueFormat::Protobuf);
/// assert_eq!(ValueFormat::default(), ValueFormat::Json);
/// assert!("xml".parse::<ValueFormat>().unwrap_err().contains("json, avro, protobuf or auto"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// Every value is JSON (the default; the ESM's `EventRecordFormat: JSON` delivers JSON too).
    #[default]
    Json,
    /// Every value is Avro: a record's `valueSchemaMetadata` names the schema, else its Confluent
    /// wire prefix does; a value with neither is dead-lettered (`missing_schema_id`), unless a
    /// shipped schema reads it ([`Decoding::plain`]).
    ///
    /// [`Decoding::plain`]: super::Decoding::plain
    Avro,
    /// Every value is Protobuf, its schema named as for [`Avro`](Self::Avro).
    Protobuf,
    /// Per record: described by a registry schema when the metadata says so or the value starts
    /// with the Confluent magic byte (0) or the Glue header (version byte 3 and a known
    /// compression byte); no JSON text starts with either. JSON otherwise.
    Auto,
}

/// `as_str` (the setting's spelling), [`FromStr`] (any case, trimmed; the error lists the
/// choices) and [`fmt::Display`] of a closed set of format choices, from one list.
macro_rules! format_names {
    ($ty:ident, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            const NAMES: &'static [($ty, &'static str)] = &[$(($ty::$variant, $name)),+];

            #[doc = concat!("The setting's spelling: ", $(concat!("`", $name, "` "),)+ ".")]
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let wanted = s.trim().to_ascii_lowercase();
                if let Some((v, _)) = Self::NAMES.iter().find(|(_, n)| *n == wanted) {
                    return Ok(*v);
                }
                let names: Vec<&str> = Self::NAMES.iter().map(|(_, n)| *n).collect();
                let (last, rest) = names.split_last().expect("a choice");
                Err(format!(
                    "`{wanted}` is not a {}; expected {} or {last}",
                    $what,
                    rest.join(", ")
                ))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

format_names!(ValueFormat, "value format", [Json => "json", Avro => "avro", Protobuf => "protobuf", Auto => "auto"]);

/// How record keys are decoded (`KEY_FORMAT`), each key with its own schema, as Powertools for
/// AWS Lambda's Kafka consumer does with `key_schema_type` / `key_schema`.
///
/// ```
/// use event_decoding::KeyFormat;
/// assert_eq!(KeyFormat::default(), KeyFormat::Auto);
/// assert_eq!("Avro".parse::<KeyFormat>().unwrap(), KeyFormat::Avro);
/// assert_eq!("string".parse::<KeyFormat>().unwrap(), KeyFormat::String);
/// assert!("raw".parse::<KeyFormat>().unwrap_err().contains("auto, string, json, avro or protobuf"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyFormat {
    /// The default, what keys always were: a key that its `keySchemaMetadata` or its wire prefix
    /// (Confluent, Glue) describes is decoded with that registry schema when `VALUE_FORMAT` is
    /// not `json`; any other key is JSON when it parses as JSON, else UTF-8 text (keys are often
    /// plain strings).
    #[default]
    Auto,
    /// Every key is UTF-8 text, taken as a string whatever it holds (Powertools' reading of a key
    /// without a key schema); a key that is not UTF-8 is the record's fault (`invalid_utf8`).
    String,
    /// Every key is JSON text; a key that is not is the record's fault (`invalid_json`).
    Json,
    /// Every key is Avro: named by its `keySchemaMetadata` or wire prefix (the registry's
    /// schema), else plain bytes of the shipped key schema (`KEY_AVRO_SCHEMA_FILE`); a key with
    /// neither is dead-lettered (`missing_schema_id`).
    Avro,
    /// Every key is Protobuf, its schema named as for [`Avro`](Self::Avro) (shipped:
    /// `KEY_PROTOBUF_DESCRIPTOR_SET` + `KEY_PROTOBUF_MESSAGE`).
    Protobuf,
}

format_names!(KeyFormat, "key format", [
    Auto => "auto",
    String => "string",
    Json => "json",
    Avro => "avro",
    Protobuf => "protobuf",
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats_parse_and_name_the_choices() {
        assert_eq!(
            "PROTOBUF".parse::<KeyFormat>().unwrap(),
            KeyFormat::Protobuf
        );
        assert_eq!(" json ".parse::<KeyFormat>().unwrap(), KeyFormat::Json);
        for k in [
            KeyFormat::Auto,
            KeyFormat::String,
            KeyFormat::Json,
            KeyFormat::Avro,
            KeyFormat::Protobuf,
        ] {
            assert_eq!(k.to_string().parse::<KeyFormat>().unwrap(), k);
        }
        assert!("raw".parse::<KeyFormat>().is_err());
    }
}
