//! The Redis side of the node link: where each node answers for the streamed bodies it
//! keeps (the address it registered), and the key all nodes sign node-link requests with.

use futures::FutureExt;
use rand::RngCore;

use crate::engine::{RedisBackplane, unavailable};
use crate::error::BackplaneError;

/// Bytes of the node-link key.
const KEY_LEN: usize = 32;
/// The field of a node's info that holds its link address (see `nodes::live_nodes`).
const INFO_LINK_ADDR: &str = "a";

impl RedisBackplane {
    /// The node-link address node `node` registered, if it is live (its info expires
    /// with its registration, and goes when it leaves).
    pub(crate) async fn node_link_addr_of(
        &self,
        node: u64,
    ) -> Result<Option<String>, switchboard_server::cluster::Refusal> {
        let info_key = self.keys().node_info(node);
        self.supervisor
            .run(move |conn| {
                async move {
                    let addr: Option<String> = redis::cmd("HGET")
                        .arg(&info_key)
                        .arg(INFO_LINK_ADDR)
                        .query_async(conn)
                        .await?;
                    Ok(addr)
                }
                .boxed()
            })
            .await
            .map_err(|e| unavailable(&e))
    }

    /// The cluster's node-link key: the first node to ask makes it (SET NX), every node
    /// then reads the same one. It lives as long as the cluster's keys.
    pub(crate) async fn node_link_key_of(
        &self,
    ) -> Result<Vec<u8>, switchboard_server::cluster::Refusal> {
        let key_name = format!("{}node-link-key", self.keys().prefix());
        let mut fresh = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut fresh);
        self.supervisor
            .run(move |conn| {
                async move {
                    let _: Option<String> = redis::cmd("SET")
                        .arg(&key_name)
                        .arg(&fresh[..])
                        .arg("NX")
                        .query_async(conn)
                        .await?;
                    let key: Option<Vec<u8>> =
                        redis::cmd("GET").arg(&key_name).query_async(conn).await?;
                    match key {
                        Some(key) if key.len() == KEY_LEN => Ok(key),
                        _ => Err(BackplaneError::Reply(
                            "the node-link key is missing or damaged".into(),
                        )),
                    }
                }
                .boxed()
            })
            .await
            .map_err(|e| unavailable(&e))
    }
}
