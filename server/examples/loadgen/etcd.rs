//! A minimal etcd v3 gRPC client for the benchmark: `KV.Put`, `KV.Range`
//! (linearizable) and `Maintenance.Status` (to find the leader), with the
//! few protobuf fields they need declared by hand (field numbers from etcd's
//! `rpc.proto`; prost skips the fields not declared here).

use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    // serializable = 7 stays false: a linearizable read (read index).
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeResponse {
    #[prost(message, repeated, tag = "2")]
    kvs: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct ResponseHeader {
    #[prost(uint64, tag = "2")]
    member_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(uint64, tag = "4")]
    leader: u64,
}

/// One connection to one etcd member.
#[derive(Clone, Debug)]
pub struct EtcdClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl EtcdClient {
    /// Connects lazily to the member serving clients on `addr` (`host:port`).
    pub fn new(addr: &str) -> anyhow::Result<EtcdClient> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(EtcdClient {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn unary<Q, R>(&mut self, path: &'static str, req: Q) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = ProstCodec::<Q, R>::default();
        let reply = self
            .grpc
            .unary(Request::new(req), PathAndQuery::from_static(path), codec)
            .await?;
        Ok(reply.into_inner())
    }

    /// `KV.Put`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), tonic::Status> {
        let req = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        };
        self.unary::<_, PutResponse>("/etcdserverpb.KV/Put", req)
            .await
            .map(|_| ())
    }

    /// `KV.Range` of one key, linearizable; the value if the key exists.
    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, tonic::Status> {
        let req = RangeRequest {
            key: key.as_bytes().to_vec(),
        };
        let reply: RangeResponse = self.unary("/etcdserverpb.KV/Range", req).await?;
        Ok(reply.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// True if this member is the leader (`Maintenance.Status`).
    pub async fn is_leader(&mut self) -> Result<bool, tonic::Status> {
        let st: StatusResponse = self
            .unary("/etcdserverpb.Maintenance/Status", StatusRequest {})
            .await?;
        Ok(st.leader != 0 && st.header.is_some_and(|h| h.member_id == st.leader))
    }
}
