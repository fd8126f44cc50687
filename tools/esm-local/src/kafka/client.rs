//! Cluster-level operations: metadata and leader routing, fetch, produce, list offsets, topic
//! creation (group offsets are in [`super::group`]).

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::conn::BrokerConnection;
use super::{KafkaConfig, KafkaError, check};

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds one.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Result of fetching one partition.
#[derive(Debug)]
pub struct FetchedPartition {
    /// Which partition.
    pub tp: TopicPartition,
    /// Data records at or after the requested offset, in offset order (control records removed).
    pub records: Vec<Record>,
    /// The partition's error, if the broker reported one.
    pub error: Option<KafkaError>,
}

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct ProduceRecord {
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Create time in epoch milliseconds.
    pub timestamp_ms: i64,
}

/// Which end of a partition `list_offset` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// Log start offset (ESM `TRIM_HORIZON`).
    Earliest,
    /// Next offset to be written (ESM `LATEST`).
    Latest,
}

const METADATA_V: i16 = 4;
const PRODUCE_V: i16 = 3;
const FETCH_V: i16 = 4;
const LIST_OFFSETS_V: i16 = 1;
const CREATE_TOPICS_V: i16 = 2;

/// A client for one cluster; keeps one connection per broker it talks to.
#[derive(Debug)]
pub struct KafkaClient {
    config: KafkaConfig,
    brokers: HashMap<i32, String>,
    leaders: HashMap<TopicPartition, i32>,
    conns: HashMap<String, BrokerConnection>,
    /// Group id -> its coordinator's address ([`super::group`]).
    pub(super) coordinators: HashMap<String, String>,
}

impl KafkaClient {
    /// Connects to the first reachable bootstrap server and loads broker metadata.
    pub async fn connect(config: KafkaConfig) -> Result<Self, KafkaError> {
        let mut client = Self {
            config,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            conns: HashMap::new(),
            coordinators: HashMap::new(),
        };
        client.refresh_metadata(&[]).await?;
        Ok(client)
    }

    /// The bootstrap servers, comma-joined (the ESM event's `bootstrapServers`).
    pub fn bootstrap_servers(&self) -> String {
        self.config.bootstrap_servers.join(",")
    }

    pub(super) async fn conn(&mut self, addr: &str) -> Result<&mut BrokerConnection, KafkaError> {
        if !self.conns.contains_key(addr) {
            let conn = BrokerConnection::connect(addr).await?;
            self.conns.insert(addr.to_owned(), conn);
        }
        Ok(self.conns.get_mut(addr).expect("inserted above"))
    }

    /// Any live connection: an existing one, else the first bootstrap server that answers.
    pub(super) async fn any_conn(&mut self) -> Result<&mut BrokerConnection, KafkaError> {
        if let Some(addr) = self.conns.keys().next().cloned() {
            return self.conn(&addr).await;
        }
        let mut last = None;
        for addr in self.config.bootstrap_servers.clone() {
            match BrokerConnection::connect(&addr).await {
                Ok(c) => {
                    self.conns.insert(addr.clone(), c);
                    return Ok(self.conns.get_mut(&addr).expect("inserted above"));
                }
                Err(e) if e.is_transient() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| KafkaError::Protocol("no bootstrap servers given".into())))
    }

    /// Drops a connection after an I/O error so the next call reconnects.
    pub(super) fn drop_conn_on_io(&mut self, addr: &str, err: &KafkaError) {
        if matches!(err, KafkaError::Io { .. } | KafkaError::Protocol(_)) {
            self.conns.remove(addr);
        }
    }

    /// Sends `req` to the broker at `addr`, dropping the connection when the call broke it.
    async fn send_to<R: Request>(
        &mut self,
        addr: &str,
        req: &R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let res = self.conn(addr).await?.send(req, version).await;
        if let Err(e) = &res {
            self.drop_conn_on_io(addr, e);
        }
        res
    }

    /// Loads brokers and partition leaders; returns the partition count of each named topic.
    pub async fn refresh_metadata(
        &mut self,
        topics: &[String],
    ) -> Result<BTreeMap<String, i32>, KafkaError> {
        let req = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false);
        let conn = self.any_conn().await?;
        let addr = conn.addr().to_owned();
        let resp = match conn.send(&req, METADATA_V).await {
            Ok(r) => r,
            Err(e) => {
                self.drop_conn_on_io(&addr, &e);
                return Err(e);
            }
        };
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        let mut counts = BTreeMap::new();
        for t in &resp.topics {
            let name = t
                .name
                .as_ref()
                .map(|n| n.0.as_str().to_owned())
                .unwrap_or_default();
            if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(KafkaError::UnknownTopic(name));
            }
            check(t.error_code, "Metadata")?;
            for p in &t.partitions {
                self.leaders.insert(
                    TopicPartition::new(name.clone(), p.partition_index),
                    p.leader_id.0,
                );
            }
            counts.insert(name, i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
        }
        Ok(counts)
    }

    fn leader_addr(&self, tp: &TopicPartition) -> Result<String, KafkaError> {
        let leader = self
            .leaders
            .get(tp)
            .ok_or_else(|| KafkaError::UnknownTopic(tp.topic.clone()))?;
        self.brokers.get(leader).cloned().ok_or(KafkaError::Broker {
            api: "Metadata",
            error: ResponseError::LeaderNotAvailable,
        })
    }

    /// Creates `topic` with `partitions` partitions; an existing topic is left as it is.
    pub async fn create_topic(&mut self, topic: &str, partitions: i32) -> Result<(), KafkaError> {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(10_000);
        let resp = self.any_conn().await?.send(&req, CREATE_TOPICS_V).await?;
        for t in resp.topics {
            if t.error_code != ResponseError::TopicAlreadyExists.code() {
                check(t.error_code, "CreateTopics")?;
            }
        }
        self.refresh_metadata(&[topic.to_owned()]).await?;
        Ok(())
    }

    /// Fetches from each `(partition, offset)`; waits up to `max_wait_ms` for at least one byte.
    pub async fn fetch(
        &mut self,
        positions: &[(TopicPartition, i64)],
        max_wait_ms: i32,
        partition_max_bytes: i32,
    ) -> Result<Vec<FetchedPartition>, KafkaError> {
        let mut by_leader: BTreeMap<String, Vec<&(TopicPartition, i64)>> = BTreeMap::new();
        for pos in positions {
            by_leader
                .entry(self.leader_addr(&pos.0)?)
                .or_default()
                .push(pos);
        }
        let mut out = Vec::new();
        for (addr, group) in by_leader {
            let req = fetch_request(&group, max_wait_ms, partition_max_bytes);
            let resp = self.send_to(&addr, &req, FETCH_V).await?;
            out.extend(fetched_partitions(resp, &group));
        }
        Ok(out)
    }

    /// Appends `records` to one partition (acks=all); returns the base offset.
    pub async fn produce(
        &mut self,
        tp: &TopicPartition,
        records: &[ProduceRecord],
    ) -> Result<i64, KafkaError> {
        let recs: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i64::try_from(i).unwrap_or(i64::MAX),
                sequence: -1,
                timestamp: r.timestamp_ms,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            StrBytes::from_string(k.clone()),
                            Some(Bytes::from(v.clone())),
                        )
                    })
                    .collect::<IndexMap<_, _>>(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(KafkaError::encode)?;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(tp.partition)
                            .with_records(Some(buf.freeze())),
                    ]),
            ]);
        if !self.leaders.contains_key(tp) {
            self.refresh_metadata(std::slice::from_ref(&tp.topic))
                .await?;
        }
        let addr = self.leader_addr(tp)?;
        let resp = self.send_to(&addr, &req, PRODUCE_V).await?;
        let part = resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index == tp.partition)
            .ok_or_else(|| KafkaError::Protocol(format!("produce response lacks {tp}")))?;
        check(part.error_code, "Produce")?;
        Ok(part.base_offset)
    }

    /// The earliest or latest offset of a partition.
    pub async fn list_offset(
        &mut self,
        tp: &TopicPartition,
        spec: OffsetSpec,
    ) -> Result<i64, KafkaError> {
        let ts = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
        };
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(tp.partition)
                            .with_timestamp(ts),
                    ]),
            ]);
        let addr = self.leader_addr(tp)?;
        let resp = self.conn(&addr).await?.send(&req, LIST_OFFSETS_V).await?;
        let p = resp
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == tp.partition)
            .ok_or_else(|| KafkaError::Protocol(format!("ListOffsets response lacks {tp}")))?;
        check(p.error_code, "ListOffsets")?;
        Ok(p.offset)
    }
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_owned()))
}

/// `items` grouped by topic, in topic name order, each group made into a request's topic entry
/// by `entry`.
pub(super) fn per_topic<'a, P, T>(
    items: impl IntoIterator<Item = (&'a str, P)>,
    entry: impl Fn(TopicName, Vec<P>) -> T,
) -> Vec<T> {
    let mut topics: BTreeMap<&str, Vec<P>> = BTreeMap::new();
    for (topic, item) in items {
        topics.entry(topic).or_default().push(item);
    }
    topics
        .into_iter()
        .map(|(t, parts)| entry(topic_name(t), parts))
        .collect()
}

/// A fetch of every `(partition, offset)` of `group` (partitions led by one broker).
fn fetch_request(
    group: &[&(TopicPartition, i64)],
    max_wait_ms: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    let partitions = group.iter().map(|(tp, offset)| {
        let p = FetchPartition::default()
            .with_partition(tp.partition)
            .with_fetch_offset(*offset)
            .with_partition_max_bytes(partition_max_bytes);
        (tp.topic.as_str(), p)
    });
    let topics = per_topic(partitions, |name, parts| {
        FetchTopic::default()
            .with_topic(name)
            .with_partitions(parts)
    });
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(partition_max_bytes.saturating_mul(4))
        .with_isolation_level(0)
        .with_topics(topics)
}

/// Each partition of a fetch response: its records from the offset asked for (a batch may
/// start before it), control records left out, or its error.
fn fetched_partitions(
    resp: FetchResponse,
    group: &[&(TopicPartition, i64)],
) -> Vec<FetchedPartition> {
    let mut out = Vec::new();
    for t in resp.responses {
        let topic = t.topic.0.as_str().to_owned();
        for p in t.partitions {
            let tp = TopicPartition::new(topic.clone(), p.partition_index);
            let from = group
                .iter()
                .find(|(g, _)| *g == tp)
                .map(|(_, o)| *o)
                .unwrap_or(0);
            let mut fetched = FetchedPartition {
                tp,
                records: Vec::new(),
                error: None,
            };
            if let Err(e) = check(p.error_code, "Fetch") {
                fetched.error = Some(e);
            } else if let Some(mut bytes) = p.records {
                match decode_records(&mut bytes) {
                    Ok(recs) => {
                        fetched.records = recs
                            .into_iter()
                            .filter(|r| !r.control && r.offset >= from)
                            .collect();
                    }
                    Err(e) => fetched.error = Some(e),
                }
            }
            out.push(fetched);
        }
    }
    out
}

fn decode_records(bytes: &mut Bytes) -> Result<Vec<Record>, KafkaError> {
    // A fetch may end in a partial batch (cut at max_bytes); decode whole batches only.
    let mut out = Vec::new();
    while bytes.len() >= 12 {
        let batch_len = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let total = 12
            + usize::try_from(batch_len)
                .map_err(|_| KafkaError::Protocol("negative batch length".into()))?;
        if bytes.len() < total {
            break;
        }
        let mut batch = bytes.split_to(total);
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut batch,
            Some(|b: &mut Bytes, c| {
                super::inflate::decompress(b, c, super::inflate::MAX_INFLATED_BATCH)
            }),
        )
        .map_err(KafkaError::decode)?;
        out.extend(set.records);
    }
    Ok(out)
}
