//! Decoding of Kafka event source mapping payloads.
