//! Which vector store the vectors go to (`VECTOR_STORE`) and its settings.

use lambda_kit::config::{ConfigError, Env};

use crate::store::{QdrantConfig, StargateConfig, StoreConfig};

/// `VECTOR_STORE` (default `supabase`) and the settings of the store it names; `local` (the
/// in-process model, 384 dimensions) picks the Supabase table of that dimension.
pub(crate) fn store_from_env(env: &Env, local: bool) -> Result<StoreConfig, ConfigError> {
    Ok(
        match env
            .string_or("VECTOR_STORE", "supabase")
            .to_ascii_lowercase()
            .as_str()
        {
            "supabase" => StoreConfig::Supabase {
                table: env.identifier_or(
                    "VECTORS_TABLE",
                    if local {
                        "page_vectors_minilm"
                    } else {
                        "page_vectors"
                    },
                )?,
            },
            "qdrant" => StoreConfig::Qdrant(QdrantConfig::from_env(env)?),
            "stargate" => StoreConfig::Stargate(StargateConfig::from_env(env)?),
            other => {
                return Err(ConfigError::new(
                    "VECTOR_STORE",
                    format!("unknown store {other:?}; expected supabase, qdrant or stargate"),
                ));
            }
        },
    )
}
