//! A minimal etcd v3 gRPC client for the benchmark: `KV.Put`, `KV.Range`
//! (linearizable) and `Maintenance.Status` (to find the leader), on the
//! client code generated from `harness/proto/etcd.proto` (see
//! `server/build.rs`), the definition the harness's etcd adapter uses.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// The generated client code of `harness/proto/etcd.proto`.
mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

/// One connection to one etcd member (the generated clients are cheap
/// wrappers of its channel, made per call).
#[derive(Clone, Debug)]
pub struct EtcdClient {
    channel: Channel,
}

impl EtcdClient {
    /// Connects lazily to the member serving clients on `addr` (`host:port`).
    pub fn new(addr: &str) -> anyhow::Result<EtcdClient> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(EtcdClient { channel })
    }

    /// `KV.Put`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), tonic::Status> {
        let req = pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        };
        let mut kv = KvClient::new(self.channel.clone());
        kv.put(req).await.map(|_| ())
    }

    /// `KV.Range` of one key, linearizable (`serializable` stays false: a
    /// read index); the value if the key exists.
    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, tonic::Status> {
        let req = pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let mut kv = KvClient::new(self.channel.clone());
        let reply = kv.range(req).await?.into_inner();
        Ok(reply.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// True if this member is the leader (`Maintenance.Status`).
    pub async fn is_leader(&mut self) -> Result<bool, tonic::Status> {
        let st = MaintenanceClient::new(self.channel.clone())
            .status(pb::StatusRequest {})
            .await?
            .into_inner();
        Ok(st.leader != 0 && st.header.is_some_and(|h| h.member_id == st.leader))
    }
}
