//! The session and the server: who this session is, the server's counters, and stopping
//! the server.

use switchboard_proto::FrameType;
use switchboard_proto::packet::{Identify, Identity, Reload, Stats, StatsReply, Stop};

use crate::client::{Client, expect, expect_ok};
use crate::error::Result;

impl Client {
    /// Asks the server who this session is.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// let me = client.identity().await?;
    /// println!("{} (client {})", me.name, me.client_id);
    /// # Ok(()) }
    /// ```
    pub async fn identity(&self) -> Result<Identity> {
        let reply = self.call(Identify).await?;
        expect(&reply, FrameType::Identity, Identity::from_frame)
    }

    /// The server's counters.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// let stats = client.stats().await?;
    /// for stat in &stats.stats {
    ///     println!("{} = {}", stat.name, stat.value);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<StatsReply> {
        let reply = self.call(Stats).await?;
        expect(&reply, FrameType::StatsReply, StatsReply::from_frame)
    }

    /// Asks the server to shut down (admin sessions only).
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// client.stop_server().await?;
    /// # Ok(()) }
    /// ```
    pub async fn stop_server(&self) -> Result<()> {
        let reply = self.call(Stop).await?;
        expect_ok(&reply)
    }

    /// Asks the server to re-read its configuration and put it in force (admin sessions
    /// only). An error carries the reason a bad configuration was refused; the server
    /// then keeps the one it had.
    ///
    /// ```no_run
    /// # async fn demo(client: switchboard_client::Client) -> switchboard_client::Result<()> {
    /// client.reload_server().await?;
    /// # Ok(()) }
    /// ```
    pub async fn reload_server(&self) -> Result<()> {
        let reply = self.call(Reload).await?;
        expect_ok(&reply)
    }
}
