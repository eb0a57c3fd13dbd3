// aragora patch (upstream: not yet proposed; see README.md): an opt-in plain tunnel for
// upgraded HTTP/1 connections. After the `101` the connection carries no more HTTP, so a
// `ProxyHttp` that says so in `tunnel_upgraded` gets both raw streams in `upgraded_tunnel`
// and relays them itself, instead of the two halves passing every read through a channel.

use super::*;
use pingora_core::protocols::http::v1::server::HttpSession as ServerSessionV1;

/// An upgraded HTTP/1 connection after its `101`, as its two raw streams.
pub struct UpgradedTunnel {
    /// The client's connection.
    pub downstream: Stream,
    /// What the client sent that was already read off its stream (with or after the request
    /// head): it goes upstream first.
    pub from_downstream: Bytes,
    /// The upstream connection.
    pub upstream: Stream,
    /// What the upstream sent that was already read off its stream (with or after its `101`):
    /// it goes to the client first.
    pub from_upstream: Bytes,
}

/// The bytes an upgraded body reader holds or can read at once; `None` when that side ended.
fn ready(read: Option<Result<Option<Bytes>>>) -> Result<Option<Bytes>> {
    match read {
        // Nothing buffered or readable yet: the stream has the rest.
        None => Ok(Some(Bytes::new())),
        Some(read) => read,
    }
}

impl<SV, C> HttpProxy<SV, C>
where
    C: custom::Connector,
{
    /// Takes both streams out of their sessions (with what their readers already hold) and
    /// runs [`ProxyHttp::upgraded_tunnel`]. The downstream session is replaced by a stand-in
    /// with the same request, response and digest, so `logging` and the end of the request
    /// see what they would have; it has no connection, and the request is never reused.
    pub(crate) async fn proxy_upgraded_tunnel(
        &self,
        session: &mut Session,
        mut upstream: HttpSessionV1,
        ctx: &mut SV::CTX,
    ) -> Option<Box<Error>>
    where
        SV: ProxyHttp + Send + Sync,
        SV::CTX: Send + Sync,
    {
        let from_upstream = match ready(upstream.read_body_bytes().now_or_never()) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => return Some(e.into_up()),
        };
        let HttpSession::H1(downstream) = session.downstream_session.as_mut() else {
            return Some(Error::explain(
                InternalError,
                "an upgraded tunnel needs an HTTP/1 client",
            ));
        };
        let from_downstream = match ready(downstream.read_body_bytes().now_or_never()) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => return Some(e.into_down()),
        };
        let stand_in = match stand_in(downstream).await {
            Ok(stand_in) => stand_in,
            Err(e) => return Some(e),
        };
        let tunnel = UpgradedTunnel {
            downstream: std::mem::replace(downstream, stand_in).into_inner(),
            from_downstream,
            upstream: upstream.into_inner(),
            from_upstream,
        };
        self.inner.upgraded_tunnel(session, tunnel, ctx).await.err()
    }
}

/// A session over no connection that answers for `session` once its stream is taken: the
/// same request head, response written and connection digest.
async fn stand_in(session: &ServerSessionV1) -> Result<ServerSessionV1> {
    let head = session.get_headers_raw_bytes().to_vec();
    let mut stand_in = ServerSessionV1::new(Box::new(std::io::Cursor::new(head)));
    stand_in.read_request().await?;
    *stand_in.req_header_mut() = session.req_header().clone();
    if let Some(response) = session.response_written() {
        // Written into the stand-in's own buffer: it records the response and the upgrade.
        stand_in
            .write_response_header(Box::new(response.clone()))
            .await?;
    }
    *stand_in.digest_mut() = session.digest().clone();
    Ok(stand_in)
}
