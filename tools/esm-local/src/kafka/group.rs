//! Consumer group offsets: the group's coordinator, found and cached, and the offsets committed
//! under the group (a "simple" group, see the module docs of [`super`]).

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

use super::client::{KafkaClient, TopicPartition, per_topic};
use super::{KafkaError, check};

const FIND_COORDINATOR_V: i16 = 1;
const OFFSET_COMMIT_V: i16 = 2;
const OFFSET_FETCH_V: i16 = 1;

impl KafkaClient {
    async fn coordinator(&mut self, group: &str) -> Result<String, KafkaError> {
        if let Some(addr) = self.coordinators.get(group) {
            return Ok(addr.clone());
        }
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_owned()))
            .with_key_type(0);
        let resp = self
            .any_conn()
            .await?
            .send(&req, FIND_COORDINATOR_V)
            .await?;
        check(resp.error_code, "FindCoordinator")?;
        let addr = format!("{}:{}", resp.host.as_str(), resp.port);
        self.coordinators.insert(group.to_owned(), addr.clone());
        Ok(addr)
    }

    fn forget_coordinator(&mut self, group: &str, err: &KafkaError) {
        let moved = matches!(
            err.broker_error(),
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
        );
        if (moved || err.is_transient())
            && let Some(addr) = self.coordinators.remove(group)
        {
            self.drop_conn_on_io(&addr, err);
        }
    }

    /// Sends `req` to `group`'s coordinator, forgetting the coordinator when it moved or the
    /// call broke its connection (the next call looks it up again).
    async fn send_to_coordinator<R: Request>(
        &mut self,
        group: &str,
        req: &R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let addr = self.coordinator(group).await?;
        let res = async { self.conn(&addr).await?.send(req, version).await }.await;
        if let Err(e) = &res {
            self.forget_coordinator(group, e);
        }
        res
    }

    /// Committed offsets of `group` (the next offset to consume); `None` where nothing is committed.
    pub async fn committed_offsets(
        &mut self,
        group: &str,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<i64>>, KafkaError> {
        let partitions = tps.iter().map(|tp| (tp.topic.as_str(), tp.partition));
        let topics = per_topic(partitions, |name, parts| {
            OffsetFetchRequestTopic::default()
                .with_name(name)
                .with_partition_indexes(parts)
        });
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_topics(Some(topics));
        let resp = self
            .send_to_coordinator(group, &req, OFFSET_FETCH_V)
            .await?;
        let mut out = HashMap::new();
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, "OffsetFetch")?;
                let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                out.insert(tp, (p.committed_offset >= 0).then_some(p.committed_offset));
            }
        }
        Ok(out)
    }

    /// Commits `offsets` (each the next offset to consume) for `group`.
    pub async fn commit(
        &mut self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let partitions = offsets.iter().map(|(tp, offset)| {
            let p = OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(*offset);
            (tp.topic.as_str(), p)
        });
        let topics = per_topic(partitions, |name, parts| {
            OffsetCommitRequestTopic::default()
                .with_name(name)
                .with_partitions(parts)
        });
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let resp = self
            .send_to_coordinator(group, &req, OFFSET_COMMIT_V)
            .await?;
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, "OffsetCommit")?;
            }
        }
        Ok(())
    }
}
