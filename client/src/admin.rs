//! One-off operator calls to a single replica: `Status` and `SetFailRate`.
//! They are not forwarded and not retried: the caller names the replica.

use std::time::Duration;

use paxoskv::kv::{kv_client::KvClient, SetFailRateRequest, StatusReply, StatusRequest};

use crate::addr::Address;
use crate::error::{classify_status, ClientError, ErrorKind, Outcome};
use crate::failover::connect;

/// Asks the replica at `addr` for its status (role, ballot, leader,
/// commit/applied index, digest), within `timeout`.
pub async fn status(addr: &str, timeout: Duration) -> Result<StatusReply, ClientError> {
    let addr = Address::parse(addr)?;
    call(&addr, timeout, |mut kv, t| async move {
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(t);
        kv.status(req).await
    })
    .await
}

/// Sets the acceptor fail rate of the replica at `addr`; returns the previous
/// one.
pub async fn set_fail_rate(
    addr: &str,
    fail_rate: f64,
    timeout: Duration,
) -> Result<f64, ClientError> {
    if !(0.0..=1.0).contains(&fail_rate) {
        return Err(ClientError::new(
            Outcome::NotApplied,
            ErrorKind::InvalidArgument,
            format!("fail_rate must be in [0, 1], got {fail_rate}"),
            None,
        ));
    }
    let addr = Address::parse(addr)?;
    let reply = call(&addr, timeout, |mut kv, t| async move {
        let mut req = tonic::Request::new(SetFailRateRequest { fail_rate });
        req.set_timeout(t);
        kv.set_fail_rate(req).await
    })
    .await?;
    Ok(reply.previous)
}

/// Connects to `addr` and runs `rpc` on it, all within `timeout`.
async fn call<T, F, Fut>(addr: &Address, timeout: Duration, rpc: F) -> Result<T, ClientError>
where
    F: FnOnce(KvClient<tonic::transport::Channel>, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let start = tokio::time::Instant::now();
    let channel = connect(addr, timeout).await?;
    let left = timeout.saturating_sub(start.elapsed());
    match tokio::time::timeout(left, rpc(KvClient::new(channel), left)).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(classify_status(&status, &addr.host_port)),
        Err(_elapsed) => Err(ClientError::timeout(timeout, &addr.host_port)),
    }
}
